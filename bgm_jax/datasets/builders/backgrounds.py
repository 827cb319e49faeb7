"""Background images from a folder (the paper's crawled backgrounds, or any photos)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from bgm_jax.datasets import images, layouts
from bgm_jax.datasets.builders import base


class Backgrounds(base.ArrayRecordBuilder):
    """Background images with their names, sorted by name."""

    name = "backgrounds"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Give the images folder as manual directory: {layouts.BACKGROUNDS_LAYOUT}"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Background images (RGB); name = path relative to the folder, no extension.",
            features=tfds.features.FeaturesDict({"bgr": base.rgb_feature(), "name": tfds.features.Text()}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = self._manual_root(dl_manager, layouts.BACKGROUNDS_LAYOUT)
        return {split: self._generate_examples(files) for split, files in layouts.background_images(root).items()}

    def _generate_examples(self, files):
        for image in files:
            yield image.name, {"bgr": images.bytes_for_storage(image.path, "rgb"), "name": image.name}
