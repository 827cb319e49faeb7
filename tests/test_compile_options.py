"""The XLA options compiled models get (bgm_jax.compile_options): YNNPACK convolutions on CPUs where the
jaxlib knows the option, nothing elsewhere, nothing when an option is unknown; and the live model
compiles with them."""

from __future__ import annotations

import jax
import numpy as np

from bgm_jax import compile_options


def test_cpu_gets_the_ynnpack_fusions_or_nothing_and_other_platforms_nothing():
    options = compile_options.compiler_options("cpu")
    assert options in (compile_options.CPU_COMPILER_OPTIONS, {})
    assert compile_options.compiler_options("cuda") == {}
    options["changed"] = "x"  # a copy: callers cannot change what the next model gets
    assert "changed" not in compile_options.compiler_options("cpu")


def test_an_option_this_jaxlib_does_not_know_is_dropped(monkeypatch):
    monkeypatch.setattr(compile_options, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "1"})
    compile_options._supported.cache_clear()
    try:
        assert compile_options.compiler_options("cpu") == {}
    finally:
        compile_options._supported.cache_clear()


def test_the_live_model_compiles_with_the_options_and_matches_default_xla_closely():
    from bgm_jax.cli.common import random_weight_matting

    matting = random_weight_matting("mobilenetv2", {"refine_sample_pixels": 16 * 40}, compilation_cache="")
    src = np.random.default_rng(0).random((1, 64, 64, 3), np.float32)
    bgr = np.random.default_rng(1).random((1, 64, 64, 3), np.float32)
    compiled = matting.compiled_for(src.shape, src.dtype, bgr.shape, bgr.dtype)
    with jax.default_matmul_precision("highest"):
        plain = matting._lower(src.shape, src.dtype, bgr.shape, bgr.dtype).compile()  # XLA's defaults
    for ours, default in zip(compiled(matting.variables, src, bgr), plain(matting.variables, src, bgr)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(default), atol=1e-5)
