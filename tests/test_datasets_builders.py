"""tfds builders: tiny datasets built from folders generated here, read back through tfds data sources."""

import argparse
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from bgm_jax.datasets import catalog, images, layouts, synthetic
from bgm_jax.errors import InputError

H, W = 24, 32


def _rgb(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _grey(seed, h=H, w=W):
    return np.random.default_rng(seed + 1000).integers(0, 256, (h, w), dtype=np.uint8)


def _save(path, image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **kwargs)
    return path


def _decoded(data, mode):
    return images.decode(data, mode)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


# ----------------------------------------------------------------------------------------------
# VideoMatte240K


@pytest.fixture(scope="module")
def videomatte_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videomatte")
    frames = {"train": {"0000": 3, "0001": 2}, "test": {"0000": 2}}
    for split, clips in frames.items():
        for clip, count in clips.items():
            for f in range(count):
                seed = hash((split, clip, f)) % 1000
                _save(root / split / "fgr" / clip / f"{f:05d}.jpg", _rgb(seed), quality=90)
                alpha = _grey(seed)
                if clip == "0001":  # matte saved as a colour JPEG, as video frame dumps often are
                    _save(root / split / "pha" / clip / f"{f:05d}.jpg", np.stack([alpha] * 3, -1), quality=90)
                else:
                    _save(root / split / "pha" / clip / f"{f:05d}.jpg", alpha, quality=90)
    return root


@pytest.fixture(scope="module")
def videomatte(videomatte_dir, data_dir):
    catalog.build_dataset("videomatte240k", data_dir, manual_dir=videomatte_dir)
    return {split: catalog.open_split("videomatte240k", split, data_dir) for split in ("train", "test")}


def test_videomatte_keeps_clip_and_frame_ids_in_clip_frame_order(videomatte):
    train = videomatte["train"]
    ids = [(train[i]["clip"], train[i]["frame"], int(train[i]["frame_index"])) for i in range(len(train))]
    assert ids == [
        (b"0000", b"00000", 0), (b"0000", b"00001", 1), (b"0000", b"00002", 2),
        (b"0001", b"00000", 0), (b"0001", b"00001", 1),
    ]
    assert len(videomatte["test"]) == 2


def test_videomatte_stores_source_jpeg_bytes_unchanged(videomatte, videomatte_dir):
    record = videomatte["train"][1]
    assert record["fgr"] == (videomatte_dir / "train/fgr/0000/00001.jpg").read_bytes()
    assert record["pha"] == (videomatte_dir / "train/pha/0000/00001.jpg").read_bytes()


def test_colour_matte_is_stored_as_lossless_greyscale_png(videomatte, videomatte_dir):
    record = videomatte["train"][3]  # clip 0001: colour JPEG mattes
    assert record["pha"][:8] == b"\x89PNG\r\n\x1a\n"
    expected = np.asarray(Image.open(videomatte_dir / "train/pha/0001/00000.jpg").convert("L"))
    np.testing.assert_array_equal(_decoded(record["pha"], "L"), expected)


def test_tfds_can_decode_the_stored_images_itself(data_dir, videomatte):
    source = catalog.open_split("videomatte240k", "train", data_dir, decode_images=True)
    record = source[3]
    assert record["fgr"].shape == (H, W, 3) and record["pha"].shape == (H, W, 1)


# ----------------------------------------------------------------------------------------------
# Image matting layouts


def _write_pairs(fgr_dir, pha_dir, names, fgr_ext=".jpg", pha_ext=".png"):
    for i, name in enumerate(names):
        _save(fgr_dir / f"{name}{fgr_ext}", _rgb(i), quality=95)
        _save(pha_dir / f"{name}{pha_ext}", _grey(i))


def test_folder_layout_pairs_files_by_relative_path_without_extension(tmp_path, data_dir):
    _write_pairs(tmp_path / "fgr", tmp_path / "pha", ["a/x", "a/y", "b"])
    catalog.build_dataset("image_matting/folder", data_dir, manual_dir=tmp_path)
    source = catalog.open_split("image_matting/folder", "train", data_dir)
    assert [source[i]["name"] for i in range(3)] == [b"a/x", b"a/y", b"b"]
    assert source[1]["fgr"] == (tmp_path / "fgr/a/y.jpg").read_bytes()
    np.testing.assert_array_equal(_decoded(source[1]["pha"], "L"), _grey(1))


def test_folder_layout_with_split_subfolders_gives_one_split_each(tmp_path):
    _write_pairs(tmp_path / "train/fgr", tmp_path / "train/pha", ["a", "b"])
    _write_pairs(tmp_path / "valid/fgr", tmp_path / "valid/pha", ["c"])
    splits = layouts.folder_pairs(tmp_path)
    assert {k: [p.name for p in v] for k, v in splits.items()} == {"train": ["a", "b"], "valid": ["c"]}


def test_photomatte85_rgba_files_are_split_into_colour_and_alpha(tmp_path, data_dir):
    rgba = np.concatenate([_rgb(3), _grey(3)[..., None]], axis=-1)
    _save(tmp_path / "0001.png", rgba)
    _save(tmp_path / "0002.png", rgba[::-1].copy())
    catalog.build_dataset("image_matting/photomatte85", data_dir, manual_dir=tmp_path)
    source = catalog.open_split("image_matting/photomatte85", "test", data_dir)
    assert len(source) == 2
    np.testing.assert_array_equal(_decoded(source[0]["fgr"], "RGB"), _rgb(3))
    np.testing.assert_array_equal(_decoded(source[0]["pha"], "L"), _grey(3))


def test_distinctions646_layout_reads_train_and_test_fg_gt(tmp_path):
    _write_pairs(tmp_path / "Train/FG", tmp_path / "Train/GT", ["p1", "p2"], ".png", ".png")
    _write_pairs(tmp_path / "Test/FG", tmp_path / "Test/GT", ["q1"], ".png", ".png")
    splits = layouts.distinctions646_pairs(tmp_path)
    assert [p.name for p in splits["train"]] == ["p1", "p2"] and [p.name for p in splits["test"]] == ["q1"]
    assert splits["train"][0].pha == tmp_path / "Train/GT/p1.png"


def test_aim_layout_reads_every_group_with_fg_and_alpha(tmp_path):
    train = tmp_path / "Training_set"
    _write_pairs(train / "Adobe-licensed images/fg", train / "Adobe-licensed images/alpha", ["m1"], ".jpg", ".jpg")
    _write_pairs(train / "Other/fg", train / "Other/alpha", ["o1"], ".png", ".png")
    test = tmp_path / "Test_set/Adobe-licensed images"
    _write_pairs(test / "fg", test / "alpha", ["t1", "t2"], ".png", ".png")
    _save(test / "trimaps/t1.png", _grey(0))
    splits = layouts.aim_pairs(tmp_path)
    assert [p.name for p in splits["train"]] == ["Adobe-licensed images/m1", "Other/o1"]
    assert [p.name for p in splits["test"]] == ["Adobe-licensed images/t1", "Adobe-licensed images/t2"]


def test_alpha_of_another_size_than_its_foreground_is_an_input_error(tmp_path, data_dir):
    _save(tmp_path / "fgr/a.jpg", _rgb(0))
    _save(tmp_path / "pha/a.png", _grey(0, H + 2, W))
    with pytest.raises(InputError, match="same size"):
        catalog.build_dataset("image_matting/folder", data_dir / "mismatch", manual_dir=tmp_path)
    assert not (data_dir / "mismatch/image_matting/folder/1.0.0").exists(), "no half-written dataset may remain"


# ----------------------------------------------------------------------------------------------
# Backgrounds and test sets


def test_backgrounds_use_split_subfolders_when_present(tmp_path, data_dir):
    for i in range(3):
        _save(tmp_path / "train" / f"b{i}.jpg", _rgb(i))
    _save(tmp_path / "valid" / "v0.png", _rgb(9))
    catalog.build_dataset("backgrounds", data_dir, manual_dir=tmp_path)
    train = catalog.open_split("backgrounds", "train", data_dir)
    valid = catalog.open_split("backgrounds", "valid", data_dir)
    assert [train[i]["name"] for i in range(len(train))] == [b"b0", b"b1", b"b2"] and len(valid) == 1
    assert valid[0]["bgr"] == (tmp_path / "valid/v0.png").read_bytes()


def test_test_set_pairs_each_sample_with_distinct_backgrounds_deterministically():
    from bgm_jax.datasets.builders.matting_testset import pair_with_backgrounds

    plan = pair_with_backgrounds(11, 40, 5, seed=0)
    assert len(plan) == 55
    per_sample = {}
    for sample, background, _ in plan:
        per_sample.setdefault(sample, []).append(background)
    assert all(len(set(b)) == 5 for b in per_sample.values())
    assert len({b for bs in per_sample.values() for b in bs}) > 5, "samples must not all share backgrounds"
    assert pair_with_backgrounds(11, 40, 5, seed=0) == plan
    assert pair_with_backgrounds(11, 40, 5, seed=1) != plan
    assert len(pair_with_backgrounds(85, 40, 1, seed=0)) == 85


def test_aim_test_set_has_five_backgrounds_per_sample_and_honours_include(tmp_path, data_dir):
    test = tmp_path / "aim/Test_set/Adobe-licensed images"
    _write_pairs(test / "fg", test / "alpha", ["h1", "h2", "obj"], ".png", ".png")
    for i in range(7):
        _save(tmp_path / "bg" / f"bg{i}.jpg", _rgb(50 + i))
    catalog.build_dataset(
        "matting_testset/aim", data_dir, samples_dir=tmp_path / "aim", backgrounds_dir=tmp_path / "bg",
        include=["Adobe-licensed images/h1", "Adobe-licensed images/h2"],
    )
    source = catalog.open_split("matting_testset/aim", "test", data_dir)
    records = [source[i] for i in range(len(source))]
    assert len(records) == 10
    assert {r["name"] for r in records} == {b"Adobe-licensed images/h1", b"Adobe-licensed images/h2"}
    for name in (b"Adobe-licensed images/h1", b"Adobe-licensed images/h2"):
        assert len({r["background"] for r in records if r["name"] == name}) == 5
    first = records[0]
    assert first["bgr"] == (tmp_path / "bg" / f"{first['background'].decode()}.jpg").read_bytes()


def test_test_set_needs_enough_backgrounds(tmp_path, data_dir):
    test = tmp_path / "aim/Test_set/Adobe-licensed images"
    _write_pairs(test / "fg", test / "alpha", ["a"], ".png", ".png")
    for i in range(4):
        _save(tmp_path / "bg" / f"bg{i}.jpg", _rgb(i))
    with pytest.raises(InputError, match="4 background images, but each sample needs 5"):
        catalog.build_dataset("matting_testset/aim", data_dir / "few", samples_dir=tmp_path / "aim",
                              backgrounds_dir=tmp_path / "bg")


# ----------------------------------------------------------------------------------------------
# Synthetic


def test_synthetic_records_regenerate_from_their_stored_seed(data_dir):
    from bgm_jax.datasets.builders import SyntheticMattingConfig

    config = SyntheticMattingConfig(name="t_img", height=32, width=40, num_train=3, num_test=1)
    catalog.build_dataset("synthetic_matting", data_dir, config=config)
    source = catalog.open_split("synthetic_matting/t_img", "train", data_dir)
    assert len(source) == 3 and len(catalog.open_split("synthetic_matting/t_img", "test", data_dir)) == 1
    record = source[2]
    expected = synthetic.make_sample(int(record["seed"]), 32, 40)
    for key, mode in (("fgr", "RGB"), ("pha", "L"), ("bgr", "RGB")):
        np.testing.assert_array_equal(_decoded(record[key], mode), expected[key])


def test_synthetic_video_config_stores_frames_of_each_clip(data_dir):
    from bgm_jax.datasets.builders import SyntheticMattingConfig

    config = SyntheticMattingConfig(name="t_vid", height=32, width=32, num_train=2, num_test=1, video=True,
                                    frames_per_clip=3)
    catalog.build_dataset("synthetic_matting", data_dir, config=config)
    source = catalog.open_split("synthetic_matting/t_vid", "train", data_dir)
    assert [(int(source[i]["clip"]), int(source[i]["frame"])) for i in range(len(source))] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)
    ]
    clip = synthetic.make_clip(int(source[4]["seed"]), 3, 32, 32)
    np.testing.assert_array_equal(_decoded(source[4]["pha"], "L"), clip["pha"][1])


