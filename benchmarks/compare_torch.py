"""bgm-jax against the original PyTorch code on this machine's CPU, as issue 16 states the goal: the ratio
bgm-jax time / PyTorch time per row (goal: at most 0.8), model only and end to end.

    python benchmarks/compare_torch.py                 # the four model rows and the video row
    python benchmarks/compare_torch.py --rows model --backbone mobilenetv2 --size 512x512 --repeats 9
    python benchmarks/compare_torch.py --rows video --frames 90

Model rows: MobileNetV2 and ResNet-50 at 512x512 and 1920x1080, the paper's settings for the size
(backbone scale 0.25, 80,000 sample pixels = 5,000 patches), prevent_oversampling off (exactly k patches),
batch 1, float32, the same random weights in both (``torch_pair.same_weights``). PyTorch: the test suite's
reference of the original (tests/torch_reference.py), ``torch.set_num_threads(--threads)``, inference
mode. bgm-jax: the ``Matting`` object ``bgm_jax.load`` returns (its compiled function, inputs already on
the device, ``block_until_ready``). Warm-up calls first, then the calls alternate (bgm-jax, PyTorch,
PyTorch, bgm-jax, ...) so load from other processes hits both alike, with a short pause before each
(``--pause``) so that the other library's idle threads have stopped spinning. Prints medians, ranges and the ratio of
medians, plus CPU time per call (all threads of the process), and the load average before and after.

Video row (MobileNetV2, 640x360, 90 frames, composite only, the command's default settings: 5,000
patches with prevent_oversampling, the same random weights in both): the wall time of the ``bgm-jax video`` command (decode thread, model, H.264 encode thread; persistent
compilation cache warmed by an untimed first run) against a process that runs the original
inference_video.py loop with the reference model and the same weights: decode a frame, to a float
tensor, model, ``com = fgr * pha + green * (1 - pha)``, ``mul(255).byte()``, encode (MPEG-4 Part 2,
what the original's OpenCV ``mp4v`` writer produces), one frame at a time. Both whole processes are
timed, start to exit, alternating. Needs torch (a test dependency) and PyAV; CPU only.

Speed on a shared machine is noisy and loaded machines penalise PyTorch's thread pool more than XLA's:
for the figures that count, run on a quiet machine (load average well below the core count) and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_pair  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.8


def model_row(backbone: str, width: int, height: int, repeats: int, warmup: int, threads: int,
              pause: float) -> dict:
    import jax
    import torch

    from bgm_jax.inference import Matting, Settings, recommended_settings

    torch.set_num_threads(threads)
    scale, pixels = recommended_settings(height, width)
    reference, config, variables = torch_pair.same_weights(
        backbone, backbone_scale=scale, refine_sample_pixels=pixels, refine_prevent_oversampling=False)
    matting = Matting(config, variables, Settings(refine_prevent_oversampling=False))
    src_t, bgr_t = torch_pair.torch_reference.random_inputs(1, height, width)
    src, bgr = jax.device_put(torch_pair.nhwc(src_t)), jax.device_put(torch_pair.nhwc(bgr_t))
    start = time.perf_counter()
    matting.compiled_for(src.shape, src.dtype, bgr.shape, bgr.dtype)
    compile_s = time.perf_counter() - start

    def run_jax():
        result = matting(src, bgr)
        jax.block_until_ready((result.pha, result.fgr, result.err, result.ref))

    def run_torch():
        with torch.inference_mode():
            reference(src_t, bgr_t)

    for _ in range(warmup):
        run_jax(), run_torch()
    times = {"jax": [], "torch": []}
    cpu = {"jax": [], "torch": []}
    load_before = torch_pair.load_average()
    for i in range(repeats):
        order = (("jax", run_jax), ("torch", run_torch))
        for name, fn in order if i % 2 == 0 else order[::-1]:
            time.sleep(pause)  # the other library's idle threads stop spinning
            wall, used = torch_pair.timed(fn)
            times[name].append(wall)
            cpu[name].append(used)
    row = {
        "backbone": backbone, "size": f"{width}x{height}", "patches": pixels // 16, "backbone_scale": scale,
        "jax_ms": torch_pair.median_ms(times["jax"]), "torch_ms": torch_pair.median_ms(times["torch"]),
        "jax_range": torch_pair.spread_ms(times["jax"]), "torch_range": torch_pair.spread_ms(times["torch"]),
        "jax_cpu_ms": torch_pair.median_ms(cpu["jax"]), "torch_cpu_ms": torch_pair.median_ms(cpu["torch"]),
        "compile_s": compile_s, "load_before": load_before, "load_after": torch_pair.load_average(),
        "jax_s": times["jax"], "torch_s": times["torch"],
    }
    row["ratio"] = row["jax_ms"] / row["torch_ms"]
    return row


# --------------------------------------------------------------------------------------------- video


def write_clip(directory: Path, width: int, height: int, frames: int) -> tuple[Path, Path]:
    """The synthetic benchmark clip (benchmarks/make_bench_clip.py) and its clean plate."""
    from PIL import Image

    from bgm_jax.datasets.synthetic import composite, make_clip
    from make_bench_clip import write_clip as write_mp4

    clip = make_clip(0, num_frames=frames, height=height, width=width)
    images = np.stack([composite(f, p, clip["bgr"]) for f, p in zip(clip["fgr"], clip["pha"])])
    write_mp4(directory / "clip.mp4", images, 30)
    Image.fromarray(clip["bgr"]).save(directory / "bgr.png")
    return directory / "clip.mp4", directory / "bgr.png"


def save_same_weights(directory: Path) -> tuple[Path, Path]:
    """One random MobileNetV2 refine model as a bgm-jax model directory (for ``bgm-jax video --model``)
    and as the reference's PyTorch state_dict (for the original's loop): the same weights, so both
    refine the same cells."""
    import torch

    from bgm_jax.checkpoint import save_model

    reference, config, variables = torch_pair.same_weights("mobilenetv2")
    pth = directory / "weights.pth"
    torch.save(reference.state_dict(), pth)
    return save_model(directory / "model", variables, config), pth


def original_video_loop(pth: str, clip: str, bgr_path: str, out: str, threads: int) -> None:
    """The original inference_video.py's loop (batch 1, com only, video output) with the reference model."""
    import av
    import torch
    from PIL import Image

    start = time.perf_counter()
    torch.set_num_threads(threads)
    model = torch_pair.torch_reference.build_model("refine", "mobilenetv2", backbone_scale=0.25,
                                                   refine_sample_pixels=80_000)
    model.load_state_dict(torch.load(pth))
    model = model.eval()

    def to_tensor(image: np.ndarray) -> torch.Tensor:  # torchvision's ToTensor on an RGB uint8 image
        return torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)

    bgr = to_tensor(np.asarray(Image.open(bgr_path).convert("RGB")))
    tgt = torch.tensor([120 / 255, 255 / 255, 155 / 255]).view(1, 3, 1, 1)
    frames = 0
    with av.open(clip) as source, av.open(out, "w") as sink, torch.no_grad():
        stream = source.streams.video[0]
        writer = sink.add_stream("mpeg4", rate=stream.average_rate)
        writer.width, writer.height, writer.pix_fmt = stream.width, stream.height, "yuv420p"
        first = None
        for frame in source.decode(stream):
            src = to_tensor(frame.to_ndarray(format="rgb24"))
            pha, fgr, _, _, err, ref = model(src, bgr)
            com = fgr * pha + tgt * (1 - pha)
            com = com.mul(255).byte().cpu().permute(0, 2, 3, 1).numpy()
            for image in com:
                sink.mux(writer.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            frames += 1
            first = first or time.perf_counter()
        sink.mux(writer.encode(None))
    end = time.perf_counter()
    print(json.dumps({"frames": frames, "loop_s": end - start, "setup_s": (first or end) - start}))


def video_row(frames: int, width: int, height: int, repeats: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bgm_compare_video_") as tmp:
        tmp = Path(tmp)
        clip, bgr = write_clip(tmp, width, height, frames)
        model_dir, pth = save_same_weights(tmp)
        env = dict(os.environ, BGM_JAX_CACHE_DIR=str(tmp / "xla_cache"))
        ours = [sys.executable, "-m", "bgm_jax", "video", "--model", str(model_dir), "--src", str(clip), "--bgr", str(bgr),
                "--outputs", "com", "--out", str(tmp / "jax_out"), "--overwrite"]
        theirs = [sys.executable, __file__, "--original-video-loop", str(pth), str(clip), str(bgr),
                  str(tmp / "torch_com.mp4"), "--threads", str(threads)]

        def run(command) -> tuple[float, str]:
            start = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command[:4])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            return elapsed, done.stdout

        cold, _ = run(ours)  # compiles and fills the persistent cache; the timed runs start from it
        times = {"jax": [], "torch": []}
        load_before = torch_pair.load_average()
        for i in range(repeats):
            order = (("jax", ours), ("torch", theirs))
            for name, command in order if i % 2 == 0 else order[::-1]:
                times[name].append(run(command)[0])
        row = {
            "backbone": "mobilenetv2", "size": f"{width}x{height}", "frames": frames,
            "jax_s": torch_pair.median_ms(times["jax"]) / 1e3, "torch_s": torch_pair.median_ms(times["torch"]) / 1e3,
            "jax_runs_s": times["jax"], "torch_runs_s": times["torch"], "jax_cold_s": cold,
            "load_before": load_before, "load_after": torch_pair.load_average(),
        }
        row["ratio"] = row["jax_s"] / row["torch_s"]
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="model,video", help="model, video or both (default)")
    parser.add_argument("--backbone", default="mobilenetv2,resnet50", help="model rows: comma-separated backbones")
    parser.add_argument("--size", default="512x512,1920x1080", help="model rows: comma-separated WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per implementation and model row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads (the machine's cores)")
    parser.add_argument("--pause", type=float, default=0.05,
                        help="model rows: seconds between calls, so that each library's idle threads stop spinning")
    parser.add_argument("--frames", type=int, default=90, help="video row: frames of the clip")
    parser.add_argument("--video-size", default="640x360", help="video row: WIDTHxHEIGHT of the clip")
    parser.add_argument("--video-repeats", type=int, default=3, help="video row: timed runs of each command")
    parser.add_argument("--json", help="also write every time and setting here")
    parser.add_argument("--original-video-loop", nargs=4, metavar=("PTH", "CLIP", "BGR", "OUT"),
                        help=argparse.SUPPRESS)  # the PyTorch process of the video row
    args = parser.parse_args()
    if args.original_video_loop:
        original_video_loop(*args.original_video_loop, threads=args.threads)
        return

    rows = {r.strip() for r in args.rows.split(",")}
    print(torch_pair.method_line(args.threads))
    print(f"load average (1/5/15 min) at start: {torch_pair.load_average()}")
    results = {"method": torch_pair.method_line(args.threads), "model": [], "video": None}
    if "model" in rows:
        print(f"\nModel only: median of {args.repeats} alternating calls after {args.warmup} warm-up calls; "
              f"ratio = bgm-jax / PyTorch (goal <= {GOAL})")
        print(f"{'backbone':<12} {'size':<10} {'PyTorch ms':>18} {'bgm-jax ms':>18} {'ratio':>6}  "
              f"{'CPU ms torch/jax':>17}  load before -> after")
        for backbone in args.backbone.split(","):
            for size in args.size.split(","):
                width, height = (int(v) for v in size.split("x"))
                r = model_row(backbone.strip(), width, height, args.repeats, args.warmup, args.threads,
                              args.pause)
                results["model"].append(r)
                print(f"{r['backbone']:<12} {r['size']:<10} {r['torch_ms']:7.0f} ({r['torch_range']:>9}) "
                      f"{r['jax_ms']:7.0f} ({r['jax_range']:>9}) {r['ratio']:6.2f}  "
                      f"{r['torch_cpu_ms']:7.0f} / {r['jax_cpu_ms']:<7.0f}  {r['load_before']} -> {r['load_after']}",
                      flush=True)
    if "video" in rows:
        width, height = (int(v) for v in args.video_size.split("x"))
        print(f"\nEnd to end: `bgm-jax video` (warm compilation cache) against the original's video loop on the "
              f"reference, MobileNetV2, {width}x{height}, {args.frames} frames, composite only; whole processes, "
              f"median of {args.video_repeats} alternating runs")
        r = video_row(args.frames, width, height, args.video_repeats, args.threads)
        results["video"] = r
        print(f"PyTorch {r['torch_s']:.1f} s, bgm-jax {r['jax_s']:.1f} s (first run, compiling: {r['jax_cold_s']:.1f} s): "
              f"ratio {r['ratio']:.2f}; load {r['load_before']} -> {r['load_after']}")
    print(f"\nload average (1/5/15 min) at the end: {torch_pair.load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
