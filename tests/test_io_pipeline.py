"""bgm_jax.io.pipeline: the decode and encode threads around the caller's model loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bgm_jax.errors import InputError
from bgm_jax.io.pipeline import Pipeline, batched

WAIT = 10.0  # generous bound for an event that a working pipeline sets at once; only a bug waits it out


def test_every_item_goes_through_the_model_to_the_sink_in_order():
    received = []
    with Pipeline(range(50), sink=received.append, depth=3) as pipe:
        for item in pipe:
            pipe.put(item * 10)
    assert received == [i * 10 for i in range(50)]


def test_source_and_sink_run_in_their_own_threads_at_the_same_time():
    """The source does not produce item 1 until the sink has consumed result 0: a pipeline that ran
    decode, model and encode one after another in one thread would time out here."""
    sink_saw_first = threading.Event()
    threads = {}

    def source():
        threads["source"] = threading.current_thread()
        yield 0
        if not sink_saw_first.wait(WAIT):
            raise AssertionError("sink never ran while the source was still producing")
        yield 1

    def sink(result):
        threads["sink"] = threading.current_thread()
        sink_saw_first.set()

    with Pipeline(source(), sink=sink) as pipe:
        for item in pipe:
            pipe.put(item)
    assert threads["source"] is not threading.main_thread()
    assert threads["sink"] not in (threading.main_thread(), threads["source"])


def test_a_decode_error_reaches_the_main_thread_as_the_same_exception():
    def source():
        yield 1
        yield 2
        raise InputError("clip.mp4: damaged")

    seen = []
    with pytest.raises(InputError, match="clip.mp4: damaged"):
        with Pipeline(source(), sink=lambda result: None) as pipe:
            for item in pipe:
                seen.append(item)
                pipe.put(item)
    assert seen == [1, 2]  # the items decoded before the error, then the error


def test_an_encode_error_stops_the_main_loop_and_the_decoder():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    def sink(result):
        if result == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with Pipeline(endless(), sink=sink, depth=2) as pipe:
            for item in pipe:
                pipe.put(item)
    assert len(produced) < 100  # the decoder stopped instead of running forever


def test_interrupting_the_main_loop_stops_both_threads_without_draining():
    seen = []
    before = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt):
        with Pipeline(iter(range(10_000)), sink=seen.append, depth=2) as pipe:
            for item in pipe:
                pipe.put(item)
                if item == 5:
                    raise KeyboardInterrupt
    assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("bgm-")]
    assert len(seen) <= 6


def test_leaving_the_loop_early_still_encodes_what_was_put():
    received = []
    with Pipeline(range(1000), sink=received.append, depth=2) as pipe:
        for item in pipe:
            pipe.put(item)
            if item == 9:
                break
    assert received == list(range(10))


def test_batched_groups_consecutive_items():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        list(batched(range(3), 0))


def test_video_through_the_pipeline_to_an_alpha_webm(tmp_path):
    """The way the video command uses it: reader in the decode thread, writer in the encode thread."""
    from test_io_video import make_video

    from bgm_jax.io.video_reader import VideoReader, read_rgba_frames

    from bgm_jax.io.video_writer import VideoWriter

    source = make_video(tmp_path / "clip.mp4", frames=9)
    out = tmp_path / "com.webm"
    with VideoReader(source) as reader, VideoWriter(out, width=64, height=48, fps=reader.info.fps) as writer:

        def write_batch(item):
            frames, alphas = item
            for frame, alpha in zip(frames, alphas):
                writer.write(np.dstack([frame.image, alpha]), time=frame.time)

        with Pipeline(batched(reader, 4), sink=write_batch) as pipe:
            for frames in pipe:
                pipe.put((frames, [f.image[..., 0] for f in frames]))  # stand-in model: alpha = red
    decoded = list(read_rgba_frames(out))
    assert len(decoded) == 9 and decoded[0].shape == (48, 64, 4)
    assert abs(int(decoded[2][24, 32, 3]) - 60) <= 4  # frame 2's grey level 60 became its alpha


def test_a_failing_model_leaves_no_video_behind(tmp_path):
    from test_io_video import make_video

    from bgm_jax.io.video_reader import VideoReader

    from bgm_jax.io.video_writer import VideoWriter

    source = make_video(tmp_path / "clip.mp4", frames=6)
    out = tmp_path / "out" / "com.mp4"
    with pytest.raises(RuntimeError, match="model failed"):
        with VideoReader(source) as reader, VideoWriter(out, width=64, height=48, fps=25) as writer:
            with Pipeline(reader, sink=lambda frame: writer.write(frame.image)) as pipe:
                for frame in pipe:
                    if frame.index == 3:
                        raise RuntimeError("model failed")
                    pipe.put(frame)
    assert list((tmp_path / "out").iterdir()) == []
