"""Stage 2n (in the embedded model's chain, see docs/model.md): stage 2l (`photo_refine12_mobilenetv2.py`)
continued, refiner included, for 600 steps at stage 2k's learning rates (a restarted cosine) with the paper's
background colour misalignment (30 % of samples, torchvision semantics) instead of the original code's (80 %,
kornia semantics, 4.5x stronger), another seed.

    python -m train.main --config train/configs/photo_refine14_mobilenetv2.py --workdir runs/photo_refine14

Why: with a clean plate (no D.2 perturbation at all) stage 2l still scores trimap SAD 2.48 against 2.56 with
it, so the plate noise is not what loses the strands; a network taught that its plate may differ from the
composite's background by a brightness shift of up to 0.18 has learnt to ignore differences of that size,
which is what a strand is.

Measured: validation 4.07 -> 3.94; judged (trimap SAD, 80 test images) 2.56 -> 2.49, MSE 33.70 -> 32.86, Grad
3331 -> 3246, error outside the band 2.23 -> 1.96 (first 16 images), video MAD 32.6 -> 29.7 and dtSSD 3.04 ->
3.00. The strands did not come back (band error on them 0.80 -> 0.80, first 16 images; keying 0.52); the veils
(0.78 -> 0.73) and the rest (0.77 -> 0.74) gained. This stage's export is the shipped model: then ``python -m
train.judge`` and ``python -m train.package --example 3`` (docs/model.md)."""

from train.config import TrainConfig
from train.configs.photo_refine12_mobilenetv2 import get_config as stage2l


def get_config() -> TrainConfig:
    return stage2l().replace(
        init="checkpoint:runs/photo_refine12/export",
        lr_backbone=2.5e-5,
        lr_aspp=2.5e-5,
        lr_decoder=5e-5,
        lr_refiner=1.5e-4,
        misalignment="paper",
        seed=19,
    )
