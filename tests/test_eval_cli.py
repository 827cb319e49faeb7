"""``bgm-jax eval`` end to end on tiny PNG folders: table, CSV/JSON, problems reported by name, exit codes."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from bgm_jax import cli
from bgm_jax.evaluation import metrics, score


@pytest.fixture(autouse=True)
def only_the_eval_command(monkeypatch):
    # build_parser imports every registered subcommand; keep this test about `eval` (the real entry in
    # COMMANDS, through the real main) and independent of the other commands' modules.
    monkeypatch.setattr(cli, "COMMANDS", {"eval": cli.COMMANDS["eval"]})


def soft_disc(h=24, w=32, cy=12.0, cx=16.0, radius=6.0, edge=3.0):
    y, x = np.mgrid[:h, :w]
    r = np.hypot(y - cy, x - cx)
    return (np.clip((radius + edge - r) / edge, 0, 1) * 255).astype(np.uint8)


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def folders(tmp_path):
    """gt/{a,sub/b}.png with predictions pred/a.png (shifted) and pred/sub/b.png (exact), plus
    foregrounds for both."""
    gt_a, gt_b = soft_disc(), soft_disc(cy=10, cx=20)
    pred_a = np.roll(gt_a, 1, axis=1)
    save(tmp_path / "gt/a.png", gt_a)
    save(tmp_path / "gt/sub/b.png", gt_b)
    save(tmp_path / "pred/a.png", pred_a)
    save(tmp_path / "pred/sub/b.png", gt_b)
    fgr = np.full((24, 32, 3), 100, np.uint8)
    for key in ["a", "sub/b"]:
        save(tmp_path / f"fgr_gt/{key}.png", fgr)
        save(tmp_path / f"fgr_pred/{key}.png", fgr + 20)
    return tmp_path, {"a": (pred_a, gt_a), "sub/b": (gt_b, gt_b)}


def run_eval(capsys, *args):
    code = cli.main(["eval", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_prints_a_per_image_and_mean_table_and_exits_0(folders, capsys):
    root, _ = folders
    code, out, err = run_eval(capsys, "--pred", root / "pred", "--gt", root / "gt")
    assert code == 0, err
    lines = out.splitlines()
    assert "trimap: closing (generated from ground-truth alpha)" in lines[0]
    assert "quantize: round" in lines[0] and "images scored: 2" in lines[0]
    assert [line.split()[0] for line in lines[3:5]] == ["a", "sub/b"]
    assert lines[-1].startswith("mean (2)")


def test_eval_csv_and_json_hold_the_same_scores_as_score_sample(folders, capsys):
    root, arrays = folders
    code, _, err = run_eval(
        capsys, "--pred", root / "pred", "--gt", root / "gt", "--trimap-mode", "band",
        "--fgr-pred", root / "fgr_pred", "--fgr-gt", root / "fgr_gt",
        "--csv", root / "out/scores.csv", "--json", root / "out/scores.json",
    )
    assert code == 0, err
    data = json.loads((root / "out/scores.json").read_text())
    assert data["trimap"] == "band" and data["complete"] is True
    fgr = np.full((24, 32, 3), 100, np.uint8)
    for image in data["images"]:
        pred, gt = arrays[image["file"]]
        expected = score.score_sample(pred, gt, "band", fgr + 20, fgr)
        assert {k: v for k, v in image.items() if k != "file"} == pytest.approx(expected)
    rows = list(csv.DictReader((root / "out/scores.csv").open()))
    assert [r["file"] for r in rows] == ["a", "sub/b", "mean"]
    assert {r["trimap"] for r in rows} == {"band"}
    assert float(rows[0]["FG_MSE"]) == pytest.approx(data["images"][0]["FG_MSE"])


def test_eval_reports_unmatched_and_corrupt_files_by_name_and_exits_1(folders, capsys):
    root, _ = folders
    save(root / "gt/only_gt.png", soft_disc())
    save(root / "pred/only_pred.png", soft_disc())
    save(root / "gt/broken.png", soft_disc())
    (root / "pred/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    code, out, err = run_eval(capsys, "--pred", root / "pred", "--gt", root / "gt", "--json", root / "s.json")
    assert code == 1
    assert "problem: only_gt: no prediction" in err
    assert "problem: only_pred: no ground truth" in err
    assert "problem: broken: unreadable" in err and "broken.png" in err
    assert "INCOMPLETE: 3 problem(s)" in out and "images scored: 2" in out
    data = json.loads((root / "s.json").read_text())
    assert data["complete"] is False
    assert sorted(p["file"] for p in data["problems"]) == ["broken", "only_gt", "only_pred"]


def test_eval_matches_stems_across_png_and_jpg(folders, capsys):
    root, _ = folders
    (root / "pred/a.png").unlink()
    save(root / "pred/a.jpg", soft_disc())
    code, out, err = run_eval(capsys, "--pred", root / "pred", "--gt", root / "gt")
    assert code == 0, err
    assert out.splitlines()[3].split()[0] == "a"


def test_eval_with_trimap_folder_names_the_reading_file_and_reports_missing_trimaps(folders, capsys):
    root, arrays = folders
    trimap = np.full((24, 32), 128, np.uint8)
    save(root / "trimap/a.png", trimap)
    code, out, err = run_eval(capsys, "--pred", root / "pred", "--gt", root / "gt", "--trimap", root / "trimap",
                              "--csv", root / "s.csv")
    assert code == 1
    assert "trimap: file (read from" in out
    assert "problem: sub/b: no trimap" in err
    rows = list(csv.DictReader((root / "s.csv").open()))
    pred, gt = arrays["a"]
    assert float(rows[0]["SAD"]) == pytest.approx(score.score_sample(pred, gt, trimap)["SAD"])
    assert rows[0]["trimap"] == "file" and rows[1]["problem"].startswith("no trimap")


def test_eval_16bit_predictions_follow_the_quantize_option(tmp_path, capsys):
    # each 16-bit value sits 200/257 = 0.78 of an 8-bit level above the truth: floor gives the truth
    # back, round one level more, none the 0.78 levels
    gt = soft_disc()
    pred16 = np.where(gt < 255, gt.astype(np.uint16) * 257 + 200, 65535).astype(np.uint16)
    save(tmp_path / "gt/a.png", gt)
    save(tmp_path / "pred/a.png", pred16)
    sads = {}
    for mode in ["round", "floor", "none"]:
        code, _, err = run_eval(capsys, "--pred", tmp_path / "pred", "--gt", tmp_path / "gt",
                                "--quantize", mode, "--trimap-mode", "band", "--json", tmp_path / f"{mode}.json")
        assert code == 0, err
        data = json.loads((tmp_path / f"{mode}.json").read_text())
        assert data["quantize"] == mode
        sads[mode] = data["images"][0]["SAD"]
    off_by_fraction = np.sum((metrics.trimap_from_alpha(gt, "band") == 128) & (gt < 255))
    assert sads["floor"] == 0.0
    assert sads["round"] == pytest.approx(off_by_fraction / 255 / 1000, rel=1e-5)
    assert sads["none"] == pytest.approx(off_by_fraction * 200 / 65535 / 1000, rel=1e-4)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--trimap", "T", "--trimap-mode", "band"], "not both"),
        (["--fgr-pred", "F"], "both --fgr-pred and --fgr-gt"),
        (["--csv", "."], "is a directory"),
    ],
)
def test_eval_rejects_bad_option_combinations_with_exit_2(folders, capsys, extra, message):
    root, _ = folders
    code, out, err = run_eval(capsys, "--pred", root / "pred", "--gt", root / "gt", *extra)
    assert code == 2 and message in err and out == ""
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


def test_eval_with_a_missing_folder_or_nothing_to_pair_exits_2(folders, capsys):
    root, _ = folders
    code, _, err = run_eval(capsys, "--pred", root / "missing", "--gt", root / "gt")
    assert code == 2 and "--pred" in err and "not a directory" in err
    (root / "other").mkdir()
    save(root / "other/zzz.png", soft_disc())
    code, out, err = run_eval(capsys, "--pred", root / "other", "--gt", root / "gt")
    assert code == 2 and "no image could be scored" in err and out == ""
    assert "problem: a: no prediction" in err


def test_eval_output_that_cannot_be_written_is_one_line_exit_2(folders, capsys):
    root, _ = folders
    code, _, err = run_eval(capsys, "--pred", root / "pred", "--gt", root / "gt", "--json", root / "gt/a.png/s.json")
    assert code == 2 and "cannot write" in err and "s.json" in err
    assert not list(root.rglob("*.tmp-*"))


def test_eval_missing_foreground_keeps_the_alpha_scores_and_reports_the_file(folders, capsys):
    root, _ = folders
    (root / "fgr_pred/sub/b.png").unlink()
    code, out, err = run_eval(capsys, "--pred", root / "pred", "--gt", root / "gt", "--json", root / "s.json",
                              "--fgr-pred", root / "fgr_pred", "--fgr-gt", root / "fgr_gt")
    assert code == 1
    assert "problem: sub/b: no predicted foreground under" in err
    data = json.loads((root / "s.json").read_text())
    assert data["n_images"] == 2 and "FG_MSE" not in data["images"][1] and data["mean_counts"]["FG_MSE"] == 1
    assert "mean of FG_MSE over 1 images" in out
