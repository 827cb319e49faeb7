"""Input-pipeline throughput (samples/second) on this machine, for a given canvas size.

Builds small ArrayRecord datasets (image_matting/folder + backgrounds) from synthetic JPEG
foregrounds, PNG alphas and JPEG backgrounds at a realistic source resolution (HD for a 512 canvas,
4K for 2048, like VideoMatte240K HD / 4K), then times ``matting_pipeline`` batches after a warm-up.
Only a few distinct images are generated; every step still reads, decodes and resizes them.

    python benchmarks/bench_input_pipeline.py --canvas 512 --source 1080x1920
    python benchmarks/bench_input_pipeline.py --canvas 2048 --source 2160x3840

Prints one line per thread count: samples/s and ms per batch.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from PIL import Image


def write_sources(root: Path, n_fg: int, n_bg: int, height: int, width: int) -> None:
    """JPEG colour + PNG alpha pairs under fgr/ pha/, and JPEG backgrounds under bgr/."""
    from bgm_jax.datasets import synthetic

    for sub in ("fgr", "pha", "bgr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    small_h, small_w = min(height, 540), min(width, 960)  # generate small, upscale: the pixels matter little
    for i in range(max(n_fg, n_bg)):
        sample = synthetic.make_sample(i, small_h, small_w)
        big = {k: Image.fromarray(v).resize((width, height), Image.Resampling.BILINEAR) for k, v in sample.items()}
        if i < n_fg:
            big["fgr"].save(root / "fgr" / f"{i:04d}.jpg", quality=95)
            big["pha"].save(root / "pha" / f"{i:04d}.png", compress_level=6)
        if i < n_bg:
            big["bgr"].save(root / "bgr" / f"{i:04d}.jpg", quality=95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--canvas", type=int, default=512, help="square canvas side")
    parser.add_argument("--source", default="1080x1920", help="source image size HxW")
    parser.add_argument("--per-device-batch", type=int, default=4)
    parser.add_argument("--devices", type=int, default=1, help="local devices the batch is split over")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="reader thread counts to try")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    parser.add_argument("--images", type=int, default=8, help="distinct foregrounds and backgrounds")
    parser.add_argument("--work-dir", default=None, help="reuse/keep generated data here")
    args = parser.parse_args()

    from bgm_jax.datasets import catalog, pipeline

    height, width = (int(x) for x in args.source.lower().split("x"))
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    manual = work / f"src_{height}x{width}"
    if not (manual / "bgr").is_dir():
        t = time.perf_counter()
        write_sources(manual, args.images, args.images, height, width)
        print(f"generated {args.images} fg + {args.images} bg at {height}x{width} in {time.perf_counter() - t:.1f}s")
    (manual / "mat").mkdir(exist_ok=True)
    for sub in ("fgr", "pha"):
        link = manual / "mat" / sub
        if not link.exists():
            os.symlink(manual / sub, link)
    data_dir = work / f"data_{height}x{width}"
    catalog.build_dataset("image_matting/folder", data_dir, manual_dir=manual / "mat")
    catalog.build_dataset("backgrounds", data_dir, manual_dir=manual / "bgr")
    fg = catalog.open_split("image_matting/folder", "train", data_dir)
    bg = catalog.open_split("backgrounds", "train", data_dir)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"canvas {args.canvas}x{args.canvas}, source {height}x{width}, "
          f"batch {args.devices}x{args.per_device_batch}")
    for threads in args.threads:
        config = pipeline.PipelineConfig(
            canvas=(args.canvas, args.canvas), per_device_batch=args.per_device_batch, num_threads=threads
        )
        iterator = iter(pipeline.matting_pipeline(fg, bg, config, local_device_count=args.devices,
                                                  process_index=0, process_count=1))
        for _ in range(3):  # warm-up: threads start, buffers fill, files enter the page cache
            next(iterator)
        start = time.perf_counter()
        for _ in range(args.batches):
            batch = next(iterator)
        elapsed = time.perf_counter() - start
        iterator.close()
        samples = args.batches * args.devices * args.per_device_batch
        print(f"threads={threads}: {samples / elapsed:.1f} samples/s, {1000 * elapsed / args.batches:.0f} ms/batch "
              f"(batch fgr {batch['fgr'].shape})")


if __name__ == "__main__":
    main()
