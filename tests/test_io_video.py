"""bgm_jax.io.video: decoding to the end, rotation, frame rate, every output format, audio, atomicity.

Every video is generated here with PyAV (64x48, a few frames), so the tests need no files and run fast.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from bgm_jax.errors import InputError
from bgm_jax.io.video_reader import Orientation, VideoReader, orientation_from_display_matrix, orientation_from_rotation, probe_video, read_rgba_frames
from bgm_jax.io.video_writer import PngSequenceWriter, VideoWriter, available_encoders

W, H = 64, 48
AUDIO_RATE = 44100


def frame_pattern(index: int, width: int = W, height: int = H) -> np.ndarray:
    """Grey level that encodes the frame index, plus a white marker in the top-left corner."""
    image = np.full((height, width, 3), 20 + (20 * index) % 220, np.uint8)
    image[: height // 4, : width // 4] = 255
    return image


def make_video(
    path: Path,
    *,
    frames: int = 10,
    fps=25,
    size: tuple[int, int] = (W, H),
    audio_seconds: float | None = None,
    rotation: float | None = None,
    hflip: bool = False,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """A small test video; ``rotation`` writes display-matrix metadata like a phone does."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], pix_fmt
        if rotation is not None:
            video.set_display_rotation(rotation, hflip=hflip)
        audio = container.add_stream("aac", rate=AUDIO_RATE) if audio_seconds else None
        if audio is not None:
            audio.layout = "mono"
        for i in range(frames):
            image = frame_pattern(i, *size)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if audio is not None:
            t = np.arange(int(audio_seconds * AUDIO_RATE)) / AUDIO_RATE
            tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, 0
            container.mux(audio.encode(frame))
            container.mux(audio.encode(None))
    return path


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def decoded_audio_samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])


