"""``photo_matting``: procedural subjects painted with crops of real photographs, over real photographs.

Subjects are the shapes of ``bgm_jax.datasets.synthetic`` (silhouette, hair strands drawn supersampled,
veil, hole, soft edges); every layer is painted with a colour-shifted crop of a photo and the background
is a crop of a photo (``bgm_jax.datasets.photo_subjects``). The photos are only the sample photographs
bundled inside scikit-image's wheel (``skimage/data/``), read from the installed package as files, never
through ``skimage.data``'s fetcher, so building downloads nothing. scikit-image is a training-time
dependency (``pip install 'bgm-jax[train]'``).

The ``train`` and ``test`` splits use disjoint photos (for textures and backgrounds alike) and
different seeds; the photo table, with each photo's licence, is ``bgm_jax.datasets.photos.PHOTOS``.
Each record stores ``fgr``, ``pha``, ``bgr``, the ``seed`` it was generated from and ``photos``, the
photo of the background and of each layer; ``bgm_jax.datasets.generated`` makes the same records in
memory without tfds (``generated:photo_matting/image``), for machines that cannot hold the built files.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from bgm_jax.datasets import generated, images
from bgm_jax.datasets.builders import base
from bgm_jax.datasets.photos import (  # noqa: F401  (re-exported: the photo table lived here first)
    PHOTOS,
    SPLIT_IDS,
    SPLITS,
    Photo,
    load_photo,
    photo_table,
    skimage_data_dir,
    split_photos,
)
from bgm_jax.errors import InputError

_MAX_WORKERS = 4  # rendering threads


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

        size = generated.PhotoMattingSize(config.height, config.width, config.background_short_side,
                                          config.num_train, config.num_test, config.seed)

        def record(index: int) -> dict:
            seed, sample = generated.photo_record(size, split, index, photos, backgrounds)
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
