"""Model checkpoints refuse damage instead of loading garbage: every array's sha256 is recorded when it is
written and checked when it is read, non-finite values are refused, the structure is compared before
reading (a short list, not Orbax's dump), an unusable config is one line, a truncated array file gives
one line and none of Orbax's asynchronous tracebacks, and a failed write (disk full, permission denied)
leaves no hidden temporary folder. Directories written before digests existed still load, with a note.

The checkpoint is a random-weight MobileNetV2 refine model written per test (about a second).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgm_jax import checkpoint, cli
from bgm_jax.checkpoint import load_model, save_model
from bgm_jax.cli.common import random_variables
from bgm_jax.errors import InputError, InputWarning

CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def variables():
    return random_variables(CONFIG, seed=4)


@pytest.fixture
def model_dir(tmp_path, variables):
    return save_model(tmp_path / "model", variables, CONFIG)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    for name in ("src", "bgr"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), np.uint8)).save(root / f"{name}.png")
    return root


def largest_array_file(model: Path) -> Path:
    return max((p for p in (model / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)


def flip_4_kb(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(b ^ 0xFF for b in data[middle:middle + 4096])
    path.write_bytes(bytes(data))


def images(model, pair, out, *extra):
    return cli.main(["images", "--model", str(model), "--src", str(pair / "src.png"), "--bgr", str(pair / "bgr.png"),
                     "--out", str(out), "--compilation-cache", "", *extra])


def set_config(model: Path, **changes) -> None:
    path = model / "config" / "metadata"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, **changes}))


# ---------------------------------------------------------------------------------------------- digests


def test_save_records_the_sha256_of_every_array(model_dir, variables):
    digests = json.loads((model_dir / "digests" / "metadata").read_text())
    assert digests["algorithm"] == "sha256"
    kernel = variables["params"]["backbone"]["features_0_0"]["kernel"]
    assert digests["arrays"]["params/backbone/features_0_0/kernel"] == checkpoint.array_digest(kernel)
    assert len(digests["arrays"]) == len(checkpoint._named_leaves(variables))


def test_4_kb_flipped_in_one_array_file_is_refused_by_images_and_export_torch(model_dir, pair, tmp_path, capsys):
    # Where the flip lands varies with Orbax's file layout: in stored values (caught by the digest) or in
    # a compressed chunk (the reader fails). Either way: one line naming the array as damaged.
    flip_4_kb(largest_array_file(model_dir))
    assert images(model_dir, pair, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{model_dir}: array params/" in err and " is damaged: " in err, err
    assert "bgm-jax convert" in err
    assert not (tmp_path / "out" / "pha").exists()
    pytest.importorskip("torch")
    assert cli.main(["export-torch", str(model_dir), str(tmp_path / "m.pth")]) == 2
    assert f"{model_dir}: array params/" in capsys.readouterr().err
    assert not (tmp_path / "m.pth").exists()


def test_an_array_that_differs_from_its_recorded_digest_is_named(model_dir, pair, tmp_path, capsys):
    path = model_dir / "digests" / "metadata"
    digests = json.loads(path.read_text())
    name = "params/decoder/conv1/kernel"
    digests["arrays"][name] = "0" * 64  # as if the stored values had changed since they were written
    path.write_text(json.dumps(digests))
    assert images(model_dir, pair, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith(
        f": error: {model_dir}: array {name} is damaged: it does not match the digest recorded when it was "
        "written (the file was changed); write the checkpoint again with `bgm-jax convert`\n")
    assert not (tmp_path / "out" / "pha").exists()


def test_non_finite_weights_are_refused_on_writing_and_on_reading(tmp_path, variables, monkeypatch):
    broken = {"params": dict(variables["params"]), "batch_stats": variables["batch_stats"]}
    decoder = dict(broken["params"]["decoder"])
    conv = dict(decoder["conv1"])
    conv["kernel"] = np.asarray(conv["kernel"]).copy()
    conv["kernel"][0, 0, 0, :3] = np.nan
    decoder["conv1"] = conv
    broken["params"]["decoder"] = decoder
    with pytest.raises(InputError, match=r"array params/decoder/conv1/kernel holds 3 non-finite value"):
        save_model(tmp_path / "refused", broken, CONFIG)
    assert not (tmp_path / "refused").exists()
    # a directory holding NaN with matching digests (written by something that did not check)
    monkeypatch.setattr(checkpoint, "_first_non_finite", lambda named: None)
    save_model(tmp_path / "nan", broken, CONFIG)
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"nan: array params/decoder/conv1/kernel holds 3 non-finite value"):
        load_model(tmp_path / "nan")


def test_a_checkpoint_without_digests_still_loads_with_a_one_line_note(model_dir, pair, tmp_path, capsys):
    shutil.rmtree(model_dir / "digests")  # as written before digests existed
    with pytest.warns(InputWarning, match="without array digests"):
        config, _ = load_model(model_dir)
    assert config["backbone"] == "mobilenetv2"
    assert images(model_dir, pair, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "digests" in line] == [
        f"bgm-jax images: warning: {model_dir}: written by an older bgm-jax without array digests, so damage "
        "cannot be detected; write it again (`bgm-jax convert`) to add them"]


# ---------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("command", ["images", "eval"])
def test_an_unknown_backbone_in_the_config_is_one_line_and_exit_2(command, model_dir, pair, tmp_path, capsys):
    set_config(model_dir, backbone="resnet18")
    if command == "images":
        code = images(model_dir, pair, tmp_path / "out")
    else:
        for folder in ("fgr", "pha", "bgr"):
            (tmp_path / "set" / folder).mkdir(parents=True)
            shutil.copy(pair / "src.png", tmp_path / "set" / folder / "a.png")
        Image.open(pair / "src.png").convert("L").save(tmp_path / "set" / "pha" / "a.png")
        code = cli.main(["eval", "--model", str(model_dir), "--dataset-dir", str(tmp_path / "set"),
                         "--compilation-cache", "", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == (f"bgm-jax {command}: error: {model_dir}: its config is not usable: backbone 'resnet18' is not one "
                   "this bgm-jax knows (resnet50, resnet101, mobilenetv2); write the directory again with "
                   "`bgm-jax convert`\n")


def test_arrays_of_another_backbone_are_listed_by_a_few_names_and_counts(model_dir, pair, tmp_path, capsys):
    set_config(model_dir, backbone="resnet50")
    assert images(model_dir, pair, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 1000  # Orbax's own message was 17 KB
    assert "arrays are not those of the resnet50 refine model its config describes" in err
    assert "missing (batch_stats/backbone/bn1/mean, " in err and " more); " in err and "unexpected (" in err


def test_a_truncated_array_file_is_one_line_without_asynchronous_tracebacks(model_dir, pair, tmp_path):
    path = largest_array_file(model_dir)
    os.truncate(path, path.stat().st_size // 2)
    proc = subprocess.run(
        [sys.executable, "-m", "bgm_jax", "images", "--model", str(model_dir), "--src", str(pair / "src.png"),
         "--bgr", str(pair / "bgr.png"), "--out", str(tmp_path / "out"), "--compilation-cache", ""],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr  # no "Event loop is closed" tracebacks after it
    assert f"{model_dir}: array " in proc.stderr and " is damaged: it cannot be read" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------- failed writes


def fail_array_writes_after(monkeypatch, allowed: int, os_error_code: int):
    """Make Orbax's array writes fail as tensorstore does on a full disk or a refused folder, after
    ``allowed`` arrays were really written (so its temporary folder exists)."""
    from orbax.checkpoint._src.serialization.type_handlers import NumpyHandler

    original = NumpyHandler._open_and_write
    calls = []
    reason = {28: "No space left on device", 13: "Permission denied"}[os_error_code]

    async def open_and_write(self, value, tspec, ts_context):
        calls.append(1)
        if len(calls) > allowed:
            raise ValueError(f'RESOURCE_EXHAUSTED: Error writing "x/0" in OCDBT database: Failed writing: '
                             f'"{tspec}": {reason} [os_error_code={os_error_code}]')
        return await original(self, value, tspec, ts_context)

    monkeypatch.setattr(NumpyHandler, "_open_and_write", open_and_write)
    return calls


@pytest.mark.parametrize("os_error_code, message", [(28, "no space left on the device"),
                                                    (13, "permission denied")])
def test_convert_on_a_full_disk_or_refused_folder_says_so_and_leaves_nothing(
        os_error_code, message, variables, tmp_path, monkeypatch, capfd):
    from bgm_jax.convert.convert import torch_state_dict
    from bgm_jax.convert.safetensors import save_safetensors

    source = tmp_path / "weights.safetensors"
    save_safetensors(source, torch_state_dict(variables))
    out_root = tmp_path / "out"
    out_root.mkdir()
    calls = fail_array_writes_after(monkeypatch, 20, os_error_code)
    code = cli.main(["convert", str(source), str(out_root / "model")])
    err = capfd.readouterr().err
    assert code == 2 and len(calls) > 20
    assert err == f"bgm-jax convert: error: {out_root / 'model'}: cannot write ({message}; " + err.split("; ", 1)[1]
    assert err.count("\n") == 1  # no absl ERROR logs with tracebacks, no event-loop tracebacks
    assert list(out_root.iterdir()) == []  # no model, no hidden .partial or .orbax-checkpoint-tmp folder
