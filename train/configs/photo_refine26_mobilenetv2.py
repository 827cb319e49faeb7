"""Stage 2z: stage 2y (`photo_refine25_mobilenetv2.py`: band terms at weight 16) continued for 600 steps at the
same rates (a restarted cosine), another seed, with the band terms doubled once more (``soft_weight=32``,
``thin_weight=32``): the fourth point of the sweep 4 -> 8 -> 16 -> 32, asking whether it still pays once the
original's losses are a small share of the total.

    python -m train.main --config train/configs/photo_refine26_mobilenetv2.py --workdir runs/photo_refine26

Measured: about 4.8 s a step on the 2-core CPU; the soft-band L1 (unweighted) 0.070 -> 0.073 and the strand
L1 0.101 -> 0.115 (means of the first and last 200 steps); validation 2.78 -> 2.97 (step 200), 3.02 (step
400), 3.33 (end: the whole-image error rose all stage); judged (80 test images, video included) SAD 2.19 ->
2.18, MSE 23.06, Grad 1905, Conn 2124, band error on strands 0.56, veils 0.66, the rest 0.77, outside the
band 1.53 -> 1.92, video MAD 23.0, dtSSD 2.68; whole frame on the CI's 8 images 11.7 -> 14.4. Not shipped:
the sweep's end (0.01 in the band for a quarter more haze outside it). Error by true alpha -0.00 / -0.08 /
-0.16 / -0.17 from 0.2 up.
"""

from train.config import TrainConfig
from train.configs.photo_refine25_mobilenetv2 import get_config as stage2y


def get_config() -> TrainConfig:
    return stage2y().replace(
        init="checkpoint:runs/photo_refine25/export",
        soft_weight=32.0,
        thin_weight=32.0,
        seed=54,
    )
