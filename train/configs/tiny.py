"""Tiny: MobileNetV2 base network on the procedural synthetic dataset; trains on a CPU in minutes.

    python -m train.main --config train/configs/tiny.py --workdir runs/tiny

The synthetic dataset is built into data_dir on first use (seconds, no downloads).
"""

from train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="base",
        backbone="mobilenetv2",
        data_dir="~/bgm-jax-data",
        train_data="synthetic_matting/small",
        background_data="synthetic_matting/small",
        valid_data="synthetic_matting/small",
        valid_size=(128, 128),
        valid_count=16,
        sample_size=(128, 128),
        canvas=(128, 128),
        global_batch=8,
        augment="identity",
        lr_backbone=1e-3,
        lr_aspp=1e-3,
        lr_decoder=1e-3,
        num_steps=300,  # a fixed length rather than epochs: the smoke run of the training stack
        parallelism="jit",
        log_every=25,
        image_every=100,
        eval_every=100,
        checkpoint_every=100,
        keep_checkpoints=2,
    )
