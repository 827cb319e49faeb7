"""Stage 2f: the embedded model (stage 2e) continued, refiner included, for 1,000 steps with the soft-band
alpha term (``soft_weight=1.0``, train.losses: an L1 over the pixels near true alpha in (0.06, 0.96), which
is where the judged SAD sits) at stage 2d's learning rates (a restarted cosine), another seed.

    python -m train.main --config train/configs/photo_refine6_mobilenetv2.py --workdir runs/photo_refine6

The shipped run started from the same weights as the package held them at commit 1b2449c (stage 2e's
export as float16, ``--set init=embedded`` then), as the stage 2e export itself was lost with a machine.
Measured: validation (whole-image SAD / 1000, 8 test images) 4.27 -> 4.08; judged (``python -m train.judge``,
trimap SAD on the 80 test images) 3.17 -> 2.86, the largest step of any refine stage since stage 2b. Then
stage 2g, ``photo_refine7_mobilenetv2.py``, continues it.
"""

from train.config import TrainConfig
from train.configs.photo_refine5_mobilenetv2 import get_config as stage2e


def get_config() -> TrainConfig:
    return stage2e().replace(
        init="checkpoint:runs/photo_refine5/export",
        num_steps=1000,
        lr_backbone=5e-5,
        lr_aspp=5e-5,
        lr_decoder=1e-4,
        lr_refiner=3e-4,
        soft_weight=1.0,
        eval_every=200,
        seed=11,
    )
