"""MattingBase and MattingRefine: the full BackgroundMattingV2 networks.

Inputs are NHWC float arrays in [0, 1] (no mean/std normalisation): ``src`` the image with the subject,
``bgr`` the clean background, same shape. Parameters are float32; ``dtype`` sets the compute dtype
(float32, bfloat16 or float16). Outputs are in the compute dtype, except the error maps (``err``,
``err_sm``), which are float32 because they choose the refined patches (see ``Decoder``).

    model = MattingRefine(backbone="resnet50", backbone_scale=0.25, refine_sample_pixels=80_000)
    variables = model.init(jax.random.key(0), src, bgr)
    pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm = jax.jit(model.apply)(variables, src, bgr)
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bgm_jax.model_spec import BACKBONES, REFINE_SIZE_MULTIPLE
from bgm_jax.models.aspp import ASPP
from bgm_jax.models.decoder import Decoder
from bgm_jax.models.layers import resize_bilinear
from bgm_jax.models.mobilenetv2 import MobileNetV2Encoder
from bgm_jax.models.refiner import Refiner, check_refiner_settings
from bgm_jax.models.resnet import ResNetEncoder

Dtype = Any


def make_backbone(name: str, dtype: Dtype, bn_axis_name: str | None) -> nn.Module:
    """The encoder for ``name``, registered under the original's attribute name ``backbone``."""
    if name == "resnet50":
        return ResNetEncoder((3, 4, 6, 3), dtype, bn_axis_name, name="backbone")
    if name == "resnet101":
        return ResNetEncoder((3, 4, 23, 3), dtype, bn_axis_name, name="backbone")
    if name == "mobilenetv2":
        return MobileNetV2Encoder(dtype, bn_axis_name, name="backbone")
    check_backbone(name)
    raise AssertionError(f"backbone {name!r} is in BACKBONES but has no encoder here")


