"""`bgm-jax bench`: the JSON report has the figures and settings a reader needs (model-only with random
weights and the fixed patch count; end to end on a generated clip), and bad arguments exit 2.
No speed is asserted: the figures come from running the command, see docs/benchmarks.md."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from bgm_jax import cli
from bgm_jax.checkpoint import save_model
from bgm_jax.cli.common import random_variables

CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
W, H, FRAMES = 64, 48, 6


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("xla")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for _ in range(FRAMES):
            image = rng.integers(0, 256, (H, W, 3), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def bench(cache_dir, *args) -> int:
    return cli.main(["bench", "--compilation-cache", str(cache_dir), *map(str, args)])


def test_model_only_report_has_timings_compile_time_settings_and_machine(cache_dir, tmp_path, capsys):
    report_path = tmp_path / "reports" / "bench.json"
    code = bench(cache_dir, "--backbone", "mobilenetv2", "--resolution", f"{W}x{H}", "--repeats", 3,
                 "--warmup", 1, "--json", report_path)
    assert code == 0
    report = json.loads(report_path.read_text())
    for key in ("jax_version", "backend", "device", "cpu_count", "loadavg_start", "loadavg_end", "arguments"):
        assert key in report
    (run,) = report["runs"]
    assert run["mode"] == "model" and run["backbone"] == "mobilenetv2"
    assert (run["width"], run["height"], run["batch"], run["precision"]) == (W, H, 1, "float32")
    # The paper's settings for the size, with the patch count fixed (no oversampling prevention).
    assert run["backbone_scale"] == 0.25 and run["refine_sample_pixels"] == 80_000
    assert run["prevent_oversampling"] is False
    assert run["refine_patches"] == (H // 4) * (W // 4)  # 5,000 patches capped at the 192 cells
    assert len(run["times_ms"]) == 3 and run["repeats"] == 3 and run["warmup"] == 1
    assert run["median_ms"] == pytest.approx(float(np.median(run["times_ms"])), abs=1e-3)
    assert run["p90_ms"] >= run["median_ms"] >= run["min_ms"] > 0
    assert run["fps_median"] == pytest.approx(1000 / run["median_ms"], rel=1e-3)
    assert run["compile_s"] > 0 and isinstance(run["compile_cache_hit"], bool)
    assert "fps median" in capsys.readouterr().out


def test_e2e_report_counts_every_frame_and_times_decode_alone(cache_dir, clip, tmp_path):
    model = tmp_path / "model"
    save_model(model, random_variables(CONFIG), CONFIG)
    report_path = tmp_path / "e2e.json"
    assert bench(cache_dir, "--model", model, "--e2e", clip, "--batch", 4, "--json", report_path) == 0
    (run,) = json.loads(report_path.read_text())["runs"]
    assert run["mode"] == "e2e" and run["frames"] == FRAMES
    assert (run["width"], run["height"], run["batch"]) == (W, H, 4)
    assert run["fps"] == pytest.approx(FRAMES / run["seconds"], rel=1e-2)
    assert run["decode_only_fps"] > 0 and run["compile_s"] > 0
    assert run["outputs"] == ["com.mp4"] and run["convert"] == "device"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--resolution", "big"], "expected WIDTHxHEIGHT"),
        (["--batch", "0"], "expected positive integers"),
        (["--precision", "int8"], "unknown int8"),
        (["--backbone", "vgg16"], "unknown vgg16"),
        (["--model", "/no/such/model", "--backbone", "resnet50"], "with --model the checkpoint decides"),
        (["--model", "/no/such/model"], "no such checkpoint directory"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message, cache_dir, capsys):
    assert bench(cache_dir, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bgm-jax bench: error: ") and message in err


def test_e2e_on_a_file_that_is_not_a_video_exits_2(cache_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert bench(cache_dir, "--e2e", tmp_path / "notes.txt") == 2
    assert "not a video" in capsys.readouterr().err
