"""Stage 2u (tried, see docs/model.md): stage 2t (`photo_refine20_mobilenetv2.py`: strand term, three times the
refined patches, base network at half scale) continued for 600 more steps with the same settings (a
restarted cosine), another seed: whether the refiner keeps learning strands from the wider patch sample.

    python -m train.main --config train/configs/photo_refine21_mobilenetv2.py --workdir runs/photo_refine21
"""

from train.config import TrainConfig
from train.configs.photo_refine20_mobilenetv2 import get_config as stage2t


def get_config() -> TrainConfig:
    return stage2t().replace(
        init="checkpoint:runs/photo_refine20/export",
        seed=37,
    )
