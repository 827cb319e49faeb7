"""The shipped model, stage 2c: stage 2b (`photo_refine2_mobilenetv2.py`) continued, refiner included, at half
its learning rates (a restarted cosine) and with another seed; about 29 minutes on 2 CPU cores.

    python -m train.main --config train/configs/photo_refine3_mobilenetv2.py --workdir runs/photo_refine3

Measured (validation, whole-image SAD / 1000 of the first 8 test images at 512 px): 4.85 -> 4.60; judged
(`python -m train.judge`, trimap SAD on the 80 test images) 3.58 -> 3.45. Then stage 2d,
`photo_refine4_mobilenetv2.py`, continues it.
"""

from train.config import TrainConfig
from train.configs.photo_refine2_mobilenetv2 import get_config as stage2b


def get_config() -> TrainConfig:
    return stage2b().replace(
        init="checkpoint:runs/photo_refine2/export",
        lr_backbone=5e-5,
        lr_aspp=5e-5,
        lr_decoder=1e-4,
        lr_refiner=3e-4,
        seed=7,
    )
