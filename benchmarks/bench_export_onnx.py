"""onnxruntime (CPU) against JAX (CPU) on the same model, size and settings.

    python benchmarks/bench_export_onnx.py --backbone mobilenetv2,resnet50 --size 512x512,1920x1080

For each backbone and size: a random-weight refine model (speed does not depend on the weights) with
the paper's settings for the size and ``prevent_oversampling`` off, so every call refines exactly
sample_pixels / 16 patches, as ``bgm-jax bench``; exported to ONNX (NCHW float32, batch 1) in a
temporary folder; then the JAX compiled function (``bgm_jax.load``'s) and the onnxruntime session are
called alternately (so the machine's load hits both alike), after warm-up calls, and the median and
p90 of each are printed with the load average before and after. Also checks that both give the same
refined cells and the largest alpha difference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np


def measure(backbone: str, width: int, height: int, repeats: int, warmup: int, threads: int | None) -> dict:
    import onnxruntime as ort

    from bgm_jax.cli.common import random_weight_matting
    from bgm_jax.deploy import export

    matting = random_weight_matting(backbone, {"refine_prevent_oversampling": False}, compilation_cache="")
    rng = np.random.default_rng(0)
    src = rng.random((1, height, width, 3), np.float32)
    bgr = np.clip(src + rng.normal(0, 0.1, src.shape).astype(np.float32), 0, 1)
    src_nchw, bgr_nchw = src.transpose(0, 3, 1, 2).copy(), bgr.transpose(0, 3, 1, 2).copy()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        start = time.perf_counter()
        report = export(matting, path, format="onnx", size=(width, height), outputs=("pha", "fgr", "ref"))
        export_s = time.perf_counter() - start
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        start = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session_s = time.perf_counter() - start

    def run_jax():
        result = matting(src, bgr)
        jax.block_until_ready((result.pha, result.fgr))
        return result

    def run_onnx():
        return session.run(None, {"src": src_nchw, "bgr": bgr_nchw})

    start = time.perf_counter()
    result = run_jax()
    compile_s = time.perf_counter() - start
    pha, _, ref = run_onnx()
    same_cells = bool(np.array_equal(ref.transpose(0, 2, 3, 1), np.asarray(result.ref)))
    max_pha_diff = float(np.abs(pha.transpose(0, 2, 3, 1) - np.asarray(result.pha)).max())
    for _ in range(warmup):
        run_jax()
        run_onnx()
    times = {"jax": [], "onnxruntime": []}
    for _ in range(repeats):
        for name, fn in (("jax", run_jax), ("onnxruntime", run_onnx)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {
        "backbone": backbone,
        "size": f"{width}x{height}",
        "settings": report.metadata["settings"],
        "export_s": round(export_s, 2),
        "ort_session_s": round(session_s, 2),
        "jax_compile_s": round(compile_s, 2),
        "same_refined_cells": same_cells,
        "max_alpha_diff": max_pha_diff,
        "median_ms": {k: round(float(np.median(v)) * 1e3, 1) for k, v in times.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)) * 1e3, 1) for k, v in times.items()},
        "times_s": times,
    }


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenetv2,resnet50", help="comma-separated backbones")
    parser.add_argument("--size", default="512x512,1920x1080", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: its own choice)")
    parser.add_argument("--json", help="write every time and setting here")
    args = parser.parse_args()

    load_before = os.getloadavg()
    print(f"jax {jax.__version__} ({jax.devices()[0].platform}), onnxruntime {ort.__version__}, "
          f"{os.cpu_count()} CPUs ({platform.machine()}), load average {load_before}")
    rows = []
    for backbone in args.backbone.split(","):
        for size in args.size.split(","):
            width, height = (int(v) for v in size.lower().split("x"))
            row = measure(backbone, width, height, args.repeats, args.warmup, args.threads)
            rows.append(row)
            jax_ms, ort_ms = row["median_ms"]["jax"], row["median_ms"]["onnxruntime"]
            print(
                f"{backbone:12s} {row['size']:>9s}  JAX {jax_ms:8.1f} ms (p90 {row['p90_ms']['jax']:.1f})  "
                f"onnxruntime {ort_ms:8.1f} ms (p90 {row['p90_ms']['onnxruntime']:.1f})  "
                f"ort/jax {ort_ms / jax_ms:.2f}  same cells {row['same_refined_cells']}  "
                f"max |d alpha| {row['max_alpha_diff']:.1e}  "
                f"(export {row['export_s']} s, session {row['ort_session_s']} s, jax compile {row['jax_compile_s']} s)",
                flush=True,
            )
    load_after = os.getloadavg()
    print(f"load average after {load_after}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_before": load_before, "load_after": load_after, "rows": rows},
                                              indent=1))


if __name__ == "__main__":
    main()
