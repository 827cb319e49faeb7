"""Model checkpoints: one Orbax directory holding params, batch_stats, the model config and a digest of
every array.

All Orbax use for model weights goes through this module, so an Orbax API change touches one file.
A checkpoint directory is self-describing: ``load_model(dir)`` rebuilds the right model with no other
information, and refuses a damaged one instead of loading garbage.

Layout (Orbax composite checkpoint)::

    DIR/
      state/     params + batch_stats (float32 arrays)
      config/    JSON: {"format": "bgm-jax-model", "version": 1, "model_type": "refine" | "base",
                        "backbone": ..., "refine_kernel_size": 3, "source": ...}
      digests/   JSON: {"algorithm": "sha256", "arrays": {"params/backbone/conv1/kernel": "<hex>", ...}}

Integrity: ``save_model`` records the sha256 of every array (its C-order little-endian float32 bytes)
and refuses non-finite values; ``load_model`` checks the structure and shapes against the model the
config describes before reading, then every array against its digest and for NaN or infinity. Any
problem is an ``InputError`` naming the array and the directory. Directories written before digests
existed (no ``digests/``) still load, with an ``InputWarning`` saying they could not be verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgm_jax.errors import InputError, InputWarning
from bgm_jax.model_spec import BACKBONES

FORMAT = "bgm-jax-model"
VERSION = 1
MODEL_TYPES = ("refine", "base")
DIGEST_ALGORITHM = "sha256"
COLLECTIONS = ("params", "batch_stats")
_LISTED = 3  # how many names a structure mismatch lists before counting the rest


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


def config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a model config (unknown model type, backbone or kernel size), or None."""
    if config.get("model_type") not in MODEL_TYPES:
        return f"model_type {config.get('model_type')!r} is not one of {', '.join(MODEL_TYPES)}"
    if config.get("backbone") not in BACKBONES:
        return f"backbone {config.get('backbone')!r} is not one this bgm-jax knows ({', '.join(BACKBONES)})"
    if config["model_type"] == "refine" and config.get("refine_kernel_size", 3) not in (1, 3):
        return f"refine_kernel_size {config.get('refine_kernel_size')!r} is not 1 or 3"
    scale = config.get("backbone_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 0.5):
        return f"backbone_scale {scale!r} is not a number in (0, 0.5]"
    return None


# ---------------------------------------------------------------------------------------------- Orbax


def _checkpointer():
    import orbax.checkpoint as ocp

    _ignore_closed_event_loop_callbacks()
    return ocp, ocp.Checkpointer(ocp.CompositeCheckpointHandler())


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax logs every failed write or read as an absl ERROR with a traceback (several per failure) before
    raising; the caller turns the exception into one line, so the logs are held back while Orbax runs."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_HOOK_INSTALLED = False


def _ignore_closed_event_loop_callbacks() -> None:
    """When one read or write of a checkpoint fails, Orbax closes its event loop while tensorstore still
    completes the others; each completion then raises "Event loop is closed" inside asyncio's
    ``call_soon_threadsafe``, and Python prints it as an unraisable exception: dozens of tracebacks after
    the real error. Drop exactly those (nothing can act on them); everything else reaches the old hook."""
    global _HOOK_INSTALLED
    if _HOOK_INSTALLED:
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            frames = []
            tb = unraisable.exc_traceback
            while tb is not None:
                frames.append(tb.tb_frame.f_code.co_name)
                tb = tb.tb_next
            if "call_soon_threadsafe" in frames:
                return
        previous(unraisable)

    sys.unraisablehook = hook
    _HOOK_INSTALLED = True


def _orbax_reason(error: BaseException) -> str:
    """The first line of an Orbax/tensorstore error, without the Python type."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:300]


def _os_error_code(error: BaseException) -> int | None:
    """The errno of a failed tensorstore write (it reports it as text), or of an OSError."""
    if isinstance(error, OSError) and error.errno:
        return error.errno
    match = re.search(r"os_error_code='?(\d+)", str(error))
    return int(match.group(1)) if match else None


def _remove_orbax_leftovers(path: Path) -> None:
    """Remove the ``NAME.orbax-checkpoint-tmp*`` folder of a failed save (Orbax renames it to ``NAME`` only
    when complete). Writes that were in flight when the save failed are flushed by tensorstore when its
    objects are collected, recreating parts of the folder: collect them first, then remove, and check
    that nothing comes back."""
    import gc

    for attempt in range(5):
        gc.collect()
        leftovers = list(path.parent.glob(f"{path.name}.orbax-checkpoint-tmp*"))
        if not leftovers and attempt:
            return
        for leftover in leftovers:
            shutil.rmtree(leftover, ignore_errors=True)
        time.sleep(0.1 * attempt)


# ---------------------------------------------------------------------------------------------- digests


def array_digest(array) -> str:
    """sha256 of an array's C-order little-endian float32 bytes (what ``digests/`` records)."""
    data = np.ascontiguousarray(np.asarray(array), dtype="<f4")
    return hashlib.sha256(data.tobytes()).hexdigest()


def _named_leaves(tree: dict[str, Any]) -> dict[str, Any]:
    """{"params/backbone/conv1/kernel": leaf, ...}"""
    return {
        "/".join(str(getattr(key, "key", key)) for key in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _first_non_finite(named: dict[str, np.ndarray]) -> tuple[str, int] | None:
    for name, array in named.items():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        if bad:
            return name, bad
    return None


# ---------------------------------------------------------------------------------------------- writing


def save_model(directory: str | os.PathLike, variables: dict[str, Any], config: dict[str, Any], *,
               overwrite: bool = False) -> Path:
    """Write ``variables`` ({"params", "batch_stats"}), ``config`` and the arrays' digests to ``directory``.

    Orbax writes to a temporary directory and renames it when complete; a failed write (disk full,
    permission denied) removes that temporary directory and raises one ``InputError``, so no directory
    that looks like a checkpoint, and no hidden leftover, remains. Non-finite values are refused.
    """
    path = Path(directory).absolute()
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output already exists; choose another path, or pass --overwrite to replace it")
    config = {"format": FORMAT, "version": VERSION, **config}
    problem = config_problem(config)
    if problem is not None:
        raise ValueError(f"cannot save a model whose config is wrong: {problem}")
    state = {collection: jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), variables[collection])
             for collection in COLLECTIONS}
    named = _named_leaves(state)
    bad = _first_non_finite(named)
    if bad is not None:
        raise InputError(f"{path}: not written: array {bad[0]} holds {bad[1]} non-finite value(s) (NaN or "
                         "infinity); the weights are broken")
    digests = {"algorithm": DIGEST_ALGORITHM, "arrays": {name: array_digest(a) for name, a in named.items()}}
    ocp, ckpt = _checkpointer()
    try:
        with _quiet_orbax():
            ckpt.save(
                path,
                args=ocp.args.Composite(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config),
                                        digests=ocp.args.JsonSave(digests)),
                force=overwrite,
            )
    except BaseException as e:
        _remove_orbax_leftovers(path)
        if isinstance(e, Exception) and not isinstance(e, InputError):
            from bgm_jax.io.atomic import WriteFailure, write_failure

            code = _os_error_code(e)
            raise (write_failure(path, code) if code is not None else WriteFailure(path, _orbax_reason(e))) from e
        raise
    return path


