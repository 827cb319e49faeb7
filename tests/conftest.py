"""Test-suite setup.

Four fake CPU devices so data-parallel code (pmap, sharded jit) is tested on any machine; this must be
set before jax is first imported, which is why it happens here at collection time.

XLA compiles fast rather than well here (LLVM at -O0, its expensive passes off): the suite's time goes
to compiling training steps and models at tiny sizes, not to running them, and the flags halve each
compilation (a MobileNetV2 training step: about 2x faster to compile). Measured on 2 cores (2026-12-01,
a niced training run beside it): `pytest tests/test_trainer.py tests/test_models.py tests/test_precision.py`
took 521 s with these flags and 842 s without (XLA_FLAGS set to the device count alone). Tests that start
Python subprocesses give them the same flags through ``xla_flags``.
"""

import os

FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def xla_flags(devices: int) -> str:
    """XLA_FLAGS for a test's subprocess: ``devices`` fake CPU devices, compiled as the suite compiles."""
    return f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"


os.environ.setdefault("XLA_FLAGS", xla_flags(4))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


def require_torch():
    """Import torch for a parity test. Skips where torch is absent, except under CI
    (BGM_REQUIRE_TORCH=1), where a missing torch is a failure, never a silent skip."""
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.environ.get("BGM_REQUIRE_TORCH") == "1":
            pytest.fail("torch is required for parity tests (BGM_REQUIRE_TORCH=1) but is not installed")
        pytest.skip("torch not installed")
    return torch


# The README runs the suite as `-n 2 --dist loadfile --no-loadscope-reorder`: each file on one worker, so
# a module's fixtures (a model, a checkpoint, a whole training run) are made once, not once per worker
# (`--dist load` split tests/test_device_check.py and ran its 110 s smoke run on both workers). Files go
# to the workers in collection order, so the longest ones are collected first and the many short ones
# fill the end (longest first; measured with --durations on 2 cores, 2026-12-06).
LONGEST_FIRST = ("test_train_loop.py", "test_train_stop.py", "test_stage_configs.py", "test_device_check.py",
                 "test_trainer.py", "test_device_training.py", "test_models.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
