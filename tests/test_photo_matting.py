"""photo_matting: procedural subjects painted with scikit-image's bundled photographs, over such photos.

What is proven here: the photos are the files bundled with scikit-image (each one's licence is the one
skimage documents, each loads without any fetch), train and test use disjoint photos and seeds, the
build downloads nothing and is deterministic, every layer's texture is a colour-shifted photo crop,
alpha keeps the synthetic subjects' hard features, the evaluation protocol opens the test split, and
difference keying tuned on train beats untuned keying on test.
"""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import ndimage

from bgm_jax.datasets import catalog, images, photo_subjects, synthetic
from bgm_jax.datasets.builders import PhotoMattingConfig, photo_matting
from bgm_jax.evaluation import keying, protocol

CONFIG = PhotoMattingConfig(name="t64", height=64, width=64, background_short_side=64, num_train=8, num_test=4)
NAME = "photo_matting/t64"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("photo_matting")
    catalog.build_dataset("photo_matting", root, config=CONFIG)
    return root


@pytest.fixture(scope="module")
def splits(data_dir):
    return {split: catalog.open_split(NAME, split, data_dir) for split in ("train", "test")}


@pytest.fixture(scope="module")
def photos():
    return {split: {p.name: photo_matting.load_photo(p) for p in photo_matting.split_photos(split)}
            for split in ("train", "test")}


def _photo_names(record) -> dict[str, str]:
    text = record["photos"]
    text = text.decode() if isinstance(text, bytes) else str(text)
    return dict(part.split("=") for part in text.split())


# ----------------------------------------------------------------------------------------------
# The photos


def test_every_photo_is_a_bundled_skimage_file_with_the_licence_skimage_documents():
    import skimage.data

    assert len({p.name for p in photo_matting.PHOTOS}) == len(photo_matting.PHOTOS)
    for photo in photo_matting.PHOTOS:
        assert (photo_matting.skimage_data_dir() / photo.file).is_file(), photo.file
        doc = re.sub(r"\s+", " ", getattr(skimage.data, photo.name).__doc__)
        assert photo.licence_note in doc, photo.name
        assert photo.licence in ("CC0", "public domain", "no known copyright restrictions")
    table = photo_matting.photo_table()
    assert {row["name"] for row in table} == {p.name for p in photo_matting.PHOTOS}
    assert set(table[0]) >= {"name", "file", "split", "licence", "licence_note", "credit", "sha256"}


def test_photos_load_from_the_package_as_skimage_itself_returns_them_without_fetching(photos):
    import skimage.data

    # pooch (skimage's downloader) is absent here, so skimage.data can only read its bundled files.
    for split in photos:
        for name, pixels in photos[split].items():
            np.testing.assert_array_equal(pixels, getattr(skimage.data, name)())
            assert min(pixels.shape[:2]) >= 300, name


def test_train_and_test_use_disjoint_photos_each_with_backgrounds():
    train, test = (photo_matting.split_photos(s) for s in ("train", "test"))
    assert {p.name for p in train}.isdisjoint({p.name for p in test})
    assert {p.file for p in train}.isdisjoint({p.file for p in test})
    assert len(train) + len(test) == len(photo_matting.PHOTOS)
    assert sum(p.background for p in train) >= 4 and sum(p.background for p in test) >= 3