# ----------------------------------------------------------------------------------------------
# Errors


def test_missing_manual_dir_error_shows_the_path_and_the_expected_layout(tmp_path, data_dir):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError) as info:
        catalog.build_dataset("videomatte240k", data_dir / "err", manual_dir=missing)
    message = str(info.value)
    assert str(missing) in message and layouts.VIDEOMATTE_LAYOUT in message


def test_videomatte_split_folder_given_as_root_is_explained(videomatte_dir):
    with pytest.raises(InputError) as info:
        layouts.videomatte_frames(videomatte_dir / "train")
    assert str(videomatte_dir / "train") in str(info.value) and "parent" in str(info.value)
    assert layouts.VIDEOMATTE_LAYOUT in str(info.value)


def test_unpaired_files_are_named_in_the_error(tmp_path):
    _write_pairs(tmp_path / "fgr", tmp_path / "pha", ["a", "b"])
    os.remove(tmp_path / "pha/b.png")
    with pytest.raises(InputError, match=r"no counterpart.*'b'"):
        layouts.folder_pairs(tmp_path)


def test_wrong_layouts_raise_input_errors_naming_the_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    for read, layout in (
        (layouts.aim_pairs, layouts.AIM_LAYOUT),
        (layouts.distinctions646_pairs, layouts.DISTINCTIONS646_LAYOUT),
        (layouts.photomatte85_pairs, layouts.PHOTOMATTE85_LAYOUT),
        (layouts.folder_pairs, layouts.FOLDER_LAYOUT),
        (layouts.background_images, layouts.BACKGROUNDS_LAYOUT),
    ):
        with pytest.raises(InputError) as info:
            read(tmp_path)
        assert str(tmp_path) in str(info.value) and layout in str(info.value)


