"""Stage 2t (the embedded model's last stage, see docs/model.md): stage 2s (`photo_refine19_mobilenetv2.py`, strand
term, base network at half scale) continued for 600 steps at the same rates (a restarted cosine) with three
times the refined pixels in training (``refine_sample_pixels=48000``: 3,000 of a 384x512 crop's 12,288 4x4
patches instead of 1,000), another seed: the refiner only learns on the patches the error map picks, and a
strand the coarse pass misses is rarely among them.

    python -m train.main --config train/configs/photo_refine20_mobilenetv2.py --workdir runs/photo_refine20

Measured: about 4.4 s a step on the 2-core CPU (stage 2s: 3); validation 3.73 -> 3.61 (step 200), 3.10 (step
400), 3.03 (end), the strand L1 (unweighted) 0.13 -> 0.12; judged (80 test images, scale 0.5) SAD 2.39 -> 2.33,
MSE 29.20 -> 26.31, Grad 2659 -> 2234, Conn 2349 -> 2266, band error on strands 0.72 -> 0.65, veils 0.70, the
rest 0.77, outside the band 1.96 -> 1.53; video MAD 22.1, dtSSD 2.77.
"""

from train.config import TrainConfig
from train.configs.photo_refine19_mobilenetv2 import get_config as stage2s


def get_config() -> TrainConfig:
    return stage2s().replace(
        init="checkpoint:runs/photo_refine19/export",
        refine_sample_pixels=48_000,
        seed=31,
    )
