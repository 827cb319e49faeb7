"""The study's report: per-example mean scores, the overall mean with a bootstrap interval, per-rater counts.

Scores are about the methods: -10 = A much better, -5 = A slightly better, 0 = similar, +5 / +10 = B
slightly / much better (one vote per rater and example; a changed vote counts once, as last cast).

- **Per example**: number of votes, their mean, and how many votes fell on each level.
- **Overall mean**: the mean of the per-example means over the examples that have votes, so every
  example weighs the same however many raters reached it (when every rater rates every example this is
  the mean of all votes, the paper's "average score"). The mean of all votes is reported beside it.
- **95 % interval**: percentile bootstrap over examples. Draw ``n_bootstrap`` (default 10,000) samples
  of the rated examples with replacement, each as many as there are rated examples, take each sample's
  mean of example means, and report the 2.5th and 97.5th percentiles (numpy's linear interpolation).
  The draws come from ``numpy.random.default_rng(seed)`` (default seed 0), so a report is reproducible.
  The interval says how much the overall mean depends on which examples were chosen; raters' spread
  enters through each example's mean. With one rated example it is that example's mean.
- **Per rater**: number of votes and their mean (a rater far from the others stands out).

Written as ``examples.csv``, ``raters.csv``, ``report.json`` and ``chart.png`` (per-example means as bars,
like the annotations of the supplement's Figures 4-6).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bgm_jax.io.atomic import atomic_output, check_can_write, ensure_dir
from bgm_jax.study.scale import LEVELS, score_label

DEFAULT_BOOTSTRAP = 10_000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
OUTPUT_FILES = ("examples.csv", "raters.csv", "report.json", "chart.png")


@dataclass
class ExampleResult:
    id: int
    key: str
    votes: int
    mean: float | None                       # None without votes
    counts: dict[int, int] = field(default_factory=dict)  # level -> votes on it


@dataclass
class RaterResult:
    rater: str
    votes: int
    mean: float


@dataclass
class StudyReport:
    title: str
    method_a: str
    method_b: str
    examples: list[ExampleResult]
    raters: list[RaterResult]
    votes: int                    # all votes
    examples_rated: int
    mean: float | None            # mean of per-example means
    mean_of_votes: float | None
    ci_low: float | None
    ci_high: float | None
    n_bootstrap: int
    seed: int
    confidence: float = CONFIDENCE

    def lines(self) -> list[str]:
        """A plain-text summary for the terminal."""
        out = [f"{self.title}: {self.method_a} (A, negative) vs {self.method_b} (B, positive)"]
        width = max([len(e.key) for e in self.examples] + [7])
        out.append(f"{'example':<{width}}  votes    mean")
        for e in self.examples:
            mean = f"{e.mean:+7.2f}" if e.mean is not None else "      -"
            out.append(f"{e.key:<{width}}  {e.votes:5d}  {mean}")
        if self.mean is None:
            out.append("no votes yet")
        else:
            out.append(
                f"overall mean {self.mean:+.2f} over {self.examples_rated} rated examples "
                f"({score_label(round(self.mean / 5) * 5, self.method_a, self.method_b)} on average), "
                f"{self.confidence:.0%} bootstrap interval [{self.ci_low:+.2f}, {self.ci_high:+.2f}] "
                f"({self.n_bootstrap} draws, seed {self.seed}); {self.votes} votes, mean of votes "
                f"{self.mean_of_votes:+.2f}"
            )
        out.append("raters: " + (", ".join(f"{r.rater} {r.votes}" for r in self.raters) or "none"))
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        for e in d["examples"]:
            e["counts"] = {str(level): n for level, n in e["counts"].items()}
        d["scale"] = {str(level): score_label(level, self.method_a, self.method_b) for level in LEVELS}
        d["method"] = (
            "overall mean = mean of per-example means; interval = percentile bootstrap over examples "
            "(numpy default_rng(seed), draws with replacement)"
        )
        return d


def bootstrap_interval(
    values: np.ndarray, *, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (drawn with replacement, seeded)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("bootstrap needs a non-empty 1-D array of values")
    if n_bootstrap < 1:
        raise ValueError("n_bootstrap must be at least 1")
    rng = np.random.default_rng(seed)
    means = np.empty(n_bootstrap)
    chunk = max(1, 2_000_000 // values.size)  # bounded memory for large studies
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        index = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[index].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def compute_report(
    examples: Mapping[int, str],
    votes: Iterable[tuple[str, int, int]],
    *,
    title: str = "",
    method_a: str = "A",
    method_b: str = "B",
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> StudyReport:
    """The report from example ids -> keys and ``(rater, example_id, score)`` votes (scores about A/B)."""
    by_example: dict[int, list[int]] = {i: [] for i in examples}
    by_rater: dict[str, list[int]] = {}
    for rater, example_id, score in votes:
        if score not in LEVELS:
            raise ValueError(f"score {score!r} of {rater!r} on example {example_id} is not on the scale {LEVELS}")
        by_example[example_id].append(score)
        by_rater.setdefault(rater, []).append(score)
    rows = [
        ExampleResult(
            id=i, key=key, votes=len(by_example[i]),
            mean=float(np.mean(by_example[i])) if by_example[i] else None,
            counts={level: by_example[i].count(level) for level in LEVELS},
        )
        for i, key in examples.items()
    ]
    rated = np.array([r.mean for r in rows if r.mean is not None], dtype=np.float64)
    all_scores = [s for scores in by_example.values() for s in scores]
    if rated.size:
        mean = float(rated.mean())
        ci_low, ci_high = bootstrap_interval(rated, n_bootstrap=n_bootstrap, seed=seed)
        mean_of_votes = float(np.mean(all_scores))
    else:
        mean = ci_low = ci_high = mean_of_votes = None
    raters = [RaterResult(r, len(s), float(np.mean(s))) for r, s in sorted(by_rater.items())]
    return StudyReport(
        title=title, method_a=method_a, method_b=method_b, examples=rows, raters=raters,
        votes=len(all_scores), examples_rated=int(rated.size), mean=mean, mean_of_votes=mean_of_votes,
        ci_low=ci_low, ci_high=ci_high, n_bootstrap=n_bootstrap, seed=seed,
    )


def study_report(study, *, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED) -> StudyReport:
    """The report of an open ``storage.Study`` (its votes as they are now)."""
    s = study.settings
    return compute_report(
        {i: e.key for i, e in study.examples.items()},
        ((v.rater, v.example_id, v.score) for v in study.votes()),
        title=s.title, method_a=s.method_a, method_b=s.method_b, n_bootstrap=n_bootstrap, seed=seed,
    )


# ------------------------------------------------------------------------------------------------ files


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def examples_csv(report: StudyReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "example", "votes", "mean"] + [f"votes_{level:+d}" for level in LEVELS])
    for e in report.examples:
        writer.writerow([e.id, e.key, e.votes, _fmt(e.mean)] + [e.counts[level] for level in LEVELS])
    return buf.getvalue()


def raters_csv(report: StudyReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rater", "votes", "mean"])
    for r in report.raters:
        writer.writerow([r.rater, r.votes, _fmt(r.mean)])
    return buf.getvalue()


def write_report(report: StudyReport, out_dir: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Write examples.csv, raters.csv, report.json and chart.png into ``out_dir``; returns their paths.

    Every file is checked before any is written, and each is renamed into place only when complete."""
    out_dir = ensure_dir(out_dir)
    paths = [check_can_write(out_dir / name, overwrite) for name in OUTPUT_FILES]
    texts = {
        "examples.csv": examples_csv(report),
        "raters.csv": raters_csv(report),
        "report.json": json.dumps(report.to_json(), indent=2) + "\n",
    }
    for path in paths:
        with atomic_output(path, overwrite=overwrite) as partial:
            if path.name in texts:
                partial.write_text(texts[path.name], encoding="utf-8")
            else:
                draw_chart(report).save(partial, format="PNG")
    return paths


