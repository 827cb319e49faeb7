"""The photographs of ``photo_matting``: scikit-image's bundled sample photos, their splits and licences.

:data:`PHOTOS` lists every photo used, its split (``train`` and ``test`` use disjoint photos, for
textures and backgrounds alike) and its licence as stated in scikit-image's own documentation of it (the
docstring of ``skimage.data.<name>``), for model cards. :func:`load_photo` reads one from the installed
scikit-image as a file (never through ``skimage.data``'s fetcher, so nothing is downloaded) and checks
its bytes. Numpy and PIL only: the tfds builder (``builders/photo_matting.py``) and the generated splits
(``datasets/generated.py``, which need no tfds) both read the photos from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from bgm_jax.datasets import images
from bgm_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Photo:
    """One photograph bundled with scikit-image.

    Attributes:
      name: the ``skimage.data`` function that returns it.
      file: its file in ``skimage/data/`` (the same bytes skimage's registry lists, ``sha256``).
      split: ``train`` or ``test``.
      background: used as a background too (else only to paint subjects).
      licence: short form.
      licence_note: the licence sentence, quoted from ``skimage.data.<name>.__doc__``.
      credit: author or source, as that docstring gives it.
    """

    name: str
    file: str
    split: str
    background: bool
    licence: str
    licence_note: str
    credit: str
    sha256: str


# Excluded: images with no licence statement in skimage (moon, page, the motorcycle stereo pair),
# drawings and synthetic images (text, horse, logo, colorwheel, chessboards, phantom), microscopy of
# single cells (cell) and images too small to crop (microaneurysms, 102x102). Hubble, retina and the
# IHC micrograph are mostly black or not scenes: they only paint subjects.
PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "astronaut.png", "train", True, "public domain",
          "No known copyright restrictions, released into the public domain.",
          "NASA Great Images database (Eileen Collins)",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    Photo("coffee", "coffee.png", "train", True, "CC0",
          "No copyright restrictions. CC0 by the photographer (Rachel Michetti).",
          "Rachel Michetti, courtesy of Pikolo Espresso Bar",
          "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    Photo("camera", "camera.png", "train", True, "CC0",
          "No copyright restrictions. CC0 by the photographer (Lav Varshney).",
          "Lav Varshney",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
    Photo("brick", "brick.png", "train", True, "CC0",
          "licensed under the Creative Commons CC0 License.",
          "CC0Textures (Bricks25)",
          "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf"),
    Photo("gravel", "gravel.png", "train", True, "CC0",
          "licensed under the Creative Commons CC0 License.",
          "CC0Textures (Gravel04)",
          "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12"),
    Photo("clock", "clock_motion.png", "train", True, "public domain",
          "Released into the public domain by the photographer (Stefan van der Walt).",
          "Stefan van der Walt",
          "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955"),
    Photo("hubble_deep_field", "hubble_deep_field.jpg", "train", False, "public domain",
          "The image was captured by NASA and `may be freely used in the public domain",
          "NASA, HubbleSite",
          "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4"),
    Photo("immunohistochemistry", "ihc.png", "train", False, "no known copyright restrictions",
          "No known copyright restrictions.",
          "Center for Microscopy And Molecular Imaging (CMMI)",
          "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef"),
    Photo("retina", "retina.jpg", "train", False, "CC0",
          "This file is made available under the Creative Commons CC0 1.0 Universal Public Domain Dedication.",
          "Mikael Häggström, Wikimedia Commons",
          "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6"),
    Photo("chelsea", "chelsea.png", "test", True, "CC0",
          "No copyright restrictions. CC0 by the photographer (Stefan van der Walt).",
          "Stefan van der Walt",
          "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    Photo("rocket", "rocket.jpg", "test", True, "public domain",
          "The image was captured by SpaceX and `released in the public domain",
          "SpaceX",
          "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    Photo("coins", "coins.png", "test", True, "no known copyright restrictions",
          "No known copyright restrictions.",
          "Brooklyn Museum Collection",
          "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba"),
    Photo("grass", "grass.png", "test", True, "CC0",
          "licensed under the Creative Commons CC0 License.",
          "linolafett, DeviantArt (Grass-01)",
          "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89"),
)

SPLITS = ("train", "test")
# Seeds of split s are record_seed(config.seed, SPLIT_IDS[s], index): ids apart from synthetic_matting's
# (0, 1), so no subject here has the shape of a synthetic_matting sample.
SPLIT_IDS = {"train": 10, "test": 11}


def photo_table() -> list[dict[str, object]]:
    """:data:`PHOTOS` as plain dicts (name, file, split, background, licence, licence_note, credit, sha256)."""
    return [dataclasses.asdict(p) for p in PHOTOS]


def skimage_data_dir() -> Path:
    """``skimage/data`` of the installed scikit-image, found without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "photo_matting needs the sample photographs bundled with scikit-image, which is not installed; "
            "install the training extra: pip install 'bgm-jax[train]' (or pip install scikit-image)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_photo(photo: Photo, data_dir: Path | None = None) -> np.ndarray:
    """The photo as uint8 HxWx3 (colour) or HxW (greyscale), checked against its recorded sha256."""
    path = (data_dir or skimage_data_dir()) / photo.file
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(
            f"{path}: cannot read scikit-image's bundled photo {photo.name!r} ({e.strerror}); "
            "reinstall scikit-image (pip install --force-reinstall scikit-image)"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != photo.sha256:
        raise InputError(
            f"{path}: sha256 {digest[:12]}... is not the {photo.sha256[:12]}... photo_matting was made with; "
            "this scikit-image ships a different photo, so the dataset would differ: use scikit-image 0.26"
        )
    pixels = images.decode(data, "RGB")
    if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]):
        return np.ascontiguousarray(pixels[..., 0])  # greyscale: tinted where used as a background
    return pixels


def split_photos(split: str) -> list[Photo]:
    return [p for p in PHOTOS if p.split == split]
