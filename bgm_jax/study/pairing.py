"""Examples for a study: originals and the two methods' results, paired by relative path and checked.

``originals/day1/a.jpg`` pairs with ``<results A>/day1/a.png`` and ``<results B>/day1/a.png``: the key is
the path relative to each folder without its extension (hidden files and folders are skipped). Only
formats every browser shows are taken: PNG, JPEG and WebP. Every file is decoded once, so truncated or
corrupt files are caught here, not in front of a rater.

:func:`find_examples` collects *every* problem (a missing or extra result, two files for one key, a
file that does not decode, results of another size than their original) and raises one
:class:`PairingError` listing them all; it returns examples only when there is none.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from bgm_jax.errors import InputError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp"}
ROLES = ("original", "a", "b")
MAX_LISTED = 40  # problems listed in the message; the rest are counted


@dataclass(frozen=True)
class ImageRecord:
    """One registered image: where it is, what it holds (media type, size) and its content hash."""

    path: Path
    media_type: str
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class Example:
    """One example of the study: the original and the two results, keyed by relative path."""

    key: str
    original: ImageRecord
    a: ImageRecord
    b: ImageRecord

    def image(self, role: str) -> ImageRecord:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        return getattr(self, role)


class PairingError(InputError):
    """The folders do not make a study; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        if more > 0:
            shown += f"\n  ... and {more} more"
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"{len(self.problems)} {noun} with the study's images; nothing was created. Fix them and run "
            f"`bgm-jax study create` again:\n{shown}"
        )


def index_folder(root: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Image files under ``root`` by key (relative path without extension), and keys with several files."""
    by_key: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in SUFFIXES:
            continue
        if path.is_file():
            by_key.setdefault(rel.with_suffix("").as_posix(), []).append(path)
    files = {k: v[0] for k, v in by_key.items() if len(v) == 1}
    ambiguous = {k: v for k, v in by_key.items() if len(v) > 1}
    return files, ambiguous


def read_record(path: Path) -> ImageRecord:
    """Decode ``path`` fully (catches truncation) and describe it; raises ValueError saying why not."""
    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read it ({e.strerror or e})") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt, (width, height) = im.format, im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # PIL's ways to fail
        raise ValueError(f"not a readable image ({e})") from None
    if fmt not in MEDIA_TYPES:
        raise ValueError(f"{fmt} inside; browsers need PNG, JPEG or WebP: convert it")
    return ImageRecord(path.resolve(), MEDIA_TYPES[fmt], width, height, hashlib.sha256(data).hexdigest())


def _folder(path: str | os.PathLike, option: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{option} {path}: not a directory; give the folder holding the images")
    return path


def find_examples(
    originals: str | os.PathLike,
    results_a: str | os.PathLike,
    results_b: str | os.PathLike,
) -> list[Example]:
    """Every original with its two results, sorted by key; :class:`PairingError` lists all problems."""
    folders = {
        "original": _folder(originals, "--originals"),
        "a": _folder(results_a, "--results-a"),
        "b": _folder(results_b, "--results-b"),
    }
    option = {"original": "--originals", "a": "--results-a", "b": "--results-b"}
    indexed = {role: index_folder(folder) for role, folder in folders.items()}
    problems: list[str] = []
    for role, (_, ambiguous) in indexed.items():
        for key, paths in ambiguous.items():
            names = ", ".join(str(p) for p in paths)
            problems.append(f"{key}: several files for one example under {option[role]} ({names}); keep one")
    originals_found, _ = indexed["original"]
    if not originals_found and not indexed["original"][1]:
        raise PairingError([f"--originals {originals}: no .png/.jpg/.jpeg/.webp images (searched subfolders too)"])
    for role in ("a", "b"):
        found, ambiguous = indexed[role]
        for key in sorted(set(originals_found) - set(found) - set(ambiguous)):
            problems.append(f"{key}: no result under {option[role]} {folders[role]} for {originals_found[key]}")
        for key in sorted(set(found) - set(originals_found) - set(indexed["original"][1])):
            problems.append(f"{key}: {found[key]} has no original under --originals {folders['original']}")

    examples: list[Example] = []
    for key in sorted(originals_found):
        paths = {role: indexed[role][0].get(key) for role in ROLES}
        if any(p is None for p in paths.values()):
            continue  # reported above
        records: dict[str, ImageRecord] = {}
        for role, path in paths.items():
            try:
                records[role] = read_record(path)
            except ValueError as e:
                problems.append(f"{key}: {path}: {e}")
        if len(records) < len(ROLES):
            continue
        want = (records["original"].width, records["original"].height)
        for role in ("a", "b"):
            got = (records[role].width, records[role].height)
            if got != want:
                problems.append(
                    f"{key}: {paths[role]} is {got[0]}x{got[1]} but its original is {want[0]}x{want[1]}; "
                    "results must have the original's size"
                )
        examples.append(Example(key, records["original"], records["a"], records["b"]))
    if problems:
        raise PairingError(problems)
    return examples


def format_notes(examples: list[Example]) -> list[str]:
    """Warnings that do not stop a study: results whose file format tells the methods apart."""
    notes = []
    types_a = {e.a.media_type for e in examples}
    types_b = {e.b.media_type for e in examples}
    if types_a != types_b:
        notes.append(
            f"method A's results are {', '.join(sorted(types_a))} and B's {', '.join(sorted(types_b))}: a rater "
            "who inspects the image files could tell the methods apart; give both in one format"
        )
    return notes
