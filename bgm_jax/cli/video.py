"""Matte a video against a clean background image and write composited and alpha videos.

    bgm-jax video --model ckpt/resnet50 --src clip.mp4 --bgr plate.png --out results/
    bgm-jax video --model ckpt/resnet50 --src clip.mp4 --bgr plate.png --com clip_alpha.webm --pha pha/

Outputs with --out DIR: every type in --outputs (com, pha, fgr, err, ref) in every format in --formats:
mp4 (H.264), webm (VP9 with alpha), mov (ProRes 4444 with alpha), png (a folder of numbered PNGs).
Or name files directly (--com, --pha, --fgr, --err, --ref, each repeatable; the extension picks the
format, a name without one is a PNG folder). ``com`` is composited over --target-bgr in MP4 and is the
foreground with its alpha in the formats that carry alpha; the source's audio is copied into it.

The whole stream is decoded (the container's frame count is never trusted), rotation metadata is
honoured and the frame rate and timestamps are kept. Decoding, the model and encoding run at the same
time (decode thread, asynchronous device work, encode threads); the end prints end-to-end FPS.
Interrupting (Ctrl-C) removes the partial files: nothing that looks complete is left behind.

Exit status: 0 done; 1 the video ended before the frame count its container claims (a file cut short:
every decoded frame is written, both counts are printed; --allow-short-video makes this 0); 2 unusable
input or an output that cannot be written (full disk, no permission: the partial files are removed).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bgm_jax.cli.common import (
    add_devices_argument,
    add_model_arguments,
    add_progress_argument,
    describe_size,
    load_matting,
    parse_choices,
    parse_size,
    positive_int,
    progress_bar,
    resize_rgb,
)
from bgm_jax.errors import InputError

OUTPUT_TYPES = ("com", "pha", "fgr", "err", "ref")
FORMATS = ("mp4", "webm", "mov", "png")
CONTAINER_OF_SUFFIX = {".mp4": "mp4", ".webm": "webm", ".mov": "mov"}
DEFAULT_TARGET = "120,255,155"  # the original script's flat green


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' line breaks
    parser.add_argument("--src", required=True, metavar="VIDEO", help="source video (any FFmpeg-readable file)")
    parser.add_argument("--bgr", required=True, metavar="IMAGE", help="clean background image (the static plate)")
    parser.add_argument("--resize-bgr", action="store_true",
                        help="resize a background of another size to the video (default: error)")
    parser.add_argument("--align", action="store_true",
                        help="align the background to every frame (handheld footage; ORB + RANSAC homography; "
                        "needs the align extra, OpenCV; costs CPU time per frame)")
    parser.add_argument("--resize", metavar="WxH", help="scale the video frames to this size before matting")
    parser.add_argument("--allow-short-video", action="store_true",
                        help="a video with fewer frames than its container claims is expected: exit 0 (default: "
                        "finish, warn with both counts and exit 1)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", metavar="DIR", help="output folder for --outputs in --formats")
    out.add_argument("--outputs", metavar="LIST", help="with --out: com,pha,fgr,err,ref (default: com,pha)")
    out.add_argument("--formats", metavar="LIST", help="with --out: mp4,webm,mov,png (default: mp4)")
    for kind, what in (("com", "composite / foreground with alpha"), ("pha", "alpha"), ("fgr", "foreground"),
                       ("err", "error map"), ("ref", "refinement map")):
        out.add_argument(f"--{kind}", action="append", metavar="PATH",
                         help=f"write the {what} here (.mp4, .webm, .mov, or a folder for PNGs); repeatable")
    out.add_argument(
        "--target-bgr", default=DEFAULT_TARGET, metavar="SPEC",
        help="what MP4 com is composited over: a colour R,G,B or #RRGGBB, an image, or a video (looped "
        "if shorter); resized to the frame size (default: 120,255,155 green, as the original)",
    )
    out.add_argument("--pha-16bit", action="store_true", help="16-bit PNGs for pha PNG sequences")
    out.add_argument("--encoder", metavar="NAME",
                     help="H.264 encoder for MP4 outputs, e.g. h264_nvenc (default: libx264)")
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--batch", type=positive_int, default=1, metavar="N",
                        help="frames matted together per device; 4-8 raise GPU throughput (default: 1)")
    add_devices_argument(parser)
    parser.add_argument("--convert", choices=("device", "host"), default="device",
                        help="where float outputs become uint8 pixels (default: device; host is for comparison)")
    add_progress_argument(parser)
    add_model_arguments(parser)


# ---------------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class VideoOutput:
    """One file (or PNG folder) to write: which output, where, in which container."""

    kind: str  # com, pha, fgr, err, ref
    path: Path
    container: str  # mp4, webm, mov, png

    def product(self, pha_16bit: bool) -> str:
        """The render product written (see bgm_jax.io.render)."""
        if self.kind == "com":
            return "composite" if self.container == "mp4" else "rgba"
        if self.kind == "pha" and pha_16bit and self.container == "png":
            return "pha_float"
        return self.kind

    @property
    def png_mode(self) -> str:
        return {"com": "RGBA", "fgr": "RGB"}.get(self.kind, "L")


def output_for_path(kind: str, text: str) -> VideoOutput:
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in CONTAINER_OF_SUFFIX:
        return VideoOutput(kind, path, CONTAINER_OF_SUFFIX[suffix])
    if suffix == "" or text.endswith(("/", "\\")):
        return VideoOutput(kind, path, "png")
    hint = " (PNG sequences go to a folder: drop the extension)" if suffix == ".png" else ""
    raise InputError(
        f"--{kind} {text}: unknown output format {suffix!r}{hint}; use .mp4 (H.264), .webm (VP9 with alpha), "
        ".mov (ProRes 4444 with alpha) or a folder name for PNGs"
    )


def resolve_outputs(args: argparse.Namespace) -> list[VideoOutput]:
    """The outputs named by --out/--outputs/--formats and by --com/--pha/... paths."""
    outputs = [output_for_path(kind, text) for kind in OUTPUT_TYPES for text in (getattr(args, kind) or [])]
    if args.out:
        out = Path(args.out).expanduser()
        kinds = parse_choices(args.outputs or "com,pha", OUTPUT_TYPES, "--outputs")
        formats = parse_choices(args.formats or "mp4", FORMATS, "--formats")
        for kind in kinds:
            for fmt in formats:
                outputs.append(VideoOutput(kind, out / kind if fmt == "png" else out / f"{kind}.{fmt}", fmt))
    elif args.outputs or args.formats:
        raise InputError("--outputs and --formats name files under --out DIR; give --out, or name files with "
                         "--com/--pha/--fgr/--err/--ref")
    if not outputs:
        raise InputError("nothing to write: give --out DIR (with --outputs and --formats) or output paths such as "
                         "--com out.mp4 or --pha pha_frames/")
    seen: dict[Path, str] = {}
    for output in outputs:
        key = output.path.absolute()
        if key in seen:
            raise InputError(f"{output.path}: named twice (--{seen[key]} and --{output.kind}); give each output its own path")
        seen[key] = output.kind
    return outputs


def check_outputs_writable(outputs: list[VideoOutput], overwrite: bool) -> None:
    """Existing outputs and unusable folders are reported before any decoding or compiling."""
    from bgm_jax.io.atomic import check_can_write, ensure_dir

    for output in outputs:
        check_can_write(output.path, overwrite)
        ensure_dir(output.path.parent)


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class Target:
    """What MP4 ``com`` is composited over: uint8 colour (3,), image (H, W, 3), or video frames."""

    colour: object = None
    image: object = None
    video: Path | None = None


def parse_target(text: str, width: int, height: int) -> Target:
    import numpy as np

    from bgm_jax.io.images import IMAGE_EXTENSIONS, read_image
    from bgm_jax.io.video_reader import probe_video

    rgb = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", text)
    hex_colour = re.fullmatch(r"\s*#([0-9a-fA-F]{6})\s*", text)
    if rgb:
        values = [int(v) for v in rgb.groups()]
        if max(values) > 255:
            raise InputError(f"--target-bgr {text}: colour values must be 0-255")
        return Target(colour=np.array(values, np.uint8))
    if hex_colour:
        return Target(colour=np.frombuffer(bytes.fromhex(hex_colour.group(1)), np.uint8).copy())
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"--target-bgr {text}: not a colour (R,G,B or #RRGGBB) and no such file")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return Target(image=resize_rgb(read_image(path), (width, height)))
    probe_video(path)  # InputError now, not in the middle of the run
    return Target(video=path)


def looped_frames(path: Path, size: tuple[int, int]):
    """The frames of a target video at ``size``, from the start again whenever it ends."""
    from bgm_jax.io.video_reader import VideoReader

    while True:
        with VideoReader(path, size=size) as reader:
            yield from (frame.image for frame in reader)


def read_background(text: str, width: int, height: int, resize: bool):
    from bgm_jax.io.images import read_image

    bgr = read_image(text)
    if bgr.shape[:2] != (height, width):
        if not resize:
            raise InputError(
                f"--bgr {text}: background is {describe_size(bgr)} but the video frames are {width}x{height}; "
                "give a plate of the same size, or pass --resize-bgr to resize it"
            )
        bgr = resize_rgb(bgr, (width, height))
    return bgr


# ---------------------------------------------------------------------------------------------- the loop


@dataclass
class FrameBatch:
    times: list  # presentation times of the real frames (the batch may be filled up with copies)
    src: object  # uint8 (batch, H, W, 3)
    target: object = None  # uint8 (batch, H, W, 3) target video frames, or None
    bgr: object = None  # uint8 (batch, H, W, 3) backgrounds aligned to each frame (--align), or None


def frame_batches(reader, batch: int, targets=None, align_plate=None):
    """FrameBatch items from a VideoReader (runs in the decode thread, so stacking and alignment
    happen there too). ``align_plate``: the background to align to every frame, or None."""
    import numpy as np

    from bgm_jax.io.pipeline import batched

    def filled(items):  # a short last batch repeats its last item: no recompilation
        return np.stack(items + [items[-1]] * (batch - len(items)))

    for group in batched(reader, batch):
        images = [frame.image for frame in group]
        target = filled([next(targets) for _ in group]) if targets is not None else None
        bgr = None
        if align_plate is not None:
            from bgm_jax.align import align_background

            bgr = filled([align_background(image, align_plate) for image in images])
        yield FrameBatch([frame.time for frame in group], filled(images), target, bgr)


@dataclass
class VideoRunStats:
    frames: int
    seconds: float  # decode + matting + encode, compilation excluded
    compile_seconds: float
    outputs: list = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def open_writer(output: VideoOutput, info, *, overwrite: bool, pha_16bit: bool, encoder: str | None):
    from bgm_jax.io.video_writer import PngSequenceWriter, VideoWriter

    if output.container == "png":
        bits = 16 if output.product(pha_16bit) == "pha_float" else 8
        return PngSequenceWriter(output.path, mode=output.png_mode, bits=bits, overwrite=overwrite)
    audio = info.path if output.kind == "com" and info.has_audio else None
    return VideoWriter(
        output.path, width=info.width, height=info.height, fps=info.fps, time_base=info.time_base,
        audio_from=audio, overwrite=overwrite, codec=encoder if output.container == "mp4" else None,
    )


class FrameSink:
    """The encode-thread side: brings a batch's products to the host and hands each frame to every
    writer; with several outputs each writer encodes in its own thread (they share nothing)."""

    def __init__(self, writers, pha_16bit: bool, materialize, progress):
        from concurrent.futures import ThreadPoolExecutor

        self.writers = writers  # [(VideoOutput, writer)]
        self.pha_16bit = pha_16bit
        self.materialize = materialize
        self.progress = progress
        self.frames = 0
        self.pool = ThreadPoolExecutor(len(writers), thread_name_prefix="bgm-write") if len(writers) > 1 else None

    def frame(self, output: VideoOutput, host: dict, index: int):
        import numpy as np

        pixels = host[output.product(self.pha_16bit)][index]
        if output.container != "png" and pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=-1)  # greyscale maps as opaque grey video
        return pixels

    def write_all(self, output, writer, host: dict, times) -> None:
        for index, t in enumerate(times):
            writer.write(self.frame(output, host, index), time=t)

    def __call__(self, item) -> None:
        times, payload = item
        host = self.materialize(payload)
        if self.pool is None:
            for output, writer in self.writers:
                self.write_all(output, writer, host, times)
        else:
            futures = [self.pool.submit(self.write_all, o, w, host, times) for o, w in self.writers]
            for future in futures:
                future.result()
        self.frames += len(times)
        self.progress.update(len(times))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


class _NoProgress:
    def update(self, n: int) -> None:
        pass


def matte_video(matting, reader, bgr, outputs: list[VideoOutput], *, batch: int = 1, target: Target | None = None,
                overwrite: bool = False, pha_16bit: bool = False, convert: str = "device",
                encoder: str | None = None, align: bool = False, progress=None) -> VideoRunStats:
    """Decode ``reader`` to the end, matte every frame against ``bgr`` and write ``outputs``.

    ``bgr`` is uint8 HxWx3 at the frame size (any size with ``align``, which warps it onto every frame
    in the decode thread); ``target`` is needed when an MP4 ``com`` is written.
    Decoding runs in a thread, the model is dispatched asynchronously from this thread, and conversion
    to the host plus encoding run in the encode thread(s). Returns frame count and timings.
    """
    import contextlib

    import jax.numpy as jnp
    import numpy as np

    from bgm_jax.io.render import render_on_device, render_on_host, warm_up_device_renderer
    from bgm_jax.io.pipeline import Pipeline

    info = reader.info
    size = (info.height, info.width)
    products = tuple(sorted({output.product(pha_16bit) for output in outputs}))
    if "composite" in products and target is None:
        raise ValueError("an MP4 com output needs a target to composite over")
    if "ref" in products and not matting.is_refine:
        raise InputError("ref: the model is a base model, which refines nothing; drop the ref output")
    padded = matting.padded_size(*size)

    targets = None
    target_value = None
    if target is not None:
        if target.video is not None:
            targets = looped_frames(target.video, (info.width, info.height))
        else:
            value = target.colour if target.colour is not None else target.image
            target_value = jnp.asarray(value) if convert == "device" else value

    bgr_device = None if align else matting.put(np.ascontiguousarray(bgr)[None], batch=False)  # uploaded once
    bgr_shape = (batch, *size, 3) if align else bgr_device.shape
    start = time.perf_counter()
    compiled = matting.compiled_for((batch, *size, 3), np.uint8, bgr_shape, np.uint8)
    if convert == "device":
        warm_target = np.zeros((batch, *size, 3), np.uint8) if targets is not None else target_value
        warm_up_device_renderer(compiled, products, padded=padded, target=warm_target)
    compile_seconds = time.perf_counter() - start

    if convert == "device":
        def materialize(payload):
            return {name: np.asarray(array) for name, array in payload.items()}
    else:
        def materialize(payload):
            result, batch_target = payload
            return render_on_host(result, products, padded=padded, target=batch_target)

    if progress is None:
        progress = _NoProgress()
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        writers = [(o, stack.enter_context(open_writer(o, info, overwrite=overwrite, pha_16bit=pha_16bit,
                                                          encoder=encoder))) for o in outputs]
        sink = FrameSink(writers, pha_16bit, materialize, progress)
        stack.callback(sink.close)
        source = frame_batches(reader, batch, targets, align_plate=bgr if align else None)
        # Upload in the decode thread too: the host-to-device copy overlaps the previous batch's compute.
        source = (dataclasses.replace(item, src=matting.put(item.src)) for item in source)
        with Pipeline(source, sink=sink) as pipe:
            for item in pipe:
                frame_bgr = item.bgr if align else bgr_device
                result = matting(item.src, frame_bgr)  # asynchronous dispatch: no host sync here
                batch_target = item.target if item.target is not None else target_value
                if convert == "device":
                    payload = render_on_device(result, products, padded=padded, target=batch_target)
                else:
                    payload = (result, batch_target)
                pipe.put((item.times, payload))
    # leaving the ExitStack closed every writer: encoders flushed, audio finished, files renamed
    seconds = time.perf_counter() - start
    return VideoRunStats(sink.frames, seconds, compile_seconds, [o.path for o in outputs])


def run(args: argparse.Namespace) -> int:
    from bgm_jax.io.video_reader import VideoReader

    outputs = resolve_outputs(args)
    check_outputs_writable(outputs, args.overwrite)
    resize = parse_size(args.resize, "--resize") if args.resize else None
    with VideoReader(args.src, size=resize) as reader:
        info = reader.info
        if args.align:
            from bgm_jax.align import require_opencv
            from bgm_jax.io.images import read_image

            require_opencv()
            bgr = read_image(args.bgr)  # warped onto each frame, whatever its size
        else:
            bgr = read_background(args.bgr, info.width, info.height, args.resize_bgr)
        needs_target = any(o.product(args.pha_16bit) == "composite" for o in outputs)
        target = parse_target(args.target_bgr, info.width, info.height) if needs_target else None
        matting = load_matting(args)
        hint = f" (container says {info.frame_count_hint})" if info.frame_count_hint else ""
        print(f"video: {info.path} {info.width}x{info.height} at {float(info.fps):.3f} fps{hint}, "
              f"rotation {info.rotation}, audio {info.audio_codec or 'none'}")
        with progress_bar(args, total=info.frame_count_hint, unit="frame", desc="matting") as progress:
            # --devices N: N x --batch frames per call, each device mattes --batch of them
            batch = args.batch * matting.device_count
            stats = matte_video(matting, reader, bgr, outputs, batch=batch, target=target,
                                overwrite=args.overwrite, pha_16bit=args.pha_16bit, convert=args.convert,
                                encoder=args.encoder, align=args.align, progress=progress)
    print(f"video: {stats.frames} frames in {stats.seconds:.2f} s = {stats.fps:.2f} fps end to end "
          f"(decode + matting + encode; compilation took {stats.compile_seconds:.2f} s before that)")
    for path in stats.outputs:
        print(f"wrote {path}")
    missing = info.frames_missing(stats.frames)
    if missing:
        what = (f"{info.path} ended after {stats.frames} of the {info.frame_count_hint} frames its container "
                "claims")
        if args.allow_short_video:
            print(f"video: note: {what} (--allow-short-video)", file=sys.stderr)
        else:
            print(f"bgm-jax video: warning: {what}: the file is probably cut short; the outputs hold the "
                  f"{stats.frames} decoded frames. Pass --allow-short-video if the shorter length is expected",
                  file=sys.stderr)
            return 1
    return 0
