"""Training on the GPU machine (train/device/run.sh) runs its whole code path on the CPU, at tiny sizes: the
calibration run measures a rate, the real run gets a step count from it, starts from the embedded weights,
trains on photo_matting rendered in memory, and the export comes back in parts that unpack into a model
bgm_jax loads, so the one call on a GPU lease cannot fail on a typo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import xla_flags

ROOT = Path(__file__).resolve().parents[1]
DATA = "generated:photo_matting/small:8"
TINY = (f"train_data={DATA} background_data={DATA} valid_data=generated:photo_matting/small valid_size=64,64 "
        "valid_count=2 sample_size=64,64 canvas=86,86 global_batch=2 refine_sample_pixels=256 log_every=2")


@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("device-training")
    env = dict(os.environ, PYTHON=sys.executable, NO_WHEELS="1", CALIBRATE_DATA=DATA, CALIBRATE_STEPS="4",
               TRAIN_SET=TINY, WORKDIR=str(tmp / "work"), JAX_COMPILATION_CACHE_DIR=str(tmp / "cache"),
               XLA_FLAGS=xla_flags(1))  # one device, as on the one-GPU machine
    proc = subprocess.run(["bash", "train/device/run.sh", str(tmp / "out"), "30"], capture_output=True, text=True,
                          timeout=900, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return tmp, proc.stdout


def test_the_run_starts_from_the_embedded_model_and_trains_the_steps_its_rate_allows(device_run):
    tmp, log = device_run
    assert "initialisation: the embedded model (refine)" in log and "params/refiner: loaded" in log
    assert "steps/s measured" in log
    steps = int(log.split("run.sh: training ")[1].split()[0])
    assert steps == 10  # 30 s leave no time past the calibration: the floor
    metrics = [json.loads(line) for line in (tmp / "work" / "metrics.jsonl").read_text().splitlines()]
    assert max(m["step"] for m in metrics) == steps
    assert any("valid_sad" in m for m in metrics)


def test_the_files_that_come_back_unpack_into_a_model_bgm_jax_loads(device_run):
    import bgm_jax
    from bgm_jax.pretrained import load_embedded

    tmp, log = device_run
    out = tmp / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names[:2] == ["export.tar.part-aa", "export.tar.part-ab"] and "metrics.jsonl" in names
    assert "log.txt" in names and "step_00000010.png" in names and len(names) <= 8  # at most 8 files return
    assert all(p.stat().st_size <= 16 * 2**20 for p in out.iterdir())
    joined = tmp / "export.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("export.tar.part-*"))))
    with tarfile.open(joined) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
    matting = bgm_jax.load(str(tmp / "unpacked" / "export"))
    assert matting.config["source"] == "train.main step 10"
    _, shipped = load_embedded()
    trained = matting.variables["params"]["refiner"]
    moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in
             zip(_leaves(trained), _leaves(shipped["params"]["refiner"]))]
    assert max(moved) > 0  # ten steps moved the weights it started from


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)
