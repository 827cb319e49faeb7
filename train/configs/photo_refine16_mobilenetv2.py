"""Stage 2p: stage 2n (`photo_refine14_mobilenetv2.py`) continued, refiner included, for 600 steps at half its
learning rates (a restarted cosine), with the paper's colour misalignment still, another seed.

    python -m train.main --config train/configs/photo_refine16_mobilenetv2.py --workdir runs/photo_refine16
"""

from train.config import TrainConfig
from train.configs.photo_refine14_mobilenetv2 import get_config as stage2n


def get_config() -> TrainConfig:
    return stage2n().replace(
        init="checkpoint:runs/photo_refine14/export",
        lr_backbone=1.25e-5,
        lr_aspp=1.25e-5,
        lr_decoder=2.5e-5,
        lr_refiner=7.5e-5,
        seed=21,
    )
