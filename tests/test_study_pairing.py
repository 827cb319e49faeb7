"""`bgm-jax study create`: originals and two methods' results are paired by relative path and checked up
front; every problem is reported at once and nothing is created."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image
from study_data import make_study_folders

from bgm_jax.cli import main
from bgm_jax.errors import InputError
from bgm_jax.study.pairing import PairingError, find_examples


def test_pairs_by_relative_path_extension_free(tmp_path):
    folders = make_study_folders(tmp_path, ["day1/a", "day1/b", "c"])
    # an original given as JPEG pairs with PNG results of the same relative stem
    Image.open(folders["original"] / "c.png").convert("RGB").save(folders["original"] / "c.jpg", quality=95)
    (folders["original"] / "c.png").unlink()
    (folders["a"] / ".hidden.png").write_bytes(b"not an image")  # hidden files are not part of a study
    (folders["b"] / "notes.txt").write_text("ignored")

    examples = find_examples(folders["original"], folders["a"], folders["b"])

    assert [e.key for e in examples] == ["c", "day1/a", "day1/b"]
    c = examples[0]
    assert c.original.media_type == "image/jpeg" and c.a.media_type == "image/png"
    assert (c.original.width, c.original.height) == (160, 120)
    assert c.a.path == (folders["a"] / "c.png").resolve()
    assert c.b.sha256 == hashlib.sha256((folders["b"] / "c.png").read_bytes()).hexdigest()


def test_every_problem_is_reported_at_once_and_nothing_is_created(tmp_path, capsys):
    folders = make_study_folders(tmp_path / "in", ["ok", "missing_b", "extra", "small", "broken", "twice", "tiff"])
    (folders["b"] / "missing_b.png").unlink()                              # no result from B
    (folders["original"] / "extra.png").unlink()                           # results without an original
    Image.new("RGB", (80, 60)).save(folders["a"] / "small.png")            # wrong size
    data = (folders["b"] / "broken.png").read_bytes()
    (folders["b"] / "broken.png").write_bytes(data[: len(data) // 2])     # truncated
    Image.new("RGB", (160, 120)).save(folders["a"] / "twice.jpg")          # twice.png and twice.jpg
    Image.new("RGB", (160, 120)).save(folders["a"] / "tiff.png", format="TIFF")  # browsers cannot show it

    with pytest.raises(PairingError) as caught:
        find_examples(folders["original"], folders["a"], folders["b"])
    problems = caught.value.problems
    expected = {
        "missing_b": "no result under --results-b",
        "extra": "has no original",            # once for A, once for B
        "small": "is 80x60 but its original is 160x120",
        "broken": "not a readable image",
        "twice": "several files for one example",
        "tiff": "TIFF inside",
    }
    for key, words in expected.items():
        assert any(p.startswith(f"{key}: ") and words in p for p in problems), (key, problems)
    assert len(problems) == 7  # extra is reported for A and for B; nothing about "ok"
    assert not any(p.startswith("ok:") for p in problems)

    study = tmp_path / "study.sqlite"
    code = main(["study", "create", str(study), "--originals", str(folders["original"]),
                 "--results-a", str(folders["a"]), "--results-b", str(folders["b"])])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("bgm-jax study: error: 7 problems with the study's images; nothing was created")
    assert str(folders["a"] / "small.png") in err and str(folders["b"] / "broken.png") in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [tmp_path / "in"]  # no study file, no partial file


def test_folders_that_are_not_folders_or_hold_no_images(tmp_path):
    folders = make_study_folders(tmp_path, ["x"])
    with pytest.raises(InputError, match="--results-b .*not a directory"):
        find_examples(folders["original"], folders["a"], tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PairingError, match="no .png/.jpg/.jpeg/.webp images"):
        find_examples(empty, folders["a"], folders["b"])


def test_create_writes_a_study_that_lists_every_example(tmp_path, capsys):
    folders = make_study_folders(tmp_path, ["one", "two"])
    study = tmp_path / "study.sqlite"
    args = ["study", "create", str(study), "--originals", str(folders["original"]), "--results-a",
            str(folders["a"]), "--results-b", str(folders["b"]), "--name-a", "BGM", "--name-b", "Ours"]
    assert main(args) == 0
    assert "study of 2 examples, BGM (A) vs Ours (B)" in capsys.readouterr().out
    assert main(args) == 2  # exists: refused without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
