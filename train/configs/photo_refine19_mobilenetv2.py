"""Stage 2s (in the embedded model's chain, see docs/model.md): stage 2r (`photo_refine18_mobilenetv2.py`, base
network at half the image's resolution) continued, refiner included, for 600 steps at the same rates (a
restarted cosine) with the strand term added (``thin_weight=2.0``, train.losses: an L1 over the foreground a 5x5
opening removes, widened by 1 px), another seed: whether a share of the gradient of their own finds the strands
the model misses, where tuned keying beats it.

    python -m train.main --config train/configs/photo_refine19_mobilenetv2.py --workdir runs/photo_refine19

Measured: validation 3.46 -> 4.13 (step 200), 3.46 (step 400), 3.90 (end); the strand L1 (unweighted) level at
0.13; judged (80 test images, scale 0.5) SAD 2.42 -> 2.39, MSE 31.30 -> 29.20, Grad 3012 -> 2659, Conn 2384 ->
2349, band error on strands 0.80 -> 0.72, veils 0.71, the rest 0.74, outside the band 1.67 -> 1.96.
"""

from train.config import TrainConfig
from train.configs.photo_refine18_mobilenetv2 import get_config as stage2r


def get_config() -> TrainConfig:
    return stage2r().replace(
        init="checkpoint:runs/photo_refine18/export",
        thin_weight=2.0,
        seed=29,
    )
