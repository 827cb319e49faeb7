"""Stage 3e: stage 3d (`photo_refine30_mobilenetv2.py`: stage 3c continued for 240 steps at stage 2y's full
rates with ``ema_decay=0.99``, SAD 2.17 -> 2.16) continued for 600 steps at the same full rates (a restarted
cosine), another seed, with the longer average of stage 3c (``ema_decay=0.995``: a half-life of about 140
steps): whether the averaged full-rate trajectory keeps gaining over a stage of the usual length.

    python -m train.main --config train/configs/photo_refine31_mobilenetv2.py --workdir runs/photo_refine31

Measured (2-core CPU, about 3.8 s a step): whole-image validation of the average 2.75 -> 2.75 (step 200),
2.79 (step 400), 2.82 (end), of the raw weights 2.90, 2.97, 2.92; judged (80 test images) SAD 2.16 ->
**2.15**, MSE 22.70 -> 22.16, Grad 1851 -> 1789, Conn 2109 -> 2101, strands 0.56 -> 0.54, veils 0.65 ->
0.67, the rest 0.76 -> 0.77, outside the band 1.48 -> 1.48, whole frame on the CI's 8 images 11.5 -> 11.9
(float32 exports), video MAD 23.0 -> 22.2 and dtSSD 2.64 -> 2.61. Error by true alpha +0.00 / -0.08 / -0.16 /
-0.15 from 0.2 up (stage 3d -0.01 / -0.09 / -0.17 / -0.16). Not shipped on its own; the start of stage 3f.
"""

from train.config import TrainConfig
from train.configs.photo_refine25_mobilenetv2 import get_config as stage2y


def get_config() -> TrainConfig:
    return stage2y().replace(
        init="checkpoint:runs/photo_refine30/export",
        image_every=200,
        checkpoint_every=200,
        ema_decay=0.995,
        seed=58,
    )
