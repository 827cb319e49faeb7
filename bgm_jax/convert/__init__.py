"""Weights conversion between the original PyTorch BackgroundMattingV2 and bgm_jax.

Reading needs neither torch nor jax: :mod:`~bgm_jax.convert.pth` (torch zip checkpoints through an
allow-list unpickler), :mod:`~bgm_jax.convert.safetensors`, :mod:`~bgm_jax.convert.sources` (format
sniffing, unwrapping training checkpoints), :mod:`~bgm_jax.convert.keys` (the key table, strict
accounting, configuration detection) and :mod:`~bgm_jax.convert.partial` (name-and-shape matched
initialisation from ImageNet / DeepLabV3 checkpoints).

Built on them, and importing jax on first use: :mod:`~bgm_jax.convert.convert`
(:func:`convert_checkpoint` to a bgm_jax checkpoint directory, :func:`export_torch` back to a PyTorch
state_dict) and :mod:`~bgm_jax.convert.pretrained` (:func:`init_from_pretrained` for training).
"""

from bgm_jax.convert.keys import ConversionError, count_parameters, detect_config, flax_to_torch, torch_to_flax
from bgm_jax.convert.partial import PartialLoad, partial_torch_to_flax
from bgm_jax.convert.pth import load_pth
from bgm_jax.convert.safetensors import load_safetensors, save_safetensors
from bgm_jax.convert.sources import LoadedStateDict, read_state_dict

# Imported on first use so that reading a checkpoint (and `bgm-jax --help`) does not import jax.
_LAZY = {
    "ConversionReport": "bgm_jax.convert.convert",
    "ExportReport": "bgm_jax.convert.convert",
    "convert_checkpoint": "bgm_jax.convert.convert",
    "export_torch": "bgm_jax.convert.convert",
    "init_from_pretrained": "bgm_jax.convert.pretrained",
}

__all__ = [
    "ConversionError",
    "ConversionReport",
    "ExportReport",
    "LoadedStateDict",
    "PartialLoad",
    "convert_checkpoint",
    "count_parameters",
    "detect_config",
    "export_torch",
    "flax_to_torch",
    "init_from_pretrained",
    "load_pth",
    "load_safetensors",
    "partial_torch_to_flax",
    "read_state_dict",
    "save_safetensors",
    "torch_to_flax",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bgm_jax.convert' has no attribute {name!r}")
