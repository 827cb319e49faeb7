"""Background alignment (`bgm_jax.align`, the `align` extra): a shifted plate is warped back onto the
source, uncovered borders come from the source, and without OpenCV the commands say how to install it.
Tests needing OpenCV skip when it is not installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from bgm_jax import cli
from bgm_jax.errors import InputError

HAS_OPENCV = importlib.util.find_spec("cv2") is not None
needs_opencv = pytest.mark.skipif(not HAS_OPENCV, reason="OpenCV not installed (pip install 'bgm-jax[align]')")

SHIFT_X, SHIFT_Y = 10, 6


def smooth_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Random colours every 6 pixels, bicubically interpolated: distinct blobs ORB can match unambiguously."""
    cells = np.random.default_rng(seed).integers(0, 256, (height // 6 + 1, width // 6 + 1, 3), np.uint8)
    return np.asarray(Image.fromarray(cells).resize((width, height), Image.Resampling.BICUBIC))


def shifted_pair(height: int = 240, width: int = 320):
    """(src, bgr): the camera moved, so src shows the scene SHIFT pixels further right and down."""
    scene = smooth_texture(height + 2 * SHIFT_Y, width + 2 * SHIFT_X)
    bgr = scene[:height, :width]
    src = scene[SHIFT_Y: SHIFT_Y + height, SHIFT_X: SHIFT_X + width]
    return np.ascontiguousarray(src), np.ascontiguousarray(bgr)


@needs_opencv
def test_a_shifted_background_is_warped_back_onto_the_source():
    from bgm_jax.align import align_background, estimate_homography

    src, bgr = shifted_pair()
    homography = estimate_homography(src, bgr)
    assert homography is not None
    points = np.array([[x, y, 1.0] for x in (20, 160, 300) for y in (20, 120, 220)])
    mapped = points @ homography.T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:] - points[:, :2], [[-SHIFT_X, -SHIFT_Y]] * 9, atol=0.5)
    aligned = align_background(src, bgr)
    assert aligned.shape == src.shape and aligned.dtype == np.uint8
    before = np.abs(bgr.astype(int) - src.astype(int)).mean()
    after = np.abs(aligned.astype(int) - src.astype(int)).mean()
    assert before > 40 and after < 1


@needs_opencv
def test_where_the_warped_background_does_not_reach_the_source_pixels_are_used():
    from bgm_jax.align import align_background

    src, bgr = shifted_pair()
    aligned = align_background(src, bgr)
    # The plate ends SHIFT_X columns before the source's right edge: those columns are the source's.
    np.testing.assert_array_equal(aligned[:, -SHIFT_X + 1:], src[:, -SHIFT_X + 1:])


@needs_opencv
def test_a_featureless_pair_keeps_the_background_and_warns(caplog):
    from bgm_jax.align import align_background

    src = np.full((48, 64, 3), 90, np.uint8)
    bgr = np.full((24, 32, 3), 80, np.uint8)
    aligned = align_background(src, bgr)
    assert aligned.shape == src.shape and (aligned == 80).all()
    assert "too few matching features" in caplog.text


@pytest.mark.skipif(HAS_OPENCV, reason="checks the message shown when OpenCV is missing")
def test_without_opencv_align_says_how_to_install_it(tmp_path, capsys):
    from bgm_jax.align import require_opencv

    with pytest.raises(InputError, match=r"pip install 'bgm-jax\[align\]'"):
        require_opencv()
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image)
    code = cli.main(["images", "--model", str(tmp_path / "model"), "--src", str(image), "--bgr", str(image),
                     "--out", str(tmp_path / "out"), "--align"])
    assert code == 2
    assert "needs OpenCV" in capsys.readouterr().err


@needs_opencv
def test_video_align_warps_the_plate_onto_every_frame_in_the_decode_thread(tmp_path):
    import av

    from bgm_jax.checkpoint import save_model
    from bgm_jax.cli.common import random_variables

    config = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
    save_model(tmp_path / "model", random_variables(config), config)
    src, bgr = shifted_pair(96, 128)
    Image.fromarray(bgr).save(tmp_path / "plate.png")
    with av.open(str(tmp_path / "clip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(src, format="rgb24")))
        container.mux(stream.encode(None))
    code = cli.main(["video", "--model", str(tmp_path / "model"), "--src", str(tmp_path / "clip.mp4"),
                     "--bgr", str(tmp_path / "plate.png"), "--align", "--batch", "2",
                     "--pha", str(tmp_path / "pha"), "--compilation-cache", str(tmp_path / "xla")])
    assert code == 0
    assert len(list((tmp_path / "pha").iterdir())) == 3