def test_unknown_dataset_and_config_names_are_input_errors(data_dir):
    with pytest.raises(InputError, match="videomatte240k"):
        catalog.build_dataset("videomatte", data_dir)
    with pytest.raises(InputError, match="photomatte85"):
        catalog.build_dataset("image_matting/photomatte", data_dir)
    with pytest.raises(InputError, match="build it first"):
        catalog.open_split("backgrounds_nope", "train", data_dir)


# ----------------------------------------------------------------------------------------------
# No TensorFlow, command line


def test_building_and_reading_never_imports_tensorflow(tmp_path):
    """Build, read and run the pipeline in a fresh interpreter, then list the tensorflow modules loaded.

    The check holds whether or not TensorFlow is installed: tfds only imports it lazily, on first use.
    """
    script = textwrap.dedent(
        f"""
        import sys
        from bgm_jax.datasets import catalog, pipeline
        from bgm_jax.datasets.builders import SyntheticMattingConfig
        config = SyntheticMattingConfig(name="notf", height=24, width=24, num_train=2, num_test=1)
        catalog.build_dataset("synthetic_matting", {str(tmp_path)!r}, config=config)
        source = catalog.open_split("synthetic_matting/notf", "train", {str(tmp_path)!r})
        decoded = catalog.open_split("synthetic_matting/notf", "train", {str(tmp_path)!r}, decode_images=True)
        assert decoded[0]["fgr"].shape == (24, 24, 3)
        cfg = pipeline.PipelineConfig(canvas=(16, 16), per_device_batch=1)
        it = iter(pipeline.matting_pipeline(source, source, cfg, local_device_count=1,
                                            process_index=0, process_count=1))
        batch = next(it)
        it.close()
        assert batch["fgr"].shape == (1, 1, 16, 16, 3)
        loaded = [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")]
        print("TF_MODULES", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TF_MODULES []" in result.stdout


def test_build_dataset_command_prepares_a_synthetic_config_named_after_overrides(tmp_path, capsys):
    from bgm_jax.cli import build_dataset as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["synthetic_matting/small", "--height", "20", "--width", "24", "--num-train", "2",
                              "--num-test", "1", "--data-dir", str(tmp_path)])
    assert command.run(args) == 0
    name = "synthetic_matting/small_20x24_n2-1_s0"
    assert name in capsys.readouterr().out
    assert len(catalog.open_split(name, "train", tmp_path)) == 2
    assert len(catalog.open_split("synthetic_matting", "test", tmp_path)) == 1, "the only prepared config"


def test_build_dataset_command_reports_a_bad_manual_dir_as_input_error(tmp_path):
    from bgm_jax.cli import build_dataset as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["backgrounds", "--manual-dir", str(tmp_path / "none"), "--data-dir", str(tmp_path)])
    with pytest.raises(InputError, match="does not exist"):
        command.run(args)


def test_other_formats_and_modes_are_stored_as_equivalent_png(tmp_path):
    colour = _save(tmp_path / "c.bmp", _rgb(5))
    grey_colour = _save(tmp_path / "g.tif", _grey(5))
    palette = _save(tmp_path / "p.png", Image.fromarray(_rgb(6)).convert("P"))
    for path, kind, expected in (
        (colour, "rgb", _rgb(5)),
        (grey_colour, "rgb", np.stack([_grey(5)] * 3, -1)),
        (grey_colour, "alpha", _grey(5)),
        (palette, "rgb", np.asarray(Image.open(palette).convert("RGB"))),
    ):
        stored = images.bytes_for_storage(path, kind)
        assert stored[:8] == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(stored))), expected)


def test_bytes_for_storage_transcodes_16_bit_mattes_to_8_bit(tmp_path):
    matte16 = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 80).astype(np.uint16)
    path = tmp_path / "m.png"
    Image.fromarray(matte16).save(path)
    stored = images.bytes_for_storage(path, "alpha")
    decoded = np.asarray(Image.open(io.BytesIO(stored)))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.round(matte16 / 65535 * 255).astype(np.uint8))
