"""Stage 3n: stage 3m (`photo_refine39_mobilenetv2.py`: a sixth 1,800-step schedule, SAD 1.86 -> 1.84)
continued for another 1,800 steps the same way (stage 2y's full rates down to zero in one cosine,
``ema_decay=0.995``), another seed: whether a seventh schedule of that length still pays.

    python -m train.main --config train/configs/photo_refine40_mobilenetv2.py --workdir runs/photo_refine40

Measured (2-core CPU, about 4.3 s a step, 129 minutes, from stage 3m's float32 export): whole-image validation of
the average 2.27 -> 2.28 (step 300), 2.28, 2.37, 2.42, 2.36, 2.35 (end), of the raw weights 2.32, 2.51, 2.45,
2.49, 2.35, 2.41; judged (80 test images) SAD 1.84 -> **1.81**, MSE 16.05 -> 15.69, Grad 1303 -> 1279, Conn
1741 -> 1699, strands 0.42 -> 0.42, veils 0.60 -> 0.58, the rest 0.64 -> 0.63, outside the band 0.94 -> 0.97,
whole frame on the CI's 8 images 10.0 -> 10.2, video MAD 16.3 -> 15.6 and dtSSD 2.48 -> 2.47; FG MSE 17.86 ->
18.55. Its 0.036 is twice stage 3m's 0.017; mirror-averaged 1.71; keying/model 1.97. **Shipped** (the demo stays
on record 0).
"""

from train.config import TrainConfig
from train.configs.photo_refine39_mobilenetv2 import get_config as stage3m


def get_config() -> TrainConfig:
    # stage 3m's settings from its own export
    return stage3m().replace(
        init="checkpoint:runs/photo_refine39/export",
        num_steps=1800,
        seed=67,
    )
