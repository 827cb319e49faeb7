"""The paper's training losses (see ../shared/reference/TRAINING.md), as the original code computes them.

All terms are unweighted and summed; L1 and MSE are means over every element (batch, pixels, channels),
and the foreground term is masked by ``pha* > 0`` without dividing by the mask's area. Inputs are
channels-last arrays, (B, H, W, 1) for alpha and error, (B, H, W, 3) for foreground; predictions may be
half precision: every term is computed on float32 casts.

Base stage (``base_loss``)::

    L1(pha, pha*) + L1(sobel(pha), sobel(pha*)) + L1(fgr * m, fgr* * m) + MSE(err, |stopgrad(pha) - pha*|)

Refine stage (``refine_loss``), ``*_sm`` the coarse outputs and ``pha*_sm``, ``fgr*_sm`` the targets
resized bilinearly to the coarse size without antialiasing::

    L1(pha, pha*) + L1(pha_sm, pha*_sm) + L1(sobel(pha), sobel(pha*)) + L1(sobel(pha_sm), sobel(pha*_sm))
    + L1(fgr * m, fgr* * m) + L1(fgr_sm * m_sm, fgr*_sm * m_sm)
    + MSE(up(err_sm), |up(pha_sm) - pha*|)

where ``up`` resizes to the full size.

``soft_weight > 0`` (not in the original; 0 is its recipe) adds ``soft_weight * L1`` of the alpha over the
soft band only, ``pha_soft_l1`` (and ``pha_sm_soft_l1`` on the coarse alpha in the refine stage): the mean
of ``|pha - pha*|`` over the pixels within ``SOFT_RADIUS`` px (a square) of a true alpha in
(``SOFT_LOW``, ``SOFT_HIGH``), the evaluation trimap's thresholds. The plain L1 is a mean over the whole
image, where veils and strands are a few per cent of the pixels; SAD is scored on exactly those.

``thin_weight > 0`` (not in the original either) adds ``thin_weight * L1`` of the alpha over the **thin
band** only, ``pha_thin_l1`` (and ``pha_sm_thin_l1``): the mean of ``|pha - pha*|`` over the foreground
(true alpha > ``SOFT_LOW``) that a ``THIN_SIZE`` x ``THIN_SIZE`` opening removes (strands and lines
narrower than that), widened by ``THIN_GROW`` px so that the background beside a strand counts too. It
aims at the structure ``train.judge`` measures as ``shape_thin``, where tuned keying beat the model.

The refine error target has no stop-gradient: the original's
``train_refine.py`` does not detach ``pha_sm`` there (its base stage does detach), so the error term also
pulls the coarse alpha towards ``up(pha_sm) - pha*`` matching ``up(err_sm)``; kept as in the original.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from bgm_jax.evaluation.metrics import TRIMAP_HIGH as SOFT_HIGH
from bgm_jax.evaluation.metrics import TRIMAP_LOW as SOFT_LOW
from bgm_jax.models import layers

SOBEL_EPSILON = 1e-6
SOFT_RADIUS = 3
THIN_SIZE = 5
THIN_GROW = 1


def sobel(x: jax.Array) -> jax.Array:
    """Gradient magnitude ``sqrt(gx^2 + gy^2 + 1e-6)`` of each channel of (..., H, W, C) images.

    kornia's ``sobel``: the 3x3 kernels ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] / 8`` and its transpose,
    cross-correlated with replicate padding. Shifted slices rather than a convolution: exact in float32
    on every backend.
    """
    height, width = x.shape[-3], x.shape[-2]
    pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    p = jnp.pad(x, pad, mode="edge")

    def at(dy: int, dx: int) -> jax.Array:  # the neighbour at offset (dy, dx) of every pixel
        return p[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width, :]

    gx = (at(-1, 1) - at(-1, -1) + 2 * (at(0, 1) - at(0, -1)) + at(1, 1) - at(1, -1)) / 8
    gy = (at(1, -1) - at(-1, -1) + 2 * (at(1, 0) - at(-1, 0)) + at(1, 1) - at(-1, 1)) / 8
    return jnp.sqrt(gx * gx + gy * gy + SOBEL_EPSILON)


def resize_bilinear(x: jax.Array, hw: Sequence[int]) -> jax.Array:
    """Bilinear resize of (B, H, W, C) to ``hw`` as PyTorch's ``interpolate(align_corners=False)``:
    half-pixel centres, no antialiasing. The model's own resize (separable gathers, no dense matrices)."""
    return layers.resize_bilinear(x, tuple(hw))


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference over all elements."""
    return jnp.mean(jnp.abs(a - b))


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean squared difference over all elements."""
    return jnp.mean(jnp.square(a - b))


def _max_pool(x: jax.Array, size: int) -> jax.Array:
    return jax.lax.reduce_window(x, 0.0, jax.lax.max, (1, size, size, 1), (1, 1, 1, 1), "SAME")


def _min_pool(x: jax.Array, size: int) -> jax.Array:
    return jax.lax.reduce_window(x, 1.0, jax.lax.min, (1, size, size, 1), (1, 1, 1, 1), "SAME")


