"""Weights conversion between the original PyTorch BackgroundMattingV2 and bgm_jax.

Reading needs neither torch nor jax: :mod:`~bgm_jax.convert.pth` (torch zip checkpoints through an
allow-list unpickler), :mod:`~bgm_jax.convert.safetensors`, :mod:`~bgm_jax.convert.sources` (format
sniffing, unwrapping training checkpoints), :mod:`~bgm_jax.convert.keys` (the key table, strict
accounting, configuration detection) and :mod:`~bgm_jax.convert.partial` (name-and-shape matched
initialisation from ImageNet / DeepLabV3 checkpoints).
"""

from bgm_jax.convert.keys import ConversionError, count_parameters, detect_config, flax_to_torch, torch_to_flax
from bgm_jax.convert.partial import PartialLoad, partial_torch_to_flax
from bgm_jax.convert.pth import load_pth
from bgm_jax.convert.safetensors import load_safetensors, save_safetensors
from bgm_jax.convert.sources import LoadedStateDict, read_state_dict

__all__ = [
    "ConversionError",
    "LoadedStateDict",
    "PartialLoad",
    "count_parameters",
    "detect_config",
    "flax_to_torch",
    "load_pth",
    "load_safetensors",
    "partial_torch_to_flax",
    "read_state_dict",
    "save_safetensors",
    "torch_to_flax",
]
