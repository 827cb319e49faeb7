"""The shipped model, stage 2b: stage 2 (`photo_refine_mobilenetv2.py`) again, from stage 1e's export (the
refiner starts fresh), with another seed; about 27 minutes on 2 CPU cores.

    python -m train.main --config train/configs/photo_refine2_mobilenetv2.py --workdir runs/photo_refine2

The chain before it: stage 1 (`photo_base_mobilenetv2.py`) continued three times (`photo_base2`..`photo_base4`),
stage 2 (`photo_refine_mobilenetv2.py`), then its base network trained on as stage 1e
(`photo_base5_mobilenetv2.py`); `init` points at stage 1e's export. Measured (validation, whole-image
SAD / 1000 of the first 8 test images at 512 px): 9.06 -> 4.85 (stage 2 from stage 1d: 9.99 -> 5.76).
Then stage 2c, `photo_refine3_mobilenetv2.py`, continues it.
"""

from train.config import TrainConfig
from train.configs.photo_refine_mobilenetv2 import get_config as stage2


def get_config() -> TrainConfig:
    return stage2().replace(
        init="checkpoint:runs/photo_base5/export",
        seed=6,
    )
