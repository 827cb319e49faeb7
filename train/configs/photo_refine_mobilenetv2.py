"""The shipped model, stage 2: MobileNetV2 base + refiner on photo_matting, from stage 1d (the refiner
starts fresh), sized for a 2-core CPU (about 20 minutes).

    python -m train.main --config train/configs/photo_refine_mobilenetv2.py --workdir runs/photo_refine

The chain before it: `photo_base_mobilenetv2.py` (stage 1), then `photo_base2_mobilenetv2.py`,
`photo_base3_mobilenetv2.py` and `photo_base4_mobilenetv2.py` (stage 1 continued three times); `init`
points at the last one's export. The original's refine stage scaled down: 512 samples (the subjects' stored resolution), crops of 384..512
px in 2 sizes per side, backbone scale 1/4 (the coarse pass at 96..128 px, as the inference API runs a
512 image), sampling mode on 1,000 patches per image (16,000 pixels: about 6 % of a crop's cells, the
share the original's 80,000 pixels are of a 2048 crop), the original's refine learning rates doubled for
the short run, the plate perturbation on half the samples as in stage 1, 500 steps (validation stops
improving after a few hundred), seed 3.
"""

from train.config import TrainConfig
from train.configs.photo_base_mobilenetv2 import get_config as base


def get_config() -> TrainConfig:
    return base().replace(
        stage="refine",
        backbone_scale=0.25,
        refine_sample_pixels=16_000,
        valid_size=(512, 512),
        valid_count=8,
        sample_size=(512, 512),
        canvas=(688, 688),  # 512 x 4/3
        global_batch=4,
        epochs=1,
        augment="refine",
        crop_size=(384, 512),
        lr_backbone=1e-4,
        lr_aspp=1e-4,
        lr_decoder=2e-4,
        lr_refiner=6e-4,
        warmup_steps=20,
        eval_every=100,
        init="checkpoint:runs/photo_base4/export",
        num_steps=500,
        seed=3,
    )
