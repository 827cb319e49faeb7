"""Stage 3a: stage 2y (`photo_refine25_mobilenetv2.py`, the band terms at weight 16) continued for 600 steps at
the same rates (a restarted cosine), another seed, with twice the refined pixels in training
(``refine_sample_pixels=96000``: 6,000 of a 384x512 crop's 12,288 cells, against 48,000 since stage 2t, whose
tripling was the first change to move the strands). The refiner's conv1 runs over the image at this share
(``refiner.train_patch_strategy``), so the step costs less than stage 2y's did.

    python -m train.main --config train/configs/photo_refine27_mobilenetv2.py --workdir runs/photo_refine27

Measured: about 4.1 s a step on the 2-core CPU (stage 2y: 4.8 s at half the pixels, each window's conv1
apart); the soft-band L1 (unweighted) 0.081 -> 0.071 and the strand L1 0.121 -> 0.111 (means of the first
and last 200 steps); validation (at 96,000 refined pixels) 2.78 -> 3.05 (step 200), 3.15 (step 400), 2.81
(end); judged (80 test images, video included) SAD 2.19 -> 2.20, MSE 23.11, Grad 1852, Conn 2157, band
error on strands 0.57 -> 0.55, veils 0.66 -> 0.71, the rest 0.77, outside the band 1.53 -> 1.47, video MAD
22.6, dtSSD 2.61 (both the best yet); whole frame on the CI's 8 images 11.7 -> 12.2. Not shipped: level in
SAD, strands and flicker better, veils worse. Error by true alpha -0.01 / -0.09 / -0.16 / -0.15 from 0.2 up.
"""

from train.config import TrainConfig
from train.configs.photo_refine25_mobilenetv2 import get_config as stage2y


def get_config() -> TrainConfig:
    return stage2y().replace(
        init="checkpoint:runs/photo_refine25/export",
        refine_sample_pixels=96000,
        seed=55,
    )
