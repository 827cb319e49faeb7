"""Export a model directory to StableHLO (jax.export) or ONNX for one input size, for deployment.

The exported model takes src and bgr (float32 in [0, 1] by default, or uint8) at the size given, NCHW
for ONNX (as the original's ONNX files) and NHWC for StableHLO unless --layout says otherwise, and
returns alpha and foreground (and optionally err, ref). Settings follow the paper for the size
unless given. Examples:

  bgm-jax export checkpoints/resnet50 resnet50_hd.onnx --format onnx --size hd
  bgm-jax export checkpoints/resnet50 resnet50_hd --format stablehlo --size 1920x1080

See docs/deploy.md for running the results (onnxruntime; bgm_jax.deploy.load_stablehlo).
"""

from __future__ import annotations

import argparse

from bgm_jax.cli.common import PRECISIONS, REFINE_MODES, positive_int

FORMATS = ("stablehlo", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="bgm-jax model directory (`bgm-jax convert` writes one)")
    parser.add_argument("output", metavar="OUT", help="file to write (ONNX) or directory (StableHLO)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="export format")
    parser.add_argument("--size", required=True, metavar="WIDTHxHEIGHT",
                        help="input size the export takes, e.g. 1920x1080, hd or 4k (fixed per export)")
    parser.add_argument("--batch", type=positive_int, metavar="N",
                        help="fix the batch size (default: any batch size)")
    parser.add_argument("--layout", choices=("nchw", "nhwc"),
                        help="input/output layout (default: nchw for onnx, nhwc for stablehlo)")
    parser.add_argument("--input-dtype", choices=("float32", "uint8"), default="float32",
                        help="src/bgr dtype: float32 in [0, 1] (default) or uint8 in [0, 255]")
    parser.add_argument("--outputs", default="pha,fgr", metavar="LIST",
                        help="comma-separated outputs from pha, fgr, err, ref (default: pha,fgr)")
    parser.add_argument("--platforms", metavar="LIST",
                        help="stablehlo only: platforms to lower for (default: cpu,cuda)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    group = parser.add_argument_group("model settings (default: the paper's for the size)")
    group.add_argument("--backbone-scale", type=float, metavar="S",
                       help="scale of the coarse pass, in (0, 0.5] (default: 0.25 up to QHD, 0.125 above)")
    group.add_argument("--refine-mode", choices=REFINE_MODES, help="default: sampling")
    group.add_argument("--refine-sample-pixels", type=int, metavar="N",
                       help="pixels refined in sampling mode (default: 80,000 up to QHD, 320,000 above)")
    group.add_argument("--refine-threshold", type=float, metavar="T", help="thresholding mode (default: 0.1)")
    group.add_argument("--precision", choices=PRECISIONS,
                       help="compute precision (default: float32; onnx: float32 or float16)")


def run(args: argparse.Namespace) -> int:
    from bgm_jax.cli.common import parse_size
    from bgm_jax.deploy import export

    size = parse_size(args.size, "--size")
    platforms = None
    if args.platforms is not None:
        platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
    report = export(
        args.model_dir, args.output,
        format=args.format, size=size, batch=args.batch, layout=args.layout, input_dtype=args.input_dtype,
        outputs=args.outputs, overwrite=args.overwrite, platforms=platforms,
        backbone_scale=args.backbone_scale, refine_mode=args.refine_mode,
        refine_sample_pixels=args.refine_sample_pixels, refine_threshold=args.refine_threshold,
        precision=args.precision,
    )
    print("\n".join(report.lines()))
    return 0
