"""Inference over all local devices: ``Matting(..., devices=N)`` splits a batch over N devices (data
parallel) and gives the outputs of one device, bit for bit; ``bgm-jax images`` and ``bgm-jax video
--devices N`` use it (N x --batch images or frames per call). The four devices are the fake CPU devices
tests/conftest.py sets up; every per-device share is one image, so each device runs exactly the
single-device program compiled for batch 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bgm_jax import cli
from bgm_jax.checkpoint import save_model
from bgm_jax.cli.common import random_variables, random_weight_matting
from bgm_jax.errors import InputError
from bgm_jax.inference import Matting, local_devices

CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
H, W = 48, 64
SETTINGS = {"refine_sample_pixels": 16 * 40}  # 40 of the 192 cells: the patch path, not the dense one


@pytest.fixture(scope="module")
def one():
    return random_weight_matting("mobilenetv2", SETTINGS, compilation_cache="", seed=3)


@pytest.fixture(scope="module")
def four(one):
    return Matting(one.config, one.variables, one.settings, devices="all")


def frames(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, H, W, 3), np.uint8)


def outputs(result) -> list[np.ndarray]:
    return [np.asarray(a) for a in (result.pha, result.fgr, result.err, result.ref)]


def assert_same_as_one_device(one, result, src, bgr):
    for i in range(len(src)):
        alone = outputs(one(src[i:i + 1], bgr[i:i + 1] if len(bgr) > 1 else bgr))
        for name, a, b in zip(("pha", "fgr", "err", "ref"), alone, outputs(result)):
            if name == "ref":  # the same cells are refined
                np.testing.assert_array_equal(a[0], b[i], err_msg=f"image {i}: {name}")
            else:  # a sharded program is compiled apart: XLA:CPU's kernels may round the last bit differently
                np.testing.assert_allclose(a[0], b[i], rtol=0, atol=1e-6, err_msg=f"image {i}: {name}")


def test_devices_are_the_default_one_all_or_the_first_n():
    assert local_devices() == local_devices(1) == local_devices()[:1]
    assert len(local_devices("all")) == 4 and local_devices(2) == local_devices("all")[:2]
    for bad in (5, 0, "some"):
        with pytest.raises(InputError, match="devices"):
            local_devices(bad)


def test_a_batch_split_over_four_devices_equals_one_device_image_by_image(one, four):
    src, bgr = frames(4), frames(1, seed=1)
    result = four(src, bgr)
    assert four.device_count == 4 and result.pha.shape == (4, H, W, 1)
    assert len(result.pha.sharding.device_set) == 4  # every device holds its share of the outputs
    assert_same_as_one_device(one, result, src, bgr)


def test_a_batch_that_does_not_divide_is_padded_and_cropped_back(one, four):
    src, bgr = frames(3, seed=2), frames(3, seed=3)  # one background per source, split like the sources
    result = four(src, bgr)
    assert result.pha.shape == (3, H, W, 1) and result.ref.shape == (3, H // 4, W // 4, 1)
    assert_same_as_one_device(one, result, src, bgr)
    assert four.compiled_for((4, H, W, 3), np.uint8, (4, H, W, 3), np.uint8) is not None
    assert four.compile_count == 2  # (4 sources, 1 background) and (4, 4): the 3 ran as 4


def write_images(folder, count, seed):
    folder.mkdir()
    for i, image in enumerate(frames(count, seed)):
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mobilenetv2"
    save_model(path, random_variables(CONFIG, seed=4), CONFIG)
    return path


def test_images_and_video_write_the_same_files_on_four_devices_as_on_one(model_dir, tmp_path):
    import av

    src = write_images(tmp_path / "src", 5, seed=5)  # 4 + a short batch of 1 on four devices
    Image.fromarray(frames(1, seed=6)[0]).save(tmp_path / "bgr.png")
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for image in frames(6, seed=7):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    common = ["--model", str(model_dir), "--compilation-cache", "", "--refine-sample-pixels", "640"]
    for devices in ("1", "4"):
        assert cli.main(["images", "--src", str(src), "--bgr", str(tmp_path / "bgr.png"), "--outputs", "pha,fgr",
                         "--out", str(tmp_path / f"images{devices}"), "--devices", devices, *common]) == 0
        assert cli.main(["video", "--src", str(clip), "--bgr", str(tmp_path / "bgr.png"), "--outputs", "pha",
                         "--formats", "png", "--out", str(tmp_path / f"video{devices}"), "--devices", devices,
                         *common]) == 0
    for kind in ("images1/pha", "images1/fgr", "video1/pha"):
        written = sorted((tmp_path / kind).iterdir())
        assert len(written) == (5 if kind.startswith("images") else 6)
        for path in written:
            other = tmp_path / kind.replace("1/", "4/") / path.name
            np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(other)), err_msg=str(path))


def test_devices_beyond_the_machine_exit_2_naming_the_count(model_dir, tmp_path, capsys):
    Image.fromarray(frames(1)[0]).save(tmp_path / "a.png")
    code = cli.main(["images", "--model", str(model_dir), "--src", str(tmp_path / "a.png"), "--bgr",
                     str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--devices", "9",
                     "--compilation-cache", ""])
    assert code == 2 and "4 local CPU device(s)" in capsys.readouterr().err
