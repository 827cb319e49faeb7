"""Blinding (placement, order, un-blinding) and the study file (one vote per rater and example, WAL,
several raters at once, only registered images)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading

import pytest
from study_data import make_study_folders

from bgm_jax.errors import InputError
from bgm_jax.study import blinding
from bgm_jax.study.pairing import find_examples
from bgm_jax.study.storage import ImageChanged, NotOnRaterList, RaterError, Study, create_study

SECRET = bytes(range(32))


@pytest.fixture
def study_path(tmp_path):
    folders = make_study_folders(tmp_path / "images", ["e0", "e1", "e2"], size=(32, 24))
    examples = find_examples(folders["original"], folders["a"], folders["b"])
    return create_study(tmp_path / "study.sqlite", examples, method_a="BGM", method_b="Ours", secret=SECRET)


# ------------------------------------------------------------------------------------------------ blinding


def test_a_vote_for_the_left_image_maps_back_to_the_method_shown_there():
    # A shown on the right: "left is much better" is a vote for B, i.e. +10
    assert blinding.unblind(-10, "right") == 10
    assert blinding.unblind(-5, "right") == 5
    assert blinding.unblind(10, "right") == -10
    # A shown on the left: the choice is already about A vs B
    assert blinding.unblind(-10, "left") == -10
    assert blinding.unblind(5, "left") == 5
    assert blinding.unblind(0, "right") == 0
    assert blinding.method_on("left", "right") == "b" and blinding.method_on("right", "right") == "a"
    assert blinding.method_on("left", "left") == "a"
    for level in (-10, -5, 0, 5, 10):
        for side in blinding.SIDES:
            assert blinding.blind(blinding.unblind(level, side), side) == level
    with pytest.raises(ValueError):
        blinding.unblind(7, "left")
    with pytest.raises(ValueError):
        blinding.unblind(5, "up")


def test_placement_is_fixed_per_rater_and_example_and_balanced():
    raters = [f"rater{i}" for i in range(20)]
    keys = [f"shots/{i:03d}" for i in range(20)]
    sides = {(r, k): blinding.a_side(SECRET, r, k) for r in raters for k in keys}
    assert sides == {(r, k): blinding.a_side(SECRET, r, k) for r in raters for k in keys}  # reload: same
    left = sum(side == "left" for side in sides.values())
    assert 150 <= left <= 250  # 400 placements, about half on each side
    # placement depends on the rater: for the same example, raters see A on different sides
    assert all(len({sides[(r, k)] for r in raters}) == 2 for k in keys)
    # and on the secret: another study places differently
    other = {(r, k): blinding.a_side(b"another secret", r, k) for r in raters for k in keys}
    assert sum(other[p] != sides[p] for p in sides) > 100


def test_each_rater_meets_the_examples_in_their_own_fixed_order():
    keys = [f"k{i}" for i in range(12)]
    alice = blinding.rater_order(SECRET, "alice", keys)
    assert sorted(alice) == sorted(keys)
    assert alice == blinding.rater_order(SECRET, "alice", list(reversed(keys)))
    assert alice != blinding.rater_order(SECRET, "bob", keys)


# ------------------------------------------------------------------------------------------------- storage


def test_study_file_is_one_sqlite_file_in_wal_mode(study_path):
    assert sorted(p.name for p in study_path.parent.iterdir()) == ["images", "study.sqlite"]
    conn = sqlite3.connect(study_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    study = Study(study_path)
    assert [e.key for e in study.examples.values()] == ["e0", "e1", "e2"]
    assert (study.settings.method_a, study.settings.method_b, study.settings.raters) == ("BGM", "Ours", None)
    assert study.settings.secret == SECRET


def test_opening_what_is_not_a_study_fails_clearly_and_creates_nothing(tmp_path):
    with pytest.raises(InputError, match="no such study file"):
        Study(tmp_path / "typo.sqlite")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "notes.sqlite").write_text("hello")
    with pytest.raises(InputError, match="not a bgm-jax study file"):
        Study(tmp_path / "notes.sqlite")


def test_a_changed_vote_replaces_the_old_one(study_path):
    study = Study(study_path)
    first = study.record_vote("alice", 1, -10)
    second = study.record_vote("alice", 1, 5)
    assert (first.revisions, second.revisions) == (0, 1)
    votes = study.votes()
    assert len(votes) == 1
    vote = votes[0]
    assert (vote.rater, vote.example_id, vote.choice) == ("alice", 1, 5)
    assert vote.score == blinding.unblind(5, study.a_side("alice", 1))
    assert vote.a_side == blinding.a_side(SECRET, "alice", "e0")
    # the same rater name with blanks around it is the same rater
    study.record_vote("  alice ", 1, 0)
    assert [(v.rater, v.choice) for v in study.votes()] == [("alice", 0)]


def test_bad_votes_are_refused_and_not_stored(study_path):
    study = Study(study_path)
    for choice in (7, -15, 5.0, "5", None, True):
        with pytest.raises(ValueError):
            study.record_vote("alice", 1, choice)
    with pytest.raises(KeyError):
        study.record_vote("alice", 99, 5)
    for name in ("", "   ", "x" * 65, "a\nb", None):
        with pytest.raises(RaterError):
            study.record_vote(name, 1, 5)
    assert study.votes() == []


def test_the_database_itself_refuses_inconsistent_votes(study_path):
    conn = sqlite3.connect(study_path)
    with pytest.raises(sqlite3.IntegrityError):  # a score that is not the choice seen from a_side
        conn.execute("INSERT INTO votes VALUES ('x', 1, -10, 'right', -10, 'now', 'now', 0)")
    with pytest.raises(sqlite3.IntegrityError):  # off the scale
        conn.execute("INSERT INTO votes VALUES ('x', 1, 3, 'left', 3, 'now', 'now', 0)")
    conn.close()


def test_a_closed_study_accepts_only_its_raters(tmp_path):
    folders = make_study_folders(tmp_path / "images", ["e0"], size=(32, 24))
    examples = find_examples(folders["original"], folders["a"], folders["b"])
    study = Study(create_study(tmp_path / "s.sqlite", examples, raters=["tok-1", "tok-2 "]))
    assert study.settings.raters == ("tok-1", "tok-2")
    assert study.check_rater("tok-2") == "tok-2"
    with pytest.raises(NotOnRaterList):
        study.record_vote("mallory", 1, 5)
    assert study.votes() == []


def test_several_raters_at_once_each_vote_counted_once(study_path):
    study = Study(study_path)
    raters = [f"r{i}" for i in range(6)]
    errors = []

    def rate(rater):
        try:
            for round_ in range(3):  # every rater changes every vote several times
                for example_id in study.examples:
                    study.record_vote(rater, example_id, (-10, -5, 0, 5, 10)[(round_ + example_id) % 5])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    # two threads per rater: the same vote is written concurrently from two places
    threads = [threading.Thread(target=rate, args=(r,)) for r in raters for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    votes = study.votes()
    assert len(votes) == len(raters) * len(study.examples)
    assert {(v.rater, v.example_id) for v in votes} == {(r, i) for r in raters for i in study.examples}
    assert all(v.choice == (-10, -5, 0, 5, 10)[(2 + v.example_id) % 5] for v in votes)  # the last round's
    assert all(v.revisions == 5 for v in votes)  # 6 writes each: one insert, five changes


def _rate_in_another_process(path, rater):
    study = Study(path)
    for round_ in range(3):
        for example_id in study.examples:
            study.record_vote(rater, example_id, 5 if round_ < 2 else -5)


def test_several_processes_share_one_study_file(study_path):
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_rate_in_another_process, args=(study_path, f"p{i}")) for i in range(3)]
    for p in processes:
        p.start()
    Study(study_path).record_vote("main", 2, 10)
    for p in processes:
        p.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    votes = Study(study_path).votes()
    assert len(votes) == 3 * 3 + 1
    assert all(v.choice == -5 for v in votes if v.rater != "main")


def test_only_registered_unchanged_images_are_read(study_path):
    study = Study(study_path)
    data, media_type = study.read_image(1, "a")
    assert data == study.examples[1].a.path.read_bytes() and media_type == "image/png"
    assert study.verify_images() == []
    study.examples[2].b.path.write_bytes(study.examples[1].b.path.read_bytes())  # swapped after creation
    with pytest.raises(ImageChanged, match="changed since the study was created"):
        study.read_image(2, "b")
    study.examples[3].original.path.unlink()
    problems = study.verify_images()
    assert len(problems) == 2 and problems[0].startswith("e1: ") and problems[1].startswith("e2: ")
    with pytest.raises(ValueError):
        study.read_image(1, "../../etc/passwd")
