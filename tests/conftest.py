"""Test-suite setup.

Four fake CPU devices so data-parallel code (pmap, sharded jit) is tested on any machine; this must be
set before jax is first imported, which is why it happens here at collection time.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
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
