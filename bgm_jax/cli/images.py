"""Matte still images against their clean backgrounds and write the outputs as PNGs.

    bgm-jax images --model ckpt/resnet50 --src shots/ --bgr plates/ --out results/ --outputs com,pha

--src is a file, a folder (searched recursively) or a glob; --bgr one image for every source, or a
folder paired by relative path (shots/day1/a.jpg <-> plates/day1/a.png). Outputs mirror the source tree
under OUT/<type>/: com (RGBA PNG: foreground colour + alpha), pha (8-bit PNG; 16-bit with --pha-16bit),
fgr (RGB PNG), err and ref (greyscale PNGs at the source size). Values are rounded, not truncated.

Unreadable or mismatched inputs are reported by name and skipped; a summary follows at the end.
Exit status: 0 when every image was written, 1 when some failed, 2 for unusable arguments (no
sources, no model, outputs that already exist without --overwrite, ...).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bgm_jax.cli.common import (
    add_devices_argument,
    add_model_arguments,
    add_progress_argument,
    describe_size,
    load_matting,
    parse_choices,
    positive_int,
    progress_bar,
    resize_rgb,
)
from bgm_jax.errors import DeviceMemoryError, InputError

OUTPUT_TYPES = ("com", "pha", "fgr", "err", "ref")
# Output type -> the render product it is written from (see bgm_jax.io.render).
PRODUCT_OF = {"com": "rgba", "pha": "pha", "fgr": "fgr", "err": "err", "ref": "ref"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' line breaks
    parser.add_argument("--src", required=True, metavar="PATH",
                        help="source image, folder (recursive) or glob pattern (quote it: 'shots/*.jpg')")
    parser.add_argument("--bgr", required=True, metavar="PATH",
                        help="background image for every source, or a folder paired by relative path")
    parser.add_argument("--sorted-pairing", action="store_true",
                        help="pair a --bgr folder by sorted order instead of by name (counts must match)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--outputs", default="com,pha", metavar="LIST",
                        help="comma-separated output types: com,pha,fgr,err,ref (default: com,pha)")
    parser.add_argument("--pha-16bit", action="store_true", help="write pha as 16-bit PNG")
    parser.add_argument("--resize-bgr", action="store_true",
                        help="resize a background of another size to its source (default: report and skip)")
    parser.add_argument("--align", action="store_true",
                        help="align each background to its source first (handheld shots; ORB + RANSAC "
                        "homography as the original's --preprocess-alignment; needs the align extra, OpenCV)")
    parser.add_argument("--batch", type=positive_int, default=1, metavar="N",
                        help="images of one size matted together, per device (default: 1)")
    add_devices_argument(parser)
    parser.add_argument(
        "--size-bucket", type=positive_int, default=4, metavar="N",
        help="pad images (edge-replicated, cropped from the outputs) to multiples of N pixels, so a folder "
        "of mixed sizes compiles fewer shapes; the default 4 is exact",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--skip-existing", action="store_true",
                        help="leave existing outputs alone and write only the missing ones (resume a run)")
    add_progress_argument(parser)
    add_model_arguments(parser)


# ---------------------------------------------------------------------------------------------- loading


@dataclass
class LoadedPair:
    """A source and its background, read and ready for the model."""

    source: object  # bgm_jax.io.images.ImageFile
    src: object  # uint8 HxWx3, padded to the size bucket
    bgr: object  # uint8 HxWx3, same shape as src
    height: int  # before padding to the size bucket
    width: int


@dataclass
class FailedPair:
    source: object
    reason: str


def pad_to_multiple(image, multiple: int):
    """Edge-pad an HxWx3 image at the bottom and right to multiples of ``multiple``."""
    import numpy as np

    from bgm_jax.model_spec import pad_amounts

    pad_h, pad_w = pad_amounts(image.shape[0], image.shape[1], multiple)
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def read_pairs(pairs, *, resize_bgr: bool, size_bucket: int, align: bool = False):
    """LoadedPair or FailedPair for each (ImageFile, background path), in order (runs in the decode thread)."""
    from bgm_jax.io.images import read_image

    if align:
        from bgm_jax.align import align_background

    cached_path, cached_bgr = None, None  # one background for all sources is read once
    for source, bgr_path in pairs:
        try:
            src = read_image(source.path)
            if bgr_path != cached_path:
                cached_bgr, cached_path = read_image(bgr_path), bgr_path
            bgr = cached_bgr
        except InputError as e:
            yield FailedPair(source, str(e))
            continue
        if align:
            bgr = align_background(src, bgr)  # warped onto the source's grid, whatever its size
        if bgr.shape != src.shape:
            if not resize_bgr:
                yield FailedPair(
                    source,
                    f"background {bgr_path} is {describe_size(bgr)} but the source is "
                    f"{describe_size(src)}; pass --resize-bgr to resize backgrounds to their sources",
                )
                continue
            bgr = resize_rgb(bgr, (src.shape[1], src.shape[0]))
        height, width = src.shape[:2]
        yield LoadedPair(source, pad_to_multiple(src, size_bucket), pad_to_multiple(bgr, size_bucket), height, width)


# ---------------------------------------------------------------------------------------------- writing


class ImageWriter:
    """The encode-thread side: converts a batch's products to numpy and writes each requested file."""

    def __init__(self, out: Path, kinds: list[str], *, pha_16bit: bool, overwrite: bool, skip_existing: bool,
                 report, progress):
        self.out, self.kinds = out, kinds
        self.pha_16bit, self.overwrite, self.skip_existing = pha_16bit, overwrite, skip_existing
        self.report, self.progress = report, progress
        self.written = 0
        self.kept = 0  # sources whose outputs all existed (--skip-existing)

    def paths(self, source) -> dict[str, Path]:
        from bgm_jax.io.outputs import output_path

        return {kind: output_path(self.out, kind, source.relative) for kind in self.kinds}

    def __call__(self, item) -> None:
        import jax
        import numpy as np

        from bgm_jax.memory import is_out_of_memory, out_of_memory_error

        pairs, products, shape, precision = item
        try:
            host = {name: np.asarray(array) for name, array in products.items()}
        except jax.errors.JaxRuntimeError as e:  # e.g. out of device memory for a large batch
            reason = (str(out_of_memory_error(e, shape=shape, precision=precision)) if is_out_of_memory(e)
                      else f"the model failed ({str(e).splitlines()[0]})")
            for pair in pairs:
                self.report(pair.source, reason)
            self.progress.update(len(pairs))
            return
        for index, pair in enumerate(pairs):
            self.write_pair(pair, host, index)
            self.progress.update(1)

    def write_pair(self, pair: LoadedPair, host: dict, index: int) -> None:
        """Every requested output of one source, or none: when one cannot be written, the ones this run
        wrote for the source are removed, so the summary's count of written sources is the whole truth."""
        from bgm_jax.io.outputs import write_image, write_pha

        written = []
        for kind, path in self.paths(pair.source).items():
            if self.skip_existing and path.exists():
                continue
            pixels = host[self.product(kind)][index][: pair.height, : pair.width]
            try:
                if kind == "pha" and self.pha_16bit:
                    write_pha(path, pixels, bits=16, overwrite=self.overwrite)
                else:
                    write_image(path, pixels, overwrite=self.overwrite)
            except (InputError, OSError) as e:
                for done in written:
                    done.unlink(missing_ok=True)
                message = str(e) if str(e).startswith(str(path)) else f"{path}: cannot write ({e})"
                self.report(pair.source, message)
                return
            written.append(path)
        self.written += 1

    def product(self, kind: str) -> str:
        return "pha_float" if kind == "pha" and self.pha_16bit else PRODUCT_OF[kind]