def test_a_changed_photo_is_refused(tmp_path):
    photo = photo_matting.PHOTOS[0]
    (tmp_path / photo.file).write_bytes(images.encode_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(Exception, match="sha256"):
        photo_matting.load_photo(photo, tmp_path)


# ----------------------------------------------------------------------------------------------
# The built dataset


def test_records_use_only_their_splits_photos_and_splits_use_different_seeds(splits):
    seeds = {}
    for split, source in splits.items():
        allowed = {p.name for p in photo_matting.split_photos(split)}
        backgrounds = {p.name for p in photo_matting.split_photos(split) if p.background}
        for i in range(len(source)):
            used = _photo_names(source[i])
            assert set(used) == {"bgr", "torso", "head", "veil", "strands"}
            assert set(used.values()) <= allowed and used["bgr"] in backgrounds
            assert used["bgr"] not in (used["torso"], used["head"], used["strands"])
        seeds[split] = {int(source[i]["seed"]) for i in range(len(source))}
    assert len(splits["train"]) == 8 and len(splits["test"]) == 4
    assert seeds["train"].isdisjoint(seeds["test"])


def test_records_regenerate_from_their_seed_at_full_resolution(splits, photos):
    record = splits["test"][1]
    sample = photo_subjects.make_photo_sample(
        int(record["seed"]), photos["test"], height=64, width=64, background_short_side=64,
        backgrounds=[p.name for p in photo_matting.split_photos("test") if p.background],
    )
    np.testing.assert_array_equal(images.decode(record["fgr"], "RGB"), sample.fgr)
    np.testing.assert_array_equal(images.decode(record["pha"], "L"), sample.pha)
    np.testing.assert_array_equal(images.decode(record["bgr"], "RGB"), sample.bgr)
    assert sample.fgr.shape == (64, 64, 3) and min(sample.bgr.shape[:2]) == 64


def test_building_twice_gives_the_same_bytes_and_another_seed_other_bytes(splits, tmp_path):
    import dataclasses

    again = catalog.build_dataset("photo_matting", tmp_path, config=CONFIG)
    other = catalog.build_dataset("photo_matting", tmp_path, config=dataclasses.replace(CONFIG, name="t64s1", seed=1))
    assert again is not None and other is not None
    for split, source in splits.items():
        twin = catalog.open_split(NAME, split, tmp_path)
        for i in range(len(source)):
            for key in ("fgr", "pha", "bgr", "seed", "photos"):
                assert twin[i][key] == source[i][key], (split, i, key)
    moved = catalog.open_split("photo_matting/t64s1", "train", tmp_path)
    assert moved[0]["pha"] != splits["train"][0]["pha"]


def test_build_fetches_nothing_works_offline_and_never_imports_tensorflow(tmp_path):
    """A fresh interpreter with every socket connection refused builds the dataset; nothing printed says
    'download', and no TensorFlow module is loaded."""
    script = textwrap.dedent(
        f"""
        import socket, sys
        def refuse(*args, **kwargs):
            raise OSError("network use is not allowed in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from bgm_jax.cli import main
        code = main(["build-dataset", "photo_matting/small", "--data-dir", {str(tmp_path)!r}])
        loaded = [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")]
        print("EXIT", code, "TF_MODULES", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    output = (result.stdout + result.stderr).replace(str(tmp_path), "<data-dir>")  # the path names this test
    assert result.returncode == 0, output[-3000:]
    assert "EXIT 0 TF_MODULES []" in result.stdout
    assert "download" not in output.lower(), output[-3000:]
    assert "prepared photo_matting/small" in result.stdout and "train: 64" in result.stdout


# ----------------------------------------------------------------------------------------------
# Textures come from photos; alpha keeps the hard features


def test_each_layer_is_painted_with_a_colour_shifted_crop_of_its_photo(photos):
    train = photos["train"]
    for seed in (3, 11):
        sample = photo_subjects.make_photo_sample(seed, train, height=96, width=96, background_short_side=96)
        layers = {layer.name: layer.coverage for layer in synthetic.subject_layers(seed, 96, 96)}
        used = [paint.crop.photo for paint in sample.layers]
        assert len(set(used)) == 4, "with 8 photos besides the background's, every layer has its own"
        torso_only = (layers["torso"] == 1) & (layers["head"] == 0) & (layers["veil"] == 0) & (layers["strands"] == 0)
        assert torso_only.sum() > 500
        paint = sample.layers[0]
        assert paint.layer == "torso"
        crop = photo_subjects.cut(train[paint.crop.photo], paint.crop, (96, 96))
        texture = photo_subjects.apply_recolour(crop, paint.recolour)
        # The stored foreground is exactly the recoloured crop where only the clothing is visible ...
        fgr = sample.fgr[torso_only].astype(np.float32) / 255
        np.testing.assert_allclose(fgr, texture[torso_only], atol=0.5 / 255 + 1e-6)
        # ... which follows the photo pixel for pixel (where the colour shift did not clip) ...
        for c in range(3):
            source = crop[..., paint.recolour.channels[c]][torso_only]
            inside = (fgr[:, c] > 2 / 255) & (fgr[:, c] < 253 / 255)
            if source[inside].std() > 0.02:
                assert np.corrcoef(source[inside], fgr[inside, c])[0, 1] > 0.97
        # ... and is neither flat nor the procedural clothing of the same subject.
        assert fgr.std(axis=0).max() > 0.03
        procedural = synthetic.make_sample(seed, 96, 96)["fgr"][torso_only].astype(np.float32) / 255
        assert np.abs(procedural - fgr).mean() > 0.03


def test_alpha_has_fractional_strands_an_enclosed_hole_and_a_veil(photos):
    sample = photo_subjects.make_photo_sample(3, photos["test"], height=256, width=256, background_short_side=256)
    pha = sample.pha
    np.testing.assert_array_equal(pha, synthetic.make_sample(3, 256, 256)["pha"])  # the synthetic subject's alpha
    isolated_partial = (pha > 12) & (pha < 243) & ~ndimage.maximum_filter(pha == 255, size=5)
    assert isolated_partial.sum() > 50, "thin hair strands with fractional alpha"
    assert len(np.unique(pha[(pha > 0) & (pha < 255)])) > 100
    labels, count = ndimage.label(pha == 0)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    assert any(k not in border and (labels == k).sum() >= 4 for k in range(1, count + 1)), "an enclosed hole"
    veil = (pha > 60) & (pha < 200)
    assert ndimage.binary_erosion(veil, iterations=2).sum() > 20, "a semi-transparent area, not only edges"


def test_greyscale_background_photos_are_tinted_and_backgrounds_keep_their_short_side(photos):
    grey = {name: p for name, p in photos["train"].items() if p.ndim == 2}
    assert grey, "the train split has greyscale photos"
    sample = photo_subjects.make_photo_sample(5, grey, height=64, width=64, background_short_side=200)
    assert min(sample.bgr.shape[:2]) == 200 and 150 <= max(sample.bgr.shape[:2]) <= 267
    assert sample.background.tint != (1.0, 1.0, 1.0)
    assert np.abs(np.diff(sample.bgr.astype(np.float32).mean(axis=(0, 1)))).max() > 1.0


# ----------------------------------------------------------------------------------------------
# Evaluation: the protocol opens the test split; tuned keying beats untuned keying


def test_the_evaluation_protocol_opens_the_test_split(data_dir):
    assert "photo_matting/<config>" in protocol.TESTSETS_WITH_BACKGROUNDS
    test_set = protocol.open_test_set(NAME, data_dir=data_dir)
    assert len(test_set) == 4
    sample = test_set.load(2)
    assert sample.name == "000002" and sample.fgr.shape == (64, 64, 3)
    x = protocol.protocol_input(sample)
    assert x.src.shape == x.bgr.shape == (64, 64, 3) and x.gt_pha.shape == (64, 64)
    assert np.abs(x.bgr - sample.bgr[:64, :64] / 255).mean() > 0.01  # the plate the model sees is perturbed


def test_keyer_tuned_on_train_beats_untuned_extremes_on_test(data_dir):
    train = protocol.open_test_set(NAME, data_dir=data_dir, split="train")
    tuning = keying.tune_keyer(keying.protocol_samples(train), blur_sigmas=(0.0, 1.0, 2.0))
    assert tuning.count == 8
    assert 0.0 <= tuning.keyer.low <= tuning.keyer.high <= 0.6
    test = protocol.open_test_set(NAME, data_dir=data_dir)

    def mean_sad(keyer):
        return protocol.evaluate_model(keyer, test, batch_size=2).mean()["SAD"]

    tuned = mean_sad(tuning.keyer)
    for extreme in (keying.DifferenceKeyer(0.0, 0.0), keying.DifferenceKeyer(0.0, 1.7),
                    keying.DifferenceKeyer(0.6, 0.6), keying.DifferenceKeyer(0.02, 0.05)):
        assert tuned < 0.8 * mean_sad(extreme), extreme


def test_build_dataset_command_overrides_sizes_and_counts_and_refuses_frames(tmp_path, capsys):
    import argparse

    from bgm_jax.cli import build_dataset as command
    from bgm_jax.errors import InputError

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["photo_matting/small", "--height", "48", "--width", "40", "--num-train", "3",
                              "--num-test", "2", "--data-dir", str(tmp_path)])
    assert command.run(args) == 0
    name = "photo_matting/small_48x40_n3-2_s0"
    assert name in capsys.readouterr().out
    test = catalog.open_split(name, "test", tmp_path)
    assert len(test) == 2 and len(catalog.open_split(name, "train", tmp_path)) == 3
    assert images.decode(test[0]["pha"], "L").shape == (48, 40)
    assert min(images.decode(test[0]["bgr"], "RGB").shape[:2]) == 40  # backgrounds follow the subjects
    for argv in (["photo_matting/small", "--frames-per-clip", "3"], ["backgrounds", "--height", "64"]):
        with pytest.raises(InputError, match="cannot change"):
            command.run(parser.parse_args([*argv, "--data-dir", str(tmp_path)]))
