"""Stage 2: base + refiner on VideoMatte240K, 1 epoch, from stage 1 (the refiner starts fresh).

    python -m train.main --config train/configs/stage2_refine_videomatte.py --workdir runs/stage2 \
        --set init=checkpoint:runs/stage1/export

Original: batch 4 across 2 GPUs, lr backbone 5e-5 / aspp 5e-5 / decoder 1e-4 / refiner 3e-4, 1024..2047
px crops, sampling mode with 80k pixels at backbone scale 1/4.
"""

from train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="refine",
        backbone="resnet50",
        train_data="videomatte240k",
        background_data="backgrounds",
        valid_data="videomatte240k",
        canvas=(2048, 2048),
        per_device_batch=2,
        augment="refine",
        crop_size=(1024, 2047),
        lr_backbone=5e-5,
        lr_aspp=5e-5,
        lr_decoder=1e-4,
        lr_refiner=3e-4,
        num_steps=60_000,
        precision="bfloat16",
        valid_size=(1024, 1024),
        eval_every=2000,
        checkpoint_every=2000,
    )
