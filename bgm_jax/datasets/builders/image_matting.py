"""Image matting datasets made of foreground + alpha pairs: PhotoMatte85, Distinctions-646, AIM, any folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow_datasets as tfds

from bgm_jax.datasets import layouts
from bgm_jax.datasets.builders import base


@dataclasses.dataclass(eq=False, kw_only=True)
class ImageMattingConfig(tfds.core.BuilderConfig):
    """Which on-disk layout to read (a key of ``LAYOUTS``)."""

    layout: str = "folder"


# layout name -> (function listing the pairs per split, layout text for errors and docs)
LAYOUTS: dict[str, tuple[Callable, str]] = {
    "photomatte85": (layouts.photomatte85_pairs, layouts.PHOTOMATTE85_LAYOUT),
    "distinctions646": (layouts.distinctions646_pairs, layouts.DISTINCTIONS646_LAYOUT),
    "aim": (layouts.aim_pairs, layouts.AIM_LAYOUT),
    "folder": (layouts.folder_pairs, layouts.FOLDER_LAYOUT),
}


class ImageMatting(base.ArrayRecordBuilder):
    """Foreground + alpha pairs with their names, sorted by name."""

    name = "image_matting"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        ImageMattingConfig(name="photomatte85", layout="photomatte85", description="PhotoMatte85 (85 portraits)."),
        ImageMattingConfig(name="distinctions646", layout="distinctions646", description="Distinctions-646."),
        ImageMattingConfig(name="aim", layout="aim", description="Adobe Image Matting (Combined_Dataset)."),
        ImageMattingConfig(name="folder", layout="folder", description="Any fgr/ + pha/ folder pair."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "folder"
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Give the dataset folder as the manual directory. Layouts:\n" + "\n".join(
        f"  {name}: {text}" for name, (_, text) in LAYOUTS.items()
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Foreground (RGB) + alpha pairs; name = path relative to the layout folder, no extension.",
            features=tfds.features.FeaturesDict(
                {"fgr": base.rgb_feature(), "pha": base.alpha_feature(), "name": tfds.features.Text()}
            ),
            disable_shuffling=True,  # record i is the i-th sample by name
        )

    def _split_generators(self, dl_manager):
        list_pairs, layout = LAYOUTS[self.builder_config.layout]
        root = self._manual_root(dl_manager, layout)
        return {split: self._generate_examples(pairs) for split, pairs in list_pairs(root).items()}

    def _generate_examples(self, pairs):
        for pair in pairs:
            yield pair.name, {**base.matting_pair_example(pair), "name": pair.name}
