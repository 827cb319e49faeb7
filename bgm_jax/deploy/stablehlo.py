"""StableHLO export through ``jax.export``, and a loader that runs it without the model code.

The exported directory (written under a temporary name, renamed when complete)::

    OUT/
      model.jaxexport   jax.export serialization: the StableHLO module (symbolic batch unless fixed),
                        its calling convention and the platforms it was lowered for
      weights.npz       the weights, in the order the module takes them (arr_00000, arr_00001, ...)
      meta.json         format, interface (layout, input dtype, outputs, size), settings, model

The function exported is the one ``bgm_jax.load(...)`` compiles for this size (padding to a multiple of
4 and cropping back included), so on the same machine the round trip gives the live model's outputs
exactly. Weights are arguments rather than constants baked into the module: XLA folds constants at
compile time, which would change float rounding against the live model and slow compilation.

:func:`load` needs only jax and numpy: no Flax module is built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bgm_jax.errors import InputError

FORMAT = "bgm-jax-stablehlo"
MODULE_FILE = "model.jaxexport"
WEIGHTS_FILE = "weights.npz"
META_FILE = "meta.json"
# Lowering for CUDA needs no GPU here; the artifact then runs on either.
DEFAULT_PLATFORMS = ("cpu", "cuda")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def exported_function(plan):
    """``(weights, src, bgr) -> outputs``: the inference function with the export's layout and outputs.
    ``weights`` is the flat list of the model's variables (``jax.tree_util.tree_leaves`` order)."""
    import jax
    import jax.numpy as jnp

    iface = plan.interface
    run = plan.matting.function(iface.height, iface.width)
    treedef = jax.tree_util.tree_structure(plan.matting.variables)
    nchw = iface.layout == "nchw"

    def fn(weights, src, bgr):
        variables = jax.tree_util.tree_unflatten(treedef, weights)
        if nchw:
            src, bgr = jnp.transpose(src, (0, 2, 3, 1)), jnp.transpose(bgr, (0, 2, 3, 1))
        out = dict(zip(("pha", "fgr", "err", "ref"), run(variables, src, bgr)))
        picked = [out[name] for name in iface.outputs]
        if nchw:
            picked = [jnp.transpose(x, (0, 3, 1, 2)) for x in picked]
        return tuple(picked)

    return fn


def export_stablehlo(plan, out: str | os.PathLike, *, overwrite: bool = False, platforms=DEFAULT_PLATFORMS) -> Path:
    """Write ``plan`` (see ``bgm_jax.deploy.options.plan_export``) as a StableHLO directory at ``out``."""
    import jax
    from jax import export as jax_export

    from bgm_jax.io.atomic import atomic_output, check_can_write

    out = check_can_write(Path(out), overwrite)
    platforms = tuple(platforms)
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise InputError(f"platforms {','.join(platforms)}: choose one or more of {', '.join(PLATFORMS)}")
    iface = plan.interface
    weights = [np.asarray(w) for w in jax.tree_util.tree_leaves(plan.matting.variables)]
    batch = iface.batch if iface.batch is not None else jax_export.symbolic_shape("batch")[0]
    shape = (batch,) + iface.input_shape()[1:]
    src_spec = jax.ShapeDtypeStruct(shape, np.dtype(iface.input_dtype))
    weight_specs = [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in weights]
    exported = jax_export.export(jax.jit(exported_function(plan)), platforms=platforms)(
        weight_specs, src_spec, src_spec
    )
    meta = plan.metadata()
    meta["platforms"] = list(exported.platforms)
    meta["jax_version"] = jax.__version__
    meta["files"] = {"module": MODULE_FILE, "weights": WEIGHTS_FILE}

    with atomic_output(out, overwrite=overwrite) as tmp:
        try:
            tmp.mkdir()
            (tmp / MODULE_FILE).write_bytes(exported.serialize())
            np.savez(tmp / WEIGHTS_FILE, **{f"arr_{i:05d}": w for i, w in enumerate(weights)})
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        except OSError as e:
            raise InputError(f"{out}: cannot write the export ({e.strerror or e}); choose a writable OUT") from None
    return out


class ExportedMatting:
    """A StableHLO export loaded for running: ``outputs = model(src, bgr)`` returns a dict of arrays
    named as ``meta['outputs']``. Needs jax and numpy only; compiles once per input shape."""

    def __init__(self, path: str | os.PathLike):
        import jax
        from jax import export as jax_export

        self.path = Path(path)
        meta_file = self.path / META_FILE
        if not meta_file.is_file():
            raise InputError(f"{self.path}: not a bgm-jax StableHLO export (no {META_FILE}); write one with "
                             "`bgm-jax export MODEL_DIR OUT --format stablehlo`")
        self.meta: dict[str, Any] = json.loads(meta_file.read_text())
        if self.meta.get("format") != FORMAT:
            raise InputError(f"{meta_file}: format is {self.meta.get('format')!r}, expected {FORMAT!r}")
        self.exported = jax_export.deserialize(bytearray((self.path / MODULE_FILE).read_bytes()))
        with np.load(self.path / WEIGHTS_FILE) as npz:
            self.weights = jax.device_put([npz[f"arr_{i:05d}"] for i in range(len(npz.files))])
        self.outputs: list[str] = list(self.meta["outputs"])
        from bgm_jax.compile_options import compiler_options

        # The live model's XLA options, so that the round trip stays exact on this platform.
        platform = jax.devices()[0].platform
        self._call = jax.jit(self.exported.call, compiler_options=compiler_options(platform))

    def _check(self, name: str, x) -> None:
        spec = self.meta["inputs"][name]
        expected = spec["shape"]
        ok = len(x.shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, x.shape))
        if not ok:
            shown = ["N" if e is None else e for e in expected]
            raise InputError(f"{name}: shape {tuple(x.shape)}, but this export takes {tuple(shown)} "
                             f"({self.meta['layout']}); export again for another size")
        if np.dtype(x.dtype) != np.dtype(spec["dtype"]):
            raise InputError(f"{name}: dtype {x.dtype}, but this export takes {spec['dtype']}")

    def __call__(self, src, bgr) -> dict[str, Any]:
        src = src if hasattr(src, "dtype") else np.asarray(src)
        bgr = bgr if hasattr(bgr, "dtype") else np.asarray(bgr)
        self._check("src", src)
        self._check("bgr", bgr)
        if tuple(src.shape) != tuple(bgr.shape):
            raise InputError(f"src {tuple(src.shape)} and bgr {tuple(bgr.shape)} must have the same shape")
        return dict(zip(self.outputs, self._call(self.weights, src, bgr)))


def load(path: str | os.PathLike) -> ExportedMatting:
    """Load a directory written by :func:`export_stablehlo` (or ``bgm-jax export --format stablehlo``)."""
    return ExportedMatting(path)
