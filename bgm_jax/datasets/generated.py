"""Dataset splits rendered in memory: the records of ``photo_matting`` without tfds or built files.

A training machine that cannot hold the built dataset (the GPU machine: no tfds, no array-record, and
64 MiB of files travel to it) can still train on it: ``open_split("generated:photo_matting/image",
"train")`` (``bgm_jax.datasets.catalog``) renders the split's records from scikit-image's bundled
photographs on every core, into memory, and serves them as the built dataset's source does. A record is
a function of its seed alone, so record ``i`` is the built dataset's record ``i``: the same seed, the
same alpha, the same pixels before storage (the ``image`` config stores fgr and bgr as JPEG q95; here they
stay lossless).

Spec: ``generated:photo_matting/<config>[:<count>]``; ``<count>`` asks for more (or fewer) records of
the split than the built dataset has: the first ones are the built dataset's, the rest continue its
seed sequence (so more training subjects never overlap the test split, whose seeds and photos differ).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from bgm_jax.datasets import photo_subjects, photos
from bgm_jax.datasets.synthetic import record_seed
from bgm_jax.errors import InputError

PREFIX = "generated:"


@dataclasses.dataclass(frozen=True)
class PhotoMattingSize:
    """A ``photo_matting`` builder config's sizes and counts (the builder's ``BUILDER_CONFIGS``)."""

    height: int
    width: int
    background_short_side: int
    num_train: int
    num_test: int
    seed: int = 0


PHOTO_MATTING = {
    "small": PhotoMattingSize(128, 128, 128, num_train=64, num_test=16),
    "image": PhotoMattingSize(512, 512, 512, num_train=2400, num_test=80),
}


def photo_record(
    size: PhotoMattingSize, split: str, index: int, split_photos: dict[str, np.ndarray], backgrounds: Sequence[str]
) -> tuple[int, photo_subjects.PhotoSample]:
    """(seed, sample) of record ``index`` of a photo_matting split: the one definition the builder and
    the generated splits share. ``split_photos``: the split's photos (name -> pixels)."""
    seed = record_seed(size.seed, photos.SPLIT_IDS[split], index)
    sample = photo_subjects.make_photo_sample(
        seed, split_photos, height=size.height, width=size.width,
        background_short_side=size.background_short_side, backgrounds=backgrounds,
    )
    return seed, sample


@dataclasses.dataclass(frozen=True)
class Spec:
    config: str
    size: PhotoMattingSize
    count: int | None  # None: the built dataset's count for each split


def parse_spec(spec: str) -> Spec:
    """``generated:photo_matting/<config>[:<count>]`` -> :class:`Spec`; a clear error otherwise."""
    usage = f"use {PREFIX}photo_matting/<config>[:<count>] with config {' or '.join(PHOTO_MATTING)}"
    if not spec.startswith(PREFIX):
        raise InputError(f"dataset {spec!r} is not a generated split; {usage}")
    name, _, count_text = spec[len(PREFIX):].partition(":")
    builder, _, config = name.partition("/")
    if builder != "photo_matting" or config not in PHOTO_MATTING:
        raise InputError(f"dataset {spec!r}: only photo_matting can be generated in memory; {usage}")
    count = None
    if count_text:
        try:
            count = int(count_text)
        except ValueError:
            count = 0
        if count <= 0:
            raise InputError(f"dataset {spec!r}: the record count {count_text!r} is not a positive integer; {usage}")
    return Spec(config, PHOTO_MATTING[config], count)


class GeneratedSplit(Sequence):
    """The records of one split, in memory: ``fgr`` (HxWx3), ``pha`` (HxW), ``bgr`` (uint8), ``seed``,
    ``photos``; random access like the built dataset's source (``pipeline.matting_pipeline`` reads it)."""

    def __init__(self, name: str, split: str, records: list[dict]):
        self.name, self.split, self._records = name, split, records

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        return self._records[index]

    def __repr__(self) -> str:
        return f"GeneratedSplit({self.name!r}, {self.split!r}, {len(self)} records)"


def open_generated(spec: str, split: str, *, workers: int | None = None) -> GeneratedSplit:
    """Render split ``split`` of ``spec`` (see the module docstring) into memory, on ``workers``
    processes (default: every core). The same (spec, split) is rendered once per process."""
    parsed = parse_spec(spec)
    if split not in photos.SPLITS:
        raise InputError(f"dataset {spec!r}: no split {split!r}; it has {', '.join(photos.SPLITS)}")
    return _open(spec, parsed, split, workers or os.cpu_count() or 1)


@functools.lru_cache(maxsize=4)
def _open(spec: str, parsed: Spec, split: str, workers: int) -> GeneratedSplit:
    size = parsed.size
    count = parsed.count or (size.num_train if split == "train" else size.num_test)
    start = time.perf_counter()
    workers = max(1, min(workers, count))
    if workers == 1:
        _start_worker(size, split)
        records = [_render(i) for i in range(count)]
    else:
        # spawn, not fork: the caller has usually started JAX's threads, which a fork would copy mid-flight.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(size, split)
        ) as pool:
            records = list(pool.map(_render, range(count), chunksize=max(1, min(16, count // (4 * workers)))))
    print(f"{spec} {split}: {count} records rendered in memory in {time.perf_counter() - start:.0f} s "
          f"on {workers} process(es)", file=sys.stderr, flush=True)
    return GeneratedSplit(spec, split, records)


# Per-process state of the rendering workers: the split's photos, read once.
_WORKER: dict = {}


def _start_worker(size: PhotoMattingSize, split: str) -> None:
    chosen = photos.split_photos(split)
    data_dir = photos.skimage_data_dir()
    _WORKER.update(
        size=size, split=split,
        photos={p.name: photos.load_photo(p, data_dir) for p in chosen},
        backgrounds=[p.name for p in chosen if p.background],
    )


def _render(index: int) -> dict:
    w = _WORKER
    seed, sample = photo_record(w["size"], w["split"], index, w["photos"], w["backgrounds"])
    return {"fgr": sample.fgr, "pha": sample.pha, "bgr": sample.bgr, "seed": seed, "photos": sample.photos_used()}
