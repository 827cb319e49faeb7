"""Stage 2: base + refiner on VideoMatte240K, 1 epoch, from stage 1 (the refiner starts fresh).

    python -m train.main --config train/configs/stage2_refine_videomatte.py --workdir runs/stage2 \
        --set init=checkpoint:runs/stage1/export

Original: batch 4 in total across 2 GPUs (2 each), lr backbone 5e-5 / aspp 5e-5 / decoder 1e-4 / refiner
3e-4, every crop size in 1024..2047 px (multiples of 4), sampling mode with 80k pixels at backbone scale 1/4.
Here the global batch is 4 on any number of devices that divides it. VideoMatte240K is landscape: frames
are stored at their own resolution on a 2048 x 3648 canvas (2048 x 16/9).
"""

from train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="refine",
        backbone="resnet50",
        train_data="videomatte240k",
        background_data="backgrounds",
        valid_data="videomatte240k",
        sample_size=(2048, 2048),
        canvas=(2048, 3648),
        global_batch=4,
        epochs=1,
        augment="refine",
        crop_size=(1024, 2047),
        lr_backbone=5e-5,
        lr_aspp=5e-5,
        lr_decoder=1e-4,
        lr_refiner=3e-4,
        precision="bfloat16",
        valid_size=(1024, 1024),
        eval_every=2000,
        checkpoint_every=2000,
    )
