"""The embedded model's configs form the chain docs/model.md runs: each stage starts from the export of the
workdir its predecessor's docstring command writes, so the shipped weights are reproducible from them."""

from __future__ import annotations

import re
from pathlib import Path

from train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ("photo_base_mobilenetv2", "photo_base2_mobilenetv2", "photo_base3_mobilenetv2", "photo_base4_mobilenetv2",
         "photo_refine_mobilenetv2", "photo_base5_mobilenetv2", "photo_refine2_mobilenetv2", "photo_refine3_mobilenetv2",
         "photo_refine4_mobilenetv2", "photo_refine5_mobilenetv2", "photo_refine6_mobilenetv2",
         "photo_refine7_mobilenetv2", "photo_refine8_mobilenetv2", "photo_refine10_mobilenetv2",
         "photo_refine11_mobilenetv2", "photo_refine12_mobilenetv2", "photo_refine14_mobilenetv2",
         "photo_refine17_mobilenetv2", "photo_refine18_mobilenetv2", "photo_refine19_mobilenetv2",
         "photo_refine20_mobilenetv2", "photo_refine22_mobilenetv2", "photo_refine23_mobilenetv2",
         "photo_refine24_mobilenetv2", "photo_refine25_mobilenetv2", "photo_refine29_mobilenetv2",
         "photo_refine30_mobilenetv2", "photo_refine31_mobilenetv2", "photo_refine32_mobilenetv2",
         "photo_refine33_mobilenetv2", "photo_refine34_mobilenetv2", "photo_refine35_mobilenetv2",
         "photo_refine36_mobilenetv2", "photo_refine37_mobilenetv2",
         "photo_refine38_mobilenetv2", "photo_refine39_mobilenetv2",
         "photo_refine40_mobilenetv2")


def _workdir(name: str) -> str:
    text = (ROOT / "train" / "configs" / f"{name}.py").read_text().split('"""')[1]
    return re.search(rf"--config train/configs/{name}\.py --workdir (\S+)", text).group(1)


def test_each_stage_starts_from_the_export_of_the_stage_before():
    configs = {name: load_config(f"train/configs/{name}.py") for name in CHAIN}
    assert configs[CHAIN[0]].init == ""  # stage 1 from random weights
    for before, after in zip(CHAIN, CHAIN[1:]):
        assert configs[after].init == f"checkpoint:{_workdir(before)}/export", (before, after)
    assert [configs[n].stage for n in CHAIN] == ["base"] * 4 + ["refine", "base"] + ["refine"] * 31
    assert all(configs[n].backbone == "mobilenetv2" for n in CHAIN)


def test_the_model_page_runs_the_configs_in_chain_order():
    text = (ROOT / "docs" / "model.md").read_text()
    positions = [text.index(f"--config train/configs/{name}.py --workdir {_workdir(name)}") for name in CHAIN]
    assert positions == sorted(positions)


def test_the_gpu_config_continues_the_shipped_model_on_photo_matting_rendered_in_memory():
    """train/device/run.sh trains this config where neither tfds nor the built dataset exist."""
    gpu = load_config("train/configs/photo_gpu_mobilenetv2.py")
    last = load_config(f"train/configs/{CHAIN[-1]}.py")
    assert gpu.init == "embedded" and gpu.stage == last.stage == "refine" and gpu.backbone == last.backbone
    assert gpu.train_data == gpu.background_data == gpu.valid_data == "generated:photo_matting/image"
    assert gpu.crop_size is None  # one compiled shape
    assert gpu.soft_weight == last.soft_weight > 0  # the soft-band term that moved the CPU stages most
    assert gpu.fgr_scale == last.fgr_scale == (0.75, 1.0)  # subjects near native size, as the last CPU stages
    assert gpu.misalignment == last.misalignment == "paper"  # the supplement's colour misalignment, as they
    assert gpu.fgr_affine == last.fgr_affine == 0.25  # three quarters of the foregrounds unwarped, as they
    assert gpu.backbone_scale == last.backbone_scale == 0.5  # the scale the embedded weights were trained at
    assert gpu.thin_weight == last.thin_weight > 0  # the strand term of the last CPU stages
    assert gpu.refine_sample_pixels == last.refine_sample_pixels == 48_000  # and their refined pixels
    # a moving average of the weights as the last stages kept, at least as long (its run is thousands of steps)
    assert gpu.ema_decay >= last.ema_decay > 0
    assert "bash train/device/run.sh" in (ROOT / "train" / "configs" / "photo_gpu_mobilenetv2.py").read_text()
