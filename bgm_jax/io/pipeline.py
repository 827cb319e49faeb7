"""Overlap decoding, device compute and encoding with two threads and two bounded queues.

    decode thread --(inputs queue)--> main thread: the model --(outputs queue)--> encode thread

The caller runs the model in the main thread (JAX dispatch is asynchronous, so handing the encode
thread un-synchronised device arrays lets the device work while the previous results are copied back
and encoded: the first ``np.asarray`` happens in the encode thread):

    with VideoReader(src) as reader, VideoWriter(out, ...) as writer:
        with Pipeline(batched(reader, 4), sink=lambda item: write_batch(writer, item)) as pipe:
            for frames in pipe:
                pipe.put((frames, model(stack(frames))))

An exception in either thread is re-raised in the main thread as the original exception object, so an
``InputError`` stays one: a source error when iteration reaches it (after the items decoded before it),
a sink error from the next iteration step, ``put`` or leaving the ``with`` block. Leaving the block
by an exception (Ctrl-C included) stops both threads without waiting for the rest of the input; the
caller's writer context then discards its partial file. Leaving it normally waits until every result
has been handed to ``sink``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_POLL_SECONDS = 0.05  # how often a blocked thread checks whether the pipeline is being cancelled


class _End:
    """Marks the end of the input."""


class _DecodeFailed:
    """Marks where the source raised: the main thread gets the items before it, then the error."""


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of up to ``size`` consecutive items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Pipeline:
    """Iterate decoded items in the main thread; ``put`` results for the encode thread's ``sink``.

    ``source`` is consumed in the decode thread and ``sink`` is called in the encode thread, in order.
    ``depth`` bounds each queue (memory: at most ``depth`` decoded items and ``depth`` results waiting).
    """

    def __init__(self, source: Iterable, sink: Callable[[Any], None], *, depth: int = 4):
        if depth < 1:
            raise ValueError(f"queue depth must be at least 1, got {depth}")
        self._source = source
        self._sink = sink
        self._inputs: queue.Queue = queue.Queue(maxsize=depth)
        self._outputs: queue.Queue = queue.Queue(maxsize=depth)
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._decode_error: BaseException | None = None
        self._decoder = threading.Thread(target=self._decode, name="bgm-decode", daemon=True)
        self._encoder = threading.Thread(target=self._encode, name="bgm-encode", daemon=True)
        self._started = False
        self._input_done = False

    # -- threads

    def _fail(self, error: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = error
        self._cancel.set()

    def _offer(self, q: queue.Queue, item) -> bool:
        """Put unless cancelled; False when cancelled."""
        while not self._cancel.is_set():
            try:
                q.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        iterator = iter(self._source)
        try:
            for item in iterator:
                if not self._offer(self._inputs, item):
                    break
            else:
                self._offer(self._inputs, _End)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, in stream order
            self._decode_error = e
            if not self._offer(self._inputs, _DecodeFailed):
                self._fail(e)
        finally:
            close = getattr(iterator, "close", None)  # release a generator's resources in this thread
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    def _encode(self) -> None:
        try:
            while not self._cancel.is_set():  # cancelled: drop queued results, the output is discarded
                try:
                    item = self._outputs.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is _End:
                    return
                self._sink(item)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self._fail(e)

    # -- main thread

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Pipeline:
        self._started = True
        self._decoder.start()
        self._encoder.start()
        return self

    def __iter__(self) -> Iterator:
        if not self._started:
            raise RuntimeError("use the Pipeline in a with block before iterating it")
        while not self._input_done:
            self._raise_if_failed()
            try:
                item = self._inputs.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _End:
                self._input_done = True
                return
            if item is _DecodeFailed:
                self._input_done = True
                raise self._decode_error
            yield item

    def put(self, result) -> None:
        """Hand a result to the encode thread (blocks while its queue is full)."""
        self._raise_if_failed()
        if not self._offer(self._outputs, result):
            self._raise_if_failed()
            raise RuntimeError("pipeline was cancelled")

    def _stop(self) -> None:
        self._cancel.set()
        self._decoder.join()
        self._encoder.join()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stop()  # the caller's exception propagates; thread errors after it are secondary
            return
        if self._offer(self._outputs, _End):
            self._encoder.join()  # every result reaches the sink before we return
        self._stop()
        self._raise_if_failed()
