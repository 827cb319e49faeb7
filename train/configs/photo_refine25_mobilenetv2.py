"""Stage 2y: stage 2x (`photo_refine24_mobilenetv2.py`: band terms at weight 8) continued for 600 steps at the
same rates (a restarted cosine), another seed, with the band terms doubled once more (``soft_weight=16``,
``thin_weight=16``): the third point of the sweep 4 -> 8 -> 16, where the gain in the band had shrunk and the
haze outside it grown.

    python -m train.main --config train/configs/photo_refine25_mobilenetv2.py --workdir runs/photo_refine25

Measured: about 4.8 s a step on the quiet 2-core CPU; the soft-band L1 (unweighted) 0.075 -> 0.074 and the
strand L1 0.111 -> 0.109 (means of the first and last 200 steps); validation 2.86 -> 2.81 (step 200), 2.88
(step 400), 2.78 (end, the lowest of any stage); judged (80 test images, scale 0.5, video included) SAD 2.23
-> 2.19, MSE 24.04 -> 23.03, Grad 1964 -> 1871, Conn 2175 -> 2135, band error on strands 0.59 -> 0.57,
veils 0.67 -> 0.66, the rest 0.79 -> 0.77, outside the band 1.53 (level), video MAD 23.6, dtSSD 2.66;
whole frame on the CI's 8 images 11.7 (stage 2w 12.4). Shipped. Error by true alpha -0.01 / -0.08 / -0.17
/ -0.16 from 0.2 up.
"""

from train.config import TrainConfig
from train.configs.photo_refine24_mobilenetv2 import get_config as stage2x


def get_config() -> TrainConfig:
    return stage2x().replace(
        init="checkpoint:runs/photo_refine24/export",
        soft_weight=16.0,
        thin_weight=16.0,
        seed=53,
    )
