"""Atrous Spatial Pyramid Pooling (DeepLabV3) with the paper's rates (3, 6, 9)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bgm_jax.models.layers import conv_factory, norm_factory, pad2d

Dtype = Any


class ASPP(nn.Module):
    """Five 256-channel branches (1x1, three dilated 3x3, image pooling) -> 1x1 projection + Dropout(0.5).

    Names follow the original's ``convs.N.M`` / ``project.M`` (``convs.4.0`` is the parameter-free pool).
    """

    rates: Sequence[int] = (3, 6, 9)
    features: int = 256
    dropout_rate: float = 0.5
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = conv_factory(self.dtype)
        norm = norm_factory(train, self.dtype, self.bn_axis_name)

        def conv_bn_relu(y, conv_name, bn_name, kernel=1, dilation=1):
            y = conv(
                self.features,
                (kernel, kernel),
                padding=pad2d(dilation if kernel == 3 else 0),
                kernel_dilation=dilation,
                name=conv_name,
            )(y)
            return nn.relu(norm(name=bn_name)(y))

        branches = [conv_bn_relu(x, "convs_0_0", "convs_0_1")]
        for i, rate in enumerate(self.rates, start=1):
            branches.append(conv_bn_relu(x, f"convs_{i}_0", f"convs_{i}_1", kernel=3, dilation=rate))
        # Image pooling branch: index 0 of the original's Sequential is the pool, hence _1 and _2.
        pool = len(self.rates) + 1
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
        pooled = conv_bn_relu(pooled, f"convs_{pool}_1", f"convs_{pool}_2")
        # Bilinear upsampling of a 1x1 map is a broadcast.
        branches.append(jnp.broadcast_to(pooled, x.shape[:3] + (self.features,)))

        y = jnp.concatenate(branches, axis=-1)
        y = nn.relu(norm(name="project_1")(conv(self.features, (1, 1), name="project_0")(y)))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(y)
