"""Inference API: ``bgm_jax.load(checkpoint_dir)`` returns a callable ``Matting``.

    matting = bgm_jax.load("checkpoints/resnet50")
    result = matting(src, bgr)          # numpy or jax, uint8 or float in [0, 1], HWC or NHWC
    result.pha, result.fgr, result.err, result.ref, result.rgba()

What it does for the caller:
- any H x W: inputs are edge-padded to what the model needs (multiples of 4) and outputs cropped back;
- settings follow the paper's recommendation for the resolution unless given (HD: backbone scale 1/4
  and 80k sample pixels; larger than ~QHD: 1/8 and 320k);
- one compiled function per (input shapes and dtypes, settings), kept in a cache; a repeated shape never
  recompiles, and the persistent XLA compilation cache makes a second process start fast;
- float32 parameters, float32 / bfloat16 / float16 compute, and an explicit matrix-product precision:
  ``float32`` is full float32 everywhere (``jax.default_matmul_precision("highest")``), ``tf32`` keeps
  float32 storage but lets the backend's default precision run convolutions and matmuls (TF32 on NVIDIA
  GPUs since Ampere: about 1e-3 relative error, faster); see ``MATMUL_PRECISIONS``;
- results stay on the device (no host sync) until read, so video decode, compute and encode overlap;
- ``devices="all"`` (or N) splits each batch over the local devices, data parallel: every device runs
  the single-device program on its share (batch padded to a multiple of the device count, cropped back);
- ``flip_average=True`` also mattes each frame mirrored left to right, in the same batch, and averages the
  two answers (twice the compute, for offline work that wants the last bit of quality).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bgm_jax.checkpoint import build_model, load_model
from bgm_jax.compile_options import compiler_options
from bgm_jax.errors import InputError
from bgm_jax.memory import check_call_fits, is_out_of_memory, out_of_memory_error
from bgm_jax.model_spec import MATMUL_PRECISIONS, PRECISIONS, REFINE_MODES, padded_size
from bgm_jax.models.layers import COMPUTE_DTYPES
# Above this many pixels (QHD, 2560x1440) the 4K recommendation applies.
LARGE_IMAGE_PIXELS = 2560 * 1440
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bgm-jax" / "xla"


def recommended_settings(height: int, width: int) -> tuple[float, int]:
    """The paper's (backbone_scale, sample_pixels) for a resolution: HD 1/4 and 80k, 4K 1/8 and 320k."""
    if height * width > LARGE_IMAGE_PIXELS:
        return 0.125, 320_000
    return 0.25, 80_000


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache so a second process skips compilation.

    ``directory`` defaults to ``$BGM_JAX_CACHE_DIR`` or ``~/.cache/bgm-jax/xla``; set
    ``BGM_JAX_CACHE_DIR=""`` (or pass ``""``) to disable it. Returns the directory in use, or None.
    """
    if directory is None:
        directory = os.environ.get("BGM_JAX_CACHE_DIR", str(DEFAULT_CACHE_DIR))
    if not str(directory):
        return None
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home must not stop inference; it only costs compile time
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


@dataclasses.dataclass(frozen=True)
class Settings:
    """Runtime settings; None means "the paper's recommendation for this resolution"."""

    backbone_scale: float | None = None
    refine_mode: str = "sampling"
    refine_sample_pixels: int | None = None
    refine_threshold: float = 0.1
    refine_prevent_oversampling: bool = True
    precision: str = "float32"
    flip_average: bool = False

    @property
    def matmul_precision(self) -> str:
        """The ``jax.default_matmul_precision`` the model is compiled under (see ``MATMUL_PRECISIONS``)."""
        return MATMUL_PRECISIONS[self.precision]

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.refine_mode not in REFINE_MODES:
            raise InputError(f"unknown refine mode {self.refine_mode!r}; choose one of {', '.join(REFINE_MODES)}")
        if self.backbone_scale is not None and not 0 < self.backbone_scale <= 0.5:
            raise InputError(f"backbone scale must be in (0, 0.5], got {self.backbone_scale}")
        if self.refine_sample_pixels is not None and self.refine_sample_pixels < 0:
            raise InputError(f"refine sample pixels must be >= 0, got {self.refine_sample_pixels}")
        if not isinstance(self.flip_average, bool):
            raise InputError(f"flip_average must be True or False, got {self.flip_average!r}")

    def resolve(self, height: int, width: int, model_backbone_scale: float | None = None) -> dict[str, Any]:
        """Model fields for an input of this size. A backbone scale left as None is the model's own
        (``model_backbone_scale``: a model trained at another scale than the paper's records it) or else the
        paper's recommendation for the resolution."""
        scale, pixels = recommended_settings(height, width)
        if model_backbone_scale is not None:
            scale = model_backbone_scale
        return {
            "backbone_scale": self.backbone_scale if self.backbone_scale is not None else scale,
            "refine_mode": self.refine_mode,
            "refine_sample_pixels": self.refine_sample_pixels if self.refine_sample_pixels is not None else pixels,
            "refine_threshold": self.refine_threshold,
            "refine_prevent_oversampling": self.refine_prevent_oversampling,
            "dtype": COMPUTE_DTYPES[self.precision],
        }


@dataclasses.dataclass
class MattingResult:
    """Outputs for a batch, as float32 arrays on the device (read them with ``np.asarray``).

    ``pha`` (B, H, W, 1) alpha; ``fgr`` (B, H, W, 3) foreground colour; ``err`` (B, h, w, 1) the coarse
    error map; ``ref`` (B, H/4, W/4, 1) the 0/1 map of refined 4x4 cells (None for a base model).
    ``err`` and ``ref`` are at their own resolution; ``bgm_jax.io`` upsamples them for writing.
    """

    pha: jax.Array
    fgr: jax.Array
    err: jax.Array
    ref: jax.Array | None

    def rgba(self) -> jax.Array:
        """Foreground colour with alpha, colour zeroed where alpha is 0 (as the original's ``com``)."""
        return jnp.concatenate([self.fgr * (self.pha > 0), self.pha], axis=-1)

    def composite(self, target) -> jax.Array:
        """``pha * fgr + (1 - pha) * target``; ``target`` is an RGB triple in [0, 1] or an image batch."""
        target = jnp.asarray(target, jnp.float32)
        return self.pha * self.fgr + (1 - self.pha) * target


def _as_batch(x, name: str) -> jax.Array | np.ndarray:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"{name} must be an RGB image (H, W, 3) or batch (N, H, W, 3), got shape {tuple(x.shape)}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or x.dtype == np.uint8):
        raise InputError(f"{name} must be uint8 or float in [0, 1], got dtype {x.dtype}")
    return x


def _to_unit_float(x: jax.Array) -> jax.Array:
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    return x.astype(jnp.float32)


def local_devices(devices: int | str | None = None) -> list:
    """The local devices a ``Matting`` runs on: ``None`` or 1 the default device, ``"all"`` every local
    device, N the first N."""
    local = jax.local_devices()
    if devices is None:
        return local[:1]
    if isinstance(devices, str) and devices.strip().lower() == "all":
        return local
    try:
        count = int(devices)
    except (TypeError, ValueError):
        raise InputError(f"devices {devices!r}: expected 'all' or a number of devices") from None
    if not 1 <= count <= len(local):
        raise InputError(
            f"devices {devices!r}: this machine has {len(local)} local {local[0].platform.upper()} device(s); "
            "give a number from 1 to that, or 'all'"
        )
    return local[:count]


BATCH_AXIS = "batch"  # the mesh axis a batch is split over


class Matting:
    """A loaded model with its settings and compiled-function cache. Create it with ``bgm_jax.load``."""

    def __init__(self, config: dict[str, Any], variables: dict[str, Any], settings: Settings | None = None,
                 devices: int | str | None = None):
        self.config = dict(config)
        self.settings = settings or Settings()
        self.devices = local_devices(devices)
        variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
        if len(self.devices) > 1:
            self.mesh = jax.sharding.Mesh(np.array(self.devices), (BATCH_AXIS,))
            self.variables = jax.device_put(variables, self.sharding(batch=False))  # a copy on every device
        else:
            self.mesh = None
            self.variables = jax.device_put(variables)
        self._compiled: dict[tuple, Any] = {}
        self.compile_count = 0  # compilations this object triggered (the cache's misses)

    @property
    def device_count(self) -> int:
        return len(self.devices)

    def sharding(self, batch: bool = True):
        """Where a batch (split over the devices) or a replicated array lives; None on one device."""
        if self.mesh is None:
            return None
        spec = jax.sharding.PartitionSpec(BATCH_AXIS if batch else None)
        return jax.sharding.NamedSharding(self.mesh, spec)

    def put(self, x, *, batch: bool = True) -> jax.Array:
        """``x`` on the device(s) as the compiled functions take it: split along the batch over the
        devices (its batch a multiple of the device count), or whole on each (``batch=False``)."""
        sharding = self.sharding(batch)
        return jax.device_put(x) if sharding is None else jax.device_put(x, sharding)

    @property
    def is_refine(self) -> bool:
        return self.config["model_type"] == "refine"

    def with_settings(self, **changes) -> "Matting":
        """A Matting sharing these weights (and their device copy) with some settings changed."""
        other = Matting.__new__(Matting)
        other.config, other.variables = self.config, self.variables
        other.devices, other.mesh = self.devices, self.mesh
        other.settings = dataclasses.replace(self.settings, **changes)
        other._compiled, other.compile_count = {}, 0
        return other

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the model runs at for an input of this size (a refine model pads to multiples of 4)."""
        return padded_size(height, width, self.is_refine)

    def model_fields(self, height: int, width: int) -> dict[str, Any]:
        """The model settings used for an input of this size (resolved at the padded size)."""
        fields = self.settings.resolve(*self.padded_size(height, width), self.config.get("backbone_scale"))
        if not self.is_refine:
            return {"dtype": fields["dtype"]}
        return fields

    def function(self, height: int, width: int):
        """The pure ``(variables, src, bgr) -> (pha, fgr, err, ref)`` function for NHWC inputs of this
        size on one device: what ``__call__`` compiles (split over the devices when there are several),
        and what ``bgm_jax.deploy`` exports. ``ref`` is None for a base model."""
        padded_height, padded_width = self.padded_size(height, width)
        pad_h, pad_w = padded_height - height, padded_width - width
        fields = self.model_fields(height, width)
        model = build_model(self.config, **fields)

        def run(variables, src, bgr):
            src, bgr = _to_unit_float(src), _to_unit_float(bgr)
            bgr = jnp.broadcast_to(bgr, src.shape)
            if self.settings.flip_average:  # the mirrored frames join the batch, before any padding
                src, bgr = _with_mirrored(src), _with_mirrored(bgr)
            if pad_h or pad_w:
                pad = ((0, 0), (0, pad_h), (0, pad_w), (0, 0))
                src, bgr = jnp.pad(src, pad, mode="edge"), jnp.pad(bgr, pad, mode="edge")
            out = model.apply(variables, src, bgr)
            if self.is_refine:
                pha, fgr, _, _, err, ref = out
            else:
                pha, fgr, err, _ = out
                ref = None
            pha = pha[:, :height, :width].astype(jnp.float32)
            fgr = fgr[:, :height, :width].astype(jnp.float32)
            err = err.astype(jnp.float32)
            if ref is not None:
                ref = ref[:, : math.ceil(height / 4), : math.ceil(width / 4)].astype(jnp.float32)
            if self.settings.flip_average:
                pha, fgr, err = _mean_with_mirrored(pha), _mean_with_mirrored(fgr), _mean_with_mirrored(err)
                ref = None if ref is None else _mean_with_mirrored(ref, jnp.maximum)
            return pha, fgr, err, ref

        return run

    def _lower(self, src_shape, src_dtype, bgr_shape, bgr_dtype):
        _, height, width, _ = src_shape
        run = self.function(height, width)
        if self.mesh is not None:
            run = self._data_parallel(run, per_image_bgr=bgr_shape[0] != 1, has_ref=self.is_refine)
        src_spec = jax.ShapeDtypeStruct(src_shape, src_dtype, sharding=self.sharding())
        bgr_spec = jax.ShapeDtypeStruct(bgr_shape, bgr_dtype, sharding=self.sharding(bgr_shape[0] != 1))
        # The precision is fixed at tracing: every convolution and dot carries it in the lowered module.
        with jax.default_matmul_precision(self.settings.matmul_precision):
            return jax.jit(run).lower(self.variables, src_spec, bgr_spec)

    def _data_parallel(self, run, *, per_image_bgr: bool, has_ref: bool):
        """``run`` on each device's share of the batch (``shard_map``): the single-device program, no
        communication, so the outputs are those of one device running each share."""
        from jax.sharding import PartitionSpec as P

        batch, whole = P(BATCH_AXIS), P()
        out_specs = (batch, batch, batch, batch if has_ref else None)
        return jax.shard_map(run, mesh=self.mesh, in_specs=(whole, batch, batch if per_image_bgr else whole),
                             out_specs=out_specs)

    def lower_for(self, src_shape, src_dtype, bgr_shape, bgr_dtype) -> jax.stages.Lowered:
        """The lowered (not yet compiled) function for these inputs, e.g. to inspect its StableHLO."""
        return self._lower(tuple(src_shape), np.dtype(src_dtype), tuple(bgr_shape), np.dtype(bgr_dtype))

    def _build(self, src_shape, src_dtype, bgr_shape, bgr_dtype):
        try:
            # XLA options per platform (bgm_jax.compile_options): YNNPACK convolutions on CPUs.
            lowered = self._lower(src_shape, src_dtype, bgr_shape, bgr_dtype)
            compiled = lowered.compile(compiler_options(self.devices[0].platform))
        except Exception as e:
            if is_out_of_memory(e):
                raise out_of_memory_error(e, shape=src_shape, precision=self.settings.precision) from e
            raise
        self.compile_count += 1
        # Refuse a call that cannot fit before anything is allocated for it (see bgm_jax.memory).
        resident = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(self.variables))
        check_call_fits(compiled, self.devices[0], shape=src_shape, precision=self.settings.precision,
                        resident_bytes=resident)
        return compiled

    def compiled_for(self, src_shape, src_dtype, bgr_shape, bgr_dtype):
        """The compiled function for these input shapes and dtypes (built on first use)."""
        key = (tuple(src_shape), np.dtype(src_dtype).str, tuple(bgr_shape), np.dtype(bgr_dtype).str)
        if key not in self._compiled:
            self._compiled[key] = self._build(*key[:1], np.dtype(src_dtype), key[2], np.dtype(bgr_dtype))
        return self._compiled[key]

    def __call__(self, src, bgr, *, resize_background: bool = False) -> MattingResult:
        """Matte ``src`` against the clean background ``bgr``.

        ``bgr`` is one image for the whole batch or one per image. A background of another size is an
        error unless ``resize_background=True`` (bilinear, antialiased).
        """
        src = _as_batch(src, "source")
        bgr = _as_batch(bgr, "background")
        if bgr.shape[1:3] != src.shape[1:3]:
            if not resize_background:
                raise InputError(
                    f"background is {bgr.shape[2]}x{bgr.shape[1]} but the source is {src.shape[2]}x{src.shape[1]} "
                    "(width x height); give a background of the same size, or pass resize_background=True "
                    "(--resize-bgr) to resize it"
                )
            bgr = jax.image.resize(
                _to_unit_float(jnp.asarray(bgr)), (bgr.shape[0], *src.shape[1:3], 3), "bilinear", antialias=True
            )
        if bgr.shape[0] not in (1, src.shape[0]):
            raise InputError(f"got {src.shape[0]} sources but {bgr.shape[0]} backgrounds; give one or one per source")
        count = src.shape[0]
        fill = -count % self.device_count  # a batch the devices share evenly: repeat the last image
        if fill:
            src = _repeat_last(src, fill)
            bgr = _repeat_last(bgr, fill) if bgr.shape[0] > 1 else bgr
        fn = self.compiled_for(src.shape, src.dtype, bgr.shape, bgr.dtype)
        if self.mesh is not None:
            src, bgr = self.put(src), self.put(bgr, batch=bgr.shape[0] > 1)
        try:
            pha, fgr, err, ref = fn(self.variables, src, bgr)
        except Exception as e:
            if is_out_of_memory(e):
                raise out_of_memory_error(e, shape=src.shape, precision=self.settings.precision) from e
            raise
        if fill:
            pha, fgr, err = pha[:count], fgr[:count], err[:count]
            ref = None if ref is None else ref[:count]
        return MattingResult(pha=pha, fgr=fgr, err=err, ref=ref)


def _with_mirrored(x: jax.Array) -> jax.Array:
    """The batch followed by its frames mirrored left to right (``flip_average``)."""
    return jnp.concatenate([x, x[:, :, ::-1]])


def _mean_with_mirrored(x: jax.Array, combine=None) -> jax.Array:
    """The first half of a ``_with_mirrored`` batch's outputs combined with the second half mirrored back:
    the mean, or ``combine`` (the refined-cell map marks a cell refined in either pass). Alpha and
    foreground are exactly mirror-symmetric (the mirrored input gets the mirrored output); the error map
    and the refined cells are at the padded size, so they line up only where the model needs no padding."""
    count = x.shape[0] // 2
    first, second = x[:count], x[count:, :, ::-1]
    return (first + second) / 2 if combine is None else combine(first, second)


def _repeat_last(x, count: int):
    """``x`` with its last image repeated ``count`` more times along the batch."""
    xp = np if isinstance(x, np.ndarray) else jnp
    return xp.concatenate([x, xp.repeat(x[-1:], count, axis=0)], axis=0)


def load(
    checkpoint_dir: str | os.PathLike | None = None,
    *,
    backbone_scale: float | None = None,
    refine_mode: str = "sampling",
    refine_sample_pixels: int | None = None,
    refine_threshold: float = 0.1,
    refine_prevent_oversampling: bool = True,
    precision: str = "float32",
    compilation_cache: str | os.PathLike | None | bool = None,
    devices: int | str | None = None,
    flip_average: bool = False,
) -> Matting:
    """Load a checkpoint directory (``bgm-jax convert`` writes one) as a callable ``Matting``; without
    one, the model embedded in the package (``bgm_jax.pretrained``: MobileNetV2, trained by this project
    on synthetic composites; convert the official weights for real footage).

    Settings left as None follow the paper's recommendation for each input's resolution, except a
    backbone scale that the model's config records (a model trained at another scale than the paper's).
    ``precision``: ``float32`` (full float32, also on GPUs), ``tf32`` (float32 storage, the backend's
    fast matmul precision: TF32 on NVIDIA GPUs), ``bfloat16`` or ``float16`` compute.
    ``compilation_cache``: a directory for JAX's persistent compilation cache, None for the default
    (``$BGM_JAX_CACHE_DIR`` or ``~/.cache/bgm-jax/xla``), False to leave JAX's configuration alone.
    ``devices``: None (the default device), ``"all"`` local devices or a number of them; a batch is
    split over them (data parallel).
    ``flip_average``: also matte every frame mirrored left to right and average the two answers: twice
    the compute, a little lower error (docs/model.md measures it on the embedded model).
    """
    settings = Settings(
        backbone_scale=backbone_scale,
        refine_mode=refine_mode,
        refine_sample_pixels=refine_sample_pixels,
        refine_threshold=refine_threshold,
        refine_prevent_oversampling=refine_prevent_oversampling,
        precision=precision,
        flip_average=flip_average,
    )
    if compilation_cache is not False:
        enable_compilation_cache(None if compilation_cache in (None, True) else compilation_cache)
    if checkpoint_dir is None:
        from bgm_jax.pretrained import load_embedded

        config, variables = load_embedded()
    else:
        config, variables = load_model(checkpoint_dir)
    return Matting(config, variables, settings, devices=devices)