def soft_band(true_pha: jax.Array, radius: int = SOFT_RADIUS) -> jax.Array:
    """1.0 where a pixel of (B, H, W, 1) ``true_pha`` lies within ``radius`` px (Chebyshev) of a soft
    pixel (``SOFT_LOW < alpha < SOFT_HIGH``), else 0.0."""
    soft = ((true_pha > SOFT_LOW) & (true_pha < SOFT_HIGH)).astype(jnp.float32)
    return _max_pool(soft, 2 * radius + 1)


def thin_band(true_pha: jax.Array, size: int = THIN_SIZE, grow: int = THIN_GROW) -> jax.Array:
    """1.0 where a pixel of (B, H, W, 1) ``true_pha`` lies within ``grow`` px (Chebyshev) of foreground
    (``alpha > SOFT_LOW``) that a ``size`` x ``size`` opening removes, else 0.0. Beyond the image's edge
    counts as foreground for the erosion, so a strand is not found merely by touching the border."""
    foreground = (true_pha > SOFT_LOW).astype(jnp.float32)
    opened = _max_pool(_min_pool(foreground, size), size)
    thin = foreground * (1.0 - opened)
    return _max_pool(thin, 2 * grow + 1) if grow else thin


def band_l1(a: jax.Array, b: jax.Array, band: jax.Array) -> jax.Array:
    """Mean absolute difference over the pixels where ``band`` is 1 (0 when the band is empty)."""
    return jnp.sum(jnp.abs(a - b) * band) / jnp.maximum(jnp.sum(band), 1.0)


def base_loss(pha: jax.Array, fgr: jax.Array, err: jax.Array, true_pha: jax.Array,
              true_fgr: jax.Array, soft_weight: float = 0.0,
              thin_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The base stage's loss from ``MattingBase``'s (pha, fgr, err) and the targets.

    Returns:
      (total, terms): the float32 scalar sum and each term by name, for logging.
    """
    pha, fgr, err, true_pha, true_fgr = _float32(pha, fgr, err, true_pha, true_fgr)
    mask = (true_pha > 0).astype(jnp.float32)
    terms = {
        "pha_l1": l1(pha, true_pha),
        "pha_sobel_l1": l1(sobel(pha), sobel(true_pha)),
        "fgr_l1": l1(fgr * mask, true_fgr * mask),
        # The error map learns where the alpha is wrong; it must not push the alpha itself.
        "err_mse": mse(err, jnp.abs(jax.lax.stop_gradient(pha) - true_pha)),
    }
    if soft_weight:
        terms["pha_soft_l1"] = soft_weight * band_l1(pha, true_pha, soft_band(true_pha))
    if thin_weight:
        terms["pha_thin_l1"] = thin_weight * band_l1(pha, true_pha, thin_band(true_pha))
    return sum(terms.values()), terms


def refine_loss(pha: jax.Array, fgr: jax.Array, pha_sm: jax.Array, fgr_sm: jax.Array, err_sm: jax.Array,
                true_pha: jax.Array, true_fgr: jax.Array,
                soft_weight: float = 0.0,
                thin_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The refine stage's seven-term loss (two more each with ``soft_weight``, ``thin_weight``) from
    ``MattingRefine``'s (pha, fgr, pha_sm, fgr_sm, err_sm) and the full-resolution targets.

    Returns:
      (total, terms): the float32 scalar sum and each term by name, for logging.
    """
    pha, fgr, pha_sm, fgr_sm, err_sm, true_pha, true_fgr = _float32(
        pha, fgr, pha_sm, fgr_sm, err_sm, true_pha, true_fgr)
    full_hw, coarse_hw = true_pha.shape[1:3], pha_sm.shape[1:3]
    true_pha_sm = resize_bilinear(true_pha, coarse_hw)
    true_fgr_sm = resize_bilinear(true_fgr, coarse_hw)
    mask = (true_pha > 0).astype(jnp.float32)
    mask_sm = (true_pha_sm > 0).astype(jnp.float32)
    terms = {
        "pha_l1": l1(pha, true_pha),
        "pha_sm_l1": l1(pha_sm, true_pha_sm),
        "pha_sobel_l1": l1(sobel(pha), sobel(true_pha)),
        "pha_sm_sobel_l1": l1(sobel(pha_sm), sobel(true_pha_sm)),
        "fgr_l1": l1(fgr * mask, true_fgr * mask),
        "fgr_sm_l1": l1(fgr_sm * mask_sm, true_fgr_sm * mask_sm),
        # No stop-gradient here, as in the original (see the module docstring).
        "err_mse": mse(resize_bilinear(err_sm, full_hw), jnp.abs(resize_bilinear(pha_sm, full_hw) - true_pha)),
    }
    if soft_weight:
        terms["pha_soft_l1"] = soft_weight * band_l1(pha, true_pha, soft_band(true_pha))
        terms["pha_sm_soft_l1"] = soft_weight * band_l1(pha_sm, true_pha_sm, soft_band(true_pha_sm))
    if thin_weight:
        terms["pha_thin_l1"] = thin_weight * band_l1(pha, true_pha, thin_band(true_pha))
        terms["pha_sm_thin_l1"] = thin_weight * band_l1(pha_sm, true_pha_sm, thin_band(true_pha_sm))
    return sum(terms.values()), terms


def _float32(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    return tuple(jnp.asarray(a).astype(jnp.float32) for a in arrays)
