"""XLA options every compiled model gets, per platform: the one place ``bgm_jax.inference`` (the live
model) and the StableHLO loader (``bgm_jax.deploy.stablehlo``) take them from, so both compile alike.

CPU: convolutions and matrix products run as YNNPACK fusions
(``xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT``) instead of XLA's own Eigen kernels.
On this network's small-channel convolutions that is 2-4x less CPU time (the refiner's 42 -> 24 conv at
half resolution: 93 -> 26 ms at 512x512), parallel over the same thread pool; adding YNNPACK's
elementwise or reduction fusions made the model slower, so only dots and convolutions go there
(docs/benchmarks.md, "What changed for the CPU"). Options are per compilation: other JAX code in the
process keeps XLA's defaults. Other platforms get none. A jaxlib that does not know an option (YNNPACK
fusions are recent in XLA) gets none either, found by compiling a one-op function once per process.
Needs jax only.
"""

from __future__ import annotations

import functools

CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def compiler_options(platform: str) -> dict[str, str]:
    """The XLA compile options for a model compiled for ``platform`` ('cpu', 'cuda', ...)."""
    return dict(_supported(platform))


@functools.lru_cache(maxsize=None)
def _supported(platform: str) -> tuple[tuple[str, str], ...]:
    options = CPU_COMPILER_OPTIONS if platform == "cpu" else {}
    if not options:
        return ()
    import jax
    import jax.numpy as jnp

    try:
        device = jax.devices(platform)[0]
        probe = jax.device_put(jnp.zeros((2, 2), jnp.float32), device)
        jax.jit(lambda x: x @ x).lower(probe).compile(dict(options))
    except Exception:  # an unknown option or value in this jaxlib, or no such platform
        return ()
    return tuple(options.items())
