"""`bgm-jax video`: every output type in every format decodes with the right size, frame count, frame rate
and alpha; audio survives in the composited outputs; targets (colour, image, looped video); the device
and host conversions write the same pixels; bad input exits 2 with its message; an interrupted run
leaves nothing that looks complete.

Videos are generated here with PyAV (64x48, 6 frames at 25 fps, with an AAC tone); the model is a
random-weight MobileNetV2 refine checkpoint written once for the module. Every model run uses batch 4
at 64x48, so the compiled shape is shared through the persistent compilation cache.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from bgm_jax import cli
from bgm_jax.checkpoint import save_model
from bgm_jax.cli.common import random_variables
from bgm_jax.io.video_reader import read_rgba_frames

CONFIG = {"model_type": "refine", "backbone": "mobilenetv2", "refine_kernel_size": 3}
W, H, FRAMES, FPS = 64, 48, 6, 25
AUDIO_RATE = 44100


def make_video(path, *, frames=FRAMES, size=(W, H), fps=FPS, audio_seconds=None, seed=0):
    """An H.264 test clip of random frames (with an AAC tone when ``audio_seconds``)."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE) if audio_seconds else None
        if audio is not None:
            audio.layout = "mono"
        for _ in range(frames):
            image = rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(audio_seconds * AUDIO_RATE)) / AUDIO_RATE
            tone = av.AudioFrame.from_ndarray((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                              format="fltp", layout="mono")
            tone.sample_rate, tone.pts = AUDIO_RATE, 0
            container.mux(audio.encode(tone))
            container.mux(audio.encode(None))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Checkpoint, compilation cache, a clip with audio and its background plate."""
    root = tmp_path_factory.mktemp("video")
    model = root / "mobilenetv2"
    save_model(model, random_variables(CONFIG, seed=2), CONFIG)
    clip = make_video(root / "clip.mp4", audio_seconds=FRAMES / FPS)
    bgr = root / "bgr.png"
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (H, W, 3), np.uint8)).save(bgr)
    return {"model": model, "cache": root / "xla", "clip": clip, "bgr": bgr, "root": root}


def video(media, *args, model=None) -> int:
    return cli.main(["video", "--model", str(model or media["model"]), "--compilation-cache", str(media["cache"]),
                     "--batch", "4", *map(str, args)])


def decoded_frames(path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream.average_rate


def has_audio(path) -> bool:
    with av.open(str(path)) as container:
        return bool(container.streams.audio) and any(p.size for p in container.demux(audio=0))


def png_sequence(folder) -> list[np.ndarray]:
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(len(files))]
    return [np.asarray(Image.open(f)) for f in files]


def no_partial_files(folder) -> bool:
    return not any(".partial-" in p.name for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------- outputs


def test_every_output_type_in_every_format_has_the_frames_size_rate_and_alpha(media, tmp_path):
    out = tmp_path / "out"
    code = video(media, "--src", media["clip"], "--bgr", media["bgr"], "--out", out,
                 "--outputs", "com,pha,fgr,err,ref", "--formats", "mp4,webm,mov,png")
    assert code == 0

    pha = png_sequence(out / "pha")
    assert len(pha) == FRAMES and pha[0].shape == (H, W) and pha[0].dtype == np.uint8
    com_png = png_sequence(out / "com")
    assert com_png[0].shape == (H, W, 4)
    for com, alpha in zip(com_png, pha):
        np.testing.assert_array_equal(com[..., 3], alpha)
    assert png_sequence(out / "fgr")[0].shape == (H, W, 3)
    assert png_sequence(out / "err")[0].shape == (H, W)
    assert set(np.unique(np.stack(png_sequence(out / "ref")))) <= {0, 255}

    for kind in ("com", "pha", "fgr", "err", "ref"):
        for fmt in ("mp4", "webm", "mov"):
            frames, rate = decoded_frames(out / f"{kind}.{fmt}")
            assert len(frames) == FRAMES, f"{kind}.{fmt}"
            assert frames[0].shape == (H, W, 3), f"{kind}.{fmt}"
            assert rate == FPS, f"{kind}.{fmt}"
    # Alpha survives in the formats that carry it (WebM alpha needs libvpx to decode: read_rgba_frames).
    for fmt, tolerance in (("webm", 12), ("mov", 2)):
        rgba = list(read_rgba_frames(out / f"com.{fmt}"))
        assert len(rgba) == FRAMES and rgba[0].shape == (H, W, 4)
        alpha_error = np.abs(np.stack(rgba)[..., 3].astype(int) - np.stack(pha).astype(int)).mean()
        assert alpha_error < tolerance, f"com.{fmt} alpha is off by {alpha_error} on average"
    # The source's audio is in every composited video, and only there.
    assert all(has_audio(out / f"com.{fmt}") for fmt in ("mp4", "webm", "mov"))
    assert not has_audio(out / "pha.mp4")
    # MP4 com is the foreground over the default green, within H.264's loss.
    fgr = np.stack(png_sequence(out / "fgr")).astype(np.float32)
    alpha = np.stack(pha).astype(np.float32)[..., None] / 255
    expected = fgr * alpha + np.array([120, 255, 155], np.float32) * (1 - alpha)
    composited = np.stack(decoded_frames(out / "com.mp4")[0]).astype(np.float32)
    assert np.abs(composited - expected).mean() < 8
    assert no_partial_files(out)


def test_explicit_paths_looped_target_video_resized_background_and_16_bit_alpha(media, tmp_path):
    target = make_video(tmp_path / "target.mp4", frames=3, seed=5)  # shorter than the source: looped
    small_bgr = tmp_path / "small_bgr.png"
    Image.open(media["bgr"]).resize((32, 24)).save(small_bgr)
    code = video(media, "--src", media["clip"], "--bgr", small_bgr, "--resize-bgr", "--target-bgr", target,
                 "--com", tmp_path / "over_video.mp4", "--pha", tmp_path / "alpha16", "--pha-16bit")
    assert code == 0
    frames, _ = decoded_frames(tmp_path / "over_video.mp4")
    assert len(frames) == FRAMES
    alpha = png_sequence(tmp_path / "alpha16")
    assert len(alpha) == FRAMES and alpha[0].dtype == np.uint16 and alpha[0].shape == (H, W)
    with Image.open(tmp_path / "alpha16" / "000000.png") as image:
        assert image.mode == "I;16"


def test_device_and_host_conversion_write_the_same_pixels():
    from bgm_jax.io.render import PRODUCTS, render_on_device, render_on_host
    from bgm_jax.inference import MattingResult

    rng = np.random.default_rng(0)
    batch, height, width = 2, 47, 61  # odd: padded to 48x64 by the model
    values = rng.random((batch, height, width, 4), np.float32)
    values[0, :5] = 0.0  # exact zeros: colour must be zeroed where alpha is 0
    values[1, :3, :, 0] = 1.0
    result = MattingResult(
        pha=values[..., :1], fgr=values[..., 1:],
        err=rng.random((batch, 12, 16, 1), np.float32), ref=(rng.random((batch, 12, 16, 1)) > 0.5).astype(np.float32),
    )
    for target in (np.array([120, 255, 155], np.uint8), rng.integers(0, 256, (height, width, 3), np.uint8),
                   rng.integers(0, 256, (batch, height, width, 3), np.uint8)):
        device = render_on_device(result, PRODUCTS, padded=(48, 64), target=target)
        host = render_on_host(result, PRODUCTS, padded=(48, 64), target=target)
        for name in PRODUCTS:
            a, b = np.asarray(device[name]), host[name]
            assert a.dtype == b.dtype and a.shape == b.shape, name
            if name == "err":  # two bilinear implementations: rounding may differ by one level
                assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)


# ---------------------------------------------------------------------------------------------- failures


def test_an_interrupted_run_leaves_no_file_that_looks_complete(media, tmp_path, monkeypatch):
    from bgm_jax.inference import Matting

    calls = []
    original = Matting.__call__

    def interrupt_on_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Matting, "__call__", interrupt_on_second_batch)
    out = tmp_path / "out"
    code = video(media, "--src", media["clip"], "--bgr", media["bgr"], "--out", out, "--outputs", "com,pha",
                 "--formats", "mp4,webm,png")
    assert code == 130
    assert len(calls) == 2
    assert sorted(p.name for p in out.iterdir()) == []  # no output and no hidden partial file


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing_video", "no such file"),
        ("still_image_as_video", "is a still image, not a video"),
        ("text_file_as_video", "not a video FFmpeg can read"),
        ("background_size_mismatch", "background is 32x24 but the video frames are 64x48"),
        ("missing_checkpoint", "no such checkpoint directory"),
        ("output_folder_is_a_file", "a file with that name exists"),
        ("existing_output", "already exists"),
        ("unknown_extension", "unknown output format '.avi'"),
        ("no_outputs", "nothing to write"),
        ("bad_target", "not a colour"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_message(case, message, media, tmp_path, capsys):
    args = {"--src": media["clip"], "--bgr": media["bgr"], "--com": tmp_path / "com.mp4"}
    model = None
    if case == "missing_video":
        args["--src"] = tmp_path / "missing.mp4"
    elif case == "still_image_as_video":
        args["--src"] = media["bgr"]
    elif case == "text_file_as_video":
        (tmp_path / "notes.mp4").write_text("not a video")
        args["--src"] = tmp_path / "notes.mp4"
    elif case == "background_size_mismatch":
        Image.open(media["bgr"]).resize((32, 24)).save(tmp_path / "small.png")
        args["--bgr"] = tmp_path / "small.png"
    elif case == "missing_checkpoint":
        model = tmp_path / "no-model"
    elif case == "output_folder_is_a_file":
        (tmp_path / "file").write_text("x")
        args["--com"] = tmp_path / "file" / "com.mp4"
    elif case == "existing_output":
        (tmp_path / "com.mp4").write_bytes(b"keep me")
    elif case == "unknown_extension":
        args["--com"] = tmp_path / "com.avi"
    elif case == "no_outputs":
        del args["--com"]
    elif case == "bad_target":
        args["--target-bgr"] = "no-such-colour"

    code = video(media, *[v for kv in args.items() for v in kv], model=model)

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("bgm-jax video: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    if case == "existing_output":
        assert (tmp_path / "com.mp4").read_bytes() == b"keep me"
