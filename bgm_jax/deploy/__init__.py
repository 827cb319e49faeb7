"""Deployment exports: StableHLO (``jax.export``) and ONNX, each runnable without bgm-jax's model code.

    from bgm_jax.deploy import export
    export("checkpoints/resnet50", "resnet50_hd.onnx", format="onnx", size=(1920, 1080))
    export("checkpoints/resnet50", "resnet50_hd", format="stablehlo", size=(1920, 1080))

See ``docs/deploy.md``. Modules: ``options`` (settings and interface shared by both), ``stablehlo``
(exporter and loader), ``onnx`` (the graph written against the ONNX opset).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from bgm_jax.errors import InputError

__all__ = ["ExportReport", "export", "load_stablehlo"]


@dataclasses.dataclass
class ExportReport:
    """What :func:`export` wrote."""

    path: Path
    format: str
    metadata: dict[str, Any]  # also stored with the export (ONNX metadata_props / meta.json)
    size_bytes: int
    seconds: float

    def lines(self) -> list[str]:
        """Human-readable summary (what ``bgm-jax export`` prints)."""
        meta = self.metadata
        model = meta["model"]
        kind = "MattingBase" if model.get("model_type") == "base" else (
            f"MattingRefine (refiner kernel {model.get('refine_kernel_size', 3)})")
        batch = "N (any)" if meta["batch"] is None else str(meta["batch"])
        src = meta["inputs"]["src"]
        shape = "x".join(batch if d is None else str(d) for d in src["shape"])
        settings = ", ".join(f"{k} {v}" for k, v in meta["settings"].items())
        lines = [
            f"wrote {self.path} ({self.format}, {self.size_bytes / 1e6:.1f} MB) in {self.seconds:.1f} s",
            f"model: {model.get('backbone')} {kind}",
            f"inputs: src, bgr {src['dtype']} {meta['layout'].upper()} {shape}"
            + (" in [0, 255]" if src["dtype"] == "uint8" else " in [0, 1]"),
            f"outputs: {', '.join(meta['outputs'])} (float32, {meta['layout'].upper()}); batch {batch}",
            f"settings: {settings}",
        ]
        if self.format == "stablehlo":
            lines.append(f"platforms: {', '.join(meta.get('platforms', []))}; run with "
                         f"bgm_jax.deploy.load_stablehlo({str(self.path)!r})")
        else:
            lines.append("run with onnxruntime: see docs/deploy.md")
        return lines


def export(
    model,
    out: str | os.PathLike,
    *,
    format: str,
    size: tuple[int, int],
    batch: int | None = None,
    layout: str | None = None,
    input_dtype: str = "float32",
    outputs=("pha", "fgr"),
    overwrite: bool = False,
    platforms=None,
    **settings,
) -> ExportReport:
    """Export ``model`` (a model directory, or a ``Matting`` from ``bgm_jax.load``) for inputs of
    ``size = (width, height)``.

    ``format``: ``"onnx"`` (one ``.onnx`` file) or ``"stablehlo"`` (a directory for
    :func:`load_stablehlo`). ``batch``: None for any batch size, or a fixed one. ``layout``: ``"nchw"``
    (default for ONNX, as the original's ONNX files) or ``"nhwc"`` (default for StableHLO).
    ``input_dtype``: ``"float32"`` in [0, 1] or ``"uint8"``. ``outputs``: some of pha, fgr, err, ref
    (list or comma-separated). ``settings``: ``bgm_jax.load``'s (backbone_scale, refine_mode,
    refine_sample_pixels, refine_threshold, refine_prevent_oversampling, precision); unset ones follow
    the paper for the size. ``platforms`` (StableHLO only): default ("cpu", "cuda").
    An existing ``out`` is replaced only with ``overwrite=True``; nothing is left at ``out`` on failure.
    """
    from bgm_jax.deploy.options import plan_export
    from bgm_jax.io.atomic import check_can_write, ensure_dir

    start = time.perf_counter()
    out = check_can_write(Path(out), overwrite)  # before any work
    ensure_dir(out.parent)
    if platforms is not None and format != "stablehlo":
        raise InputError("platforms: only StableHLO exports are lowered per platform; ONNX runs anywhere")
    plan = plan_export(model, format=format, size=size, batch=batch, layout=layout, input_dtype=input_dtype,
                       outputs=outputs, **settings)
    if format == "onnx":
        from bgm_jax.deploy.onnx import export_onnx

        export_onnx(plan, out, overwrite=overwrite)
        size_bytes = out.stat().st_size
        metadata = plan.metadata()
    else:
        from bgm_jax.deploy.stablehlo import (
            DEFAULT_PLATFORMS,
            META_FILE,
            export_stablehlo,
        )

        export_stablehlo(plan, out, overwrite=overwrite, platforms=platforms or DEFAULT_PLATFORMS)
        size_bytes = sum(f.stat().st_size for f in out.iterdir())
        import json

        metadata = json.loads((out / META_FILE).read_text())
    return ExportReport(out, format, metadata, size_bytes, time.perf_counter() - start)


def load_stablehlo(path: str | os.PathLike):
    """Load a StableHLO export for running (jax and numpy only): ``model(src, bgr) -> {name: array}``."""
    from bgm_jax.deploy.stablehlo import load

    return load(path)
