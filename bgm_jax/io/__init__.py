"""File input and output for inference: files -> numpy arrays, and numpy arrays -> files.

Knows nothing about the model. Modules (imported on first use, so ``import bgm_jax.io`` is cheap):

- ``images``: ``read_image``, ``collect_images``, ``pair_backgrounds``
- ``outputs``: ``to_uint8`` (rounding), ``compose_rgba``, ``composite_over``, ``upsample_map``,
  ``write_com`` / ``write_pha`` / ``write_fgr`` / ``write_err`` / ``write_ref``, ``output_path``
- ``video_reader``: ``VideoReader``, ``probe_video``, ``read_rgba_frames`` (decoding, rotation, timing)
- ``video_writer``: ``VideoWriter`` (.mp4 / .webm / .mov), ``PngSequenceWriter``, ``available_encoders``
- ``render``: model outputs -> the pixels that get written (uint8 on the device, or on the host)
- ``pipeline``: ``Pipeline`` (decode thread -> main thread -> encode thread), ``batched``
- ``atomic``: write-then-rename and the no-overwrite check

See docs/io.md.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "read_image": "images",
    "collect_images": "images",
    "pair_backgrounds": "images",
    "ImageFile": "images",
    "Pairing": "images",
    "IMAGE_EXTENSIONS": "images",
    "to_uint8": "outputs",
    "to_uint16": "outputs",
    "compose_rgba": "outputs",
    "composite_over": "outputs",
    "upsample_map": "outputs",
    "output_path": "outputs",
    "write_image": "outputs",
    "write_com": "outputs",
    "write_pha": "outputs",
    "write_fgr": "outputs",
    "write_err": "outputs",
    "write_ref": "outputs",
    "OUTPUT_TYPES": "outputs",
    "DEFAULT_TARGET_RGB": "outputs",
    "VideoReader": "video_reader",
    "VideoInfo": "video_reader",
    "DecodedFrame": "video_reader",
    "VideoWriter": "video_writer",
    "PngSequenceWriter": "video_writer",
    "VIDEO_FORMATS": "video_writer",
    "probe_video": "video_reader",
    "read_rgba_frames": "video_reader",
    "available_encoders": "video_writer",
    "Pipeline": "pipeline",
    "batched": "pipeline",
    "atomic_output": "atomic",
    "check_can_write": "atomic",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"bgm_jax.io.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'bgm_jax.io' has no attribute {name!r}")
