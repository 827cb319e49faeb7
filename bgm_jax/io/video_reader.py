"""Reading video with PyAV: upright RGB frames from any FFmpeg-readable file.

- decodes until the end of the stream and never trusts the container's frame count (the original
  crashed when that count was wrong); a damaged packet is skipped and a truncated file ends at its last
  good frame, with a warning;
- honours rotation metadata: the display matrix FFmpeg attaches to each frame (phone videos), or the
  old ``rotate`` stream tag; frames come out upright (90/180/270 degrees and mirroring; other angles are
  left as stored, with a warning);
- keeps the source frame rate as a ``Fraction`` (``average_rate``, e.g. 30000/1001) and gives every frame
  its presentation time, so a variable-frame-rate source can be written back with its own timing.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from bgm_jax.errors import InputError

log = logging.getLogger(__name__)


# FFmpeg demuxers that open still images as one-frame "videos".
_IMAGE_DEMUXERS = ("image2", "image2pipe")


# ---------------------------------------------------------------------------------------------- orientation


@dataclass(frozen=True)
class Orientation:
    """How to turn stored frames upright: transpose first, then flip rows and/or columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        if self.is_identity:
            return pixels
        if self.transpose:
            pixels = pixels.swapaxes(0, 1)
        if self.flip_rows:
            pixels = pixels[::-1]
        if self.flip_cols:
            pixels = pixels[:, ::-1]
        return np.ascontiguousarray(pixels)


def orientation_from_display_matrix(matrix: Sequence[int]) -> Orientation | None:
    """The upright transform for an FFmpeg display matrix (9 int32, 16.16 fixed point), or None when
    it is not a multiple of 90 degrees (with or without mirroring).

    FFmpeg maps a stored pixel (x, y) to the displayed (a*x + c*y, b*x + d*y) with a, b, c, d =
    matrix[0], matrix[1], matrix[3], matrix[4]; y points down, so (a, b, c, d) = (0, -1, 1, 0) is a
    90-degree counter-clockwise turn (what ``VideoFrame.rotation`` reports as 90).
    """
    a, b, c, d = (round(matrix[i] / 65536) for i in (0, 1, 3, 4))
    if {a, b, c, d} - {-1, 0, 1}:
        return None
    if b == 0 and c == 0 and a != 0 and d != 0:
        return Orientation(transpose=False, flip_rows=d < 0, flip_cols=a < 0)
    if a == 0 and d == 0 and b != 0 and c != 0:
        # displayed[y', x'] = stored[y, x] with y' = b*x, x' = c*y: transpose, then flip by the signs.
        return Orientation(transpose=True, flip_rows=b < 0, flip_cols=c < 0)
    return None


def orientation_from_rotation(ccw_degrees: float) -> Orientation | None:
    """The upright transform for a counter-clockwise display rotation of 0/90/180/270 degrees."""
    turns = round(ccw_degrees / 90)
    if abs(ccw_degrees - 90 * turns) > 1:
        return None
    return {
        0: Orientation(),
        1: Orientation(transpose=True, flip_rows=True),  # np.rot90(x, 1)
        2: Orientation(flip_rows=True, flip_cols=True),
        3: Orientation(transpose=True, flip_cols=True),  # np.rot90(x, -1)
    }[turns % 4]


def _display_matrix(frame) -> tuple[int, ...] | None:
    container = getattr(frame, "side_data", ())
    for entry in container:
        # PyAV < 18 iterates over the side data; 18 made the container a mapping keyed by their type
        side_data = entry if hasattr(entry, "type") else container[entry]
        if getattr(side_data.type, "name", str(side_data.type)).upper().endswith("DISPLAYMATRIX"):
            raw = bytes(side_data)
            if len(raw) >= 36:
                return struct.unpack("=9i", raw[:36])
    return None


