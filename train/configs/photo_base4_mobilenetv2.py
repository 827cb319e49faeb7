"""The shipped model, stage 1d: stage 1c (`photo_base3_mobilenetv2.py`) continued once more, with a lower
restarted learning rate and another seed.

    python -m train.main --config train/configs/photo_base4_mobilenetv2.py --workdir runs/photo_base4

480 steps (about 20 minutes on 2 CPU cores), learning rate 2e-4 after 20 warm-up steps, seed 4. Measured
(the stage's validation, whole-image SAD / 1000 of the first 16 test images at 128 px): 0.429 -> 0.357. Then
stage 2, `photo_refine_mobilenetv2.py`, starts from this export.
"""

from train.config import TrainConfig
from train.configs.photo_base3_mobilenetv2 import get_config as stage1c


def get_config() -> TrainConfig:
    return stage1c().replace(
        init="checkpoint:runs/photo_base3/export",
        lr_backbone=2e-4,
        lr_aspp=2e-4,
        lr_decoder=2e-4,
        seed=4,
    )
