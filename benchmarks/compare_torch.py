"""Model-only speed of this project against the PyTorch reference, in one process, on this machine.

    python benchmarks/compare_torch.py --backbone mobilenetv2 --size 512x512 --repeats 7

The reference is the test suite's PyTorch re-implementation of the original (tests/torch_reference.py,
same architecture, patches cropped with unfold). Both run the same settings (the paper's for the
size, prevent_oversampling off: exactly k patches) on random weights and inputs. Calls alternate
(JAX, torch, JAX, ...) so load from other processes hits both alike; each JAX call waits for
``block_until_ready``. Prints medians and the time ratio torch / JAX (above 1: JAX is faster).
Needs torch (a test dependency); CPU only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_reference  # noqa: E402

from bgm_jax.cli.common import random_weight_matting  # noqa: E402
from bgm_jax.inference import recommended_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenetv2", choices=torch_reference.BACKBONES)
    parser.add_argument("--size", default="512x512", help="WIDTHxHEIGHT (multiples of 4)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    scale, pixels = recommended_settings(height, width)
    torch.set_num_threads(args.threads)

    reference = torch_reference.random_model("refine", args.backbone, backbone_scale=scale,
                                             refine_sample_pixels=pixels, refine_prevent_oversampling=False)
    src_t, bgr_t = torch_reference.random_inputs(1, height, width)
    matting = random_weight_matting(args.backbone, {"refine_prevent_oversampling": False}, compilation_cache="")
    src = jax.device_put(src_t.permute(0, 2, 3, 1).numpy())
    bgr = jax.device_put(bgr_t.permute(0, 2, 3, 1).numpy())
    compiled = matting.compiled_for(src.shape, src.dtype, bgr.shape, bgr.dtype)

    def run_jax():
        jax.block_until_ready(compiled(matting.variables, src, bgr))

    @torch.inference_mode()
    def run_torch():
        reference(src_t, bgr_t)

    run_jax(), run_torch()  # warm-up
    times = {"jax": [], "torch": []}
    for _ in range(args.repeats):
        for name, fn in (("jax", run_jax), ("torch", run_torch)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    jax_ms, torch_ms = (float(np.median(times[k])) * 1e3 for k in ("jax", "torch"))
    print(f"{args.backbone} {width}x{height} (scale {scale}, {pixels // 16} patches), load {os.getloadavg()}:")
    print(f"  jax {jax_ms:.1f} ms, torch {torch_ms:.1f} ms (torch {torch.__version__}, {args.threads} threads): "
          f"torch/jax time ratio {torch_ms / jax_ms:.2f}")


if __name__ == "__main__":
    main()
