"""Stage 3c: stage 3b (`photo_refine28_mobilenetv2.py`: stage 2y continued at half its rates) with a moving
average of the weights (``ema_decay=0.995``: a half-life of about 140 steps, so the average spans the last
third of the 600 steps, where the cosine has taken the rates below a quarter). The average never feeds back
into training, so this run's raw weights are stage 3b's: one run measures both.

    python -m train.main --config train/configs/photo_refine29_mobilenetv2.py --workdir runs/photo_refine29

Measured (quiet 2-core CPU, about 4.3 s a step at the end; the run started from stage 2y's float16 weights
as shipped, written out as runs/photo_refine25/export, since that session's disk no longer held the float32
export): whole-image validation of the average 2.79 -> 2.76 (step 200), 2.75 (step 400), 2.76 (end),
of the raw weights 2.82, 2.76, 2.80; judged (80 test images, video included) SAD 2.19 -> **2.17**, MSE
23.03 -> 22.83, Grad 1871 -> 1862, Conn 2135 -> 2117, strands 0.57 -> 0.56, veils 0.66 -> 0.67, the rest
0.77, outside the band 1.53 -> 1.62, video MAD 23.6 -> 23.5, dtSSD 2.66 -> 2.65; whole frame on the CI's
8 images 11.7 -> 11.9 (float32 exports). Error by true alpha -0.01 / -0.09 / -0.16 / -0.16 from 0.2 up.
Shipped. Its raw weights (stage 3b) judged SAD 2.19, MSE 22.84, outside the band 1.73, video 24.2 / 2.68:
the half-rate stage alone gained nothing; the average gained 0.02.
"""

from train.config import TrainConfig
from train.configs.photo_refine28_mobilenetv2 import get_config as stage3b


def get_config() -> TrainConfig:
    return stage3b().replace(ema_decay=0.995)
