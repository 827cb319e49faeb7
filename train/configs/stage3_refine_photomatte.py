"""Stage 3: base + refiner on PhotoMatte13K (never released: use your own image-matting folder), 25 epochs.
Stage 2's settings on another dataset. The folder holds train/{fgr,pha}/ and test/{fgr,pha}/ (matching
names; the test split is the validation set; without one, add --set valid_data=).

    bgm-jax build-dataset image_matting/folder --manual-dir /data/my_photomattes --data-dir ~/bgm-jax-data
    python -m train.main --config train/configs/stage3_refine_photomatte.py --workdir runs/stage3 \
        --set init=checkpoint:runs/stage2/export
"""

from train.config import TrainConfig
from train.configs.stage2_refine_videomatte import get_config as stage2


def get_config() -> TrainConfig:
    # Photos come in both orientations: a square canvas keeps a 2048 short side up to a 3:2 aspect ratio.
    return stage2().replace(
        train_data="image_matting/folder",
        valid_data="image_matting/folder",
        canvas=(3072, 3072),
        epochs=25,
    )
