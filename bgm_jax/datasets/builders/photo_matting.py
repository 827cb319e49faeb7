"""``photo_matting``: procedural subjects painted with crops of real photographs, over real photographs.

Subjects are the shapes of ``bgm_jax.datasets.synthetic`` (silhouette, hair strands drawn supersampled,
veil, hole, soft edges); every layer is painted with a colour-shifted crop of a photo and the background
is a crop of a photo (``bgm_jax.datasets.photo_subjects``). The photos are only the sample photographs
bundled inside scikit-image's wheel (``skimage/data/``), read from the installed package as files, never
through ``skimage.data``'s fetcher, so building downloads nothing. scikit-image is a training-time
dependency (``pip install 'bgm-jax[train]'``).

The ``train`` and ``test`` splits use disjoint photos (for textures and backgrounds alike) and
different seeds. :data:`PHOTOS` is the table of every photo used, its split and its licence as stated
in scikit-image's own documentation of it (the docstring of ``skimage.data.<name>``), for model cards.
Each record stores ``fgr``, ``pha``, ``bgr``, the ``seed`` it was generated from and ``photos``, the
photo of the background and of each layer.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from bgm_jax.datasets import images, photo_subjects
from bgm_jax.datasets.builders import base
from bgm_jax.datasets.builders.synthetic_matting import record_seed
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
# Seeds of split s are record_seed(config.seed, _SPLIT_IDS[s], index): ids apart from synthetic_matting's
# (0, 1), so no subject here has the shape of a synthetic_matting sample.
_SPLIT_IDS = {"train": 10, "test": 11}
_MAX_WORKERS = 4  # rendering threads


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


@dataclasses.dataclass(eq=False, kw_only=True)
class PhotoMattingConfig(tfds.core.BuilderConfig):
    """Sizes, counts and storage. ``height`` x ``width``: every subject (fgr, pha); backgrounds are
    stored with shorter side ``background_short_side``. ``encoding`` of fgr and bgr: ``png``
    (lossless) or ``jpeg`` (quality 95, 4:4:4, about a third of the size); pha is always PNG."""

    height: int = 512
    width: int = 512
    background_short_side: int = 512
    num_train: int = 64
    num_test: int = 16
    encoding: str = "png"
    seed: int = 0


class PhotoMatting(base.ArrayRecordBuilder):
    """Foreground, alpha, background, seed and the photos used, per record."""

    name = "photo_matting"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: scikit-image 0.26 sample photographs."}
    BUILDER_CONFIGS = [
        PhotoMattingConfig(name="small", height=128, width=128, background_short_side=128, num_train=64,
                           num_test=16, description="64 + 16 subjects at 128x128 (PNG); builds in seconds."),
        PhotoMattingConfig(name="image", height=512, width=512, background_short_side=512, num_train=2400,
                           num_test=80, encoding="jpeg",
                           description="2400 + 80 subjects at 512x512, backgrounds 512 on the short side "
                                       "(fgr, bgr JPEG q95 4:4:4; pha PNG)."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "small"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Procedural subjects painted with crops of scikit-image's sample photographs, over crops of "
                "other such photographs: fgr, pha (PNG), bgr; seed = photo_subjects.make_photo_sample seed; "
                "photos = the photo of the background and of each layer. Train and test use disjoint photos."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "fgr": base.rgb_feature(),
                    "pha": base.alpha_feature("png"),
                    "bgr": base.rgb_feature(),
                    "seed": tfds.features.Scalar(np.int64),
                    "photos": tfds.features.Text(),
                }
            ),
            disable_shuffling=True,
        )

    # tfds announces every build with "Downloading and preparing dataset ... (download: ...)"; this
    # builder downloads nothing, so say what it does instead.
    def _log_download_bytes(self) -> None:
        print(f"Preparing {self.name}/{self.builder_config.name} from scikit-image's bundled photographs "
              f"(offline) in {self.data_dir}...")

    def _log_download_done(self) -> None:
        print(f"Dataset {self.name}/{self.builder_config.name} prepared in {self.data_dir}.")

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the photos are files of the installed scikit-image
        config = self.builder_config
        if config.encoding not in ("png", "jpeg"):
            raise InputError(f"photo_matting: encoding {config.encoding!r} is not 'png' or 'jpeg'")
        counts = {"train": config.num_train, "test": config.num_test}
        return {split: self._generate_examples(split, counts[split]) for split in SPLITS}

    def _generate_examples(self, split: str, count: int):
        config = self.builder_config
        chosen = split_photos(split)
        data_dir = skimage_data_dir()
        photos = {p.name: load_photo(p, data_dir) for p in chosen}
        backgrounds = [p.name for p in chosen if p.background]
        encode = images.encode_png if config.encoding == "png" else images.encode_jpeg

        def record(index: int) -> dict:
            seed = record_seed(config.seed, _SPLIT_IDS[split], index)
            sample = photo_subjects.make_photo_sample(
                seed, photos, height=config.height, width=config.width,
                background_short_side=config.background_short_side, backgrounds=backgrounds,
            )
            return {
                "fgr": encode(sample.fgr),
                "pha": images.encode_png(sample.pha),
                "bgr": encode(sample.bgr),
                "seed": seed,
                "photos": sample.photos_used(),
            }

        # Records are independent and numpy/PIL release the GIL for most of the work, so threads
        # render several at once (1.4x to 1.7x measured on 2 busy cores); results come back in index order, and a
        # record's bytes depend only on its seed, so the dataset is the same for any number of threads.
        workers = min(_MAX_WORKERS, os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for start in range(0, count, 4 * workers):  # a bounded window, not every record in memory
                indices = range(start, min(start + 4 * workers, count))
                for index, example in zip(indices, pool.map(record, indices)):
                    yield f"{index:06d}", example
