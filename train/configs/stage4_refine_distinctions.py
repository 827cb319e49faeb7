"""Stage 4: base + refiner on Distinctions-646, 30 epochs, from stage 3. Stage 2's settings on another dataset.

    bgm-jax build-dataset image_matting/distinctions646 --manual-dir /data/Distinctions-646 --data-dir ~/bgm-jax-data
    python -m train.main --config train/configs/stage4_refine_distinctions.py --workdir runs/stage4 \
        --set init=checkpoint:runs/stage3/export
"""

from train.config import TrainConfig
from train.configs.stage2_refine_videomatte import get_config as stage2


def get_config() -> TrainConfig:
    return stage2().replace(
        train_data="image_matting/distinctions646",
        valid_data="image_matting/distinctions646",
        canvas=(3072, 3072),
        epochs=30,  # an epoch is max(646 foregrounds, the backgrounds): with 8,000+ backgrounds ~60k steps
        eval_every=500,
        checkpoint_every=500,
    )
