"""`bgm-jax images`: every output type at the source size, pairing, batching, per-file errors reported
by name and skipped, no overwriting without --overwrite, and clear exit codes for unusable arguments.

Images are generated here (64x48, plus one odd size); the model is a random-weight MobileNetV2 refine
checkpoint written once for the module. The CLI runs in-process (`cli.main`) so jax is imported once.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bgm_jax import cli
from bgm_jax.checkpoint import save_model
from bgm_jax.cli.common import random_variables

CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
W, H = 64, 48


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mobilenetv2"
    save_model(path, random_variables(CONFIG, seed=1), CONFIG)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("xla")


def write_rgb(path, height=H, width=W, seed=0, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return pixels


def images(model_dir, cache_dir, *args) -> int:
    return cli.main(["images", "--model", str(model_dir), "--compilation-cache", str(cache_dir), *map(str, args)])


def read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def mode(path) -> str:
    with Image.open(path) as image:
        return image.mode


# ---------------------------------------------------------------------------------------------- outputs


def test_every_output_type_is_written_at_the_source_size_mirroring_the_source_tree(model_dir, cache_dir, tmp_path):
    import bgm_jax
    from bgm_jax.io.outputs import to_uint8

    src_a = write_rgb(tmp_path / "src" / "a.png", seed=1)
    write_rgb(tmp_path / "src" / "day1" / "b.jpg", seed=2, fmt="PNG")  # a PNG named .jpg is still read
    write_rgb(tmp_path / "src" / "odd.png", height=47, width=61, seed=3)
    bgr_a = write_rgb(tmp_path / "bgr" / "a.png", seed=4)
    write_rgb(tmp_path / "bgr" / "day1" / "b.png", seed=5)  # paired by relative path minus extension
    write_rgb(tmp_path / "bgr" / "odd.png", height=47, width=61, seed=6)
    out = tmp_path / "out"

    code = images(model_dir, cache_dir, "--src", tmp_path / "src", "--bgr", tmp_path / "bgr", "--out", out,
                  "--outputs", "com,pha,fgr,err,ref")

    assert code == 0
    for name, (height, width) in {"a": (H, W), "day1/b": (H, W), "odd": (47, 61)}.items():
        com, pha = read(out / "com" / f"{name}.png"), read(out / "pha" / f"{name}.png")
        assert com.shape == (height, width, 4) and mode(out / "com" / f"{name}.png") == "RGBA"
        assert pha.shape == (height, width) and mode(out / "pha" / f"{name}.png") == "L"
        assert read(out / "fgr" / f"{name}.png").shape == (height, width, 3)
        assert read(out / "err" / f"{name}.png").shape == (height, width)
        ref = read(out / "ref" / f"{name}.png")
        assert ref.shape == (height, width) and set(np.unique(ref)) <= {0, 255}
        np.testing.assert_array_equal(com[..., 3], pha)  # com carries alpha = pha
        assert not com[pha == 0, :3].any()  # colour is zeroed where alpha is 0
    # The written alpha is the API's alpha, rounded (not truncated) to 8 bits.
    matting = bgm_jax.load(model_dir, compilation_cache=cache_dir)
    expected = to_uint8(np.asarray(matting(src_a, bgr_a).pha[0, ..., 0]))
    np.testing.assert_array_equal(read(out / "pha" / "a.png"), expected)


def test_a_short_last_batch_is_filled_and_gives_the_same_mattes_as_batch_one(model_dir, cache_dir, tmp_path):
    for i in range(3):
        write_rgb(tmp_path / "src" / f"{i}.png", seed=10 + i)
    write_rgb(tmp_path / "bgr.png", seed=20)
    for batch in (1, 2):
        assert images(model_dir, cache_dir, "--src", tmp_path / "src", "--bgr", tmp_path / "bgr.png",
                      "--out", tmp_path / f"b{batch}", "--outputs", "pha", "--batch", batch) == 0
    for i in range(3):
        one = read(tmp_path / "b1" / "pha" / f"{i}.png").astype(int)
        two = read(tmp_path / "b2" / "pha" / f"{i}.png").astype(int)
        assert np.abs(one - two).max() <= 1  # the same image in the same order (float noise aside)


def test_pha_16bit_writes_16_bit_greyscale_pngs(model_dir, cache_dir, tmp_path):
    write_rgb(tmp_path / "a.png", seed=30)
    write_rgb(tmp_path / "bgr.png", seed=31)
    assert images(model_dir, cache_dir, "--src", tmp_path / "a.png", "--bgr", tmp_path / "bgr.png",
                  "--out", tmp_path / "out", "--outputs", "pha", "--pha-16bit") == 0
    path = tmp_path / "out" / "pha" / "a.png"
    assert mode(path) == "I;16"
    assert read(path).shape == (H, W)


# ---------------------------------------------------------------------------------------------- per-file errors


def test_unreadable_mismatched_and_unpaired_images_are_reported_by_name_and_skipped(
    model_dir, cache_dir, tmp_path, capsys
):
    write_rgb(tmp_path / "src" / "good.png", seed=40)
    (tmp_path / "src" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    write_rgb(tmp_path / "src" / "small.png", height=24, width=32, seed=41)
    write_rgb(tmp_path / "src" / "lonely.png", seed=42)
    for name in ("good", "corrupt", "small"):
        write_rgb(tmp_path / "bgr" / f"{name}.png", seed=43)
    out = tmp_path / "out"

    code = images(model_dir, cache_dir, "--src", tmp_path / "src", "--bgr", tmp_path / "bgr", "--out", out,
                  "--outputs", "com,pha")

    err = capsys.readouterr()
    assert code == 1
    assert "corrupt.png: not an image Pillow can read" in err.err
    assert "small.png" in err.err and "is 64x48 but the source is 32x24" in err.err and "--resize-bgr" in err.err
    assert "lonely.png" in err.err and "no background" in err.err
    assert "1 of 4 written" in err.out and "3 failed" in err.out
    assert sorted(p.name for p in (out / "pha").iterdir()) == ["good.png"]
    assert sorted(p.name for p in (out / "com").iterdir()) == ["good.png"]


def test_resize_bgr_resizes_a_background_of_another_size(model_dir, cache_dir, tmp_path):
    write_rgb(tmp_path / "a.png", seed=50)
    write_rgb(tmp_path / "bgr.png", height=24, width=32, seed=51)
    assert images(model_dir, cache_dir, "--src", tmp_path / "a.png", "--bgr", tmp_path / "bgr.png",
                  "--out", tmp_path / "out", "--outputs", "pha", "--resize-bgr") == 0
    assert read(tmp_path / "out" / "pha" / "a.png").shape == (H, W)


def test_existing_outputs_are_kept_unless_overwrite_is_given(model_dir, cache_dir, tmp_path, capsys):
    write_rgb(tmp_path / "a.png", seed=60)
    write_rgb(tmp_path / "bgr.png", seed=61)
    out = tmp_path / "out"
    marker = np.full((H, W), 7, np.uint8)
    (out / "pha").mkdir(parents=True)
    Image.fromarray(marker).save(out / "pha" / "a.png")
    common = ("--src", tmp_path / "a.png", "--bgr", tmp_path / "bgr.png", "--out", out, "--outputs", "pha")

    assert images(model_dir, cache_dir, *common) == 2
    assert "already exist" in capsys.readouterr().err
    np.testing.assert_array_equal(read(out / "pha" / "a.png"), marker)

    assert images(model_dir, cache_dir, *common, "--skip-existing") == 0
    np.testing.assert_array_equal(read(out / "pha" / "a.png"), marker)

    assert images(model_dir, cache_dir, *common, "--overwrite") == 0
    assert not np.array_equal(read(out / "pha" / "a.png"), marker)
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]


def test_sorted_order_pairing_happens_only_with_the_flag(model_dir, cache_dir, tmp_path, capsys):
    for i, name in enumerate(("a.png", "b.png")):
        write_rgb(tmp_path / "src" / name, seed=70 + i)
        write_rgb(tmp_path / "bgr" / f"plate{i}.png", seed=72 + i)
    common = ("--src", tmp_path / "src", "--bgr", tmp_path / "bgr", "--out", tmp_path / "out", "--outputs", "pha")

    assert images(model_dir, cache_dir, *common) == 1  # names do not match: nothing is guessed
    assert "no background a.*" in capsys.readouterr().err
    assert images(model_dir, cache_dir, *common, "--sorted-pairing") == 0
    assert sorted(p.name for p in (tmp_path / "out" / "pha").iterdir()) == ["a.png", "b.png"]


# ---------------------------------------------------------------------------------------------- unusable arguments


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing_src", "no such file or folder"),
        ("missing_checkpoint", "no such checkpoint directory"),
        ("output_folder_is_a_file", "a file with that name exists"),
        ("unknown_output_type", "unknown alpha"),
        ("sorted_pairing_count_mismatch", "2 backgrounds for 1 sources"),
        ("empty_folder", "no images found"),
    ],
)
def test_unusable_arguments_exit_2_with_a_message_naming_the_problem(case, message, model_dir, cache_dir, tmp_path,
                                                                     capsys):
    write_rgb(tmp_path / "src" / "a.png", seed=80)
    write_rgb(tmp_path / "bgr.png", seed=81)
    (tmp_path / "empty").mkdir()
    args = {"--src": tmp_path / "src", "--bgr": tmp_path / "bgr.png", "--out": tmp_path / "out", "--outputs": "pha"}
    model = model_dir
    if case == "missing_src":
        args["--src"] = tmp_path / "nope"
    elif case == "missing_checkpoint":
        model = tmp_path / "no-model"
    elif case == "output_folder_is_a_file":
        (tmp_path / "file").write_text("x")
        args["--out"] = tmp_path / "file"
    elif case == "unknown_output_type":
        args["--outputs"] = "pha,alpha"
    elif case == "sorted_pairing_count_mismatch":
        write_rgb(tmp_path / "bgrs" / "x.png", seed=82)
        write_rgb(tmp_path / "bgrs" / "y.png", seed=83)
        args["--bgr"] = tmp_path / "bgrs"
    elif case == "empty_folder":
        args["--src"] = tmp_path / "empty"
    extra = ["--sorted-pairing"] if case == "sorted_pairing_count_mismatch" else []

    code = images(model, cache_dir, *[v for kv in args.items() for v in kv], *extra)

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("bgm-jax images: error: ") and message in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


def test_size_bucket_runs_mixed_sizes_through_one_compiled_shape_and_crops_back(model_dir, cache_dir, tmp_path,
                                                                                capsys):
    write_rgb(tmp_path / "src" / "a.png", height=47, width=61, seed=90)
    write_rgb(tmp_path / "src" / "b.png", height=45, width=50, seed=91)
    write_rgb(tmp_path / "bgr" / "a.png", height=47, width=61, seed=92)
    write_rgb(tmp_path / "bgr" / "b.png", height=45, width=50, seed=93)
    code = images(model_dir, cache_dir, "--src", tmp_path / "src", "--bgr", tmp_path / "bgr",
                  "--out", tmp_path / "out", "--outputs", "com,err,ref", "--size-bucket", 16)
    assert code == 0
    assert "1 compiled shape(s)" in capsys.readouterr().out  # both padded to 48x64
    assert read(tmp_path / "out" / "com" / "a.png").shape == (47, 61, 4)
    assert read(tmp_path / "out" / "err" / "b.png").shape == (45, 50)
    assert read(tmp_path / "out" / "ref" / "b.png").shape == (45, 50)
