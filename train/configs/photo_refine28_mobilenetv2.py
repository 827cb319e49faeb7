"""Stage 3b: stage 2y (`photo_refine25_mobilenetv2.py`, the shipped model) continued for 600 steps at half its
rates (a restarted cosine), another seed, its settings otherwise unchanged: the half-rate stage that followed
stages 2b, 2d, 2f, 2j and 2k (0.03-0.05 each; after stage 2n it traded band error for less haze), not yet
tried after the band terms' sweep.

    python -m train.main --config train/configs/photo_refine28_mobilenetv2.py --workdir runs/photo_refine28

Measured: not yet.
"""

from train.config import TrainConfig
from train.configs.photo_refine25_mobilenetv2 import get_config as stage2y


def get_config() -> TrainConfig:
    base = stage2y()
    return base.replace(
        init="checkpoint:runs/photo_refine25/export",
        lr_backbone=base.lr_backbone / 2,
        lr_aspp=base.lr_aspp / 2,
        lr_decoder=base.lr_decoder / 2,
        lr_refiner=base.lr_refiner / 2,
        seed=56,
    )
