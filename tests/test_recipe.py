"""The training recipe follows the original code where it differs from the paper (TRAINING.md, "The original
code, precisely"): each test checks one of those choices against an independent numpy model of what the
original did, on the statistic that matters for training.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import augment
from train.augment import AugmentConfig

# ------------------------------------------------------------------------------------------------------
# 1. Background colour misalignment: p = 0.8, kornia 0.4.1 ColorJitter(0.18, 0.18, 0.18, 0.1)


def kornia_jitter_reference(image: np.ndarray, brightness, contrast, saturation, hue, order) -> np.ndarray:
    """kornia 0.4.1 ``ColorJitter`` on an (H, W, 3) float image, written from its definition with
    ``colorsys``: brightness adds (factor - 1), contrast multiplies, saturation scales HSV S, hue shifts
    HSV H by ``hue`` turns; each step clamps to [0, 1]."""
    out = image.astype(np.float64)

    def per_pixel_hsv(x, fn):
        flat = x.reshape(-1, 3)
        result = np.array([colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*p))) for p in flat])
        return result.reshape(x.shape)

    for op in order:
        if op == 0:
            out = np.clip(out + (brightness - 1.0), 0, 1)
        elif op == 1:
            out = np.clip(out * contrast, 0, 1)
        elif op == 2:
            out = np.clip(per_pixel_hsv(out, lambda h, s, v: (h, min(max(s * saturation, 0.0), 1.0), v)), 0, 1)
        else:
            out = np.clip(per_pixel_hsv(out, lambda h, s, v: ((h + hue) % 1.0, s, v)), 0, 1)
    return out


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1)])
def test_kornia_colour_jitter_matches_kornia_0_4_1_semantics(order):
    image = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    colour = {"brightness": 1.12, "contrast": 0.86, "saturation": 1.15, "hue": -0.07, "order": jnp.array(order)}
    ours = augment.colour_jitter(jnp.asarray(image), colour, "kornia")
    expected = kornia_jitter_reference(image, 1.12, 0.86, 1.15, -0.07, order)
    np.testing.assert_allclose(np.asarray(ours), expected, atol=2e-5)
    # Additive brightness, plain gain: not torchvision's (which multiplies and blends with the mean).
    tv = augment.colour_jitter(jnp.asarray(image), colour, "torchvision")
    assert float(jnp.max(jnp.abs(tv - ours))) > 0.02


def original_misalignment_reference(backgrounds: np.ndarray, seed: int) -> np.ndarray:
    """Mean |B_composite - B_network| per background under the original's misalignment: kornia ColorJitter
    with p = 0.8 and RandomAffine(+-1 deg, +-1 %, nearest, fill 0) with p = 0.3 (no noise, no shadow)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    stats = []
    for b in backgrounds:
        seen = b.astype(np.float64)
        if rng.random() < 0.8:
            f = rng.uniform(0.82, 1.18, 3)
            seen = kornia_jitter_reference(seen, f[0], f[1], f[2], rng.uniform(-0.1, 0.1), rng.permutation(4))
        if rng.random() < 0.3:
            h, w = b.shape[:2]
            angle = math.radians(rng.uniform(-1, 1))
            ty, tx = np.round(rng.uniform(-0.01, 0.01, 2) * (h, w))
            rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
            centre = np.array([h, w]) / 2 - 0.5
            offset = centre - rot @ (centre + (ty, tx))
            seen = np.stack([ndimage.affine_transform(seen[..., c], rot, offset, order=0, cval=0.0)
                             for c in range(3)], -1)
        stats.append(np.abs(seen - b).mean())
    return np.array(stats)


def misalignment_statistic(config: AugmentConfig, backgrounds: np.ndarray, seed: int) -> np.ndarray:
    """Ours: no subject (alpha 0), so src is exactly the background behind the subject; the network's
    background differs from it by the misalignment alone."""
    n, h, w, _ = backgrounds.shape
    only_misalignment = AugmentConfig.identity()
    config = dataclasses.replace(only_misalignment, misalign_colour_p=config.misalign_colour_p,
                                 misalign_colour=config.misalign_colour,
                                 misalign_affine_p=config.misalign_affine_p, misalign_affine=config.misalign_affine)
    out = augment.augment_batch(jax.random.key(seed), np.zeros_like(backgrounds), np.zeros((n, h, w, 1), np.float32),
                                backgrounds, config)
    return np.asarray(jnp.abs(out["src"] - out["bgr"]).mean(axis=(1, 2, 3)))


@pytest.fixture(scope="module")
def photo_like_backgrounds():
    from bgm_jax.datasets import synthetic

    return np.stack([synthetic.make_sample(seed, 48, 48)["bgr"] for seed in range(96)]).astype(np.float32) / 255


def test_background_misalignment_is_as_strong_as_the_original_code(photo_like_backgrounds):
    ours = misalignment_statistic(AugmentConfig(), photo_like_backgrounds, seed=1)
    original = original_misalignment_reference(photo_like_backgrounds, seed=2)
    # Same distribution (different draws): mean within 15 %, share above 0.05 within 0.12. Measured here:
    # ours 0.096 / 79 %, the original's 0.103 / 80 %, the paper's reading 0.027 / 32 %.
    assert abs(ours.mean() - original.mean()) < 0.15 * original.mean(), (ours.mean(), original.mean())
    assert abs((ours > 0.05).mean() - (original > 0.05).mean()) < 0.12
    # The paper's reading (p = 0.3, torchvision semantics) is several times weaker.
    paper = misalignment_statistic(AugmentConfig().paper_misalignment(), photo_like_backgrounds, seed=1)
    assert paper.mean() < original.mean() / 2.5, (paper.mean(), original.mean())
