"""Run background matting end to end on a source/background pair that ships with bgm-jax (no downloads).

By default the pair is a held-out record of the embedded model's test data (a synthetic subject with soft
edges, hair-like strands, a veil and a hole, painted with photographs never seen in training, over another
such photograph); --size or --seed generate a pair instead (flat colours over a generated pattern: unlike
anything the embedded model was trained on). The subject is composited over the clean background, the
model mattes it against that background and the outputs are written as PNGs, with
strip.png showing source, alpha and composite side by side. Without --model the model embedded in bgm-jax
mattes it (trained by this project on synthetic composites); --model uses yours (e.g. converted official
weights); --random-weights shows the pipeline with an untrained network. Since the sample comes with
ground truth, the alpha error against it is printed.
"""

from __future__ import annotations

import argparse
import time

from bgm_jax.cli.common import add_model_arguments
from bgm_jax.model_spec import BACKBONES

OUTPUT_NAMES = ("src", "bgr", "com", "pha", "err", "ref", "strip")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--random-weights", action="store_true",
                        help="use an untrained network instead of the embedded model (the pipeline, not a matte)")
    parser.add_argument("--backbone", default="mobilenetv2", choices=BACKBONES,
                        help="backbone of the --random-weights model")
    parser.add_argument("--size", help="matte a generated pair of this WIDTHxHEIGHT instead of the shipped "
                                       "example (default 512x512 when --seed is given)")
    parser.add_argument("--seed", type=int, help="matte the generated pair of this seed instead of the shipped example")
    parser.add_argument("--out", default="bgm-demo", help="output folder (default ./bgm-demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_model_arguments(parser)
    # the name this option had before it was --model, as in every other command
    parser.add_argument("--checkpoint", dest="model", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from bgm_jax.cli.common import load_matting, model_name, parse_size, random_weight_matting, settings_from_args
    from bgm_jax.datasets.synthetic import composite, make_sample
    from bgm_jax.errors import InputError
    from bgm_jax.io.atomic import check_can_write
    from bgm_jax.io.outputs import write_com, write_image, write_pha
    from bgm_jax.io.render import render_on_host

    from bgm_jax import pretrained

    shipped = pretrained.example() if args.size is None and args.seed is None else None
    if shipped is not None:
        sample, source = shipped
        height, width = sample["pha"].shape
    else:
        width, height = parse_size(args.size or "512x512", "--size")
        if width < 16 or height < 16:
            raise InputError(f"--size {args.size!r}: the generated pair needs width and height of at least 16")
        seed = args.seed or 0
        source = f"synthetic pair (seed {seed})"
    out = Path(args.out)
    for name in OUTPUT_NAMES:  # before any work: nothing is written when one output is in the way
        check_can_write(out / f"{name}.png", args.overwrite)

    if args.random_weights:
        if args.model:
            raise InputError("--random-weights and --model: choose one")
        matting = random_weight_matting(args.backbone, settings_from_args(args), args.compilation_cache)
        what = f"{args.backbone} with RANDOM weights (the matte is meaningless; drop --random-weights)"
    else:
        matting = load_matting(args)
        what = f"{model_name(args)} ({matting.config['backbone']})"

    # Compiling first checks that the size fits in memory before the sample is generated.
    start = time.perf_counter()
    matting.compiled_for((1, height, width, 3), np.uint8, (1, height, width, 3), np.uint8)
    compile_seconds = time.perf_counter() - start

    if shipped is not None:
        from bgm_jax.evaluation.protocol import fit_background

        sample["bgr"] = fit_background(sample["bgr"], height, width)
    else:
        sample = make_sample(seed, height=height, width=width)
    src = composite(sample["fgr"], sample["pha"], sample["bgr"])
    bgr = sample["bgr"]
    start = time.perf_counter()
    result = matting(src, bgr)
    pha = np.asarray(result.pha[0])
    first = time.perf_counter() - start
    start = time.perf_counter()
    np.asarray(matting(src, bgr).pha)
    second = time.perf_counter() - start

    # err and ref go through the same rendering as `images` and `video`: upsampled to the padded size
    # the model ran at, then cropped.
    maps = render_on_host(result, ("err", "ref") if matting.is_refine else ("err",),
                          padded=matting.padded_size(height, width))
    write_image(out / "src.png", src, overwrite=args.overwrite)
    write_image(out / "bgr.png", bgr, overwrite=args.overwrite)
    write_com(out / "com.png", np.asarray(result.fgr[0]), pha, overwrite=args.overwrite)
    write_pha(out / "pha.png", pha, overwrite=args.overwrite)
    write_image(out / "err.png", maps["err"][0], overwrite=args.overwrite)
    if "ref" in maps:
        write_image(out / "ref.png", maps["ref"][0], overwrite=args.overwrite)
    write_image(out / "strip.png", demo_strip(src, pha, np.asarray(result.fgr[0])), overwrite=args.overwrite)

    fields = matting.model_fields(height, width)
    gt = sample["pha"].astype(np.float32) / 255.0
    sad = float(np.abs(pha[..., 0] - gt).sum()) / 1000.0
    print(f"model:      {what}")
    averaged = ", mirror-averaged (--flip-average)" if matting.settings.flip_average else ""
    print(f"input:      {width}x{height} {source}, precision {matting.settings.precision}{averaged}")
    if matting.is_refine:
        print(f"settings:   backbone scale {fields['backbone_scale']}, {fields['refine_mode']} "
              f"{fields['refine_sample_pixels']} pixels")
    print(f"compile:    {compile_seconds:.2f} s")
    print(f"first call: {first:.2f} s")
    print(f"next call:  {second * 1000:.1f} ms")
    print(f"alpha SAD against ground truth (whole image, /1000): {sad:.2f}")
    names = ",".join(name for name in OUTPUT_NAMES if name != "ref" or "ref" in maps)
    print(f"outputs:    {out}/{{{names}}}.png")
    return 0


def demo_strip(src, pha, fgr, height: int = 256):
    """Source | alpha | composite over a checkerboard, side by side at ``height`` pixels (uint8 RGB)."""
    import numpy as np
    from PIL import Image

    from bgm_jax.io.outputs import to_uint8

    h, w = pha.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    board = np.where(((yy // 16) + (xx // 16)) % 2 == 0, 0.85, 0.6).astype(np.float32)[..., None]
    a = pha.astype(np.float32)
    src_f = src.astype(np.float32) / (255.0 if src.dtype == np.uint8 else 1.0)
    com = a * fgr.astype(np.float32) + (1 - a) * board
    panels = [to_uint8(src_f), to_uint8(np.repeat(a, 3, axis=-1)), to_uint8(com)]
    width = max(1, round(w * height / h))
    resized = [np.asarray(Image.fromarray(p).resize((width, height), Image.Resampling.BILINEAR)) for p in panels]
    gap = np.full((height, 4, 3), 255, np.uint8)
    return np.concatenate([resized[0], gap, resized[1], gap, resized[2]], axis=1)
