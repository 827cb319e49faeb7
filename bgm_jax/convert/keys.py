"""The table between the original PyTorch state_dict keys and the Flax ``params``/``batch_stats`` trees.

Module paths map by one rule, so the table is a function rather than a list: each numeric component
joins the name before it with ``_`` and the remaining dots separate modules::

    backbone.layer1.0.downsample.0   ->  backbone / layer1_0 / downsample_0
    backbone.features.3.conv.0.0     ->  backbone / features_3 / conv_0_0
    aspp.convs.4.1                   ->  aspp / convs_4_1

Leaves (the only tensors this architecture has: bias-free convs, two convs with bias, BatchNorms):

=============================  ======================================================
torch leaf                     Flax leaf
=============================  ======================================================
conv ``weight`` (O, I, kH, kW)  ``params/.../kernel`` (kH, kW, I, O): transpose (2, 3, 1, 0)
conv or BN ``bias``             ``params/.../bias``
BN ``weight`` (C,)              ``params/.../scale``
BN ``running_mean``             ``batch_stats/.../mean``
BN ``running_var``              ``batch_stats/.../var``
BN ``num_batches_tracked``      ignored (by name only; Flax does not count batches)
=============================  ======================================================

Depthwise kernels (C, 1, 3, 3) become (3, 3, 1, C), as Flax expects with ``feature_group_count=C``.

:func:`torch_to_flax` converts with strict accounting against a target tree of shapes (what
``jax.eval_shape(model.init, ...)`` returns): every source key must map to a target leaf of the same
shape and every target leaf must be filled; all problems are collected into one
:class:`ConversionError`. :func:`flax_to_torch` is the exact inverse. :func:`detect_config` reads
the backbone, base/refine and refiner kernel size from the keys and shapes alone. Nothing here
imports jax or torch.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bgm_jax.errors import InputError

IGNORED_LEAF = "num_batches_tracked"
CONV_TORCH_TO_FLAX = (2, 3, 1, 0)  # OIHW -> HWIO
CONV_FLAX_TO_TORCH = (3, 2, 0, 1)  # HWIO -> OIHW
COLLECTIONS = ("params", "batch_stats")

# (torch leaf name, rank) -> (collection, flax leaf name, transpose or None)
_LEAF_RULES: dict[tuple[str, int], tuple[str, str, tuple[int, ...] | None]] = {
    ("weight", 4): ("params", "kernel", CONV_TORCH_TO_FLAX),
    ("weight", 1): ("params", "scale", None),
    ("bias", 1): ("params", "bias", None),
    ("running_mean", 1): ("batch_stats", "mean", None),
    ("running_var", 1): ("batch_stats", "var", None),
}
# (collection, flax leaf name) -> (torch leaf name, transpose or None); "bias" serves conv and BN alike.
_INVERSE_LEAF_RULES: dict[tuple[str, str], tuple[str, tuple[int, ...] | None]] = {
    ("params", "kernel"): ("weight", CONV_FLAX_TO_TORCH),
    ("params", "scale"): ("weight", None),
    ("params", "bias"): ("bias", None),
    ("batch_stats", "mean"): ("running_mean", None),
    ("batch_stats", "var"): ("running_var", None),
}
# Order of a module's entries in a torch state_dict.
_TORCH_LEAF_ORDER = ("weight", "bias", "running_mean", "running_var", IGNORED_LEAF)

_RESNET_LAYER3_BLOCKS = {6: "resnet50", 23: "resnet101"}

# How many problems a ConversionError message lists before summarising the rest.
_MAX_LISTED_PROBLEMS = 25


class ConversionError(InputError):
    """A checkpoint does not fit the model. ``problems`` holds every problem found, one line each."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = list(problems)
        listed = problems[:_MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        super().__init__(
            f"{source}: does not fit the model ({len(problems)} problem{'s' * (len(problems) != 1)}): "
            + "; ".join(listed)
            + (f"; ... and {more} more" if more else "")
        )


@dataclass(frozen=True)
class FlaxLeaf:
    """Where one torch tensor goes: ``collection`` ('params' or 'batch_stats'), path, and layout change."""

    collection: str
    path: tuple[str, ...]
    transpose: tuple[int, ...] | None

    def __str__(self) -> str:
        return "/".join((self.collection,) + self.path)


def torch_module_to_flax_path(module_path: str) -> tuple[str, ...]:
    """``'backbone.layer1.0.downsample.0'`` -> ``('backbone', 'layer1_0', 'downsample_0')``."""
    return tuple(re.sub(r"\.(\d+)", r"_\1", module_path).split("."))


def flax_path_to_torch_module(path: tuple[str, ...]) -> str:
    """Inverse of :func:`torch_module_to_flax_path`: ``('aspp', 'convs_4_1')`` -> ``'aspp.convs.4.1'``."""
    return re.sub(r"_(\d+)(?=[._]|$)", r".\1", ".".join(path))


def torch_key_to_flax(key: str, shape: tuple[int, ...]) -> FlaxLeaf | None:
    """The Flax leaf for a torch state_dict entry, or ``None`` for ``num_batches_tracked``.

    Raises ``KeyError`` with the reason when the entry is not a tensor this architecture has.
    """
    module, _, leaf = key.rpartition(".")
    if leaf == IGNORED_LEAF:
        return None
    rule = _LEAF_RULES.get((leaf, len(shape)))
    if not module or rule is None:
        raise KeyError(f"`{key}` {tuple(shape)} is not a conv or BatchNorm tensor")
    path = torch_module_to_flax_path(module)
    if flax_path_to_torch_module(path) != module:  # e.g. a torch name that itself contains `_0`
        raise KeyError(f"`{key}`: module name `{module}` does not survive the name mapping")
    collection, flax_leaf, transpose = rule
    return FlaxLeaf(collection, path + (flax_leaf,), transpose)


def flax_leaf_to_torch_key(collection: str, path: tuple[str, ...]) -> tuple[str, tuple[int, ...] | None]:
    """The torch state_dict key (and the transpose to apply) for a Flax leaf. ``KeyError`` if none."""
    rule = _INVERSE_LEAF_RULES.get((collection, path[-1]))
    if rule is None or len(path) < 2:
        raise KeyError(f"{collection}/{'/'.join(path)} has no PyTorch counterpart")
    torch_leaf, transpose = rule
    return f"{flax_path_to_torch_module(path[:-1])}.{torch_leaf}", transpose


def _leaf_shape(leaf: Any) -> tuple[int, ...] | None:
    """Shape of a target leaf: a ``jax.ShapeDtypeStruct``/array (``.shape``) or a plain tuple of ints."""
    if hasattr(leaf, "shape"):
        return tuple(int(d) for d in leaf.shape)
    if isinstance(leaf, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in leaf):
        return tuple(int(d) for d in leaf)
    return None


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat: dict[tuple[str, ...], Any] = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix + (str(name),)))
        else:
            flat[prefix + (str(name),)] = value
    return flat


