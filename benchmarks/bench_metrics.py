"""Time scoring one image with all five metrics (SAD, MSE, Grad, Conn, FG MSE) on the CPU.

    python benchmarks/bench_metrics.py --size 2048 --repeats 5

The matte is a synthetic soft-edged blob with hair-like strands (so the unknown region and the Conn
components are not trivial); the prediction is the truth shifted by a pixel with noise. Prints the median
wall time of each metric, of the trimap generation, and of ``score_sample`` as a whole.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bgm_jax.evaluation import metrics, score


def synthetic_sample(size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size].astype(np.float32) / size
    r = np.hypot(y - 0.5, x - 0.5)
    angle = np.arctan2(y - 0.5, x - 0.5)
    rim = 0.3 + 0.03 * np.sin(40 * angle)  # a wavy outline, like hair strands
    gt = np.clip((rim - r) / 0.02, 0, 1)
    pred = np.clip(np.roll(gt, 1, axis=1) + rng.normal(0, 0.02, gt.shape), 0, 1)
    gt_u8 = np.rint(gt * 255).astype(np.uint8)
    pred_u8 = score.quantize_alpha(pred.astype(np.float32), "round")
    fgr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    pred_fgr = np.clip(fgr.astype(np.int16) + rng.integers(-5, 6, fgr.shape), 0, 255).astype(np.uint8)
    return pred_u8, gt_u8, pred_fgr, fgr


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trimap-mode", default="closing", choices=metrics.TRIMAP_READINGS)
    args = parser.parse_args()

    pred, gt, pred_fgr, gt_fgr = synthetic_sample(args.size)
    trimap = metrics.trimap_from_alpha(gt, args.trimap_mode)
    unknown = int((trimap == metrics.UNKNOWN).sum())
    print(f"{args.size}x{args.size}, trimap {args.trimap_mode}: {unknown} unknown pixels "
          f"({100 * unknown / gt.size:.1f}%), median of {args.repeats}")
    timings = {
        "trimap": lambda: metrics.trimap_from_alpha(gt, args.trimap_mode),
        "SAD": lambda: metrics.sad(pred, gt, trimap),
        "MSE": lambda: metrics.mse(pred, gt, trimap),
        "Grad": lambda: metrics.gradient_error(pred, gt, trimap),
        "Conn": lambda: metrics.connectivity_error(pred, gt, trimap),
        "FG_MSE": lambda: metrics.foreground_mse(pred_fgr, gt_fgr, gt, trimap),
        "score_sample (5 metrics, given trimap)": lambda: score.score_sample(pred, gt, trimap, pred_fgr, gt_fgr),
        "score_sample (5 metrics + trimap)": lambda: score.score_sample(pred, gt, args.trimap_mode, pred_fgr, gt_fgr),
    }
    for name, fn in timings.items():
        print(f"  {name:40s} {median_seconds(fn, args.repeats) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
