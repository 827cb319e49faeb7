"""bgm_jax.convert.pth reads torch.save checkpoints to exactly the saved values, without torch, and never
runs code from the file. Files are written here with the installed torch; the reading that must work
without torch runs in a subprocess where `import torch` fails."""

from __future__ import annotations

import collections
import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("BGM_REQUIRE_TORCH") != "1":  # under CI a missing torch fails collection instead
    pytest.importorskip("torch")
import torch  # noqa: E402

import torch_reference as ref  # noqa: E402
from bgm_jax.convert.pth import load_pth  # noqa: E402
from bgm_jax.convert.sources import read_state_dict  # noqa: E402
from bgm_jax.errors import InputError  # noqa: E402

# Runs in a fresh interpreter: torch is made unimportable before bgm_jax is imported, then the
# requested reader runs and its result (or the InputError text) is pickled back to the test.
NO_TORCH_READER = r"""
import pickle, sys
sys.modules["torch"] = None  # every `import torch` / `import torch.x` now raises ImportError
path, out, what = sys.argv[1:4]
from bgm_jax.errors import InputError
try:
    if what == "load_pth":
        from bgm_jax.convert.pth import load_pth
        result = {"value": load_pth(path)}
    else:
        from bgm_jax.convert.keys import detect_config
        from bgm_jax.convert.sources import read_state_dict
        loaded = read_state_dict(path)
        result = {"value": loaded.tensors, "notes": loaded.notes, "format": loaded.file_format,
                  "config": detect_config(loaded.tensors, source=path)}
except InputError as e:
    result = {"error": str(e)}
result["torch_modules"] = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
result["torch_entry"] = repr(sys.modules.get("torch"))
with open(out, "wb") as f:
    pickle.dump(result, f)
"""


