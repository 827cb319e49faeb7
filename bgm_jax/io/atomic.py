"""Write-then-rename for every output file and folder.

An output is written under a hidden sibling name (``.NAME.partial-XXXXXXXX.EXT``, in the same folder so
the final rename is one atomic ``os.replace`` on the same filesystem) and renamed to its real name only
once it is complete. A run that fails or is interrupted removes its partial file; one killed outright
leaves a hidden ``.partial`` file that cannot be mistaken for a finished output.

Existing outputs are never replaced unless the caller passes ``overwrite=True``. The check runs before
any work and again just before the rename (a file that appeared meanwhile is not clobbered; the window
between that second check and the rename is not closed, which only matters for concurrent writers).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from bgm_jax.errors import InputError


def check_can_write(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing output unless ``overwrite`` is set; returns ``path`` as a Path."""
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise InputError(f"{path}: output already exists; pass --overwrite to replace it or choose another output folder")
    return path


# errno -> what the user can do about a failed write
_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on the device; free some space or choose another output folder",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another output folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose a folder you can write to",
    errno.EFBIG: "the file is too large for this file system; choose another output folder",
}


class WriteFailure(InputError):
    """An output that could not be written; ``reason`` says why and what to do."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: cannot write ({reason})")


def write_failure(path: str | os.PathLike, error: OSError | int) -> WriteFailure:
    """The one-line error for an output that could not be written (disk full, no permission, ...)."""
    code = error if isinstance(error, int) else error.errno
    reason = _WRITE_PROBLEMS.get(code)
    if reason is None:
        reason = os.strerror(code) if isinstance(error, int) else (error.strerror or str(error))
    return WriteFailure(path, reason)


def ensure_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` (and parents) for outputs, with an InputError that names it on failure."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{directory}: cannot create the output folder: a file with that name exists") from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise InputError(f"{directory}: cannot create the output folder ({reason}); choose a writable --out") from None
    if not os.access(directory, os.W_OK):
        raise InputError(f"{directory}: output folder is not writable; choose a writable --out")
    return directory


def partial_path(path: str | os.PathLike) -> Path:
    """A unique hidden name next to ``path`` that keeps its extension (encoders pick formats by it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}{path.suffix}")


def remove_partial(partial: Path) -> None:
    """Best-effort removal of a partial file or folder (never raises: it runs while unwinding)."""
    with contextlib.suppress(OSError):
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def commit_partial(partial: Path, final: Path, overwrite: bool) -> None:
    """Rename a finished partial file or folder to its final name."""
    check_can_write(final, overwrite)
    if partial.is_dir() and final.is_dir():
        # os.replace cannot replace a non-empty folder: move the old one aside, then delete it.
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a partial path to write ``path`` under; rename on success, remove on any exception.

        with atomic_output(out / "a.png", overwrite=False) as tmp:
            image.save(tmp, format="PNG")

    An ``OSError`` while writing or renaming (disk full, permission denied) becomes a ``WriteFailure``
    (an ``InputError``) naming ``path``, not the partial name.
    """
    final = check_can_write(path, overwrite)
    ensure_dir(final.parent)
    partial = partial_path(final)
    try:
        yield partial
        commit_partial(partial, final, overwrite)
    except OSError as e:
        remove_partial(partial)
        raise write_failure(final, e) from e
    except WriteFailure as e:  # raised for the partial name: report the name the user gave
        remove_partial(partial)
        raise WriteFailure(final, e.reason) from e
    except BaseException:  # KeyboardInterrupt included: never leave a half-written output behind
        remove_partial(partial)
        raise
