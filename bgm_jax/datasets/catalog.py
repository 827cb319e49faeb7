"""Building the datasets and opening their splits for random access, by name.

``build_dataset("image_matting/aim", data_dir, manual_dir=...)`` prepares a dataset (ArrayRecord, no
TensorFlow); ``open_split("image_matting/aim", "train", data_dir)`` returns a random-access source
whose image features are the stored encoded bytes, ready for ``pipeline.matting_pipeline``. Opening
reads the prepared directory itself (``tfds.builder_from_directory``), so it works for custom configs
and without importing the builders.
"""

from __future__ import annotations

import os
from pathlib import Path

from bgm_jax.errors import InputError


def build_dataset(
    name: str,
    data_dir: str | os.PathLike,
    *,
    manual_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    config=None,
    **builder_kwargs,
):
    """Prepare dataset ``name`` ("builder" or "builder/config") under ``data_dir``; return the builder.

    Args:
      name: a key of ``builders.BUILDERS``, optionally with "/config".
      data_dir: where tfds writes ``<builder>/<config>/<version>/``.
      manual_dir: the folder holding the source data, for the builders that read one.
      overwrite: rebuild even if the dataset is already prepared.
      config: a config object (e.g. ``SyntheticMattingConfig(...)``) instead of a config name.
      **builder_kwargs: extra builder arguments (``samples_dir``, ``backgrounds_dir``, ``include`` for
        ``matting_testset``).

    tfds writes into a temporary folder and renames it when complete, so an interrupted or failed build
    never leaves a dataset that looks prepared.
    """
    import tensorflow_datasets as tfds

    from bgm_jax.datasets.builders import BUILDERS

    builder_name, _, config_name = name.partition("/")
    if builder_name not in BUILDERS:
        raise InputError(f"dataset {name!r} is unknown; choose one of: {', '.join(sorted(BUILDERS))}")
    cls = BUILDERS[builder_name]
    if config is None and config_name:
        known = [c.name for c in cls.BUILDER_CONFIGS]
        if config_name not in known:
            raise InputError(
                f"dataset {builder_name!r} has no config {config_name!r}; choose one of: {', '.join(known)}"
            )
        config = config_name
    kwargs = dict(data_dir=os.fspath(data_dir), **builder_kwargs)
    if config is not None:
        kwargs["config"] = config
    builder = cls(**kwargs)
    mode = tfds.download.GenerateMode
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else os.fspath(Path(manual_dir).expanduser()),
            try_download_gcs=False,
            download_mode=mode.REUSE_CACHE_IF_EXISTS if overwrite else mode.REUSE_DATASET_IF_EXISTS,
        )
    )
    return builder


def prepared_dir(name: str, data_dir: str | os.PathLike) -> Path:
    """``<data_dir>/<builder>/<config>/<newest version>`` of a prepared dataset."""
    builder_name, _, config_name = name.partition("/")
    root = Path(data_dir).expanduser() / builder_name
    if config_name:
        root = root / config_name
    versions = _prepared_versions(root)
    if not versions and root.is_dir() and not config_name:
        # A builder with configs named without one: fine when exactly one config is prepared.
        configs = [p for p in root.iterdir() if p.is_dir() and _prepared_versions(p)]
        if len(configs) == 1:
            return prepared_dir(f"{builder_name}/{configs[0].name}", data_dir)
    if not versions:
        raise InputError(
            f"dataset {name!r}: no prepared dataset under {root}; build it first "
            f"(bgm-jax build-dataset {name} --data-dir {data_dir} ...)"
        )
    return max(versions, key=lambda p: tuple(int(x) for x in p.name.split(".") if x.isdigit()))


def _prepared_versions(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if (p / "dataset_info.json").is_file()]


def open_split(
    name_or_dir: str | os.PathLike,
    split: str,
    data_dir: str | os.PathLike | None = None,
    *,
    decode_images: bool = False,
):
    """Random-access source for one split of a prepared dataset.

    Args:
      name_or_dir: "builder/config" (with ``data_dir``) or the prepared dataset's directory; or
        "generated:photo_matting/<config>[:<count>]", the split rendered in memory without tfds
        (``bgm_jax.datasets.generated``; ``data_dir`` is not used, images are uint8 arrays).
      split: split name or tfds split expression ("train", "test[:10]").
      decode_images: False (default) returns images as their stored encoded bytes, decoded later by the
        pipeline; True lets tfds decode them to arrays (with PIL).
    """
    if str(name_or_dir).startswith("generated:"):
        from bgm_jax.datasets import generated

        return generated.open_generated(str(name_or_dir), split)

    import tensorflow_datasets as tfds

    path = Path(name_or_dir)
    if data_dir is not None and not (path / "dataset_info.json").is_file():
        path = prepared_dir(os.fspath(name_or_dir), data_dir)
    if not (path / "dataset_info.json").is_file():
        raise InputError(
            f"{path}: not a prepared dataset directory (no dataset_info.json); pass a dataset name and data_dir"
        )
    builder = tfds.builder_from_directory(os.fspath(path))
    if split.split("[")[0] not in builder.info.splits:
        raise InputError(f"{path}: no split {split!r}; it has {', '.join(sorted(builder.info.splits))}")
    decoders = None
    if not decode_images:
        decoders = {
            key: tfds.decode.SkipDecoding()
            for key, feature in builder.info.features.items()
            if isinstance(feature, tfds.features.Image)
        }
    return builder.as_data_source(split=split, decoders=decoders)
