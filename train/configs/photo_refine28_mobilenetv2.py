"""Stage 3b: stage 2y (`photo_refine25_mobilenetv2.py`, the shipped model) continued for 600 steps at half its
rates (a restarted cosine), another seed, its settings otherwise unchanged: the half-rate stage that followed
stages 2b, 2d, 2f, 2j and 2k (0.03-0.05 each; after stage 2n it traded band error for less haze), not yet
tried after the band terms' sweep.

    python -m train.main --config train/configs/photo_refine28_mobilenetv2.py --workdir runs/photo_refine28

Measured as the raw weights of stage 3c's run (`photo_refine29_mobilenetv2.py`: this config with a moving
average of the weights, which never feeds back into training): judged SAD 2.19 (level with stage 2y), MSE
22.84, Grad 1853, Conn 2136, strands 0.55, veils 0.66, the rest 0.78, outside the band 1.53 -> 1.73, video
MAD 24.2, dtSSD 2.68, whole frame on the CI's 8 images 12.0 (float32); whole-image validation 2.79 -> 2.82 (step 200), 2.76 (step 400), 2.80 (end). Not
shipped; the average of the same run was (stage 3c).
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
