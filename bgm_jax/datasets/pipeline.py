"""The training input pipeline (grain): zip epochs, decode onto a fixed canvas, batch for pmap, shard
across hosts, prefetch, and resume exactly from a saved iterator state.

Order of operations, and why:

1. ``zip_epochs``: index pairs only. Item i of an epoch pairs foreground sample ``i % n_fg`` with
   background ``i % n_bg`` (the paper's zip, supplement D.1); an epoch has ``max(n_fg, n_bg)`` items,
   visited in a fresh permutation each epoch (grain's index shuffle, seeded by ``seed + epoch``).
   Epochs follow each other without a gap, so a batch may straddle two epochs.
2. Host sharding on the global item stream: host p of P takes items p, p + P, p + 2P, ... So global
   batch b (``global_batch`` consecutive items) is exactly the union of batch b of every host, and a
   run on 2 hosts sees the same data per step as a run on 1 host with twice the local batch.
3. Decode (PIL) and resize onto a fixed ``canvas`` in grain's reader threads: one shape for every
   batch, so on-device augmentation compiles once. Foregrounds default to ``contain`` (all content,
   zero padding, valid region at the top left) and backgrounds to ``cover`` (canvas filled);
   ``*_valid_hw`` tells padding from data.
4. Batch into ``(local_devices, per_device_batch, H, W, C)`` for ``pmap``, then prefetch whole batches
   in a background thread.

Everything is a deterministic function of (sources, config, host) and the position in the stream:
``iterator.get_state()`` is a small JSON-able dict, and ``iterator.set_state(state)`` on a fresh
pipeline continues with exactly the batch that would have come next.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from bgm_jax.datasets import images
from bgm_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline produces and how hard it works.

    Attributes:
      canvas: (H, W) of every image in every batch.
      per_device_batch: samples per device per step.
      seed: shuffling seed (epoch e uses ``seed + e``); < 2**32.
      num_epochs: stop after this many zip epochs (the last partial global batch is dropped);
        None repeats forever.
      fgr_fit, bgr_fit: "contain" (pad), "native" (pad, never enlarge) or "cover" (centre crop), see
        ``images.decode_to_canvas``. Training uses "native" on a canvas of at least the augmentation's
        sample size times the aspect ratio, so the warp reads every image at (at least) the resolution
        it produces: no detail is lost to a shrink-then-enlarge.
      num_threads: grain reader threads decoding samples (PIL releases the GIL while decoding and
        resizing, so threads scale with cores).
      prefetch_batches: decoded batches kept ready ahead of the training loop.
      fgr_key, pha_key, bgr_key: feature names in the sources' records.
    """

    canvas: tuple[int, int] = (512, 512)
    per_device_batch: int = 2
    seed: int = 0
    num_epochs: int | None = None
    fgr_fit: str = "contain"
    bgr_fit: str = "cover"
    num_threads: int = 2
    prefetch_batches: int = 2
    fgr_key: str = "fgr"
    pha_key: str = "pha"
    bgr_key: str = "bgr"


def zip_epochs(n_fg: int, n_bg: int, seed: int, num_epochs: int | None = None) -> grain.MapDataset:
    """The zip-epoch index stream: elements ``{"fg_index", "bg_index", "epoch"}``.

    Epoch e holds items i = 0 .. max(n_fg, n_bg) - 1, each pairing sample ``i % n_fg`` with
    background ``i % n_bg``, in a permutation seeded by ``seed + e``.
    """
    if n_fg < 1 or n_bg < 1:
        raise InputError(f"zip epochs need at least one foreground and one background (got {n_fg} and {n_bg})")
    if not 0 <= seed < 2**32:
        raise InputError(f"seed must be in [0, 2**32), got {seed}")
    epoch_length = max(n_fg, n_bg)
    items = grain.MapDataset.range(epoch_length)
    if epoch_length > 1:  # grain's index shuffle needs at least two elements
        items = items.shuffle(seed=seed)
    items = items.repeat(num_epochs)
    return items.map_with_index(_ZipPair(n_fg, n_bg, epoch_length))


def steps_per_epoch(n_fg: int, n_bg: int, global_batch: int) -> int:
    """Whole global batches per zip epoch (batches run across epoch boundaries, so this is a floor)."""
    return max(n_fg, n_bg) // global_batch