# ---------------------------------------------------------------------------------------------- running


def check_existing_outputs(writer: ImageWriter, pairs, *, overwrite: bool, skip_existing: bool):
    """Refuse to start when outputs exist (unless asked), before any model work; returns the pairs to do."""
    if overwrite:
        return pairs
    todo, existing = [], []
    for source, bgr in pairs:
        found = [path for path in writer.paths(source).values() if path.exists()]
        existing += found
        if not (skip_existing and len(found) == len(writer.kinds)):
            todo.append((source, bgr))
    if existing and not skip_existing:
        listed = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise InputError(
            f"{len(existing)} output file(s) already exist ({listed}); pass --overwrite to replace them, "
            "--skip-existing to write only the missing ones, or choose another --out"
        )
    writer.kept = len(pairs) - len(todo)
    return todo


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from bgm_jax.io.render import render_on_device
    from bgm_jax.io.atomic import ensure_dir
    from bgm_jax.io.images import collect_images, pair_backgrounds
    from bgm_jax.io.pipeline import Pipeline

    if args.overwrite and args.skip_existing:
        raise InputError("--overwrite replaces existing outputs, --skip-existing keeps them; give one of the two")
    kinds = parse_choices(args.outputs, OUTPUT_TYPES, "--outputs")
    if args.align:
        from bgm_jax.align import require_opencv

        require_opencv()
    sources = collect_images(args.src, what="--src")
    pairing = pair_backgrounds(sources, args.bgr, sorted_order=args.sorted_pairing)
    out = ensure_dir(Path(args.out).expanduser())

    failures: list[tuple[str, str]] = []
    lock = threading.Lock()

    def report(source, reason: str) -> None:
        reason = reason.removeprefix(f"{source.path}: ")  # read errors name the file; say it once
        with lock:
            failures.append((str(source.path), reason))
        progress.write(f"skipped {source.path}: {reason}", file=sys.stderr)

    writer = ImageWriter(out, kinds, pha_16bit=args.pha_16bit, overwrite=args.overwrite,
                         skip_existing=args.skip_existing, report=report, progress=None)
    todo = check_existing_outputs(writer, pairing.pairs, overwrite=args.overwrite, skip_existing=args.skip_existing)
    if not todo and not pairing.unpaired:
        print(f"images: all {len(sources)} already written to {out} (--skip-existing); nothing to do")
        return 0
    matting = load_matting(args)
    if "ref" in kinds and not matting.is_refine:
        raise InputError(f"--outputs ref: {args.model} is a base model, which refines nothing; drop ref")
    products = tuple(sorted({writer.product(kind) for kind in kinds}))
    batch = args.batch * matting.device_count  # one call fills every device
    progress = writer.progress = progress_bar(args, total=len(sources), unit="image", desc="matting")

    for source, reason in pairing.unpaired:
        report(source, reason)
    progress.update(len(pairing.unpaired) + writer.kept)

    start = time.perf_counter()
    refused: dict[tuple, str] = {}  # shape -> why it does not fit in memory (not compiled again)

    def dispatch(pipe: Pipeline, bucket: list[LoadedPair]) -> None:
        # A short last batch is filled with copies of its last image: a new batch size would compile again.
        fill = [bucket[-1]] * (batch - len(bucket))
        shape = (batch, *bucket[0].src.shape)
        if shape not in refused:
            src = np.stack([pair.src for pair in bucket + fill])
            bgr = np.stack([pair.bgr for pair in bucket + fill])
            try:
                result = matting(src, bgr)  # asynchronous: the encode thread's np.asarray waits for it
            except DeviceMemoryError as e:
                refused[shape] = str(e)
        if shape in refused:  # the other sizes may fit: report these sources and go on
            for pair in bucket:
                report(pair.source, refused[shape])
            progress.update(len(bucket))
            return
        padded = matting.padded_size(src.shape[1], src.shape[2])
        pipe.put((bucket, render_on_device(result, products, padded=padded), shape, matting.settings.precision))

    buckets: dict[tuple, list[LoadedPair]] = {}
    with progress, Pipeline(read_pairs(todo, resize_bgr=args.resize_bgr, size_bucket=args.size_bucket,
                                       align=args.align),
                            sink=writer) as pipe:
        for item in pipe:
            if isinstance(item, FailedPair):
                report(item.source, item.reason)
                progress.update(1)
                continue
            bucket = buckets.setdefault(item.src.shape, [])
            bucket.append(item)
            if len(bucket) == batch:
                dispatch(pipe, buckets.pop(item.src.shape))
        for bucket in buckets.values():
            dispatch(pipe, bucket)
    elapsed = time.perf_counter() - start

    print_summary(out, len(sources), writer, failures, elapsed, matting.compile_count)
    if matting.compile_count > 2 and args.size_bucket < 32:
        print(f"images: hint: {matting.compile_count} image sizes each compiled the model once; "
              "--size-bucket 64 pads them to fewer sizes")
    return 1 if failures else 0


def print_summary(out: Path, total: int, writer: ImageWriter, failures, elapsed: float, compiles: int) -> None:
    kept = f", {writer.kept} already done" if writer.kept else ""
    print(f"images: {writer.written} of {total} written to {out}{kept}, {len(failures)} failed "
          f"({elapsed:.1f} s, {compiles} compiled shape(s))")
    if failures:
        names = [name for name, _ in failures]
        more = f" and {len(names) - 20} more" if len(names) > 20 else ""
        print(f"images: failed (reasons above): {', '.join(names[:20])}{more}", file=sys.stderr)
