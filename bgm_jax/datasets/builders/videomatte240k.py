"""VideoMatte240K (Lin et al. 2021): 484 green-screen clips as JPEG frames, from a manual directory."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from bgm_jax.datasets import images, layouts
from bgm_jax.datasets.builders import base


class Videomatte240k(base.ArrayRecordBuilder):
    """Foreground + alpha frames with their clip and frame ids, in clip/frame order."""

    name = "videomatte240k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Frames from the public JPEG release, stored byte for byte."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download VideoMatte240K (JPEG, HD or 4K) from the BackgroundMattingV2 project page and give the
    folder that holds train/ and test/ as the manual directory. Layout: {layouts.VIDEOMATTE_LAYOUT}
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="VideoMatte240K frames: fgr (RGB), pha (alpha), clip and frame ids.",
            features=tfds.features.FeaturesDict(
                {
                    "fgr": base.rgb_feature(),
                    "pha": base.alpha_feature(),
                    "clip": tfds.features.Text(),
                    "frame": tfds.features.Text(),
                    "frame_index": tfds.features.Scalar(np.int32),
                }
            ),
            disable_shuffling=True,  # record i is the i-th frame in clip/frame order
            homepage="https://grail.cs.washington.edu/projects/background-matting-v2/",
        )

    def _split_generators(self, dl_manager):
        root = self._manual_root(dl_manager, layouts.VIDEOMATTE_LAYOUT)
        return {split: self._generate_examples(frames) for split, frames in layouts.videomatte_frames(root).items()}

    def _generate_examples(self, frames):
        for frame in frames:
            fgr = images.bytes_for_storage(frame.fgr, "rgb")
            pha = images.bytes_for_storage(frame.pha, "alpha")
            base.check_same_size(fgr, pha, frame.fgr, frame.pha)
            yield f"{frame.clip}/{frame.frame}", {
                "fgr": fgr,
                "pha": pha,
                "clip": frame.clip,
                "frame": frame.frame,
                "frame_index": frame.frame_index,
            }
