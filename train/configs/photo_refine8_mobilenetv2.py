"""Stage 2h: stage 2g (`photo_refine7_mobilenetv2.py`) continued, refiner included, for
600 steps at the same learning rates (a restarted cosine) with the soft-band term doubled
(``soft_weight=2.0``) and another seed.

    python -m train.main --config train/configs/photo_refine8_mobilenetv2.py --workdir runs/photo_refine8

Measured: validation 4.21 -> 4.14; judged (trimap SAD, 80 test images) 2.83 -> 2.71. Its export was the
shipped model until stage 2l (`photo_refine12_mobilenetv2.py`).
"""

from train.config import TrainConfig
from train.configs.photo_refine7_mobilenetv2 import get_config as stage2g


def get_config() -> TrainConfig:
    return stage2g().replace(
        init="checkpoint:runs/photo_refine7/export",
        soft_weight=2.0,
        seed=13,
    )
