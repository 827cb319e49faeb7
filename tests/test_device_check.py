"""The GPU device check (benchmarks/device/) runs its whole code path on the CPU: `run.sh OUT --smoke` writes
a complete JSON report and Markdown summary whose every section measured what it should, so the one call
on a GPU machine cannot fail on a typo. Also: a budget that runs out is recorded section by section
(partial results, reasons), and the refine-stage training code the smoke run leaves out lowers and runs.

The figures here are CPU figures at tiny sizes and are only checked for consistency, never for speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "benchmarks" / "device"
sys.path.insert(0, str(DEVICE))

if os.environ.get("BGM_REQUIRE_TORCH") != "1":  # under CI a missing torch fails instead
    pytest.importorskip("torch")
import check  # noqa: E402
import torch  # noqa: E402


def run_env() -> dict:
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("XLA_FLAGS", None)  # one CPU device, as on a one-GPU machine
    return env


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("device-check")
    proc = subprocess.run(["bash", str(DEVICE / "run.sh"), str(out), "--smoke"], capture_output=True, text=True,
                          timeout=900, env=run_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "device_check.json").read_text()), proc.stdout


def results(report, section):
    return [r for r in report["sections"][section]["results"] if r.get("status") == "ok"]


def test_every_section_runs_to_the_end_and_the_files_come_back(smoke):
    out, report, stdout = smoke
    assert sorted(p.name for p in out.iterdir()) == ["device_check.json", "device_check.md", "log.txt"]
    assert report["schema"] == 1 and report["smoke"] is True and report["finished"] and "--smoke" in report["command"]
    for name in check.SECTIONS:
        section = report["sections"][name]
        errors = [r for r in section["results"] if r.get("status") == "error"]
        assert section["status"] == "ok" and not section["skipped"] and not errors, (name, section)
        assert 0 < section["seconds"] <= section["budget_s"]
    env = report["environment"]
    assert env["backend"] == "cpu" and env["versions"]["jax"] and env["versions"]["jaxlib"]
    assert env["torch"]["torch_version"] == torch.__version__ and len(env["source_digest"]) == 16
    assert "float32 = full float32" in report["precision_policy"]
    assert "grain" in report["imports_blocked"]  # the run needed nothing the GPU machine lacks
    assert "device check: wrote" in stdout and "run.sh: check.py exited with 0" in stdout


def test_parity_float32_passes_and_lower_precisions_are_compared_with_float32(smoke):
    _, report, _ = smoke
    plan = check.smoke_plan()
    (row,) = results(report, "parity")
    assert row["backbone"] == plan.parity[0][0] and row["patches"] == row["sample_pixels"] // 16
    assert row["selection_margin"] > 0
    full = row["float32"]
    assert full["pass"] is True and full["matmul_precision"] == "highest"
    assert full["vs_reference"]["max_abs"] <= check.PARITY_TOLERANCE and full["vs_reference"]["same_cells"]
    assert full["vs_reference"]["selected_cells"] == row["patches"]
    half = row["bfloat16"]
    assert half["matmul_precision"] == "default"
    versus = half["vs_jax_float32"]
    assert 0 < versus["max_abs"] < 0.1 and versus["pha_sad"] > 0 and 0 <= versus["share_identical_cells"] <= 1
    assert row["reference_tf32_vs_float32"]["max_abs"] == 0  # the CPU has no TF32


def test_model_rows_have_fps_the_reference_and_consistent_ratios(smoke):
    _, report, _ = smoke
    rows = results(report, "model")
    assert [(r["backbone"], r["res"], r["batch"], r["precision"]) for r in rows] == list(check.smoke_plan().model)
    for r in rows:
        assert r["fps_median"] > 0 and r["compile_s"] > 0 and r["prevent_oversampling"] is False
        assert r["matmul_precision"] == ("highest" if r["precision"] == "float32" else "default")
        mode = "float32" if r["precision"] == "float32" else "float16"
        assert r["ratio_vs_torch_mode"] == mode and r["torch_fps"][mode] > 0
        assert r["ratio_vs_torch"] == pytest.approx(r["fps_median"] / r["torch_fps"][mode], rel=0.01)
        assert r["refine_patches"] == r["refine_sample_pixels"] // 16  # the paper's share of cells, fixed
    assert rows[0]["paper_2080ti_fps"] == 100.6


def test_refiner_variants_compute_what_the_model_uses_and_the_compiled_ops_are_listed(smoke):
    _, report, _ = smoke
    rows = results(report, "refiner")
    ops = next(r for r in rows if r["what"].startswith("compiled ops"))["ops"]
    assert ops["convolution"] > 0 and ops["gather"] > 0 and ops["scatter"] > 0
    assert ops.get("custom-call:TopK") == 1  # the CPU's top-k; on a GPU: a sort, which one is the question
    timed = [r for r in rows if "formulation" in r]
    assert {r["formulation"] for r in timed} == set(check_variants_cases())
    for r in timed:
        assert r["median_ms"] > 0
        assert r["same_result_as_in_use"] is (None if r["in_use"] else True)


def check_variants_cases():
    import variants

    return variants.cases(72, 128, 22)


def test_second_process_compiles_from_the_persistent_cache(smoke):
    _, report, _ = smoke
    first, second = results(report, "compile")
    assert first["cache_hits"] == 0 and second["cache_hits"] >= 1
    assert first["compile_s"] > 0 and second["to_first_result_s"] > 0 and first["first_call_s"] > 0


def test_video_end_to_end_writes_every_frame_and_compares_with_the_reference_loop(smoke):
    _, report, _ = smoke
    clip, video, loop = results(report, "e2e")
    width, height, frames, fps = check.smoke_plan().clip
    assert (clip["width"], clip["height"], clip["frames"]) == (width, height, frames)
    assert video["frames"] == video["output_frames"] == frames and video["output_complete"]
    assert video["fps"] > 0 and video["command"].startswith("bgm-jax video --model")
    assert loop["frames"] == frames and loop["fps"] > 0
    assert loop["ratio_bgm_jax_vs_reference"] == pytest.approx(video["fps"] / loop["fps"], rel=0.01)


def test_training_step_has_images_per_second_next_to_the_reference(smoke):
    _, report, _ = smoke
    (row,) = results(report, "train")
    assert row["images_per_s"] > 0 and row["loss_finite"] and row["compile_s"] > 0
    assert row["reference"]["images_per_s"] > 0 and row["reference"]["loss_finite"]
    assert row["ratio_vs_reference"] == pytest.approx(row["images_per_s"] / row["reference"]["images_per_s"],
                                                      rel=0.01)


def test_markdown_summary_has_every_section_and_table(smoke):
    out, report, _ = smoke
    text = (out / "device_check.md").read_text()
    assert text.startswith("# Device check (SMOKE")
    for heading in ("## Parity against the reference", "## Model only", "## refiner", "## compile", "## e2e",
                    "## train"):
        assert heading in text
    for name in check.SECTIONS:
        assert f"| {name} | ok |" in text


def test_a_spent_budget_is_recorded_with_reasons_and_the_report_still_written(tmp_path):
    proc = subprocess.run([sys.executable, str(DEVICE / "check.py"), "--out", str(tmp_path), "--smoke",
                           "--sections", "parity,compile,train", "--budget", "4"],
                          capture_output=True, text=True, timeout=300, env=run_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    sections = report["sections"]
    assert set(sections) <= {"parity", "compile", "train"} and "model" not in sections
    assert report["finished"] and (tmp_path / "device_check.md").exists()
    for name, section in sections.items():
        assert section["status"] in ("partial", "skipped"), (name, section)
        reasons = [s["reason"] for s in section["skipped"]] + [section.get("reason", "")]
        assert any("budget" in reason for reason in reasons), (name, section)


def test_unknown_sections_are_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(DEVICE / "check.py"), "--out", str(tmp_path), "--smoke",
                           "--sections", "parity,speed"], capture_output=True, text=True, timeout=60,
                          env=run_env(), cwd=ROOT)
    assert proc.returncode == 2 and "speed" in proc.stderr


def test_the_refine_stage_training_code_lowers_and_the_reference_step_runs():
    # The smoke run trains the base stage only (each step compiles for minutes on a small CPU); the
    # refine stage's JAX step is traced here (float16: dynamic loss scaling), the reference's is run.
    import reference

    step, state, data = check.build_train_step("refine", "mobilenetv2", 64, 2, "float16")
    assert state.dynamic_scale is not None
    lowered = step.lower(state, data)
    assert "stablehlo.convolution" in lowered.as_text()
    result = reference.time_train_step("refine", "mobilenetv2", 64, 2, repeats=1, warmup=0)
    assert result["images_per_s"] > 0 and result["loss_finite"]


def test_wheels_for_the_device_are_fetched_into_an_ignored_folder():
    script = (DEVICE / "fetch_wheels.sh").read_text()
    assert "--python-version 3.12" in script and 'dest=.whl' in script
    assert "/.whl/" in (ROOT / ".gitignore").read_text().split()  # wheels never get committed


def test_the_reference_float16_speed_path_runs_the_refiner_in_half_precision():
    # On the H200 torch.autocast could not run the reference's refiner (float16 patches written into a
    # float32 tensor); the speed test now converts the model as the original's does: model.half().
    import reference

    model = reference.inference_model("mobilenetv2", backbone_scale=0.25, sample_pixels=16 * 40,
                                      prevent_oversampling=False)
    half = reference.half_model(model, torch.float16)
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the float32 model is left as it was
    src, bgr = reference.inputs(1, 72, 128)
    times = reference.time_model(half, src, bgr, "float16", repeats=1, warmup=0)
    assert len(times) == 1 and times[0] > 0
    with torch.inference_mode():
        pha = half(src.half(), bgr.half())[0]
    assert pha.dtype == torch.float16 and torch.isfinite(pha.float()).all()


def test_inline_compilation_runs_once_when_first_asked_and_keeps_errors():
    calls = []
    pool = check.InlineExecutor()
    future = pool.submit(lambda x: calls.append(x) or len(calls), 7)
    assert not future.done() and calls == []  # nothing runs at submission
    assert future.result(timeout=0) == 1 and future.result() == 1 and calls == [7]
    failing = pool.submit(lambda: 1 / 0)
    assert isinstance(failing.exception(), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        failing.result()
    assert check.full_plan().compile_workers == 0 and check.smoke_plan().compile_workers == 0
