"""bgm_jax.convert.safetensors reads and writes the safetensors format with numpy alone, exactly, and
reports damaged files as InputErrors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from bgm_jax.convert.safetensors import load_safetensors, load_safetensors_metadata, save_safetensors
from bgm_jax.convert.sources import read_state_dict
from bgm_jax.errors import InputError


def write_by_hand(path: Path, header: dict, buffer: bytes, pad_to: int = 8) -> None:
    """The file layout spelled out: u64 little-endian header length, JSON header, data buffer."""
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % pad_to)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + buffer)


def test_a_hand_written_file_reads_to_the_exact_values_dtypes_and_shapes(tmp_path):
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)                 # [[1, -2], [0.5, 3.25]]
    f16 = struct.pack("<3e", 1.5, -0.25, 65504.0)
    bf16 = struct.pack("<2H", 0x3F80, 0xC040)                       # bfloat16 bits of 1.0 and -3.0
    i64 = struct.pack("<2q", -(2**40), 7)
    flags = bytes([1, 0, 1])
    u8 = bytes([0, 255])
    parts = [("weight", "F32", [2, 2], f32), ("half", "F16", [3], f16), ("brain", "BF16", [2, 1], bf16),
             ("count", "I64", [2], i64), ("mask", "BOOL", [3], flags), ("pixels", "U8", [1, 2], u8),
             ("scalar", "F32", [], struct.pack("<f", 9.0)), ("nothing", "F32", [0, 4], b"")]
    header, buffer = {"__metadata__": {"format": "np", "source": "hand"}}, b""
    for name, dtype, shape, data in parts:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(buffer), len(buffer) + len(data)]}
        buffer += data
    path = tmp_path / "hand.safetensors"
    write_by_hand(path, header, buffer)

    loaded = load_safetensors(path)
    assert list(loaded) == [name for name, *_ in parts]  # buffer order
    expected = {
        "weight": np.array([[1.0, -2.0], [0.5, 3.25]], np.float32),
        "half": np.array([1.5, -0.25, 65504.0], np.float16),
        "brain": np.array([[1.0], [-3.0]], ml_dtypes.bfloat16),
        "count": np.array([-(2**40), 7], np.int64),
        "mask": np.array([True, False, True]),
        "pixels": np.array([[0, 255]], np.uint8),
        "scalar": np.array(9.0, np.float32),
        "nothing": np.zeros((0, 4), np.float32),
    }
    for name, value in expected.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        assert loaded[name].tobytes() == value.tobytes(), name
    assert loaded["weight"].flags.writeable
    assert load_safetensors_metadata(path) == {"format": "np", "source": "hand"}


def test_save_then_load_round_trips_every_supported_dtype_exactly(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "fp16": rng.standard_normal(5).astype(np.float16),
        "bf16": rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16),
        "fp8": rng.standard_normal(4).astype(ml_dtypes.float8_e4m3fn),
        "f64": rng.standard_normal(2),
        "bn.num_batches_tracked": np.array(12, np.int64),
        "i32": np.arange(-3, 3, dtype=np.int32),
        "u16": np.arange(3, dtype=np.uint16),
        "flags": np.array([True, False]),
        "big_endian": np.arange(3, dtype=">f4"),
        "transposed": rng.standard_normal((3, 2)).astype(np.float32).T,
    }
    path = tmp_path / "round.safetensors"
    save_safetensors(path, tensors, metadata={"model": "mattingrefine"})
    loaded = load_safetensors(path)
    assert list(loaded) == list(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
        assert loaded[name].dtype == value.dtype.newbyteorder("="), name
    assert load_safetensors_metadata(path) == {"model": "mattingrefine"}
    assert not list(tmp_path.glob("*.tmp-*"))  # the temporary file was renamed away


def test_read_state_dict_recognises_safetensors_by_content_not_name(tmp_path):
    path = tmp_path / "weights.bin"
    save_safetensors(path, {"decoder.conv4.bias": np.arange(37, dtype=np.float32)})
    loaded = read_state_dict(path)
    assert loaded.file_format == "safetensors"
    np.testing.assert_array_equal(loaded.tensors["decoder.conv4.bias"], np.arange(37, dtype=np.float32))


@pytest.fixture
def good_file(tmp_path) -> Path:
    path = tmp_path / "good.safetensors"
    save_safetensors(path, {"a": np.arange(6, dtype=np.float32), "b": np.ones(2, np.int64)})
    return path


def test_a_truncated_file_is_reported(good_file, tmp_path):
    data = good_file.read_bytes()
    for cut, message in [(4, "too short"), (20, "header length"), (len(data) - 3, "truncated")]:
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(InputError, match=message) as info:
            load_safetensors(path)
        assert str(info.value).startswith(str(path))


@pytest.mark.parametrize(("header", "buffer", "message"), [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "needs 8 bytes"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, b"\0" * 6, "overlaps"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "gap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9, "trailing bytes"),
    ({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "dtype Q9"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "malformed"),
    ({"a": [1, 2]}, b"", "malformed"),
])
def test_inconsistent_headers_are_reported_as_corrupt(tmp_path, header, buffer, message):
    path = tmp_path / "bad.safetensors"
    write_by_hand(path, header, buffer)
    with pytest.raises(InputError, match=message):
        load_safetensors(path)


def test_a_header_that_is_not_json_is_reported(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(struct.pack("<Q", 6) + b"{nope}")
    with pytest.raises(InputError, match="not valid JSON"):
        load_safetensors(path)


def test_the_reference_safetensors_package_agrees_in_both_directions(tmp_path):
    # never skipped: the package is in the test extra, so CI always checks the format against it
    import safetensors.numpy as numpy_api

    rng = np.random.default_rng(1)
    tensors = {"w": rng.standard_normal((3, 4)).astype(np.float32), "h": rng.standard_normal(5).astype(np.float16),
               "n": np.array(3, np.int64), "m": np.arange(4, dtype=np.uint8).reshape(2, 2)}
    theirs = tmp_path / "theirs.safetensors"
    numpy_api.save_file(tensors, str(theirs), metadata={"by": "safetensors"})
    ours_read = load_safetensors(theirs)
    assert load_safetensors_metadata(theirs) == {"by": "safetensors"}
    ours = tmp_path / "ours.safetensors"
    save_safetensors(ours, tensors)
    theirs_read = numpy_api.load_file(str(ours))
    for name, value in tensors.items():
        for read in (ours_read, theirs_read):
            assert read[name].dtype == value.dtype and read[name].shape == value.shape, name
            np.testing.assert_array_equal(read[name], value, err_msg=name)
