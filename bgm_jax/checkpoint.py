"""Model checkpoints: one Orbax directory holding params, batch_stats and the model config.

All Orbax use for model weights goes through this module, so an Orbax API change touches one file.
A checkpoint directory is self-describing: ``load_model(dir)`` rebuilds the right model with no other
information.

Layout (Orbax composite checkpoint)::

    DIR/
      state/     params + batch_stats (float32 arrays)
      config/    JSON: {"format": "bgm-jax-model", "version": 1, "model_type": "refine" | "base",
                        "backbone": ..., "refine_kernel_size": 3, "source": ...}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgm_jax.errors import InputError

FORMAT = "bgm-jax-model"
VERSION = 1
MODEL_TYPES = ("refine", "base")


def build_model(config: dict[str, Any], **overrides):
    """The Flax module a config describes; ``overrides`` set runtime fields (backbone_scale, refine_mode,
    refine_sample_pixels, dtype, ...). Architecture fields (backbone, kernel size) come from the config."""
    from bgm_jax.models import MattingBase, MattingRefine

    model_type = config.get("model_type")
    if model_type == "base":
        base_fields = {k: v for k, v in overrides.items() if k in ("dtype", "bn_axis_name")}
        return MattingBase(backbone=config["backbone"], **base_fields)
    if model_type == "refine":
        return MattingRefine(
            backbone=config["backbone"], refine_kernel_size=config.get("refine_kernel_size", 3), **overrides
        )
    raise InputError(f"unknown model_type {model_type!r} in checkpoint config; expected one of {MODEL_TYPES}")


def abstract_variables(config: dict[str, Any]) -> dict[str, Any]:
    """Shapes and dtypes of the variables of the model ``config`` describes, without allocating them."""
    model = build_model(config)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return jax.eval_shape(lambda s, b: model.init(jax.random.key(0), s, b), x, x)


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp, ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_model(directory: str | os.PathLike, variables: dict[str, Any], config: dict[str, Any], *,
               overwrite: bool = False) -> Path:
    """Write ``variables`` ({"params", "batch_stats"}) and ``config`` to ``directory``.

    Orbax writes to a temporary directory and renames it when complete, so an interrupted save leaves no
    directory that looks like a checkpoint.
    """
    path = Path(directory).absolute()
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output already exists; choose another path or pass overwrite=True (--overwrite)")
    config = {"format": FORMAT, "version": VERSION, **config}
    if config.get("model_type") not in MODEL_TYPES:
        raise ValueError(f"config needs model_type in {MODEL_TYPES}, got {config.get('model_type')!r}")
    state = {
        "params": jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), variables["params"]),
        "batch_stats": jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), variables["batch_stats"]),
    }
    ocp, ckpt = _checkpointer()
    ckpt.save(
        path,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config)),
        force=overwrite,
    )
    return path


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The model config stored in a checkpoint directory (no arrays are read)."""
    path = Path(directory).absolute()
    if not path.is_dir():
        raise InputError(f"{path}: no such checkpoint directory; create one with `bgm-jax convert MODEL.pth {path}`")
    ocp, ckpt = _checkpointer()
    try:
        restored = ckpt.restore(path, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        config = dict(restored["config"])
    except Exception as e:  # Orbax raises several types for a directory that is not a checkpoint
        raise InputError(
            f"{path}: not a bgm-jax model checkpoint ({type(e).__name__}: {e}); "
            "create one with `bgm-jax convert MODEL.pth OUTPUT_DIR`"
        ) from None
    if config.get("format") != FORMAT:
        raise InputError(f"{path}: config format is {config.get('format')!r}, expected {FORMAT!r}")
    if config.get("version", 0) > VERSION:
        raise InputError(f"{path}: checkpoint version {config['version']} is newer than this bgm-jax; upgrade bgm-jax")
    return config


def load_model(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint: returns ``(config, variables)``; ``build_model(config, ...)`` gives the module.

    Arrays are restored against the shapes the config's model expects, so a damaged or mismatched
    checkpoint is reported here rather than at the first call.
    """
    path = Path(directory).absolute()
    config = read_config(path)
    target = abstract_variables(config)
    target = {k: target[k] for k in ("params", "batch_stats")}
    ocp, ckpt = _checkpointer()
    try:
        restored = ckpt.restore(path, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    except Exception as e:
        raise InputError(
            f"{path}: arrays do not match the {config.get('backbone')} {config.get('model_type')} model "
            f"described by its config ({type(e).__name__}: {e})"
        ) from None
    return config, dict(restored["state"])
