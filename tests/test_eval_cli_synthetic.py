"""A small end-to-end evaluation on the procedural synthetic dataset (strands, veils, holes):
the test-time composite, ``bgm-jax eval`` over the written folders, and the numbers it reports."""

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bgm_jax import cli
from bgm_jax.datasets.synthetic import make_sample
from bgm_jax.evaluation import perturb, score


@pytest.fixture(autouse=True)
def only_the_eval_command(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {"eval": cli.COMMANDS["eval"]})


def blurred(alpha_u8):
    """A plausible imperfect prediction: the truth slightly blurred, kept as a float."""
    return ndimage.gaussian_filter(alpha_u8.astype(np.float32) / 255, sigma=1.0)


@pytest.fixture(scope="module")
def samples():
    return {f"s{seed}": make_sample(seed, 64, 72) for seed in range(3)}


def write_folders(root, samples, predict):
    for name, sample in samples.items():
        for folder, array in [("gt", sample["pha"]), ("fgr_gt", sample["fgr"]), ("fgr_pred", sample["fgr"])]:
            (root / folder).mkdir(exist_ok=True)
            Image.fromarray(array).save(root / folder / f"{name}.png")
        (root / "pred").mkdir(exist_ok=True)
        Image.fromarray(predict(sample["pha"])).save(root / "pred" / f"{name}.png")


def test_eval_on_synthetic_samples_matches_score_sample_and_is_zero_for_exact_predictions(tmp_path, samples, capsys):
    write_folders(tmp_path, samples, lambda pha: score.quantize_alpha(blurred(pha), "floor"))
    code = cli.main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                     "--fgr-pred", str(tmp_path / "fgr_pred"), "--fgr-gt", str(tmp_path / "fgr_gt"),
                     "--trimap-mode", "band", "--json", str(tmp_path / "scores.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["complete"] and data["n_images"] == 3 and data["trimap"] == "band"
    for image in data["images"]:
        pha = samples[image["file"]]["pha"]
        expected = score.score_sample(score.quantize_alpha(blurred(pha), "floor"), pha, "band",
                                         samples[image["file"]]["fgr"], samples[image["file"]]["fgr"])
        assert {k: v for k, v in image.items() if k != "file"} == pytest.approx(expected)
        assert all(image[m] > 0 for m in ("SAD", "MSE", "Grad", "Conn")) and image["FG_MSE"] == 0.0
    assert data["mean"]["SAD"] == pytest.approx(np.mean([i["SAD"] for i in data["images"]]))
    assert out.splitlines()[-1].startswith("mean (3)")

    exact = tmp_path / "exact"
    exact.mkdir()
    write_folders(exact, samples, lambda pha: pha)
    code = cli.main(["eval", "--pred", str(exact / "pred"), "--gt", str(exact / "gt"), "--json", str(exact / "s.json")])
    assert code == 0
    mean = json.loads((exact / "s.json").read_text())["mean"]
    assert mean == {"SAD": 0.0, "MSE": 0.0, "Grad": 0.0, "Conn": 0.0}


def test_test_time_composite_of_a_synthetic_sample_perturbs_only_the_background(samples):
    sample = samples["s0"]
    src, bgr = perturb.composite_test_input(sample["fgr"], sample["pha"], sample["bgr"], seed=1)
    clean = sample["bgr"].astype(np.float32) / 255
    assert src.shape == bgr.shape == clean.shape
    background_only = sample["pha"] == 0
    np.testing.assert_allclose(src[background_only], clean[background_only], atol=1e-6)
    residual = bgr - clean  # noise of std 0.08..0.15 dominates the subpixel shift and gamma
    assert 0.05 < float(residual.std()) < 0.2
