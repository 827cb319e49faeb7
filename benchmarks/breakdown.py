"""Where the time goes: the model stage by stage, in bgm-jax and in the PyTorch reference of the original.

    python benchmarks/breakdown.py                     # MobileNetV2 and ResNet-50 at 512x512 and 1920x1080
    python benchmarks/breakdown.py --backbone resnet50 --size 1920x1080 --repeats 9 --json r50_hd.json

Method: the paper's settings for the size (backbone scale 0.25, 5,000 patches), prevent_oversampling
off, batch 1, float32, the same random weights in both (``torch_pair.same_weights``). Each stage is
timed on its own, on the intermediate values the model really computes for these inputs: for bgm-jax a
separately compiled function per stage (the XLA options of ``bgm_jax.compile_options``), for PyTorch
the reference's modules and refiner methods in inference mode with ``torch.set_num_threads(--threads)``.
The bgm-jax refiner follows the strategy the model picks for the selection (``patch_strategy``:
patches, hybrid or image). Per repeat every stage runs once in each implementation, alternating which
goes first, with a short pause before each call (``--pause``) so that the other library's idle
threads have stopped spinning; the table gives medians of wall time and of process CPU time (all threads). The stages of
bgm-jax inside the one compiled model are fused across these boundaries, so the whole model (last
rows) is not the sum of its stages. Load averages before and after each configuration are printed:
figures from a loaded machine say little about an idle one (PyTorch's thread pool suffers more).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_pair  # noqa: E402


def jax_stages(backbone: str, config: dict, variables: dict, src, bgr, scale: float, pixels: int):
    """``[(name, fn, args)]``: bgm-jax's stages as separately compiled functions, each on the output of
    the stage before, and the strategy the refiner uses."""
    import jax
    import jax.numpy as jnp

    from bgm_jax.compile_options import compiler_options
    from bgm_jax.inference import Matting, Settings
    from bgm_jax.models.aspp import ASPP
    from bgm_jax.models.decoder import Decoder
    from bgm_jax.models.layers import resize_bilinear
    from bgm_jax.models.matting import make_backbone
    from bgm_jax.models.refiner import (
        Refiner, crop_patches, crop_windows, patch_strategy, replace_patches, select_patches, selection_map)

    options = compiler_options(jax.devices()[0].platform)
    params, stats = variables["params"], variables["batch_stats"]

    def part(name):
        return {"params": params[name], "batch_stats": stats.get(name, {})}

    stages = []

    def stage(name, fn, *args):
        with jax.default_matmul_precision("highest"):
            compiled = jax.jit(fn).lower(*args).compile(options)
        stages.append((name, compiled, args))
        return compiled(*args)

    _, height, width, _ = src.shape
    small = (math.floor(height * scale), math.floor(width * scale))
    hq, wq = height // 4, width // 4
    cells, capacity = hq * wq, min(pixels // 16, hq * wq)
    strategy = patch_strategy(capacity, cells)
    encoder = make_backbone(backbone, jnp.float32, None)
    aspp, decoder = ASPP(), Decoder()
    refiner = Refiner(sample_pixels=pixels, prevent_oversampling=False)

    src_sm, bgr_sm = stage("downsample src, bgr", lambda s, b: (resize_bilinear(s, small), resize_bilinear(b, small)),
                           src, bgr)
    x4, x3, x2, x1, x0 = stage("backbone", lambda v, s, b: encoder.apply(v, jnp.concatenate([s, b], -1)),
                               part("backbone"), src_sm, bgr_sm)
    x4 = stage("aspp", lambda v, x: aspp.apply(v, x), part("aspp"), x4)
    x = stage("decoder", lambda v, *f: decoder.apply(v, *f), part("decoder"), x4, x3, x2, x1, x0)

    def coarse_outputs(x, src_sm):
        return (jnp.clip(x[..., 0:1], 0, 1), x[..., 1:4], jnp.clip(x[..., 4:5], 0, 1), jax.nn.relu(x[..., 5:]),
                jnp.clip(src_sm + x[..., 1:4], 0, 1))

    pha, fgr, err, hid, _ = stage("coarse outputs (slices, clips)", coarse_outputs, x, src_sm)

    def resizes(src, bgr, pha, fgr, err, hid):
        half = (height // 2, width // 2)
        return (resize_bilinear(err, (hq, wq)), jnp.clip(resize_bilinear(pha, (height, width)), 0, 1),
                jnp.clip(resize_bilinear(fgr, (height, width)) + src, 0, 1),
                resize_bilinear(jnp.concatenate([hid, pha, fgr], -1), half), resize_bilinear(src, half),
                resize_bilinear(bgr, half))

    err_q, coarse_pha, coarse_fgr, *half = stage("refiner: resizes", resizes, src, bgr, pha, fgr, err, hid)
    indices, selected = stage("refiner: top-k", lambda e: (select_patches(e, capacity)[1],
                                                           selection_map(select_patches(e, capacity)[1],
                                                                         jnp.ones((1, capacity), bool), cells)),
                              err_q)
    rv = part("refiner")

    def method(name):
        return lambda v, *a: refiner.apply(v, *a, method=name)

    def pad(x, p):
        return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))

    def patches_of(x):
        return x.reshape((-1,) + x.shape[2:])

    def crop_full(src, bgr, indices):
        y = jnp.concatenate([crop_patches(v, indices, wq, cell=4, pad=2) for v in (src, bgr)], -1)
        return patches_of(y), crop_patches(src, indices, wq, cell=4, pad=0)

    if strategy == "image":
        def image_convs(v, h, s, b, src, bgr):
            first = refiner.apply(v, pad(jnp.concatenate([h, s, b], -1), 3), method="first_stage")
            return refiner.apply(v, first, pad(jnp.concatenate([src, bgr], -1), 2), method="second_stage")

        out = stage("refiner: convs over the image", image_convs, rv, *half, src, bgr)

        def write_back(out, selected, coarse_pha, coarse_fgr, src):
            mask = selected.reshape(1, hq, wq, 1) > 0
            mask = jnp.repeat(jnp.repeat(mask, 4, axis=1), 4, axis=2)
            return (jnp.where(mask, jnp.clip(out[..., :1], 0, 1), coarse_pha),
                    jnp.where(mask, jnp.clip(out[..., 1:] + src, 0, 1), coarse_fgr))

        stage("refiner: mask, finish", write_back, out, selected, coarse_pha, coarse_fgr, src)
    else:
        if strategy == "hybrid":
            first = stage("refiner: first stage over the image", method("first_stage"), rv,
                          pad(jnp.concatenate(half, -1), 3))
            x = stage("refiner: crop", lambda f, i: patches_of(crop_windows(f, i, wq, cell=2, size=4)), first, indices)
            y, src_cells = stage("refiner: crop src, bgr", crop_full, src, bgr, indices)
            out = stage("refiner: second stage (patches)", method("second_stage"), rv, x, y)
        else:
            def crop_half(h, s, b, i):
                return patches_of(jnp.concatenate([crop_patches(v, i, wq, cell=2, pad=3) for v in (h, s, b)], -1))

            x = stage("refiner: crop", crop_half, *half, indices)
            y, src_cells = stage("refiner: crop src, bgr", crop_full, src, bgr, indices)
            out = stage("refiner: convs (patches)", lambda v, x, y: refiner.apply(
                v, refiner.apply(v, x, method="first_stage"), y, method="second_stage"), rv, x, y)

        def write_back(out, src_cells, coarse_pha, coarse_fgr, indices):
            out = out.reshape(1, capacity, 4, 4, 4)
            valid = jnp.ones((1, capacity), bool)
            return (replace_patches(coarse_pha, jnp.clip(out[..., :1], 0, 1), indices, valid),
                    replace_patches(coarse_fgr, jnp.clip(out[..., 1:] + src_cells, 0, 1), indices, valid))

        stage("refiner: finish, scatter", write_back, out, src_cells, coarse_pha, coarse_fgr, indices)

    matting = Matting(config, variables, Settings(refine_prevent_oversampling=False))
    whole = matting.compiled_for(src.shape, src.dtype, bgr.shape, bgr.dtype)
    stages.append(("whole model (one compiled function)", whole, (matting.variables, src, bgr)))
    return stages, strategy


def torch_stages(model, src, bgr):
    """The reference's stages in the original's order, each on the output of the stage before."""
    import torch
    import torch.nn.functional as F

    resize = torch_pair.torch_reference._resize
    refiner = model.refiner
    stages = []

    def stage(name, fn, *args):
        stages.append((name, fn, args))
        return fn(*args)

    with torch.inference_mode():
        height, width = src.shape[2:]
        small = (math.floor(height * model.backbone_scale), math.floor(width * model.backbone_scale))
        half, quarter = (height // 2, width // 2), (height // 4, width // 4)
        src_sm, bgr_sm = stage("downsample src, bgr", lambda s, b: (resize(s, small), resize(b, small)), src, bgr)
        x4, *skips = stage("backbone", lambda s, b: model.backbone(torch.cat([s, b], 1)), src_sm, bgr_sm)
        x4 = stage("aspp", model.aspp, x4)
        x = stage("decoder", model.decoder, x4, *skips)

        def coarse_outputs(x, src_sm):
            return (x[:, 0:1].clamp(0, 1), x[:, 1:4], x[:, 4:5].clamp(0, 1), x[:, 5:].relu(),
                    (src_sm + x[:, 1:4]).clamp(0, 1))

        pha, fgr, err, hid, _ = stage("coarse outputs (slices, clips)", coarse_outputs, x, src_sm)

        def resizes(src, bgr, pha, fgr, err, hid):
            src_bgr = torch.cat([src, bgr], 1)
            return (resize(err, quarter), resize(torch.cat([pha, fgr], 1), (height, width)),
                    resize(torch.cat([hid, pha, fgr], 1), half), resize(src_bgr, half), src_bgr)

        err_q, coarse, xh, yh, src_bgr = stage("refiner: resizes", resizes, src, bgr, pha, fgr, err, hid)

        def select(e):
            idx = torch.nonzero(refiner.select_refinement_regions(e).squeeze(1))
            return idx[:, 0], idx[:, 1], idx[:, 2]

        idx = stage("refiner: top-k", select, err_q)
        x, y = stage("refiner: crop", lambda a, b, i: (refiner.crop_patch(a, i, 2, 3), refiner.crop_patch(b, i, 2, 3)),
                     xh, yh, idx)
        y_full = stage("refiner: crop src, bgr", lambda s, i: refiner.crop_patch(s, i, 4, 2), src_bgr, idx)

        def convs(x, y, y_full):
            x = refiner.relu(refiner.bn1(refiner.conv1(torch.cat([x, y], 1))))
            x = refiner.relu(refiner.bn2(refiner.conv2(x)))
            x = F.interpolate(x, size=8, mode="nearest")
            x = refiner.relu(refiner.bn3(refiner.conv3(torch.cat([x, y_full], 1))))
            return refiner.conv4(x)

        out = stage("refiner: convs (patches)", convs, x, y, y_full)

        def finish(coarse, out, idx, src):
            out = refiner.replace_patch(coarse, out, idx)
            return out[:, :1].clamp(0, 1), (out[:, 1:] + src).clamp(0, 1)

        stage("refiner: finish, scatter", finish, coarse, out, idx, src)
    stages.append(("whole model (one compiled function)", model, (src, bgr)))
    return stages


def measure(backbone: str, width: int, height: int, repeats: int, threads: int, pause: float) -> dict:
    import jax
    import torch

    from bgm_jax.inference import recommended_settings

    torch.set_num_threads(threads)
    scale, pixels = recommended_settings(height, width)
    model, config, variables = torch_pair.same_weights(
        backbone, backbone_scale=scale, refine_sample_pixels=pixels, refine_prevent_oversampling=False)
    src_t, bgr_t = torch_pair.torch_reference.random_inputs(1, height, width)
    src, bgr = jax.device_put(torch_pair.nhwc(src_t)), jax.device_put(torch_pair.nhwc(bgr_t))
    ours, strategy = jax_stages(backbone, config, variables, src, bgr, scale, pixels)
    theirs = torch_stages(model, src_t, bgr_t)

    def run_jax(fn, args):
        return lambda: jax.block_until_ready(fn(*args))

    def run_torch(fn, args):
        def call():
            with torch.inference_mode():
                fn(*args)
        return call

    calls = {("jax", name): run_jax(fn, args) for name, fn, args in ours}
    calls.update({("torch", name): run_torch(fn, args) for name, fn, args in theirs})
    for call in calls.values():  # warm-up
        call()
    wall = {key: [] for key in calls}
    cpu = {key: [] for key in calls}
    load_before = torch_pair.load_average()
    keys = list(calls)
    for i in range(repeats):
        for key in keys if i % 2 == 0 else keys[::-1]:
            time.sleep(pause)
            w, c = torch_pair.timed(calls[key])
            wall[key].append(w)
            cpu[key].append(c)
    return {
        "backbone": backbone, "size": f"{width}x{height}", "strategy": strategy, "patches": pixels // 16,
        "load_before": load_before, "load_after": torch_pair.load_average(),
        "jax": [(name, torch_pair.median_ms(wall[("jax", name)]), torch_pair.median_ms(cpu[("jax", name)]))
                for name, _, _ in ours],
        "torch": [(name, torch_pair.median_ms(wall[("torch", name)]), torch_pair.median_ms(cpu[("torch", name)]))
                  for name, _, _ in theirs],
    }


def print_table(r: dict) -> None:
    print(f"\n{r['backbone']} {r['size']}, {r['patches']} patches (bgm-jax refiner strategy: {r['strategy']}); "
          f"load {r['load_before']} -> {r['load_after']}")
    print(f"  {'stage':<40} {'PyTorch ms':>11} {'(CPU)':>7}   {'bgm-jax ms':>11} {'(CPU)':>7}")
    names = list(dict.fromkeys([n for n, *_ in r["torch"]] + [n for n, *_ in r["jax"]]))
    names.remove("whole model (one compiled function)")
    torch_rows = {n: (w, c) for n, w, c in r["torch"]}
    jax_rows = {n: (w, c) for n, w, c in r["jax"]}

    def cells(rows, name):
        return f"{rows[name][0]:11.1f} {rows[name][1]:7.1f}" if name in rows else f"{'-':>11} {'':>7}"

    for name in names:
        print(f"  {name:<40} {cells(torch_rows, name)}   {cells(jax_rows, name)}")
    total = {side: (sum(w for n, w, _ in r[side] if not n.startswith("whole")),
                    sum(c for n, _, c in r[side] if not n.startswith("whole"))) for side in ("torch", "jax")}
    print(f"  {'sum of the stages':<40} {total['torch'][0]:11.1f} {total['torch'][1]:7.1f}   "
          f"{total['jax'][0]:11.1f} {total['jax'][1]:7.1f}")
    whole = "whole model (one compiled function)"
    print(f"  {'whole model (bgm-jax: one compiled fn)':<40} {cells(torch_rows, whole)}   {cells(jax_rows, whole)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenetv2,resnet50", help="comma-separated backbones")
    parser.add_argument("--size", default="512x512,1920x1080", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    parser.add_argument("--pause", type=float, default=0.05,
                        help="seconds between calls, so that each library's idle threads stop spinning first")
    parser.add_argument("--json", help="also write the medians here")
    args = parser.parse_args()
    print(torch_pair.method_line(args.threads))
    print(f"medians of {args.repeats} interleaved repeats after one warm-up call; wall ms and process CPU ms")
    results = []
    for backbone in args.backbone.split(","):
        for size in args.size.split(","):
            width, height = (int(v) for v in size.split("x"))
            results.append(measure(backbone.strip(), width, height, args.repeats, args.threads, args.pause))
            print_table(results[-1])
    if args.json:
        Path(args.json).write_text(json.dumps({"method": torch_pair.method_line(args.threads), "rows": results},
                                              indent=1))


if __name__ == "__main__":
    main()