def read_without_torch(path: Path, what: str = "load_pth") -> dict:
    out = path.parent / f"{path.name}.result.pkl"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_READER, str(path), str(out), what],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        result = pickle.load(f)
    # Nothing torch-like was imported: the only entry is the blocker itself.
    assert result["torch_modules"] == ["torch"] and result["torch_entry"] == "None"
    return result


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The exact values of a tensor (bfloat16 / float8 bits reinterpreted, not rounded)."""
    import ml_dtypes

    tensor = tensor.detach().resolve_conj().resolve_neg().contiguous()
    special = {torch.bfloat16: (torch.int16, ml_dtypes.bfloat16),
               torch.float8_e4m3fn: (torch.int8, ml_dtypes.float8_e4m3fn),
               torch.uint16: (torch.int16, np.uint16)}
    if tensor.dtype in special:
        bits, dtype = special[tensor.dtype]
        return tensor.view(bits).numpy().view(dtype)
    return tensor.numpy()


def assert_same(loaded: np.ndarray, tensor: torch.Tensor, name: str = "") -> None:
    expected = as_numpy(tensor)
    assert isinstance(loaded, np.ndarray), name
    assert loaded.dtype == expected.dtype and loaded.shape == expected.shape, name
    # Bitwise: float equality would also accept -0.0 == 0.0, and NaNs would never compare equal.
    assert loaded.tobytes() == expected.tobytes(), name


# ----------------------------------------------------------------------------- reading, no torch


def test_a_saved_reference_state_dict_reads_without_torch_to_identical_arrays_and_config(tmp_path):
    model = ref.random_model("refine", "mobilenetv2", seed=0)
    state = model.state_dict()
    path = tmp_path / "pytorch_mobilenetv2.pth"
    torch.save(state, path)
    result = read_without_torch(path, what="read_state_dict")
    assert "error" not in result, result.get("error")
    assert result["format"] == "pth" and result["notes"] == []
    assert result["config"] == {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
    loaded = result["value"]
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        assert_same(loaded[key], tensor, key)


def test_a_deeplabv3_training_checkpoint_reads_without_torch_with_all_its_python_values(tmp_path):
    # The layout of VainF/DeepLabV3Plus-Pytorch checkpoints: weights under 'model_state', an SGD
    # state with momentum buffers, an LR-scheduler state, and best_score as a numpy float64.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    net(torch.rand(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    checkpoint = {"cur_itrs": 30_000, "model_state": net.state_dict(), "optimizer_state": optimizer.state_dict(),
                  "scheduler_state": scheduler.state_dict(), "best_score": np.float64(0.7721),
                  "class_iou": np.array([0.93, 0.71], dtype=np.float32)}
    path = tmp_path / "best_deeplabv3_resnet50_voc_os16.pth"
    torch.save(checkpoint, path)

    result = read_without_torch(path)
    assert "error" not in result, result.get("error")
    loaded = result["value"]
    assert loaded["cur_itrs"] == 30_000
    assert type(loaded["best_score"]) is np.float64 and loaded["best_score"] == np.float64(0.7721)
    for key, tensor in checkpoint["model_state"].items():
        assert_same(loaded["model_state"][key], tensor, key)
    assert loaded["optimizer_state"]["param_groups"] == checkpoint["optimizer_state"]["param_groups"]
    for index, state in checkpoint["optimizer_state"]["state"].items():
        assert_same(loaded["optimizer_state"]["state"][index]["momentum_buffer"], state["momentum_buffer"])
    assert loaded["scheduler_state"] == checkpoint["scheduler_state"]
    np.testing.assert_array_equal(loaded["class_iou"], checkpoint["class_iou"])

    unwrapped = read_state_dict(path)
    assert list(unwrapped.tensors) == list(checkpoint["model_state"])
    assert unwrapped.notes == ["took the weights from the 'model_state' entry "
                               "(ignored: cur_itrs, optimizer_state, scheduler_state, best_score, class_iou)"]


# ----------------------------------------------------------------------------- tensor geometry


def test_views_with_strides_offsets_and_shared_storage_rebuild_exactly(tmp_path):
    base = torch.randn(6, 5)
    conv_weight = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    tensors = collections.OrderedDict(
        transposed=base.t(),                      # strides (1, 5)
        row_slice=base[2:5],                      # storage offset 10, shares base's storage
        column_slice=base[:, 1:4],                # offset 1, non-contiguous rows
        every_other=base[::2, ::2],               # strides (10, 2)
        expanded=torch.randn(3, 1).expand(3, 4),  # stride 0
        whole=base,
        channels_last=conv_weight,                # the memory format of some exported weights
        scalar=torch.tensor(2.5),
        empty=torch.zeros(0, 3),
    )
    assert tensors["transposed"].stride() == (1, 5) and tensors["expanded"].stride()[1] == 0
    path = tmp_path / "views.pth"
    torch.save(tensors, path)
    loaded = load_pth(path)
    for name, tensor in tensors.items():
        assert_same(loaded[name], tensor, name)
        assert loaded[name].flags.c_contiguous and loaded[name].flags.owndata, name
    loaded["row_slice"][0, 0] = 1e9  # a copy each: writing one view does not change another
    assert loaded["whole"][2, 0] == base[2, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                                   torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64,
                                   torch.uint16, torch.float8_e4m3fn], ids=lambda d: str(d).removeprefix("torch."))
def test_every_storage_dtype_reads_bit_exactly(tmp_path, dtype):
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(4, 6, generator=generator) * 100
    if dtype == torch.complex64:
        tensor = torch.complex(values, -values)
    elif dtype == torch.bool:
        tensor = values > 0
    elif dtype == torch.uint16:
        tensor = (values.abs() * 300).to(torch.int32).to(torch.uint16)  # saved as UntypedStorage + dtype
    elif dtype == torch.float8_e4m3fn:
        tensor = (values / 100).to(dtype)
    else:
        tensor = values.to(dtype)
    tensor = tensor[1:, ::2]  # a strided view, so offset and strides are exercised in every dtype
    path = tmp_path / "dtype.pth"
    torch.save({"t": tensor, "p": torch.nn.Parameter(values.float(), requires_grad=False)}, path)
    loaded = load_pth(path)
    assert_same(loaded["t"], tensor)
    assert_same(loaded["p"], values.float())  # an nn.Parameter comes back as its plain array


def test_bfloat16_values_are_exact_and_convert_losslessly_to_float32(tmp_path):
    tensor = torch.tensor([1.0, -2.5, 3.140625, 1e-20, 65504.0, float("inf")]).bfloat16()
    path = tmp_path / "bf16.pth"
    torch.save({"t": tensor}, path)
    loaded = load_pth(path)["t"]
    np.testing.assert_array_equal(loaded.astype(np.float32), tensor.float().numpy())


def test_big_endian_archives_are_byte_swapped_per_element(tmp_path):
    tensors = collections.OrderedDict(f32=torch.randn(3, 2), i64=torch.arange(5) * 1_000_003,
                                      c64=torch.complex(torch.randn(3), torch.randn(3)))
    path = tmp_path / "little.pth"
    torch.save(tensors, path)
    # Storages are numbered in pickling order: 0 = f32 (4-byte units), 1 = i64 (8), 2 = c64 (two 4-byte parts).
    units = {"data/0": 4, "data/1": 8, "data/2": 4}

    def swap(name, data):
        if name.endswith("byteorder"):
            return b"big"
        for suffix, unit in units.items():
            if name.endswith(suffix):
                return np.frombuffer(data, f"<u{unit}").astype(f">u{unit}").tobytes()
        return data

    big = tmp_path / "big.pth"
    rewrite_archive(path, big, swap)
    loaded = load_pth(big)
    for name, tensor in tensors.items():
        assert_same(loaded[name], tensor, name)


# ----------------------------------------------------------------------------- refusing code


class RunsShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsEval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize(("payload", "global_name"), [(RunsShellCommand, "system"), (RunsEval, "builtins.eval")])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, payload, global_name):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(2, 2), "conv.bias": payload(marker)}, path)
    assert global_name.split(".")[-1].encode() in zipfile.ZipFile(path).read("evil/data.pkl")
    with pytest.raises(InputError) as info:
        load_pth(path)
    message = str(info.value)
    assert message.startswith(f"{path}: refusing to load") and global_name in message
    assert "must not be able to run code" in message
    assert not marker.exists()
    with pytest.raises(InputError, match="refusing to load"):
        read_state_dict(path)  # the front door refuses it too
    assert not marker.exists()


def test_a_whole_pickled_module_is_refused_with_advice_to_save_its_state_dict(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Conv2d(2, 3, 1), path)
    with pytest.raises(InputError, match=r"torch\.nn\.modules\.conv\.Conv2d.*state_dict"):
        load_pth(path)


# ----------------------------------------------------------------------------- other formats


def test_legacy_non_zip_checkpoints_get_a_clear_resave_message(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match=r"legacy \(pre-1.6, non-zip\).*torch.save\(torch.load"):
        load_pth(path)


class TinyScripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 1)
        self.bn = torch.nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_archives_need_torch_and_load_through_it_when_present(tmp_path):
    module = TinyScripted().eval()
    path = tmp_path / "torchscript_tiny_fp32.pth"
    torch.jit.save(torch.jit.script(module), str(path))

    result = read_without_torch(path)
    assert "TorchScript" in result["error"] and "torch is not installed" in result["error"]
    assert result["error"].startswith(str(path))

    loaded = read_state_dict(path)  # torch is installed in this process
    assert loaded.file_format == "torchscript"
    assert list(loaded.tensors) == list(module.state_dict())
    for key, tensor in module.state_dict().items():
        assert_same(loaded.tensors[key], tensor, key)


def test_the_archive_folder_name_is_found_whatever_it_is(tmp_path):
    state = {"a": torch.randn(3), "b": torch.arange(4)}
    buffer = io.BytesIO()
    torch.save(state, buffer)  # saved to a buffer: folder 'archive/'
    in_buffer = tmp_path / "renamed_later.pth"
    in_buffer.write_bytes(buffer.getvalue())
    by_name = tmp_path / "pytorch_resnet50.pth"  # saved to a path: folder named after the file
    torch.save(state, by_name)
    assert zipfile.ZipFile(in_buffer).namelist()[0].startswith("archive/")
    assert zipfile.ZipFile(by_name).namelist()[0].startswith("pytorch_resnet50/")
    for path in (in_buffer, by_name):
        loaded = load_pth(path)
        for key, tensor in state.items():
            assert_same(loaded[key], tensor, key)


# ----------------------------------------------------------------------------- damaged files


def rewrite_archive(source: Path, target: Path, change) -> None:
    """Copy a zip archive entry by entry, passing each (name, bytes) through ``change``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            data = change(name, src.read(name))
            if data is not None:
                dst.writestr(name, data)


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "good.pth"
    torch.save({"w": torch.arange(12, dtype=torch.float32).reshape(3, 4)}, path)
    return path


