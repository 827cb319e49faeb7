"""Judge a trained model, not assume it: held-out scores against random weights and tuned difference keying,
temporal stability on a generated clip through `bgm-jax video`, and picture grids.

    python -m train.judge --data-dir ~/bgm-jax-data --out runs/judge                  # the embedded model
    python -m train.judge --model runs/photo_refine/export --data-dir ~/bgm-jax-data --out runs/judge

1. Images: the held-out split of ``photo_matting/image`` (photos and seeds never seen in training) under
   the paper's test-time protocol (composite over the clean background, the model gets the D.2-perturbed
   plate), scored with the project's metrics (SAD, MSE, Grad, Conn; closing trimap, 8-bit alpha), for
   (a) the model, (b) the same architecture with random weights, (c) difference keying with its two
   thresholds and blur tuned on the training split under the same protocol; and the model again with
   ``flip_average`` (each image also matted mirrored, the two averaged: twice the compute), for reference:
   the keying ratio is the plain model's.
2. Video: a generated clip (a procedural subject moving over a static plate, 512x288, 60 frames) encoded
   as H.264, matted by the `bgm-jax video` command against the perturbed plate, the alpha PNGs read back
   and scored with the evaluation package's video metrics (MAD, MSE, dtSSD); keying on the same frames
   for comparison. dtSSD measures flicker: errors that change from frame to frame.
3. Where the error sits: the alpha error of each method split by region (the closing trimap's band, and
   within it soft pixels, the gaps below 0.06 and the solid pixels; the band again by structure: veils,
   thin strands, the rest; outside the band, which SAD ignores) on the first ``REGION_IMAGES`` test images;
   and on every test image, the model's error inside the band by true alpha (``ALPHA_BINS``): mean signed
   error (bias), mean absolute error, and each bin's share of SAD, plain and mirror-averaged.
4. ``examples.png``: source, truth, keying and model alpha for a few test images, with a zoomed strand region.

Each test image goes through the model once per setting (plain, mirror-averaged): the passes above share
the answers (:class:`Remembered`). Writes ``judge.json`` and ``judge.md`` to ``--out``; prints the tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

IMAGE_METRICS = ("SAD", "MSE", "Grad", "Conn")
REGION_IMAGES = 16
# (name, lower bound, upper bound) of the true alpha inside the band; the trimap's own thresholds
BAND_REGIONS = (("band_soft", 0.06, 0.96), ("band_below_0.06", -1.0, 0.06), ("band_from_0.96", 0.96, 2.0))

# bins of the true alpha inside the band, for the error by true alpha (the first and last are the trimap's)
ALPHA_BINS = ((-1.0, 0.06), (0.06, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 0.96), (0.96, 2.0))


STRUCTURES = ("shape_veil", "shape_thin", "shape_rest")


def structure_masks(truth: np.ndarray) -> dict[str, np.ndarray]:
    """The pixels of a true alpha (HxW in [0, 1]) by the structure they belong to, disjoint and covering it:
    ``shape_veil``, the inside of a semi-transparent area (soft alpha over a whole 7x7 neighbourhood);
    ``shape_thin``, foreground (alpha > 0.06) that a 5x5 opening removes, so narrower than 5 px (strands,
    thin lines), outside veils; ``shape_rest``, everything else (solid areas, their edges, background)."""
    from scipy import ndimage

    foreground = truth > 0.06
    veil = ndimage.binary_erosion(foreground & (truth < 0.96), np.ones((7, 7), bool))
    thin = foreground & ~ndimage.binary_opening(foreground, np.ones((5, 5), bool)) & ~veil
    return {"shape_veil": veil, "shape_thin": thin, "shape_rest": ~veil & ~thin}


def error_by_region(predictors: dict, test_set, count: int = REGION_IMAGES) -> dict[str, dict[str, float]]:
    """Per method, the mean per image of sum |alpha - truth| / 1000 (SAD's unit) in each region: inside the
    closing trimap's unknown band split by the true alpha (``BAND_REGIONS``; the three add up to SAD), the
    same band split by structure (``STRUCTURES``, :func:`structure_masks`; these three add up to SAD too),
    and ``outside_band`` (pixels SAD does not score). Alphas quantised to 8 bits as the protocol scores them."""
    from bgm_jax.evaluation import metrics, protocol
    from bgm_jax.evaluation.score import quantize_alpha

    sums = {name: {region: 0.0 for region in (*(r[0] for r in BAND_REGIONS), *STRUCTURES, "outside_band")}
            for name in predictors}
    count = min(count, len(test_set))
    for index in range(count):
        sample = protocol.protocol_input(test_set.load(index))
        truth = metrics.to_unit_float32(sample.gt_pha)
        band = metrics.unknown_region(metrics.trimap_from_alpha(sample.gt_pha, "closing"))
        masks = {name: band & (truth >= low) & (truth < high) for name, low, high in BAND_REGIONS}
        masks.update({name: band & mask for name, mask in structure_masks(truth).items()})
        masks["outside_band"] = ~band
        for name, predict in predictors.items():
            pha = np.asarray(predict(sample.src[None], sample.bgr[None]).pha)[0, ..., 0]
            error = np.abs(metrics.to_unit_float32(quantize_alpha(pha)) - truth)
            for region, mask in masks.items():
                sums[name][region] += float(error[mask].sum(dtype=np.float64)) / 1000.0
    return {name: {region: value / count for region, value in regions.items()} for name, regions in sums.items()}


def bin_name(low: float, high: float) -> str:
    return f"below {high:g}" if low < 0 else f"from {low:g}" if high > 1 else f"{low:g}..{high:g}"


def error_by_true_alpha(predict, test_set, count: int | None = None) -> dict[str, dict[str, float]]:
    """Inside the closing trimap's band, per bin of the true alpha (``ALPHA_BINS``): ``signed``, the mean of
    alpha - truth over its pixels (a bias: negative = under-estimated); ``absolute``, the mean |alpha - truth|;
    ``sad``, the mean per image of sum |alpha - truth| / 1000 (the bins' ``sad`` add up to SAD); ``pixels``.
    Alphas quantised to 8 bits as the protocol scores them; ``count`` = the first images (default all)."""
    from bgm_jax.evaluation import metrics, protocol
    from bgm_jax.evaluation.score import quantize_alpha

    count = len(test_set) if count is None else min(count, len(test_set))
    signed, absolute, pixels = (np.zeros(len(ALPHA_BINS), np.float64) for _ in range(3))
    for index in range(count):
        sample = protocol.protocol_input(test_set.load(index))
        truth = metrics.to_unit_float32(sample.gt_pha)
        band = metrics.unknown_region(metrics.trimap_from_alpha(sample.gt_pha, "closing"))
        pha = np.asarray(predict(sample.src[None], sample.bgr[None]).pha)[0, ..., 0]
        error = metrics.to_unit_float32(quantize_alpha(pha)) - truth
        for k, (low, high) in enumerate(ALPHA_BINS):
            mask = band & (truth >= low) & (truth < high)
            signed[k] += error[mask].sum(dtype=np.float64)
            absolute[k] += np.abs(error[mask]).sum(dtype=np.float64)
            pixels[k] += mask.sum()
    safe = np.maximum(pixels, 1)
    return {bin_name(low, high): {"signed": float(signed[k] / safe[k]), "absolute": float(absolute[k] / safe[k]),
                                  "sad": float(absolute[k] / 1000 / max(count, 1)), "pixels": int(pixels[k])}
            for k, (low, high) in enumerate(ALPHA_BINS)}


class Answer(NamedTuple):
    pha: np.ndarray
    fgr: np.ndarray


class Remembered:
    """A predictor that remembers each answer by its input, so the judge's passes over the same test images
    (scores, regions, error by true alpha, examples) run the model once per image; ``calls`` counts the runs.
    An input seen before (same shape, dtype and bytes of ``src`` and ``bgr``) gets the same answer back.
    Answers are kept on the host: about 4 MB per 512x512 image."""

    def __init__(self, predict):
        self.predict, self.answers, self.calls = predict, {}, 0

    def __call__(self, src, bgr) -> Answer:
        src, bgr = np.ascontiguousarray(src), np.ascontiguousarray(bgr)
        digest = hashlib.sha256(src.tobytes())
        digest.update(bgr.tobytes())
        key = (src.shape, src.dtype.str, bgr.shape, bgr.dtype.str, digest.hexdigest())
        if key not in self.answers:
            out = self.predict(src, bgr)
            self.answers[key] = Answer(np.asarray(out.pha), np.asarray(out.fgr))
            self.calls += 1
        return self.answers[key]


def image_scores(matting, test_set) -> dict[str, float]:
    from bgm_jax.evaluation import protocol

    return protocol.evaluate_model(matting, test_set, batch_size=1).mean()


def tuned_keyer(data_dir: str, dataset: str, count: int):
    from bgm_jax.evaluation import keying, protocol

    train = protocol.open_test_set(dataset, data_dir=data_dir, split="train")
    return keying.tune_keyer(keying.protocol_samples(train, count))


def judge_video(model: str | None, keyer, out: Path, *, frames: int = 60, size=(288, 512), seed: int = 5) -> dict:
    """The clip, `bgm-jax video`, and the video metrics of the model's and the keyer's alphas."""
    from PIL import Image

    from bgm_jax.cli import main as cli_main
    from bgm_jax.datasets import synthetic
    from bgm_jax.evaluation import metrics
    from bgm_jax.evaluation.perturb import perturb_background
    from bgm_jax.io.video_reader import VideoReader
    from bgm_jax.io.video_writer import VideoWriter

    height, width = size
    clip = synthetic.make_clip(seed, frames, height, width)
    pha_true = clip["pha"].astype(np.float32) / 255
    src = (pha_true[..., None] * clip["fgr"] + (1 - pha_true[..., None]) * clip["bgr"]).round().astype(np.uint8)
    plate = np.round(perturb_background(clip["bgr"], seed) * 255).astype(np.uint8)
    folder = out / "video"
    folder.mkdir(parents=True, exist_ok=True)
    with VideoWriter(folder / "src.mp4", fps=30, width=width, height=height, overwrite=True) as writer:
        for frame in src:
            writer.write(frame)
    Image.fromarray(plate).save(folder / "plate.png")
    argv = ["video", "--src", str(folder / "src.mp4"), "--bgr", str(folder / "plate.png"), "--pha",
            str(folder / "pha"), "--overwrite", "--no-progress"]
    if model is not None:
        argv += ["--model", model]
    start = time.perf_counter()
    code = cli_main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"bgm-jax video exited with {code}")
    pngs = sorted((folder / "pha").glob("*.png"))
    pha_model = np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in pngs])
    decoded = np.stack([frame.image for frame in VideoReader(folder / "src.mp4")]).astype(np.float32) / 255
    pha_key = np.stack([keyer.key(f, plate.astype(np.float32) / 255) for f in decoded])
    return {
        "frames": len(pngs), "size": f"{width}x{height}", "command_seconds": round(seconds, 1),
        "model": metrics.video_metrics(pha_model, pha_true), "keying": metrics.video_metrics(pha_key, pha_true),
    }


def example_grid(matting, keyer, test_set, path: Path, count: int = 3) -> None:
    """Rows of source | truth | keying | model, plus a 4x zoom of each alpha around its finest detail."""
    from PIL import Image

    from bgm_jax.evaluation import protocol
    from bgm_jax.io.outputs import to_uint8

    rows = []
    for index in range(count):
        sample = protocol.protocol_input(test_set.load(index))
        src, bgr = sample.src[None], sample.bgr[None]
        gt = sample.gt_pha.astype(np.float32) / 255
        alphas = [gt, keyer(src, bgr).pha[0, ..., 0], np.asarray(matting(src, bgr).pha[0, ..., 0])]
        # zoom where the truth has the most fractional alpha (strands): a 64x64 window, 4x nearest
        frac = ((gt > 0.05) & (gt < 0.95)).astype(np.float32)
        h, w = gt.shape
        sums = frac.reshape(h // 32, 32, w // 32, 32).sum(axis=(1, 3))
        r, c = np.unravel_index(np.argmax(sums[:-1, :-1] + sums[1:, :-1] + sums[:-1, 1:] + sums[1:, 1:]), (h // 32 - 1, w // 32 - 1))
        window = (slice(r * 32, r * 32 + 64), slice(c * 32, c * 32 + 64))
        zoom = lambda a: np.kron(a[window], np.ones((4, 4), np.float32))  # noqa: E731
        grey = lambda a: np.repeat(a[..., None], 3, axis=-1)  # noqa: E731
        panels = [sample.src] + [grey(a) for a in alphas]
        zooms = [np.kron(sample.src[window], np.ones((4, 4, 1), np.float32))] + [grey(zoom(a)) for a in alphas]
        scale = h / zooms[0].shape[0]
        zooms = [np.asarray(Image.fromarray(to_uint8(z)).resize((round(z.shape[1] * scale), h))) / 255.0 for z in zooms]
        rows.append(np.concatenate([np.concatenate(panels, axis=1), np.concatenate(zooms, axis=1)], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(to_uint8(grid)).save(path)


def markdown(result: dict) -> str:
    lines = ["| method | " + " | ".join(IMAGE_METRICS) + " |", "|---|" + "---|" * len(IMAGE_METRICS)]
    for name in ("model", "model_flip_average", "keying", "random"):
        scores = result["images"].get(name)
        if scores is not None:
            label = "model, flip-averaged (2x compute)" if name == "model_flip_average" else name
            lines.append(f"| {label} | " + " | ".join(f"{scores[m]:.2f}" for m in IMAGE_METRICS) + " |")
    regions = result.get("regions")
    if regions:
        names = [n for n in regions if n != "images"]
        lines += ["", f"| region (first {regions['images']} images, mean sum/1000 per image) | "
                  + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for region in regions[names[0]]:
            lines.append(f"| {region} | " + " | ".join(f"{regions[n][region]:.2f}" for n in names) + " |")
    by_alpha = result.get("by_true_alpha")
    if by_alpha:
        names = [n for n in by_alpha if n != "images"]
        bins = list(by_alpha[names[0]])
        lines += ["", f"| error in the band by true alpha ({by_alpha['images']} images) | " + " | ".join(bins) + " |",
                  "|---|" + "---|" * len(bins)]
        for name in names:
            for key, label in (("signed", "mean signed"), ("absolute", "mean absolute"), ("sad", "share of SAD")):
                form = "{:+.3f}" if key == "signed" else "{:.3f}"
                lines.append(f"| {name}: {label} | " + " | ".join(form.format(by_alpha[name][b][key]) for b in bins)
                             + " |")
    video = result.get("video")
    if video:
        lines += ["", "| video | MAD (x1e3) | MSE (x1e3) | dtSSD (x1e2) |", "|---|---|---|---|"]
        for name in ("model", "keying"):
            v = video[name]
            lines.append(f"| {name} | {v['MAD']:.2f} | {v['MSE']:.2f} | {v['dtSSD']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.judge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: the model embedded in bgm-jax)")
    parser.add_argument("--data-dir", default="~/bgm-jax-data")
    parser.add_argument("--dataset", default="photo_matting/image")
    parser.add_argument("--keying-samples", type=int, default=200, help="training records the keyer is tuned on")
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-video", action="store_true")
    args = parser.parse_args(argv)

    import bgm_jax
    from bgm_jax.cli.common import random_weight_matting
    from bgm_jax.evaluation import protocol

    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = str(Path(args.data_dir).expanduser())
    test_set = protocol.open_test_set(args.dataset, data_dir=data_dir)
    loaded = bgm_jax.load(args.model)
    matting, flipped = Remembered(loaded), Remembered(loaded.with_settings(flip_average=True))
    tuning = tuned_keyer(data_dir, args.dataset, args.keying_samples)
    keyer = tuning.keyer
    random = random_weight_matting(loaded.config["backbone"], {}, None)
    result = {
        "model": args.model or "embedded",
        "dataset": f"{args.dataset} test split ({len(test_set)} images), test-time protocol (D.2), closing trimap",
        "keying": {"low": keyer.low, "high": keyer.high, "blur_sigma": keyer.blur_sigma,
                   "tuned_on": f"{tuning.count} training records", "train_sad": tuning.mean_sad},
        "images": {"model": image_scores(matting, test_set),
                   "model_flip_average": image_scores(flipped, test_set),
                   "keying": image_scores(keyer, test_set), "random": image_scores(random, test_set)},
    }
    result["sad_ratio_keying_over_model"] = result["images"]["keying"]["SAD"] / result["images"]["model"]["SAD"]
    result["regions"] = {"images": min(REGION_IMAGES, len(test_set)),
                         **error_by_region({"model": matting, "keying": keyer}, test_set)}
    result["by_true_alpha"] = {"images": len(test_set), "model": error_by_true_alpha(matting, test_set),
                               "model_flip_average": error_by_true_alpha(flipped, test_set)}
    if not args.no_video:
        result["video"] = judge_video(args.model, keyer, out)
    example_grid(matting, keyer, test_set, out / "examples.png")
    (out / "judge.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "judge.md").write_text(markdown(result))
    print(markdown(result))
    print(f"keying SAD / model SAD: {result['sad_ratio_keying_over_model']:.2f}")
    print(f"model runs: {matting.calls} plain, {flipped.calls} mirror-averaged ({len(test_set)} test images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
