"""Partial loads for training initialisation: take what fits from an ImageNet or DeepLabV3 checkpoint.

The original initialises training from pretrained weights matched by name and shape, so whatever
does not fit (the 6-channel first conv, classifier heads, the decoder) keeps its random
initialisation. :func:`partial_torch_to_flax` does the same on top of the key table in
:mod:`~bgm_jax.convert.keys`, after renaming key prefixes:

* torchvision ImageNet ResNet (``conv1.weight``, ``layer1.0...``, ``fc.*``): ``RESNET_IMAGENET_RENAMES``
* torchvision ImageNet MobileNetV2 (``features.N...``, ``classifier.*``): ``MOBILENETV2_IMAGENET_RENAMES``
* DeepLabV3 (VainF/DeepLabV3Plus-Pytorch, the ``model_state`` entry): ``DEEPLABV3_RENAMES``
  (``classifier.classifier.0`` is the ASPP; ResNet backbone keys already start with ``backbone.``;
  its MobileNetV2 splits ``features`` into ``low_level_features`` 0..3 and ``high_level_features``
  = features 4..17, which are mapped back, as the original does before loading).
* a BackgroundMattingV2 model (``backbone.*``, ``aspp.*``, ``decoder.*``, perhaps ``refiner.*``):
  no renames, e.g. a MattingBase checkpoint initialising MattingRefine training.

:func:`detect_pretrained_kind` tells these apart from the keys.

It returns the subset that matched plus a report of what was loaded, what was skipped and why, and
which model leaves keep their initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bgm_jax.convert.keys import (
    _c_contiguous,
    _leaf_shape,
    _set_nested,
    _target_leaves,
    flax_leaf_to_torch_key,
    original_order_key,
    torch_key_to_flax,
)
from bgm_jax.errors import InputError

RESNET_IMAGENET_RENAMES: tuple[tuple[str, str], ...] = (("", "backbone."),)
MOBILENETV2_IMAGENET_RENAMES: tuple[tuple[str, str], ...] = (("features.", "backbone.features."),)
DEEPLABV3_RENAMES: tuple[tuple[str, str], ...] = (
    (("classifier.classifier.0.", "aspp."),)
    + tuple((f"backbone.low_level_features.{i}.", f"backbone.features.{i}.") for i in range(4))
    + tuple((f"backbone.high_level_features.{i}.", f"backbone.features.{i + 4}.") for i in range(14))
)
MATTING_RENAMES: tuple[tuple[str, str], ...] = ()

# kind -> renames, for the checkpoints a training run can start from.
PRETRAINED_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "deeplabv3": DEEPLABV3_RENAMES,
    "imagenet-resnet": RESNET_IMAGENET_RENAMES,
    "imagenet-mobilenetv2": MOBILENETV2_IMAGENET_RENAMES,
    "matting": MATTING_RENAMES,
}


def detect_pretrained_kind(keys, *, source: str = "checkpoint") -> str:
    """Which kind of pretrained state_dict ``keys`` come from (a key of ``PRETRAINED_RENAMES``).

    Raises :class:`InputError` naming ``source`` when the keys fit none of them.
    """
    keys = list(keys)
    if any(k.startswith("classifier.classifier.") for k in keys):
        return "deeplabv3"
    if any(k.startswith("backbone.") for k in keys):
        return "matting"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "imagenet-resnet"
    if any(k.startswith("features.") for k in keys):
        return "imagenet-mobilenetv2"
    sample = ", ".join(keys[:3]) if keys else "none"
    raise InputError(
        f"{source}: not a checkpoint training can start from (first keys: {sample}); expected a torchvision "
        "ImageNet ResNet / MobileNetV2, a DeepLabV3 (VainF/DeepLabV3Plus-Pytorch) or a BackgroundMattingV2 "
        "state_dict."
    )


@dataclass
class PartialLoad:
    """The matched subset as nested dicts of numpy, and the accounting of everything else."""

    params: dict = field(default_factory=dict)
    batch_stats: dict = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)   # source keys (after renaming) that were loaded
    skipped: list[str] = field(default_factory=list)  # "key: reason" for source tensors not loaded
    kept: list[str] = field(default_factory=list)     # model leaves that keep their initialisation
    kind: str = ""  # the PRETRAINED_RENAMES entry used, when known

    def summary(self) -> str:
        """One line for logs: counts, and the kept leaves when they are few (the usual case: conv1)."""
        kept = f"{len(self.kept)} model tensors keep their initialisation"
        if 0 < len(self.kept) <= 5:
            kept += f" ({', '.join(self.kept)})"
        return f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)}; {kept}"

    def lines(self) -> list[str]:
        """The report for a training log: the summary, what keeps its initialisation (grouped by
        top-level module), and why each source tensor was skipped (the first few)."""
        lines = [f"{self.kind or 'pretrained'}: {self.summary()}"]
        if self.kept:
            lines.append("  keeps its initialisation: " + "; ".join(_grouped_by_module(self.kept)))
        lines += [f"  skipped {reason}" for reason in self.skipped[:_LISTED_SKIPS]]
        if len(self.skipped) > _LISTED_SKIPS:
            lines.append(f"  ... and {len(self.skipped) - _LISTED_SKIPS} more skipped")
        return lines

    def __iter__(self):
        """Iterating a report gives its :meth:`lines` (so ``[*report]`` logs it)."""
        return iter(self.lines())


_LISTED_SKIPS = 10


def _grouped_by_module(keys: list[str]) -> list[str]:
    """``['backbone.conv1.weight', 'decoder.conv1.weight', ...]`` -> ``['backbone.conv1.weight', 'decoder.* (23)']``:
    a top-level module with more than three entries is counted rather than listed."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.split(".", 1)[0], []).append(key)
    return [", ".join(group) if len(group) <= 3 else f"{module}.* ({len(group)} tensors)"
            for module, group in groups.items()]


