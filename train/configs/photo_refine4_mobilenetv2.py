"""The shipped model, stage 2d: stage 2c (`photo_refine3_mobilenetv2.py`) continued, refiner included, for
1,200 steps (2.4x stage 2c's) at stage 2c's learning rates (a restarted cosine) and with another seed;
about 71 minutes on 2 CPU cores.

    python -m train.main --config train/configs/photo_refine4_mobilenetv2.py --workdir runs/photo_refine4

Measured (validation, whole-image SAD / 1000 of the first 8 test images at 512 px): 4.60 -> 4.21, still
falling at the end; judged (`python -m train.judge`, trimap SAD on the 80 test images) 3.45 -> 3.24. Then
stage 2e, `photo_refine5_mobilenetv2.py`, continues it.
"""

from train.config import TrainConfig
from train.configs.photo_refine3_mobilenetv2 import get_config as stage2c


def get_config() -> TrainConfig:
    return stage2c().replace(
        init="checkpoint:runs/photo_refine3/export",
        num_steps=1200,
        eval_every=200,
        seed=8,
    )