def rgba_ramp(index: int, width: int = W, height: int = H) -> np.ndarray:
    """RGBA test frame: colour by index, alpha a horizontal 0..255 ramp."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 10 * index, 60
    rgba[..., 3] = np.linspace(0, 255, width).round().astype(np.uint8)[None]
    return rgba


def no_partial_files(folder: Path) -> bool:
    return not any(".partial-" in p.name for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------- reading


def test_reader_yields_every_frame_upright_rgb_with_fps_size_and_audio(tmp_path):
    path = make_video(tmp_path / "clip.mp4", audio_seconds=0.3)
    with VideoReader(path) as reader:
        info = reader.info
        frames = list(reader)
    assert (info.width, info.height, info.fps, info.has_audio, info.audio_codec) == (W, H, Fraction(25), True, "aac")
    assert info.rotation == 0
    assert len(frames) == 10
    assert [f.index for f in frames] == list(range(10))
    assert [f.time for f in frames] == [Fraction(i, 25) for i in range(10)]
    for i, frame in enumerate(frames):
        assert frame.image.shape == (H, W, 3) and frame.image.dtype == np.uint8
        assert abs(int(frame.image[H // 2, W // 2, 0]) - (20 + 20 * i)) <= 3  # decoded in order


def test_reader_keeps_fractional_frame_rate_exactly(tmp_path):
    path = make_video(tmp_path / "ntsc.mp4", frames=4, fps=Fraction(30000, 1001))
    info = probe_video(path)
    assert info.fps == Fraction(30000, 1001)
    assert info.has_audio is False


@pytest.mark.parametrize(
    ("rotation", "hflip", "expected"),
    [
        (90, False, lambda img: np.rot90(img, 1)),
        (180, False, lambda img: np.rot90(img, 2)),
        (270, False, lambda img: np.rot90(img, -1)),
        (0, True, lambda img: img[:, ::-1]),
    ],
)
def test_reader_turns_frames_upright_from_rotation_metadata(tmp_path, rotation, hflip, expected):
    path = make_video(tmp_path / f"rot{rotation}.mp4", frames=2, rotation=rotation, hflip=hflip)
    with VideoReader(path) as reader:
        frame = next(iter(reader)).image
        info = reader.info
    upright = expected(frame_pattern(0))
    assert frame.shape == upright.shape
    assert (info.width, info.height) == (upright.shape[1], upright.shape[0])
    # The white marker block lands where the upright reference has it.
    assert np.array_equal(frame > 128, upright > 128)


def test_orientation_from_matrix_and_rotation_agree_with_numpy_rotations():
    image = np.arange(2 * 3 * 1).reshape(2, 3, 1)
    for degrees, k in [(0, 0), (90, 1), (180, 2), (270, -1), (-90, -1)]:
        assert np.array_equal(orientation_from_rotation(degrees).apply(image), np.rot90(image, k))
    q = 65536  # 16.16 fixed point one
    counter_clockwise_90 = [0, -q, 0, q, 0, 0, 0, 0, 1 << 30]
    assert orientation_from_display_matrix(counter_clockwise_90) == orientation_from_rotation(90)
    assert orientation_from_display_matrix([q, 0, 0, 0, -q, 0, 0, 0, 1 << 30]) == Orientation(flip_rows=True)
    assert orientation_from_rotation(45) is None
    half = int(q * 0.7071)
    assert orientation_from_display_matrix([half, -half, 0, half, half, 0, 0, 0, 1 << 30]) is None


def test_reader_decodes_to_end_when_container_has_no_frame_count(tmp_path):
    path = tmp_path / "alpha.webm"
    with VideoWriter(path, width=W, height=H, fps=25) as writer:
        for i in range(7):
            writer.write(rgba_ramp(i))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # WebM stores no frame count
    with VideoReader(path) as reader:
        assert len(list(reader)) == 7


def test_reader_stops_cleanly_at_truncated_end_although_header_promises_more(tmp_path, caplog):
    path = make_video(tmp_path / "full.mkv", frames=40, size=(W, H))
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with caplog.at_level(logging.WARNING), VideoReader(cut) as reader:
        promised = reader.info.frame_count_hint
        frames = list(reader)
    assert promised is not None and promised >= 40  # the header still claims the full clip
    assert 0 < len(frames) < 40
    assert all(f.image.shape == (H, W, 3) for f in frames)


def test_reader_scales_to_requested_size(tmp_path):
    path = make_video(tmp_path / "clip.mp4", frames=2)
    with VideoReader(path, size=(32, 24)) as reader:
        assert (reader.info.width, reader.info.height) == (32, 24)
        assert all(f.image.shape == (24, 32, 3) for f in reader)


def test_reader_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.mp4: no such file"):
        VideoReader(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="is a folder"):
        VideoReader(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="notes.mp4: not a video"):
        VideoReader(text)
    from PIL import Image

    Image.fromarray(frame_pattern(0)).save(tmp_path / "still.png")
    with pytest.raises(InputError, match="still.png: is a still image"):
        VideoReader(tmp_path / "still.png")


# ---------------------------------------------------------------------------------------------- writing


def test_mp4_output_is_h264_with_right_size_frames_and_audio_copied_unchanged(tmp_path):
    source = make_video(tmp_path / "src.mp4", audio_seconds=0.3)
    out = tmp_path / "out" / "com.mp4"
    with VideoReader(source) as reader, VideoWriter(
        out, width=W, height=H, fps=reader.info.fps, time_base=reader.info.time_base, audio_from=source
    ) as writer:
        for frame in reader:
            writer.write(255 - frame.image, time=frame.time)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.format.name) == ("h264", "yuv420p")
        assert container.streams.audio[0].codec_context.name == "aac"
    with VideoReader(out) as reader:
        frames = list(reader)
    assert len(frames) == 10 and frames[0].image.shape == (H, W, 3)
    assert abs(int(frames[3].image[H // 2, W // 2, 0]) - (255 - 80)) <= 3
    assert audio_packets(out) == audio_packets(source)  # remuxed, not re-encoded
    assert no_partial_files(tmp_path)


def test_webm_output_transcodes_aac_audio_to_opus(tmp_path):
    source = make_video(tmp_path / "src.mp4", audio_seconds=0.3)
    out = tmp_path / "pha.webm"
    with VideoWriter(out, width=W, height=H, fps=25, audio_from=source) as writer:
        for i in range(10):
            writer.write(rgba_ramp(i))
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    samples = decoded_audio_samples(out)
    assert samples.size > 0.25 * 48000  # most of the 0.3 s survives resampling to 48 kHz
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 0.2  # the 0.5-amplitude tone, not silence


@pytest.mark.parametrize(("suffix", "codec", "pix_fmt"), [(".webm", "vp9", None), (".mov", "prores", "yuva444p")])
def test_alpha_formats_keep_the_alpha_channel(tmp_path, suffix, codec, pix_fmt):
    out = tmp_path / f"com{suffix}"
    with VideoWriter(out, width=W, height=H, fps=25) as writer:
        for i in range(6):
            writer.write(rgba_ramp(i))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec
        if pix_fmt:
            assert stream.format.name.startswith(pix_fmt)  # yuva444p10le/12le: an alpha plane
    frames = list(read_rgba_frames(out))
    assert len(frames) == 6
    for i, rgba in enumerate(frames):
        assert rgba.shape == (H, W, 4)
        expected = rgba_ramp(i)
        assert np.abs(rgba[..., 3].astype(int) - expected[..., 3]).max() <= 6
        assert np.abs(rgba[..., 0].astype(int) - 200).max() <= 8


def test_vp9_alpha_is_really_in_the_file_not_defaulted_opaque(tmp_path):
    out = tmp_path / "transparent.webm"
    with VideoWriter(out, width=W, height=H, fps=25) as writer:
        for i in range(3):
            rgba = rgba_ramp(i)
            rgba[..., 3] = 0
            writer.write(rgba)
    assert all(rgba[..., 3].max() <= 3 for rgba in read_rgba_frames(out))


def test_float_frames_are_rounded_when_written(tmp_path):
    out = tmp_path / "seq"
    value = 100.4 / 255  # truncation gives 100 as well; 100.6 / 255 separates rounding from truncation
    with PngSequenceWriter(out, mode="L") as writer:
        writer.write(np.full((H, W), value, np.float32))
        writer.write(np.full((H, W), 100.6 / 255, np.float32))
    from PIL import Image

    assert np.asarray(Image.open(out / "000000.png")).max() == 100
    assert np.asarray(Image.open(out / "000001.png")).min() == 101


def test_png_sequences_rgba_and_16_bit_grey(tmp_path):
    from PIL import Image

    with PngSequenceWriter(tmp_path / "com", mode="RGBA") as writer:
        for i in range(3):
            writer.write(rgba_ramp(i))
    with PngSequenceWriter(tmp_path / "pha", mode="L", bits=16) as writer:
        for i in range(3):
            writer.write(np.full((H, W), i / 2, np.float32))
    com = sorted((tmp_path / "com").iterdir())
    pha = sorted((tmp_path / "pha").iterdir())
    assert [p.name for p in com] == ["000000.png", "000001.png", "000002.png"] == [p.name for p in pha]
    image = Image.open(com[1])
    assert image.mode == "RGBA" and np.array_equal(np.asarray(image), rgba_ramp(1))
    grey = Image.open(pha[1])
    assert grey.mode.startswith("I") and np.asarray(grey).max() == 32768  # round(0.5 * 65535)


def test_odd_sizes_are_padded_for_h264_and_kept_for_alpha_formats(tmp_path, caplog):
    width, height = 65, 49
    image = np.zeros((height, width, 3), np.uint8)
    image[:, -1] = 255  # last column white: padding repeats it
    with caplog.at_level(logging.WARNING):
        with VideoWriter(tmp_path / "odd.mp4", width=width, height=height, fps=25) as writer:
            writer.write(image)
    assert "padding to 66x50" in caplog.text
    padded = next(iter(VideoReader(tmp_path / "odd.mp4"))).image
    assert padded.shape == (50, 66, 3) and padded[:, -1].min() > 200
    for suffix in (".webm", ".mov"):
        with VideoWriter(tmp_path / f"odd{suffix}", width=width, height=height, fps=25) as writer:
            writer.write(rgba_ramp(0, width, height))
        assert next(read_rgba_frames(tmp_path / f"odd{suffix}")).shape == (height, width, 4)


def test_variable_frame_rate_timestamps_survive_a_round_trip(tmp_path):
    source = tmp_path / "vfr.mkv"
    times_ms = [0, 33, 66, 200, 233, 400]
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for t in times_ms:
            frame = av.VideoFrame.from_ndarray(frame_pattern(0), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    out = tmp_path / "vfr.mp4"
    with VideoReader(source) as reader, VideoWriter(
        out, width=W, height=H, fps=reader.info.fps, time_base=reader.info.time_base
    ) as writer:
        for frame in reader:
            writer.write(frame.image, time=frame.time)
    with VideoReader(out) as reader:
        assert [round(float(f.time) * 1000) for f in reader] == times_ms


def test_interrupted_writes_leave_no_output_and_no_partial_file(tmp_path):
    for path in (tmp_path / "com.mp4", tmp_path / "com.webm", tmp_path / "com.mov"):
        with pytest.raises(KeyboardInterrupt):
            with VideoWriter(path, width=W, height=H, fps=25) as writer:
                writer.write(rgba_ramp(0)[..., :3])
                raise KeyboardInterrupt
        assert not path.exists()
    with pytest.raises(RuntimeError):
        with PngSequenceWriter(tmp_path / "seq") as writer:
            writer.write(rgba_ramp(0))
            raise RuntimeError("model failed")
    assert not (tmp_path / "seq").exists()
    assert list(tmp_path.iterdir()) == []


def test_writers_refuse_existing_outputs_unless_overwrite(tmp_path):
    existing = tmp_path / "com.mp4"
    existing.write_bytes(b"previous run")
    with pytest.raises(InputError, match="com.mp4: output already exists"):
        VideoWriter(existing, width=W, height=H, fps=25)
    assert existing.read_bytes() == b"previous run"
    with VideoWriter(existing, width=W, height=H, fps=25, overwrite=True) as writer:
        writer.write(frame_pattern(0))
    assert probe_video(existing).codec == "h264"
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "old.png").write_bytes(b"x")
    with pytest.raises(InputError, match="seq: output already exists"):
        PngSequenceWriter(tmp_path / "seq")
    with PngSequenceWriter(tmp_path / "seq", overwrite=True, mode="RGB") as writer:
        writer.write(frame_pattern(0))
    assert [p.name for p in (tmp_path / "seq").iterdir()] == ["000000.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_writer_bad_outputs_are_input_errors(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(InputError, match=r"not_a_folder/out: cannot create the output folder \(Not a directory\)"):
        VideoWriter(blocker / "out" / "com.mp4", width=W, height=H, fps=25)
    with pytest.raises(InputError, match="com.avi: unknown video extension"):
        VideoWriter(tmp_path / "com.avi", width=W, height=H, fps=25)


def test_writer_rejects_rgba_for_opaque_mp4(tmp_path):
    with pytest.raises(ValueError, match="expected 48x64x3"):
        with VideoWriter(tmp_path / "com.mp4", width=W, height=H, fps=25) as writer:
            writer.write(rgba_ramp(0))
    assert not (tmp_path / "com.mp4").exists()


def test_installed_ffmpeg_has_every_encoder_the_formats_use():
    assert available_encoders() == {name: True for name in available_encoders()}
    assert set(available_encoders()) >= {"libx264", "libvpx-vp9", "prores_ks", "aac", "libopus"}


def test_mp4_encoder_can_be_swapped_for_one_taking_the_same_pixel_format(tmp_path):
    with VideoWriter(tmp_path / "alt.mp4", width=W, height=H, fps=25, codec="mpeg4") as writer:
        for i in range(3):
            writer.write(frame_pattern(i))
    assert probe_video(tmp_path / "alt.mp4").codec == "mpeg4"
    with pytest.raises(InputError, match="encoder 'no_such_encoder' is not in this FFmpeg build"):
        VideoWriter(tmp_path / "x.mp4", width=W, height=H, fps=25, codec="no_such_encoder")
    with pytest.raises(InputError, match="encoder 'libvpx' cannot write yuva444p10le"):
        VideoWriter(tmp_path / "x.mov", width=W, height=H, fps=25, codec="libvpx")
    assert list(tmp_path.iterdir()) == [tmp_path / "alt.mp4"]


def test_resizing_a_rotated_video_gives_the_requested_upright_size(tmp_path):
    path = make_video(tmp_path / "phone.mp4", frames=2, rotation=90)
    with VideoReader(path, size=(24, 32)) as reader:
        assert (reader.info.width, reader.info.height) == (24, 32)
        frame = next(iter(reader)).image
    assert frame.shape == (32, 24, 3)
    assert frame[-1, 0].min() > 128 and frame[0, -1].max() < 128  # marker turned to the bottom-left
