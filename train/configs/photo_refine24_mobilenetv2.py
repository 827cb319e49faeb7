"""Stage 2x: stage 2w (`photo_refine23_mobilenetv2.py`: band terms doubled, three quarters of the foregrounds
unwarped, strand term, base network at half scale) continued for 600 steps at the same rates (a restarted
cosine), another seed, with the band terms doubled again (``soft_weight=8``, ``thin_weight=8``): the first
doubling moved every column, so this asks whether a second one still helps or only trades haze.

    python -m train.main --config train/configs/photo_refine24_mobilenetv2.py --workdir runs/photo_refine24

Measured: about 8 s a step on the 2-core CPU with the test suite running beside it for half the stage; the
soft-band L1 (unweighted) 0.081 -> 0.074 and the strand L1 0.125 -> 0.118 (means of the first and last 200
steps); validation 2.85 -> 2.90 (step 200), 3.02 (step 400), 2.86 (end); judged (80 test images, scale 0.5,
no video) SAD 2.26 -> 2.23, MSE 25.21 -> 24.04, Grad 2090 -> 1964, Conn 2213 -> 2175, band error on strands
0.61 -> 0.59, veils 0.69 -> 0.67, the rest 0.78 -> 0.79, outside the band 1.34 -> 1.53: the second doubling
still gains in the band, by less than the first, and gives the haze back. Error by true alpha -0.01 / -0.09
/ -0.17 / -0.16 from 0.2 up.
"""

from train.config import TrainConfig
from train.configs.photo_refine23_mobilenetv2 import get_config as stage2w


def get_config() -> TrainConfig:
    return stage2w().replace(
        init="checkpoint:runs/photo_refine23/export",
        soft_weight=8.0,
        thin_weight=8.0,
        seed=47,
    )
