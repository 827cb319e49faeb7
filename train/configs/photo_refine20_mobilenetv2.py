"""Stage 2t (tried, see docs/model.md): stage 2s (`photo_refine19_mobilenetv2.py`, strand term, base network at
half scale) continued for 600 steps at the same rates (a restarted cosine) with three times the refined
pixels in training (``refine_sample_pixels=48000``: 3,000 of a 384x512 crop's 12,288 4x4 patches instead of
1,000), another seed: the refiner only learns on the patches the error map picks, and a strand the coarse
pass misses is rarely among them.

    python -m train.main --config train/configs/photo_refine20_mobilenetv2.py --workdir runs/photo_refine20
"""

from train.config import TrainConfig
from train.configs.photo_refine19_mobilenetv2 import get_config as stage2s


def get_config() -> TrainConfig:
    return stage2s().replace(
        init="checkpoint:runs/photo_refine19/export",
        refine_sample_pixels=48_000,
        seed=31,
    )
