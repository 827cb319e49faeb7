"""float32 means float32: the precision policy reaches the compiled computation.

On GPUs XLA runs float32 convolutions and matmuls in TF32 unless the operation says otherwise, so
``precision="float32"`` must compile every convolution (and dot) with precision HIGHEST, and the fast
``tf32`` choice must leave them at the backend default. Checked on the CPU by reading the lowered
StableHLO and XLA's compiled HLO, where the precision is an attribute of each operation; and the choice
travels from the command line and ``bgm-jax bench`` into the settings and the benchmark JSON.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest

from bgm_jax import cli
from bgm_jax.cli.common import PRECISIONS as CLI_PRECISIONS
from bgm_jax.cli.common import add_model_arguments, random_weight_matting, settings_from_args
from bgm_jax.errors import InputError
from bgm_jax.inference import MATMUL_PRECISIONS, PRECISIONS, Settings

SHAPE = (1, 48, 64, 3)


@pytest.fixture(scope="module")
def matting():
    return random_weight_matting("mobilenetv2", {}, compilation_cache="")


def precision_of_ops(text: str, op: str) -> list[str]:
    """The precision_config values of every ``op`` line in StableHLO text (``[]`` where none is set)."""
    lines = [line for line in text.splitlines() if op in line]
    return [" ".join(re.findall(r"#stablehlo<precision (\w+)>", line)) for line in lines]


@pytest.fixture(scope="module")
def lowered(matting):
    return {p: matting.with_settings(precision=p).lower_for(SHAPE, np.uint8, SHAPE, np.uint8)
            for p in ("float32", "tf32", "bfloat16")}


@pytest.fixture(scope="module")
def compiled(lowered):
    return {p: lowered[p].compile() for p in ("float32", "tf32")}


def test_every_precision_has_a_matmul_policy_and_the_cli_offers_them_all():
    assert set(PRECISIONS) == set(MATMUL_PRECISIONS) == set(CLI_PRECISIONS)
    assert Settings(precision="float32").matmul_precision == "highest"
    assert Settings(precision="tf32").matmul_precision == "default"
    with pytest.raises(InputError, match="tf32"):
        Settings(precision="float64")


def test_float32_compiles_every_convolution_at_highest_precision(lowered, compiled):
    convs = precision_of_ops(lowered["float32"].as_text(), "stablehlo.convolution")
    # MobileNetV2 + ASPP + decoder + refiner (on CPUs the depthwise 3x3 layers are multiply-adds, not convolutions)
    assert len(convs) > 40
    assert all(p == "HIGHEST HIGHEST" for p in convs), set(convs)
    dots = precision_of_ops(lowered["float32"].as_text(), "stablehlo.dot_general")
    assert all(p == "HIGHEST HIGHEST" for p in dots), set(dots)
    # ... and XLA keeps it through compilation (what the GPU backend reads to decide on TF32).
    hlo = compiled["float32"].as_text()
    assert hlo.count("convolution(") == len(convs)
    assert hlo.count("operand_precision={highest,highest}") >= len(convs)


@pytest.mark.parametrize("precision", ["tf32", "bfloat16"])
def test_tf32_and_half_precisions_leave_the_backend_default(lowered, compiled, precision):
    convs = precision_of_ops(lowered[precision].as_text(), "stablehlo.convolution")
    assert len(convs) > 40
    assert not any("HIGHEST" in p or "HIGH " in p for p in convs), set(convs)
    if precision in compiled:
        assert "operand_precision={highest" not in compiled[precision].as_text()


def test_float32_and_tf32_give_the_same_result_on_the_cpu(matting, compiled):
    # The CPU computes float32 whatever the precision attribute says; on a GPU they differ (device check).
    rng = np.random.default_rng(0)
    src, bgr = rng.integers(0, 256, SHAPE, np.uint8), rng.integers(0, 256, SHAPE, np.uint8)
    full = compiled["float32"](matting.variables, src, bgr)
    fast = compiled["tf32"](matting.variables, src, bgr)
    for a, b in zip(full, fast):  # pha, fgr, err, ref
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_command_line_passes_the_precision_to_the_settings():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args(["--model", "x", "--precision", "tf32"])
    assert settings_from_args(args)["precision"] == "tf32"
    assert Settings(**settings_from_args(args)).matmul_precision == "default"
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "x", "--precision", "float64"])


def test_bench_records_the_precision_policy_of_every_run(tmp_path):
    report_path = tmp_path / "bench.json"
    code = cli.main(["bench", "--compilation-cache", "", "--backbone", "mobilenetv2", "--resolution", "64x48",
                     "--precision", "float32,tf32", "--repeats", "1", "--warmup", "0", "--json", str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert "jaxlib_version" in report and "jax_default_matmul_precision" in report
    assert [(r["precision"], r["matmul_precision"]) for r in report["runs"]] == [
        ("float32", "highest"), ("tf32", "default")]
