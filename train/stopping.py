"""Stopping a training run cleanly on SIGINT (Ctrl-C) and SIGTERM.

The first signal only records itself. The training loop asks between steps (``StopAgreement``), lets
the step in flight finish, saves a checkpoint and returns; ``train.main`` prints where it saved and the
command that resumes, and exits 128 + the signal (130 for SIGINT, 143 for SIGTERM). A second signal
ends the process at once, saving nothing.

Why a watcher thread and not a handler that raises: Python runs signal handlers on the main thread,
between bytecodes, and the main thread can sit for tens of seconds inside XLA (a compilation, a step,
a transfer). A ``KeyboardInterrupt`` then surfaces late, from deep inside JAX, with threads of the
input pipeline and of Orbax still running (a traceback, once a segmentation fault). The C-level handler
Python installs writes each signal's number to the wakeup file descriptor at once, from whatever thread
is running; a daemon thread blocked on that descriptor sees every signal as it arrives, whatever the
main thread is doing. The Python-level handler does nothing but replace ``KeyboardInterrupt``.

Multi-host: every process must stop after the same step, or the others would wait forever in the
next step's collectives or in the checkpoint save. ``StopAgreement.signal_to_stop(step)`` is called by
every process at every step and gives every process the same answer at the same step, from two sources:

- SIGTERM, the usual preemption notice of cluster schedulers: ``jax.distributed.initialize`` installs
  JAX's preemption service, which takes over SIGTERM in every process and agrees through the
  coordination service on a step (the largest step any process has reached, plus one);
  ``multihost_utils.reached_preemption_sync_point(step)`` is True at that step on every process.
- SIGINT: each process's signal number is all-reduced (max) on the devices at every step, and the
  result is read ``LAG`` steps later. The reduction is dispatched like a step and read back only after
  two more steps are queued, so waiting for it never drains the device queue; every process reads the
  same value at the same step, so all stop together, ``LAG`` steps after the first one saw its signal,
  and exit with the code of the (largest) signal.

A single process acts on its own flag at the next step boundary. Under multi-host JAX owns SIGTERM, so
there a second SIGTERM does not exit at once (the scheduler's SIGKILL will); a second SIGINT does.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
LAG = 2  # multi-host: steps between dispatching the all-reduce of the flags and reading it


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + signum


class StopSignal:
    """Records the first SIGINT/SIGTERM; a second one exits the process at once (no save).

    Use as a context manager around the work (``with StopSignal() as stop: ...``) from the main thread;
    ``stop.signum`` is 0 until a signal arrives. Outside the main thread (where signals cannot be
    handled) it installs nothing and ``signum`` stays 0.
    """

    def __init__(self):
        self.signum = 0
        self._installed = False

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)  # set_wakeup_fd requires it; a full buffer drops bytes, not blocks
        self._previous_handlers = {s: signal.signal(s, self._ignore) for s in SIGNALS}
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="stop-signal", daemon=True)
        self._thread.start()
        self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if not self._installed:
            return
        signal.set_wakeup_fd(self._previous_fd)
        for s, handler in self._previous_handlers.items():
            signal.signal(s, handler)
        self._writer.close()  # the watcher reads end-of-file and returns
        self._thread.join(timeout=5)
        self._reader.close()
        self._installed = False

    @staticmethod
    def _ignore(signum, frame) -> None:
        """The Python-level handler: the watcher thread has already seen the signal."""

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in SIGNALS:
                    self._received(signum)

    def _received(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signum:
            # os.write and os._exit: no locks, no Python-level cleanup that could wait on the main thread.
            os.write(2, f"\n{name} again: exiting now without saving\n".encode())
            os._exit(exit_code(signum))
        self.signum = signum
        os.write(2, f"\n{name}: stopping after the current step and saving a checkpoint "
                    f"(send it again to exit at once without saving)\n".encode())


class StopAgreement:
    """Answers, once per step and identically on every process, whether to stop and why.

    ``signal_to_stop(step)`` must be called by every process at every step with the number of the step
    about to run (it is a collective when there are several processes); it returns 0 to go on, or the
    signal number to stop with.
    """

    def __init__(self, stop: StopSignal | None, lag: int = LAG):
        import jax

        self.stop = stop
        self.lag = lag
        self.multi_process = jax.process_count() > 1
        self._pending: collections.deque = collections.deque()
        if self.multi_process:
            import jax.numpy as jnp
            import numpy as np
            from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

            mesh = Mesh(np.array(jax.devices()), ("all",))
            self._sharding = NamedSharding(mesh, P("all"))
            self._reduce = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, P()))
            self._local = lambda signum: np.full((jax.local_device_count(),), signum, np.int32)

    def local_signal(self) -> int:
        return self.stop.signum if self.stop is not None else 0

    def signal_to_stop(self, step: int) -> int:
        if not self.multi_process:
            return self.local_signal()
        import jax
        from jax.experimental import multihost_utils

        flags = jax.make_array_from_process_local_data(self._sharding, self._local(self.local_signal()))
        self._pending.append(self._reduce(flags))
        signum = int(self._pending.popleft().addressable_data(0)) if len(self._pending) > self.lag else 0
        preempted = multihost_utils.reached_preemption_sync_point(step)
        return max(signum, int(signal.SIGTERM) if preempted else 0)