def _frame_orientation(frame, stream, path: Path) -> tuple[Orientation, int]:
    """(upright transform, counter-clockwise degrees) from the frame's display matrix, else from the
    stream's ``rotate`` tag (clockwise degrees, how FFmpeg before 6 exposed it)."""
    matrix = _display_matrix(frame)
    if matrix is not None:
        degrees = round(getattr(frame, "rotation", 0) or 0)
        orientation = orientation_from_display_matrix(matrix)
    else:
        tag = stream.metadata.get("rotate")
        try:
            degrees = -round(float(tag)) if tag else 0
        except ValueError:
            degrees = 0
        orientation = orientation_from_rotation(degrees)
    if orientation is None:
        log.warning("%s: rotation metadata is not a multiple of 90 degrees; frames are left as stored", path)
        return Orientation(), 0
    return orientation, degrees % 360


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoInfo:
    """What the caller needs to know about a source video. Sizes are of the upright frames."""

    path: Path
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    rotation: int  # counter-clockwise degrees that were undone (0, 90, 180, 270)
    frame_count_hint: int | None  # the container's claim, for progress bars only: never relied on
    duration: float | None  # seconds, from the container; may be missing or wrong
    codec: str
    has_audio: bool
    audio_codec: str | None
    frame_count_exact: bool = False  # the hint is the container's frame count, not duration x fps

    def frames_missing(self, decoded: int) -> int:
        """How many frames fewer than the container claims were decoded (0 when none are missing).

        A stored frame count (MP4, MOV) must be met exactly; a count derived from the duration (WebM,
        MKV) only within rounding: 2% or 1 frame, whichever is more. Decoding always goes to the real
        end of the stream, so this is what tells a file cut short (a half-copied download) from a
        complete one."""
        if not self.frame_count_hint or decoded >= self.frame_count_hint:
            return 0
        missing = self.frame_count_hint - decoded
        if not self.frame_count_exact and missing <= max(1, 0.02 * self.frame_count_hint):
            return 0
        return missing


@dataclass(frozen=True)
class DecodedFrame:
    """One upright RGB frame with its position and presentation time (seconds)."""

    index: int
    time: Fraction
    image: np.ndarray  # uint8 HxWx3


def open_input(path: Path):
    import av

    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as e:
        raise InputError(
            f"{path}: not a video FFmpeg can read ({e.strerror or e}); check the file or re-encode it, "
            "e.g. to H.264 MP4"
        ) from None
    if container.format.name in _IMAGE_DEMUXERS or container.format.name.endswith("_pipe"):
        container.close()
        raise InputError(f"{path}: is a still image, not a video; use `bgm-jax images` for images")
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    return container


