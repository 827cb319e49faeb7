"""Matting samples from photographs: procedural subjects painted with photo crops, over photo backgrounds.

``make_photo_sample(seed, photos, ...)`` takes the *shapes* of a subject from
``synthetic.subject_layers`` (silhouette, hair strands drawn supersampled, veil, hole, soft edges) and
paints each layer with a crop of a real photograph instead of a flat or procedural colour: clothing
(``torso``), skin (``head``), ``veil`` and hair (``strands``) each get a crop of their own, from
different photos where the set has enough. Each crop keeps the photo's structure (edges, grain, texture)
but is colour-shifted to that layer's procedural colour (skin tones for skin, hair colours for hair),
with a contrast of its own, so the subject does not look like a cut-out of its background. The
background is another crop of a photo, flipped at random and resized to a fixed short side; greyscale
photos are tinted.

Numpy and PIL only, no files: photos come in as uint8 arrays (``dict`` name -> HxWx3 or HxW), so the
same code serves the tfds builder (``builders/photo_matting.py``, photos bundled with scikit-image) and
tests (made-up photos). Every random choice is drawn from the seed and returned with the sample
(:class:`PhotoSample.layers`, ``.background``), so a sample can be regenerated and checked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from bgm_jax.datasets import synthetic

# Painting order of synthetic.subject_layers, and each layer's contrast range: the factor on the
# photo's deviations from its mean. Skin is kept smooth, clothing keeps the photo's full texture.
LAYER_CONTRAST = {"torso": (0.6, 1.3), "head": (0.25, 0.6), "veil": (0.3, 0.9), "strands": (0.4, 1.0)}
# A texture crop is this fraction (side) of the largest crop of the output's aspect ratio that fits.
TEXTURE_SCALE = (0.5, 1.0)
# Background crops: fraction of the largest crop of the drawn aspect ratio, and the aspect ratio
# (width / height) range. Large fractions keep upsampling of small photos modest.
BACKGROUND_SCALE = (0.75, 1.0)
BACKGROUND_ASPECT = (3 / 4, 4 / 3)
# Tint of greyscale background photos (per-channel gain).
GREY_TINT = (0.75, 1.25)
# Stream of the photo choices, apart from synthetic's subject stream for the same seed.
_PHOTO_STREAM = 0x9407


@dataclasses.dataclass(frozen=True)
class Crop:
    """A box of a photo (``top``, ``left``, ``height``, ``width`` in photo pixels), turned by
    ``quarter_turns`` x 90 degrees counter-clockwise, then mirrored left-right if ``flip``."""

    photo: str
    top: int
    left: int
    height: int
    width: int
    quarter_turns: int = 0
    flip: bool = False


@dataclasses.dataclass(frozen=True)
class Recolour:
    """``clip(target + gains * (texture[..., channels] - its mean), 0, 1)``: the photo's structure
    around a new mean colour. ``channels`` permutes RGB (identity most of the time)."""

    target: tuple[float, float, float]
    gains: tuple[float, float, float]
    channels: tuple[int, int, int] = (0, 1, 2)


@dataclasses.dataclass(frozen=True)
class LayerPaint:
    """How one layer was painted: the crop it was cut from and its colour shift."""

    layer: str
    crop: Crop
    recolour: Recolour


@dataclasses.dataclass(frozen=True)
class BackgroundCut:
    """How the background was made: the crop, its stored size (h, w) and the tint (1, 1, 1 for colour)."""

    crop: Crop
    size: tuple[int, int]
    tint: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class PhotoSample:
    """``fgr`` uint8 HxWx3, ``pha`` uint8 HxW, ``bgr`` uint8 hxwx3 (its own size), and how they were made."""

    fgr: np.ndarray
    pha: np.ndarray
    bgr: np.ndarray
    layers: tuple[LayerPaint, ...]
    background: BackgroundCut

    def photos_used(self) -> str:
        """``bgr=NAME torso=NAME head=NAME veil=NAME strands=NAME``: the photos, for provenance."""
        parts = [f"bgr={self.background.crop.photo}"] + [f"{p.layer}={p.crop.photo}" for p in self.layers]
        return " ".join(parts)


def make_photo_sample(
    seed: int,
    photos: Mapping[str, np.ndarray],
    *,
    height: int = 512,
    width: int = 512,
    background_short_side: int = 512,
    backgrounds: Sequence[str] | None = None,
) -> PhotoSample:
    """One sample: the subject of ``synthetic.subject_layers(seed, height, width)`` painted with crops of
    ``photos``, over a crop of one of ``backgrounds`` (names in ``photos``; default: all of them).

    The background is resized so that its shorter side is ``background_short_side`` (its aspect ratio
    is drawn from :data:`BACKGROUND_ASPECT`). Its photo is never used to paint the subject when
    another photo is available; the subject's layers use different photos from each other as far as
    the set allows (with 4 or more photos besides the background's, all four differ).
    """
    names = sorted(photos)
    if not names:
        raise ValueError("make_photo_sample needs at least one photo")
    backgrounds = names if backgrounds is None else sorted(backgrounds)
    unknown = sorted(set(backgrounds) - set(names))
    if unknown or not backgrounds:
        raise ValueError(f"backgrounds {unknown or '(none)'} are not among the photos {names}")
    rng = np.random.default_rng([int(seed), _PHOTO_STREAM])
    layers = synthetic.subject_layers(seed, height, width)

    bg_name = backgrounds[int(rng.integers(len(backgrounds)))]
    others = [n for n in names if n != bg_name] or [bg_name]
    order = [others[i] for i in rng.permutation(len(others))]
    paints, painted = [], []
    for i, layer in enumerate(layers):
        name = order[i % len(order)]
        crop = random_crop(rng, name, photos[name].shape, (height, width), TEXTURE_SCALE, allow_turns=True)
        target = np.asarray(layer.colour, np.float32).reshape(-1, 3).mean(axis=0)
        low, high = LAYER_CONTRAST[layer.name]
        gains = rng.uniform(low, high) * rng.uniform(0.85, 1.15, 3)
        channels = tuple(int(c) for c in rng.permutation(3)) if rng.random() < 0.3 else (0, 1, 2)
        recolour = Recolour(tuple(float(t) for t in target), tuple(float(g) for g in gains), channels)
        texture = apply_recolour(cut(photos[crop.photo], crop, (height, width)), recolour)
        paints.append(LayerPaint(layer.name, crop, recolour))
        painted.append(dataclasses.replace(layer, colour=texture))
    fgr, pha = synthetic.composite_layers(painted)
    background = random_background(rng, bg_name, photos[bg_name], background_short_side)
    bgr = cut_background(photos[bg_name], background)
    return PhotoSample(_to_uint8(fgr), _to_uint8(pha), bgr, tuple(paints), background)


def random_crop(
    rng: np.random.Generator,
    name: str,
    photo_shape: Sequence[int],
    out_size: tuple[int, int],
    scale: tuple[float, float],
    *,
    allow_turns: bool = False,
) -> Crop:
    """A random crop of a photo of ``photo_shape`` with the aspect ratio of ``out_size`` (after the
    quarter turns), ``scale`` times (per side) the largest such crop."""
    turns = int(rng.integers(4)) if allow_turns else 0
    flip = bool(rng.random() < 0.5)
    out_h, out_w = out_size if turns % 2 == 0 else out_size[::-1]  # the box before turning
    photo_h, photo_w = int(photo_shape[0]), int(photo_shape[1])
    fit = min(photo_h / out_h, photo_w / out_w)
    s = fit * rng.uniform(*scale)
    h, w = max(1, min(photo_h, round(out_h * s))), max(1, min(photo_w, round(out_w * s)))
    top, left = int(rng.integers(photo_h - h + 1)), int(rng.integers(photo_w - w + 1))
    return Crop(name, top, left, h, w, turns, flip)


def cut(photo: np.ndarray, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """The crop of ``photo`` (uint8 HxW or HxWx3), turned, flipped and resized (bicubic) to ``size``
    (h, w): float32 HxWx3 in [0, 1]."""
    region = np.asarray(photo)[crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]
    if region.ndim == 2:
        region = np.repeat(region[..., None], 3, axis=-1)
    region = np.rot90(region, crop.quarter_turns)
    if crop.flip:
        region = region[:, ::-1]
    image = Image.fromarray(np.ascontiguousarray(region))
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(image, np.float32) / 255.0


def apply_recolour(texture: np.ndarray, recolour: Recolour) -> np.ndarray:
    """See :class:`Recolour`; float32 HxWx3 in [0, 1]."""
    texture = texture[..., list(recolour.channels)]
    mean = texture.reshape(-1, 3).mean(axis=0)
    out = np.asarray(recolour.target, np.float32) + np.asarray(recolour.gains, np.float32) * (texture - mean)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_background(
    rng: np.random.Generator, name: str, photo: np.ndarray, short_side: int
) -> BackgroundCut:
    """A random upright background crop (aspect from :data:`BACKGROUND_ASPECT`, flipped half the time)
    to be stored with shorter side ``short_side``; greyscale photos get a random tint."""
    aspect = math.exp(rng.uniform(math.log(BACKGROUND_ASPECT[0]), math.log(BACKGROUND_ASPECT[1])))
    size = (short_side, round(short_side * aspect)) if aspect >= 1 else (round(short_side / aspect), short_side)
    crop = random_crop(rng, name, photo.shape, size, BACKGROUND_SCALE)
    grey = photo.ndim == 2 or photo.shape[-1] == 1
    tint = tuple(float(t) for t in rng.uniform(*GREY_TINT, 3)) if grey else (1.0, 1.0, 1.0)
    return BackgroundCut(crop, size, tint)


def cut_background(photo: np.ndarray, background: BackgroundCut) -> np.ndarray:
    """The background image (uint8 hxwx3) described by ``background``."""
    image = cut(photo, background.crop, background.size)
    if background.tint != (1.0, 1.0, 1.0):
        image = image * np.asarray(background.tint, np.float32)
    return _to_uint8(image)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)
