"""Export a bgm-jax model directory as a PyTorch state_dict the original BackgroundMattingV2 code loads.

The file holds the original's keys in its order (float32, num_batches_tracked included), so
`MattingRefine(backbone).load_state_dict(torch.load(OUTPUT.pth), strict=True)` accepts it (MattingBase
for a base model). Needs torch. Example: `bgm-jax export-torch checkpoints/my_run model.pth`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint_dir", metavar="CHECKPOINT_DIR", help="bgm-jax model directory")
    parser.add_argument("output", metavar="OUTPUT.pth", help="PyTorch state_dict file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT.pth if it exists")


def run(args: argparse.Namespace) -> int:
    from bgm_jax.convert.convert import export_torch

    report = export_torch(args.checkpoint_dir, args.output, overwrite=args.overwrite)
    print("\n".join(report.lines()))
    return 0
