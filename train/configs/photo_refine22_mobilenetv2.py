"""Stage 2v: stage 2t (`photo_refine20_mobilenetv2.py`: strand term, three times the refined patches, base
network at half scale) continued for 600 steps at the same rates (a restarted cosine), another seed, with
three quarters of the foregrounds left unwarped (``fgr_affine=0.25``): the recipe's bilinear warp spreads a
one-pixel strand over two, which halves the share of strand pixels above alpha 0.6 in training samples
(test images are not warped), and the model under-estimates dense strands by about 0.18.

    python -m train.main --config train/configs/photo_refine22_mobilenetv2.py --workdir runs/photo_refine22
"""

from train.config import TrainConfig
from train.configs.photo_refine20_mobilenetv2 import get_config as stage2t


def get_config() -> TrainConfig:
    return stage2t().replace(
        init="checkpoint:runs/photo_refine20/export",
        fgr_affine=0.25,
        seed=41,
    )
