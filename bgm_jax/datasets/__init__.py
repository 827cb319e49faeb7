"""Datasets for training and evaluation: tfds builders (ArrayRecord, no TensorFlow), a procedural
matting generator, and the grain input pipeline.

- ``synthetic.make_sample`` / ``make_clip``: (fgr, pha, bgr) numpy arrays from a seed, no files.
- ``catalog.build_dataset`` / ``open_split``: prepare a dataset, open a split for random access.
- ``photos``: the scikit-image photographs ``photo_matting`` paints with (splits, licences).
- ``generated.open_generated``: a ``photo_matting`` split rendered in memory, no tfds
  (``open_split("generated:photo_matting/image", ...)``).
- ``pipeline.matting_pipeline``: zip-epoch batches for pmap, sharded by host, resumable.
- ``builders``: the tfds builders (importing it registers them with tfds).

Importing this package is cheap; tfds and grain load with the modules that need them. See
docs/datasets.md for layouts, formats and measured throughput.
"""

from __future__ import annotations

_LAZY = {
    "make_sample": "bgm_jax.datasets.synthetic",
    "make_clip": "bgm_jax.datasets.synthetic",
    "composite": "bgm_jax.datasets.synthetic",
    "build_dataset": "bgm_jax.datasets.catalog",
    "open_split": "bgm_jax.datasets.catalog",
    "PipelineConfig": "bgm_jax.datasets.pipeline",
    "matting_pipeline": "bgm_jax.datasets.pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bgm_jax.datasets' has no attribute {name!r}")
