"""``synthetic_matting``: procedurally generated matting samples, images or video clips, no downloads.

Every record is generated from its own seed (stored with it) by ``bgm_jax.datasets.synthetic``, so a
record can be regenerated as arrays without the dataset. Sizes and counts are config fields: use a
predefined config or pass your own ``SyntheticMattingConfig``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from bgm_jax.datasets import images, synthetic
from bgm_jax.datasets.builders import base
from bgm_jax.datasets.synthetic import record_seed  # noqa: F401  (re-exported: it lived here first)


@dataclasses.dataclass(eq=False, kw_only=True)
class SyntheticMattingConfig(tfds.core.BuilderConfig):
    """Sizes and counts. For video configs the counts are clips of ``frames_per_clip`` frames."""

    height: int = 256
    width: int = 256
    num_train: int = 64
    num_test: int = 16
    video: bool = False
    frames_per_clip: int = 1
    seed: int = 0


class SyntheticMatting(base.ArrayRecordBuilder):
    """Foreground, alpha and background per record; video configs add clip/frame structure."""

    name = "synthetic_matting"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticMattingConfig(name="small", height=128, width=128, num_train=64, num_test=16,
                               description="64 + 16 images at 128x128; builds in seconds."),
        SyntheticMattingConfig(name="image", height=512, width=512, num_train=500, num_test=50,
                               description="500 + 50 images at 512x512."),
        SyntheticMattingConfig(name="video_small", height=128, width=128, num_train=4, num_test=2, video=True,
                               frames_per_clip=8, description="4 + 2 clips of 8 frames at 128x128."),
        SyntheticMattingConfig(name="video", height=288, width=512, num_train=20, num_test=4, video=True,
                               frames_per_clip=30, description="20 + 4 clips of 30 frames at 288x512."),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "small"

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Synthetic matting: fgr, pha, bgr (PNG); clip and frame (frame 0 for image configs); "
                "seed = the synthetic.make_sample / make_clip seed of the record's sample or clip."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "fgr": base.rgb_feature("png"),
                    "pha": base.alpha_feature("png"),
                    "bgr": base.rgb_feature("png"),
                    "clip": tfds.features.Scalar(np.int32),
                    "frame": tfds.features.Scalar(np.int32),
                    "seed": tfds.features.Scalar(np.int64),
                }
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        config = self.builder_config
        return {
            "train": self._generate_examples(config.num_train, split_id=0),
            "test": self._generate_examples(config.num_test, split_id=1),
        }

    def _generate_examples(self, count: int, split_id: int):
        config = self.builder_config
        for clip in range(count):
            seed = record_seed(config.seed, split_id, clip)
            if config.video:
                arrays = synthetic.make_clip(seed, config.frames_per_clip, config.height, config.width)
                bgr = images.encode_png(arrays["bgr"])
                frames = [(arrays["fgr"][t], arrays["pha"][t]) for t in range(config.frames_per_clip)]
            else:
                arrays = synthetic.make_sample(seed, config.height, config.width)
                bgr = images.encode_png(arrays["bgr"])
                frames = [(arrays["fgr"], arrays["pha"])]
            for frame, (fgr, pha) in enumerate(frames):
                yield f"{clip:06d}/{frame:05d}", {
                    "fgr": images.encode_png(fgr),
                    "pha": images.encode_png(pha),
                    "bgr": bgr,
                    "clip": clip,
                    "frame": frame,
                    "seed": seed,
                }
