"""Finding the samples of each dataset layout on disk, with errors that show the expected layout.

Pure file-system code (no tfds): each function takes the folder the user pointed at and returns the
samples per split, sorted, so builders and tests share one definition of every layout. A missing
folder, a wrong layout or an unpaired file raises ``InputError`` naming the path that was read and
the layout that was expected.

Layouts (``<root>`` is the folder given as the manual directory):

- VideoMatte240K: ``<root>/{train,test}/{fgr,pha}/<clip>/<frame>.jpg``
- PhotoMatte85: ``<root>/<name>.png`` (RGBA: colour + alpha in one file, as released), or
  ``<root>/fgr/<name>.<ext>`` with ``<root>/pha/<name>.<ext>``
- Distinctions-646: ``<root>/{Train,Test}/{FG,GT}/<name>.<ext>`` (GT is the alpha matte)
- AIM (Adobe Image Matting, ``Combined_Dataset``):
  ``<root>/{Training_set,Test_set}/<group>/{fg,alpha}/<name>.<ext>`` for every ``<group>``
  (``Adobe-licensed images``, ``Other``) that has both folders
- any folder: ``<root>/fgr/**`` with ``<root>/pha/**`` (one split, ``train``), or
  ``<root>/<split>/fgr/**`` with ``<root>/<split>/pha/**`` (one split per subfolder); files are
  paired by their path relative to ``fgr/`` / ``pha/`` without the extension
- backgrounds: ``<root>/**`` images (one split, ``train``), or ``<root>/<split>/**`` when every
  subfolder of ``<root>`` is one of ``train``, ``valid``, ``test``

Folder names are matched case-insensitively; image files are those with the extensions in
``IMAGE_EXTENSIONS``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from bgm_jax.errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

VIDEOMATTE_LAYOUT = "<root>/{train,test}/{fgr,pha}/<clip>/<frame>.jpg"
PHOTOMATTE85_LAYOUT = "<root>/<name>.png (RGBA) or <root>/fgr/<name>.<ext> + <root>/pha/<name>.<ext>"
DISTINCTIONS646_LAYOUT = "<root>/{Train,Test}/{FG,GT}/<name>.<ext>"
AIM_LAYOUT = "<root>/{Training_set,Test_set}/<group>/{fg,alpha}/<name>.<ext> (<root> = Combined_Dataset)"
FOLDER_LAYOUT = "<root>/fgr/** + <root>/pha/** (paired by relative path), or <root>/<split>/{fgr,pha}/**"
BACKGROUNDS_LAYOUT = "<root>/**/<name>.<ext>, or <root>/{train,valid,test}/**/<name>.<ext>"

_BACKGROUND_SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class MattingPair:
    """One foreground sample: colour and alpha files (the same RGBA file when ``alpha_in_fgr``)."""

    name: str  # relative path without extension, with '/' separators
    fgr: Path
    pha: Path
    alpha_in_fgr: bool = False


@dataclasses.dataclass(frozen=True)
class VideoFrame:
    """One VideoMatte240K frame, with its clip and frame ids as on disk."""

    clip: str
    frame: str
    frame_index: int  # position of the frame within its clip, in sorted order
    fgr: Path
    pha: Path


@dataclasses.dataclass(frozen=True)
class ImageFile:
    name: str  # relative path without extension
    path: Path


# ----------------------------------------------------------------------------------------------
# VideoMatte240K


def videomatte_frames(root: str | os.PathLike) -> dict[str, list[VideoFrame]]:
    """All frames per split (``train`` and/or ``test``), sorted by clip then frame."""
    root = _existing_dir(root, "VideoMatte240K", VIDEOMATTE_LAYOUT)
    splits = {}
    for split in ("train", "test"):
        split_dir = _child_dir(root, split)
        if split_dir is None:
            continue
        fgr_dir, pha_dir = _child_dir(split_dir, "fgr"), _child_dir(split_dir, "pha")
        if fgr_dir is None or pha_dir is None:
            raise _layout_error("VideoMatte240K", split_dir, "needs both fgr/ and pha/ folders", VIDEOMATTE_LAYOUT)
        splits[split] = _videomatte_split(fgr_dir, pha_dir)
    if not splits:
        hint = ""
        if _child_dir(root, "fgr") is not None:
            hint = " (this looks like a single split folder: give its parent, which holds train/ and test/)"
        raise _layout_error("VideoMatte240K", root, f"has no train/ or test/ folder{hint}", VIDEOMATTE_LAYOUT)
    return splits


def _videomatte_split(fgr_dir: Path, pha_dir: Path) -> list[VideoFrame]:
    fgr_clips = {p.name: p for p in _subdirs(fgr_dir)}
    pha_clips = {p.name: p for p in _subdirs(pha_dir)}
    if not fgr_clips:
        raise _layout_error("VideoMatte240K", fgr_dir, "has no clip folders", VIDEOMATTE_LAYOUT)
    _check_same_names("VideoMatte240K clips", fgr_dir, pha_dir, fgr_clips, pha_clips, VIDEOMATTE_LAYOUT)
    frames = []
    for clip in sorted(fgr_clips):
        fgr = _images_by_stem(fgr_clips[clip], recursive=False)
        pha = _images_by_stem(pha_clips[clip], recursive=False)
        if not fgr:
            raise _layout_error("VideoMatte240K", fgr_clips[clip], "has no frames", VIDEOMATTE_LAYOUT)
        _check_same_names("VideoMatte240K frames", fgr_clips[clip], pha_clips[clip], fgr, pha, VIDEOMATTE_LAYOUT)
        for index, frame in enumerate(sorted(fgr)):
            frames.append(VideoFrame(clip, frame, index, fgr[frame], pha[frame]))
    return frames


# ----------------------------------------------------------------------------------------------
# Image matting datasets


def photomatte85_pairs(root: str | os.PathLike) -> dict[str, list[MattingPair]]:
    """PhotoMatte85 as one ``test`` split: RGBA PNGs, or fgr/ + pha/ folders."""
    root = _existing_dir(root, "PhotoMatte85", PHOTOMATTE85_LAYOUT)
    fgr_dir, pha_dir = _child_dir(root, "fgr"), _child_dir(root, "pha")
    if fgr_dir is not None and pha_dir is not None:
        return {"test": _pairs_by_relative_path("PhotoMatte85", fgr_dir, pha_dir, PHOTOMATTE85_LAYOUT)}
    rgba = _images_by_stem(root, recursive=False, extensions={".png"})
    if not rgba:
        problem = "has no RGBA .png files and no fgr/ + pha/ folders"
        raise _layout_error("PhotoMatte85", root, problem, PHOTOMATTE85_LAYOUT)
    return {"test": [MattingPair(name, path, path, alpha_in_fgr=True) for name, path in sorted(rgba.items())]}


def distinctions646_pairs(root: str | os.PathLike) -> dict[str, list[MattingPair]]:
    """Distinctions-646 ``train`` / ``test`` splits from Train/ and Test/ (FG colour, GT alpha)."""
    root = _existing_dir(root, "Distinctions-646", DISTINCTIONS646_LAYOUT)
    splits = {}
    for split, folder in (("train", "Train"), ("test", "Test")):
        split_dir = _child_dir(root, folder)
        if split_dir is None:
            continue
        fg, gt = _child_dir(split_dir, "FG"), _child_dir(split_dir, "GT")
        if fg is None or gt is None:
            problem = "needs both FG/ and GT/ folders"
            raise _layout_error("Distinctions-646", split_dir, problem, DISTINCTIONS646_LAYOUT)
        splits[split] = _pairs_by_relative_path("Distinctions-646", fg, gt, DISTINCTIONS646_LAYOUT)
    if not splits:
        raise _layout_error("Distinctions-646", root, "has no Train/ or Test/ folder", DISTINCTIONS646_LAYOUT)
    return splits


def aim_pairs(root: str | os.PathLike) -> dict[str, list[MattingPair]]:
    """AIM ``train`` / ``test`` splits; sample names are ``<group>/<name>``."""
    root = _existing_dir(root, "AIM", AIM_LAYOUT)
    splits = {}
    for split, folder in (("train", "Training_set"), ("test", "Test_set")):
        split_dir = _child_dir(root, folder)
        if split_dir is None:
            continue
        pairs = []
        for group in _subdirs(split_dir):
            fg, alpha = _child_dir(group, "fg"), _child_dir(group, "alpha")
            if fg is None or alpha is None:
                continue  # e.g. a trimaps-only folder; groups are the folders holding both
            for pair in _pairs_by_relative_path("AIM", fg, alpha, AIM_LAYOUT):
                pairs.append(dataclasses.replace(pair, name=f"{group.name}/{pair.name}"))
        if not pairs:
            raise _layout_error("AIM", split_dir, "has no <group>/fg + <group>/alpha folders", AIM_LAYOUT)
        splits[split] = pairs
    if not splits:
        raise _layout_error("AIM", root, "has no Training_set/ or Test_set/ folder", AIM_LAYOUT)
    return splits


def folder_pairs(root: str | os.PathLike) -> dict[str, list[MattingPair]]:
    """Any folder with fgr/ + pha/ (split ``train``) or ``<split>/fgr`` + ``<split>/pha`` per split."""
    root = _existing_dir(root, "matting folder", FOLDER_LAYOUT)
    fgr_dir, pha_dir = _child_dir(root, "fgr"), _child_dir(root, "pha")
    if fgr_dir is not None and pha_dir is not None:
        return {"train": _pairs_by_relative_path("matting folder", fgr_dir, pha_dir, FOLDER_LAYOUT)}
    splits = {}
    for split_dir in _subdirs(root):
        fgr_dir, pha_dir = _child_dir(split_dir, "fgr"), _child_dir(split_dir, "pha")
        if fgr_dir is not None and pha_dir is not None:
            splits[_split_name(split_dir.name)] = _pairs_by_relative_path(
                "matting folder", fgr_dir, pha_dir, FOLDER_LAYOUT
            )
    if not splits:
        raise _layout_error("matting folder", root, "has no fgr/ + pha/ folders", FOLDER_LAYOUT)
    return splits


def background_images(root: str | os.PathLike) -> dict[str, list[ImageFile]]:
    """Background images, one ``train`` split, or one split per train/valid/test subfolder."""
    root = _existing_dir(root, "backgrounds", BACKGROUNDS_LAYOUT)
    subdirs = _subdirs(root)
    split_folders_only = all(d.name.lower() in _BACKGROUND_SPLITS for d in subdirs)
    if subdirs and split_folders_only and not _images_by_stem(root, recursive=False):
        splits = {d.name.lower(): _image_files(d) for d in subdirs}
        empty = [d for d in subdirs if not splits[d.name.lower()]]
        if empty:
            raise _layout_error("backgrounds", empty[0], "has no images", BACKGROUNDS_LAYOUT)
        return splits
    images = _image_files(root)
    if not images:
        raise _layout_error("backgrounds", root, "has no images", BACKGROUNDS_LAYOUT)
    return {"train": images}


# ----------------------------------------------------------------------------------------------
# Helpers


def _pairs_by_relative_path(what: str, fgr_dir: Path, pha_dir: Path, layout: str) -> list[MattingPair]:
    fgr = _images_by_stem(fgr_dir, recursive=True)
    pha = _images_by_stem(pha_dir, recursive=True)
    if not fgr:
        raise _layout_error(what, fgr_dir, "has no images", layout)
    _check_same_names(f"{what} files", fgr_dir, pha_dir, fgr, pha, layout)
    return [MattingPair(name, fgr[name], pha[name]) for name in sorted(fgr)]


def _image_files(root: Path) -> list[ImageFile]:
    return [ImageFile(name, path) for name, path in sorted(_images_by_stem(root, recursive=True).items())]


def _images_by_stem(
    folder: Path, recursive: bool, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> dict[str, Path]:
    """Image files under ``folder`` keyed by relative path without extension ('/' separated)."""
    extensions = frozenset(extensions)
    found: dict[str, Path] = {}
    walker = os.walk(folder, followlinks=True) if recursive else [(str(folder), [], _file_names(folder))]
    for dirpath, dirnames, filenames in walker:
        dirnames.sort()
        for filename in sorted(filenames):
            if filename.startswith(".") or os.path.splitext(filename)[1].lower() not in extensions:
                continue
            path = Path(dirpath) / filename
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in found:
                raise InputError(
                    f"{path}: two images share the name {key!r} in {folder} ({found[key].name} and {filename}); "
                    "files are paired by name without extension, so keep one of them"
                )
            found[key] = path
    return found


def _file_names(folder: Path) -> list[str]:
    return [entry.name for entry in os.scandir(folder) if entry.is_file()]


def _check_same_names(what, a_dir: Path, b_dir: Path, a: Iterable[str], b: Iterable[str], layout: str) -> None:
    a, b = set(a), set(b)
    if a == b:
        return
    only_a, only_b = sorted(a - b), sorted(b - a)
    problems = []
    if only_a:
        problems.append(f"{len(only_a)} in {a_dir} have no counterpart in {b_dir} (e.g. {only_a[0]!r})")
    if only_b:
        problems.append(f"{len(only_b)} in {b_dir} have no counterpart in {a_dir} (e.g. {only_b[0]!r})")
    raise InputError(
        f"{what} do not pair up: {'; '.join(problems)}. Expected layout: {layout}. "
        "Add or remove files so that every name appears in both folders."
    )


def _existing_dir(root: str | os.PathLike | None, what: str, layout: str) -> Path:
    if root is None or str(root) == "":
        raise InputError(f"{what}: no manual directory given. Expected layout: {layout}. Pass --manual-dir DIR.")
    path = Path(root).expanduser()
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise _layout_error(what, path, problem, layout)
    return path


def _child_dir(parent: Path, name: str) -> Path | None:
    """The subfolder of ``parent`` called ``name``, ignoring case; None when absent."""
    exact = parent / name
    if exact.is_dir():
        return exact
    for child in _subdirs(parent):
        if child.name.lower() == name.lower():
            return child
    return None


def _subdirs(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _split_name(folder_name: str) -> str:
    name = folder_name.lower().replace("-", "_").replace(" ", "_")
    if not name.replace("_", "").isalnum():
        raise InputError(f"split folder {folder_name!r}: use letters, digits and '_' only for split names")
    return name


def _layout_error(what: str, path: Path, problem: str, layout: str) -> InputError:
    return InputError(f"{what}: {path} {problem}. Expected layout: {layout}")
