"""The shipped model, stage 1e: the base network of stage 2 (`photo_refine_mobilenetv2.py`) trained on as a
base model once more, longer and with another seed (the refiner is set aside; stage 2b trains a new one).

    python -m train.main --config train/configs/photo_base5_mobilenetv2.py --workdir runs/photo_base5

900 steps (about 42 minutes on 2 CPU cores), learning rate 2e-4 after 20 warm-up steps (a restarted
cosine), seed 5. Measured (the stage's validation, whole-image SAD / 1000 of the first 16 test images at
128 px): 0.389 -> 0.300. The shipped run started from the float16 copy of stage 2's export that bgm-jax
at commit c303364 embeds (the float32 export was lost with a machine); the two differ by float16 rounding.
Then stage 2b, `photo_refine2_mobilenetv2.py`, starts from this export.
"""

from train.config import TrainConfig
from train.configs.photo_base4_mobilenetv2 import get_config as stage1d


def get_config() -> TrainConfig:
    return stage1d().replace(
        init="checkpoint:runs/photo_refine/export",
        num_steps=900,
        seed=5,
    )
