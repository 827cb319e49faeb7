"""Shared pieces of the tfds builders: ArrayRecord by default, image features stored as encoded bytes,
manual-directory errors as ``InputError``.

Why these choices (details in docs/datasets.md): tfds writes and reads ArrayRecord without TensorFlow
as long as no feature has to be *encoded* by TensorFlow. ``tfds.features.Image`` encodes numpy arrays
with ``tf.image.encode_*``, but passes bytes and file paths through untouched, and decodes with PIL
when read through ``tfds.data_source``. So every image is handed to tfds as bytes (the source file's
own bytes where possible, see ``images.bytes_for_storage``).
"""

from __future__ import annotations

import inspect

import tensorflow_datasets as tfds
from etils import epath

from bgm_jax.datasets import images
from bgm_jax.datasets.layouts import MattingPair
from bgm_jax.errors import InputError


def rgb_feature(encoding: str | None = None) -> tfds.features.Image:
    """Colour image stored as encoded bytes (JPEG or PNG as found; ``encoding`` only documents it)."""
    return tfds.features.Image(shape=(None, None, 3), encoding_format=encoding)


def alpha_feature(encoding: str | None = None) -> tfds.features.Image:
    """8-bit alpha matte stored as encoded greyscale bytes."""
    return tfds.features.Image(shape=(None, None, 1), encoding_format=encoding)


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A GeneratorBasedBuilder that writes ArrayRecord (random access, no TensorFlow) by default."""

    def __init__(self, *, file_format=None, **kwargs):
        super().__init__(file_format=file_format or "array_record", **kwargs)

    # tfds 4.9.10 locates a builder's source through ``epath.resource_path`` and then checks the result
    # against ``importlib_resources.abc.Traversable``, which needs the ``importlib_resources`` backport
    # that tfds does not install (ModuleNotFoundError for builders living in a package). The source
    # file is all it needs (to look for an optional checksums.tsv next to it), so give it directly.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))

    # Every builder here reads local files or generates its data: tfds's "Downloading and preparing
    # dataset Unknown size (download: Unknown size, ...)" and "downloaded" lines say nothing true for them.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass

    def _manual_root(self, dl_manager, layout: str):
        """The manual directory, or an InputError that shows the path read and the expected layout."""
        try:
            return dl_manager.manual_dir
        except (AssertionError, ValueError):
            path = getattr(dl_manager, "_manual_dir", None)
            raise InputError(
                f"{self.name}: manual directory {path} does not exist or is empty. Expected layout: {layout}. "
                "Pass the folder holding the data as the manual directory (--manual-dir)."
            ) from None


def matting_pair_example(pair: MattingPair) -> dict:
    """fgr/pha bytes for one foreground sample, checking that colour and alpha have the same size."""
    if pair.alpha_in_fgr:
        fgr, pha = images.rgba_for_storage(pair.fgr)
    else:
        fgr = images.bytes_for_storage(pair.fgr, "rgb")
        pha = images.bytes_for_storage(pair.pha, "alpha")
        check_same_size(fgr, pha, pair.fgr, pair.pha)
    return {"fgr": fgr, "pha": pha}


def check_same_size(fgr: bytes, pha: bytes, fgr_path, pha_path) -> None:
    fgr_size, pha_size = images.image_size(fgr, fgr_path), images.image_size(pha, pha_path)
    if fgr_size != pha_size:
        raise InputError(
            f"{pha_path}: alpha is {pha_size[0]}x{pha_size[1]} but its foreground {fgr_path} is "
            f"{fgr_size[0]}x{fgr_size[1]}; foreground and alpha must have the same size"
        )
