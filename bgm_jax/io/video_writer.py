"""Writing video with PyAV: the output formats, by extension or folder.

- ``.mp4``: H.264 (libx264, yuv420p, BT.709 tags), for composited (opaque) outputs. yuv420p needs an even
  width and height: odd sizes are padded by one replicated row/column (the file is then 1 px larger),
  because refusing would throw away a finished run over one pixel;
- ``.webm``: VP9 with alpha (libvpx-vp9, yuva420p). FFmpeg's built-in VP9 decoder ignores the alpha
  plane; ``read_rgba_frames`` (and any player using libvpx) decodes it;
- ``.mov``: ProRes 4444 with alpha (prores_ks, yuva444p10le);
- a folder: numbered PNGs (RGBA, RGB, or 8/16-bit greyscale).

Every output is written under a hidden partial name and renamed only when complete (see
``bgm_jax.io.atomic``): an exception or Ctrl-C leaves no file that looks finished.

Audio: ``audio_from=SOURCE`` copies the source's first audio stream into the output unchanged when the
container accepts that codec (AAC, MP3, Opus, PCM, ... into MP4/MOV; Opus and Vorbis into WebM) and
otherwise transcodes it (to AAC for MP4/MOV, to Opus for WebM). Audio past the last written frame is
dropped so the tracks end together.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from bgm_jax.errors import InputError
from bgm_jax.io.atomic import (
    check_can_write,
    commit_partial,
    ensure_dir,
    partial_path,
    remove_partial,
    write_failure,
)
from bgm_jax.io.outputs import as_single_channel, to_uint8, to_uint16
from bgm_jax.io.video_reader import open_input

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class VideoFormat:
    """An output format: encoder, pixel format, muxer and the audio codec to transcode to."""

    codec: str
    pix_fmt: str
    muxer: str
    alpha: bool
    even_size: bool  # 4:2:0 chroma needs even width and height
    options: dict = field(default_factory=dict)
    muxer_options: dict = field(default_factory=dict)
    audio_codec: str = "aac"
    audio_rate: int | None = None  # None: keep the source sample rate


VIDEO_FORMATS = {
    # veryfast: encoding is the usual bottleneck on CPU; crf 18 is visually near-lossless.
    ".mp4": VideoFormat(
        "libx264", "yuv420p", "mp4", alpha=False, even_size=True,
        options={"preset": "veryfast", "crf": "18"}, muxer_options={"movflags": "+faststart"},
    ),
    # auto-alt-ref must be off for alpha (libvpx refuses otherwise); row-mt uses all cores.
    ".webm": VideoFormat(
        "libvpx-vp9", "yuva420p", "webm", alpha=True, even_size=False,
        options={"deadline": "good", "cpu-used": "5", "row-mt": "1", "crf": "30", "b": "0", "auto-alt-ref": "0"},
        audio_codec="libopus", audio_rate=48000,
    ),
    # vendor apl0 makes Apple tools accept the file as their own ProRes.
    ".mov": VideoFormat(
        "prores_ks", "yuva444p10le", "mov", alpha=True, even_size=False,
        options={"profile": "4444", "vendor": "apl0"},
    ),
}


def _with_encoder(video_format: VideoFormat, codec: str) -> VideoFormat:
    """The format with another encoder for the same pixel format, e.g. ``h264_nvenc`` (NVIDIA) or
    ``libx265`` for ``.mp4``; the default encoder's options are dropped (they are encoder-specific)."""
    import av

    try:
        pix_fmts = {f.name for f in (av.Codec(codec, "w").video_formats or ())}
    except Exception:
        raise InputError(
            f"encoder {codec!r} is not in this FFmpeg build; see bgm_jax.io.video_writer.available_encoders"
        ) from None
    if pix_fmts and video_format.pix_fmt not in pix_fmts:
        raise InputError(f"encoder {codec!r} cannot write {video_format.pix_fmt}, which this format needs")
    return dataclasses.replace(video_format, codec=codec, options={})


_BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709
_MPEG_RANGE = 1  # AVCOL_RANGE_MPEG (limited range)


def available_encoders() -> dict[str, bool]:
    """Which of the encoders this module uses exist in the installed PyAV's FFmpeg build."""
    import av

    names = sorted({f.codec for f in VIDEO_FORMATS.values()} | {f.audio_codec for f in VIDEO_FORMATS.values()})
    found = {}
    for name in names:
        try:
            av.Codec(name, "w")
            found[name] = True
        except Exception:
            found[name] = False
    return found


