"""Reports of scores: :class:`EvalReport` collects rows and problems, prints the per-image + mean
table and writes CSV/JSON, always naming the trimap reading and the quantisation used."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
from bgm_jax.errors import InputError
from bgm_jax.evaluation import metrics
from bgm_jax.evaluation.score import ALPHA_METRICS, CROP_NOTE, FOREGROUND_METRIC

TRIMAP_FROM_FILES = "file"

# column headings for the printed table, in the paper's units
_TABLE_HEADINGS = {"SAD": "SAD/1e3", "MSE": "MSE x1e3", "Grad": "Grad", "Conn": "Conn", "FG_MSE": "FG MSE x1e3"}


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
