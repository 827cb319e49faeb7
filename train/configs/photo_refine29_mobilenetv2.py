"""Stage 3c: stage 3b (`photo_refine28_mobilenetv2.py`: stage 2y continued at half its rates) with a moving
average of the weights (``ema_decay=0.995``: a half-life of about 140 steps, so the average spans the last
third of the 600 steps, where the cosine has taken the rates below a quarter). The average never feeds back
into training, so this run's raw weights are stage 3b's: one run measures both.

    python -m train.main --config train/configs/photo_refine29_mobilenetv2.py --workdir runs/photo_refine29

Measured: not yet.
"""

from train.config import TrainConfig
from train.configs.photo_refine28_mobilenetv2 import get_config as stage3b


def get_config() -> TrainConfig:
    return stage3b().replace(ema_decay=0.995)
