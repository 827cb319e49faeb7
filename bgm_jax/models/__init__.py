"""Flax (Linen) modules of BackgroundMattingV2."""

from bgm_jax.models.aspp import ASPP
from bgm_jax.models.decoder import Decoder
from bgm_jax.models.matting import BACKBONES, MattingBase, MattingRefine
from bgm_jax.models.mobilenetv2 import MobileNetV2Encoder
from bgm_jax.models.refiner import REFINE_MODES, Refiner
from bgm_jax.models.resnet import ResNetEncoder

__all__ = [
    "ASPP",
    "BACKBONES",
    "Decoder",
    "MattingBase",
    "MattingRefine",
    "MobileNetV2Encoder",
    "REFINE_MODES",
    "Refiner",
    "ResNetEncoder",
]
