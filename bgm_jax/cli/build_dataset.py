"""Prepare a dataset as ArrayRecord files (no TensorFlow needed), from a folder or procedurally.

Examples:
  bgm-jax build-dataset synthetic_matting/small --data-dir data
  bgm-jax build-dataset synthetic_matting/small --height 64 --width 96 --num-train 10 --data-dir data
  bgm-jax build-dataset photo_matting/image --data-dir data   # needs scikit-image (the train extra)
  bgm-jax build-dataset videomatte240k --manual-dir VideoMatte240K_JPEG_HD --data-dir data
  bgm-jax build-dataset image_matting/aim --manual-dir Combined_Dataset --data-dir data
  bgm-jax build-dataset backgrounds --manual-dir Backgrounds --data-dir data
  bgm-jax build-dataset matting_testset/photomatte85 --samples-dir PhotoMatte85 \\
      --backgrounds-dir Backgrounds/valid --data-dir data

Datasets: videomatte240k; image_matting/{photomatte85,distinctions646,aim,folder}; backgrounds;
matting_testset/{aim,distinctions646,photomatte85}; synthetic_matting/{small,image,video_small,video};
photo_matting/{small,image}.
The expected folder layouts are in docs/datasets.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path

from bgm_jax.cli.common import add_progress_argument
from bgm_jax.errors import InputError

_SYNTHETIC_FIELDS = ("height", "width", "num_train", "num_test", "frames_per_clip", "seed")
# photo_matting takes the same overrides but frames; its backgrounds follow the subjects' shorter side.
_OVERRIDABLE = {"synthetic_matting": _SYNTHETIC_FIELDS, "photo_matting": _SYNTHETIC_FIELDS[:4] + ("seed",)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("name", help="dataset, as builder or builder/config (e.g. image_matting/aim)")
    parser.add_argument("--data-dir", required=True, type=Path, help="where prepared datasets are written")
    parser.add_argument("--manual-dir", type=Path, help="folder holding the source data")
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if already prepared")
    test = parser.add_argument_group("matting_testset")
    test.add_argument("--samples-dir", type=Path, help="the matting dataset folder (default <manual-dir>/samples)")
    test.add_argument("--backgrounds-dir", type=Path, help="background images (default <manual-dir>/backgrounds)")
    test.add_argument("--include", type=Path, help="text file of sample names to keep, one per line")
    syn = parser.add_argument_group(
        "synthetic_matting, photo_matting (overrides make a new config, named after them; photo_matting: "
        "no --frames-per-clip, backgrounds get the subjects' shorter side)"
    )
    syn.add_argument("--height", type=int)
    syn.add_argument("--width", type=int)
    syn.add_argument("--num-train", type=int, help="training samples (clips for video configs)")
    syn.add_argument("--num-test", type=int, help="test samples (clips for video configs)")
    syn.add_argument("--frames-per-clip", type=int)
    syn.add_argument("--seed", type=int)
    add_progress_argument(parser)


class _DropRoutineTfdsLogs(logging.Filter):
    """tfds logs a custom (command-line) config as a WARNING; it is what the user asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using custom data configuration")


def run(args: argparse.Namespace) -> int:
    import sys

    import tensorflow_datasets as tfds

    from bgm_jax.datasets import catalog

    # tfds draws its progress bars even into a log file; only on a terminal, as the other commands
    tfds.display_progress_bar(sys.stderr.isatty() and not args.no_progress)
    quiet = _DropRoutineTfdsLogs()
    logging.getLogger("absl").addFilter(quiet)
    try:
        return _build(args, catalog)
    finally:
        logging.getLogger("absl").removeFilter(quiet)


def _build(args: argparse.Namespace, catalog) -> int:
    builder_name, _, config_name = args.name.partition("/")
    kwargs = {}
    if builder_name == "matting_testset":
        kwargs = {"samples_dir": args.samples_dir, "backgrounds_dir": args.backgrounds_dir}
        if args.include is not None:
            kwargs["include"] = _read_names(args.include)
    config = _synthetic_config(args, builder_name, config_name)
    name = args.name if config is None else f"{builder_name}/{config.name}"
    def expand(path):  # a quoted ~ reaches us unexpanded: mean the home folder, never a folder named "~"
        return None if path is None else os.path.expanduser(path)

    builder = catalog.build_dataset(
        name if config is None else builder_name, expand(args.data_dir), manual_dir=expand(args.manual_dir),
        overwrite=args.overwrite, config=config, **kwargs,
    )
    splits = ", ".join(f"{split}: {info.num_examples}" for split, info in sorted(builder.info.splits.items()))
    print(f"prepared {name} at {builder.data_dir} ({splits})")
    return 0


def _synthetic_config(args: argparse.Namespace, builder_name: str, config_name: str):
    """The named procedural config, or a copy with the command-line overrides and a name saying them."""
    from bgm_jax.datasets.builders import BUILDERS

    given = [f for f in _SYNTHETIC_FIELDS if getattr(args, f) is not None]
    if builder_name not in BUILDERS:
        return None  # build_dataset names the known datasets
    fields = _OVERRIDABLE.get(builder_name, ())
    refused = [f for f in given if f not in fields]
    if refused:
        options = ", ".join(f"--{f.replace('_', '-')}" for f in refused)
        raise InputError(f"{options} cannot change {builder_name}; these options change synthetic_matting "
                         "and (except --frames-per-clip) photo_matting")
    if not given:
        return None
    cls = BUILDERS[builder_name]
    configs = {c.name: c for c in cls.BUILDER_CONFIGS}
    base_name = config_name or cls.DEFAULT_BUILDER_CONFIG_NAME
    if base_name not in configs:
        raise InputError(f"{builder_name} has no config {base_name!r}; choose one of: {', '.join(configs)}")
    overrides = {f: getattr(args, f) for f in given}
    for field, value in overrides.items():
        if value < (0 if field == "seed" else 1):
            raise InputError(f"--{field.replace('_', '-')} must be positive, got {value}")
    base = configs[base_name]
    values = {f: overrides.get(f, getattr(base, f)) for f in fields}
    frames = f"_f{values['frames_per_clip']}" if getattr(base, "video", False) else ""
    name = (f"{base_name}_{values['height']}x{values['width']}_n{values['num_train']}-{values['num_test']}"
            f"{frames}_s{values['seed']}")
    if builder_name == "photo_matting":
        values["background_short_side"] = min(values["height"], values["width"])
    return dataclasses.replace(base, name=name, description=f"{base_name} with {overrides}", **values)


def _read_names(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read the --include file ({e.strerror})") from None
    names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not names:
        raise InputError(f"{path}: the --include file lists no sample names")
    return names
