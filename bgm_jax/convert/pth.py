"""Read PyTorch ``.pth`` checkpoints into numpy arrays without PyTorch, and without running their code.

``torch.save`` (torch >= 1.6) writes a zip archive: ``<folder>/data.pkl`` is a pickle of the saved
object in which every tensor refers, through a pickle "persistent id", to a raw little-endian storage
``<folder>/data/<key>``. The folder name is whatever the file was first called (``archive/``,
``pytorch_resnet50/``...), so it is found, not assumed.

A pickle can call any importable function, so :func:`load_pth` unpickles with an allow-list: the
container types a checkpoint needs (``collections.OrderedDict``, the ``torch.*Storage`` type names,
torch dtypes), the tensor rebuild functions (``torch._utils._rebuild_tensor_v2``/``_v3``,
``_rebuild_parameter``), which are replaced here by numpy implementations, and the numpy scalar and
array reconstructors (DeepLabV3 checkpoints store ``best_score`` as a ``numpy.float64``). Any other
global is refused with an :class:`~bgm_jax.errors.InputError` before anything is called. Tensor
views are bounds-checked against their storage before they are read.

Tensors come back as numpy arrays with their size, stride and storage offset applied (always a
C-contiguous copy; views that share a storage do not share memory afterwards). ``bfloat16`` and
the float8 types come back as the matching ``ml_dtypes`` types (ml_dtypes ships with jax): exact,
and ``.astype(np.float32)`` is lossless. A ``torch.nn.Parameter`` comes back as its plain array.

Also detected, with a clear error: the legacy (pre-1.6, non-zip) format, and TorchScript archives,
which are read through ``torch.jit.load`` when torch is installed and refused with an explanation
when it is not.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import re
import zipfile
from typing import Any

import numpy as np

from bgm_jax.errors import InputError

# Legacy typed-storage class names (torch/storage.py: _dtype_to_storage_type_map) -> numpy dtype.
# Strings with a byte order are fixed little-endian; names are resolved lazily for ml_dtypes types.
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
}
# Quantized storages hold integers whose meaning depends on scales stored elsewhere: refuse them.
_UNSUPPORTED_STORAGES = {"QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage"}

# torch dtype names (as pickled: GLOBAL 'torch float32') -> numpy dtype; used by _rebuild_tensor_v3.
_TORCH_DTYPES: dict[str, str] = {
    "float64": "<f8", "double": "<f8",
    "float32": "<f4", "float": "<f4",
    "float16": "<f2", "half": "<f2",
    "bfloat16": "bfloat16",
    "int64": "<i8", "long": "<i8",
    "int32": "<i4", "int": "<i4",
    "int16": "<i2", "short": "<i2",
    "int8": "i1",
    "uint8": "u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "bool": "bool",
    "complex64": "<c8", "cfloat": "<c8",
    "complex128": "<c16", "cdouble": "<c16",
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "float8_e4m3fnuz": "float8_e4m3fnuz",
    "float8_e5m2fnuz": "float8_e5m2fnuz",
    "float8_e8m0fnu": "float8_e8m0fnu",
}

_ML_DTYPES_NAMES = {"bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"}


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype for a name from the tables above (ml_dtypes types imported on first use)."""
    if name in _ML_DTYPES_NAMES:
        import ml_dtypes  # a jax dependency; only needed for these types

        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co. inside the pickle: just the element dtype."""

    def __init__(self, name: str, dtype_name: str | None):
        self.name = name
        self.dtype_name = dtype_name  # None: UntypedStorage (bytes; the tensor gives the dtype)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _TorchDtype:
    """Stands in for a ``torch.<dtype>`` object inside the pickle."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage's bytes (native byte order after loading) and its element dtype."""

    def __init__(self, raw: np.ndarray, dtype: np.dtype | None, key: str, big_endian_bytes: bool = False):
        self.raw = raw  # uint8, read-only
        self.dtype = dtype  # None: untyped bytes, typed by the tensor that uses them
        self.key = key
        self.big_endian_bytes = big_endian_bytes  # untyped bytes from a big-endian file, not yet swapped

    def elements(self, dtype: np.dtype) -> np.ndarray:
        usable = self.raw.size - self.raw.size % dtype.itemsize
        return self.raw[:usable].view(dtype)


