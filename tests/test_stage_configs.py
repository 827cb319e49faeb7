"""The four stage configs run the commands written in their docstrings, dataset building included, chained
(stage 1 from a DeepLabV3 checkpoint, each later stage from the previous stage's export), on 4 devices, for
one step each at a tiny size. One device count is enough here: the commands do not depend on it, and
tests/test_trainer.py proves the single-device, pmap and sharded steps agree.

The commands are read from the docstrings as written; only the paths are replaced (fake dataset folders in
each documented layout, a DeepLabV3-layout checkpoint made from the PyTorch reference) and a few `--set`
options are appended to shrink the run. Stages 3 and 4 compile exactly stage 2's programs, which the
persistent compilation cache shares.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_torch, xla_flags
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("stage1_base_videomatte", "stage2_refine_videomatte", "stage3_refine_photomatte",
          "stage4_refine_distinctions")
TINY = ["num_steps=1", "sample_size=64,64", "canvas=96,96", "crop_size=56,64", "crop_sizes_per_side=1",
        "global_batch=4", "valid_size=64,64", "valid_count=2", "data_threads=1", "precision=float32"]


def docstring_commands(stage: str) -> list[str]:
    """The shell commands in a config's docstring (indented lines, backslash continuations joined)."""
    text = (ROOT / "train" / "configs" / f"{stage}.py").read_text().split('"""')[1]
    lines, commands = text.replace("\\\n", " ").splitlines(), []
    for line in lines:
        line = line.strip()
        if line.startswith(("bgm-jax ", "python -m train.main")):
            commands.append(" ".join(line.split()))
    return commands


def _image(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def fake_sources(root: Path) -> dict[str, Path]:
    """Tiny folders in the layouts the docstrings name, from procedural samples."""
    from bgm_jax.datasets import synthetic

    samples = [synthetic.make_sample(seed, 72, 96) for seed in range(6)]
    videomatte, backgrounds = root / "VideoMatte240K_JPEG_HD", root / "Backgrounds"
    for split, clips in (("train", ("0000", "0001")), ("test", ("0000",))):
        for c, clip in enumerate(clips):
            for f in range(2):
                s = samples[(c * 2 + f) % len(samples)]
                _image(videomatte / split / "fgr" / clip / f"{f:05d}.jpg", s["fgr"])
                _image(videomatte / split / "pha" / clip / f"{f:05d}.jpg", s["pha"])
    for i, s in enumerate(samples):
        _image(backgrounds / f"b{i}.jpg", s["bgr"])
    photos, distinctions = root / "my_photomattes", root / "Distinctions-646"
    for i, s in enumerate(samples[:4]):
        _image(photos / ("train" if i < 3 else "test") / "fgr" / f"p{i}.jpg", s["fgr"])
        _image(photos / ("train" if i < 3 else "test") / "pha" / f"p{i}.png", s["pha"])
        split = "Train" if i < 3 else "Test"
        _image(distinctions / split / "FG" / f"d{i}.png", s["fgr"])
        _image(distinctions / split / "GT" / f"d{i}.png", s["pha"])
    return {"/data/VideoMatte240K_JPEG_HD": videomatte, "/data/Backgrounds": backgrounds,
            "/data/my_photomattes": photos, "/data/Distinctions-646": distinctions}


def fake_deeplabv3(path: Path) -> Path:
    """A checkpoint in VainF/DeepLabV3Plus-Pytorch's layout (ResNet-50 backbone, ASPP as
    classifier.classifier.0, 3-channel conv1, weights under 'model_state')."""
    torch = require_torch()
    import torch_reference as ref

    base = ref.random_model("base", "resnet50", seed=1).state_dict()
    state = {}
    for key, value in base.items():
        if key.startswith("backbone."):
            state[key] = value
        elif key.startswith("aspp."):
            state[key.replace("aspp.", "classifier.classifier.0.", 1)] = value
    state["backbone.conv1.weight"] = torch.randn(64, 3, 7, 7)
    torch.save({"model_state": state}, path)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage_sources")
    paths = fake_sources(root)
    paths["/weights/best_deeplabv3_resnet50_voc_os16.pth"] = fake_deeplabv3(root / "deeplab.pth")
    return paths


@pytest.mark.slow
def test_stage_configs_run_their_docstring_commands_chained_on_four_devices(sources, tmp_path):
    devices = 4
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "XLA_FLAGS": xla_flags(devices), "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(tmp_path.parent / "xla_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "HOME": str(tmp_path / "home"),  # the docstrings' ~/bgm-jax-data, as a user's home would hold it
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    replacements = {**{k: str(v) for k, v in sources.items()}, "runs/": f"{tmp_path}/runs/"}
    shrink = " ".join(f"--set {item}" for item in TINY)
    for stage in STAGES:
        commands = docstring_commands(stage)
        assert any(c.startswith("python -m train.main") for c in commands), stage
        for command in commands:
            for old, new in replacements.items():
                command = command.replace(old, new)
            if command.startswith("python -m train.main"):
                command = f"{command} {shrink} --no-progress"
            # through a shell, as a user types them (~ expands; `python` and `bgm-jax` are this environment's)
            proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=1200)
            assert proc.returncode == 0, f"{stage}: {command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            if "train.main" in command:
                assert f"= {devices} device(s) x" in proc.stdout, proc.stdout[-1000:]
    for stage in ("stage1", "stage2", "stage3", "stage4"):
        assert (tmp_path / "runs" / stage / "export").is_dir()
