"""Stage 3d: stage 3c (`photo_refine29_mobilenetv2.py`, a half-rate stage whose moving average of the weights
gained 0.02 where its raw weights gained nothing) continued for 240 steps at stage 2y's full rates (a
restarted cosine), another seed, with a shorter average (``ema_decay=0.99``: a half-life of about 70
steps): whether the average gains more over a trajectory that moves further.

    python -m train.main --config train/configs/photo_refine30_mobilenetv2.py --workdir runs/photo_refine30

Measured (quiet 2-core CPU, about 4.5 s a step): whole-image validation of the average 2.76 -> 2.74 (step
120), 2.75 (end), of the raw weights 2.88, 2.78; judged (80 test images) SAD 2.17 -> **2.16**, MSE 22.83 ->
22.70, Grad 1862 -> 1851, Conn 2117 -> 2109, strands 0.56, veils 0.67 -> 0.65, the rest 0.77 -> 0.76,
outside the band 1.62 -> 1.48, whole frame on the CI's 8 images 11.9 -> 11.5 (float32 exports), video MAD
23.5 -> 23.0 and dtSSD 2.65 -> 2.64: better than stage 3c everywhere measured. **Shipped** (packaged with
`train.package --example 6`: record 6 is its upper median).
"""

from train.config import TrainConfig
from train.configs.photo_refine25_mobilenetv2 import get_config as stage2y


def get_config() -> TrainConfig:
    return stage2y().replace(
        init="checkpoint:runs/photo_refine29/export",
        num_steps=240,
        eval_every=120,
        image_every=120,
        checkpoint_every=120,
        ema_decay=0.99,
        seed=57,
    )