# ------------------------------------------------------------------------------------------------ chart

COLOUR_A = (230, 126, 34)   # bars towards A (negative)
COLOUR_B = (41, 128, 185)   # bars towards B (positive)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


CHART_WIDTH = 960
ROW_HEIGHT, TOP, LABEL_WIDTH, MARGIN, VALUE_WIDTH = 26, 78, 250, 24, 90


def chart_x(score: float, width: int = CHART_WIDTH) -> float:
    """The x coordinate of ``score`` (-10..+10) on a chart ``width`` pixels wide."""
    x0, x1 = LABEL_WIDTH + MARGIN, width - MARGIN - VALUE_WIDTH
    return x0 + (score + 10) / 20 * (x1 - x0)


def chart_row_y(row: int) -> float:
    """The y coordinate of the centre of row ``row`` (examples first, then the overall mean)."""
    return TOP + row * ROW_HEIGHT + ROW_HEIGHT / 2


def draw_chart(report: StudyReport, *, width: int = CHART_WIDTH):
    """Per-example mean scores as horizontal bars on the -10..+10 scale, and the overall mean with its
    interval (black whiskers); returns a PIL image."""
    from PIL import Image, ImageDraw

    font, small, bold = _font(15), _font(13), _font(17)
    rows = len(report.examples) + 1
    height = TOP + rows * ROW_HEIGHT + 60
    x_end = chart_x(10, width)

    def x_of(score: float) -> float:
        return chart_x(score, width)

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 12), report.title or "User study", fill="black", font=bold)
    draw.text(
        (MARGIN, 40),
        f"mean score per example: -10 = {report.method_a} much better, 0 = similar, "
        f"+10 = {report.method_b} much better",
        fill=(70, 70, 70), font=small,
    )
    bottom = TOP + rows * ROW_HEIGHT
    for level in LEVELS:
        x = x_of(level)
        draw.line([(x, TOP - 6), (x, bottom)], fill=(120, 120, 120) if level == 0 else (225, 225, 225), width=1)
        draw.text((x, bottom + 6), f"{level:+d}" if level else "0", fill="black", font=small, anchor="ma")
    draw.text((x_of(-10), bottom + 26), f"<- {report.method_a} better", fill=COLOUR_A, font=small, anchor="la")
    draw.text((x_of(10), bottom + 26), f"{report.method_b} better ->", fill=COLOUR_B, font=small, anchor="ra")

    def bar(y: float, mean: float | None, label: str, note: str, *, thick: int) -> None:
        draw.text((MARGIN, y), label if len(label) <= 30 else "..." + label[-27:], fill="black", font=font, anchor="lm")
        if mean is None:
            draw.text((x_of(0) + 6, y), note, fill=(150, 150, 150), font=small, anchor="lm")
            return
        left, right = sorted((x_of(0), x_of(mean)))
        draw.rectangle([left, y - thick / 2, max(right, left + 1), y + thick / 2],
                       fill=COLOUR_A if mean < 0 else COLOUR_B)
        draw.text((x_end + 10, y), note, fill="black", font=small, anchor="lm")

    for i, e in enumerate(report.examples):
        bar(chart_row_y(i), e.mean, e.key, f"{e.mean:+.1f} (n={e.votes})" if e.mean is not None else "no votes",
            thick=14)
    y = chart_row_y(len(report.examples))
    draw.line([(MARGIN, y - ROW_HEIGHT / 2), (x_end, y - ROW_HEIGHT / 2)], fill=(180, 180, 180))
    if report.mean is not None:
        bar(y, report.mean, "overall", f"{report.mean:+.2f}", thick=16)
        low, high = x_of(report.ci_low), x_of(report.ci_high)
        for x in (low, high):
            draw.line([(x, y - 10), (x, y + 10)], fill="black", width=2)
        draw.line([(low, y), (high, y)], fill="black", width=2)
    else:
        bar(y, None, "overall", "no votes", thick=16)
    return image
