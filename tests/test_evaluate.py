"""Scoring one sample, quantisation, reports and file pairing in bgm_jax.evaluation."""

import csv
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from bgm_jax.errors import InputError
from bgm_jax.evaluation import files, metrics, report, score


def soft_disc(h=24, w=32, radius=7.0, edge=3.0):
    """An 8-bit matte: an opaque disc with a soft rim, so every trimap reading has unknown pixels."""
    y, x = np.mgrid[:h, :w]
    r = np.hypot(y - h / 2, x - w / 2)
    return (np.clip((radius + edge - r) / edge, 0, 1) * 255).astype(np.uint8)


# --- quantisation and cropping -----------------------------------------------------------------------


def test_quantize_round_and_floor_differ_as_the_original_truncated():
    alpha = np.array([100.7 / 255, 0.6, 1.2, -0.1], np.float32)
    np.testing.assert_array_equal(score.quantize_alpha(alpha, "round"), [101, 153, 255, 0])
    np.testing.assert_array_equal(score.quantize_alpha(alpha, "floor"), [100, 153, 255, 0])


def test_quantize_none_keeps_float_precision_clipped_to_unit_range():
    out = score.quantize_alpha(np.array([0.25, 1.5], np.float64), "none")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.25, 1.0])


def test_quantize_leaves_8bit_input_as_stored_and_scales_16bit():
    stored = np.array([3, 200], np.uint8)
    assert score.quantize_alpha(stored, "floor") is stored
    sixteen = np.array([65535, 32768], np.uint16)  # 32768/65535*255 = 127.502
    np.testing.assert_array_equal(score.quantize_alpha(sixteen, "round"), [255, 128])
    np.testing.assert_array_equal(score.quantize_alpha(sixteen, "floor"), [255, 127])
    with pytest.raises(InputError, match="round, floor, none"):
        score.quantize_alpha(stored, "ceil")


def test_crop_to_multiple_of_4_keeps_the_top_left():
    image = np.arange(7 * 10).reshape(7, 10)
    np.testing.assert_array_equal(score.crop_to_multiple_of_4(image), image[:4, :8])


# --- score_sample --------------------------------------------------------------------------------------


def test_score_sample_equals_the_individual_metrics_in_paper_units():
    gt = soft_disc()
    pred = np.roll(gt, 1, axis=1)
    trimap = metrics.trimap_from_alpha(gt, "band")
    scores = score.score_sample(pred, gt, trimap)
    assert scores == {
        "SAD": metrics.sad(pred, gt, trimap),
        "MSE": metrics.mse(pred, gt, trimap),
        "Grad": metrics.gradient_error(pred, gt, trimap),
        "Conn": metrics.connectivity_error(pred, gt, trimap),
    }
    assert scores["SAD"] > 0


def test_score_sample_generates_the_named_trimap_reading_after_cropping():
    gt = soft_disc(26, 35)
    pred = np.roll(gt, 1, axis=0)
    cropped_trimap = metrics.trimap_from_alpha(gt[:24, :32], "closing")
    assert score.score_sample(pred, gt, "closing") == score.score_sample(pred[:24, :32], gt[:24, :32], cropped_trimap)


def test_score_sample_accepts_a_prediction_already_cropped_to_multiples_of_4():
    gt = soft_disc(26, 35)
    assert score.score_sample(gt[:24, :32], gt, "band")["SAD"] == 0.0


def test_score_sample_rejects_sizes_that_differ_after_cropping():
    with pytest.raises(InputError, match="sizes differ after cropping"):
        score.score_sample(soft_disc(28, 32), soft_disc(24, 32), "closing")


def test_score_sample_rejects_a_colour_trimap():
    gt = soft_disc()
    with pytest.raises(InputError, match="trimap has shape"):
        score.score_sample(gt, gt, np.zeros(gt.shape + (3,), np.uint8))