def _byteswapped(raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Bytes of a big-endian storage, reordered to little-endian element by element."""
    unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize  # complex: swap each part
    if unit <= 1:
        return raw
    usable = raw.size - raw.size % unit
    return raw[:usable].view(f">u{unit}").astype(f"<u{unit}").view(np.uint8)


def _resolve_numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` for plain (non-object) dtypes only."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("numpy scalar with an object dtype or without raw bytes")
    if len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar of the wrong byte length")
    return np.frombuffer(bytes(data), dtype=dtype)[0]


_NDARRAY = object()  # stands in for numpy.ndarray in a pickle


def _resolve_numpy_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> Any:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)``: an empty array the pickle then fills."""
    if cls is not _NDARRAY or tuple(shape) != (0,):  # numpy always pickles (ndarray, (0,), b'b')
        raise pickle.UnpicklingError("numpy _reconstruct of something other than an empty numpy.ndarray")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode``, which protocol-2 pickles use for ``bytes`` values; text codecs only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than bytes")
    return text.encode(encoding)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch ``data.pkl`` using only allowed globals, with tensors built as numpy arrays."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str, big_endian: bool):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._big_endian = big_endian
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles name Python 2 modules (``__builtin__.set``); map them as pickle itself does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = self._allowed_global(module, name)
        if found is None:
            raise InputError(
                f"{self._source}: refusing to load: its pickle references the global `{module}.{name}`, which a "
                "checkpoint of tensors never needs (a checkpoint must not be able to run code). Only state_dicts "
                "of tensors with plain Python values can be read. If you trust this file, load it with torch.load "
                "and save just its state_dict (torch.save(model.state_dict(), path))."
            )
        return found

    def _allowed_global(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils":
            return {
                "_rebuild_tensor_v2": self._rebuild_tensor_v2,
                "_rebuild_tensor_v3": self._rebuild_tensor_v3,
                "_rebuild_parameter": self._rebuild_parameter,
                "_rebuild_parameter_with_state": self._rebuild_parameter_with_state,
            }.get(name)
        if name == "UntypedStorage" and module in ("torch", "torch.storage"):
            return _StorageType(name, None)
        if module in ("torch", "torch.cuda") and name != "Size":
            if name in _STORAGE_DTYPES:
                return _StorageType(name, _STORAGE_DTYPES[name])
            if name in _UNSUPPORTED_STORAGES:
                raise InputError(
                    f"{self._source}: holds quantized tensors (torch.{name}), which cannot be converted; "
                    "save a float checkpoint instead."
                )
            if module == "torch" and name in _TORCH_DTYPES:
                return _TorchDtype(name)
            return None
        if module == "builtins" and name in ("set", "frozenset", "complex", "slice", "range", "bytearray"):
            return {"set": set, "frozenset": frozenset, "complex": complex, "slice": slice, "range": range,
                    "bytearray": bytearray}[name]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return {"scalar": _resolve_numpy_scalar, "_reconstruct": _resolve_numpy_reconstruct}.get(name)
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY  # only usable as _reconstruct's first argument, never called directly
        if (module, name) == ("torch", "Size"):
            return tuple
        return None

    # -- storages --------------------------------------------------------------------------------

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)
                and pid[4] >= 0):
            raise InputError(
                f"{self._source}: unexpected persistent reference {pid!r} in data.pkl; this is not a "
                "state_dict saved by torch.save."
            )
        _, storage_type, key, _location, numel = pid
        if key in self._storages:
            return self._storages[key]
        dtype = numpy_dtype(storage_type.dtype_name) if storage_type.dtype_name else None
        nbytes = numel * (dtype.itemsize if dtype is not None else 1)
        record = f"{self._prefix}data/{key}"
        try:
            raw = self._archive.read(record)
        except KeyError:
            raise InputError(f"{self._source}: storage record `{record}` is missing; the file is incomplete.") from None
        if len(raw) < nbytes:
            raise InputError(
                f"{self._source}: storage record `{record}` holds {len(raw)} bytes but {storage_type!r} of "
                f"{numel} elements needs {nbytes}; the file is truncated or corrupt."
            )
        array = np.frombuffer(raw, dtype=np.uint8, count=nbytes)
        if self._big_endian and dtype is not None:
            array = _byteswapped(array, dtype)
        storage = _Storage(array, dtype, key, big_endian_bytes=self._big_endian and dtype is None)
        self._storages[key] = storage
        return storage

    # -- tensors ---------------------------------------------------------------------------------

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        if not isinstance(storage, _Storage) or storage.dtype is None:
            raise pickle.UnpicklingError("_rebuild_tensor_v2 without a typed storage")
        return self._tensor_from_storage(storage, storage.dtype, storage_offset, size, stride, metadata)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, backward_hooks,
                           dtype, metadata=None):
        if not isinstance(storage, _Storage) or not isinstance(dtype, _TorchDtype):
            raise pickle.UnpicklingError("_rebuild_tensor_v3 without a storage and a dtype")
        np_dtype = numpy_dtype(_TORCH_DTYPES[dtype.name])
        if storage.big_endian_bytes:
            storage = _Storage(_byteswapped(storage.raw, np_dtype), np_dtype, storage.key)
        return self._tensor_from_storage(storage, np_dtype, storage_offset, size, stride, metadata)

    def _tensor_from_storage(self, storage: _Storage, dtype: np.dtype, offset, size, stride, metadata):
        if not (_is_int_tuple(size) and _is_int_tuple(stride) and len(size) == len(stride)
                and isinstance(offset, int) and not isinstance(offset, bool)):
            raise pickle.UnpicklingError(f"malformed tensor geometry size={size!r} stride={stride!r}")
        elements = storage.elements(dtype)
        if min(size, default=1) == 0:
            return np.zeros(size, dtype=dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if offset < 0 or min(size, default=1) < 0 or min(stride, default=0) < 0 or last >= elements.size:
            raise InputError(
                f"{self._source}: a tensor of size {tuple(size)}, stride {tuple(stride)} and offset {offset} "
                f"reaches outside its storage `data/{storage.key}` ({elements.size} elements); the file is corrupt."
            )
        view = np.lib.stride_tricks.as_strided(
            elements[offset:], shape=tuple(size), strides=tuple(s * dtype.itemsize for s in stride), writeable=False
        )
        array = np.array(view, dtype=dtype, order="C")
        if metadata:
            array = self._apply_metadata(array, metadata)
        return array

    def _apply_metadata(self, array: np.ndarray, metadata: Any) -> np.ndarray:
        # torch stores lazily applied conjugation / negation bits here (torch._utils.get_tensor_metadata).
        if not isinstance(metadata, dict) or not set(metadata) <= {"conj", "neg"}:
            raise pickle.UnpicklingError(f"unknown tensor metadata {metadata!r}")
        if metadata.get("conj"):
            array = np.conj(array)
        if metadata.get("neg"):
            array = np.negative(array)
        return array

    @staticmethod
    def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
        return data

    @staticmethod
    def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
        return data


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _archive_prefix(archive: zipfile.ZipFile, source: str) -> str:
    """The single top-level folder holding ``data.pkl`` (``''`` if it sits at the root)."""
    prefixes = sorted({m.group(1) or "" for n in archive.namelist() if (m := re.fullmatch(r"([^/]+/)?data\.pkl", n))})
    if len(prefixes) != 1:
        found = "no data.pkl" if not prefixes else f"{len(prefixes)} data.pkl records ({', '.join(prefixes)})"
        raise InputError(
            f"{source}: is a zip archive but not a torch.save checkpoint ({found}); expected "
            "<folder>/data.pkl with <folder>/data/<n> storages."
        )
    return prefixes[0]


def is_torchscript_archive(archive: zipfile.ZipFile) -> bool:
    """TorchScript (``torch.jit.save``) archives carry ``constants.pkl`` and a ``code/`` folder."""
    return any(re.fullmatch(r"([^/]+/)?(constants\.pkl|code/.*)", name) for name in archive.namelist())


def load_pth(path: str | os.PathLike) -> Any:
    """Load the object saved in a torch zip-format checkpoint, with tensors as numpy arrays.

    Works without torch. Raises :class:`InputError` naming the file for anything that is not a plain
    checkpoint: a pickle global outside the allow-list, a legacy-format or corrupt file, a missing or
    short storage. TorchScript archives are loaded with torch when it is installed (see
    :func:`load_torchscript_state_dict`), otherwise refused with an explanation.
    """
    source = os.fspath(path)
    _check_readable(source)
    if not zipfile.is_zipfile(source):
        raise InputError(_not_a_zip_message(source))
    try:
        with zipfile.ZipFile(source) as archive:
            if is_torchscript_archive(archive):
                return load_torchscript_state_dict(source)
            prefix = _archive_prefix(archive, source)
            big_endian = _is_big_endian(archive, prefix, source)
            data = archive.read(f"{prefix}data.pkl")
            return _RestrictedUnpickler(data, archive, prefix, source, big_endian).load()
    except InputError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
            IndexError, AttributeError, OSError, RecursionError, OverflowError, MemoryError) as e:
        raise InputError(f"{source}: cannot read this checkpoint ({type(e).__name__}: {e}); the file is corrupt, "
                         "truncated or not a torch.save checkpoint.") from None


