"""bgm-jax: Real-Time High-Resolution Background Matting (BackgroundMattingV2) in JAX/Flax.

Importing ``bgm_jax`` is cheap; the model classes are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "MattingBase": "bgm_jax.models.matting",
    "MattingRefine": "bgm_jax.models.matting",
    "InputError": "bgm_jax.errors",
    "load": "bgm_jax.inference",
    "Matting": "bgm_jax.inference",
    "MattingResult": "bgm_jax.inference",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bgm_jax' has no attribute {name!r}")
