"""Scoring matting predictions the way the paper's Table 1 does, and reporting the numbers.

The pieces, usable on their own:

- :func:`quantize_alpha`: a float prediction to 8 bits (``round``, or ``floor`` as the original saved
  its outputs) or left as float (``none``).
- :func:`score_sample`: one prediction against its ground truth -> ``{"SAD", "MSE", "Grad", "Conn"
  [, "FG_MSE"]}`` in the paper's units, after cropping everything top-left to multiples of 4.
- :class:`EvalReport`: rows of scores plus the problems met on the way; prints the per-image + mean
  table and writes CSV/JSON, always naming the trimap reading and the quantisation used.
- :func:`evaluate_directories`: the ``bgm-jax eval --pred DIR --gt DIR`` mode, pairing files by
  relative path.
- :func:`perturb_background`: the supplement's test-time background perturbation, from a seed.
- :func:`evaluate_model`: the ``bgm-jax eval --model CKPT --dataset NAME`` mode: a test set
  (:func:`open_test_set`) through the test-time protocol (:func:`protocol_input`), the model, and the
  same :func:`quantize_alpha` and :func:`score_sample` as the folder mode; optionally saving the
  predictions (:class:`PredictionWriter`) so that the folder mode can re-score them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from bgm_jax import metrics
from bgm_jax.errors import InputError

QUANTIZE_MODES = ("round", "floor", "none")
ALPHA_METRICS = ("SAD", "MSE", "Grad", "Conn")
FOREGROUND_METRIC = "FG_MSE"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CROP_NOTE = "top-left to multiples of 4"
TRIMAP_FROM_FILES = "file"

# column headings for the printed table, in the paper's units
_TABLE_HEADINGS = {"SAD": "SAD/1e3", "MSE": "MSE x1e3", "Grad": "Grad", "Conn": "Conn", "FG_MSE": "FG MSE x1e3"}


# ---------------------------------------------------------------------------------------------------
# single samples


def quantize_alpha(image: np.ndarray, mode: str = "round") -> np.ndarray:
    """A predicted alpha (or foreground) as the evaluation sees it.

    8-bit input is already quantised and is returned unchanged. Otherwise the values (16-bit integers
    scaled by 1/65535, or floats) are clipped to [0, 1] and then

    - ``round``: ``rint(255 x)`` to uint8 (half to even, like ``torch.round``);
    - ``floor``: ``floor(255 x)`` to uint8, which is what the original's ``(x * 255).byte()`` saved;
    - ``none``: kept as float32, scored at full precision.

    The products are taken in float32, as the original computed them.
    """
    if mode not in QUANTIZE_MODES:
        raise InputError(f"unknown quantisation {mode!r}; use one of {', '.join(QUANTIZE_MODES)}")
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    unit = np.clip(metrics.to_unit_float32(image), 0.0, 1.0)
    if mode == "none":
        return unit
    scaled = unit * np.float32(255)
    return (np.rint(scaled) if mode == "round" else np.floor(scaled)).astype(np.uint8)


def crop_to_multiple_of_4(image: np.ndarray) -> np.ndarray:
    """The top-left ``(H // 4 * 4) x (W // 4 * 4)`` part, the size the model can process."""
    h, w = np.shape(image)[:2]
    return image[: h - h % 4, : w - w % 4]


def score_sample(
    pred_alpha: np.ndarray,
    gt_alpha: np.ndarray,
    trimap: np.ndarray | str,
    pred_fgr: np.ndarray | None = None,
    gt_fgr: np.ndarray | None = None,
) -> dict[str, float]:
    """All image metrics of one sample, in the paper's units.

    ``pred_alpha``/``gt_alpha`` are HxW (uint8 as stored, or float in [0, 1] for unquantised
    predictions). ``trimap`` is an HxW uint8 trimap (128 = unknown) or the name of a reading
    (``"closing"``/``"band"``) to generate from the ground truth. With ``pred_fgr`` and ``gt_fgr``
    (HxWx3) the result also has ``FG_MSE``. Every array is first cropped top-left to multiples of 4, so
    a prediction cropped that way scores against an uncropped ground truth; sizes that still differ
    raise :class:`InputError`. A trimap given by name is generated after cropping.
    """
    if (pred_fgr is None) != (gt_fgr is None):
        raise InputError("foreground MSE needs both the predicted and the ground-truth foreground; give both or neither")
    for name, alpha in (("predicted alpha", pred_alpha), ("ground-truth alpha", gt_alpha)):
        if np.ndim(alpha) != 2:
            raise InputError(f"{name} has shape {np.shape(alpha)}; expected a 2-D HxW matte")
    pred_alpha, gt_alpha = crop_to_multiple_of_4(pred_alpha), crop_to_multiple_of_4(gt_alpha)
    if gt_alpha.size == 0:
        raise InputError(f"ground-truth alpha is smaller than 4x4 ({np.shape(gt_alpha)} after cropping)")
    if isinstance(trimap, str):
        trimap = metrics.trimap_from_alpha(gt_alpha, trimap)
    elif np.ndim(trimap) != 2:
        raise InputError(f"trimap has shape {np.shape(trimap)}; expected a 2-D HxW map with 128 = unknown")
    else:
        trimap = crop_to_multiple_of_4(np.asarray(trimap))
    arrays = {"predicted alpha": pred_alpha, "ground-truth alpha": gt_alpha, "trimap": trimap}
    if pred_fgr is not None:
        arrays["predicted foreground"] = pred_fgr = crop_to_multiple_of_4(pred_fgr)
        arrays["ground-truth foreground"] = gt_fgr = crop_to_multiple_of_4(gt_fgr)
    sizes = {name: np.shape(a)[:2] for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        described = ", ".join(f"{name} {h}x{w}" for name, (h, w) in sizes.items())
        raise InputError(f"sizes differ after cropping to multiples of 4: {described}")

    scores = {
        "SAD": metrics.sad(pred_alpha, gt_alpha, trimap),
        "MSE": metrics.mse(pred_alpha, gt_alpha, trimap),
        "Grad": metrics.gradient_error(pred_alpha, gt_alpha, trimap),
        "Conn": metrics.connectivity_error(pred_alpha, gt_alpha, trimap),
    }
    if pred_fgr is not None:
        scores[FOREGROUND_METRIC] = metrics.foreground_mse(pred_fgr, gt_fgr, gt_alpha, trimap)
    return scores


# ---------------------------------------------------------------------------------------------------
# reports


def _format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if metric in ("Grad", "Conn") and abs(value) >= 100:
        return f"{value:.0f}"  # the paper prints these raw sums as integers
    return f"{value:.2f}"


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value  # JSON has no NaN


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` under a partial name beside ``path`` and rename it into place (replacing an older
    report), so a crash never leaves a half-written file under the final name."""
    from bgm_jax.io.atomic import atomic_output

    try:
        with atomic_output(path, overwrite=True) as partial:
            partial.write_text(text, encoding="utf-8", newline="")
    except InputError as e:
        raise InputError(f"cannot write {path}: {e}") from None
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}; choose a writable location") from e


@dataclass
class EvalReport:
    """Scores of an evaluation run and everything a reader needs to trust or compare them.

    ``trimap`` is the reading the unknown regions came from (``closing``, ``band``, or ``file`` for
    trimaps read from disk) and ``quantize`` the prediction quantisation; both appear in every output.
    ``problems`` are files that could not be scored (the means then cover fewer images than asked and
    the report is not ``complete``); ``notes`` are remarks that do not invalidate the numbers.
    ``settings`` describe how predictions were made when a model was run (model, backbone scale,
    sample pixels, perturbation seed...); they head the table and are kept in the JSON.
    """

    trimap: str
    quantize: str
    trimap_source: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    rows: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, scores: dict[str, float]) -> None:
        """Add one scored image (``scores`` as returned by :func:`score_sample`)."""
        self.rows.append((name, dict(scores)))
        if any(math.isnan(v) for v in scores.values()):
            self.notes.append((name, "no unknown pixels (trimap has no 128), so MSE and FG MSE are NaN"))

    def add_problem(self, name: str, problem: str) -> None:
        """Record a file that was not (fully) scored and why."""
        self.problems.append((name, problem))

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def metric_names(self) -> list[str]:
        present = {k for _, scores in self.rows for k in scores}
        return [m for m in (*ALPHA_METRICS, FOREGROUND_METRIC) if m in present]

    def mean(self) -> dict[str, float]:
        """Plain mean over the images that have each metric (NaN propagates, as in the reference)."""
        out = {}
        for m in self.metric_names:
            values = [scores[m] for _, scores in self.rows if m in scores]
            out[m] = float(np.mean(values))
        return out

    def mean_counts(self) -> dict[str, int]:
        return {m: sum(m in scores for _, scores in self.rows) for m in self.metric_names}

    def header(self) -> str:
        source = f" ({self.trimap_source})" if self.trimap_source else ""
        return (
            f"trimap: {self.trimap}{source} | quantize: {self.quantize} | crop: {CROP_NOTE} | "
            f"images scored: {len(self.rows)}"
            + ("" if self.complete else f" | INCOMPLETE: {len(self.problems)} problem(s)")
        )

    def format_table(self) -> str:
        """The per-image table with a mean row, headed by the trimap reading and quantisation."""
        names = self.metric_names
        counts = self.mean_counts()
        mean = self.mean()
        mean_label = f"mean ({len(self.rows)})"
        lines = [[name] + [_format_value(m, s.get(m)) for m in names] for name, s in self.rows]
        lines.append([mean_label] + [_format_value(m, mean[m]) for m in names])
        heading = ["file"] + [_TABLE_HEADINGS[m] for m in names]
        widths = [max(len(row[i]) for row in [heading, *lines]) for i in range(len(heading))]

        def fmt(row: list[str]) -> str:
            return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])

        out = [self.header()]
        if self.settings:
            out.append("settings: " + " | ".join(f"{k}={v}" for k, v in self.settings.items()))
        out += [fmt(heading), "-" * len(fmt(heading))]
        out += [fmt(row) for row in lines[:-1]]
        out += ["-" * len(fmt(heading)), fmt(lines[-1])]
        partial = [f"{m} over {counts[m]}" for m in names if counts[m] != len(self.rows)]
        if partial:
            out.append("mean of " + ", ".join(partial) + " images")
        return "\n".join(out)

    def to_csv(self) -> str:
        """CSV text: one row per scored image, one per problem (metrics empty), and a ``mean`` row;
        columns ``file, trimap, quantize, <metrics>, problem``."""
        names = self.metric_names
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "trimap", "quantize", *names, "problem"])
        for name, scores in self.rows:
            writer.writerow([name, self.trimap, self.quantize, *(_csv_number(scores.get(m)) for m in names), ""])
        for name, problem in self.problems:
            writer.writerow([name, self.trimap, self.quantize, *([""] * len(names)), problem])
        mean = self.mean()
        writer.writerow(["mean", self.trimap, self.quantize, *(_csv_number(mean[m]) for m in names), ""])
        return buf.getvalue()

    def to_dict(self) -> dict:
        """Everything in the report as JSON-ready data (NaN becomes null)."""
        return {
            "trimap": self.trimap,
            "trimap_source": self.trimap_source,
            "quantize": self.quantize,
            "crop": CROP_NOTE,
            "units": {m: metrics.IMAGE_METRIC_UNITS[m] for m in self.metric_names},
            "sources": dict(self.sources),
            "settings": dict(self.settings),
            "complete": self.complete,
            "n_images": len(self.rows),
            "images": [{"file": n, **{k: _json_number(v) for k, v in s.items()}} for n, s in self.rows],
            "mean": {k: _json_number(v) for k, v in self.mean().items()},
            "mean_counts": self.mean_counts(),
            "problems": [{"file": n, "problem": p} for n, p in self.problems],
            "notes": [{"file": n, "note": p} for n, p in self.notes],
        }

    def write_csv(self, path: str | os.PathLike) -> None:
        write_text_atomically(path, self.to_csv())

    def write_json(self, path: str | os.PathLike) -> None:
        write_text_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n")


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


# ---------------------------------------------------------------------------------------------------
# files


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


def _read(reader: Callable[[Path], np.ndarray], path: Path) -> np.ndarray:
    from PIL import Image

    try:
        return reader(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # PIL's ways to fail
        raise _Unreadable(f"unreadable {path}: {e}") from e


class _Unreadable(Exception):
    pass


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
        except (_Unreadable, InputError) as e:
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
    gt_alpha = _read(read_alpha, gt.files[key])
    pred_alpha = quantize_alpha(_read(read_alpha, pred.files[key]), quantize)
    if trimaps is None:
        trimap: np.ndarray | str = reading
    elif key in trimaps.files:
        trimap = _read(read_trimap, trimaps.files[key])
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
            pred_fgr = quantize_alpha(_read(read_colour, fgr_pred.files[key]), quantize)
            gt_fgr = _read(read_colour, fgr_gt.files[key])
    try:
        return score_sample(pred_alpha, gt_alpha, trimap, pred_fgr, gt_fgr)
    except InputError as e:
        raise InputError(f"{pred.files[key]} vs {gt.files[key]}: {e}") from e


# ---------------------------------------------------------------------------------------------------
# test-time protocol (supplement D.2): perturb the background only


@dataclass(frozen=True)
class BackgroundPerturbation:
    """One draw of the test-time background perturbation.

    ``shift_x``/``shift_y``: subpixel translation in pixels (content moves right/down for positive
    values); ``gamma``: ``b ** gamma``; ``noise_mean``/``noise_std``: Gaussian noise added to every
    pixel and channel of the [0, 1] image.
    """

    shift_x: float
    shift_y: float
    gamma: float
    noise_mean: float
    noise_std: float


MAX_SHIFT_PX = 0.3
GAMMA_RANGE = (0.85, 1.15)
MAX_NOISE_MEAN = 0.02
NOISE_SPREAD_RANGE = (0.08, 0.15)  # the supplement's "0.08 <= sigma^2 <= 0.15"
NOISE_READINGS = ("std", "variance")


def sample_background_perturbation(rng: np.random.Generator, noise: str = "std") -> BackgroundPerturbation:
    """Draw the perturbation parameters, each uniform over its range.

    The supplement gives "mu = +-0.02, 0.08 <= sigma^2 <= 0.15". We read the mean as uniform in
    [-0.02, 0.02]. For the spread, ``noise="std"`` (default) takes 0.08..0.15 as the standard
    deviation on [0, 1] images, matching how the same paper writes "sigma^2 <= 0.03" for training noise
    that the original code draws as a standard deviation ``0.03 * U(0, 1)``. ``noise="variance"`` takes
    the text literally (std = sqrt(0.08..0.15) = 0.28..0.39), which swamps a [0, 1] image.
    """
    if noise not in NOISE_READINGS:
        raise InputError(f"unknown noise reading {noise!r}; use one of {', '.join(NOISE_READINGS)}")
    shift_x, shift_y = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, size=2)
    gamma = rng.uniform(*GAMMA_RANGE)
    noise_mean = rng.uniform(-MAX_NOISE_MEAN, MAX_NOISE_MEAN)
    spread = rng.uniform(*NOISE_SPREAD_RANGE)
    noise_std = spread if noise == "std" else math.sqrt(spread)
    return BackgroundPerturbation(float(shift_x), float(shift_y), float(gamma), float(noise_mean), float(noise_std))


def shift_subpixel(image: np.ndarray, shift_x: float, shift_y: float) -> np.ndarray:
    """Translate by less than one pixel per axis with bilinear interpolation, edges replicated:
    ``out(y, x) = image(y - shift_y, x - shift_x)``."""
    if abs(shift_x) >= 1 or abs(shift_y) >= 1:
        raise InputError(f"subpixel shift ({shift_x}, {shift_y}) must be below one pixel per axis")
    out = np.asarray(image, dtype=np.float32)
    for axis, shift in ((1, shift_x), (0, shift_y)):
        if shift == 0:
            continue
        # each output pixel mixes itself with the neighbour the content comes from
        neighbour = np.roll(out, 1 if shift > 0 else -1, axis=axis)
        edge = [slice(None)] * out.ndim
        edge[axis] = 0 if shift > 0 else -1
        neighbour[tuple(edge)] = out[tuple(edge)]  # replicate instead of wrapping round
        weight = np.float32(abs(shift))
        out = (1 - weight) * out + weight * neighbour
    return out


def apply_background_perturbation(
    bgr: np.ndarray, params: BackgroundPerturbation, rng: np.random.Generator
) -> np.ndarray:
    """Shift, then gamma, then noise (drawn from ``rng``), then clip to [0, 1]; float32 result."""
    b = metrics.to_unit_float32(bgr)
    b = shift_subpixel(b, params.shift_x, params.shift_y)
    b = np.power(np.clip(b, 0, 1), np.float32(params.gamma))
    noise = rng.standard_normal(b.shape, dtype=np.float32) * np.float32(params.noise_std)
    return np.clip(b + np.float32(params.noise_mean) + noise, 0.0, 1.0).astype(np.float32)


def perturb_background(bgr: np.ndarray, seed: int, *, noise: str = "std") -> np.ndarray:
    """The supplement's test-time perturbation of the background image, deterministic from ``seed``.

    ``bgr`` is HxWx3 (uint8, or float in [0, 1]); the result is float32 in [0, 1]. Only the background
    given to the model is perturbed; the composite is made with the clean one. See
    :func:`sample_background_perturbation` for the reading of the noise parameters.
    """
    rng = np.random.default_rng(seed)
    params = sample_background_perturbation(rng, noise)
    return apply_background_perturbation(bgr, params, rng)


def composite_test_input(
    fgr: np.ndarray, pha: np.ndarray, bgr: np.ndarray, seed: int, *, noise: str = "std"
) -> tuple[np.ndarray, np.ndarray]:
    """``(src, perturbed_bgr)`` for one test sample: ``src = pha * fgr + (1 - pha) * bgr`` with the
    clean background, and the background the model sees perturbed by :func:`perturb_background`."""
    f, a, b = metrics.to_unit_float32(fgr), metrics.to_unit_float32(pha), metrics.to_unit_float32(bgr)
    if a.ndim == 2:
        a = a[..., None]
    if not (f.shape[:2] == a.shape[:2] == b.shape[:2]):
        raise InputError(f"foreground {f.shape}, alpha {a.shape} and background {b.shape} differ in size")
    src = a * f + (1 - a) * b
    return src.astype(np.float32), perturb_background(b, seed, noise=noise)


# ---------------------------------------------------------------------------------------------------
# evaluating a model: test sets, the test-time protocol, batched inference, scoring

# The paper's evaluation settings for photos (METRICS.md): backbone scale 1/4 and k = 20,000 refined
# 4x4 patches, i.e. 320,000 sample pixels.
PAPER_PHOTO_BACKBONE_SCALE = 0.25
PAPER_PHOTO_SAMPLE_PIXELS = 320_000
# An AIM / Distinctions-646 test sample comes with 5 backgrounds, all of its size: one batch each on an
# accelerator. On a CPU batching only costs: 5 images of 2048x2048 (ResNet-50) took 61 to 66 s and
# 10.8 GB at batch 5 against 41 to 48 s and under 4 GB one at a time (docs/evaluation.md).
ACCELERATOR_BATCH = 5
MODEL_INPUT_FEATURES = ("fgr", "pha", "bgr")
TEST_SET_FOLDERS = ("fgr", "pha", "bgr")
BACKGROUND_FIT = "cover"  # shorter side fitted, centre crop: how training fits backgrounds too
PREDICTION_FOLDERS = {"pha": "pha", "fgr": "fgr", "gt_pha": "gt_pha", "gt_fgr": "gt_fgr"}
TESTSETS_WITH_BACKGROUNDS = (
    "matting_testset/aim",
    "matting_testset/distinctions646",
    "matting_testset/photomatte85",
    "synthetic_matting/<config>",
)


class TestSampleError(Exception):
    """One test sample that cannot be used; the run goes on and reports it by name."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass
class TestSample:
    """One test sample as stored: clean ``fgr`` (HxWx3), ``pha`` (HxW, the ground truth), a clean
    background ``bgr`` of any size, and ``record_seed``, from which its perturbation is drawn."""

    __test__ = False
    name: str
    fgr: np.ndarray
    pha: np.ndarray
    bgr: np.ndarray
    record_seed: int


@dataclass
class TestInput:
    """A test sample after the protocol: the model's inputs ``src`` (the composite over the clean
    background) and ``bgr`` (the perturbed background), both float32 HxWx3 in [0, 1], and the ground
    truth, all cropped top-left to multiples of 4."""

    __test__ = False
    name: str
    src: np.ndarray
    bgr: np.ndarray
    gt_pha: np.ndarray
    gt_fgr: np.ndarray


def perturbation_seed(record_seed: int, run_seed: int = 0) -> int:
    """The seed of one test image's background perturbation: its record's seed mixed with the run's.

    Mixing (rather than using the record seed as it is) keeps the perturbation's random stream apart
    from any generator seeded with the same number (the synthetic datasets store the seed their sample
    was drawn from), and ``run_seed`` gives other, equally valid draws of the same test set.
    """
    entropy = [int(record_seed) % 2**63, int(run_seed) % 2**63]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0])


def fit_background(bgr: np.ndarray, height: int, width: int) -> np.ndarray:
    """``bgr`` resized to cover ``height x width`` (shorter side fitted, bilinear, centre crop), as the
    training pipeline fits backgrounds; returned unchanged when it already has that size."""
    if bgr.shape[:2] == (height, width):
        return bgr
    from bgm_jax.datasets.images import decode_to_canvas

    return decode_to_canvas(np.asarray(bgr, np.uint8), "RGB", (height, width), BACKGROUND_FIT)[0]


def protocol_input(sample: TestSample, *, seed: int = 0, noise: str = "std") -> TestInput:
    """Apply the test-time protocol (supplement D.2) to one sample.

    The background is fitted to the sample's size, everything is cropped top-left to multiples of 4
    (the size the model processes and the metrics score), the composite ``pha * fgr + (1 - pha) * bgr``
    is made in float32 with the clean background, and the background given to the model is perturbed
    (:func:`perturb_background`) from ``perturbation_seed(sample.record_seed, seed)``.
    """
    fgr, pha = np.asarray(sample.fgr), np.asarray(sample.pha)
    if pha.ndim == 3 and pha.shape[-1] == 1:
        pha = pha[..., 0]
    if fgr.ndim != 3 or fgr.shape[-1] != 3 or pha.ndim != 2:
        raise TestSampleError(sample.name, f"foreground {fgr.shape} / alpha {pha.shape}: expected HxWx3 and HxW")
    if fgr.shape[:2] != pha.shape:
        raise TestSampleError(sample.name, f"foreground is {fgr.shape[:2]} but alpha is {pha.shape}")
    bgr = fit_background(sample.bgr, *pha.shape)
    fgr, pha, bgr = crop_to_multiple_of_4(fgr), crop_to_multiple_of_4(pha), crop_to_multiple_of_4(bgr)
    if pha.size == 0:
        raise TestSampleError(sample.name, f"smaller than 4x4 ({sample.pha.shape[:2]}); the model needs 4x4 or more")
    src, seen_bgr = composite_test_input(fgr, pha, bgr, perturbation_seed(sample.record_seed, seed), noise=noise)
    return TestInput(sample.name, src, seen_bgr, pha, fgr)


class DatasetTestSet:
    """The records of a prepared dataset split (tfds ArrayRecord) that has ``fgr``, ``pha`` and ``bgr``.

    Names: ``name@background`` for ``matting_testset`` records, ``name`` for records with a name only,
    the zero-padded clip (and ``clip/frame`` in video sets) for ``synthetic_matting``, else the record
    index. The record's ``seed`` feature is the perturbation's record seed (the index without one).
    """

    def __init__(self, source, description: str):
        self.source = source
        self.description = description
        self.problems: list[tuple[str, str]] = []
        last = source[len(source) - 1] if len(source) else {}
        self._video = int(last.get("frame", 0)) > 0  # records are in clip, frame order

    def __len__(self) -> int:
        return len(self.source)

    def record_name(self, record: dict, index: int) -> str:
        if "name" in record:
            name = _text(record["name"])
            return f"{name}@{_text(record['background'])}" if "background" in record else name
        if "clip" in record:
            clip = f"{int(record['clip']):06d}"
            return f"{clip}/{int(record.get('frame', 0)):05d}" if self._video else clip
        return f"{index:06d}"

    def load(self, index: int) -> TestSample:
        from bgm_jax.datasets.images import decode

        record = self.source[index]
        name = self.record_name(record, index)
        try:
            fgr, pha, bgr = decode(record["fgr"], "RGB"), decode(record["pha"], "L"), decode(record["bgr"], "RGB")
        except InputError as e:
            raise TestSampleError(name, f"record {index} of {self.description}: {e}") from None
        return TestSample(name, fgr, pha, bgr, int(record.get("seed", index)))


class FolderTestSet:
    """A folder ``ROOT/{fgr,pha,bgr}/**`` of images paired by relative path without extension
    (.png/.jpg/.jpeg, as in the folder mode); backgrounds may have any size. Names that are missing a
    partner are problems. The record seed is the CRC-32 of the name, so a sample's perturbation does
    not depend on which other files are there."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.description = str(root)
        if not self.root.is_dir():
            raise InputError(f"--dataset-dir {root}: not a directory; give a folder holding fgr/, pha/ and bgr/")
        missing = [name for name in TEST_SET_FOLDERS if not (self.root / name).is_dir()]
        if missing:
            raise InputError(
                f"--dataset-dir {root}: no {', '.join(f'{m}/' for m in missing)} folder; expected "
                "ROOT/fgr/, ROOT/pha/ and ROOT/bgr/ with images paired by relative path"
            )
        self.indexes = {name: index_images(self.root / name) for name in TEST_SET_FOLDERS}
        self.problems = []
        for folder, index in self.indexes.items():
            for key, paths in index.ambiguous.items():
                names = ", ".join(str(p) for p in paths)
                self.problems.append((key, f"ambiguous {folder}: several files share this name ({names}); keep one"))
        keys = [set(index.files) for index in self.indexes.values()]
        self.keys = sorted(set.intersection(*keys))
        for key in sorted(set.union(*keys) - set(self.keys)):
            lacking = [f"{f}/" for f, index in self.indexes.items() if key not in index.files]
            if not any(key in index.ambiguous for index in self.indexes.values()):
                self.problems.append((key, f"no {' and no '.join(lacking)} image under {self.root}"))
        if not self.keys and not self.problems:
            raise InputError(f"--dataset-dir {root}: no .png/.jpg/.jpeg images in fgr/, pha/ and bgr/")

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> TestSample:
        import zlib

        key = self.keys[index]
        try:
            fgr = _read(read_colour, self.indexes["fgr"].files[key])
            pha = _read(read_alpha, self.indexes["pha"].files[key])
            bgr = _read(read_colour, self.indexes["bgr"].files[key])
        except _Unreadable as e:
            raise TestSampleError(key, str(e)) from None
        return TestSample(key, fgr, pha, bgr, zlib.crc32(key.encode("utf-8")))


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def open_test_set(
    dataset: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    dataset_dir: str | os.PathLike | None = None,
) -> DatasetTestSet | FolderTestSet:
    """A test set for :func:`evaluate_model`: a prepared dataset by name (with ``data_dir``) or by its
    directory, or (``dataset_dir``) a folder of ``fgr/``, ``pha/`` and ``bgr/`` images.

    The dataset needs backgrounds: ``matting_testset/*`` (each test sample paired with backgrounds, as
    in the paper) or ``synthetic_matting/*``. Anything unusable raises :class:`InputError`.
    """
    if (dataset is None) == (dataset_dir is None):
        raise InputError("give one test set: --dataset NAME (a prepared dataset) or --dataset-dir DIR (image folders)")
    if dataset_dir is not None:
        return FolderTestSet(dataset_dir)
    from bgm_jax.datasets import catalog

    path = Path(dataset).expanduser()
    if path.is_dir() and not (path / "dataset_info.json").is_file():
        if all((path / name).is_dir() for name in TEST_SET_FOLDERS):
            raise InputError(f"--dataset {dataset}: a folder of fgr/, pha/ and bgr/ images; give it with --dataset-dir")
        raise InputError(
            f"--dataset {dataset}: not a prepared dataset directory (no dataset_info.json); give a dataset name "
            "with --data-dir, the directory build-dataset wrote (<data-dir>/<name>/<config>/<version>), "
            "or a folder of fgr/, pha/ and bgr/ images with --dataset-dir"
        )
    if path.is_dir():
        source = catalog.open_split(path, split)
        description = f"{path} [{split}]"
    else:
        _check_dataset_name(str(dataset))
        if data_dir is None:
            raise InputError(
                f"--dataset {dataset}: give --data-dir, the folder "
                f"`bgm-jax build-dataset {dataset} --data-dir DIR` wrote to"
            )
        if not Path(data_dir).expanduser().is_dir():
            raise InputError(f"--data-dir {data_dir}: not a directory; give the folder build-dataset wrote to")
        source = catalog.open_split(str(dataset), split, Path(data_dir).expanduser())
        description = f"{dataset} [{split}] in {data_dir}"
    features = set(source.dataset_info.features.keys())
    lacking = [name for name in MODEL_INPUT_FEATURES if name not in features]
    if lacking:
        raise InputError(
            f"--dataset {dataset}: records have no {', '.join(lacking)} (features: {', '.join(sorted(features))}); "
            f"the model needs a background per sample: use {', '.join(TESTSETS_WITH_BACKGROUNDS)}"
        )
    if len(source) == 0:
        raise InputError(f"--dataset {description}: the split has no records")
    return DatasetTestSet(source, description)


def _check_dataset_name(name: str) -> None:
    from bgm_jax.datasets.builders import BUILDERS

    if name.partition("/")[0] not in BUILDERS:
        raise InputError(
            f"--dataset {name}: no such dataset and no such directory; test sets with backgrounds: "
            f"{', '.join(TESTSETS_WITH_BACKGROUNDS)} (build one with bgm-jax build-dataset), or use "
            "--dataset-dir DIR for a folder of fgr/, pha/ and bgr/ images"
        )


class PredictionWriter:
    """Writes what :func:`evaluate_model` scored, so ``bgm-jax eval --pred`` can score it again:
    ``ROOT/pha/NAME.png`` and ``ROOT/fgr/NAME.png`` (the predictions as scored) and ``ROOT/gt_pha``,
    ``ROOT/gt_fgr`` (the ground truth as scored, cropped to multiples of 4).

    8-bit predictions (``round``/``floor``) are written as they were scored, so re-scoring gives the
    same numbers. Unquantised (``none``) alpha is written as 16-bit PNG and foreground as rounded
    8-bit, which re-scores to within those precisions. Every file is written under a temporary name
    and renamed when complete.
    """

    def __init__(self, root: str | os.PathLike, *, overwrite: bool = False):
        self.root = Path(root)
        self.overwrite = overwrite
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"--save-pred {root}: is a file; give a folder to write the predictions to")
        if not overwrite:
            used = [f"{f}/" for f in PREDICTION_FOLDERS.values() if _non_empty_dir(self.root / f)]
            if used:
                raise InputError(
                    f"--save-pred {root}: already holds {', '.join(used)}; choose an empty folder or pass "
                    "--overwrite (files of other names stay and would be re-scored too)"
                )

    def path(self, kind: str, name: str) -> Path:
        relative = PurePosixPath(name + ".png")  # name + suffix: a dot in the name stays part of it
        if relative.is_absolute() or ".." in relative.parts:
            raise InputError(f"sample name {name!r} would be written outside {self.root}; rename the sample")
        return self.root / PREDICTION_FOLDERS[kind] / Path(*relative.parts)

    def write(self, name: str, pred_pha, pred_fgr, gt_pha, gt_fgr) -> None:
        from bgm_jax.io.outputs import to_uint8, to_uint16, write_image

        def as_stored(alpha):
            alpha = np.asarray(alpha)
            return alpha if alpha.dtype in (np.uint8, np.uint16) else to_uint16(alpha)

        for kind, pixels in (
            ("pha", as_stored(pred_pha)),
            ("fgr", to_uint8(pred_fgr)),
            ("gt_pha", as_stored(gt_pha)),
            ("gt_fgr", to_uint8(gt_fgr)),
        ):
            write_image(self.path(kind, name), pixels, overwrite=self.overwrite)

    def rescore_command(self, trimap_mode: str, quantize: str) -> str:
        """The ``bgm-jax eval`` command that scores the written files again."""
        d = {k: self.root / f for k, f in PREDICTION_FOLDERS.items()}
        return (
            f"bgm-jax eval --pred {d['pha']} --gt {d['gt_pha']} --fgr-pred {d['fgr']} --fgr-gt {d['gt_fgr']} "
            f"--trimap-mode {trimap_mode} --quantize {quantize}"
        )


def default_batch_size() -> int:
    """Images run together by default: 1 on a CPU, :data:`ACCELERATOR_BATCH` on an accelerator."""
    import jax

    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_BATCH


def _non_empty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@dataclass
class _Batch:
    inputs: list[TestInput]
    problems: list[tuple[str, str]]


def protocol_batches(test_set, batch_size: int, *, seed: int = 0, noise: str = "std"):
    """The test set's samples through :func:`protocol_input`, in order, grouped into runs of up to
    ``batch_size`` consecutive inputs of one size; samples that fail travel along as problems."""
    batch: list[TestInput] = []
    problems: list[tuple[str, str]] = []
    for index in range(len(test_set)):
        try:
            item = protocol_input(test_set.load(index), seed=seed, noise=noise)
        except TestSampleError as e:
            problems.append((e.name, e.problem))
            continue
        if batch and item.src.shape != batch[0].src.shape:
            yield _Batch(batch, problems)
            batch, problems = [], []
        batch.append(item)
        if len(batch) == batch_size:
            yield _Batch(batch, problems)
            batch, problems = [], []
    if batch or problems:
        yield _Batch(batch, problems)


def run_model_batch(matting, inputs: list[TestInput], widths: dict[tuple[int, ...], int]):
    """Run ``matting`` on equally sized inputs; returns its (device) result for the padded batch.

    ``widths`` remembers the batch size each image size ran at: a shorter batch of a size seen before
    is padded (repeating its last input) to that width, so it reuses the compiled function instead of
    compiling another; the padded rows are simply not read.
    """
    shape = inputs[0].src.shape
    width = max(len(inputs), widths.get(shape, 0))
    widths[shape] = width
    rows = inputs + [inputs[-1]] * (width - len(inputs))
    src = np.stack([x.src for x in rows])
    bgr = np.stack([x.bgr for x in rows])
    return matting(src, bgr)


def evaluate_model(
    matting: Callable,
    test_set,
    *,
    trimap_mode: str = "closing",
    quantize: str = "round",
    batch_size: int | None = None,
    seed: int = 0,
    noise: str = "std",
    writer: PredictionWriter | None = None,
    sources: dict[str, str] | None = None,
    settings: dict[str, object] | None = None,
    progress: Callable[[int], object] | None = None,
) -> EvalReport:
    """Run ``matting`` over ``test_set`` with the test-time protocol and score it like the folder mode.

    ``matting(src, bgr)`` takes NHWC float32 batches and returns an object with ``pha`` (NHW1) and
    ``fgr`` (NHW3), as :class:`bgm_jax.inference.Matting` does. Each prediction goes through
    :func:`quantize_alpha` (alpha and foreground) and :func:`score_sample` against the ground truth,
    with trimaps generated with ``trimap_mode``; ``writer`` saves what was scored. ``batch_size``
    defaults to :func:`default_batch_size`.

    Loading and compositing run in one thread, scoring (and writing) in another, while the main thread
    dispatches the model, so on an accelerator the three overlap. ``progress(total)`` may return a
    tqdm-like bar, advanced once per image.
    """
    from bgm_jax.io.pipeline import Pipeline

    if quantize not in QUANTIZE_MODES:
        raise InputError(f"unknown quantisation {quantize!r}; use one of {', '.join(QUANTIZE_MODES)}")
    if trimap_mode not in metrics.TRIMAP_READINGS:
        raise InputError(f"unknown trimap reading {trimap_mode!r}; use one of {', '.join(metrics.TRIMAP_READINGS)}")
    if batch_size is None:
        batch_size = default_batch_size()
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if noise not in NOISE_READINGS:
        raise InputError(f"unknown noise reading {noise!r}; use one of {', '.join(NOISE_READINGS)}")
    report = EvalReport(
        trimap=trimap_mode,
        quantize=quantize,
        trimap_source="generated from ground-truth alpha",
        sources=dict(sources or {}),
        settings=dict(settings or {}),
    )
    for name, problem in test_set.problems:
        report.add_problem(name, problem)
    bar = progress(len(test_set)) if progress is not None else None

    def score_batch(item) -> None:
        batch, result = item
        for name, problem in batch.problems:
            report.add_problem(name, problem)
        if bar is not None and batch.problems:
            bar.update(len(batch.problems))
        if result is None:
            return
        pred_phas, pred_fgrs = np.asarray(result.pha), np.asarray(result.fgr)  # waits for the device
        for x, pred_pha, pred_fgr in zip(batch.inputs, pred_phas, pred_fgrs):
            pred_pha = quantize_alpha(pred_pha[..., 0], quantize)
            pred_fgr = quantize_alpha(pred_fgr, quantize)
            try:
                report.add(x.name, score_sample(pred_pha, x.gt_pha, trimap_mode, pred_fgr, x.gt_fgr))
                if writer is not None:
                    writer.write(x.name, pred_pha, pred_fgr, x.gt_pha, x.gt_fgr)
            except InputError as e:
                report.add_problem(x.name, str(e))
            if bar is not None:
                bar.update(1)

    widths: dict[tuple[int, ...], int] = {}
    batches = protocol_batches(test_set, batch_size, seed=seed, noise=noise)
    try:
        # depth 1: a batch of 2K composites is hundreds of MB; one waiting is enough to keep up
        with Pipeline(batches, sink=score_batch, depth=1) as pipe:
            for batch in pipe:
                result = run_model_batch(matting, batch.inputs, widths) if batch.inputs else None
                pipe.put((batch, result))
    finally:
        if bar is not None:
            bar.close()
    return report
