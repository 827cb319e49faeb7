"""Stage 3: base + refiner on PhotoMatte13K (never released: use your own image-matting folder), 25 epochs.

    bgm-jax build-dataset image_matting/folder --manual-dir /data/my_photomattes --data-dir ~/bgm-jax-data
    python -m train.main --config train/configs/stage3_refine_photomatte.py --workdir runs/stage3 \
        --set init=checkpoint:runs/stage2/export
"""

from train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="refine",
        backbone="resnet50",
        train_data="image_matting/folder",
        background_data="backgrounds",
        valid_data="image_matting/folder",
        canvas=(2048, 2048),
        per_device_batch=2,
        augment="refine",
        crop_size=(1024, 2047),
        lr_backbone=5e-5,
        lr_aspp=5e-5,
        lr_decoder=1e-4,
        lr_refiner=3e-4,
        num_steps=13_000 * 25 // 4,
        precision="bfloat16",
        valid_size=(1024, 1024),
        eval_every=2000,
        checkpoint_every=2000,
    )
