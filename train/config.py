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
from bgm_jax.model_spec import PRECISIONS


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
    # The sample the augmentation's affines produce before the crop (the original's RandomAffineAndResize
    # output: 512 base, 2048 refine). Images are stored on `canvas` at their own resolution, shrunk only
    # to fit it ("native" fit), so the canvas should hold sample_size times the widest aspect ratio of the
    # data (912 = 512 x 16/9): the warp then never enlarges a shrunk copy, which would blur hair.
    sample_size: tuple[int, int] = (512, 512)
    canvas: tuple[int, int] = (912, 912)
    # Batch and length, as the original states them: the global batch over all devices and hosts, and
    # zip epochs (an epoch = max(n_foregrounds, n_backgrounds) items). The per-device batch and the number
    # of steps follow at run time (`plan_run`); num_steps, when set, overrides the epochs (smoke runs).
    global_batch: int = 8
    epochs: float = 8.0
    num_steps: int | None = None
    augment: str = "base"  # "base", "refine" or "identity": presets of train.augment.AugmentConfig
    crop_size: tuple[int, int] | None = None  # (low, high) random crop sides; None trains on the sample
    # None draws every crop size in range, one per step, as the original (each new size compiles the
    # step once: fine on a GPU); a number n thins that to n evenly spaced sizes per side, n^2 shapes in
    # all, which bounds compilation on a CPU.
    crop_sizes_per_side: int | None = None
    # "code": the original code's background colour misalignment (p = 0.8, kornia semantics);
    # "paper": the supplement's (30 %, torchvision semantics).
    misalignment: str = "code"
    # Share of samples whose network background gets the test protocol's perturbation (supplement D.2:
    # subpixel shift, gamma, noise); not in the original recipe (0), see AugmentConfig.plate_perturbation_p.
    plate_perturbation: float = 0.0
    # Share of samples whose network background is moved by the misalignment affine (rotation +-1 deg,
    # translation +-1 % of the crop: several pixels); None keeps the preset's 30 % (paper and code alike).
    # The test protocol moves the plate by at most 0.3 px, and a plate moved by pixels makes every edge of
    # a textured background look like a strand, so a model judged by that protocol can train with less.
    misalign_affine: float | None = None
    # (low, high) scale of the foreground layer relative to the image fitted to cover the sample; None keeps
    # the preset's (base 0.4..1, refine 0.3..1, the original's). The original's refine foregrounds were HD or
    # 4K frames fitted to a 2048 sample; foregrounds rendered at the sample size lose strands thinner than a
    # pixel when shrunk that far, so a model for them trains nearer native size.
    fgr_scale: tuple[float, float] | None = None
    # Share of samples whose foreground and alpha get the preset's random affine; None keeps the preset's
    # (1, the original). The others are only flipped and cropped: a layer stored at the sample's size is
    # then not resampled, and its strands keep the alpha the test images have (every bilinear warp thins
    # it: docs/training.md, "Sharp foregrounds").
    fgr_affine: float | None = None
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
    # Weight of an extra alpha L1 over the soft band (train.losses.soft_band); 0 = the original's losses.
    soft_weight: float = 0.0
    # Weight of an extra alpha L1 over strands (train.losses.thin_band); 0 = the original's losses.
    thin_weight: float = 0.0
    # Exponential moving average of the weights (parameters and BatchNorm statistics), updated after every
    # step: ema = ema_decay * ema + (1 - ema_decay) * weights, started at the initial weights. The export,
    # validation SAD, the "best" checkpoint and the image grids use the average; validation also logs the
    # raw weights' scores (raw_valid_*). 0 = no averaging (the original).
    ema_decay: float = 0.0

    # Initialisation: "" (random), "pretrained:PATH" (torchvision ImageNet or DeepLabV3 .pth: backbone
    # [+ ASPP] by name and shape), "checkpoint:DIR" (a bgm-jax model directory, e.g. converted official
    # weights or the base stage's result; a refiner missing from it starts fresh), "embedded" (the model
    # this bgm-jax ships, float32 from its float16 file: how a GPU machine continues it without files).
    init: str = ""

    # Loop.
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
            (self.precision in PRECISIONS, f"unknown precision {self.precision!r}"),
            (self.parallelism in ("pmap", "jit"), f"parallelism must be 'pmap' or 'jit', got {self.parallelism!r}"),
            (self.augment in ("base", "refine", "identity"), f"unknown augment preset {self.augment!r}"),
            (self.global_batch >= 1, "global_batch must be >= 1"),
            (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1,
             f"ema_decay must be in [0, 1) (0 = no averaging), got {self.ema_decay!r}"),
            (self.epochs > 0, "epochs must be > 0"),
            (self.num_steps is None or self.num_steps >= 0, "num_steps must be None (from the epochs) or >= 0"),
            (self.misalignment in ("code", "paper"), f"misalignment must be 'code' or 'paper', got {self.misalignment!r}"),
            (0 <= self.plate_perturbation <= 1, "plate_perturbation must be a probability in [0, 1]"),
            (self.misalign_affine is None or (isinstance(self.misalign_affine, (int, float))
                                              and 0 <= self.misalign_affine <= 1),
             f"misalign_affine must be None (the preset's) or a probability in [0, 1], got {self.misalign_affine!r}"),
            (self.fgr_affine is None or (isinstance(self.fgr_affine, (int, float))
                                         and 0 <= self.fgr_affine <= 1),
             f"fgr_affine must be None (the preset's) or a probability in [0, 1], got {self.fgr_affine!r}"),
            (self.soft_weight >= 0, "soft_weight must be >= 0"),
            (self.thin_weight >= 0, "thin_weight must be >= 0"),
            (0 < self.backbone_scale <= 0.5, f"backbone_scale must be in (0, 0.5], got {self.backbone_scale}"),
            (self.fgr_scale is None or (isinstance(self.fgr_scale, (tuple, list)) and len(self.fgr_scale) == 2
                                        and 0 < self.fgr_scale[0] <= self.fgr_scale[1]),
             f"fgr_scale must be None or (low, high) with 0 < low <= high, got {self.fgr_scale}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"config: {message}")

    def plan(self, n_foregrounds: int, n_backgrounds: int, device_count: int) -> "RunPlan":
        """The per-device batch and the number of steps of this config on ``device_count`` devices (all
        hosts) with datasets of these sizes; see ``RunPlan``."""
        return plan_run(self, n_foregrounds, n_backgrounds, device_count)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a config means on a given machine and data: derived, never configured.

    Attributes:
      per_device_batch: global_batch / device_count.
      epoch_length: items per zip epoch, max(n_foregrounds, n_backgrounds) (supplement D.1).
      steps_per_epoch: epoch_length / global_batch (fractional: batches straddle epochs).
      num_steps: the config's num_steps if set, else round(epochs * steps_per_epoch), at least 1.
    """

    per_device_batch: int
    epoch_length: int
    steps_per_epoch: float
    num_steps: int

    def describe(self, config: TrainConfig, device_count: int) -> str:
        epochs = self.num_steps / self.steps_per_epoch
        return (f"global batch {config.global_batch} = {device_count} device(s) x {self.per_device_batch}; "
                f"epoch = {self.epoch_length:,} items = {self.steps_per_epoch:,.1f} steps; "
                f"{self.num_steps:,} steps = {epochs:,.2f} epochs")


def plan_run(config: TrainConfig, n_foregrounds: int, n_backgrounds: int, device_count: int) -> RunPlan:
    """Per-device batch and step count from the global batch, the epochs and the dataset sizes.

    A global batch that does not divide over the devices is an error (changing it silently would change
    what the run learns).
    """
    if device_count < 1:
        raise InputError(f"config: no devices to train on (device count {device_count})")
    if config.global_batch % device_count:
        raise InputError(
            f"config: global_batch {config.global_batch} does not divide over {device_count} devices; "
            f"use a multiple of {device_count} (e.g. --set global_batch={device_count * max(1, round(config.global_batch / device_count))})"
        )
    if min(n_foregrounds, n_backgrounds) < 1:
        raise InputError(f"config: empty dataset ({n_foregrounds} foregrounds, {n_backgrounds} backgrounds)")
    epoch_length = max(n_foregrounds, n_backgrounds)
    steps_per_epoch = epoch_length / config.global_batch
    steps = config.num_steps if config.num_steps is not None else max(1, round(config.epochs * steps_per_epoch))
    return RunPlan(config.global_batch // device_count, epoch_length, steps_per_epoch, steps)


def _parse_value(field: dataclasses.Field, text: str):
    kind = str(field.type)
    if text.lower() in ("none", "null") and "None" in kind:
        return None
    if kind.startswith("tuple"):
        cast = float if "float" in kind else int
        return tuple(cast(v) for v in text.split(","))
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
