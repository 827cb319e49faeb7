"""Stage 2j: the shipped stage 2h (`photo_refine8_mobilenetv2.py`) continued, refiner included, for 800
steps with the foreground kept near its native size (``fgr_scale=(0.75, 1.0)`` instead of the original's
0.3..1) at stage 2f's learning rates (a restarted cosine), soft-band weight 2, another seed.

    python -m train.main --config train/configs/photo_refine10_mobilenetv2.py --workdir runs/photo_refine10

Why: the subjects are rendered at 512x512, the refine sample's size, so the original's foreground scale
(0.3..1 of a 2048 sample cut from HD and 4K frames) shrinks a one-pixel strand to a faint, broken line in
most training samples, while the held-out images (and real footage) show it at full strength. Judged,
stage 2h under-estimates true alpha in 0.4..0.96 by 0.13..0.23 on average and misses most strands.

Measured: validation 4.14 -> 4.11; judged (trimap SAD, 80 test images) 2.71 -> 2.64, the under-estimate
0.10..0.20; strands still mostly missed (docs/model.md, "Where the error sits").
"""

from train.config import TrainConfig
from train.configs.photo_refine8_mobilenetv2 import get_config as stage2h


def get_config() -> TrainConfig:
    return stage2h().replace(
        init="checkpoint:runs/photo_refine8/export",
        num_steps=800,
        lr_backbone=5e-5,
        lr_aspp=5e-5,
        lr_decoder=1e-4,
        lr_refiner=3e-4,
        fgr_scale=(0.75, 1.0),
        seed=15,
    )
