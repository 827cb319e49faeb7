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


# ------------------------------------------------------------------------------------------------------
# 2. No resolution loss: the warp reads each image at (at least) the resolution it produces


def energy_above_half_nyquist(image: np.ndarray) -> float:
    """Share of an image's (non-DC) spectral power at frequencies above a quarter cycle per pixel."""
    grey = image.reshape(image.shape[0], image.shape[1], -1).mean(-1)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy = np.abs(np.fft.fftfreq(grey.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(grey.shape[1]))[None, :]
    return float(power[np.maximum(fx, fy) > 0.25].sum() / power.sum())


def test_a_detailed_foreground_keeps_its_detail_through_storage_and_warp():
    """A 540x960 frame with hair-like strands (a quarter of 1080x1920) made into a 256x256 sample (the
    512 sample of a 1080p frame, halved): the original applies its affine to the native frame (one
    bilinear warp); the old pipeline stored the frame on a sample-sized canvas (256x144) and enlarged it
    in the warp; now it is stored at its own resolution, shrunk only to fit a 2x canvas (512x288)."""
    from bgm_jax.datasets import images, synthetic

    frame = synthetic.make_sample(3, 540, 960)
    sample = (256, 256)
    config = dataclasses.replace(AugmentConfig.identity(), sample_size=sample)

    def warp(pha, valid_hw, sample_size):
        c = dataclasses.replace(config, sample_size=sample_size)
        zeros = np.zeros(pha.shape[:2] + (3,), np.uint8)
        out = augment.augment_batch(jax.random.key(0), zeros[None], pha[None], zeros[None], c,
                                    fgr_valid_hw=np.array([valid_hw]), bgr_valid_hw=np.array([valid_hw]))
        return np.asarray(out["pha"][0])

    pha = frame["pha"][..., None]
    original = warp(pha, (540, 960), sample)
    old_canvas, old_valid = images.decode_to_canvas(pha, "L", sample, "contain")
    old = warp(old_canvas, old_valid, None)
    stored, valid = images.decode_to_canvas(pha, "L", (512, 512), "native")
    new = warp(stored, valid, sample)
    assert min(valid) >= min(sample), "the stored image holds at least the output resolution"
    e_original, e_old, e_new = (energy_above_half_nyquist(x) for x in (original, old, new))
    # Measured: original 0.65 %, old 0.10 %, new 0.31 % (PIL's antialiased shrink keeps the detail the
    # output can hold; the original's single bilinear warp from native adds aliased energy on top).
    assert e_old < 0.25 * e_original
    assert e_new > 2.5 * e_old and e_new > 0.4 * e_original


def test_native_fit_never_enlarges_and_shrinks_only_to_fit_the_canvas():
    from bgm_jax.datasets import images

    assert images.fitted_size(300, 400, (912, 912), "native") == (300, 400)
    assert images.fitted_size(1080, 1920, (912, 912), "native") == (513, 912)
    assert images.fitted_size(1080, 1920, (512, 512), "contain") == (288, 512)


# ------------------------------------------------------------------------------------------------------
# 3. Global batch and epochs; the per-device batch and the steps follow from the devices and the data


def test_steps_follow_the_zip_epoch_rule_and_the_global_batch():
    from train.config import TrainConfig

    stage1 = TrainConfig(global_batch=8, epochs=8)
    on_one = stage1.plan(237_000, 8_000, device_count=1)
    on_eight = stage1.plan(237_000, 8_000, device_count=8)
    assert (on_one.per_device_batch, on_eight.per_device_batch) == (8, 1)
    assert on_one.num_steps == on_eight.num_steps == 237_000  # 8 epochs of 237k items at batch 8, any devices
    # Stage 4: 646 foregrounds zipped with 8,000 backgrounds: an epoch has 8,000 items.
    stage4 = TrainConfig(stage="refine", global_batch=4, epochs=30)
    assert stage4.plan(646, 8_000, device_count=2).num_steps == 60_000
    assert stage4.plan(646, 8_000, device_count=2).per_device_batch == 2
    assert TrainConfig(global_batch=8, num_steps=5).plan(100, 10, 4).num_steps == 5  # explicit override


def test_a_global_batch_that_does_not_divide_over_the_devices_is_a_clear_error():
    from bgm_jax.errors import InputError
    from train.config import TrainConfig

    with pytest.raises(InputError, match="global_batch 6 does not divide over 4 devices"):
        TrainConfig(global_batch=6).plan(100, 100, device_count=4)


# ------------------------------------------------------------------------------------------------------
# 4. Crops: every size in range by default (one per batch), buckets only as an option


def test_crops_draw_every_size_by_default_and_buckets_on_request():
    from train.config import TrainConfig
    from train.loop import augment_config

    config = TrainConfig(crop_size=(256, 511))
    assert config.crop_sizes_per_side is None
    sizes = augment.crop_sizes(augment_config(config))
    assert sizes.tolist() == list(range(256, 512))
    drawn = {augment.sample_crop_hw(0, step, augment_config(config)) for step in range(400)}
    assert len(drawn) > 350  # nearly every step a new shape, as the original
    refine = TrainConfig(stage="refine", augment="refine", crop_size=(1024, 2047))
    assert augment.crop_sizes(augment_config(refine)).tolist() == list(range(1024, 2048, 4))
    bucketed = augment.crop_sizes(augment_config(config.replace(crop_sizes_per_side=4)))
    assert bucketed.tolist() == [256, 341, 426, 511]


# ------------------------------------------------------------------------------------------------------
# Not the original's: the test protocol's plate perturbation (D.2) as an optional training augmentation


def test_plate_perturbation_is_off_in_the_recipe_and_perturbs_only_the_network_background_when_on():
    rng = np.random.default_rng(0)
    bgr = rng.random((4, 24, 24, 3)).astype(np.float32)
    zeros = np.zeros((4, 24, 24, 1), np.float32)
    off = dataclasses.replace(AugmentConfig.identity(), sample_size=None)
    on = dataclasses.replace(off, plate_perturbation_p=1.0)
    assert AugmentConfig().plate_perturbation_p == 0.0
    clean = augment.augment_batch(jax.random.key(0), np.zeros_like(bgr), zeros, bgr, off)
    perturbed = augment.augment_batch(jax.random.key(0), np.zeros_like(bgr), zeros, bgr, on)
    np.testing.assert_array_equal(perturbed["src"], clean["src"])  # the composite keeps the clean plate
    difference = np.asarray(perturbed["bgr"] - clean["bgr"])[:, 2:-2, 2:-2]  # inside the shift's border
    residual_std = difference.std(axis=(1, 2, 3))
    assert np.all((residual_std > 0.06) & (residual_std < 0.2)), residual_std  # noise std 0.08..0.15 (+ gamma)
    params = augment.sample_params(jax.random.key(0), 4, on)["plate"]
    assert np.all(np.abs(np.asarray(params["shift"])) <= 0.3) and np.all(np.asarray(params["on"]))
