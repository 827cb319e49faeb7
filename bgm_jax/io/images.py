"""Reading input images, and finding and pairing source and background files.

``read_image`` returns uint8 HxWx3 RGB for anything Pillow opens, upright (EXIF orientation applied):

- greyscale, 1-bit, CMYK, YCbCr, LAB and palette images are converted to RGB;
- an alpha channel (RGBA, LA, palette transparency) is dropped: the model takes opaque RGB;
- 16-bit greyscale is scaled with rounding (Pillow's own ``convert`` clips it to 255, i.e. white);
- 16-bit RGB/RGBA PNGs are decoded at full depth with PyAV and rounded (Pillow keeps only the high byte);
- a missing, corrupt, truncated or unsupported file raises ``InputError`` naming the file.

Sources come from one file, a folder (searched recursively for image extensions, hidden files skipped,
sorted by relative path) or a glob pattern. Backgrounds are one image for every source, or a folder
paired by relative path: ``shots/a.jpg`` pairs with ``<bgr>/shots/a.jpg``, or with ``<bgr>/shots/a.png``
when that is the only background with that relative stem. Pairing by sorted order (the original
scripts' rule, which silently mismatches when a file is missing) happens only when asked for.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from bgm_jax.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_EXIF_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageFile:
    """An input image: where it is, and its path relative to the folder or pattern it was found under
    (used to pair it with a background and to name its outputs)."""

    path: Path
    relative: PurePosixPath

    @property
    def key(self) -> str:
        """Relative path without the extension: outputs are named by it, and backgrounds match on it."""
        return str(self.relative.with_suffix(""))


@dataclass
class Pairing:
    """Sources matched with backgrounds, and the sources left without one (with the reason)."""

    pairs: list[tuple[ImageFile, Path]] = field(default_factory=list)
    unpaired: list[tuple[ImageFile, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- reading


def apply_exif_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF orientation 1-8 upright (what Pillow's ``exif_transpose`` does)."""
    if orientation == 2:
        pixels = pixels[:, ::-1]
    elif orientation == 3:
        pixels = pixels[::-1, ::-1]
    elif orientation == 4:
        pixels = pixels[::-1]
    elif orientation == 5:
        pixels = pixels.swapaxes(0, 1)
    elif orientation == 6:
        pixels = np.rot90(pixels, -1)
    elif orientation == 7:
        pixels = pixels[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        pixels = np.rot90(pixels, 1)
    return np.ascontiguousarray(pixels)


def _round_16_to_8(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 as round(v * 255 / 65535), in exact integer arithmetic (65535 is odd: no ties)."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _png_bit_depth_and_colour_type(path: Path) -> tuple[int, int] | None:
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24], head[25]


def _read_16bit_colour_png(path: Path) -> np.ndarray:
    """Full-depth RGB of a 16-bit colour PNG via FFmpeg's PNG decoder, rounded to 8 bits."""
    import av

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return _round_16_to_8(frame.to_ndarray(format="rgb48le"))


def _pil_to_rgb(image, path: Path) -> np.ndarray:
    """Pixels of an opened Pillow image as uint8 RGB, each mode converted without clipping surprises."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.repeat(_round_16_to_8(np.asarray(image))[..., None], 3, axis=-1)
    if mode == "I":  # 32-bit integer mode: Pillow's container for 16-bit greyscale (PNG, TIFF)
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise InputError(f"{path}: 32-bit integer image is not supported; save it as 8- or 16-bit")
        return np.repeat(_round_16_to_8(values)[..., None], 3, axis=-1)
    if mode == "F":
        values = np.asarray(image)
        if not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise InputError(f"{path}: floating-point image with values outside [0, 1]; save it as 8- or 16-bit")
        from bgm_jax.io.outputs import to_uint8

        return np.repeat(to_uint8(values)[..., None], 3, axis=-1)
    if mode == "P":
        image = image.convert("RGBA")  # palette transparency is resolved through RGBA, then dropped
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as upright uint8 HxWx3 RGB (see the module docstring for conversions)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
            png = _png_bit_depth_and_colour_type(path) if image.format == "PNG" else None
            if png is not None and png[0] == 16 and png[1] in (2, 4, 6):
                pixels = _read_16bit_colour_png(path)
            else:
                image.load()
                pixels = _pil_to_rgb(image, path)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(
            f"{path}: not an image Pillow can read (corrupt, or an unsupported format); "
            f"use one of {', '.join(IMAGE_EXTENSIONS)}"
        ) from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: image too large to read safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated data, bad chunks, decoder errors
        raise InputError(f"{path}: corrupt or truncated image ({e}); re-export or replace the file") from None
    except Exception as e:  # PyAV errors on a broken 16-bit PNG
        raise InputError(f"{path}: cannot decode image ({e})") from None
    return apply_exif_orientation(pixels, orientation if orientation in range(1, 9) else 1)


# ---------------------------------------------------------------------------------------------- finding


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _images_under(folder: Path) -> list[ImageFile]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # skip .git, .partial-* outputs, ...
        for name in files:
            if _is_image_name(name):
                path = Path(root) / name
                found.append(ImageFile(path, PurePosixPath(path.relative_to(folder).as_posix())))
    return found


def _glob_root(pattern: str) -> Path:
    """The folder part of a pattern before its first wildcard: matches are named relative to it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _images_matching(pattern: str) -> list[ImageFile]:
    root = _glob_root(pattern)
    found = []
    for match in glob.glob(pattern, recursive=True):
        path = Path(match)
        if path.is_file() and _is_image_name(path.name):
            found.append(ImageFile(path, PurePosixPath(Path(os.path.relpath(path, root)).as_posix())))
    return found


def collect_images(spec: str | os.PathLike, *, what: str = "--src", unique_keys: bool = True) -> list[ImageFile]:
    """Images named by ``spec``: a file, a folder (recursive) or a glob pattern; sorted by relative path.

    ``what`` names the argument in error messages. With ``unique_keys``, two images whose outputs
    would collide (same relative path apart from the extension, e.g. ``a.jpg`` and ``a.png``) are an
    InputError.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        images = [ImageFile(path, PurePosixPath(path.name))]
    elif path.is_dir():
        images = _images_under(path)
    elif glob.has_magic(text):
        images = _images_matching(os.path.expanduser(text))
    else:
        raise InputError(f"{what} {text}: no such file or folder")
    if not images:
        raise InputError(f"{what} {text}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    images.sort(key=lambda image: str(image.relative))
    if unique_keys:
        _check_unique_keys(images, f"{what} {text}")
    return images


def _check_unique_keys(images: list[ImageFile], where: str) -> None:
    by_key: dict[str, list[str]] = {}
    for image in images:
        by_key.setdefault(image.key, []).append(str(image.relative))
    clashes = [names for names in by_key.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(names) for names in clashes[:5])
        raise InputError(
            f"{where}: images differing only in extension would write the same outputs ({listed}); "
            "rename or move one of each"
        )


# ---------------------------------------------------------------------------------------------- pairing


def pair_backgrounds(
    sources: list[ImageFile], background: str | os.PathLike, *, sorted_order: bool = False
) -> Pairing:
    """Match each source with a background.

    ``background`` is one image (used for every source), or a folder / glob pattern of backgrounds
    matched by relative path (exact first, then the relative path without extension). With
    ``sorted_order=True`` the i-th source in sorted order takes the i-th background; the counts must
    then be equal. Sources without a background are returned in ``Pairing.unpaired`` with the reason.
    """
    text = os.fspath(background)
    path = Path(text).expanduser()
    if path.is_file():
        return Pairing(pairs=[(source, path) for source in sources])
    backgrounds = collect_images(text, what="--bgr", unique_keys=False)
    if sorted_order:
        if len(backgrounds) != len(sources):
            raise InputError(
                f"--bgr {text}: {len(backgrounds)} backgrounds for {len(sources)} sources; pairing by sorted "
                "order needs the same number of each (or drop sorted-order pairing to pair by name)"
            )
        return Pairing(pairs=[(s, b.path) for s, b in zip(sources, backgrounds)])
    by_relative = {str(b.relative): b.path for b in backgrounds}
    by_key: dict[str, list[ImageFile]] = {}
    for b in backgrounds:
        by_key.setdefault(b.key, []).append(b)
    pairing = Pairing()
    for source in sources:
        exact = by_relative.get(str(source.relative))
        candidates = by_key.get(source.key, [])
        if exact is not None:
            pairing.pairs.append((source, exact))
        elif len(candidates) == 1:
            pairing.pairs.append((source, candidates[0].path))
        elif not candidates:
            pairing.unpaired.append((source, f"no background {source.key}.* in {text}"))
        else:
            names = ", ".join(str(c.relative) for c in candidates)
            pairing.unpaired.append((source, f"several backgrounds match ({names}); keep one"))
    return pairing
