"""Run background matting end to end on a generated source/background pair (no downloads).

A synthetic subject (soft edges, hair-like strands, a veil, a hole) is composited over a generated
background; the model mattes it against the clean background and the outputs are written as PNGs.
With --checkpoint, the weights are yours (e.g. converted official weights); without, the model has
random weights: the pipeline runs for real, but the matte is meaningless. Since the sample comes with
ground truth, the alpha error against it is printed either way.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="model directory written by `bgm-jax convert` (default: random weights)")
    parser.add_argument("--backbone", default="mobilenetv2", choices=["resnet50", "resnet101", "mobilenetv2"],
                        help="backbone of the random-weight model (ignored with --checkpoint)")
    parser.add_argument("--size", default="512x512", help="WIDTHxHEIGHT of the generated pair (default 512x512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated sample")
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--out", default="bgm-demo", help="output folder (default ./bgm-demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    import bgm_jax
    from bgm_jax.cli.common import parse_size, random_weight_matting
    from bgm_jax.datasets.synthetic import composite, make_sample
    from bgm_jax.errors import InputError
    from bgm_jax.io.outputs import upsample_map, write_com, write_err, write_image, write_pha, write_ref

    width, height = parse_size(args.size, "--size")
    if width < 16 or height < 16:
        raise InputError(f"--size {args.size!r}: the generated pair needs width and height of at least 16")
    sample = make_sample(args.seed, height=height, width=width)
    src = composite(sample["fgr"], sample["pha"], sample["bgr"])
    bgr = sample["bgr"]

    if args.checkpoint:
        matting = bgm_jax.load(args.checkpoint, precision=args.precision)
        what = f"checkpoint {args.checkpoint} ({matting.config['backbone']})"
    else:
        matting = random_weight_matting(args.backbone, {"precision": args.precision})
        what = f"{args.backbone} with RANDOM weights (pass --checkpoint for a real matte)"

    start = time.perf_counter()
    result = matting(src, bgr)
    pha = np.asarray(result.pha[0])
    first = time.perf_counter() - start
    start = time.perf_counter()
    np.asarray(matting(src, bgr).pha)
    second = time.perf_counter() - start

    out = Path(args.out)
    fields = matting.model_fields(height + (-height) % 4, width + (-width) % 4)
    write_image(out / "src.png", src, overwrite=args.overwrite)
    write_image(out / "bgr.png", bgr, overwrite=args.overwrite)
    write_com(out / "com.png", np.asarray(result.fgr[0]), pha, overwrite=args.overwrite)
    write_pha(out / "pha.png", pha, overwrite=args.overwrite)
    write_err(out / "err.png", upsample_map(np.asarray(result.err[0]), (height, width), "bilinear"),
              overwrite=args.overwrite)
    if result.ref is not None:
        write_ref(out / "ref.png", upsample_map(np.asarray(result.ref[0]), (height, width), "nearest"),
                  overwrite=args.overwrite)

    gt = sample["pha"].astype(np.float32) / 255.0
    sad = float(np.abs(pha[..., 0] - gt).sum()) / 1000.0
    print(f"model:      {what}")
    print(f"input:      {width}x{height} synthetic pair (seed {args.seed}), precision {args.precision}")
    if matting.is_refine:
        print(f"settings:   backbone scale {fields['backbone_scale']}, {fields['refine_mode']} "
              f"{fields['refine_sample_pixels']} pixels")
    print(f"first call: {first:.2f} s (includes compilation)")
    print(f"next call:  {second * 1000:.1f} ms")
    print(f"alpha SAD against ground truth (whole image, /1000): {sad:.2f}")
    print(f"outputs:    {out}/{{src,bgr,com,pha,err,ref}}.png")
    return 0