def check_backbone(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")


def check_pair(src: jax.Array, bgr: jax.Array) -> None:
    """The source and background must be two NHWC RGB arrays of one shape."""
    if src.ndim != 4 or src.shape[-1] != 3:
        raise ValueError(f"src must be an NHWC RGB array (batch, height, width, 3), got shape {src.shape}")
    if bgr.shape != src.shape:
        raise ValueError(
            f"src and bgr must have the same shape, got src {src.shape} and bgr {bgr.shape}; "
            "resize the background to the source size"
        )


def coarse_network(
    src: jax.Array, bgr: jax.Array, backbone: str, dtype: Dtype, bn_axis_name, train: bool, dropout_rate: float = 0.5
):
    """Backbone -> ASPP -> decoder on a (src, bgr) pair: the 37-channel map before activations.

    Called from the compact ``__call__`` of MattingBase and MattingRefine, so the submodules are
    registered on the caller as ``backbone``, ``aspp`` and ``decoder`` (the original's names).
    """
    x = jnp.concatenate([src, bgr], axis=-1)
    x4, x3, x2, x1, x0 = make_backbone(backbone, dtype, bn_axis_name)(x, train)
    x4 = ASPP(dropout_rate=dropout_rate, dtype=dtype, bn_axis_name=bn_axis_name, name="aspp")(x4, train)
    return Decoder(dtype=dtype, bn_axis_name=bn_axis_name, name="decoder")(x4, x3, x2, x1, x0, train)


class MattingBase(nn.Module):
    """The base network at the input resolution. Returns ``(pha, fgr, err, hid)``:
    alpha (1 ch, clipped), foreground (3, clipped ``src + residual``), error (1, clipped) and hidden (32, ReLU).
    Any input size works. ``aspp_dropout`` is the ASPP's training-time dropout rate (0.5 as the original)."""

    backbone: str = "resnet50"
    aspp_dropout: float = 0.5
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    def __post_init__(self):
        check_backbone(self.backbone)
        super().__post_init__()

    @nn.compact
    def __call__(self, src: jax.Array, bgr: jax.Array, train: bool = False):
        check_pair(src, bgr)
        src, bgr = src.astype(self.dtype), bgr.astype(self.dtype)
        x = coarse_network(src, bgr, self.backbone, self.dtype, self.bn_axis_name, train, self.aspp_dropout)
        err = jnp.clip(x[..., 4:5], 0.0, 1.0)  # float32 (see Decoder)
        x = x.astype(self.dtype)
        pha = jnp.clip(x[..., 0:1], 0.0, 1.0)
        fgr = jnp.clip(x[..., 1:4] + src, 0.0, 1.0)
        hid = nn.relu(x[..., 5:])
        return pha, fgr, err, hid


class MattingRefine(nn.Module):
    """Base network at ``backbone_scale`` of the input, then the refiner at full resolution.

    Returns ``(pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm)``: full-resolution alpha and foreground, the
    coarse alpha, foreground and error at ``floor(H * scale) x floor(W * scale)``, and the 0/1 map of
    refined 4x4 cells at quarter resolution. H and W must be multiples of 4.

    ``refine_threshold_capacity`` only matters for ``refine_mode='thresholding'``: None computes the exact
    result in eval (full refinement + mask) and uses ``refine_sample_pixels // 16`` patches in training;
    an integer is a static number of patches in both (see ``bgm_jax.models.refiner``).
    ``refine_strategy``: in eval, how a top-k selection is refined: "patches" (the original's 8x8 windows),
    "hybrid" (first stage over the image, second on patches), "image" (both over the image, masked) or
    "auto" (the cheapest for the selection's share of the cells; identical outputs, see
    ``bgm_jax.models.refiner``); in training "auto" runs conv1 over the image when that is cheaper, any
    other value but "patches" always does. ``aspp_dropout`` is the ASPP's training-time dropout rate (0.5 as the original).

    The ``refine_*`` fields are the ``Refiner``'s, under the original's constructor names: their defaults
    and checks live in ``bgm_jax.models.refiner`` only.
    """

    backbone: str = "resnet50"
    backbone_scale: float = 1 / 4
    refine_mode: str = Refiner.mode
    refine_sample_pixels: int = Refiner.sample_pixels
    refine_threshold: float = Refiner.threshold
    refine_kernel_size: int = Refiner.kernel_size
    refine_prevent_oversampling: bool = Refiner.prevent_oversampling
    refine_threshold_capacity: int | None = Refiner.threshold_capacity
    refine_strategy: str = Refiner.strategy
    aspp_dropout: float = 0.5
    dtype: Dtype = jnp.float32
    bn_axis_name: str | None = None

    def __post_init__(self):
        check_backbone(self.backbone)
        if not 0 < self.backbone_scale <= 1 / 2:
            raise ValueError(f"backbone_scale must be in (0, 1/2], got {self.backbone_scale}")
        check_refiner_settings(self.refine_mode, self.refine_kernel_size, self.refine_sample_pixels,
                               self.refine_threshold_capacity, self.refine_strategy, prefix="refine_")
        super().__post_init__()

    @nn.compact
    def __call__(self, src: jax.Array, bgr: jax.Array, train: bool = False):
        check_pair(src, bgr)
        _, height, width, _ = src.shape
        if height % REFINE_SIZE_MULTIPLE or width % REFINE_SIZE_MULTIPLE:
            raise ValueError(
                f"MattingRefine needs height and width that are multiples of {REFINE_SIZE_MULTIPLE}, got "
                f"{height}x{width}; "
                "pad the input (bgm_jax.load() does this for you) or crop it"
            )
        small = (math.floor(height * self.backbone_scale), math.floor(width * self.backbone_scale))
        if min(small) < 1:
            raise ValueError(
                f"backbone_scale {self.backbone_scale} makes the {height}x{width} input smaller than one "
                "pixel; use a larger scale or a larger input"
            )
        src, bgr = src.astype(self.dtype), bgr.astype(self.dtype)
        src_sm = resize_bilinear(src, small)
        bgr_sm = resize_bilinear(bgr, small)

        x = coarse_network(src_sm, bgr_sm, self.backbone, self.dtype, self.bn_axis_name, train, self.aspp_dropout)
        # The error map stays float32 whatever the compute dtype: it chooses the refined patches (Decoder).
        err_sm = jnp.clip(x[..., 4:5], 0.0, 1.0)
        x = x.astype(self.dtype)
        pha_sm = jnp.clip(x[..., 0:1], 0.0, 1.0)
        fgr_sm = x[..., 1:4]  # the refiner takes the unclipped residual
        hid_sm = nn.relu(x[..., 5:])

        pha, fgr, ref_sm = Refiner(
            mode=self.refine_mode,
            sample_pixels=self.refine_sample_pixels,
            threshold=self.refine_threshold,
            kernel_size=self.refine_kernel_size,
            prevent_oversampling=self.refine_prevent_oversampling,
            threshold_capacity=self.refine_threshold_capacity,
            strategy=self.refine_strategy,
            dtype=self.dtype,
            bn_axis_name=self.bn_axis_name,
            name="refiner",
        )(src, bgr, pha_sm, fgr_sm, err_sm, hid_sm, train)

        fgr_sm = jnp.clip(src_sm + fgr_sm, 0.0, 1.0)
        return pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm
