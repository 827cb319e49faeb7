"""The shipped model, stage 1 of 2: MobileNetV2 base network on photo_matting (scikit-image's bundled photos
as textures and backgrounds), from random weights, sized for a 2-core CPU (about an hour).

    pip install -e '.[train]'
    bgm-jax build-dataset photo_matting/image --data-dir ~/bgm-jax-data      # ~3 min, no downloads
    python -m train.main --config train/configs/photo_base_mobilenetv2.py --workdir runs/photo_base

Then stage 2, `train/configs/photo_refine_mobilenetv2.py`. The paper's chain scaled down. The base
network trains at the scale it runs at inside the refine model: stage 2 crops 384..512 px at backbone
scale 1/4, so the coarse pass sees 96..128 px, as here (the original likewise: base crops 256..511, refine
crops 1024..2047 at 1/4). 128 px samples (subjects stored at 512 are shrunk once, never enlarged), crops of
96..128 px in 2 sizes per side (4 compiled shapes: buckets are the CPU option), global batch 16, the
original recipe's augmentation plus the test protocol's plate perturbation on half the samples (the model
is judged by that protocol), no pretrained backbone (none can be downloaded), so higher learning rates than
the original's, with a cosine decay.
"""

from train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        stage="base",
        backbone="mobilenetv2",
        data_dir="~/bgm-jax-data",
        train_data="photo_matting/image",
        background_data="photo_matting/image",
        valid_data="photo_matting/image",
        valid_split="test",
        valid_size=(128, 128),
        valid_count=16,
        sample_size=(128, 128),
        canvas=(172, 172),  # 128 x 4/3: backgrounds are stored up to 4:3 either way round
        global_batch=16,
        epochs=6,
        augment="base",
        crop_size=(96, 128),
        crop_sizes_per_side=2,
        plate_perturbation=0.5,
        lr_backbone=1e-3,
        lr_aspp=1e-3,
        lr_decoder=1e-3,
        schedule="cosine",
        warmup_steps=50,
        precision="float32",
        parallelism="jit",
        log_every=10,
        image_every=100,
        eval_every=100,
        checkpoint_every=100,
        keep_checkpoints=2,
        data_threads=2,
    )
