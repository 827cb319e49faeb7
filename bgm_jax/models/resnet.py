"""ResNet-50/101 encoder: torchvision v1.5 bottlenecks, 6-channel conv1, layer4 dilated (output stride 16).

Submodule names follow the PyTorch attributes (``conv1``, ``bn1``, ``layer4_0/downsample_0``...) so the
checkpoint converter is a table.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bgm_jax.models.layers import conv_factory, kaiming_normal_fan_out, norm_factory, pad2d

Dtype = Any


class BottleneckSpec(NamedTuple):
    name: str
    planes: int
    stride: int
    dilation: int
    downsample: bool


def bottleneck_layers(stage_sizes: Sequence[int]) -> tuple[tuple[BottleneckSpec, ...], ...]:
    """The bottlenecks of ``layer1``..``layer4``, in order: as torchvision with
    ``replace_stride_with_dilation=[False, False, True]`` (layer4's stride becomes dilation 2, its first block
    keeps layer3's dilation). The Flax encoder and the ONNX export both build from this one schedule."""
    layers = []
    inplanes, dilation = 64, 1
    for layer, (planes, stride, dilate) in enumerate(
        [(64, 1, False), (128, 2, False), (256, 2, False), (512, 2, True)], start=1
    ):
        previous_dilation = dilation
        if dilate:
            dilation *= stride
            stride = 1
        blocks = []
        for i in range(stage_sizes[layer - 1]):
            first = i == 0
            blocks.append(BottleneckSpec(
                name=f"layer{layer}_{i}",
                planes=planes,
                stride=stride if first else 1,
                dilation=previous_dilation if first else dilation,
                downsample=first and (stride != 1 or inplanes != planes * 4),
            ))
            inplanes = planes * 4
        layers.append(tuple(blocks))
    return tuple(layers)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 with a projection shortcut on the first block of a layer."""

    planes: int
    stride: int
    dilation: int
    downsample: bool
    conv: Callable[..., nn.Module]
    norm: Callable[..., nn.Module]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = nn.relu(self.norm(name="bn1")(self.conv(self.planes, (1, 1), name="conv1")(x)))
        out = self.conv(
            self.planes,
            (3, 3),
            strides=self.stride,
            padding=pad2d(self.dilation),
            kernel_dilation=self.dilation,
            name="conv2",
        )(out)
        out = nn.relu(self.norm(name="bn2")(out))
        out = self.norm(name="bn3")(self.conv(self.planes * 4, (1, 1), name="conv3")(out))
        if self.downsample:
            x = self.conv(self.planes * 4, (1, 1), strides=self.stride, name="downsample_0")(x)
            x = self.norm(name="downsample_1")(x)
        return nn.relu(out + x)


class ResNetEncoder(nn.Module):
    """Returns ``(x4, x3, x2, x1, x0)``: 2048 ch at 1/16, 512 at 1/8, 256 at 1/4, 64 at 1/2, the input."""

    stage_sizes: Sequence[int]
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        conv = conv_factory(self.dtype, kernel_init=kaiming_normal_fan_out)
        norm = norm_factory(train, self.dtype, self.bn_axis_name)
        x0 = x
        x = conv(64, (7, 7), strides=2, padding=pad2d(3), name="conv1")(x)
        x1 = x = nn.relu(norm(name="bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=pad2d(1))

        features = []
        for blocks in bottleneck_layers(self.stage_sizes):
            for block in blocks:
                x = Bottleneck(planes=block.planes, stride=block.stride, dilation=block.dilation,
                               downsample=block.downsample, conv=conv, norm=norm, name=block.name)(x)
            features.append(x)
        x2, x3, _, x4 = features
        return x4, x3, x2, x1, x0
