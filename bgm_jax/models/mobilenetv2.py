"""MobileNetV2 encoder (width 1.0), 6-channel first conv, output stride 16.

As the original: the final 320->1280 block is dropped (``features.0``..``features.17`` remain),
``features.14``'s depthwise conv has stride 1, and ``features.15``-``17`` use dilation 2.
Submodule names follow torchvision's ``features.N.conv.M`` layout (``features_3/conv_1_0``...).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from bgm_jax.models.layers import conv_factory, kaiming_normal_fan_out, norm_factory, pad2d

Dtype = Any

# (expansion t, output channels c, repeats n, first stride s) as in torchvision.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Output-stride-16 changes of the original: block index -> (stride, dilation) of its depthwise conv.
DILATED_BLOCKS = {14: (1, 1), 15: (1, 2), 16: (1, 2), 17: (1, 2)}
# The blocks whose outputs the decoder takes (``features.17``'s is the ASPP's input).
FEATURE_TAPS = {1: "x1", 3: "x2", 6: "x3", 17: "x4"}


class InvertedResidualSpec(NamedTuple):
    index: int  # N of features.N
    in_channels: int
    out_channels: int
    expand_ratio: int
    stride: int
    dilation: int
    use_residual: bool


def inverted_residual_blocks() -> tuple[InvertedResidualSpec, ...]:
    """``features.1``..``features.17`` in order. The Flax encoder and the ONNX export both build from this
    one schedule."""
    blocks = []
    index, in_channels = 1, 32
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            # The residual decision is made with the constructed stride, before the original's
            # output-stride-16 edits (features.14 keeps no residual).
            use_residual = stride == 1 and in_channels == c
            stride, dilation = DILATED_BLOCKS.get(index, (stride, 1))
            blocks.append(InvertedResidualSpec(index, in_channels, c, t, stride, dilation, use_residual))
            in_channels = c
            index += 1
    return tuple(blocks)


def depthwise_taps(x: jax.Array, kernel: jax.Array, stride: int, dilation: int) -> jax.Array:
    """3x3 depthwise convolution (padding = dilation, as PyTorch) written as nine shifted multiply-adds
    over the channels-last array, accumulated in float32: one fused elementwise loop on a CPU."""
    _, height, width, _ = x.shape
    out_h = (height - 1) // stride + 1
    out_w = (width - 1) // stride + 1
    d = dilation
    x = jnp.pad(x.astype(jnp.float32), ((0, 0), (d, d), (d, d), (0, 0)))
    kernel = kernel.astype(jnp.float32)
    out = None
    for i in range(3):
        for j in range(3):
            window = lax.slice(x, (0, i * d, j * d, 0),
                               (x.shape[0], i * d + (out_h - 1) * stride + 1, j * d + (out_w - 1) * stride + 1,
                                x.shape[3]), (1, stride, stride, 1))
            term = window * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


class DepthwiseConv3x3(nn.Module):
    """The 3x3 depthwise convolution of an inverted residual (no bias, padding = dilation).

    Its parameter is ``nn.Conv``'s with ``feature_group_count=features`` (``kernel``, (3, 3, 1, features),
    same initialiser), so checkpoints do not change. On CPUs it runs as nine shifted multiply-adds
    (``depthwise_taps``), because XLA:CPU executes grouped convolutions 5-20x slower than that fused loop
    (see docs/benchmarks.md); other platforms keep the convolution. Both compute the same sums.
    """

    features: int
    stride: int
    dilation: int
    dtype: Dtype = jnp.float32
    kernel_init: Callable = kaiming_normal_fan_out

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (3, 3, 1, self.features), jnp.float32)
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        d, stride = self.dilation, self.stride

        def convolution(x, kernel):
            return lax.conv_general_dilated(x, kernel, (stride, stride), pad2d(d), rhs_dilation=(d, d),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=self.features)

        def taps(x, kernel):
            return depthwise_taps(x, kernel, stride, d).astype(self.dtype)

        return lax.platform_dependent(x, kernel, cpu=taps, default=convolution)


class InvertedResidual(nn.Module):
    """[1x1 expand + BN + ReLU6] -> 3x3 depthwise + BN + ReLU6 -> 1x1 linear projection + BN."""

    in_channels: int
    out_channels: int
    stride: int
    dilation: int
    expand_ratio: int
    use_residual: bool
    conv: Callable[..., nn.Module]
    norm: Callable[..., nn.Module]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = int(round(self.in_channels * self.expand_ratio))
        i = 0
        out = x
        if self.expand_ratio != 1:
            out = self.conv(hidden, (1, 1), name="conv_0_0")(out)
            out = nn.relu6(self.norm(name="conv_0_1")(out))
            i = 1
        out = DepthwiseConv3x3(hidden, self.stride, self.dilation, self.dtype, name=f"conv_{i}_0")(out)
        out = nn.relu6(self.norm(name=f"conv_{i}_1")(out))
        out = self.conv(self.out_channels, (1, 1), name=f"conv_{i + 1}")(out)
        out = self.norm(name=f"conv_{i + 2}")(out)
        return x + out if self.use_residual else out


class MobileNetV2Encoder(nn.Module):
    """Returns ``(x4, x3, x2, x1, x0)``: 320 ch at 1/16, 32 at 1/8, 24 at 1/4, 16 at 1/2, the input."""

    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        conv = conv_factory(self.dtype, kernel_init=kaiming_normal_fan_out)
        norm = norm_factory(train, self.dtype, self.bn_axis_name)
        x0 = x
        x = conv(32, (3, 3), strides=2, padding=pad2d(1), name="features_0_0")(x)
        x = nn.relu6(norm(name="features_0_1")(x))

        out = {}
        for block in inverted_residual_blocks():
            x = InvertedResidual(
                in_channels=block.in_channels,
                out_channels=block.out_channels,
                stride=block.stride,
                dilation=block.dilation,
                expand_ratio=block.expand_ratio,
                use_residual=block.use_residual,
                conv=conv,
                norm=norm,
                dtype=self.dtype,
                name=f"features_{block.index}",
            )(x)
            if block.index in FEATURE_TAPS:
                out[FEATURE_TAPS[block.index]] = x
        return out["x4"], out["x3"], out["x2"], out["x1"], x0
