"""Image bytes for storage, and decoding them onto a fixed canvas for the input pipeline.

Storage keeps source files byte for byte when they are already what training reads: a JPEG or PNG
colour image in RGB mode, or an alpha matte in 8-bit greyscale (L) mode. Anything else (RGBA colour,
alpha stored as RGB or 16-bit, other formats) is converted the way training would convert it and stored
as PNG, which is lossless, so no stored value differs from what decoding the source would give.

Decoding uses PIL only (no TensorFlow, no OpenCV). ``decode_to_canvas`` decodes, resizes and places
an image on a fixed-size canvas: ``contain`` keeps all content (longer side fits, rest padded with
zeros, valid region at the top left), ``native`` is ``contain`` without ever enlarging (the image keeps
its own resolution unless it is larger than the canvas: training warps read it once, at full detail) and
``cover`` fills the canvas (shorter side fits, centre crop).
JPEGs are decoded at reduced size when the target is much smaller (libjpeg DCT scaling), which is
most of the speed at 4K -> 512.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from bgm_jax.errors import InputError

FITS = ("contain", "cover", "native")
_REDUCING_GAP = 3.0

# Modes stored unchanged (when the file is JPEG or PNG), per kind of image.
_STORED_MODE = {"rgb": "RGB", "alpha": "L"}


def bytes_for_storage(path: str | os.PathLike, kind: str) -> bytes:
    """The bytes to store for an image file: the file itself when possible, else a lossless PNG.

    Args:
      path: image file.
      kind: ``"rgb"`` for colour images, ``"alpha"`` for alpha mattes.
    """
    data = _read(path)
    with _open(data, path) as image:
        if image.format in ("JPEG", "PNG") and image.mode == _STORED_MODE[kind]:
            return data
        pixels = np.asarray(to_rgb(image) if kind == "rgb" else to_alpha(image))  # decode before closing
    return encode_png(pixels)


def rgba_for_storage(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """(colour PNG, alpha PNG) from one RGBA file, as PhotoMatte85 is distributed."""
    data = _read(path)
    with _open(data, path) as image:
        if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
            raise InputError(
                f"{path}: expected an RGBA image (colour + alpha in one PNG), found mode {image.mode}; "
                "use the fgr/ + pha/ layout for separate alpha files"
            )
        rgba = np.asarray(image.convert("RGBA"))
    return encode_png(rgba[..., :3]), encode_png(rgba[..., 3])


def image_size(data: bytes, source: object = "image") -> tuple[int, int]:
    """(height, width) from the header of encoded image bytes."""
    with _open(data, source) as image:
        return image.height, image.width


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB view of any PIL image; 16-bit greyscale is scaled to 8 bit first."""
    if image.mode == "RGB":
        return image  # convert() would copy
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray(_sixteen_to_eight(np.asarray(image)))
    return image.convert("RGB")


def to_alpha(image: Image.Image) -> Image.Image:
    """8-bit alpha from a matte stored as L, RGB (grey), LA/RGBA (the colour part) or 16-bit."""
    if image.mode == "L":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return Image.fromarray(_sixteen_to_eight(np.asarray(image)))
    if image.mode in ("F",):
        return Image.fromarray(np.clip(np.round(np.asarray(image) * 255), 0, 255).astype(np.uint8))
    return image.convert("L")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 HxW or HxWx3 array (fast compression: size matters less than build time)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 HxWx3 array, without chroma subsampling (4:4:4), so colour edges stay sharp."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def fitted_size(height: int, width: int, canvas: Sequence[int], fit: str) -> tuple[int, int]:
    """Size (h, w) an image of ``height x width`` is resized to for ``fit`` on ``canvas`` (H, W)."""
    canvas_h, canvas_w = canvas
    if fit == "contain":
        scale = min(canvas_h / height, canvas_w / width)
        return min(canvas_h, max(1, round(height * scale))), min(canvas_w, max(1, round(width * scale)))
    if fit == "cover":
        scale = max(canvas_h / height, canvas_w / width)
        return max(canvas_h, round(height * scale)), max(canvas_w, round(width * scale))
    if fit == "native":
        scale = min(1.0, canvas_h / height, canvas_w / width)
        return min(canvas_h, max(1, round(height * scale))), min(canvas_w, max(1, round(width * scale)))
    raise InputError(f"fit {fit!r} is not one of {FITS}")


