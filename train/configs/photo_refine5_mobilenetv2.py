"""Stage 2e: stage 2d (`photo_refine4_mobilenetv2.py`) continued, refiner included, for
600 steps at half its learning rates (a restarted cosine) and with another seed; about 39 minutes on 2 CPU
cores (beside a test run).

    python -m train.main --config train/configs/photo_refine5_mobilenetv2.py --workdir runs/photo_refine5

Measured: validation (whole-image SAD / 1000, 8 test images) 4.21 -> 4.27, but judged
(`python -m train.judge`, trimap SAD on the 80 test images) 3.24 -> 3.17. This stage's export was the
shipped model until stage 2f (`photo_refine6_mobilenetv2.py`) continued it.
"""

from train.config import TrainConfig
from train.configs.photo_refine4_mobilenetv2 import get_config as stage2d


def get_config() -> TrainConfig:
    return stage2d().replace(
        init="checkpoint:runs/photo_refine4/export",
        num_steps=600,
        lr_backbone=2.5e-5,
        lr_aspp=2.5e-5,
        lr_decoder=5e-5,
        lr_refiner=1.5e-4,
        seed=10,
    )
