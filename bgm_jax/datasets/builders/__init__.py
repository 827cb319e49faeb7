"""tfds builders for the matting datasets. Importing this package registers them with tfds.

All write ArrayRecord and need no TensorFlow; see docs/datasets.md.
"""

from bgm_jax.datasets.builders.backgrounds import Backgrounds
from bgm_jax.datasets.builders.image_matting import ImageMatting, ImageMattingConfig
from bgm_jax.datasets.builders.matting_testset import MattingTestset, MattingTestsetConfig
from bgm_jax.datasets.builders.photo_matting import PhotoMatting, PhotoMattingConfig
from bgm_jax.datasets.builders.synthetic_matting import SyntheticMatting, SyntheticMattingConfig
from bgm_jax.datasets.builders.videomatte240k import Videomatte240k

BUILDERS = {
    cls.name: cls
    for cls in (Videomatte240k, ImageMatting, Backgrounds, MattingTestset, SyntheticMatting, PhotoMatting)
}

__all__ = [
    "BUILDERS",
    "Backgrounds",
    "ImageMatting",
    "ImageMattingConfig",
    "MattingTestset",
    "MattingTestsetConfig",
    "PhotoMatting",
    "PhotoMattingConfig",
    "SyntheticMatting",
    "SyntheticMattingConfig",
    "Videomatte240k",
]
