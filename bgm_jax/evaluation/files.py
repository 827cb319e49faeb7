"""Predictions, ground truth and trimaps from image files, paired by relative path: the
``bgm-jax eval --pred DIR --gt DIR`` mode (:func:`evaluate_directories`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bgm_jax.errors import InputError
from bgm_jax.evaluation import metrics
from bgm_jax.evaluation.report import TRIMAP_FROM_FILES, EvalReport
from bgm_jax.evaluation.score import QUANTIZE_MODES, quantize_alpha, score_sample

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_alpha(path: str | os.PathLike) -> np.ndarray:
    """A matte from an image file: uint8, uint16 (16-bit PNG) or float32 ('F' images, in [0, 1]).

    Images with an alpha channel (RGBA, LA, PA) give that channel, which is where the original's ``com``
    RGBA PNG keeps the matte; colour images without one are converted to grey.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            return np.asarray(im.getchannel("A"), dtype=np.uint8)
        if im.mode == "L":
            return np.asarray(im, dtype=np.uint8)
        if im.mode.startswith("I"):
            values = np.asarray(im)
            if values.min() < 0 or values.max() > 65535:
                raise ValueError(f"integer image with values {values.min()}..{values.max()}, expected 0..65535")
            return values.astype(np.uint16)
        if im.mode == "F":
            values = np.asarray(im, dtype=np.float32)
            if values.min() < 0 or values.max() > 1:
                raise ValueError(f"float image with values {values.min():g}..{values.max():g}, expected 0..1")
            return values
        return np.asarray(im.convert("L"), dtype=np.uint8)


def read_colour(path: str | os.PathLike) -> np.ndarray:
    """An HxWx3 uint8 colour image; the alpha channel of an RGBA file is dropped, not composited."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_trimap(path: str | os.PathLike) -> np.ndarray:
    """An HxW uint8 trimap; only the value 128 (unknown) matters to the metrics."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("L") if im.mode != "L" else im, dtype=np.uint8)


@dataclass
class ImageIndex:
    """Image files under a folder keyed by relative path without extension (``sub/0001``)."""

    root: Path
    files: dict[str, Path]
    ambiguous: dict[str, list[Path]]


def index_images(root: str | os.PathLike) -> ImageIndex:
    """All PNG/JPEG files under ``root`` (recursively, hidden entries skipped), keyed by relative path
    without extension; keys with more than one file (``a.png`` and ``a.jpg``) are set apart."""
    root = Path(root)
    by_key: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_file():
            by_key.setdefault(rel.with_suffix("").as_posix(), []).append(path)
    files = {k: v[0] for k, v in by_key.items() if len(v) == 1}
    ambiguous = {k: v for k, v in by_key.items() if len(v) > 1}
    return ImageIndex(root, files, ambiguous)


