"""Training configuration: one frozen dataclass; each file in ``train/configs/`` overrides a few fields.

Override any field from the command line with ``--set name=value`` (``--set lr_backbone=5e-5``,
``--set canvas=256,256``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

from bgm_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # What to train.
    stage: str = "base"  # "base" (MattingBase) or "refine" (MattingRefine, refiner on patches)
    backbone: str = "resnet50"
    backbone_scale: float = 0.25  # refine stage
    refine_sample_pixels: int = 80_000  # refine stage, as the original's training
    refine_kernel_size: int = 3
    aspp_dropout: float = 0.5

    # Data: prepared tfds datasets ("builder/config" names under data_dir, see `bgm-jax build-dataset`).
    data_dir: str = "~/bgm-jax-data"
    train_data: str = "videomatte240k"
    train_split: str = "train"
    background_data: str = "backgrounds"
    background_split: str = "train"
    valid_data: str = ""  # "" = no validation
    valid_split: str = "test"
    valid_size: tuple[int, int] = (512, 512)  # validation images are fitted to this size
    valid_count: int = 16
    canvas: tuple[int, int] = (512, 512)  # decode size of every training sample
    per_device_batch: int = 8
    augment: str = "base"  # "base", "refine" or "identity": presets of train.augment.AugmentConfig
    crop_size: tuple[int, int] | None = None  # (low, high) random crop sides; None trains on the canvas
    crop_sizes_per_side: int | None = 4  # crop-size buckets per side (None: every size, many compiles)
    data_threads: int = 2

    # Optimisation (original: Adam, per-module learning rates, no schedule).
    lr_backbone: float = 1e-4
    lr_aspp: float = 5e-4
    lr_decoder: float = 5e-4
    lr_refiner: float = 3e-4
    schedule: str = "constant"  # "constant" or "cosine"
    warmup_steps: int = 0
    grad_clip_norm: float | None = None
    precision: str = "float32"  # float32 | bfloat16 | float16 (dynamic loss scaling)

    # Initialisation: "" (random), "pretrained:PATH" (torchvision ImageNet or DeepLabV3 .pth: backbone
    # [+ ASPP] by name and shape), "checkpoint:DIR" (a bgm-jax model directory, e.g. converted official
    # weights or the base stage's result; a refiner missing from it starts fresh).
    init: str = ""

    # Loop.
    num_steps: int = 10_000
    seed: int = 0
    parallelism: str = "jit"  # "jit" (batch-sharded arrays on a Mesh, as JAX recommends) or "pmap" (axis 'batch')
    log_every: int = 50
    image_every: int = 1000
    eval_every: int = 5000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    # Multi-host: "" = single process; otherwise jax.distributed.initialize(coordinator_address, ...).
    coordinator_address: str = ""
    num_processes: int = 1
    process_id: int = 0

    def learning_rates(self) -> dict[str, float]:
        rates = {"backbone": self.lr_backbone, "aspp": self.lr_aspp, "decoder": self.lr_decoder}
        if self.stage == "refine":
            rates["refiner"] = self.lr_refiner
        return rates

    def __post_init__(self):
        checks = [
            (self.stage in ("base", "refine"), f"stage must be 'base' or 'refine', got {self.stage!r}"),
            (self.precision in ("float32", "bfloat16", "float16"), f"unknown precision {self.precision!r}"),
            (self.parallelism in ("pmap", "jit"), f"parallelism must be 'pmap' or 'jit', got {self.parallelism!r}"),
            (self.augment in ("base", "refine", "identity"), f"unknown augment preset {self.augment!r}"),
            (self.per_device_batch >= 1, "per_device_batch must be >= 1"),
            (self.num_steps >= 0, "num_steps must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"config: {message}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_value(field: dataclasses.Field, text: str):
    kind = str(field.type)
    if text.lower() in ("none", "null") and "None" in kind:
        return None
    if kind.startswith("tuple"):
        return tuple(int(v) for v in text.split(","))
    if "bool" in kind:
        return text.lower() in ("1", "true", "yes", "on")
    if "int" in kind and "float" not in kind:
        return int(float(text))
    if "float" in kind:
        return float(text)
    return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """``["name=value", ...]`` applied to ``config``; unknown names are an error that lists the fields."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    changes = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise InputError(f"--set {item!r}: expected NAME=VALUE with NAME one of: {', '.join(fields)}")
        try:
            changes[name] = _parse_value(fields[name], value)
        except ValueError:
            raise InputError(f"--set {item!r}: cannot read {value!r} as {fields[name].type}") from None
    return config.replace(**changes)


def load_config(path: str | os.PathLike) -> TrainConfig:
    """``get_config()`` of a config file (e.g. ``train/configs/tiny.py``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file; see train/configs/ for the available ones")
    spec = importlib.util.spec_from_file_location(f"_bgm_train_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise InputError(f"{path}: a config file must define get_config() returning a TrainConfig")
    return module.get_config()
