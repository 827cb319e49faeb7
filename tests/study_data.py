"""Small generated images for the user-study tests: an original photo and two cut-outs of it.

Method A's cut-out has a crisp matte, method B's a soft halo and a missing patch, so the two differ
the way two matting results do; every file is a few kilobytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = (160, 120)  # width, height


def _matte(size: tuple[int, int], shift: int) -> Image.Image:
    """A person-like silhouette: head, shoulders, body."""
    w, h = size
    matte = Image.new("L", size, 0)
    draw = ImageDraw.Draw(matte)
    cx, u = w / 2 + shift * w / 160, w / 160  # drawn for 160x120, scaled to the size asked for
    draw.ellipse([cx - 16 * u, 14 * u, cx + 16 * u, 50 * u], fill=255)
    draw.rounded_rectangle([cx - 38 * u, 52 * u, cx + 38 * u, h + 20 * u], radius=22 * u, fill=255)
    return matte


def _background(size: tuple[int, int], seed: int) -> np.ndarray:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 200, size=3)
    image = base + 40 * np.sin(x[..., None] / (9 + 3 * seed) + np.arange(3)) * np.cos(y[..., None] / 13)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_example(folders: dict[str, Path], key: str, seed: int, size: tuple[int, int] = SIZE) -> None:
    """Write ``key``.png into the ``original``, ``a`` and ``b`` folders."""
    matte = _matte(size, shift=(seed % 3 - 1) * 18)
    person = np.zeros((size[1], size[0], 3), np.uint8)
    person[...] = (np.array([200, 150, 120]) * (0.7 + 0.1 * seed)).clip(0, 255).astype(np.uint8)
    person[: size[1] * 11 // 24, :, :] = (230, 190, 160)  # the face a little lighter
    alpha = np.asarray(matte, np.float32)[..., None] / 255
    original = (alpha * person + (1 - alpha) * _background(size, seed)).astype(np.uint8)
    for folder in folders.values():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(original).save(folders["original"] / f"{key}.png")

    crisp = np.dstack([person, np.asarray(matte)])
    Image.fromarray(crisp, "RGBA").save(folders["a"] / f"{key}.png")
    w, h = size
    soft = matte.filter(ImageFilter.GaussianBlur(4 * w / 160))
    soft_alpha = np.asarray(soft).copy()
    soft_alpha[h * 7 // 12 : h * 3 // 4, w // 2 - w * 3 // 16 : w // 2 - w // 16] = 0  # a hole in the body
    Image.fromarray(np.dstack([person, soft_alpha]), "RGBA").save(folders["b"] / f"{key}.png")


def make_study_folders(root: Path, keys: list[str], size: tuple[int, int] = SIZE) -> dict[str, Path]:
    """Folders ``original``, ``a`` and ``b`` under ``root`` with one example per key; returns them."""
    folders = {role: root / role for role in ("original", "a", "b")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for seed, key in enumerate(keys):
        make_example(folders, key, seed, size)
    return folders
