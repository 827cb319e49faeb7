"""Stage 1 of the supplement's Table 1: the base network on VideoMatte240K, 8 epochs, from DeepLabV3.

    bgm-jax build-dataset videomatte240k --manual-dir /data/VideoMatte240K_JPEG_HD --data-dir ~/bgm-jax-data
    bgm-jax build-dataset backgrounds --manual-dir /data/Backgrounds --data-dir ~/bgm-jax-data
    python -m train.main --config train/configs/stage1_base_videomatte.py --workdir runs/stage1 \
        --set init=pretrained:/weights/best_deeplabv3_resnet50_voc_os16.pth

Original: batch 8 on one GPU, lr backbone 1e-4 / aspp 5e-4 / decoder 5e-4, every crop size in 256..511 px.
The global batch (8) and the epochs (8) are stated; the per-device batch and the steps follow from the
device count and the datasets at run time (VideoMatte240K has ~237k training frames and more than the
backgrounds, so an epoch is ~237k items: ~237k steps in all). Frames are stored at their own resolution on a
912x912 canvas (512 x 16/9) so the 512 sample is cut from full detail, as the original's native-resolution
affine.
"""

from train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="base",
        backbone="resnet50",
        train_data="videomatte240k",
        background_data="backgrounds",
        valid_data="videomatte240k",
        valid_split="test",
        sample_size=(512, 512),
        canvas=(912, 912),
        global_batch=8,
        epochs=8,
        augment="base",
        crop_size=(256, 511),
        lr_backbone=1e-4,
        lr_aspp=5e-4,
        lr_decoder=5e-4,
        precision="bfloat16",
        eval_every=5000,
        checkpoint_every=5000,
    )
