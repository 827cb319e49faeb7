"""Decoder 256 -> 128 -> 64 -> 48 -> 37: upsample to each skip's exact size, concat, 3x3 conv."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bgm_jax.models.layers import (
    conv_factory,
    norm_factory,
    pad2d,
    resize_bilinear,
    torch_default_bias_init,
)

Dtype = Any


class Decoder(nn.Module):
    """Each stage resizes ``x`` to the skip's exact size (odd sizes work), concatenates ``[x, skip]``
    and applies a 3x3 conv (padding 1). The first three are conv+BN+ReLU; ``conv4`` has a bias.

    ``conv4`` always computes in float32 and returns float32, whatever ``dtype``: its error channel
    chooses the refined patches, and in bfloat16 (8-bit mantissa) many cells would tie at the k-th
    largest error, where top-k then prefers the top of the image. It is the smallest conv of the
    network (54 -> 37 channels at the coarse resolution)."""

    channels: Sequence[int] = (128, 64, 48, 37)
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x4, x3, x2, x1, x0, train: bool = False) -> jax.Array:
        conv = conv_factory(self.dtype)
        norm = norm_factory(train, self.dtype, self.bn_axis_name)
        x = x4
        for i, skip in enumerate((x3, x2, x1, x0), start=1):
            x = resize_bilinear(x, skip.shape[1:3])
            x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
            if i < 4:
                x = conv(self.channels[i - 1], (3, 3), padding=pad2d(1), name=f"conv{i}")(x)
                x = nn.relu(norm(name=f"bn{i}")(x))
            else:
                fan_in = x.shape[-1] * 9
                x = conv(
                    self.channels[3],
                    (3, 3),
                    padding=pad2d(1),
                    use_bias=True,
                    bias_init=torch_default_bias_init(fan_in),
                    dtype=jnp.float32,
                    name="conv4",
                )(x.astype(jnp.float32))
        return x