class VideoReader:
    """Upright RGB frames of a video file, to the end of its stream.

        with VideoReader("clip.mp4") as reader:
            print(reader.info.fps, reader.info.width, reader.info.height)
            for frame in reader:          # DecodedFrame(index, time, image)
                ...

    ``size=(width, height)`` scales the upright frames (with FFmpeg's area filter) while converting.
    Opening decodes the first frame, so a file without any decodable frame fails here with InputError.
    """

    def __init__(self, path: str | os.PathLike, *, size: tuple[int, int] | None = None):
        self.path = Path(path)
        if size is not None and (len(size) != 2 or min(int(v) for v in size) < 1):
            raise InputError(f"video size must be two positive integers (width, height), got {size!r}")
        self._container = open_input(self.path)
        try:
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"  # frame and slice threads in the decoder
            self._av_frames = self._decode_to_end()
            self._first = next(self._av_frames, None)
            if self._first is None:
                raise InputError(f"{self.path}: contains no decodable video frames")
            self._orientation, rotation = _frame_orientation(self._first, self._stream, self.path)
            self.info = self._describe(rotation, size)
        except BaseException:
            self._container.close()
            raise
        stored = (self._first.width, self._first.height)
        if size is not None:  # the requested upright size, in the stored (pre-rotation) orientation
            stored = (int(size[1]), int(size[0])) if self._orientation.transpose else (int(size[0]), int(size[1]))
        self._stored_size = stored
        self._started = False

    def _describe(self, rotation: int, size: tuple[int, int] | None) -> VideoInfo:
        stream = self._stream
        fps = next((r for r in (stream.average_rate, stream.guessed_rate, stream.base_rate) if r and r > 0), None)
        if fps is None:
            log.warning("%s: no frame rate in the file; assuming 30 fps", self.path)
            fps = Fraction(30)
        time_base = stream.time_base or 1 / Fraction(fps)
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1_000_000  # AV_TIME_BASE
        hint = stream.frames or (round(duration * fps) if duration else None) or None
        width, height = (self._first.width, self._first.height)
        if self._orientation.transpose:
            width, height = height, width
        if size is not None:
            width, height = int(size[0]), int(size[1])
        audio = self._container.streams.audio
        return VideoInfo(
            path=self.path,
            width=width,
            height=height,
            fps=Fraction(fps),
            time_base=Fraction(time_base),
            rotation=rotation,
            frame_count_hint=hint,
            duration=duration,
            codec=stream.codec_context.name,
            has_audio=bool(audio),
            audio_codec=audio[0].codec_context.name if audio else None,
            frame_count_exact=bool(stream.frames),
        )

    def _decode_to_end(self) -> Iterator:
        import av

        skipped = 0
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as e:  # truncated or damaged file: end at the last good frame
                log.warning("%s: stopped at a damaged part of the file (%s)", self.path, e)
                try:
                    yield from self._stream.decode(None)
                except av.FFmpegError:
                    pass
                break
            try:
                frames = packet.decode()  # the final empty packets flush the decoder
            except av.InvalidDataError as e:
                skipped += 1
                if skipped == 1:
                    log.warning("%s: skipping undecodable data (%s)", self.path, e)
                continue
            yield from frames
        if skipped:
            log.warning("%s: skipped %d damaged packet(s)", self.path, skipped)

    def __iter__(self) -> Iterator[DecodedFrame]:
        if self._started:
            raise RuntimeError("a VideoReader can be iterated only once; open the file again")
        self._started = True
        step = 1 / self.info.fps
        previous: Fraction | None = None
        index = 0
        frame = self._first
        self._first = None  # do not keep the first frame alive for the whole run
        while frame is not None:
            time = self._frame_time(frame, previous, step)
            yield DecodedFrame(index, time, self._to_rgb(frame))
            previous, index = time, index + 1
            frame = next(self._av_frames, None)

    @staticmethod
    def _frame_time(frame, previous: Fraction | None, step: Fraction) -> Fraction:
        if frame.pts is not None and frame.time_base:
            return frame.pts * Fraction(frame.time_base)
        return Fraction(0) if previous is None else previous + step

    def _to_rgb(self, frame) -> np.ndarray:
        width, height = self._stored_size
        if (frame.width, frame.height) != (width, height):  # --resize, or a mid-stream size change
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
        else:
            rgb = frame.to_ndarray(format="rgb24")
        return self._orientation.apply(rgb)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """The ``VideoInfo`` of a file (opens it and decodes one frame)."""
    with VideoReader(path) as reader:
        return reader.info


def read_rgba_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Every frame as uint8 HxWx4 RGBA, alpha included: VP9 streams go through libvpx (FFmpeg's own
    VP9 decoder drops the alpha plane WebM carries alongside); others use the default decoder.
    No rotation handling: meant for checking this module's alpha outputs."""
    import av

    with open_input(Path(path)) as container:
        stream = container.streams.video[0]
        decoder = stream.codec_context
        if stream.codec_context.name == "vp9":
            decoder = av.CodecContext.create("libvpx-vp9", "r")
        for packet in container.demux(stream):
            for frame in decoder.decode(packet if packet.size else None):
                yield frame.to_ndarray(format="rgba")
