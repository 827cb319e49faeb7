"""Convert official BackgroundMattingV2 PyTorch weights into a bgm-jax model directory.

Reads pytorch_resnet50.pth, pytorch_resnet101.pth or pytorch_mobilenetv2.pth (or any MattingBase /
MattingRefine state_dict, .pth or .safetensors) without PyTorch and without running code from the
file, detects the backbone, model type and refiner kernel size, checks every tensor against the
model, and writes OUTPUT_DIR for `bgm_jax.load(OUTPUT_DIR)` and the --model option of the other
commands. Example: `bgm-jax convert pytorch_resnet50.pth checkpoints/resnet50`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="the PyTorch checkpoint (.pth, .safetensors or TorchScript)")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="model directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT_DIR if it exists")


def run(args: argparse.Namespace) -> int:
    from bgm_jax.convert.convert import convert_checkpoint

    report = convert_checkpoint(args.input, args.output_dir, overwrite=args.overwrite)
    print("\n".join(report.lines()))
    return 0
