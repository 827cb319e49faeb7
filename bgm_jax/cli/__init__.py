"""The ``bgm-jax`` command line.

Thin by design: this module parses, dispatches and is the single error boundary. Each subcommand lives
in its own module, named in ``COMMANDS``, which provides ``add_arguments(parser)`` and
``run(args) -> int`` and keeps its heavy imports (jax, torch, av) inside ``run`` so ``bgm-jax --help``
stays fast.

Exit status, the same for every subcommand (docs/cli.md has the table of situations and messages):

====  =========================================================================================
0     success
1     some inputs failed: each is reported by name on stderr, the others were done
2     bad usage or unusable input (a file, a setting, an output that cannot be written, a size that
      does not fit in memory): one line ``bgm-jax COMMAND: error: ...`` naming the thing and the fix
70    internal error (a bug): one line; ``--debug`` shows the traceback to report
130   interrupted (SIGINT, Ctrl-C); 143: terminated (SIGTERM). Partial outputs are removed.
====  =========================================================================================

No Python traceback is printed unless ``--debug`` is given (before or after the subcommand) or
``BGM_JAX_DEBUG=1`` is set. Warnings meant for the user (``bgm_jax.errors.InputWarning``) are one line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings

from bgm_jax import __version__
from bgm_jax.errors import InputError, InputWarning

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_UNUSABLE_INPUT = 2  # also what argparse exits with for bad usage
EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE in sysexits.h
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

# name -> (module providing add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("bgm_jax.cli.demo", "run the model on a generated source/background pair (no downloads)"),
    "build-dataset": ("bgm_jax.cli.build_dataset", "prepare a dataset (ArrayRecord, no TensorFlow) from a folder or procedurally"),
    "eval": ("bgm_jax.cli.eval", "score predictions, or run a model over a test set, with the paper's metrics"),
    "images": ("bgm_jax.cli.images", "matte image files against their backgrounds (com, pha, fgr, err, ref PNGs)"),
    "video": ("bgm_jax.cli.video", "matte a video against a background image (MP4, WebM/ProRes with alpha, PNGs)"),
    "bench": ("bgm_jax.cli.bench", "measure model-only FPS (paper settings) or end-to-end video FPS"),
    "convert": ("bgm_jax.cli.convert", "convert official PyTorch weights (.pth) to a bgm-jax model directory (no torch needed)"),
    "export-torch": ("bgm_jax.cli.export_torch", "write a bgm-jax model directory as a PyTorch state_dict for the original code"),
    "study": ("bgm_jax.cli.study", "blinded A/B user study of two methods' results: create, serve (web page), report"),
    "export": ("bgm_jax.cli.export", "export a model for one input size to StableHLO or ONNX, for deployment"),
}

DEBUG_HELP = "show Python tracebacks for errors (also: BGM_JAX_DEBUG=1); for bug reports"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so outputs are cleaned up exactly as for Ctrl-C."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bgm-jax",
        description="Real-time high-resolution background matting (BackgroundMattingV2) in JAX.",
        epilog="exit status: 0 success, 1 some inputs failed, 2 bad usage or unusable input, 70 internal "
        "error, 130/143 interrupted (see docs/cli.md)",
    )
    parser.add_argument("--version", action="version", version=f"bgm-jax {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(cmd)
        # also accepted after the subcommand; SUPPRESS keeps a --debug given before it
        cmd.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        cmd.set_defaults(_run=module.run)
    return parser


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("BGM_JAX_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM into ``Terminated`` for the duration of a command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_as_lines(prefix: str):
    """``InputWarning``s are printed as one line each, every time; other warnings as Python does."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        show = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, InputWarning):
                print(f"{prefix}: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        yield


def _as_input_error(error: Exception, args: argparse.Namespace) -> InputError | None:
    """Errors from below that are the user's to act on, though not raised as InputError: a device out of
    memory (found when results are read back) and files the system refused to write or read."""
    from bgm_jax.memory import ADVICE, is_out_of_memory

    if is_out_of_memory(error):
        settings = [f"{name} {getattr(args, attr)}" for name, attr in (("batch", "batch"), ("precision", "precision"))
                    if getattr(args, attr, None) is not None]
        where = f" ({', '.join(settings)})" if settings else ""
        first_line = str(error).strip().splitlines()[0][:200]
        return InputError(f"the device ran out of memory{where}: {first_line}; {ADVICE}")
    if isinstance(error, OSError) and error.errno is not None:
        from bgm_jax.io.atomic import write_failure

        if error.filename is not None:
            return write_failure(error.filename, error)
        return InputError(f"{error.strerror or error}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # bad usage: argparse prints it and exits with 2
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    prefix = f"bgm-jax {args.command}"
    debug = debug_requested(args)
    with _sigterm_raises(), _warnings_as_lines(prefix):
        try:
            return int(args._run(args) or 0)
        except KeyboardInterrupt:
            print(f"{prefix}: interrupted; partial outputs were removed", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Terminated:
            print(f"{prefix}: terminated; partial outputs were removed", file=sys.stderr)
            return EXIT_TERMINATED
        except InputError as e:
            if debug:
                traceback.print_exc()
            print(f"{prefix}: error: {e}", file=sys.stderr)
            return EXIT_UNUSABLE_INPUT
        except Exception as e:  # noqa: BLE001 - the boundary: nothing below prints a traceback
            if debug:
                traceback.print_exc()
            translated = _as_input_error(e, args)
            if translated is not None:
                print(f"{prefix}: error: {translated}", file=sys.stderr)
                return EXIT_UNUSABLE_INPUT
            first_line = (str(e).strip().splitlines() or [""])[0][:300]
            print(f"{prefix}: internal error ({type(e).__name__}: {first_line}); rerun with --debug and report it",
                  file=sys.stderr)
            return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
