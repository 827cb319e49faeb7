"""The rating server (Starlette app under uvicorn, in a thread): what it serves, what it refuses.

Requests go over a real socket with the standard library's http.client, which sends a path exactly
as written (no normalisation of ``..`` or ``%2f``), so path tricks reach the server as an attacker
would send them."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time

import pytest
from study_data import make_study_folders

pytest.importorskip("starlette", reason="the 'study' extra (starlette, uvicorn) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the 'study' extra (starlette, uvicorn) is not installed")

from bgm_jax.study.app import create_app  # noqa: E402
from bgm_jax.study.pairing import find_examples  # noqa: E402
from bgm_jax.study.storage import Study, create_study  # noqa: E402


@contextlib.contextmanager
def serving(study: Study, **kwargs):
    """Serve ``study`` on a free loopback port in a thread; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(study, **kwargs), log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def request(port, method, path, body=None, headers=None):
    """(status, headers, body bytes) for one request, the path sent verbatim."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def post_vote(port, payload, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(port, "POST", "/api/vote", body, {"Content-Type": content_type})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    folders = make_study_folders(root / "images", ["e0", "e1", "e2"], size=(48, 36))
    examples = find_examples(folders["original"], folders["a"], folders["b"])
    study = Study(create_study(root / "study.sqlite", examples, method_a="BGM", method_b="Ours",
                               secret=b"s" * 32))
    with serving(study) as port:
        yield study, port


@pytest.fixture
def fresh(served):
    """The served study with its votes cleared before the test."""
    study, port = served
    import sqlite3

    conn = sqlite3.connect(study.path)
    conn.execute("DELETE FROM votes")
    conn.commit()
    conn.close()
    return study, port


def test_page_and_state(fresh):
    study, port = fresh
    status, headers, body = request(port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="/page.js"' in body
    assert headers["x-content-type-options"] == "nosniff" and "default-src 'self'" in headers["content-security-policy"]
    for path in ("/page.js", "/page.css"):
        assert request(port, "GET", path)[0] == 200
    status, _, body = request(port, "GET", "/api/state?rater=alice")
    state = json.loads(body)
    assert status == 200
    assert sorted(state["order"]) == [1, 2, 3] and state["order"] == study.order("alice")
    assert state["votes"] == {} and state["total"] == 3
    assert [s["choice"] for s in state["scale"]] == [-10, -5, 0, 5, 10]
    # nothing in the state names a method or a file
    text = body.decode()
    assert "BGM" not in text and "Ours" not in text and str(study.path.parent) not in text


def test_images_are_blinded_per_rater_and_stable(fresh):
    study, port = fresh
    seen_sides = set()
    for rater in ("alice", "bob", "carol", "dave"):
        for example_id, example in study.examples.items():
            files = {role: example.image(role).path.read_bytes() for role in ("original", "a", "b")}
            shown = {}
            for side in ("original", "left", "right"):
                status, headers, data = request(port, "GET", f"/image/{example_id}/{side}?rater={rater}")
                assert status == 200 and headers["content-type"] == "image/png"
                assert "content-disposition" not in headers and "etag" not in headers
                shown[side] = data
            assert shown["original"] == files["original"]
            assert {shown["left"], shown["right"]} == {files["a"], files["b"]}
            left_is_a = shown["left"] == files["a"]
            seen_sides.add(left_is_a)
            # a reload shows the same placement
            assert request(port, "GET", f"/image/{example_id}/left?rater={rater}")[2] == shown["left"]
    assert seen_sides == {True, False}  # both placements occur


def test_a_vote_for_the_left_image_is_stored_for_the_method_shown_there(fresh):
    study, port = fresh
    expected = {}
    for rater in ("alice", "bob", "carol", "dave"):
        for example_id, example in study.examples.items():
            left = request(port, "GET", f"/image/{example_id}/left?rater={rater}")[2]
            left_is_a = left == example.a.path.read_bytes()  # decided from the bytes, not from `blinding`
            status, _, body = post_vote(port, {"rater": rater, "example": example_id, "choice": -10})
            assert status == 200
            reply = json.loads(body)
            assert set(reply) == {"example", "choice", "rated", "total"}  # no score, no side
            expected[(rater, example_id)] = -10 if left_is_a else 10
    assert {(v.rater, v.example_id): v.score for v in study.votes()} == expected
    assert set(expected.values()) == {-10, 10}  # both placements were exercised


def test_changing_a_vote_through_the_page_api(fresh):
    study, port = fresh
    for choice in (10, -5, 0):
        assert post_vote(port, {"rater": "alice", "example": 2, "choice": choice})[0] == 200
    votes = study.votes()
    assert [(v.example_id, v.choice, v.revisions) for v in votes] == [(2, 0, 2)]
    state = json.loads(request(port, "GET", "/api/state?rater=alice")[2])
    assert state["votes"] == {"2": 0}


BAD_VOTES = [
    ({"rater": "alice", "example": 99, "choice": 5}, 404),       # unknown example
    ({"rater": "alice", "example": 0, "choice": 5}, 404),
    ({"rater": "alice", "example": "1", "choice": 5}, 404),
    ({"rater": "alice", "example": True, "choice": 5}, 404),
    ({"rater": "alice", "example": "../../etc/passwd", "choice": 5}, 404),
    ({"rater": "alice", "example": 1, "choice": 7}, 422),        # off the scale
    ({"rater": "alice", "example": 1, "choice": -15}, 422),
    ({"rater": "alice", "example": 1, "choice": 5.0}, 422),
    ({"rater": "alice", "example": 1, "choice": "5"}, 422),
    ({"rater": "alice", "example": 1, "choice": True}, 422),
    ({"rater": "alice", "example": 1}, 422),
    ({"example": 1, "choice": 5}, 400),                           # no rater
    ({"rater": "  ", "example": 1, "choice": 5}, 400),
    ({"rater": "a\u0000b", "example": 1, "choice": 5}, 400),
    ({"rater": ["alice"], "example": 1, "choice": 5}, 400),
    (b"{not json", 400),
    (b"[1, 2]", 400),
    (b'{"rater": "alice", "example": 1, "choice": 5, "pad": "' + b"x" * 5000 + b'"}', 413),
]


@pytest.mark.parametrize(("payload", "status"), BAD_VOTES)
def test_bad_votes_are_refused_with_4xx_and_nothing_is_stored(fresh, payload, status):
    study, port = fresh
    got, headers, body = post_vote(port, payload)
    assert got == status, body
    assert headers["content-type"] == "application/json" and json.loads(body)["error"]
    assert study.votes() == []


def test_votes_must_be_json(fresh):
    study, port = fresh
    body = json.dumps({"rater": "alice", "example": 1, "choice": 5}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        assert post_vote(port, body, content_type)[0] == 415
    assert request(port, "GET", "/api/vote")[0] == 405
    assert study.votes() == []


@pytest.mark.parametrize("path", [
    "/image/1/../../../../etc/passwd",
    "/image/1/..%2f..%2f..%2fetc%2fpasswd",
    "/image/1/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/image/..%2f..%2fetc%2fpasswd/left",
    "/image/%2Fetc%2Fpasswd/left?rater=alice",
    "/image/1/left/../../../etc/passwd?rater=alice",
    "/image/1/a?rater=alice",             # methods are not addressable, only sides
    "/image/1/b?rater=alice",
    "/image/1//etc/passwd?rater=alice",
    "/image/99/left?rater=alice",          # unknown example
    "/image/-1/left?rater=alice",
    "/etc/passwd",
    "/page.js/../../../etc/passwd",
    "/../../../etc/passwd",
    "/static/../study.sqlite",
    "/study.sqlite",
])
def test_no_path_from_the_url_reaches_the_file_system(fresh, path):
    study, port = fresh
    status, _, body = request(port, "GET", path)
    assert status == 404, (path, status)
    assert b"root:" not in body and b"SQLite" not in body
    assert study.votes() == []


def test_image_requests_need_a_rater(fresh):
    _, port = fresh
    assert request(port, "GET", "/image/1/left")[0] == 400
    assert request(port, "GET", "/image/1/left?rater=%0a")[0] == 400
    assert request(port, "GET", "/api/state")[0] == 400


def test_closed_study_and_host_check(tmp_path):
    folders = make_study_folders(tmp_path / "images", ["e0"], size=(48, 36))
    examples = find_examples(folders["original"], folders["a"], folders["b"])
    study = Study(create_study(tmp_path / "s.sqlite", examples, raters=["tok-1"]))
    with serving(study, allowed_hosts=["127.0.0.1", "localhost"]) as port:
        assert request(port, "GET", "/api/state?rater=tok-1")[0] == 200
        assert request(port, "GET", "/api/state?rater=mallory")[0] == 403
        assert request(port, "GET", "/image/1/left?rater=mallory")[0] == 403
        assert post_vote(port, {"rater": "mallory", "example": 1, "choice": 5})[0] == 403
        # a page on another site that rebinds its DNS name to 127.0.0.1 sends its own Host header
        assert request(port, "GET", "/api/state?rater=tok-1", headers={"Host": "evil.example"})[0] == 400
        assert study.votes() == []
        assert post_vote(port, {"rater": "tok-1", "example": 1, "choice": 5})[0] == 200
        assert len(study.votes()) == 1


def test_a_changed_image_is_not_served(tmp_path):
    folders = make_study_folders(tmp_path / "images", ["e0"], size=(48, 36))
    examples = find_examples(folders["original"], folders["a"], folders["b"])
    study = Study(create_study(tmp_path / "s.sqlite", examples))
    (folders["original"] / "e0.png").write_bytes((folders["a"] / "e0.png").read_bytes())
    with serving(study) as port:
        status, _, body = request(port, "GET", "/image/1/original?rater=alice")
    assert status == 409
    assert str(folders["original"]).encode() not in body  # the error names no file (it could unblind)


def test_serve_refuses_missing_images_and_busy_ports(tmp_path, capsys):
    from bgm_jax.cli import main

    folders = make_study_folders(tmp_path / "images", ["e0", "e1"], size=(48, 36))
    examples = find_examples(folders["original"], folders["a"], folders["b"])
    path = create_study(tmp_path / "s.sqlite", examples)
    (folders["b"] / "e1.png").unlink()
    assert main(["study", "serve", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "1 registered images are missing or changed" in err and "e1: " in err
    (folders["b"] / "e1.png").write_bytes((folders["a"] / "e1.png").read_bytes())
    assert main(["study", "serve", str(path), "--port", "0"]) == 2
    assert "changed since the study was created" in capsys.readouterr().err

    path = create_study(tmp_path / "t.sqlite", examples[:1])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        assert main(["study", "serve", str(path), "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
    assert main(["study", "serve", str(tmp_path / "missing.sqlite")]) == 2
    assert "no such study file" in capsys.readouterr().err


def test_serve_refuses_a_read_only_study(tmp_path, capsys, monkeypatch):
    import os

    from bgm_jax.cli import main

    folders = make_study_folders(tmp_path / "images", ["e0"], size=(48, 36))
    path = create_study(tmp_path / "s.sqlite", find_examples(folders["original"], folders["a"], folders["b"]))
    real_access = os.access
    # as if the file were read-only (chmod does not stop root, who runs CI)
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(path) else real_access(p, mode))
    monkeypatch.setattr("bgm_jax.cli.study._listen", lambda *a: pytest.fail("served a study it cannot write"))
    assert main(["study", "serve", str(path), "--port", "0"]) == 2
    assert "must be writable to store votes" in capsys.readouterr().err
