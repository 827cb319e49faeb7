"""Read and write ``.safetensors`` files with the standard library and numpy.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header
length N, N bytes of JSON, then one byte buffer. The JSON maps each tensor name to
``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets relative to the buffer,
data C-ordered little-endian), plus an optional ``"__metadata__"`` map of strings. Tensors must
exactly tile the buffer (no gaps, no overlaps); a file that breaks this is reported as corrupt, as
the reference implementation does.

``bfloat16`` and float8 tensors are returned as the matching ``ml_dtypes`` types (shipped with jax).

Why not the ``safetensors`` package's numpy API: it reads the same values (tests/test_safetensors.py
checks both directions against it), but its errors do not name the file ("invalid header length"),
and it would add a compiled dependency to conversion for what these ~180 lines do. It is a test
dependency only.
"""

from __future__ import annotations

import collections
import json
import os
import struct
from collections.abc import Mapping

import numpy as np

from bgm_jax.convert.pth import numpy_dtype
from bgm_jax.errors import InputError

# safetensors dtype code -> our dtype name (see pth.numpy_dtype), little-endian.
_DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "U8": "u1",
    "I8": "i1",
    "U16": "<u2",
    "I16": "<i2",
    "F16": "<f2",
    "BF16": "bfloat16",
    "U32": "<u4",
    "I32": "<i4",
    "F32": "<f4",
    "U64": "<u8",
    "I64": "<i8",
    "F64": "<f8",
    "C64": "<c8",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}

# The reference implementation refuses headers above 100 MB; a larger length means a corrupt file.
MAX_HEADER_BYTES = 100_000_000


def _dtype_code(dtype: np.dtype) -> str:
    for code, name in _DTYPES.items():
        if numpy_dtype(name) == dtype:
            return code
    raise InputError(f"dtype {dtype} cannot be stored in safetensors; cast it to float32 first.")


def _little_endian(array: np.ndarray) -> np.ndarray:
    return array.astype(array.dtype.newbyteorder("<")) if array.dtype.byteorder == ">" else array


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, int]:
    """The parsed JSON header of a safetensors file and the byte offset where its data buffer starts."""
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise InputError(f"{source}: no such file.")
    file_size = os.path.getsize(source)
    with open(source, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise InputError(f"{source}: is {len(prefix)} bytes long, too short for a safetensors file (truncated?).")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
            raise InputError(
                f"{source}: header length {header_len} does not fit in the {file_size}-byte file; the file is "
                "truncated or not a safetensors file."
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{source}: safetensors header is not valid JSON ({e}); the file is corrupt.") from None
    if not isinstance(header, dict):
        raise InputError(f"{source}: safetensors header is not a JSON object; the file is corrupt.")
    return header, 8 + header_len


def _tensor_entries(header: dict, source: str) -> list[tuple[str, np.dtype, tuple[int, ...], int, int]]:
    """(name, dtype, shape, begin, end) per tensor, validated, in buffer order."""
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(info, dict) and isinstance(info.get("dtype"), str)
                and isinstance(info.get("shape"), list) and isinstance(info.get("data_offsets"), list)
                and len(info["data_offsets"]) == 2
                and all(isinstance(v, int) and v >= 0 for v in info["shape"] + info["data_offsets"])):
            raise InputError(f"{source}: malformed header entry for tensor `{name}`: {info!r}; the file is corrupt.")
        if info["dtype"] not in _DTYPES:
            raise InputError(
                f"{source}: tensor `{name}` has dtype {info['dtype']}, which is not supported "
                f"(supported: {', '.join(_DTYPES)})."
            )
        dtype = numpy_dtype(_DTYPES[info["dtype"]])
        shape = tuple(info["shape"])
        begin, end = info["data_offsets"]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if end - begin != expected:
            raise InputError(
                f"{source}: tensor `{name}` ({info['dtype']} {list(shape)}) needs {expected} bytes but its data "
                f"offsets [{begin}, {end}] span {end - begin}; the file is corrupt."
            )
        entries.append((name, dtype, shape, begin, end))
    entries.sort(key=lambda e: (e[3], e[4]))
    return entries


def _check_tiling(entries, buffer_size: int, source: str) -> None:
    position = 0
    for name, _, _, begin, end in entries:
        if begin != position:
            problem = "overlaps the previous tensor" if begin < position else f"leaves a gap before it at {position}"
            raise InputError(f"{source}: tensor `{name}` starts at byte {begin} and {problem}; the file is corrupt.")
        position = end
    if position != buffer_size:
        raise InputError(
            f"{source}: the tensors cover {position} bytes of the {buffer_size}-byte data buffer; the file is "
            + ("truncated." if position > buffer_size else "corrupt (trailing bytes).")
        )


def load_safetensors(path: str | os.PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """All tensors of a safetensors file as numpy arrays, in file order. Raises InputError if invalid."""
    source = os.fspath(path)
    header, data_start = read_safetensors_header(source)
    entries = _tensor_entries(header, source)
    _check_tiling(entries, os.path.getsize(source) - data_start, source)
    tensors: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    with open(source, "rb") as f:
        for name, dtype, shape, begin, end in entries:
            f.seek(data_start + begin)
            data = bytearray(f.read(end - begin))  # bytearray: the array owns writable memory
            if len(data) != end - begin:
                raise InputError(f"{source}: tensor `{name}` is cut short; the file is truncated.")
            tensors[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return tensors


def load_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The optional ``__metadata__`` string map of a safetensors file (empty if absent)."""
    source = os.fspath(path)
    header, _ = read_safetensors_header(source)
    metadata = header.get("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise InputError(f"{source}: __metadata__ must map strings to strings; the file is corrupt.")
    return metadata


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` in safetensors format (via a temporary name, renamed on success)."""
    target = os.fspath(path)
    arrays = {name: _little_endian(np.asarray(value)) for name, value in tensors.items()}
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, array in arrays.items():
        if name == "__metadata__":
            raise InputError("a tensor may not be called __metadata__ in safetensors.")
        header[name] = {"dtype": _dtype_code(array.dtype), "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the reference writer aligns the buffer to 8 bytes
    temporary = f"{target}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            f.write(struct.pack("<Q", len(encoded)))
            f.write(encoded)
            for array in arrays.values():
                f.write(np.ascontiguousarray(array).tobytes())
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