def shard_for_host(
    items: grain.MapDataset, global_batch: int, process_index: int, process_count: int
) -> grain.MapDataset:
    """Items of host ``process_index``: every ``process_count``-th item of the global stream.

    A finite stream is first cut to whole global batches, so every host yields the same number of
    batches (a host running out early would hang the others in the next collective).
    """
    if not 0 <= process_index < process_count:
        raise InputError(f"process_index {process_index} is not in [0, {process_count})")
    if len(items) != sys.maxsize:
        items = items[: len(items) // global_batch * global_batch]
    return items[process_index::process_count]


def matting_pipeline(
    fg_source: Sequence[Any],
    bg_source: Sequence[Any],
    config: PipelineConfig = PipelineConfig(),
    *,
    local_device_count: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """The training input pipeline as a grain ``IterDataset``; ``iter()`` it for batches.

    Args:
      fg_source: random-access records with ``config.fgr_key`` / ``config.pha_key`` (encoded image
        bytes or uint8 arrays), e.g. ``catalog.open_split("videomatte240k", "train", data_dir)``.
      bg_source: random-access records with ``config.bgr_key``.
      config: see ``PipelineConfig``.
      local_device_count, process_index, process_count: default to ``jax.local_device_count()``,
        ``jax.process_index()``, ``jax.process_count()``; pass them to test sharding without devices.

    Returns:
      Batches (numpy, leading axes ``(local_devices, per_device_batch)``):
      ``fgr`` uint8 (..., H, W, 3), ``pha`` uint8 (..., H, W, 1), ``bgr`` uint8 (..., H, W, 3),
      ``fgr_valid_hw`` / ``bgr_valid_hw`` int32 (..., 2) rows/columns holding image data (from the
      top left), ``fg_index`` / ``bg_index`` / ``epoch`` int32 (...,).
    """
    if local_device_count is None or process_index is None or process_count is None:
        import jax

        local_device_count = jax.local_device_count() if local_device_count is None else local_device_count
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    _check_config(config)
    host_batch = local_device_count * config.per_device_batch
    global_batch = host_batch * process_count

    items = zip_epochs(len(fg_source), len(bg_source), config.seed, config.num_epochs)
    items = shard_for_host(items, global_batch, process_index, process_count)
    samples = items.map(_LoadSample(fg_source, bg_source, config))
    read_options = grain.ReadOptions(
        num_threads=config.num_threads, prefetch_buffer_size=host_batch * config.prefetch_batches
    )
    stream = samples.to_iter_dataset(read_options)
    batches = stream.batch(host_batch, drop_remainder=True, batch_fn=_StackForDevices(local_device_count))
    return grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=config.prefetch_batches)


def valid_mask(valid_hw: np.ndarray, canvas: Sequence[int]) -> np.ndarray:
    """Boolean (..., H, W) mask of the image data given ``*_valid_hw`` of shape (..., 2)."""
    valid_hw = np.asarray(valid_hw)
    rows = np.arange(canvas[0]) < valid_hw[..., 0, None]
    cols = np.arange(canvas[1]) < valid_hw[..., 1, None]
    return rows[..., :, None] & cols[..., None, :]


# Callables are small frozen dataclasses rather than closures: they print readably in grain's stats and
# pickle, should the pipeline ever be moved into worker processes.


@dataclasses.dataclass(frozen=True)
class _ZipPair:
    n_fg: int
    n_bg: int
    epoch_length: int

    def __call__(self, position: int, item: int) -> dict[str, int]:
        epoch = position // self.epoch_length
        return {"fg_index": item % self.n_fg, "bg_index": item % self.n_bg, "epoch": epoch}


@dataclasses.dataclass(frozen=True)
class _LoadSample:
    fg_source: Any
    bg_source: Any
    config: PipelineConfig

    def __call__(self, pair: dict[str, int]) -> dict[str, np.ndarray]:
        c = self.config
        fg_record = self.fg_source[pair["fg_index"]]
        bg_record = self.bg_source[pair["bg_index"]]
        fgr_data = fg_record[c.fgr_key]
        fgr, fgr_hw = images.decode_to_canvas(fgr_data, "RGB", c.canvas, c.fgr_fit)
        size = images.image_size(fgr_data) if isinstance(fgr_data, bytes) else tuple(fgr_data.shape[:2])
        pha, _ = images.decode_to_canvas(fg_record[c.pha_key], "L", c.canvas, c.fgr_fit, size=size)
        bgr, bgr_hw = images.decode_to_canvas(bg_record[c.bgr_key], "RGB", c.canvas, c.bgr_fit)
        return {
            "fgr": fgr,
            "pha": pha,
            "bgr": bgr,
            "fgr_valid_hw": np.asarray(fgr_hw, np.int32),
            "bgr_valid_hw": np.asarray(bgr_hw, np.int32),
            "fg_index": np.int32(pair["fg_index"]),
            "bg_index": np.int32(pair["bg_index"]),
            "epoch": np.int32(pair["epoch"]),
        }


@dataclasses.dataclass(frozen=True)
class _StackForDevices:
    local_device_count: int

    def __call__(self, samples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        d = self.local_device_count
        return {
            key: np.stack([s[key] for s in samples]).reshape(d, len(samples) // d, *np.shape(samples[0][key]))
            for key in samples[0]
        }


def _check_config(config: PipelineConfig) -> None:
    if len(config.canvas) != 2 or min(config.canvas) < 1:
        raise InputError(f"canvas must be (height, width) with positive sizes, got {config.canvas}")
    for name in ("fgr_fit", "bgr_fit"):
        if getattr(config, name) not in images.FITS:
            raise InputError(f"{name} {getattr(config, name)!r} is not one of {images.FITS}")
    if config.per_device_batch < 1:
        raise InputError(f"per_device_batch must be at least 1, got {config.per_device_batch}")