def _check_readable(source: str) -> None:
    if not os.path.exists(source):
        raise InputError(f"{source}: no such file.")
    if os.path.isdir(source):
        raise InputError(f"{source}: is a directory, expected a .pth checkpoint file.")


def _is_big_endian(archive: zipfile.ZipFile, prefix: str, source: str) -> bool:
    # Files from torch < 1.12 have no byteorder record; they were all written on little-endian machines.
    try:
        order = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
    except KeyError:
        return False
    if order not in ("little", "big"):
        raise InputError(f"{source}: unknown byte order record {order!r}; the file is corrupt.")
    return order == "big"


def _not_a_zip_message(source: str) -> str:
    with open(source, "rb") as f:
        head = f.read(16)
    if head[:1] == b"\x80":
        return (
            f"{source}: is a legacy (pre-1.6, non-zip) PyTorch checkpoint, which is not read without torch. "
            "Re-save it with torch >= 1.6: torch.save(torch.load(path), new_path)."
        )
    if head[:4] == b"PK\x03\x04":
        return f"{source}: is a damaged zip archive (truncated or corrupt download?); download it again."
    if len(head) >= 9 and head[8:9] == b"{":
        return f"{source}: looks like a .safetensors file, not a .pth checkpoint; load it as safetensors."
    if not head:
        return f"{source}: is empty, expected a torch.save checkpoint (a zip archive)."
    return f"{source}: is not a PyTorch checkpoint (torch.save writes a zip archive; this is not one)."