def _existing_dir(path: str | os.PathLike, option: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{option} {path}: not a directory; give the folder holding the images")
    return path


def read_or_unreadable(reader: Callable[[Path], np.ndarray], path: Path) -> np.ndarray:
    from PIL import Image

    try:
        return reader(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # PIL's ways to fail
        raise UnreadableFile(f"unreadable {path}: {e}") from e


class UnreadableFile(Exception):
    """An image file that cannot be decoded; callers report it by name and go on."""


def evaluate_directories(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    trimap_dir: str | os.PathLike | None = None,
    trimap_mode: str = "closing",
    quantize: str = "round",
    fgr_pred_dir: str | os.PathLike | None = None,
    fgr_gt_dir: str | os.PathLike | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> EvalReport:
    """Score every ground-truth matte under ``gt_dir`` against the prediction with the same relative
    path and stem under ``pred_dir`` (extension free among .png/.jpg/.jpeg).

    Trimaps come from ``trimap_dir`` (same pairing; the report's reading is then ``file``) or are
    generated from the ground truth with ``trimap_mode``. With both foreground folders FG MSE is added.
    Files without a partner, unreadable files and size mismatches become report problems, by name;
    only unusable folders or options raise :class:`InputError`.
    """
    if quantize not in QUANTIZE_MODES:
        raise InputError(f"unknown quantisation {quantize!r}; use one of {', '.join(QUANTIZE_MODES)}")
    if trimap_dir is None and trimap_mode not in metrics.TRIMAP_READINGS:
        raise InputError(f"unknown trimap reading {trimap_mode!r}; use one of {', '.join(metrics.TRIMAP_READINGS)}")
    if (fgr_pred_dir is None) != (fgr_gt_dir is None):
        raise InputError("foreground MSE needs both --fgr-pred and --fgr-gt; give both or neither")
    pred = index_images(_existing_dir(pred_dir, "--pred"))
    gt = index_images(_existing_dir(gt_dir, "--gt"))
    trimaps = index_images(_existing_dir(trimap_dir, "--trimap")) if trimap_dir is not None else None
    fgr_pred = index_images(_existing_dir(fgr_pred_dir, "--fgr-pred")) if fgr_pred_dir is not None else None
    fgr_gt = index_images(_existing_dir(fgr_gt_dir, "--fgr-gt")) if fgr_gt_dir is not None else None
    if not gt.files and not gt.ambiguous:
        raise InputError(f"--gt {gt_dir}: no .png/.jpg/.jpeg images found (searched subfolders too)")

    sources = {"pred": str(pred_dir), "gt": str(gt_dir)}
    if trimap_dir is not None:
        reading, trimap_source = TRIMAP_FROM_FILES, f"read from {trimap_dir}"
        sources["trimap"] = str(trimap_dir)
    else:
        reading, trimap_source = trimap_mode, "generated from ground-truth alpha"
    if fgr_pred is not None:
        sources.update(fgr_pred=str(fgr_pred_dir), fgr_gt=str(fgr_gt_dir))
    report = EvalReport(trimap=reading, quantize=quantize, trimap_source=trimap_source, sources=sources)

    for index, label in ((gt, "ground-truth"), (pred, "prediction")):
        for key, paths in index.ambiguous.items():
            names = ", ".join(str(p) for p in paths)
            report.add_problem(key, f"ambiguous {label}: several files share this name ({names}); keep one")
    for key in sorted(set(gt.files) - set(pred.files) - set(pred.ambiguous)):
        report.add_problem(key, f"no prediction for {gt.files[key]} under {pred_dir}")
    for key in sorted(set(pred.files) - set(gt.files) - set(gt.ambiguous)):
        report.add_problem(key, f"no ground truth for {pred.files[key]} under {gt_dir}")

    keys = sorted(set(gt.files) & set(pred.files))
    for key in progress(keys) if progress is not None else keys:
        try:
            scores = _score_files(key, pred, gt, trimaps, reading, quantize, fgr_pred, fgr_gt, report)
        except (UnreadableFile, InputError) as e:
            report.add_problem(key, str(e))
            continue
        report.add(key, scores)
    return report


def _score_files(
    key: str,
    pred: ImageIndex,
    gt: ImageIndex,
    trimaps: ImageIndex | None,
    reading: str,
    quantize: str,
    fgr_pred: ImageIndex | None,
    fgr_gt: ImageIndex | None,
    report: EvalReport,
) -> dict[str, float]:
    gt_alpha = read_or_unreadable(read_alpha, gt.files[key])
    pred_alpha = quantize_alpha(read_or_unreadable(read_alpha, pred.files[key]), quantize)
    if trimaps is None:
        trimap: np.ndarray | str = reading
    elif key in trimaps.files:
        trimap = read_or_unreadable(read_trimap, trimaps.files[key])
    else:
        raise InputError(f"no trimap for {gt.files[key]} under {trimaps.root}")

    pred_fgr = gt_fgr = None
    if fgr_pred is not None and fgr_gt is not None:
        wanted = ((fgr_pred, "predicted foreground"), (fgr_gt, "ground-truth foreground"))
        missing = [f"{label} under {index.root}" for index, label in wanted if key not in index.files]
        if missing:
            # alpha metrics are still valid; only FG MSE is missing for this image
            report.add_problem(key, "no " + " and no ".join(missing) + "; FG MSE not scored for it")
        else:
            pred_fgr = quantize_alpha(read_or_unreadable(read_colour, fgr_pred.files[key]), quantize)
            gt_fgr = read_or_unreadable(read_colour, fgr_gt.files[key])
    try:
        return score_sample(pred_alpha, gt_alpha, trimap, pred_fgr, gt_fgr)
    except InputError as e:
        raise InputError(f"{pred.files[key]} vs {gt.files[key]}: {e}") from e
