"""MobileNetV2 encoder (width 1.0), 6-channel first conv, output stride 16.

As the original: the final 320->1280 block is dropped (``features.0``..``features.17`` remain),
``features.14``'s depthwise conv has stride 1, and ``features.15``-``17`` use dilation 2.
Submodule names follow torchvision's ``features.N.conv.M`` layout (``features_3/conv_1_0``...).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

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

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = int(round(self.in_channels * self.expand_ratio))
        i = 0
        out = x
        if self.expand_ratio != 1:
            out = self.conv(hidden, (1, 1), name="conv_0_0")(out)
            out = nn.relu6(self.norm(name="conv_0_1")(out))
            i = 1
        out = self.conv(
            hidden,
            (3, 3),
            strides=self.stride,
            padding=pad2d(self.dilation),
            kernel_dilation=self.dilation,
            feature_group_count=hidden,
            name=f"conv_{i}_0",
        )(out)
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

        taps = {1: "x1", 3: "x2", 6: "x3", 17: "x4"}
        out = {}
        index, in_channels = 1, 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                stride = s if i == 0 else 1
                # The residual decision is made with the constructed stride, before the original's
                # output-stride-16 edits (features.14 keeps no residual).
                use_residual = stride == 1 and in_channels == c
                stride, dilation = DILATED_BLOCKS.get(index, (stride, 1))
                x = InvertedResidual(
                    in_channels=in_channels,
                    out_channels=c,
                    stride=stride,
                    dilation=dilation,
                    expand_ratio=t,
                    use_residual=use_residual,
                    conv=conv,
                    norm=norm,
                    name=f"features_{index}",
                )(x)
                if index in taps:
                    out[taps[index]] = x
                in_channels = c
                index += 1
        return out["x4"], out["x3"], out["x2"], out["x1"], x0
