"""Stage 2w: stage 2v (`photo_refine22_mobilenetv2.py`: three quarters of the foregrounds unwarped, strand
term, three times the refined patches, base network at half scale) continued for 600 steps at the same rates
(a restarted cosine), another seed, with the band terms doubled (``soft_weight=4``, ``thin_weight=4``): the
error SAD counts sits in the soft band, and the soft-band term moved it most of all the changes tried.

    python -m train.main --config train/configs/photo_refine23_mobilenetv2.py --workdir runs/photo_refine23
"""

from train.config import TrainConfig
from train.configs.photo_refine22_mobilenetv2 import get_config as stage2v


def get_config() -> TrainConfig:
    return stage2v().replace(
        init="checkpoint:runs/photo_refine22/export",
        soft_weight=4.0,
        thin_weight=4.0,
        seed=43,
    )
