"""`bgm-jax demo`, the README's first command: runs end to end and writes every output."""

import numpy as np
from PIL import Image

from bgm_jax.cli import main


def test_demo_writes_every_output_at_the_requested_size(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--size", "64x48", "--out", str(out)]) == 0
    for name in ("src", "bgr", "com", "pha", "err", "ref"):
        with Image.open(out / f"{name}.png") as image:
            assert image.size == (64, 48)
    with Image.open(out / "com.png") as com:
        assert com.mode == "RGBA"
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "alpha SAD" in printed


def test_demo_refuses_to_overwrite_and_rejects_a_tiny_size(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "src.png").write_bytes(b"x")
    assert main(["demo", "--size", "64x48", "--out", str(out)]) == 2
    assert "src.png" in capsys.readouterr().err
    assert main(["demo", "--size", "12x12", "--out", str(tmp_path / "other")]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert np.array_equal(np.frombuffer((out / "src.png").read_bytes(), np.uint8), np.frombuffer(b"x", np.uint8))
