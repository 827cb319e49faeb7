"""Whole-model conversion in both directions: official PyTorch weights -> bgm_jax checkpoint directory,
and a bgm_jax checkpoint -> a PyTorch state_dict the original code loads.

:func:`convert_checkpoint` never imports torch: it reads the file with the allow-list reader
(:mod:`~bgm_jax.convert.sources`), detects the model from the keys and shapes
(:func:`~bgm_jax.convert.keys.detect_config`), converts with strict accounting against the shapes the
detected model expects (:func:`~bgm_jax.checkpoint.abstract_variables`) and writes an Orbax checkpoint
directory whose config also records where the weights came from (file name and sha256).

:func:`export_torch` goes the other way and needs torch (only to write the file in torch's format).
Both write under a temporary name and rename on success, so an interrupted run leaves nothing that
looks finished; an existing output is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import collections
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bgm_jax.convert.keys import IGNORED_LEAF, count_parameters, detect_config, flax_to_torch, torch_to_flax
from bgm_jax.convert.sources import LoadedStateDict, read_state_dict, sniff_format
from bgm_jax.errors import InputError
from bgm_jax.io.atomic import atomic_output, check_can_write

FILE_FORMAT_NAMES = {
    "pth": "PyTorch zip checkpoint (.pth)",
    "torchscript": "TorchScript archive (read through torch)",
    "safetensors": "safetensors",
}
MODULES = ("backbone", "aspp", "decoder", "refiner")


@dataclass
class ConversionReport:
    """What :func:`convert_checkpoint` found and wrote."""

    source: str
    output_dir: str
    file_format: str
    sha256: str
    config: dict[str, Any]  # model_type, backbone, refine_kernel_size (refine models only)
    tensors: int  # state_dict entries read
    ignored: int  # num_batches_tracked entries (not needed: Flax does not count batches)
    parameters: dict[str, int]  # per top-level module, plus 'total'
    dtypes: dict[str, int]  # source dtype name -> number of tensors
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary, one item per line (what ``bgm-jax convert`` prints)."""
        config = self.config
        model = "MattingBase (no refiner)"
        if config["model_type"] == "refine":
            k = config["refine_kernel_size"]
            model = f"MattingRefine (refiner kernel {k}x{k})"
        dtypes = ", ".join(f"{count} {name}" for name, count in sorted(self.dtypes.items()))
        converted = self.tensors - self.ignored
        rows = [("read", self.source),
                ("format", f"{FILE_FORMAT_NAMES.get(self.file_format, self.file_format)}, sha256 {self.sha256}")]
        rows += [("note", note) for note in self.notes]
        rows += [
            ("backbone", config["backbone"]),
            ("model", model),
            ("tensors", f"{self.tensors}: {converted} converted ({dtypes}), {self.ignored} {IGNORED_LEAF} skipped"),
            ("parameters", f"{self.parameters['total']:,}"),
        ]
        lines = [f"{label:<12}{value}" for label, value in rows]
        width = len(f"{self.parameters['total']:,}")
        lines += [f"  {name:<10}{self.parameters[name]:>{width},}" for name in MODULES if name in self.parameters]
        lines.append(f"{'wrote':<12}{self.output_dir}")
        return lines