def test_a_truncated_download_is_reported_as_damaged(saved, tmp_path):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.pth: is a damaged zip archive"):
        load_pth(cut)


def test_a_storage_shorter_than_its_tensor_is_reported(saved, tmp_path):
    short = tmp_path / "short.pth"
    rewrite_archive(saved, short, lambda name, data: data[:20] if name.endswith("data/0") else data)
    with pytest.raises(InputError, match=r"short.pth: storage record `good/data/0` holds 20 bytes.*truncated"):
        load_pth(short)


def test_a_tensor_reaching_outside_its_storage_is_refused_before_reading_memory(saved, tmp_path):
    # Size (3, 4) is pickled as BININT1 3, BININT1 4, TUPLE2; make it (3, 9) over a 12-element storage.
    def enlarge(name, data):
        if name.endswith("data.pkl"):
            assert data.count(b"K\x03K\x04\x86") == 1
            return data.replace(b"K\x03K\x04\x86", b"K\x03K\x09\x86")
        return data

    bad = tmp_path / "bad_geometry.pth"
    rewrite_archive(saved, bad, enlarge)
    with pytest.raises(InputError, match=r"size \(3, 9\).*reaches outside its storage"):
        load_pth(bad)


def test_a_missing_storage_record_is_reported(saved, tmp_path):
    missing = tmp_path / "missing.pth"
    rewrite_archive(saved, missing, lambda name, data: None if name.endswith("data/0") else data)
    with pytest.raises(InputError, match="`good/data/0` is missing"):
        load_pth(missing)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"hello, this is not a checkpoint", "is not a PyTorch checkpoint"),
    (b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", "looks like a .safetensors file"),
])
def test_files_that_are_not_torch_checkpoints_get_a_one_line_reason(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        load_pth(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_files_and_directories_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_pth(tmp_path / "nope.pth")
    with pytest.raises(InputError, match="is a directory"):
        load_pth(tmp_path)


# ----------------------------------------------------------------------------- read_state_dict


def test_read_state_dict_strips_the_data_parallel_prefix_and_refuses_non_dicts(tmp_path):
    path = tmp_path / "ddp.pth"
    torch.save({"module.conv.weight": torch.ones(1, 1, 1, 1), "module.conv.bias": torch.zeros(1)}, path)
    loaded = read_state_dict(path)
    assert list(loaded.tensors) == ["conv.weight", "conv.bias"]
    assert "module." in loaded.notes[0]
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(InputError, match="list.pth: holds no state_dict \\(a list\\)"):
        read_state_dict(listed)


def test_archives_without_a_byteorder_record_from_older_torch_read_as_little_endian(saved, tmp_path):
    old_style = tmp_path / "torch_1_6.pth"
    rewrite_archive(saved, old_style, lambda name, data: None if name.endswith("byteorder") else data)
    assert not any(name.endswith("byteorder") for name in zipfile.ZipFile(old_style).namelist())
    np.testing.assert_array_equal(load_pth(old_style)["w"], np.arange(12, dtype=np.float32).reshape(3, 4))
