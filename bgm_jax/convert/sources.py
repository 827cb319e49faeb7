"""Open a weights file of any supported kind and find the state_dict inside it.

:func:`read_state_dict` accepts ``.pth`` (torch zip format, read without torch), TorchScript archives
(torch needed) and ``.safetensors``, telling them apart by their first bytes rather than their file
names. Training checkpoints that wrap the weights in a dict (DeepLabV3:
``{'model_state': ..., 'optimizer_state': ..., 'cur_itrs': ..., 'best_score': ...}``) are unwrapped,
and a ``module.`` prefix left by ``nn.DataParallel`` is removed; both are reported in ``notes``.
"""

from __future__ import annotations

import collections
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bgm_jax.convert.pth import is_torchscript_archive, load_pth
from bgm_jax.convert.safetensors import load_safetensors
from bgm_jax.errors import InputError

# Keys under which training scripts commonly store the model weights, most specific first.
STATE_DICT_KEYS = ("model_state", "state_dict", "model")
DATA_PARALLEL_PREFIX = "module."


@dataclass
class LoadedStateDict:
    """A flat ``{key: numpy array}`` state_dict, the file format, and what was done to find it."""

    tensors: "collections.OrderedDict[str, np.ndarray]"
    file_format: str  # 'pth', 'torchscript' or 'safetensors'
    notes: list[str] = field(default_factory=list)


def sniff_format(path: str | os.PathLike) -> str:
    """'pth' (zip archive), 'torchscript' (zip archive with compiled code), 'safetensors' or 'unknown'."""
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise InputError(f"{source}: no such file.")
    with open(source, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(source) as archive:
                return "torchscript" if is_torchscript_archive(archive) else "pth"
        except zipfile.BadZipFile:
            return "pth"  # load_pth reports the damage
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def read_state_dict(path: str | os.PathLike) -> LoadedStateDict:
    """The flat state_dict stored in ``path`` (numpy arrays, original key order). Never runs code from
    the file; raises :class:`InputError` naming the file when it holds no usable state_dict."""
    source = os.fspath(path)
    kind = sniff_format(source)
    if kind == "safetensors":
        return LoadedStateDict(load_safetensors(source), "safetensors")
    obj = load_pth(source)  # also produces the specific error for legacy, TorchScript or unknown files
    tensors, notes = extract_state_dict(obj, source)
    return LoadedStateDict(tensors, "torchscript" if kind == "torchscript" else "pth", notes)


def _is_flat_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def extract_state_dict(obj: Any, source: str = "checkpoint"
                       ) -> tuple["collections.OrderedDict[str, np.ndarray]", list[str]]:
    """Find the state_dict in a loaded checkpoint object: the object itself if it is a flat mapping of
    arrays, else its ``model_state``/``state_dict``/``model`` entry. Returns (state_dict, notes)."""
    notes: list[str] = []
    if isinstance(obj, Mapping) and not _is_flat_state_dict(obj):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping) and _is_flat_state_dict(obj[key]):
                others = [str(k) for k in obj if k != key]
                notes.append(f"took the weights from the '{key}' entry"
                             + (f" (ignored: {', '.join(others)})" if others else ""))
                obj = obj[key]
                break
    if not (isinstance(obj, Mapping) and _is_flat_state_dict(obj)):
        raise InputError(f"{source}: holds no state_dict ({_describe(obj)}); expected a dict of tensors, "
                         f"or a dict with one under {' / '.join(repr(k) for k in STATE_DICT_KEYS)}.")
    tensors = collections.OrderedDict(obj)
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in tensors):
        tensors = collections.OrderedDict((k[len(DATA_PARALLEL_PREFIX):], v) for k, v in tensors.items())
        notes.append("removed the 'module.' prefix that nn.DataParallel adds to every key")
    return tensors, notes


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj)[:6]
        return f"a dict with keys {', '.join(repr(k) for k in keys)}{', ...' if len(obj) > 6 else ''}"
    return f"a {type(obj).__name__}"
