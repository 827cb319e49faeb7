"""Model outputs (float arrays in [0, 1]) to uint8/uint16 pixels and image files.

Float values become integers by rounding to the nearest level (``round(x * 255)``), not by the
truncation the original scripts used (``int(x * 255)``), which darkens every value by half a level on
average and turns 0.999 alpha into 254. Everything written goes through ``atomic_output``: a file
appears under its final name only when complete, and an existing file is kept unless ``overwrite``.

Output types, as in the original's ``--output-types``:

- ``com``: RGBA PNG, straight (not premultiplied) alpha: foreground colour where alpha > 0, zero colour
  where alpha rounds to 0, alpha channel = ``pha``.
- ``pha``: greyscale PNG, 8-bit by default, 16-bit with ``bits=16``.
- ``fgr``: RGB image (PNG, or JPEG/WebP/TIFF by the file's extension).
- ``err`` / ``ref``: greyscale PNGs of the error and refinement maps at the source size; the caller
  upsamples the model's small maps with ``upsample_map`` (bilinear for ``err``, nearest for ``ref``,
  as the original did).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from bgm_jax.bilinear import bilinear_taps
from bgm_jax.errors import InputError
from bgm_jax.io.atomic import atomic_output

OUTPUT_TYPES = ("com", "pha", "fgr", "err", "ref")

# The original video script's default target background: flat green (120, 255, 155).
DEFAULT_TARGET_RGB = (120, 255, 155)

# File extension -> (PIL format, save options).
_IMAGE_FORMATS = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".webp": ("WEBP", {"lossless": True}),
    ".tif": ("TIFF", {"compression": "tiff_deflate"}),
    ".tiff": ("TIFF", {"compression": "tiff_deflate"}),
}


def _is_float(dtype: np.dtype) -> bool:
    """numpy floats and the ml_dtypes ones jax hands back (bfloat16 is not a numpy floating subtype)."""
    return np.issubdtype(dtype, np.floating) or "float" in dtype.name


def to_uint8(x) -> np.ndarray:
    """Float values in [0, 1] -> uint8 by rounding (clipped first); uint8 input passes through.

    Accepts numpy or jax arrays; the conversion to numpy (a device-to-host copy for jax) happens here.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * np.uint8(255)
    if not _is_float(x.dtype):
        raise TypeError(f"expected float values in [0, 1] or uint8, got dtype {x.dtype}")
    scaled = np.multiply(x.astype(np.float32, copy=False), 255.0, dtype=np.float32)
    return np.rint(np.clip(scaled, 0.0, 255.0, out=scaled), out=scaled).astype(np.uint8)


def to_uint16(x) -> np.ndarray:
    """Float values in [0, 1] -> uint16 (0..65535) by rounding; uint16 passes, uint8 is scaled by 257."""
    x = np.asarray(x)
    if x.dtype == np.uint16:
        return x
    if x.dtype == np.uint8:
        return x.astype(np.uint16) * np.uint16(257)
    if not _is_float(x.dtype):
        raise TypeError(f"expected float values in [0, 1], uint8 or uint16, got dtype {x.dtype}")
    # float64: float32 cannot represent every 16-bit level exactly after scaling.
    return np.rint(np.clip(np.asarray(x, np.float64) * 65535.0, 0.0, 65535.0)).astype(np.uint16)


def as_single_channel(x) -> np.ndarray:
    """HxW or HxWx1 -> HxW (maps such as alpha, error and refinement come either way)."""
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"expected a single-channel HxW or HxWx1 map, got shape {x.shape}")
    return x


