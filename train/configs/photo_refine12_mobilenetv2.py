"""Stage 2l (the shipped model until stage 2n): stage 2k (`photo_refine11_mobilenetv2.py`) continued, refiner
included, for 600 steps at half its learning rates (a restarted cosine), the foreground still near native
size, another seed.

    python -m train.main --config train/configs/photo_refine12_mobilenetv2.py --workdir runs/photo_refine12

Measured: validation 4.06 -> 4.07; judged (trimap SAD, 80 test images) 2.59 -> 2.56. Stage 2n
(`photo_refine14_mobilenetv2.py`) continues it.
"""

from train.config import TrainConfig
from train.configs.photo_refine11_mobilenetv2 import get_config as stage2k


def get_config() -> TrainConfig:
    return stage2k().replace(
        init="checkpoint:runs/photo_refine11/export",
        lr_backbone=1.25e-5,
        lr_aspp=1.25e-5,
        lr_decoder=2.5e-5,
        lr_refiner=7.5e-5,
        seed=17,
    )