class _AudioTrack:
    """The source's first audio stream muxed into an output container, copied when the container
    takes the codec and transcoded otherwise, interleaved with the video as frames are written."""

    def __init__(self, container, source: Path, output, video_format: VideoFormat):
        self._input = container
        self._stream = container.streams.audio[0]
        self._output = output
        self._pending = None
        self._packets = container.demux(self._stream)
        name = self._stream.codec_context.name
        self.copied = name in output.supported_codecs
        if self.copied:
            self._out = output.add_stream_from_template(self._stream)
        else:
            source_context = self._stream.codec_context
            rate = video_format.audio_rate or source_context.sample_rate or 48000
            self._out = output.add_stream(video_format.audio_codec, rate=rate)
            self._out.layout = source_context.layout if len(source_context.layout.channels) <= 2 else "stereo"
            log.info("%s: %s audio cannot go into %s; transcoding it to %s", source, name,
                     video_format.muxer, video_format.audio_codec)

    @staticmethod
    def open(source: Path, output, video_format: VideoFormat) -> _AudioTrack | None:
        """The audio track of ``source`` for ``output``, or None (logged) when it has none."""
        container = open_input(source)
        if not container.streams.audio:
            container.close()
            log.info("%s: no audio stream to copy", source)
            return None
        try:
            return _AudioTrack(container, source, output, video_format)
        except BaseException:
            container.close()
            raise

    def mux_until(self, end: Fraction) -> None:
        """Mux the source audio that starts before ``end`` seconds."""
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:  # the demuxer's empty flush packet
                continue
            if ts * packet.time_base >= end:
                self._pending = packet
                return
            if self.copied:
                packet.stream = self._out
                self._output.mux(packet)
            else:
                for frame in packet.decode():
                    self._output.mux(self._out.encode(frame))

    def finish(self, end: Fraction) -> None:
        self.mux_until(end)
        if not self.copied:
            self._output.mux(self._out.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()


def _check_fps(fps) -> Fraction:
    try:
        fps = Fraction(fps).limit_denominator(1_000_000)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a positive number, got {fps!r}") from None
    if fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return fps


class VideoWriter:
    """Encode frames to ``.mp4`` (H.264), ``.webm`` (VP9 + alpha) or ``.mov`` (ProRes 4444 + alpha).

        with VideoWriter("out/com.webm", width=w, height=h, fps=info.fps, time_base=info.time_base,
                         audio_from="clip.mp4") as writer:
            for frame in frames:
                writer.write(rgba, time=frame.time)

    ``write`` takes uint8 or float-in-[0, 1] pixels: HxWx3 RGB for MP4, HxWx4 RGBA (or RGB, made
    opaque) for the alpha formats. With ``time`` (seconds) each frame keeps its source timestamp
    (exact in ``time_base``; pass the reader's), so variable frame rates and audio sync survive; without
    it frames are spaced 1/fps. Leaving the ``with`` block by an exception discards the partial file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        width: int,
        height: int,
        fps,
        time_base=None,
        audio_from: str | os.PathLike | None = None,
        overwrite: bool = False,
        options: dict | None = None,
        codec: str | None = None,
    ):
        import av

        self.path = check_can_write(path, overwrite)
        self.format = VIDEO_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise InputError(f"{self.path}: unknown video extension; use one of {', '.join(VIDEO_FORMATS)}")
        if codec is not None and codec != self.format.codec:
            self.format = _with_encoder(self.format, codec)
        self.width, self.height = int(width), int(height)
        self.fps = _check_fps(fps)
        self.time_base = Fraction(time_base) if time_base else 1 / self.fps
        self._overwrite = overwrite
        self._pad = (self.height % 2, self.width % 2) if self.format.even_size else (0, 0)
        if any(self._pad):
            log.warning(
                "%s: %dx%d is odd and %s needs even sizes; padding to %dx%d by repeating the edge",
                self.path, self.width, self.height, self.format.pix_fmt, self.width + self._pad[1],
                self.height + self._pad[0],
            )
        ensure_dir(self.path.parent)
        self._partial = partial_path(self.path)
        self._container = None
        self._audio: _AudioTrack | None = None
        self._last_pts: int | None = None
        self._end = Fraction(0)
        self.frames_written = 0
        try:
            self._container = av.open(str(self._partial), "w", format=self.format.muxer,
                                      container_options=dict(self.format.muxer_options))
            self._stream = self._add_video_stream(options)
            if audio_from is not None:
                self._audio = _AudioTrack.open(Path(audio_from), self._container, self.format)
            self._container.start_encoding()  # opens the encoders now: a missing one fails here, not mid-run
        except OSError as e:  # PyAV's errors for a full disk or a refused file are OSErrors with an errno
            self.abort()
            raise write_failure(self.path, e) from e
        except av.FFmpegError as e:
            self.abort()
            raise InputError(
                f"{self.path}: cannot start the {self.format.codec} encoder ({e}); check the folder, free "
                "space and, for a hardware encoder, its driver"
            ) from None
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, options: dict | None):
        stream = self._container.add_stream(self.format.codec, rate=self.fps,
                                            options={**self.format.options, **(options or {})})
        stream.width = self.width + self._pad[1]
        stream.height = self.height + self._pad[0]
        stream.pix_fmt = self.format.pix_fmt
        stream.thread_type = "AUTO"
        context = stream.codec_context
        context.time_base = self.time_base
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        context.color_range = _MPEG_RANGE
        return stream

    def _pixels(self, image) -> tuple[np.ndarray, str]:
        pixels = to_uint8(image)
        channels = pixels.shape[-1] if pixels.ndim == 3 else 0
        if pixels.shape[:2] != (self.height, self.width) or channels not in ((3, 4) if self.format.alpha else (3,)):
            wanted = f"{self.height}x{self.width}x{'4 (or 3)' if self.format.alpha else '3'}"
            raise ValueError(f"{self.path.name}: frame of shape {pixels.shape}, expected {wanted}")
        if any(self._pad):
            pixels = np.pad(pixels, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        return np.ascontiguousarray(pixels), ("rgba" if channels == 4 else "rgb24")

    def _next_pts(self, time) -> int:
        if time is None:
            pts = round(Fraction(self.frames_written) / self.fps / self.time_base)
        else:
            pts = round(Fraction(time) / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders need strictly increasing timestamps
        self._last_pts = pts
        return pts

    def write(self, image, time=None) -> None:
        """Encode one frame (see the class docstring for shapes and timing)."""
        import av

        pixels, layout = self._pixels(image)
        frame = av.VideoFrame.from_ndarray(pixels, format=layout)
        frame = frame.reformat(format=self.format.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts = self._next_pts(time)
        frame.time_base = self.time_base
        self._end = frame.pts * self.time_base + 1 / self.fps
        try:
            if self._audio is not None:
                self._audio.mux_until(self._end)
            self._mux(self._stream.encode(frame))
        except OSError as e:  # disk full, file refused: the partial file is useless, and so is going on
            self.abort()
            raise write_failure(self.path, e) from e
        self.frames_written += 1

    def _mux(self, packets) -> None:
        """Hand encoded video packets to the container: where the file is written (disk full fails here)."""
        self._container.mux(packets)

    def close(self) -> Path:
        """Flush the encoder, finish the audio, and rename the file to its final name."""
        if self._container is None:
            raise RuntimeError(f"{self.path.name}: writer already closed or aborted")
        try:
            self._mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.finish(self._end)
                self._audio = None
            self._container.close()
            self._container = None
            commit_partial(self._partial, self.path, self._overwrite)
        except OSError as e:
            self.abort()
            raise write_failure(self.path, e) from e
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop and delete the partial file (safe to call more than once)."""
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is discarded anyway
                pass
            self._container = None
        remove_partial(self._partial)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PngSequenceWriter:
    """Frames as numbered PNGs (``000000.png``, ...) in a folder that appears only when complete.

    ``mode``: ``"RGBA"`` (HxWx4), ``"RGB"`` (HxWx3) or ``"L"`` (HxW greyscale; ``bits=16`` for 16-bit).
    PNG compression level 1 by default: several times faster than Pillow's 6, files ~10-30% larger.
    """

    _CHANNELS = {"RGBA": 4, "RGB": 3, "L": 0}

    def __init__(self, directory: str | os.PathLike, *, mode: str = "RGBA", bits: int = 8,
                 overwrite: bool = False, compress_level: int = 1):
        if mode not in self._CHANNELS:
            raise ValueError(f"mode must be one of {tuple(self._CHANNELS)}, got {mode!r}")
        if bits not in (8, 16) or (bits == 16 and mode != "L"):
            raise ValueError("bits must be 8, or 16 for greyscale (mode 'L')")
        self.path = check_can_write(directory, overwrite)
        self.mode, self.bits, self._overwrite, self._compress = mode, bits, overwrite, compress_level
        ensure_dir(self.path.parent)
        self._partial = partial_path(self.path)
        try:
            self._partial.mkdir()
        except OSError as e:
            raise write_failure(self.path, e) from e
        self.frames_written = 0

    def write(self, image, time=None) -> None:
        """Write the next frame (``time`` is accepted for symmetry with ``VideoWriter`` and ignored)."""
        from PIL import Image

        if self.mode == "L":
            pixels = as_single_channel(image)
            pixels = to_uint16(pixels) if self.bits == 16 else to_uint8(pixels)
        else:
            pixels = to_uint8(image)
            if pixels.ndim != 3 or pixels.shape[-1] != self._CHANNELS[self.mode]:
                raise ValueError(f"{self.path.name}: {self.mode} frame expected, got shape {pixels.shape}")
        name = self._partial / f"{self.frames_written:06d}.png"
        try:
            Image.fromarray(np.ascontiguousarray(pixels)).save(name, format="PNG", compress_level=self._compress)
        except OSError as e:
            self.abort()
            raise write_failure(self.path, e) from e
        self.frames_written += 1

    def close(self) -> Path:
        try:
            commit_partial(self._partial, self.path, self._overwrite)
        except OSError as e:
            self.abort()
            raise write_failure(self.path, e) from e
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        remove_partial(self._partial)

    def __enter__(self) -> PngSequenceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
