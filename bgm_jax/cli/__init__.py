"""The ``bgm-jax`` command line.

Thin by design: this module only parses and dispatches. Each subcommand lives in its own module,
named in ``COMMANDS``, which provides ``add_arguments(parser)`` and ``run(args) -> int`` and keeps its
heavy imports (jax, torch, av) inside ``run`` so ``bgm-jax --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bgm_jax import __version__
from bgm_jax.errors import InputError

# name -> (module providing add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("bgm_jax.cli.demo", "run the model on a generated source/background pair (no downloads)"),
    "build-dataset": ("bgm_jax.cli.build_dataset", "prepare a dataset (ArrayRecord, no TensorFlow) from a folder or procedurally"),
    "eval": ("bgm_jax.cli.eval", "score predictions, or run a model over a test set, with the paper's metrics"),
    "images": ("bgm_jax.cli.images", "matte image files against their backgrounds (com, pha, fgr, err, ref PNGs)"),
    "video": ("bgm_jax.cli.video", "matte a video against a background image (MP4, WebM/ProRes with alpha, PNGs)"),
    "bench": ("bgm_jax.cli.bench", "measure model-only FPS (paper settings) or end-to-end video FPS"),
    "convert": ("bgm_jax.cli.convert", "convert official PyTorch weights (.pth) to a bgm-jax model directory (no torch needed)"),
    "export-torch": ("bgm_jax.cli.export_torch", "write a bgm-jax model directory as a PyTorch state_dict for the original code"),
    "export": ("bgm_jax.cli.export", "export a model for one input size to StableHLO or ONNX, for deployment"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bgm-jax",
        description="Real-time high-resolution background matting (BackgroundMattingV2) in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"bgm-jax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except InputError as e:
        print(f"bgm-jax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bgm-jax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
