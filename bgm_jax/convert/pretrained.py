"""Start training from pretrained weights: whatever fits by name and shape, the rest keeps its initialisation.

    variables = model.init(key, src, bgr)
    variables, report = init_from_pretrained("best_deeplabv3_resnet50_voc_os16.pth", variables)
    print(report.summary())   # loaded 310 tensors, skipped 8; 33 model tensors keep their initialisation

Supported sources (detected from the keys, see :func:`~bgm_jax.convert.partial.detect_pretrained_kind`):
torchvision ImageNet ResNet-50/101 and MobileNetV2 (backbone only), DeepLabV3 from
VainF/DeepLabV3Plus-Pytorch as the original uses for stage 1 (backbone and ASPP; the weights sit under
``model_state``), and BackgroundMattingV2 checkpoints (e.g. a MattingBase run initialising
MattingRefine). The 6-channel first conv never fits a 3-channel pretrained one and keeps its
initialisation, as in the original. The file is read without torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from bgm_jax.convert.partial import PRETRAINED_RENAMES, PartialLoad, detect_pretrained_kind, partial_torch_to_flax
from bgm_jax.convert.sources import read_state_dict


def merge_loaded(target: Mapping, loaded: Mapping) -> dict:
    """``target`` with the leaves present in ``loaded`` replaced (cast to the target leaf's dtype and
    placed like it when it is a jax array); the result shares the untouched target leaves."""
    merged = dict(target)
    for name, value in loaded.items():
        if isinstance(value, Mapping):
            merged[name] = merge_loaded(target[name], value)
        else:
            merged[name] = _like(target[name], value)
    return merged


def _like(leaf: Any, value: np.ndarray) -> Any:
    value = np.asarray(value, dtype=getattr(leaf, "dtype", value.dtype))
    sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        return value
    import jax

    return jax.device_put(value, sharding)


def init_from_pretrained(path: str | os.PathLike, target_variables: Mapping[str, Any], *,
                         kind: str | None = None) -> tuple[dict[str, Any], PartialLoad]:
    """Overwrite the variables of ``target_variables`` (a model's ``{'params', 'batch_stats', ...}``,
    already initialised) with every tensor of the checkpoint at ``path`` that matches by name and shape.

    ``kind`` ('imagenet-resnet', 'imagenet-mobilenetv2', 'deeplabv3', 'matting') is detected when None.
    Returns ``(variables, report)``: the report lists the loaded keys, the skipped source tensors with
    the reason, and the model tensors that keep their initialisation. Raises :class:`InputError`
    when the file is unreadable or nothing in it fits the model.
    """
    source = os.fspath(path)
    loaded = read_state_dict(source)
    kind = kind or detect_pretrained_kind(loaded.tensors, source=source)
    if kind not in PRETRAINED_RENAMES:
        raise ValueError(f"unknown pretrained kind {kind!r}; expected one of {sorted(PRETRAINED_RENAMES)}")
    report = partial_torch_to_flax(loaded.tensors, target_variables, renames=PRETRAINED_RENAMES[kind], source=source)
    report.kind = kind
    variables = dict(target_variables)
    variables["params"] = merge_loaded(target_variables["params"], report.params)
    if report.batch_stats:
        variables["batch_stats"] = merge_loaded(target_variables["batch_stats"], report.batch_stats)
    return variables, report
