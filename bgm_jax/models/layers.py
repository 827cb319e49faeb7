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

Dtype = Any

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
    return functools.partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        axis_name=axis_name,
        dtype=dtype,
        param_dtype=jnp.float32,
    )


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of an NHWC array to ``size`` = (H, W), matching PyTorch's
    ``F.interpolate(mode='bilinear', align_corners=False)`` (no antialiasing)."""
    b, h, w, c = x.shape
    if (h, w) == tuple(size):
        return x
    return jax.image.resize(x, (b, size[0], size[1], c), method="bilinear", antialias=False)


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """Exact 2x nearest-neighbour upsampling of an NHWC array (= PyTorch's nearest for 2x)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