def test_score_sample_adds_foreground_mse_only_with_both_foregrounds():
    gt = soft_disc()
    fgr = np.zeros(gt.shape + (3,), np.uint8)
    scores = score.score_sample(gt, gt, "band", fgr, fgr + 10)
    assert scores["FG_MSE"] > 0
    with pytest.raises(InputError, match="both"):
        score.score_sample(gt, gt, "band", pred_fgr=fgr)


# --- reports -------------------------------------------------------------------------------------------


def two_row_report():
    result = report.EvalReport(trimap="band", quantize="floor", trimap_source="generated from ground-truth alpha")
    result.add("a", {"SAD": 1.0, "MSE": 2.0, "Grad": 3000.0, "Conn": 40.0, "FG_MSE": 5.0})
    result.add("b", {"SAD": 3.0, "MSE": 4.0, "Grad": 5000.0, "Conn": 60.0})
    return result


def test_report_mean_is_the_plain_mean_over_images_having_each_metric():
    report = two_row_report()
    assert report.mean() == {"SAD": 2.0, "MSE": 3.0, "Grad": 4000.0, "Conn": 50.0, "FG_MSE": 5.0}
    assert report.mean_counts()["FG_MSE"] == 1


def test_report_table_names_trimap_reading_and_quantisation_and_has_a_mean_row():
    table = two_row_report().format_table()
    header, columns = table.splitlines()[:2]
    assert "trimap: band" in header and "quantize: floor" in header
    assert columns.split()[:3] == ["file", "SAD/1e3", "MSE"]
    assert "4000" in table.splitlines()[-2]  # mean Grad as an integer, as the paper prints it
    assert table.splitlines()[-1] == "mean of FG_MSE over 1 images"


def test_report_csv_has_trimap_and_quantize_columns_problems_and_a_mean_row():
    report = two_row_report()
    report.add_problem("c", "no prediction")
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["file"] for r in rows] == ["a", "b", "c", "mean"]
    assert {r["trimap"] for r in rows} == {"band"} and {r["quantize"] for r in rows} == {"floor"}
    assert rows[2]["problem"] == "no prediction" and rows[2]["SAD"] == ""
    assert float(rows[3]["Grad"]) == 4000.0 and rows[1]["FG_MSE"] == ""


def test_report_json_names_the_reading_marks_incomplete_runs_and_writes_nan_as_null(tmp_path):
    report = two_row_report()
    report.add("empty", {"SAD": 0.0, "MSE": math.nan, "Grad": 0.0, "Conn": 0.0})
    report.add_problem("c", "unreadable c.png")
    path = tmp_path / "out" / "report.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert data["trimap"] == "band" and data["quantize"] == "floor"
    assert data["complete"] is False and data["problems"] == [{"file": "c", "problem": "unreadable c.png"}]
    assert data["images"][2]["MSE"] is None and data["mean"]["MSE"] is None
    assert data["notes"][0]["file"] == "empty"
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary left behind


# --- files ---------------------------------------------------------------------------------------------


def test_read_alpha_takes_16bit_pngs_and_the_alpha_channel_of_rgba(tmp_path):
    sixteen = np.array([[0, 1000], [40000, 65535]], np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "a16.png")
    got = files.read_alpha(tmp_path / "a16.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, sixteen)

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = [[0, 10], [20, 30]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "com.png")
    np.testing.assert_array_equal(files.read_alpha(tmp_path / "com.png"), rgba[..., 3])


def test_index_images_keys_by_relative_stem_and_sets_apart_ambiguous_names(tmp_path):
    for name in ["a.png", "sub/b.JPG", "c.png", "c.jpg", "notes.txt", ".hidden/d.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    index = files.index_images(tmp_path)
    assert sorted(index.files) == ["a", "sub/b"]
    assert sorted(p.name for p in index.ambiguous["c"]) == ["c.jpg", "c.png"]


def test_evaluate_directories_rejects_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="--gt .*not a directory"):
        files.evaluate_directories(tmp_path, tmp_path / "nope")
