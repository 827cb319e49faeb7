"""The shipped model, stage 1c: stage 1b (`photo_base2_mobilenetv2.py`) continued once more, with a lower
restarted learning rate and another seed (a different order of samples and augmentations).

    python -m train.main --config train/configs/photo_base3_mobilenetv2.py --workdir runs/photo_base3

480 steps (about 20 minutes on 2 CPU cores), learning rate 3e-4 after 20 warm-up steps. Measured (the
stage's validation, whole-image SAD / 1000 of the first 16 test images at 128 px): 0.447 -> 0.429. Then
stage 1d, `photo_base4_mobilenetv2.py`, continues from this export.
"""

from train.config import TrainConfig
from train.configs.photo_base2_mobilenetv2 import get_config as stage1b


def get_config() -> TrainConfig:
    return stage1b().replace(
        init="checkpoint:runs/photo_base2/export",
        lr_backbone=3e-4,
        lr_aspp=3e-4,
        lr_decoder=3e-4,
        seed=3,
    )