# ---------------------------------------------------------------------------------------------- reading


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The model config stored in a checkpoint directory (no arrays are read); InputError when the
    directory is not a bgm-jax checkpoint or its config describes no model this bgm-jax has."""
    path = Path(directory).absolute()
    if not path.is_dir():
        if path.is_file() and path.suffix.lower() in (".pth", ".pt", ".safetensors"):
            raise InputError(f"{path}: this is a PyTorch checkpoint: run `bgm-jax convert {path} MODEL_DIR` "
                             "first and give MODEL_DIR")
        raise InputError(f"{path}: no such checkpoint directory; create one with `bgm-jax convert MODEL.pth {path}`")
    ocp, ckpt = _checkpointer()
    try:
        with _quiet_orbax():
            restored = ckpt.restore(path, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        config = dict(restored["config"])
    except Exception as e:  # Orbax raises several types for a directory that is not a checkpoint
        raise InputError(
            f"{path}: not a bgm-jax model checkpoint ({_orbax_reason(e)}); "
            "create one with `bgm-jax convert MODEL.pth OUTPUT_DIR`"
        ) from None
    if config.get("format") != FORMAT:
        raise InputError(f"{path}: config format is {config.get('format')!r}, expected {FORMAT!r}")
    if config.get("version", 0) > VERSION:
        raise InputError(f"{path}: checkpoint version {config['version']} is newer than this bgm-jax; upgrade bgm-jax")
    problem = config_problem(config)
    if problem is not None:
        raise InputError(f"{path}: its config is not usable: {problem}; write the directory again with "
                         "`bgm-jax convert`")
    return config


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _check_structure(path: Path, config: dict[str, Any], target: dict[str, Any]) -> None:
    """Compare the stored arrays' names and shapes with the model's before reading any of them, so a
    mismatch is a short list (a few names and a count) rather than Orbax's dump of the whole tree."""
    import orbax.checkpoint as ocp
    from etils import epath

    try:
        with _quiet_orbax():
            metadata = ocp.StandardCheckpointHandler().metadata(epath.Path(path / "state"))
    except Exception as e:
        raise InputError(f"{path}: cannot read the list of arrays ({_orbax_reason(e)}); the checkpoint is "
                         "damaged: write it again with `bgm-jax convert`") from None
    stored = {name: tuple(leaf.shape) for name, leaf in _named_leaves(dict(metadata)).items()
              if name.split("/")[0] in COLLECTIONS}
    expected = {name: tuple(leaf.shape) for name, leaf in _named_leaves(target).items()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    reshaped = sorted(f"{name} {stored[name]} instead of {expected[name]}"
                      for name in set(stored) & set(expected) if stored[name] != expected[name])
    if not (missing or unexpected or reshaped):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
    if reshaped:
        parts.append(f"{len(reshaped)} of another shape ({_listed(reshaped)})")
    model = f"{config['backbone']} {config['model_type']}"
    raise InputError(f"{path}: its arrays are not those of the {model} model its config describes: "
                     f"{'; '.join(parts)}; the config or the arrays were changed: write the directory again "
                     "with `bgm-jax convert`")


def _array_in_error(error: BaseException) -> str | None:
    """The array a tensorstore read error names ("params.aspp.convs_3_0.kernel/0.0" -> params/aspp/...)."""
    match = re.search(r'Error reading "([^"/]+)', str(error))
    return match.group(1).replace(".", "/") if match else None


def load_model(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint: returns ``(config, variables)``; ``build_model(config, ...)`` gives the module.

    The arrays are checked against the shapes the config's model expects, against the digests recorded
    when they were written, and for non-finite values, so a damaged or mismatched checkpoint is an
    ``InputError`` naming the array here rather than garbage at the first call.
    """
    path = Path(directory).absolute()
    config = read_config(path)
    target = abstract_variables(config)
    target = {k: target[k] for k in COLLECTIONS}
    _check_structure(path, config, target)
    has_digests = (path / "digests").is_dir()
    ocp, ckpt = _checkpointer()
    items = {"state": ocp.args.StandardRestore(target)}
    if has_digests:
        items["digests"] = ocp.args.JsonRestore()
    try:
        with _quiet_orbax():
            restored = ckpt.restore(path, args=ocp.args.Composite(**items))
    except Exception as e:
        array = _array_in_error(e)
        if array is not None:  # a tensorstore read error: its status code says enough next to the name
            status = re.match(r"\s*([A-Z_]+):", str(e))
            raise InputError(f"{path}: array {array} is damaged: it cannot be read"
                             + (f" ({status.group(1)})" if status else "") + " (the file was truncated or "
                             "changed); write the checkpoint again with `bgm-jax convert`") from None
        raise InputError(f"{path}: cannot read its arrays ({_orbax_reason(e)}); the checkpoint is damaged "
                         "(truncated or changed): write it again with `bgm-jax convert`") from None
    variables = dict(restored["state"])
    named = _named_leaves(variables)
    if has_digests:
        recorded = dict(restored["digests"]).get("arrays", {})
        for name, array in named.items():
            if recorded.get(name) != array_digest(array):
                raise InputError(f"{path}: array {name} is damaged: it does not match the digest recorded "
                                 "when it was written (the file was changed); write the checkpoint again with "
                                 "`bgm-jax convert`")
    else:
        warnings.warn(f"{path}: written by an older bgm-jax without array digests, so damage cannot be "
                      "detected; write it again (`bgm-jax convert`) to add them", InputWarning, stacklevel=2)
    bad = _first_non_finite(named)
    if bad is not None:
        raise InputError(f"{path}: array {bad[0]} holds {bad[1]} non-finite value(s) (NaN or infinity); the "
                         "checkpoint is damaged: write it again with `bgm-jax convert`")
    return config, variables
