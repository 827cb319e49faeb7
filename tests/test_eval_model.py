"""``bgm-jax eval --model``: a random-weight MobileNetV2 over tiny prepared test sets, end to end.

One real model run through the CLI (3 synthetic 64x64 samples, one compilation) is shared by the tests
that read its table, CSV, JSON and saved predictions; the protocol itself (what the model is given,
batching, naming, seeds) is checked with a recording stand-in for the model, which needs no compilation.
"""

import contextlib
import csv
import io
import json
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from bgm_jax import cli
from bgm_jax.checkpoint import save_model
from bgm_jax.cli.common import random_variables
from bgm_jax.datasets import catalog
from bgm_jax.datasets.builders.synthetic_matting import SyntheticMattingConfig
from bgm_jax.datasets.synthetic import make_sample
from bgm_jax.errors import InputError
from bgm_jax.evaluation import files, perturb, protocol

CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
TINY = "synthetic_matting/tiny64"


@pytest.fixture(autouse=True)
def only_the_eval_command(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", {"eval": cli.COMMANDS["eval"]})


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mobilenetv2"
    save_model(path, random_variables(CONFIG, seed=0), CONFIG)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Prepared datasets: 3 synthetic 64x64 test samples, a PhotoMatte85-style test set of 2 samples
    paired with backgrounds of another size, and a matting set without backgrounds."""
    root = tmp_path_factory.mktemp("datasets")
    data = root / "data"
    config = SyntheticMattingConfig(name="tiny64", height=64, width=64, num_train=1, num_test=3)
    catalog.build_dataset("synthetic_matting", data, config=config)

    for i, name in enumerate(["alice", "bob"]):
        sample = make_sample(100 + i, 48, 40)
        save(root / f"pm85/fgr/{name}.png", sample["fgr"])
        save(root / f"pm85/pha/{name}.png", sample["pha"])
    for i in range(3):
        save(root / f"bg/wide{i}.png", make_sample(200 + i, 60, 90)["bgr"])  # not the samples' size
    catalog.build_dataset("matting_testset/photomatte85", data, samples_dir=root / "pm85",
                          backgrounds_dir=root / "bg")
    catalog.build_dataset("image_matting/folder", data, manual_dir=root / "pm85")
    return data


def run_cli(*args):
    """``bgm-jax eval ARGS`` -> (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["eval", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def model_run(checkpoint, data_dir, tmp_path_factory):
    """One ``--model`` run over the synthetic test set, saving predictions, CSV and JSON; batches of 2,
    so the third image runs padded to the compiled width."""
    out = tmp_path_factory.mktemp("run")
    code, stdout, stderr = run_cli(
        "--model", checkpoint, "--dataset", TINY, "--data-dir", data_dir, "--compilation-cache", "", "--batch", "2",
        "--save-pred", out / "pred", "--csv", out / "scores.csv", "--json", out / "scores.json",
    )
    return SimpleNamespace(code=code, out=stdout, err=stderr, dir=out)


# ---------------------------------------------------------------------------------------------------
# the real model, through the CLI


def test_model_eval_prints_per_image_and_mean_table_naming_trimap_and_paper_settings(model_run):
    assert model_run.code == 0, model_run.err
    lines = model_run.out.splitlines()
    assert "trimap: closing (generated from ground-truth alpha)" in lines[0] and "images scored: 3" in lines[0]
    assert "quantize: round" in lines[0]
    settings = lines[1]
    assert settings.startswith("settings: model=mobilenetv2 refine")
    assert "backbone_scale=0.25" in settings and "refine_sample_pixels=320000" in settings
    assert "refine_patches=20000" in settings and "perturbation_seed=0" in settings and "batch=2" in settings
    assert lines[2].split() == ["file", "SAD/1e3", "MSE", "x1e3", "Grad", "Conn", "FG", "MSE", "x1e3"]
    assert [line.split()[0] for line in lines[4:7]] == ["000000", "000001", "000002"]
    assert lines[-1].startswith("mean (3)")


def test_model_eval_csv_and_json_have_one_row_per_image_plus_the_mean_and_name_the_trimap(model_run):
    rows = list(csv.DictReader((model_run.dir / "scores.csv").open()))
    assert [r["file"] for r in rows] == ["000000", "000001", "000002", "mean"]
    assert {r["trimap"] for r in rows} == {"closing"} and {r["quantize"] for r in rows} == {"round"}
    data = json.loads((model_run.dir / "scores.json").read_text())
    assert data["trimap"] == "closing" and data["complete"] is True and data["n_images"] == 3
    assert [image["file"] for image in data["images"]] == ["000000", "000001", "000002"]
    assert data["settings"]["backbone_scale"] == 0.25 and data["settings"]["refine_sample_pixels"] == 320_000
    assert data["sources"]["dataset"].startswith(TINY)
    for metric in ("SAD", "MSE", "Grad", "Conn", "FG_MSE"):
        values = [image[metric] for image in data["images"]]
        assert all(v > 0 for v in values)  # random weights are far from the truth
        assert data["mean"][metric] == pytest.approx(np.mean(values))
        assert float(rows[-1][metric]) == pytest.approx(data["mean"][metric])


def test_a_model_that_records_its_backbone_scale_is_evaluated_at_it_unless_told_otherwise(data_dir, tmp_path):
    path = tmp_path / "half"
    save_model(path, random_variables(CONFIG, seed=0), {**CONFIG, "backbone_scale": 0.5})
    common = ("--model", path, "--dataset", TINY, "--data-dir", data_dir, "--compilation-cache", "", "--batch", "3")
    code, out, err = run_cli(*common)
    assert code == 0, err
    assert "backbone_scale=0.5" in out.splitlines()[1]
    code, out, err = run_cli(*common, "--backbone-scale", "0.25")
    assert code == 0, err
    assert "backbone_scale=0.25" in out.splitlines()[1]


def test_saved_predictions_rescored_with_pred_mode_give_the_same_numbers(model_run):
    pred = model_run.dir / "pred"
    for folder in ("pha", "fgr", "gt_pha", "gt_fgr"):
        assert sorted(p.name for p in (pred / folder).iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert f"--pred {pred / 'pha'} --gt {pred / 'gt_pha'}" in model_run.err  # the command to re-score
    code, out, err = run_cli(
        "--pred", pred / "pha", "--gt", pred / "gt_pha", "--fgr-pred", pred / "fgr", "--fgr-gt", pred / "gt_fgr",
        "--json", model_run.dir / "rescored.json",
    )
    assert code == 0, err
    model = json.loads((model_run.dir / "scores.json").read_text())
    rescored = json.loads((model_run.dir / "rescored.json").read_text())
    assert rescored["images"] == model["images"]  # exactly: the same arrays reach the same functions
    assert rescored["mean"] == model["mean"]


def test_saved_ground_truth_is_the_dataset_record_and_predictions_are_the_model_output(
    model_run, checkpoint, data_dir, tmp_path
):
    # the API with batch size 1 (its own single compilation) saves the same predictions as the CLI's
    # batches of 2 (the last one padded), to within one 8-bit level: batching does not change the scores
    import bgm_jax

    matting = bgm_jax.load(checkpoint, backbone_scale=0.25, refine_sample_pixels=320_000, compilation_cache=False)
    test_set = protocol.open_test_set(TINY, data_dir=data_dir)
    writer = protocol.PredictionWriter(tmp_path / "pred")
    report = protocol.evaluate_model(matting, test_set, batch_size=1, writer=writer)
    assert matting.compile_count == 1 and len(report.rows) == 3
    source = catalog.open_split(TINY, "test", data_dir, decode_images=True)
    for index, name in enumerate(["000000", "000001", "000002"]):
        gt = np.asarray(Image.open(model_run.dir / f"pred/gt_pha/{name}.png"))
        np.testing.assert_array_equal(gt, source[index]["pha"][..., 0])
        cli_pha = np.asarray(Image.open(model_run.dir / f"pred/pha/{name}.png"), np.int16)
        api_pha = np.asarray(Image.open(tmp_path / f"pred/pha/{name}.png"), np.int16)
        assert np.abs(cli_pha - api_pha).max() <= 1


# ---------------------------------------------------------------------------------------------------
# the protocol, with a recording stand-in for the model


class RecordingMatting:
    """Returns alpha 0.5 and the composite as foreground; remembers every batch it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, src, bgr):
        self.calls.append((np.array(src), np.array(bgr)))
        return SimpleNamespace(pha=np.full(src.shape[:3] + (1,), 0.5, np.float32), fgr=np.array(src))


def test_the_model_gets_the_seeded_perturbed_background_and_the_composite_uses_the_clean_one(data_dir):
    test_set = protocol.open_test_set(TINY, data_dir=data_dir)
    source = catalog.open_split(TINY, "test", data_dir, decode_images=True)
    for run_seed in (0, 7):
        matting = RecordingMatting()
        protocol.evaluate_model(matting, test_set, seed=run_seed, batch_size=3)
        (src, bgr), = matting.calls  # one batch of 3
        for index in range(3):
            record = source[index]
            clean = record["bgr"].astype(np.float32) / 255
            alpha = record["pha"].astype(np.float32) / 255
            expected_src = alpha * (record["fgr"].astype(np.float32) / 255) + (1 - alpha) * clean
            np.testing.assert_allclose(src[index], expected_src, atol=1e-6)
            seed = protocol.perturbation_seed(record["seed"], run_seed)
            np.testing.assert_array_equal(bgr[index], perturb.perturb_background(record["bgr"], seed))
            assert np.abs(bgr[index] - clean).mean() > 0.03  # perturbed, not the clean plate
    assert protocol.perturbation_seed(5, 0) != protocol.perturbation_seed(5, 7)


def test_testset_records_are_named_sample_at_background_and_use_their_stored_seed(data_dir):
    test_set = protocol.open_test_set("matting_testset/photomatte85", data_dir=data_dir)
    matting = RecordingMatting()
    report = protocol.evaluate_model(matting, test_set, trimap_mode="band", batch_size=5)
    source = catalog.open_split("matting_testset/photomatte85", "test", data_dir, decode_images=True)
    names = [f"{protocol._text(r['name'])}@{protocol._text(r['background'])}" for r in source]
    assert [name for name, _ in report.rows] == names and names[0].startswith("alice@wide")
    (src, bgr), = matting.calls  # both 48x40 samples in one batch
    assert src.shape == (2, 48, 40, 3)
    for index, record in enumerate(source):
        fitted = protocol.fit_background(record["bgr"], 48, 40)  # 60x90 plate: height fitted, centre crop
        assert record["bgr"].shape == (60, 90, 3) and fitted.shape == (48, 40, 3)
        seed = protocol.perturbation_seed(record["seed"], 0)
        np.testing.assert_array_equal(bgr[index], perturb.perturb_background(fitted, seed))
    assert report.trimap == "band"


def test_batches_hold_one_size_and_a_short_batch_is_padded_to_the_width_already_compiled(tmp_path):
    sizes = {"a": (32, 32), "b": (32, 32), "c": (32, 32), "d": (36, 44), "e": (36, 44), "f": (32, 32)}
    for name, (h, w) in sizes.items():
        sample = make_sample(len(name) + ord(name), h, w)
        save(tmp_path / f"fgr/{name}.png", sample["fgr"])
        save(tmp_path / f"pha/{name}.png", sample["pha"])
        save(tmp_path / f"bgr/{name}.jpg", sample["bgr"])
    matting = RecordingMatting()
    report = protocol.evaluate_model(matting, protocol.open_test_set(dataset_dir=tmp_path), batch_size=2)
    shapes = [src.shape for src, _ in matting.calls]
    # a b | c (+c: padded to the width 2 that 32x32 already ran at) | d e | f (+f)
    assert shapes == [(2, 32, 32, 3), (2, 32, 32, 3), (2, 36, 44, 3), (2, 32, 32, 3)]
    np.testing.assert_array_equal(matting.calls[1][0][0], matting.calls[1][0][1])
    assert [name for name, _ in report.rows] == list("abcdef") and report.complete


def test_a_short_first_batch_runs_at_its_own_width_instead_of_padding():
    widths = {}
    matting = RecordingMatting()
    x = protocol.TestInput("x", np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.float32), None, None)
    protocol.run_model_batch(matting, [x, x, x], widths)
    protocol.run_model_batch(matting, [x], widths)
    assert [src.shape[0] for src, _ in matting.calls] == [3, 3] and widths == {(8, 8, 3): 3}


def test_folder_test_set_reports_unpaired_and_unreadable_samples_by_name_and_scores_the_rest(tmp_path):
    for name in ["a", "b", "c"]:
        sample = make_sample(ord(name), 24, 28)
        save(tmp_path / f"fgr/{name}.png", sample["fgr"])
        save(tmp_path / f"pha/{name}.png", sample["pha"])
        if name != "b":
            save(tmp_path / f"bgr/{name}.png", make_sample(ord(name), 40, 30)["bgr"])
    (tmp_path / "pha/c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    test_set = protocol.open_test_set(dataset_dir=tmp_path)
    assert len(test_set) == 2 and test_set.load(0).record_seed == zlib.crc32(b"a")
    report = protocol.evaluate_model(RecordingMatting(), test_set)
    assert [name for name, _ in report.rows] == ["a"]
    problems = dict(report.problems)
    assert problems["b"].startswith("no bgr/ image under") and "unreadable" in problems["c"]
    assert not report.complete


def test_prediction_writer_keeps_dots_in_names_writes_unquantised_alpha_as_16_bit_and_refuses_escapes(tmp_path):
    writer = protocol.PredictionWriter(tmp_path / "out")
    alpha = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    colour = np.zeros((4, 4, 3), np.uint8)
    writer.write("sub/take.2", alpha, colour, np.zeros((4, 4), np.uint8), colour)
    written = files.read_alpha(tmp_path / "out/pha/sub/take.2.png")
    assert written.dtype == np.uint16 and written[-1, -1] == 65535
    assert "sub/take.2" in files.index_images(tmp_path / "out/pha").files
    with pytest.raises(InputError, match="outside"):
        writer.write("../escape", alpha, colour, colour[..., 0], colour)
    with pytest.raises(InputError, match="already holds pha/"):
        protocol.PredictionWriter(tmp_path / "out")
    protocol.PredictionWriter(tmp_path / "out", overwrite=True)


# ---------------------------------------------------------------------------------------------------
# bad input: one line, exit 2, before any model is loaded


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "no_such_set", "--data-dir", "{data}"], "no such dataset"),
        (["--dataset", TINY, "--data-dir", "{tmp}/missing"], "--data-dir"),
        (["--dataset", TINY], "give --data-dir"),
        (["--dataset", "synthetic_matting/unbuilt", "--data-dir", "{data}"], "build it first"),
        (["--dataset", "image_matting/folder", "--data-dir", "{data}", "--split", "train"], "records have no bgr"),
        (["--dataset", "{tmp}/layout"], "give it with --dataset-dir"),
        (["--dataset-dir", "{tmp}/missing"], "not a directory"),
        (["--dataset-dir", "{tmp}"], "no fgr/, pha/, bgr/ folder"),
        (["--dataset-dir", "{tmp}/layout", "--data-dir", "{data}"], "only with --dataset NAME"),
        (["--dataset", TINY, "--data-dir", "{data}", "--dataset-dir", "{tmp}/layout"], "give one test set"),
        (["--dataset", TINY, "--data-dir", "{data}", "--pred", "{tmp}"], "--pred belong to scoring"),
        (["--dataset", TINY, "--data-dir", "{data}", "--save-pred", "{tmp}/used"], "already holds pha/"),
    ],
)
def test_model_mode_bad_input_is_one_line_and_exit_2(checkpoint, data_dir, tmp_path, args, message):
    for folder in ("fgr", "pha", "bgr"):
        (tmp_path / "layout" / folder).mkdir(parents=True)
    save(tmp_path / "used/pha/x.png", np.zeros((4, 4), np.uint8))
    args = [a.format(data=data_dir, tmp=tmp_path) for a in args]
    code, out, err = run_cli("--model", checkpoint, *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_model_options_without_model_and_a_missing_checkpoint_are_exit_2(data_dir, tmp_path):
    code, _, err = run_cli("--pred", tmp_path, "--gt", tmp_path, "--batch", "3", "--backbone-scale", "0.5")
    assert code == 2 and "--batch, --backbone-scale: only when evaluating a model" in err
    code, _, err = run_cli("--model", tmp_path / "none", "--dataset", TINY, "--data-dir", data_dir)
    assert code == 2 and "no such checkpoint directory" in err
    code, _, err = run_cli()
    assert code == 2 and "give --pred DIR and --gt DIR" in err
