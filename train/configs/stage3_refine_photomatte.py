"""Stage 3: base + refiner on PhotoMatte13K (never released: use your own image-matting folder), 25 epochs.
Stage 2's settings on another dataset.

    bgm-jax build-dataset image_matting/folder --manual-dir /data/my_photomattes --data-dir ~/bgm-jax-data
    python -m train.main --config train/configs/stage3_refine_photomatte.py --workdir runs/stage3 \
        --set init=checkpoint:runs/stage2/export
"""

from train.config import TrainConfig
from train.configs.stage2_refine_videomatte import get_config as stage2


def get_config() -> TrainConfig:
    return stage2().replace(
        train_data="image_matting/folder",
        valid_data="image_matting/folder",
        num_steps=13_000 * 25 // 4,
    )