@dataclass
class ExportReport:
    """What :func:`export_torch` wrote."""

    checkpoint_dir: str
    output: str
    config: dict[str, Any]
    tensors: int
    parameters: dict[str, int]

    def lines(self) -> list[str]:
        model = "MattingRefine" if self.config["model_type"] == "refine" else "MattingBase"
        return [
            f"{'read':<12}{self.checkpoint_dir} ({self.config['backbone']} {model})",
            f"{'wrote':<12}{self.output}: {self.tensors} tensors, {self.parameters['total']:,} parameters",
            f"{'load with':<12}{model}({self.config['backbone']!r}).load_state_dict(torch.load(path), strict=True)",
        ]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks (the released ResNet-101 weights are ~240 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _refuse_unsupported_files(source: str) -> None:
    """Specific advice for the other files the original released, before generic format errors."""
    if os.path.isfile(source) and sniff_format(source) == "unknown" and source.lower().endswith(".onnx"):
        raise InputError(
            f"{source}: ONNX models are not converted (their graph, not a state_dict, holds the weights, and "
            "the released ones use the original's batch > 1 patch bug); convert the matching "
            "pytorch_<backbone>.pth instead."
        )


# The original's TorchScript exports (torchscript_*_fp32/fp16.pth) hold MattingRefine as the `model`
# attribute of a wrapper that hoists the runtime settings, so every key starts with this.
TORCHSCRIPT_WRAPPER_PREFIX = "model."


def unwrap_torchscript_wrapper(loaded: LoadedStateDict) -> None:
    """Strip the ``model.`` prefix of the original's TorchScript wrapper, in place, with a note."""
    prefix = TORCHSCRIPT_WRAPPER_PREFIX
    keys = list(loaded.tensors)
    if all(k.startswith(prefix) for k in keys) and any(k.startswith(f"{prefix}backbone.") for k in keys):
        loaded.tensors = collections.OrderedDict((k[len(prefix):], v) for k, v in loaded.tensors.items())
        loaded.notes.append("removed the 'model.' prefix of the original's TorchScript wrapper module")


def convert_checkpoint(input_path: str | os.PathLike, output_dir: str | os.PathLike, *,
                       overwrite: bool = False) -> ConversionReport:
    """Convert an original BackgroundMattingV2 checkpoint into a bgm_jax checkpoint directory.

    ``input_path``: ``.pth`` (torch zip format; read without torch), ``.safetensors``, or TorchScript
    (needs torch). Training checkpoints holding the weights under ``model_state``/``state_dict`` and
    ``module.``-prefixed keys are accepted. The backbone, base/refine and the refiner's kernel size
    are detected; every tensor must map and every model variable must be filled, or an
    :class:`~bgm_jax.convert.keys.ConversionError` lists all problems. Returns a
    :class:`ConversionReport`; ``bgm_jax.load(output_dir)`` then gives a ready model.
    """
    source = os.fspath(input_path)
    check_can_write(output_dir, overwrite)  # fail before reading hundreds of megabytes
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise InputError(f"{os.fspath(output_dir)}: is a file; the output of a conversion is a folder.")
    _refuse_unsupported_files(source)
    loaded = read_state_dict(source)
    unwrap_torchscript_wrapper(loaded)
    detected = detect_config(loaded.tensors, source=source)
    config = {k: v for k, v in detected.items() if v is not None}

    from bgm_jax.checkpoint import abstract_variables, save_model  # jax, orbax: only once the input is valid

    params, batch_stats = torch_to_flax(loaded.tensors, abstract_variables(config), source=source)
    sha256 = file_sha256(source)
    saved_config = {**config, "source": {"file": Path(source).name, "sha256": sha256, "format": loaded.file_format}}
    with atomic_output(output_dir, overwrite=overwrite) as partial:
        save_model(partial, {"params": params, "batch_stats": batch_stats}, saved_config)
    dtypes = collections.Counter(str(np.asarray(v).dtype) for k, v in loaded.tensors.items()
                                 if not k.endswith(IGNORED_LEAF))
    return ConversionReport(
        source=source,
        output_dir=os.fspath(output_dir),
        file_format=loaded.file_format,
        sha256=sha256,
        config=config,
        tensors=len(loaded.tensors),
        ignored=sum(k.endswith(f".{IGNORED_LEAF}") for k in loaded.tensors),
        parameters=count_parameters(loaded.tensors),
        dtypes=dict(dtypes),
        notes=list(loaded.notes),
    )


def torch_state_dict(variables: dict[str, Any]) -> "collections.OrderedDict[str, np.ndarray]":
    """The original's state_dict (numpy, float32, original key order, ``num_batches_tracked`` = 0)
    for a bgm_jax ``{'params', 'batch_stats'}`` tree. No torch needed."""
    return flax_to_torch(variables["params"], variables.get("batch_stats", {}))


def _import_torch(output: str):
    try:
        import torch
    except ImportError:
        raise InputError(
            f"{output}: writing a PyTorch checkpoint needs torch, which is not installed; install it "
            "(pip install torch) or use bgm_jax.convert.convert.torch_state_dict for numpy arrays "
            "with the same keys."
        ) from None
    return torch


def export_torch(checkpoint_dir: str | os.PathLike, output_pth: str | os.PathLike, *,
                 overwrite: bool = False) -> ExportReport:
    """Write a bgm_jax checkpoint directory as a plain PyTorch state_dict for the original code.

    The file holds exactly the original's keys in its order (``num_batches_tracked`` included, 0),
    float32 tensors, so ``MattingRefine(...).load_state_dict(torch.load(path), strict=True)`` (or
    MattingBase for a base checkpoint) accepts it. Needs torch; raises :class:`InputError` when
    torch is absent.
    """
    output = os.fspath(output_pth)
    torch = _import_torch(output)
    check_can_write(output, overwrite)
    if os.path.isdir(output):
        raise InputError(f"{output}: is a folder; the export is one .pth file.")

    from bgm_jax.checkpoint import load_model

    config, variables = load_model(checkpoint_dir)
    state_dict = torch_state_dict(variables)
    # np.array copies: torch.from_numpy refuses read-only buffers (restored arrays can be).
    tensors = collections.OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in state_dict.items())
    with atomic_output(output, overwrite=overwrite) as partial:
        # A file object, not a path: the archive's folder is then "archive", not the partial name.
        with open(partial, "wb") as f:
            torch.save(tensors, f)
    return ExportReport(
        checkpoint_dir=os.fspath(checkpoint_dir),
        output=output,
        config={k: v for k, v in config.items() if k in ("model_type", "backbone", "refine_kernel_size")},
        tensors=len(tensors),
        parameters=count_parameters(state_dict),
    )
