"""Bilinear resize exactly as PyTorch's ``F.interpolate(mode='bilinear', align_corners=False)`` (no
antialiasing): the sampling taps in numpy, and the separable resize of NHWC arrays in jax.

The models (``bgm_jax.models.layers`` re-exports ``resize_bilinear``), the device renderer
(``bgm_jax.io.render``) and the host-side upsampling of error maps (``bgm_jax.io.outputs.upsample_map``)
all use these taps, so they cannot drift apart. jax is imported only by ``resize_bilinear``, and nothing
here depends on Flax, so ``bgm_jax.io`` does not depend on the models.
"""

from __future__ import annotations

import numpy as np


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, w_lo, w_hi)`` along one axis: output i samples ``(i + 0.5) * n_in / n_out - 0.5``,
    clamped at 0, between source indices ``lo`` and ``hi`` (int32) with float32 weights summing to 1.
    Shapes are static, so in a jitted function these are compile-time constants."""
    position = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    position = np.maximum(position, 0.0)
    lo = np.minimum(np.floor(position).astype(np.int32), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    w_hi = (position - lo).astype(np.float32)
    return lo, hi, 1.0 - w_hi, w_hi


def _take_static(x, index: np.ndarray, axis: int):
    """``jnp.take(x, index, axis)`` for a constant ``index``; an evenly spaced one (integer-factor
    downsampling) is a strided slice, which XLA:CPU copies several times faster than a gather."""
    import jax.numpy as jnp
    from jax import lax

    step = int(index[1] - index[0]) if len(index) > 1 else 1
    if step > 0 and np.array_equal(index, index[0] + step * np.arange(len(index))):
        start = int(index[0])
        return lax.slice_in_dim(x, start, start + step * (len(index) - 1) + 1, stride=step, axis=axis)
    return jnp.take(x, index, axis=axis)


def resize_bilinear(x, size: tuple[int, int]):
    """Bilinear resize of an NHWC jax array to ``size`` = (H, W), as PyTorch's
    ``F.interpolate(mode='bilinear', align_corners=False)`` (no antialiasing).

    Separable two-tap gathers instead of ``jax.image.resize``, which builds dense (out x in)
    interpolation matrices: at HD those matmuls cost more FLOPs than the whole network.
    """
    import jax.numpy as jnp

    for axis, n_out in ((1, int(size[0])), (2, int(size[1]))):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        lo, hi, w_lo, w_hi = bilinear_taps(n_in, n_out)
        shape = [1] * x.ndim
        shape[axis] = n_out
        w_lo = jnp.asarray(w_lo.reshape(shape), x.dtype)
        w_hi = jnp.asarray(w_hi.reshape(shape), x.dtype)
        x = _take_static(x, lo, axis) * w_lo + _take_static(x, hi, axis) * w_hi
    return x