def compose_rgba(fgr, pha) -> np.ndarray:
    """The ``com`` pixels: uint8 RGBA with straight alpha, colour zeroed where alpha rounds to 0.

    Zeroing fully transparent pixels (the original's ``fgr * (pha > 0)``) keeps the files small and
    stops editors that ignore alpha from showing stray colours there.
    """
    alpha = to_uint8(as_single_channel(pha))
    rgb = to_uint8(fgr)
    if rgb.shape != alpha.shape + (3,):
        raise ValueError(f"fgr {rgb.shape} and pha {alpha.shape} disagree; expected HxWx3 and HxW")
    rgba = np.empty(alpha.shape + (4,), np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = alpha
    rgba[alpha == 0, :3] = 0
    return rgba


def composite_over(fgr, pha, target=DEFAULT_TARGET_RGB) -> np.ndarray:
    """``fgr * pha + target * (1 - pha)`` as uint8 RGB (rounded).

    ``target`` is an RGB colour (three 0-255 integers) or an HxWx3 image (uint8, or float in [0, 1]).
    """
    fgr = np.asarray(fgr)
    fgr = fgr.astype(np.float32) / 255.0 if fgr.dtype == np.uint8 else fgr.astype(np.float32, copy=False)
    alpha = np.asarray(as_single_channel(pha), np.float32)[..., None]
    target = np.asarray(target)
    if target.dtype == np.uint8 or target.ndim == 1:
        target = target.astype(np.float32) / 255.0
    if target.ndim == 3 and target.shape != fgr.shape:
        raise ValueError(f"target image {target.shape} does not match the foreground {fgr.shape}")
    return to_uint8(fgr * alpha + target * (1.0 - alpha))


def upsample_map(small, size: tuple[int, int], method: str) -> np.ndarray:
    """Upsample a single-channel map to ``size = (height, width)``; returns float32 HxW.

    ``method="bilinear"`` (for ``err``) matches ``torch.nn.functional.interpolate(..., mode="bilinear",
    align_corners=False)`` with the model's own taps (``bgm_jax.bilinear``); ``method="nearest"`` (for ``ref``) picks source index ``floor(i * n_in / n_out)``
    in exact integer arithmetic, which is PyTorch's ``mode="nearest"`` and, for an integer factor k,
    exactly ``np.repeat(..., k)``.
    """
    small = np.asarray(as_single_channel(small), np.float32)
    (h_in, w_in), (h_out, w_out) = small.shape, (int(size[0]), int(size[1]))
    if method == "nearest":
        rows = (np.arange(h_out) * h_in) // h_out
        cols = (np.arange(w_out) * w_in) // w_out
        return small[rows][:, cols]
    if method == "bilinear":
        r0, r1, wr0, wr1 = bilinear_taps(h_in, h_out)
        c0, c1, wc0, wc1 = bilinear_taps(w_in, w_out)
        rows = small[r0] * wr0[:, None] + small[r1] * wr1[:, None]
        return rows[:, c0] * wc0 + rows[:, c1] * wc1
    raise ValueError(f"unknown upsampling method {method!r}; expected 'bilinear' or 'nearest'")


def output_path(
    out_dir: str | os.PathLike, output_type: str, relative: str | PurePosixPath, suffix: str = ".png"
) -> Path:
    """Where an output goes: ``OUT/<type>/<relative path of the source, with suffix>``.

    Mirroring the source folder's tree keeps same-named images from different subfolders apart.
    """
    relative = PurePosixPath(relative)
    return Path(out_dir) / output_type / Path(*relative.with_suffix(suffix).parts)


def write_image(path: str | os.PathLike, pixels: np.ndarray, *, overwrite: bool = False, **save_options) -> Path:
    """Write uint8 HxW (grey), HxWx3 (RGB), HxWx4 (RGBA) or uint16 HxW (16-bit grey PNG) atomically.

    The format comes from the extension (.png, .jpg/.jpeg, .webp, .tif/.tiff).
    """
    from PIL import Image

    path = Path(path)
    fmt, options = _IMAGE_FORMATS.get(path.suffix.lower(), (None, None))
    if fmt is None:
        raise InputError(f"{path}: unsupported output image extension; use one of {', '.join(_IMAGE_FORMATS)}")
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16:
        if pixels.ndim != 2 or fmt not in ("PNG", "TIFF"):
            raise ValueError(f"16-bit output is greyscale PNG/TIFF only, got shape {pixels.shape} for {path.name}")
        image = Image.fromarray(pixels, mode="I;16") if _pil_needs_mode() else Image.fromarray(pixels)
    elif pixels.dtype == np.uint8 and (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (3, 4))):
        image = Image.fromarray(pixels)
    else:
        raise ValueError(f"cannot write pixels of dtype {pixels.dtype} and shape {pixels.shape} as an image")
    if fmt == "JPEG" and image.mode == "RGBA":
        raise InputError(f"{path}: JPEG has no alpha channel; write RGBA outputs as .png")
    with atomic_output(path, overwrite=overwrite) as partial:
        image.save(partial, format=fmt, **{**options, **save_options})
    return path


def _pil_needs_mode() -> bool:
    """Pillow < 11 needs an explicit mode for uint16 arrays (newer versions infer I;16 and warn on mode=)."""
    import PIL

    return int(PIL.__version__.split(".")[0]) < 11


def write_com(path, fgr, pha, *, overwrite: bool = False) -> Path:
    """``com``: RGBA PNG of the foreground colour with alpha (see ``compose_rgba``)."""
    return write_image(path, compose_rgba(fgr, pha), overwrite=overwrite)


def write_pha(path, pha, *, bits: int = 8, overwrite: bool = False) -> Path:
    """``pha``: greyscale alpha PNG, 8-bit (default) or 16-bit."""
    if bits not in (8, 16):
        raise ValueError(f"alpha bit depth must be 8 or 16, got {bits}")
    pha = as_single_channel(pha)
    return write_image(path, to_uint16(pha) if bits == 16 else to_uint8(pha), overwrite=overwrite)


def write_fgr(path, fgr, *, overwrite: bool = False) -> Path:
    """``fgr``: the predicted foreground colours as an RGB image."""
    return write_image(path, to_uint8(fgr), overwrite=overwrite)


def write_err(path, err_full_size, *, overwrite: bool = False) -> Path:
    """``err``: the predicted error map, already upsampled to the source size (``upsample_map(..., "bilinear")``)."""
    return write_image(path, to_uint8(as_single_channel(err_full_size)), overwrite=overwrite)


def write_ref(path, ref_full_size, *, overwrite: bool = False) -> Path:
    """``ref``: the refinement map (1 = refined), already upsampled (``upsample_map(..., "nearest")``)."""
    return write_image(path, to_uint8(as_single_channel(ref_full_size)), overwrite=overwrite)
