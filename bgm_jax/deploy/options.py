"""What an export is: the model with its settings for one input size, and the exported interface.

Both formats share this: the runtime settings come from ``bgm_jax.inference`` (the paper's choice for
the resolution unless given, exactly as ``bgm_jax.load`` decides them), the size is checked by tracing
the same function ``bgm_jax.load`` compiles (so "a size the model cannot take" is the model's own
verdict), and the exported interface (layout, input dtype, outputs, batch) is described once.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from bgm_jax.errors import InputError

FORMATS = ("stablehlo", "onnx")
LAYOUTS = ("nchw", "nhwc")
INPUT_DTYPES = ("float32", "uint8")
OUTPUTS = ("pha", "fgr", "err", "ref")
# The layout each format takes unless told: NCHW as the original's ONNX files, NHWC as JAX.
DEFAULT_LAYOUT = {"onnx": "nchw", "stablehlo": "nhwc"}
SETTING_NAMES = (
    "backbone_scale",
    "refine_mode",
    "refine_sample_pixels",
    "refine_threshold",
    "refine_prevent_oversampling",
    "precision",
)


@dataclasses.dataclass(frozen=True)
class Interface:
    """The exported model's inputs and outputs.

    Inputs ``src`` and ``bgr``: (batch, 3, H, W) for ``nchw`` or (batch, H, W, 3) for ``nhwc``; ``float32``
    in [0, 1] or ``uint8`` in [0, 255]. Outputs, float32 in the same layout: ``pha`` (1 channel, H x W),
    ``fgr`` (3, H x W), ``err`` (1, at the coarse resolution of the padded input), ``ref`` (1, the 0/1 map
    of refined 4x4 cells, ceil(H/4) x ceil(W/4)). ``batch`` None means any batch size.
    """

    width: int
    height: int
    batch: int | None
    layout: str
    input_dtype: str
    outputs: tuple[str, ...]

    def input_shape(self) -> tuple[int | None, ...]:
        h, w = self.height, self.width
        return (self.batch, 3, h, w) if self.layout == "nchw" else (self.batch, h, w, 3)

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": {name: {"shape": list(self.input_shape()), "dtype": self.input_dtype} for name in ("src", "bgr")},
            "outputs": list(self.outputs),
            "layout": self.layout,
            "width": self.width,
            "height": self.height,
            "batch": self.batch,
        }


@dataclasses.dataclass
class ExportPlan:
    """A loaded model with resolved settings and the interface to export: the input to both exporters."""

    format: str
    matting: Any  # bgm_jax.inference.Matting, settings applied
    interface: Interface
    fields: dict[str, Any]  # the model fields in use (backbone_scale, refine_mode, ... dtype)
    shapes: dict[str, tuple[int, ...]]  # NHWC output shapes at batch 1: pha, fgr, err (and ref)
    source: str  # where the weights came from (directory or "in-memory model")

    @property
    def config(self) -> dict[str, Any]:
        return self.matting.config

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description stored with the exported model."""
        import bgm_jax

        settings = {"precision": self.matting.settings.precision}
        settings.update((k, v) for k, v in self.fields.items() if k != "dtype")  # dtype is the precision
        model_keys = ("model_type", "backbone", "refine_kernel_size", "source")
        return {
            "format": f"bgm-jax-{self.format}",
            "version": 1,
            "bgm_jax_version": bgm_jax.__version__,
            "model": {k: v for k, v in self.config.items() if k in model_keys},
            "settings": settings,
            **self.interface.describe(),
        }


def _parse_outputs(outputs, is_refine: bool) -> tuple[str, ...]:
    if isinstance(outputs, str):
        outputs = [name.strip() for name in outputs.split(",") if name.strip()]
    outputs = tuple(dict.fromkeys(outputs))
    if not outputs:
        raise InputError(f"outputs: empty; choose from {','.join(OUTPUTS)}")
    unknown = [name for name in outputs if name not in OUTPUTS]
    if unknown:
        raise InputError(f"outputs: unknown {', '.join(unknown)}; choose from {','.join(OUTPUTS)}")
    if "ref" in outputs and not is_refine:
        raise InputError("outputs: 'ref' needs a refine model (this is a base model, which refines nothing)")
    return outputs


def plan_export(
    model,
    *,
    format: str,
    size: tuple[int, int],
    batch: int | None = None,
    layout: str | None = None,
    input_dtype: str = "float32",
    outputs=("pha", "fgr"),
    **settings,
) -> ExportPlan:
    """Load ``model`` (a model directory or a ``bgm_jax.inference.Matting``) and resolve everything an
    exporter needs. ``size`` is (width, height). ``settings`` are ``bgm_jax.load``'s keyword arguments
    (backbone_scale, refine_mode, refine_sample_pixels, refine_threshold, refine_prevent_oversampling,
    precision); those left out or None keep the model's settings (for a directory: the paper's for the
    size). Raises InputError for anything the user can fix."""
    from bgm_jax.inference import Matting, Settings

    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if unknown:
        raise TypeError(f"unknown settings {unknown}; expected some of {SETTING_NAMES}")
    layout = layout or DEFAULT_LAYOUT[format]
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if input_dtype not in INPUT_DTYPES:
        raise InputError(f"unknown input dtype {input_dtype!r}; choose one of {', '.join(INPUT_DTYPES)}")
    if batch is not None and (int(batch) != batch or batch < 1):
        raise InputError(f"batch must be a positive integer or None (any batch), got {batch!r}")
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise InputError(f"size {width}x{height}: width and height must be positive")

    if isinstance(model, Matting):
        matting, source = model, "in-memory model"
    else:
        from bgm_jax.checkpoint import load_model

        config, variables = load_model(os.fspath(model))
        matting, source = Matting(config, variables, Settings()), os.fspath(model)
    given = {k: v for k, v in settings.items() if v is not None}
    if given:
        matting = matting.with_settings(**given)  # Settings validates (InputError)
    if format == "onnx" and matting.settings.precision == "bfloat16":
        raise InputError(
            "precision bfloat16: ONNX runtimes rarely run bfloat16 convolutions; export ONNX as float32 "
            "(or float16), or use --format stablehlo for bfloat16"
        )
    interface = Interface(width, height, batch, layout, input_dtype, _parse_outputs(outputs, matting.is_refine))
    fields = matting.model_fields(height, width)  # resolved at the padded size
    shapes = check_size(matting, width, height)
    return ExportPlan(format, matting, interface, fields, shapes, source)


def check_size(matting, width: int, height: int) -> dict[str, tuple[int, ...]]:
    """Trace the inference function for this size (no compilation): the model's own checks decide.
    Returns the NHWC output shapes at batch 1."""
    import jax
    import jax.numpy as jnp

    spec = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    try:
        out = jax.eval_shape(matting.function(height, width), matting.variables, spec, spec)
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"size {width}x{height}: the model cannot take it ({first})") from None
    return {name: tuple(x.shape) for name, x in zip(OUTPUTS, out) if x is not None}
