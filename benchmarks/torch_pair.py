"""What the PyTorch comparisons share: one set of weights in both implementations, timing, the method line.

The PyTorch side is the test suite's reference of the original (tests/torch_reference.py: the original's
architecture and refiner code, patches cropped with ``unfold``), with seeded random weights and
BatchNorm statistics; ``same_weights`` converts exactly those into bgm-jax variables (the converter's
key table, as ``bgm-jax convert`` does), so both run identical weights and select the same patches.
Needs torch (a test dependency); CPU only.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_reference  # noqa: E402


def same_weights(backbone: str, **refine_kwargs):
    """``(torch_model, config, variables)``: a random reference model (eval mode) and its weights as
    bgm-jax variables. ``refine_kwargs`` are the reference's (``refine_sample_pixels``, ...)."""
    from bgm_jax.checkpoint import abstract_variables
    from bgm_jax.convert.keys import torch_to_flax

    torch_model = torch_reference.random_model("refine", backbone, **refine_kwargs)
    config = {"model_type": "refine", "backbone": backbone, "refine_kernel_size": 3}
    state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    params, batch_stats = torch_to_flax(state, abstract_variables(config), source="torch_reference")
    return torch_model, config, {"params": params, "batch_stats": batch_stats}


def timed(fn) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one call: wall clock, and CPU time of this process (all threads)."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_ms(values) -> float:
    return float(statistics.median(values)) * 1e3


def spread_ms(values) -> str:
    """min-max of the values in ms."""
    return f"{min(values) * 1e3:.0f}-{max(values) * 1e3:.0f}"


def load_average() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def method_line(torch_threads: int) -> str:
    import jax
    import torch

    from bgm_jax.compile_options import CPU_COMPILER_OPTIONS

    options = ", ".join(f"{k}={v}" for k, v in CPU_COMPILER_OPTIONS.items())
    return (f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; torch {torch.__version__} with "
            f"{torch_threads} intra-op threads; jax {jax.__version__} ({jax.default_backend()}, XLA options: "
            f"{options}); float32, batch 1")


def nhwc(t) -> np.ndarray:
    return t.permute(0, 2, 3, 1).contiguous().numpy()
