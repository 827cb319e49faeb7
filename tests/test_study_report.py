"""The study report's arithmetic on hand-computed data, its bootstrap interval, files and chart."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from bgm_jax.errors import InputError
from bgm_jax.study.report import (
    COLOUR_A,
    COLOUR_B,
    bootstrap_interval,
    chart_row_y,
    chart_x,
    compute_report,
    draw_chart,
    write_report,
)

EXAMPLES = {1: "shots/a", 2: "shots/b", 3: "c", 4: "d"}
VOTES = [("alice", 1, -10), ("alice", 2, 5), ("alice", 3, 10), ("bob", 1, -5), ("bob", 2, 10)]


def hand_report(**kwargs):
    return compute_report(EXAMPLES, VOTES, title="Demo", method_a="BGM", method_b="Ours", **kwargs)


def test_means_and_counts_match_hand_computation():
    report = hand_report()
    rows = {e.key: e for e in report.examples}
    assert (rows["shots/a"].votes, rows["shots/a"].mean) == (2, -7.5)   # (-10 - 5) / 2
    assert (rows["shots/b"].votes, rows["shots/b"].mean) == (2, 7.5)    # (5 + 10) / 2
    assert (rows["c"].votes, rows["c"].mean) == (1, 10.0)
    assert (rows["d"].votes, rows["d"].mean) == (0, None)               # not rated: left out of the mean
    assert rows["shots/a"].counts == {-10: 1, -5: 1, 0: 0, 5: 0, 10: 0}
    assert report.examples_rated == 3 and report.votes == 5
    assert report.mean == pytest.approx((-7.5 + 7.5 + 10) / 3)          # 3.333: every example weighs the same
    assert report.mean_of_votes == pytest.approx((-10 + 5 + 10 - 5 + 10) / 5)  # 2.0
    assert [(r.rater, r.votes) for r in report.raters] == [("alice", 3), ("bob", 2)]
    assert report.raters[0].mean == pytest.approx(5 / 3) and report.raters[1].mean == 2.5


def test_no_votes_gives_an_empty_report():
    report = compute_report({1: "a"}, [])
    assert (report.mean, report.ci_low, report.ci_high, report.votes) == (None, None, None, 0)
    assert "no votes yet" in report.lines()


def test_off_scale_scores_are_refused():
    with pytest.raises(ValueError, match="not on the scale"):
        compute_report({1: "a"}, [("alice", 1, 3)])


def test_bootstrap_interval_hand_cases():
    # one value, or all equal: no uncertainty about which examples were drawn
    assert bootstrap_interval(np.array([4.0])) == (4.0, 4.0)
    assert bootstrap_interval(np.array([2.5, 2.5, 2.5])) == (2.5, 2.5)
    # two values x < y: a draw's mean is x (p=1/4), (x+y)/2 (1/2) or y (1/4); the 2.5th and 97.5th
    # percentiles are x and y
    assert bootstrap_interval(np.array([-5.0, 10.0])) == (-5.0, 10.0)


def test_bootstrap_interval_is_seeded_and_has_the_normal_width():
    values = np.random.default_rng(1).uniform(-10, 10, size=50)  # example means are not on the lattice
    a = bootstrap_interval(values, seed=3)
    assert a == bootstrap_interval(values, seed=3)
    assert a != bootstrap_interval(values, seed=4)
    # for 50 values the bootstrap distribution of the mean is close to normal with sd = sd(values)/sqrt(50)
    half = 1.959964 * values.std() / np.sqrt(values.size)
    low, high = a
    assert low < values.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.08)
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.1 * half)


def test_report_files(tmp_path):
    report = hand_report(n_bootstrap=2000, seed=7)
    paths = write_report(report, tmp_path / "out")
    assert [p.name for p in paths] == ["examples.csv", "raters.csv", "report.json", "chart.png"]
    with open(tmp_path / "out" / "examples.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "example", "votes", "mean", "votes_-10", "votes_-5", "votes_+0", "votes_+5", "votes_+10"]
    assert rows[1] == ["1", "shots/a", "2", "-7.5", "1", "1", "0", "0", "0"]
    assert rows[4] == ["4", "d", "0", "", "0", "0", "0", "0", "0"]
    assert (tmp_path / "out" / "raters.csv").read_text() == "rater,votes,mean\nalice,3,1.66667\nbob,2,2.5\n"
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["mean"] == pytest.approx(10 / 3) and data["votes"] == 5
    assert (data["n_bootstrap"], data["seed"], data["confidence"]) == (2000, 7, 0.95)
    assert (data["ci_low"], data["ci_high"]) == pytest.approx(bootstrap_interval(
        np.array([-7.5, 7.5, 10.0]), n_bootstrap=2000, seed=7))
    assert data["examples"][0]["counts"] == {"-10": 1, "-5": 1, "0": 0, "5": 0, "10": 0}
    assert data["scale"]["-10"] == "BGM much better" and data["scale"]["5"] == "Ours slightly better"
    with pytest.raises(InputError, match="already exists"):
        write_report(report, tmp_path / "out")
    write_report(report, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no partials


def test_chart_bars_have_the_length_of_each_mean():
    report = hand_report()
    image = np.asarray(draw_chart(report))
    for row, example in enumerate(report.examples):
        line = image[round(chart_row_y(row))]
        towards_a = np.all(line == COLOUR_A, axis=-1)
        towards_b = np.all(line == COLOUR_B, axis=-1)
        if example.mean is None:
            assert not towards_a.any() and not towards_b.any()
            continue
        bar = towards_a if example.mean < 0 else towards_b
        span = np.flatnonzero(bar)
        assert span.size, example.key
        expected = sorted((chart_x(0), chart_x(example.mean)))
        assert abs(span[0] - expected[0]) <= 1.5 and abs(span[-1] - expected[1]) <= 1.5, example.key
