"""Layer factories and resize ops shared by every model file.

Fixed in one place so the whole network agrees with PyTorch:
- every convolution pads explicitly and symmetrically (Flax's ``'SAME'`` pads (0, 1) for stride 2 where
  PyTorch pads (1, 1));
- every BatchNorm uses PyTorch's eps 1e-5 and momentum 0.1 (Flax ``momentum=0.9``), statistics in float32,
  and an ``axis_name`` for cross-replica statistics (``None`` outside ``pmap``);
- bilinear resizes are ``align_corners=False`` without antialiasing, as ``F.interpolate`` does.
Parameters are always float32; ``dtype`` is the compute dtype.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bgm_jax.bilinear import resize_bilinear  # noqa: F401  (the models' resize, defined with its taps)
from bgm_jax.model_spec import PRECISIONS

Dtype = Any
# Compute precision name -> the ``dtype`` field of every module (parameters stay float32).
# ("tf32" computes in float32 and lets the matrix units round their inputs; see model_spec.MATMUL_PRECISIONS.)
COMPUTE_DTYPES = {name: getattr(jnp, "float32" if name == "tf32" else name) for name in PRECISIONS}

# torchvision's ResNet/MobileNetV2 initialisation: kaiming normal, fan_out, gain sqrt(2).
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# PyTorch's default Conv2d initialisation (kaiming uniform with a = sqrt(5)).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int):
    """PyTorch's default conv bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def pad2d(p: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric PyTorch-style padding of ``p`` pixels on each side of H and W."""
    return ((p, p), (p, p))


def conv_factory(dtype: Dtype, kernel_init=torch_default_kernel_init):
    """Bias-free conv with explicit zero padding unless told otherwise; never ``'SAME'``."""
    return functools.partial(
        nn.Conv,
        use_bias=False,
        padding=pad2d(0),
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=kernel_init,
    )


def norm_factory(train: bool, dtype: Dtype, axis_name: str | None):
    """PyTorch-equivalent BatchNorm: batch statistics in training, running averages in eval."""
    return functools.partial(BatchNorm, use_running_average=not train, axis_name=axis_name, dtype=dtype)


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """Exact 2x nearest-neighbour upsampling of an NHWC array (= PyTorch's nearest for 2x)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class BatchNorm(nn.Module):
    """PyTorch's ``BatchNorm2d`` in training and eval, optionally over only the entries selected by ``mask``.

    Like PyTorch, it normalises with the biased batch variance and updates the running variance with the
    unbiased one (``var * n / (n - 1)``; Flax's ``nn.BatchNorm`` uses the biased one, which matters where
    ``n`` is small, e.g. ASPP's image-pooling branch, where ``n`` is the batch size). Statistics are exact
    across replicas: it sums values and counts (``psum`` over ``axis_name``) instead of averaging per-replica
    means, so replicas with different numbers of selected entries, or none, give the global statistics.
    When nothing at all is selected the running statistics are left unchanged (the original runs no
    refiner then). Variables are named as ``nn.BatchNorm``'s (scale, bias; mean, var), so checkpoints are
    interchangeable.

    ``mask`` broadcasts against ``x.shape[:-1] + (1,)``; None selects everything. ``n`` is the number of
    selected entries per channel over all replicas (the refiner's patches count as their pixels).
    ``use_running_average`` given at the call overrides the field (for modules built in ``setup``).
    """

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None,
                 use_running_average: bool | None = None) -> jax.Array:
        if use_running_average is None:
            use_running_average = self.use_running_average
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))

        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            x32 = x.astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            weight = jnp.ones(x.shape[:-1] + (1,), jnp.float32)
            if mask is not None:
                weight = weight * jnp.broadcast_to(mask, weight.shape).astype(jnp.float32)
            total = jnp.sum(x32 * weight, axes)
            count = jnp.sum(weight)
            if self.axis_name is not None:
                total, count = jax.lax.psum((total, count), self.axis_name)
            safe = jnp.maximum(count, 1.0)
            mean = total / safe
            # Two passes (the mean, then squared deviations from it), not E[x^2] - E[x]^2, whose float32
            # cancellation loses digits when the mean is large next to the spread.
            total_sq = jnp.sum(jnp.square(x32 - mean) * weight, axes)
            if self.axis_name is not None:
                total_sq = jax.lax.psum(total_sq, self.axis_name)
            var = total_sq / safe
            if not self.is_initializing():
                selected = count > 0
                new_mean = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                unbiased = var * (count / jnp.maximum(count - 1.0, 1.0))
                new_var = self.momentum * ra_var.value + (1 - self.momentum) * unbiased
                ra_mean.value = jnp.where(selected, new_mean, ra_mean.value)
                ra_var.value = jnp.where(selected, new_var, ra_var.value)

        inv = jax.lax.rsqrt(var + self.epsilon) * scale
        y = (x.astype(jnp.float32) - mean) * inv + bias
        return y.astype(self.dtype)
