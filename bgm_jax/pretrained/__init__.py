"""The model that ships inside the package: what ``bgm_jax.load()`` and every command use without a model.

It was trained by this project's own stack (the chain of ``train/configs/photo_*_mobilenetv2.py`` configs that
``docs/model.md`` runs: base stages, a refine stage, its base network trained on, then thirty-one more refine stages,
the last twenty-six with a loss term on the soft band, the last twenty-three with the subjects near their native
size, the last twenty with the supplement's milder plate colour misalignment, the last nineteen with the base
network at half the image's size, the last seventeen with a loss term on strands, the last sixteen with three times
the refined patches, the last fifteen with most foregrounds unwarped, three of them with both band terms doubled in
turn, then twelve keeping a moving average of the weights (at half the rates, at the full rates twice, at half the
rates, then one schedule 2.5 times as long from the full rates down and seven 3 times as long), whose last average is
what ships) on synthetic composites textured with the sample photographs bundled in scikit-image; see
``MODEL_CARD.md`` beside this file for the data, the training, the measured quality and the limits. For real
footage, convert the official weights (``bgm-jax convert``).

Storage: one ``.npz`` of float16 arrays (``params/...`` and ``batch_stats/...``, about half the size of
float32) and a JSON file with the model config, the sha256 of the ``.npz`` and a summary. Loading checks
the digest, the structure against the model the config describes and that every value is finite, then
restores float32 arrays (float16 keeps 11 significant bits; the matte moves by under 1e-3).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bgm_jax.errors import InputError

NAME = "photo-mobilenetv2"
WEIGHTS_FILE = "photo_mobilenetv2.npz"
INFO_FILE = "photo_mobilenetv2.json"
STORAGE_DTYPE = np.float16
# One held-out test record of photo_matting (photos never seen in training), the demo's default input.
EXAMPLE_FILES = {"fgr": "example_fgr.jpg", "pha": "example_pha.png", "bgr": "example_bgr.jpg"}
LIMITS = "trained on synthetic composites of a few dozen photographs; for real footage convert the official weights"


def _files():
    return resources.files(__name__)


def info() -> dict[str, Any]:
    """The embedded model's description: ``config``, ``sha256`` of the weights file, ``summary``."""
    try:
        return json.loads(_files().joinpath(INFO_FILE).read_text())
    except FileNotFoundError:
        raise InputError(f"this bgm-jax installation has no embedded model ({INFO_FILE} is missing); "
                         "reinstall bgm-jax, or pass --model DIR") from None


def describe() -> str:
    """One line for the commands to print when they use the embedded model."""
    summary = info().get("summary", "")
    return f"embedded {NAME} ({summary + '; ' if summary else ''}{LIMITS})"


def load_embedded() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, variables)`` of the embedded model, float32, verified as ``checkpoint.load_model`` does."""
    description = info()
    try:
        data = _files().joinpath(WEIGHTS_FILE).read_bytes()
    except FileNotFoundError:
        raise InputError(f"this bgm-jax installation has no embedded weights ({WEIGHTS_FILE} is missing); "
                         "reinstall bgm-jax, or pass --model DIR") from None
    return description["config"], read_weights(data, description, source=f"embedded {WEIGHTS_FILE}")


def example() -> tuple[dict[str, np.ndarray], str] | None:
    """``({"fgr", "pha", "bgr"} uint8 arrays, description)`` of the shipped example, or None without one."""
    from bgm_jax.datasets.images import decode

    try:
        data = {key: _files().joinpath(name).read_bytes() for key, name in EXAMPLE_FILES.items()}
        record = info().get("example", {})
    except (FileNotFoundError, InputError):
        return None
    arrays = {key: decode(value, "L" if key == "pha" else "RGB") for key, value in data.items()}
    photos = record.get("photos", "")
    return arrays, f"held-out photo_matting test record {record.get('record', '?')} ({photos}; unseen in training)"


def read_weights(data: bytes, description: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Verify and decode weights bytes written by ``write_embedded``."""
    from bgm_jax.checkpoint import abstract_variables

    if hashlib.sha256(data).hexdigest() != description.get("sha256"):
        raise InputError(f"{source}: the weights do not match their recorded sha256 (damaged or changed); "
                         "reinstall bgm-jax")
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        flat = {name: arrays[name] for name in arrays.files}
    target = abstract_variables(description["config"])
    variables: dict[str, Any] = {}
    expected = set()
    for collection in ("params", "batch_stats"):
        for path, leaf in _flatten(target[collection]):
            name = "/".join((collection, *path))
            expected.add(name)
            if name not in flat:
                raise InputError(f"{source}: array {name} is missing; reinstall bgm-jax")
            array = flat[name]
            if tuple(array.shape) != tuple(leaf.shape):
                raise InputError(f"{source}: array {name} has shape {array.shape}, the model needs {leaf.shape}")
            array = array.astype(np.float32)
            if not np.all(np.isfinite(array)):
                raise InputError(f"{source}: array {name} holds non-finite values; reinstall bgm-jax")
            _insert(variables, (collection, *path), array)
    extra = sorted(set(flat) - expected)
    if extra:
        raise InputError(f"{source}: {len(extra)} unexpected array(s), e.g. {extra[0]}; reinstall bgm-jax")
    return variables


def write_embedded(model_dir: str | os.PathLike, out_dir: str | os.PathLike, summary: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Package a model directory (``train.main`` exports one) as the embedded model in ``out_dir``:
    float16 ``.npz`` and its JSON description (``extra`` adds keys, e.g. the measured bounds the tests
    hold it to). Returns the description."""
    from bgm_jax.checkpoint import load_model

    config, variables = load_model(model_dir)
    flat = {}
    for collection in ("params", "batch_stats"):
        for path, leaf in _flatten(variables[collection]):
            array = np.asarray(leaf, np.float32)
            stored = array.astype(STORAGE_DTYPE)
            if not np.all(np.isfinite(stored)):
                raise InputError(f"{model_dir}: {collection}/{'/'.join(path)} overflows float16")
            flat["/".join((collection, *path))] = stored
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **flat)
    data = buffer.getvalue()
    kept = ("model_type", "backbone", "refine_kernel_size", "backbone_scale")
    description = {"name": NAME, "config": {k: config[k] for k in kept if k in config},
                   "storage_dtype": np.dtype(STORAGE_DTYPE).name, "sha256": hashlib.sha256(data).hexdigest(),
                   "bytes": len(data), "source": str(config.get("source", "")), "summary": summary, **(extra or {})}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS_FILE).write_bytes(data)
    (out / INFO_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return description


def _flatten(tree, prefix=()):
    if isinstance(tree, dict) or hasattr(tree, "items"):
        for key in sorted(tree):
            yield from _flatten(tree[key], prefix + (str(key),))
    else:
        yield prefix, tree


def _insert(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