def _set_nested(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def _target_leaves(target_shapes: Mapping) -> dict[tuple[str, tuple[str, ...]], Any]:
    """``{(collection, path): leaf}`` for the ``params``/``batch_stats`` collections of a variables tree."""
    if not isinstance(target_shapes, Mapping) or "params" not in target_shapes:
        raise TypeError("target_shapes must be a variables tree with a 'params' collection "
                        "(e.g. jax.eval_shape(model.init, ...))")
    leaves = {}
    for collection in COLLECTIONS:
        for path, leaf in _flatten(target_shapes.get(collection, {})).items():
            if _leaf_shape(leaf) is None:
                raise TypeError(f"target leaf {collection}/{'/'.join(path)} has no shape: {leaf!r}")
            leaves[(collection, path)] = leaf
    return leaves


def _target_dtype(leaf: Any) -> np.dtype | None:
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else None


def torch_to_flax(state_dict: Mapping[str, Any], target_shapes: Mapping, *,
                  source: str = "checkpoint") -> tuple[dict, dict]:
    """Convert a torch state_dict (numpy arrays) to Flax ``(params, batch_stats)`` nested dicts of numpy.

    ``target_shapes`` is the model's variables tree (``{'params': ..., 'batch_stats': ...}``) with
    leaves that have ``.shape`` (``jax.ShapeDtypeStruct``) or are shape tuples. Strict: every source
    key must land on a target leaf of the right shape (``num_batches_tracked`` is skipped by name),
    every target leaf must be filled. All problems are raised together as one :class:`ConversionError`
    whose message starts with ``source``. Values are cast to the target leaf's dtype when it has one
    (e.g. a float16 checkpoint into float32 params); integer data for a float leaf is a problem.
    """
    targets = _target_leaves(target_shapes)
    filled: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
    problems: list[str] = []
    for key, value in state_dict.items():
        array = np.asarray(value)
        try:
            leaf = torch_key_to_flax(key, array.shape)
        except KeyError as e:
            problems.append(f"unexpected {e.args[0]}")
            continue
        if leaf is None:
            continue
        where = (leaf.collection, leaf.path)
        if where not in targets:
            problems.append(f"unexpected `{key}`: the model has no {leaf}")
            continue
        converted = array.transpose(leaf.transpose) if leaf.transpose else array
        expected = _leaf_shape(targets[where])
        if converted.shape != expected:
            problems.append(_shape_problem(key, array.shape, leaf, expected))
            continue
        dtype = _target_dtype(targets[where])
        if dtype is not None and dtype != converted.dtype:
            if _is_floating(dtype) and not _is_floating(converted.dtype):
                problems.append(f"`{key}` holds {converted.dtype} data but {leaf} is {dtype}")
                continue
            converted = converted.astype(dtype)
        filled[where] = _c_contiguous(converted)
    for collection, path in targets:
        if (collection, path) not in filled and not _already_reported(collection, path, state_dict):
            problems.append(f"missing {_describe_missing(collection, path)}")
    if problems:
        raise ConversionError(source, problems)
    params: dict = {}
    batch_stats: dict = {}
    for (collection, path), array in filled.items():
        _set_nested(params if collection == "params" else batch_stats, path, array)
    return params, batch_stats


def _c_contiguous(array: np.ndarray) -> np.ndarray:
    # Not np.ascontiguousarray: it turns 0-d arrays (num_batches_tracked) into shape (1,).
    return array if array.flags.c_contiguous else array.copy(order="C")


def _is_floating(dtype: np.dtype) -> bool:
    # ml_dtypes' bfloat16/float8 report kind 'V'; they are floating point all the same.
    return dtype.kind in "fc" or "float" in dtype.name


def _shape_problem(key: str, torch_shape: tuple, leaf: FlaxLeaf, expected: tuple) -> str:
    if leaf.transpose:
        as_torch = tuple(expected[i] for i in CONV_FLAX_TO_TORCH)
        return (f"`{key}` has shape {tuple(torch_shape)} but the model's {leaf} is {expected} "
                f"(= {as_torch} in PyTorch layout)")
    return f"`{key}` has shape {tuple(torch_shape)} but the model's {leaf} is {expected}"


def _already_reported(collection: str, path: tuple[str, ...], state_dict: Mapping) -> bool:
    """A target whose torch key is present was already reported (shape or dtype problem)."""
    try:
        key, _ = flax_leaf_to_torch_key(collection, path)
    except KeyError:
        return False
    return key in state_dict


def _describe_missing(collection: str, path: tuple[str, ...]) -> str:
    name = "/".join((collection,) + path)
    try:
        key, _ = flax_leaf_to_torch_key(collection, path)
    except KeyError:
        return f"{name} (no PyTorch key maps to it)"
    return f"`{key}` (for {name})"


def flax_to_torch(params: Mapping, batch_stats: Mapping | None = None) -> "collections.OrderedDict[str, np.ndarray]":
    """The PyTorch state_dict (numpy arrays, OIHW conv weights) for Flax ``params``/``batch_stats``.

    The exact inverse of :func:`torch_to_flax`; adds ``num_batches_tracked`` (int64 zero, which
    PyTorch only uses when BatchNorm momentum is None) for every BatchNorm so that the original's
    ``load_state_dict(strict=True)`` accepts the result. Keys come in the original's order
    (:func:`original_order_key`) whatever the order of the trees, which Orbax and ``jax.tree_util``
    sort alphabetically.
    """
    by_module: dict[str, dict[str, np.ndarray]] = {}
    batch_norm_modules = set()
    for collection, tree in (("params", params), ("batch_stats", batch_stats or {})):
        for path, value in _flatten(tree).items():
            key, transpose = flax_leaf_to_torch_key(collection, path)
            module, _, torch_leaf = key.rpartition(".")
            array = np.asarray(value)
            by_module.setdefault(module, {})[torch_leaf] = array.transpose(transpose) if transpose else array
            if path[-1] in ("scale", "mean", "var"):
                batch_norm_modules.add(module)
    state_dict: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for module, leaves in sorted(by_module.items(), key=lambda item: _module_order_key(item[0])):
        if module in batch_norm_modules:
            leaves[IGNORED_LEAF] = np.array(0, dtype=np.int64)
        for torch_leaf in _TORCH_LEAF_ORDER:
            if torch_leaf in leaves:
                state_dict[f"{module}.{torch_leaf}"] = _c_contiguous(leaves[torch_leaf])
    return state_dict


# Sibling modules the original registers by name, in registration order: the model's top level,
# MobileNetV2 (features, InvertedResidual.conv), ASPP (convs, project) and a Bottleneck's shortcut,
# which torchvision registers after conv1..bn3.
_NAMED_MODULE_ORDER = ("backbone", "aspp", "decoder", "refiner", "features", "conv", "convs", "project",
                       "downsample")


def _module_name_rank(name: str) -> tuple:
    """Where a module name sorts among its siblings in the original's state_dict."""
    if name.isdigit():  # nn.Sequential / nn.ModuleList children
        return (0, int(name), "")
    if m := re.fullmatch(r"(conv|bn)(\d+)", name):  # conv1, bn1, conv2, bn2, ... (ResNet, decoder, refiner)
        return (1, 2 * int(m.group(2)) + (m.group(1) == "bn"), "")
    if m := re.fullmatch(r"layer(\d+)", name):  # ResNet layer1..4, after the stem's conv1/bn1
        return (2, int(m.group(1)), "")
    if name in _NAMED_MODULE_ORDER:
        return (3, _NAMED_MODULE_ORDER.index(name), "")
    return (4, 0, name)  # not a module of this architecture: after the known ones, alphabetically


def _module_order_key(module: str) -> tuple:
    # A module's own tensors come before its children's: shorter tuples sort first on a common prefix.
    return tuple(_module_name_rank(name) for name in module.split("."))


def original_order_key(key: str) -> tuple:
    """Sort key that puts BackgroundMattingV2 state_dict keys in the original's order (module
    registration order, then weight, bias, running_mean, running_var, num_batches_tracked)."""
    module, _, leaf = key.rpartition(".")
    rank = _TORCH_LEAF_ORDER.index(leaf) if leaf in _TORCH_LEAF_ORDER else len(_TORCH_LEAF_ORDER)
    return (_module_order_key(module), rank, leaf)


def _block_count(keys, pattern: str) -> int:
    indices = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(indices) + 1 if indices else 0


def detect_config(state_dict: Mapping[str, Any], *, source: str = "checkpoint") -> dict:
    """Model settings implied by a BackgroundMattingV2 state_dict's keys and shapes.

    Returns ``{'model_type': 'refine' | 'base', 'backbone': 'resnet50' | 'resnet101' | 'mobilenetv2',
    'refine_kernel_size': 3 | 1 | None}`` (``None`` for a base model, which has no refiner).
    Raises :class:`InputError` naming ``source`` when the dict is not a full BackgroundMattingV2 model
    (for instance an ImageNet or DeepLabV3 checkpoint, which can only initialise part of one).
    """
    keys = list(state_dict)
    shape = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
    if not any(k.startswith("backbone.") for k in keys):
        raise InputError(f"{source}: {_not_matting_reason(keys)}")
    if "backbone.features.0.0.weight" in shape:
        backbone, first_conv = "mobilenetv2", "backbone.features.0.0.weight"
    elif "backbone.conv1.weight" in shape:
        blocks = _block_count(keys, r"backbone\.layer3\.(\d+)\.")
        if blocks not in _RESNET_LAYER3_BLOCKS:
            raise InputError(f"{source}: its ResNet backbone has {blocks} blocks in layer3; expected 6 (ResNet-50) "
                             "or 23 (ResNet-101).")
        backbone, first_conv = _RESNET_LAYER3_BLOCKS[blocks], "backbone.conv1.weight"
    else:
        raise InputError(f"{source}: its backbone.* keys are neither ResNet (backbone.conv1) nor MobileNetV2 "
                         "(backbone.features.0.0); this is not a BackgroundMattingV2 checkpoint.")
    if len(shape[first_conv]) != 4 or shape[first_conv][1] != 6:
        raise InputError(
            f"{source}: `{first_conv}` has shape {shape[first_conv]}; a BackgroundMattingV2 backbone takes 6 input "
            "channels (source and background RGB). An ImageNet or segmentation backbone can only initialise "
            "training, not be converted as a matting model."
        )
    if "decoder.conv4.weight" not in shape or not any(k.startswith("aspp.") for k in keys):
        raise InputError(f"{source}: has a backbone but no aspp.* / decoder.* weights; this is not a complete "
                         "BackgroundMattingV2 model (for training initialisation use a partial load).")
    refiner_keys = [k for k in keys if k.startswith("refiner.")]
    if not refiner_keys:
        return {"model_type": "base", "backbone": backbone, "refine_kernel_size": None}
    return {"model_type": "refine", "backbone": backbone, "refine_kernel_size": _refiner_kernel_size(shape, source)}


def _refiner_kernel_size(shape: dict[str, tuple], source: str) -> int:
    sizes = {}
    for i in range(1, 5):
        key = f"refiner.conv{i}.weight"
        if key not in shape or len(shape[key]) != 4:
            raise InputError(f"{source}: has refiner.* keys but `{key}` is missing or not a conv weight; "
                             "the checkpoint is incomplete.")
        sizes[key] = shape[key][2:]
    distinct = set(sizes.values())
    if len(distinct) != 1 or next(iter(distinct)) not in ((3, 3), (1, 1)):
        found = ", ".join(f"{k} {v[0]}x{v[1]}" for k, v in sizes.items())
        raise InputError(f"{source}: refiner kernels must all be 3x3 or all 1x1; found {found}.")
    return next(iter(distinct))[0]


def _not_matting_reason(keys: list[str]) -> str:
    if "conv1.weight" in keys or any(k.startswith("features.") for k in keys):
        return ("has no backbone.* keys; it looks like a torchvision ImageNet classifier, which can only "
                "initialise a backbone for training, not be converted as a matting model.")
    if any(k.startswith("classifier.classifier.") for k in keys):
        return ("looks like a DeepLabV3 segmentation checkpoint, which can only initialise training "
                "(backbone and ASPP), not be converted as a matting model.")
    sample = ", ".join(keys[:3]) if keys else "none"
    return f"has no backbone.* keys (first keys: {sample}); this is not a BackgroundMattingV2 checkpoint."


def count_parameters(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """Trainable parameter counts per top-level module plus ``'total'`` (BatchNorm running
    statistics and ``num_batches_tracked`` are buffers, not parameters, as in PyTorch)."""
    counts: dict[str, int] = collections.Counter()
    for key, value in state_dict.items():
        if key.rpartition(".")[2] in ("running_mean", "running_var", IGNORED_LEAF):
            continue
        size = int(np.prod(np.shape(value), dtype=np.int64))
        counts[key.split(".", 1)[0]] += size
        counts["total"] += size
    return dict(counts)
