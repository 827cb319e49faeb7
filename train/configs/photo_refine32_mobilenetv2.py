"""Stage 3f: stage 3e (`photo_refine31_mobilenetv2.py`: stage 3d continued for 600 steps at stage 2y's full
rates with ``ema_decay=0.995``) continued for 600 steps at half those rates (a restarted cosine), another
seed, with the same average: the half-rate averaged stage that took stage 2y to stage 3c (0.02), repeated
after the full-rate stages.

    python -m train.main --config train/configs/photo_refine32_mobilenetv2.py --workdir runs/photo_refine32

Measured (2-core CPU, about 3.8 s a step): whole-image validation of the average 2.82 -> 2.80 (step 200),
2.83 (step 400), 2.83 (end), of the raw weights 3.12, 2.81, 2.88; judged (80 test images) SAD 2.15 ->
**2.13**, MSE 22.16 -> 21.75, Grad 1789 -> 1765, Conn 2101 -> 2072, strands 0.54, veils 0.67 -> 0.66, the rest
0.77 -> 0.75, outside the band 1.48 -> 1.46, video MAD 22.2 -> 22.4 and dtSSD 2.61; whole frame on the CI's 8
images 11.9 -> 12.0 (float32 exports). Shipped until stage 3g (`train.package --example 6`: record 6 was
its upper median); the start of stage 3g.
"""

from train.config import TrainConfig
from train.configs.photo_refine29_mobilenetv2 import get_config as stage3c


def get_config() -> TrainConfig:
    # stage 3c's settings (stage 2y at half its rates, ema_decay 0.995, 600 steps) from stage 3e's export
    return stage3c().replace(
        init="checkpoint:runs/photo_refine31/export",
        image_every=200,
        checkpoint_every=200,
        seed=59,
    )