def load_torchscript_state_dict(path: str | os.PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """The state_dict of a TorchScript archive, as numpy arrays. Needs torch (imported here only).

    TorchScript stores compiled model code next to the weights, and only torch can read that format,
    so without torch this raises :class:`InputError` pointing at the plain ``.pth`` state_dict
    checkpoints, which :func:`load_pth` reads without torch. Unlike :func:`load_pth` this is not
    sandboxed by an allow-list: torch.jit.load runs the archive's TorchScript (``__setstate__``
    methods), which cannot call Python but can call any torch operator, so only load TorchScript
    files from a source you trust.
    """
    source = os.fspath(path)
    try:
        import torch
    except ImportError:
        raise InputError(
            f"{source}: is a TorchScript archive (torch.jit.save), which only PyTorch can read, and torch is not "
            "installed. Install torch (pip install torch) or use the plain state_dict checkpoint instead "
            "(e.g. pytorch_resnet50.pth rather than torchscript_resnet50_fp32.pth)."
        ) from None
    try:
        module = torch.jit.load(source, map_location="cpu")
    except Exception as e:  # torch raises RuntimeError subclasses with long C++ traces
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{source}: torch.jit.load failed: {first_line}") from None
    return collections.OrderedDict((k, _torch_tensor_to_numpy(v)) for k, v in module.state_dict().items())


def _torch_tensor_to_numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(numpy_dtype("bfloat16")).copy()
    return tensor.numpy().copy()