def rename_key(key: str, renames: Sequence[tuple[str, str]]) -> str:
    """Apply the first ``(old_prefix, new_prefix)`` whose old prefix starts ``key``."""
    for old, new in renames:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def partial_torch_to_flax(state_dict: Mapping[str, Any], target_shapes: Mapping, *,
                          renames: Sequence[tuple[str, str]] = (), source: str = "checkpoint") -> PartialLoad:
    """Load every tensor of ``state_dict`` whose renamed key and shape match a model leaf; report the rest.

    ``target_shapes`` is the model's variables tree of shapes, as for :func:`~bgm_jax.convert.keys.torch_to_flax`.
    Raises :class:`InputError` naming ``source`` only if nothing at all matches (the wrong checkpoint
    or renames); otherwise the caller merges ``params``/``batch_stats`` over its initialisation.
    """
    targets = _target_leaves(target_shapes)
    result = PartialLoad()
    filled = set()
    for original_key, value in state_dict.items():
        array = np.asarray(value)
        key = rename_key(original_key, renames)
        label = key if key == original_key else f"{original_key} (as {key})"
        try:
            leaf = torch_key_to_flax(key, array.shape)
        except KeyError:
            result.skipped.append(f"{label}: not a conv or BatchNorm tensor of this model")
            continue
        if leaf is None:
            continue  # num_batches_tracked
        where = (leaf.collection, leaf.path)
        if where not in targets:
            result.skipped.append(f"{label}: the model has no {leaf}")
            continue
        converted = array.transpose(leaf.transpose) if leaf.transpose else array
        expected = _leaf_shape(targets[where])
        if converted.shape != expected:
            result.skipped.append(f"{label}: shape {tuple(array.shape)} does not fit {leaf} {expected}")
            continue
        dtype = getattr(targets[where], "dtype", None)
        converted = converted.astype(np.dtype(dtype)) if dtype is not None else converted
        _set_nested(result.params if leaf.collection == "params" else result.batch_stats, leaf.path,
                    _c_contiguous(converted))
        result.loaded.append(key)
        filled.add(where)
    for collection, path in targets:
        if (collection, path) not in filled:
            result.kept.append(_torch_name(collection, path))
    result.kept.sort(key=original_order_key)
    if not result.loaded:
        raise InputError(f"{source}: none of its {len(state_dict)} tensors matches the model by name and shape "
                         "(a checkpoint for another backbone?); nothing to initialise from.")
    return result


def _torch_name(collection: str, path: tuple[str, ...]) -> str:
    try:
        return flax_leaf_to_torch_key(collection, path)[0]
    except KeyError:
        return "/".join((collection,) + path)
