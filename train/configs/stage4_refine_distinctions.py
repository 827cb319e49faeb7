"""Stage 4: base + refiner on Distinctions-646, 30 epochs, from stage 3.

    bgm-jax build-dataset image_matting/distinctions646 --manual-dir /data/Distinctions-646 --data-dir ~/bgm-jax-data
    python -m train.main --config train/configs/stage4_refine_distinctions.py --workdir runs/stage4 \
        --set init=checkpoint:runs/stage3/export
"""

from train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="refine",
        backbone="resnet50",
        train_data="image_matting/distinctions646",
        background_data="backgrounds",
        valid_data="image_matting/distinctions646",
        canvas=(2048, 2048),
        per_device_batch=2,
        augment="refine",
        crop_size=(1024, 2047),
        lr_backbone=5e-5,
        lr_aspp=5e-5,
        lr_decoder=1e-4,
        lr_refiner=3e-4,
        num_steps=596 * 30 // 4,
        precision="bfloat16",
        valid_size=(1024, 1024),
        eval_every=500,
        checkpoint_every=500,
    )
