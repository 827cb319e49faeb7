"""Stage 2r (in the embedded model's chain, see docs/model.md): stage 2q (`photo_refine17_mobilenetv2.py`, the base
network at half the image's resolution) continued, refiner included, for 600 steps at half its learning rates (a
restarted cosine), another seed: whether more steps at that scale find the strands.

    python -m train.main --config train/configs/photo_refine18_mobilenetv2.py --workdir runs/photo_refine18

Measured: validation 3.86 -> 3.29 (step 200), 3.07 (step 400), 3.46 (end); judged (trimap SAD, 80 test images,
at the recorded backbone scale 0.5) 2.53 -> 2.42, MSE 31.30, Grad 3012, Conn 2384 (stage 2n: 2.49, 32.86),
band error on strands 0.80 (unchanged), veils 0.73, the rest 0.67, outside the band 1.67 (first 16 images);
video MAD 25.2 -> 22.5, dtSSD 2.91.
"""

from train.config import TrainConfig
from train.configs.photo_refine17_mobilenetv2 import get_config as stage2q


def get_config() -> TrainConfig:
    return stage2q().replace(
        init="checkpoint:runs/photo_refine17/export",
        lr_backbone=2.5e-5,
        lr_aspp=2.5e-5,
        lr_decoder=5e-5,
        lr_refiner=1.5e-4,
        seed=23,
    )