def decode_to_canvas(
    data: bytes | np.ndarray, mode: str, canvas: Sequence[int], fit: str, *, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``data`` as ``mode`` ("RGB" or "L"), resize for ``fit`` and place it on ``canvas``.

    Args:
      data: encoded image bytes, or a decoded uint8 array (HxW, HxWx1 or HxWx3).
      mode: "RGB" (returns HxWx3) or "L" (returns HxWx1).
      canvas: (H, W) of the output.
      fit: "contain" (pad, valid region at the top left), "native" (as contain, never enlarged) or
        "cover" (centre crop).
      size: (h, w) of the source when known; otherwise read from the data. Pass the colour image's
        size when decoding its alpha so that both get exactly the same geometry.

    Returns:
      (uint8 array of shape (H, W, C), (valid_h, valid_w)): the rows/columns holding image data.
    """
    image = _as_pil(data)
    src_h, src_w = size if size is not None else (image.height, image.width)
    if (image.height, image.width) != (src_h, src_w):
        raise InputError(
            f"image is {image.height}x{image.width} but its pair is {src_h}x{src_w}; "
            "foreground and alpha must have the same size (rebuild the dataset from matching files)"
        )
    target_h, target_w = fitted_size(src_h, src_w, canvas, fit)
    if image.format == "JPEG" and (target_h, target_w) != (src_h, src_w):
        image.draft(mode, (target_w, target_h))  # decode at 1/2, 1/4 or 1/8 size when that is still enough
    image = to_alpha(image) if mode == "L" else to_rgb(image)
    canvas_h, canvas_w = canvas
    # Resample only what lands on the canvas: for "cover" the crop is a box in source coordinates.
    # reducing_gap: shrink by an integer factor with a box filter first, then resample the rest; PIL
    # documents the result as practically indistinguishable from a full resample, at a fraction of the time.
    if fit == "cover":
        top, left = (target_h - canvas_h) // 2, (target_w - canvas_w) // 2
        sx, sy = image.width / target_w, image.height / target_h
        box = (left * sx, top * sy, (left + canvas_w) * sx, (top + canvas_h) * sy)
        out_w, out_h = canvas_w, canvas_h
    else:
        box = None
        out_w, out_h = target_w, target_h
    whole = box is None or box == (0, 0, image.width, image.height)
    if not (whole and image.size == (out_w, out_h)):
        image = image.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box, reducing_gap=_REDUCING_GAP)
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if fit == "cover":
        return np.ascontiguousarray(pixels), (canvas_h, canvas_w)
    out = np.zeros((canvas_h, canvas_w, pixels.shape[-1]), np.uint8)
    out[:target_h, :target_w] = pixels
    return out, (target_h, target_w)


def decode(data: bytes | np.ndarray, mode: str) -> np.ndarray:
    """Decode to a uint8 array at full size: HxWx3 for "RGB", HxW for "L"."""
    image = _as_pil(data)
    return np.asarray(to_alpha(image) if mode == "L" else to_rgb(image))


def _as_pil(data: bytes | np.ndarray) -> Image.Image:
    if isinstance(data, np.ndarray):
        array = data[..., 0] if data.ndim == 3 and data.shape[-1] == 1 else data
        return Image.fromarray(np.ascontiguousarray(array.astype(np.uint8, copy=False)))
    return _open(bytes(data), "encoded image")


def _open(data: bytes, source: object) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as e:  # PIL raises several types for unreadable data
        raise InputError(f"{source}: not a readable image ({e}); remove or replace the file") from None
    return image


def _read(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read the file ({e.strerror})") from None


def _sixteen_to_eight(array: np.ndarray) -> np.ndarray:
    return np.clip(np.round(array.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
