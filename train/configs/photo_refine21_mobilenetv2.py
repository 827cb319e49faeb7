"""Stage 2u (tried, see docs/model.md): stage 2t (`photo_refine20_mobilenetv2.py`: strand term, three times the
refined patches, base network at half scale) continued for 600 more steps with the same settings (a
restarted cosine), another seed: whether the refiner keeps learning strands from the wider patch sample.

    python -m train.main --config train/configs/photo_refine21_mobilenetv2.py --workdir runs/photo_refine21

Measured: validation 3.03 -> 3.00 (step 200), 2.94 (step 400), 3.11 (end); judged (80 test images, scale 0.5,
no video) SAD 2.33 -> 2.32, MSE 26.31 -> 26.60, Grad 2238, Conn 2256, band error on strands 0.65 -> 0.64, veils
0.69, the rest 0.76, outside the band 1.53 -> 1.37: level in the band; not shipped.
"""

from train.config import TrainConfig
from train.configs.photo_refine20_mobilenetv2 import get_config as stage2t


def get_config() -> TrainConfig:
    return stage2t().replace(
        init="checkpoint:runs/photo_refine20/export",
        seed=37,
    )
