"""Measure speed: model-only FPS the paper's way, or decode + matting + encode FPS on a video.

    bgm-jax bench --backbone resnet50,mobilenetv2 --resolution hd,4k --batch 1,8 --json bench.json
    bgm-jax bench --backbone mobilenetv2 --e2e clip.mp4 --json e2e.json

Model only (as the paper): src and bgr already on the device, the paper's settings for the resolution
(HD: backbone scale 0.25, 80k sample pixels; 4K: 0.125, 320k) unless overridden, a fixed patch count
(prevent_oversampling off, so every call refines exactly k patches), compilation timed separately and
excluded, --warmup untimed calls, then --repeats calls each timed to ``block_until_ready``; reports the
median and p90 time per call and FPS = batch / time. Every comma-separated value of --backbone,
--resolution, --batch and --precision is combined with every other.

--devices 1,2,4 (or all) measures data-parallel scaling: each batch (--batch per device) is split over
that many local devices; FPS counts every image of the combined batch.

--e2e VIDEO runs ``bgm-jax video``'s pipeline (threads, asynchronous dispatch) into a temporary folder
and reports frames / wall time with compilation excluded, next to decode-only FPS of the same file.
Random weights unless --model: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from pathlib import Path

from bgm_jax.cli.common import (
    BACKBONES,
    FLIP_AVERAGE_HELP,
    PRECISIONS,
    REFINE_MODES,
    load_average,
    parse_choices,
    parse_size,
    positive_int,
    random_weight_matting,
)
from bgm_jax.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' line breaks
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="DIR", help="checkpoint directory (default: random weights)")
    model.add_argument("--backbone", metavar="LIST", help="random-weight backbones: resnet50,resnet101,mobilenetv2 "
                       "(default: resnet50; not with --model)")
    model.add_argument("--resolution", default=None, metavar="LIST",
                       help="WxH, hd (1920x1080) or 4k (3840x2160), comma-separated (default: hd; with --e2e: "
                       "the video's own size, or frames scaled to each given size)")
    model.add_argument("--batch", default="1", metavar="LIST",
                       help="batch sizes (per device), comma-separated (default: 1)")
    model.add_argument("--devices", default="1", metavar="LIST",
                       help="numbers of local devices to split each batch over, comma-separated, or all "
                       "(default: 1); shows data-parallel scaling")
    model.add_argument("--precision", default="float32", metavar="LIST",
                       help="float32,tf32,bfloat16,float16, comma-separated; float32 is full float32 (matmul "
                       "precision highest), tf32 the GPU's fast float32 (default: float32)")
    model.add_argument("--backbone-scale", type=float, metavar="S", help="default: the paper's for the resolution")
    model.add_argument("--refine-mode", choices=REFINE_MODES, default="sampling")
    model.add_argument("--refine-sample-pixels", type=int, metavar="N", help="default: the paper's for the resolution")
    model.add_argument("--prevent-oversampling", action="store_true",
                       help="skip zero-error patches (data-dependent work); default off: a fixed patch count")
    model.add_argument("--flip-average", action="store_true", help=FLIP_AVERAGE_HELP)
    model.add_argument("--compilation-cache", metavar="DIR",
                       help="persistent compilation cache (default: ~/.cache/bgm-jax/xla; '' turns it off)")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--repeats", type=positive_int, default=20, metavar="N", help="timed calls (default: 20)")
    timing.add_argument("--warmup", type=int, default=3, metavar="N",
                        help="untimed calls after compilation (default: 3)")
    timing.add_argument("--seed", type=int, default=0, help="seed of the random inputs and weights")
    e2e = parser.add_argument_group("end to end")
    e2e.add_argument("--e2e", metavar="VIDEO", help="measure decode + matting + encode on this video instead")
    e2e.add_argument("--bgr", metavar="IMAGE", help="background for --e2e (default: a flat grey plate)")
    e2e.add_argument("--outputs", default="com", metavar="LIST", help="--e2e outputs (default: com)")
    e2e.add_argument("--formats", default="mp4", metavar="LIST", help="--e2e formats (default: mp4)")
    e2e.add_argument("--encoder", metavar="NAME", help="--e2e: H.264 encoder for MP4, e.g. h264_nvenc (default: libx264)")
    e2e.add_argument("--convert", default="device", metavar="LIST",
                     help="--e2e: where outputs become uint8, device,host (default: device)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure and the machine details as JSON")


# ---------------------------------------------------------------------------------------------- helpers


def parse_device_counts(text: str) -> list[int | str]:
    """--devices: comma-separated counts, or all."""
    if text.strip().lower() == "all":
        return ["all"]
    return parse_int_list(text, "--devices")


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise InputError(f"{what} {text!r}: expected positive integers")
    return list(dict.fromkeys(values))


class CacheHits:
    """Counts persistent-compilation-cache hits while active (did a compile come from the disk cache?)."""

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, **kwargs) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.count += 1

    def __enter__(self) -> CacheHits:
        import jax

        jax.monitoring.register_event_listener(self)
        return self

    def __exit__(self, *exc) -> None:
        import jax

        jax.monitoring.unregister_event_listener(self)


def machine_description() -> dict:
    import jax
    import jaxlib

    import bgm_jax

    device = jax.devices()[0]
    return {
        "bgm_jax_version": bgm_jax.__version__,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        # the process-wide setting; each run records the precision its model was compiled under
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def xla_gflops(compiled) -> float | None:
    """XLA's own floating-point operation count for one call, in GFLOP (about 2x the paper's GMac)."""
    try:
        cost = compiled.cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0]
        return round(float(cost["flops"]) / 1e9, 2)
    except Exception:  # not every backend reports costs
        return None


def refine_patches(fields: dict, height: int, width: int) -> int | None:
    if fields.get("refine_mode") != "sampling":
        return None
    return min(fields["refine_sample_pixels"] // 16, (height // 4) * (width // 4))


def percentile_summary(seconds: list[float], batch: int) -> dict:
    import numpy as np

    values = np.asarray(seconds)
    median, p90 = float(np.median(values)), float(np.percentile(values, 90))
    return {
        "median_ms": round(median * 1e3, 3),
        "p90_ms": round(p90 * 1e3, 3),
        "mean_ms": round(float(values.mean()) * 1e3, 3),
        "min_ms": round(float(values.min()) * 1e3, 3),
        "fps_median": round(batch / median, 3),
        "fps_p90": round(batch / p90, 3),  # 90% of calls ran at least this fast
        "times_ms": [round(v * 1e3, 3) for v in seconds],
    }


# ---------------------------------------------------------------------------------------------- model only


def measure_model(matting, width: int, height: int, batch: int, *, repeats: int, warmup: int, seed: int) -> dict:
    """Time the compiled model on device-resident inputs (see the module docstring)."""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    src = matting.put(rng.random((batch, height, width, 3), np.float32))  # split over the devices, if several
    bgr = matting.put(rng.random((batch, height, width, 3), np.float32))
    with CacheHits() as hits:
        start = time.perf_counter()
        compiled = matting.compiled_for(src.shape, src.dtype, bgr.shape, bgr.dtype)
        compile_seconds = time.perf_counter() - start
    for _ in range(warmup):
        jax.block_until_ready(compiled(matting.variables, src, bgr))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(matting.variables, src, bgr))
        seconds.append(time.perf_counter() - start)
    fields = matting.model_fields(height, width)
    return {
        "mode": "model",
        "backbone": matting.config["backbone"],
        "width": width,
        "height": height,
        "batch": batch,
        "devices": matting.device_count,
        "precision": matting.settings.precision,
        "matmul_precision": matting.settings.matmul_precision,
        "backbone_scale": fields.get("backbone_scale"),
        "refine_mode": fields.get("refine_mode"),
        "refine_sample_pixels": fields.get("refine_sample_pixels"),
        "refine_patches": refine_patches(fields, *matting.padded_size(height, width)),
        "prevent_oversampling": fields.get("refine_prevent_oversampling"),
        "flip_average": matting.settings.flip_average,
        "compile_s": round(compile_seconds, 3),
        "compile_cache_hit": hits.count > 0,
        "xla_gflops": xla_gflops(compiled),
        "warmup": warmup,
        "repeats": repeats,
        **percentile_summary(seconds, batch),
    }


# ---------------------------------------------------------------------------------------------- end to end


def decode_only_fps(video: str, size) -> tuple[int, float]:
    """Frames and FPS of decoding the whole file to RGB, the floor under any end-to-end figure."""
    from bgm_jax.io.video_reader import VideoReader

    start = time.perf_counter()
    with VideoReader(video, size=size) as reader:
        frames = sum(1 for _ in reader)
    return frames, frames / (time.perf_counter() - start)


def measure_e2e(matting, video: str, size, batch: int, args, convert: str, decode_fps: float) -> dict:
    import tempfile

    import numpy as np

    from bgm_jax.cli.video import FORMATS, OUTPUT_TYPES, VideoOutput, matte_video, parse_target, read_background
    from bgm_jax.io.video_reader import VideoReader

    kinds = parse_choices(args.outputs, OUTPUT_TYPES, "--outputs")
    formats = parse_choices(args.formats, FORMATS, "--formats")
    with tempfile.TemporaryDirectory(prefix="bgm-bench-") as tmp, VideoReader(video, size=size) as reader:
        info = reader.info
        if args.bgr:
            bgr = read_background(args.bgr, info.width, info.height, resize=True)
        else:
            bgr = np.full((info.height, info.width, 3), 128, np.uint8)  # content does not change the work
        outputs = [VideoOutput(k, Path(tmp) / (k if f == "png" else f"{k}.{f}"), f) for k in kinds for f in formats]
        stats = matte_video(matting, reader, bgr, outputs, batch=batch, convert=convert, encoder=args.encoder,
                            target=parse_target("120,255,155", info.width, info.height))
    fields = matting.model_fields(info.height, info.width)
    return {
        "mode": "e2e",
        "video": str(video),
        "backbone": matting.config["backbone"],
        "width": info.width,
        "height": info.height,
        "batch": batch,
        "precision": matting.settings.precision,
        "matmul_precision": matting.settings.matmul_precision,
        "backbone_scale": fields.get("backbone_scale"),
        "refine_sample_pixels": fields.get("refine_sample_pixels"),
        "prevent_oversampling": fields.get("refine_prevent_oversampling"),
        "flip_average": matting.settings.flip_average,
        "outputs": [f"{o.kind}.{o.container}" for o in outputs],
        "convert": convert,
        "encoder": args.encoder or "libx264",
        "frames": stats.frames,
        "seconds": round(stats.seconds, 3),
        "fps": round(stats.fps, 3),
        "compile_s": round(stats.compile_seconds, 3),
        "decode_only_fps": round(decode_fps, 3),
    }


# ---------------------------------------------------------------------------------------------- running


def models(args: argparse.Namespace, settings: dict):
    """(name, Matting) for --model, or for each random-weight --backbone."""
    import bgm_jax

    if args.model:
        if args.backbone:
            raise InputError("--backbone picks random weights; with --model the checkpoint decides the backbone")
        if not Path(args.model).expanduser().is_dir():
            raise InputError(f"--model {args.model}: no such checkpoint directory")
        yield bgm_jax.load(Path(args.model).expanduser(), compilation_cache=args.compilation_cache, **settings)
        return
    for backbone in parse_choices(args.backbone or "resnet50", BACKBONES, "--backbone"):
        yield random_weight_matting(backbone, settings, args.compilation_cache, seed=args.seed)


def describe(run: dict) -> str:
    where = f"{run['backbone']:<11} {run['width']}x{run['height']} batch {run['batch']} {run['precision']}"
    if run.get("devices", 1) > 1:
        where += f" on {run['devices']} devices"
    if run.get("flip_average"):
        where += " flip-averaged"
    if run["mode"] == "model":
        return (f"{where}: {run['fps_median']:.2f} fps median ({run['median_ms']:.1f} ms/call, p90 "
                f"{run['p90_ms']:.1f} ms), compile {run['compile_s']:.1f} s"
                + (" (from cache)" if run["compile_cache_hit"] else ""))
    return (f"{where} [{run['convert']}]: {run['fps']:.2f} fps end to end ({run['frames']} frames in "
            f"{run['seconds']:.1f} s; decode alone {run['decode_only_fps']:.1f} fps), compile {run['compile_s']:.1f} s")


def run(args: argparse.Namespace) -> int:
    from bgm_jax.inference import Matting
    from bgm_jax.io.atomic import atomic_output, check_can_write, ensure_dir

    batches = parse_int_list(args.batch, "--batch")
    device_counts = parse_device_counts(args.devices)
    precisions = parse_choices(args.precision, PRECISIONS, "--precision")
    converts = parse_choices(args.convert, ("device", "host"), "--convert")
    if args.e2e:
        sizes = [parse_size(s, "--resolution") for s in args.resolution.split(",")] if args.resolution else [None]
    else:
        sizes = [parse_size(s, "--resolution") for s in (args.resolution or "hd").split(",")]
    if args.warmup < 0:
        raise InputError(f"--warmup {args.warmup}: must be 0 or more")
    if args.json:
        check_can_write(args.json, overwrite=True)
        if Path(args.json).is_dir():
            raise InputError(f"--json {args.json}: is a folder; give a file name")
        ensure_dir(Path(args.json).expanduser().absolute().parent)
    decode_fps = {}
    if args.e2e:
        from bgm_jax.io.video_reader import probe_video

        probe_video(args.e2e)  # not a video: say so before building any model

    settings = {
        "backbone_scale": args.backbone_scale,
        "refine_mode": args.refine_mode,
        "refine_sample_pixels": args.refine_sample_pixels,
        "refine_prevent_oversampling": args.prevent_oversampling,
        "flip_average": args.flip_average,
    }
    arguments = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    report = {**machine_description(), "arguments": arguments, "loadavg_start": load_average(), "runs": []}
    print(f"bench: {report['device']} ({report['backend']}, {report['cpu_count']} CPUs), jax {report['jax_version']}, "
          f"load average {report['loadavg_start']}")
    for base in models(args, settings):
        for precision, devices in itertools.product(precisions, device_counts):
            matting = base.with_settings(precision=precision)
            if devices != 1:
                matting = Matting(base.config, base.variables, matting.settings, devices=devices)
            for size in sizes:
                for batch in (b * matting.device_count for b in batches):
                    if args.e2e:
                        if size not in decode_fps:
                            decode_fps[size] = decode_only_fps(args.e2e, size)[1]
                        for convert in converts:
                            result = measure_e2e(matting, args.e2e, size, batch, args, convert, decode_fps[size])
                            report["runs"].append(result)
                            print(describe(result), flush=True)
                    else:
                        width, height = size
                        result = measure_model(matting, width, height, batch, repeats=args.repeats,
                                               warmup=args.warmup, seed=args.seed)
                        report["runs"].append(result)
                        print(describe(result), flush=True)
    report["loadavg_end"] = load_average()
    if args.json:
        with atomic_output(Path(args.json).expanduser(), overwrite=True) as partial:
            partial.write_text(json.dumps(report, indent=2) + "\n")
        print(f"bench: wrote {args.json}")
    return 0
