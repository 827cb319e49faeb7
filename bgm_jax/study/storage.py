"""The study file: one SQLite database holding a study's settings, its examples and every vote.

- **One file per study**, written whole by ``create_study`` (under a temporary name, renamed when
  complete) and opened by ``Study``. It records each image's absolute path, media type, size and
  SHA-256; the server reads images only through these records (``Study.read_image``) and refuses a
  file whose content changed since the study was created.
- **WAL mode** (readers never block the writer, so a report can run while raters vote) with a busy
  timeout; every operation opens its own short connection, so one ``Study`` may be used from many
  threads, and several processes may open the same file.
- **One vote per rater and example**: the primary key is (rater, example); voting again replaces the
  vote (``revisions`` counts the changes), so a vote can be changed but never counted twice. Each row
  keeps what the rater clicked (``choice``, about left/right), where method A was shown (``a_side``) and
  the un-blinded ``score`` (about A/B); a CHECK constraint ties the three together.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import secrets
import sqlite3
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bgm_jax.errors import InputError
from bgm_jax.io.atomic import atomic_output, check_can_write
from bgm_jax.study import blinding
from bgm_jax.study.pairing import ROLES, Example, ImageRecord
from bgm_jax.study.scale import LEVELS, is_level

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000
MAX_RATER_LENGTH = 64
DEFAULT_QUESTION = "Which result is the better cut-out of the person in the original image?"

_LEVELS_SQL = ", ".join(str(v) for v in LEVELS)
SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE examples (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    original_path TEXT NOT NULL, original_type TEXT NOT NULL, original_sha256 TEXT NOT NULL,
    a_path TEXT NOT NULL, a_type TEXT NOT NULL, a_sha256 TEXT NOT NULL,
    b_path TEXT NOT NULL, b_type TEXT NOT NULL, b_sha256 TEXT NOT NULL
);
CREATE TABLE votes (
    rater TEXT NOT NULL,
    example_id INTEGER NOT NULL REFERENCES examples(id),
    choice INTEGER NOT NULL CHECK (choice IN ({_LEVELS_SQL})),
    a_side TEXT NOT NULL CHECK (a_side IN ('left', 'right')),
    score INTEGER NOT NULL CHECK (score = CASE a_side WHEN 'left' THEN choice ELSE -choice END),
    first_voted TEXT NOT NULL,
    updated TEXT NOT NULL,
    revisions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rater, example_id)
) WITHOUT ROWID;
"""


class RaterError(ValueError):
    """A rater name that is empty, too long, has control characters, or is not on the study's list."""


class NotOnRaterList(RaterError):
    """A well-formed name that a study with a closed list of raters does not know."""


class ImageChanged(RuntimeError):
    """A registered image's file is gone or its content differs from when the study was created."""


@dataclass(frozen=True)
class Settings:
    """What a study was created with (the ``meta`` table)."""

    title: str
    question: str
    method_a: str
    method_b: str
    raters: tuple[str, ...] | None  # None: anyone may rate under a name of their choice
    secret: bytes                   # for blinding; never sent to a rater
    created: str


@dataclass(frozen=True)
class Vote:
    rater: str
    example_id: int
    choice: int   # as clicked: -10 = left much better ... +10 = right much better
    a_side: str   # where method A was shown
    score: int    # un-blinded: -10 = A much better ... +10 = B much better
    revisions: int = 0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def normalize_rater(name: object) -> str:
    """A rater's name or token as stored: NFC, surrounding blanks removed; RaterError if unusable."""
    if not isinstance(name, str):
        raise RaterError("the rater name must be text")
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise RaterError("enter a name or token to rate under")
    if len(name) > MAX_RATER_LENGTH:
        raise RaterError(f"a rater name has at most {MAX_RATER_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise RaterError("a rater name cannot contain control characters")
    return name


def _connect(path: Path, *, create: bool = False) -> sqlite3.Connection:
    mode = "rwc" if create else "rw"  # never create a database by opening a mistyped path
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                           isolation_level=None, check_same_thread=True)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def create_study(
    path: str | os.PathLike,
    examples: list[Example],
    *,
    method_a: str = "A",
    method_b: str = "B",
    title: str = "Which cut-out is better?",
    question: str = DEFAULT_QUESTION,
    raters: list[str] | None = None,
    secret: bytes | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a new study file holding ``examples`` (from ``pairing.find_examples``); returns its path.

    ``raters`` restricts who may rate to these names or tokens (default: anyone, under any name);
    ``secret`` fixes the blinding (default: 32 random bytes; only tests should pass one).
    """
    if not examples:
        raise InputError("a study needs at least one example")
    for label, name in (("--name-a", method_a), ("--name-b", method_b)):
        if not name.strip():
            raise InputError(f"{label}: a method needs a name (it appears in the report, never on the page)")
    rater_list = None
    if raters is not None:
        try:
            rater_list = sorted({normalize_rater(r) for r in raters})
        except RaterError as e:
            raise InputError(f"--raters: {e}") from None
        if not rater_list:
            raise InputError("--raters: give at least one name, or leave it out to let anyone rate")
    path = check_can_write(path, overwrite)
    if overwrite:
        # A WAL file left by the old study would be replayed onto the new one: remove it first.
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    settings = {
        "schema_version": str(SCHEMA_VERSION),
        "title": title,
        "question": question,
        "method_a": method_a.strip(),
        "method_b": method_b.strip(),
        "raters": json.dumps(rater_list),
        "secret": (secret if secret is not None else secrets.token_bytes(32)).hex(),
        "created": _now(),
    }
    with atomic_output(path, overwrite=overwrite) as partial:
        conn = _connect(partial, create=True)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            conn.execute("BEGIN")
            for statement in SCHEMA.split(";"):  # not executescript: it would commit first
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", settings.items())
            conn.executemany(
                "INSERT INTO examples(key, width, height, original_path, original_type, original_sha256, "
                "a_path, a_type, a_sha256, b_path, b_type, b_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (e.key, e.original.width, e.original.height)
                    + tuple(v for r in (e.original, e.a, e.b) for v in (str(r.path), r.media_type, r.sha256))
                    for e in examples
                ],
            )
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints and removes the -wal/-shm files
    return path


class Study:
    """An open study file. Settings and examples are read once; votes are read and written per call."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such study file; create one with `bgm-jax study create`")
        try:
            with self._connection() as conn:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                rows = conn.execute(
                    "SELECT id, key, width, height, original_path, original_type, original_sha256, "
                    "a_path, a_type, a_sha256, b_path, b_type, b_sha256 FROM examples ORDER BY id"
                ).fetchall()
        except sqlite3.DatabaseError as e:
            raise InputError(
                f"{self.path}: not a bgm-jax study file ({e}); create one with `bgm-jax study create`"
            ) from None
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise InputError(
                f"{self.path}: study file version {meta.get('schema_version')!r}, this bgm-jax reads "
                f"{SCHEMA_VERSION}; use the bgm-jax that created it"
            )
        raters = json.loads(meta["raters"])
        self.settings = Settings(
            title=meta["title"], question=meta["question"], method_a=meta["method_a"], method_b=meta["method_b"],
            raters=tuple(raters) if raters is not None else None, secret=bytes.fromhex(meta["secret"]),
            created=meta["created"],
        )
        self.examples: dict[int, Example] = {}
        for row in rows:
            example_id, key, width, height = row[:4]
            records = [
                ImageRecord(Path(row[4 + 3 * i]), row[5 + 3 * i], width, height, row[6 + 3 * i])
                for i in range(3)
            ]
            self.examples[example_id] = Example(key, *records)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = _connect(self.path)
        try:
            yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------------------------------ raters

    def check_rater(self, name: object) -> str:
        """The rater's stored name; RaterError if unusable or, for a closed study, not on its list."""
        name = normalize_rater(name)
        if self.settings.raters is not None and name not in self.settings.raters:
            raise NotOnRaterList(f"{name!r} is not on this study's list of raters; use the name or token you were given")
        return name

    def a_side(self, rater: str, example_id: int) -> str:
        """Where ``rater`` sees method A for this example (see ``blinding``)."""
        return blinding.a_side(self.settings.secret, rater, self.examples[example_id].key)

    def order(self, rater: str) -> list[int]:
        """The example ids in the order ``rater`` meets them."""
        by_key = {e.key: i for i, e in self.examples.items()}
        return [by_key[k] for k in blinding.rater_order(self.settings.secret, rater, list(by_key))]

    # ------------------------------------------------------------------------------------------- votes

    def record_vote(self, rater: str, example_id: int, choice: int) -> Vote:
        """Store ``rater``'s choice on the page for an example, replacing an earlier one; returns the vote."""
        rater = self.check_rater(rater)
        if example_id not in self.examples:
            raise KeyError(f"no example {example_id!r} in this study")
        if not is_level(choice):
            raise ValueError(f"choice {choice!r} is not on the scale {LEVELS}")
        side = self.a_side(rater, example_id)
        score = blinding.unblind(choice, side)
        now = _now()
        with self._connection() as conn:
            row = conn.execute(
                "INSERT INTO votes(rater, example_id, choice, a_side, score, first_voted, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(rater, example_id) DO UPDATE SET choice = excluded.choice, a_side = excluded.a_side, "
                "score = excluded.score, updated = excluded.updated, revisions = votes.revisions + 1 "
                "RETURNING revisions",
                (rater, example_id, choice, side, score, now, now),
            ).fetchone()
        return Vote(rater, example_id, choice, side, score, row[0])

    def votes(self, rater: str | None = None) -> list[Vote]:
        """Every stored vote (one per rater and example), or one rater's, ordered by rater and example."""
        query = "SELECT rater, example_id, choice, a_side, score, revisions FROM votes"
        params: tuple = ()
        if rater is not None:
            query += " WHERE rater = ?"
            params = (rater,)
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY rater, example_id", params).fetchall()
        return [Vote(*row) for row in rows]

    # ------------------------------------------------------------------------------------------ images

    def read_image(self, example_id: int, role: str) -> tuple[bytes, str]:
        """The bytes and media type of a registered image (role ``original``, ``a`` or ``b``).

        Reads only paths recorded at creation, and raises ImageChanged when the file is gone or its
        content is no longer what was registered (a study must not show other pictures than it was
        created with)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        record = self.examples[example_id].image(role)
        try:
            data = record.path.read_bytes()
        except OSError as e:
            raise ImageChanged(f"{record.path}: cannot read it ({e.strerror or e})") from None
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise ImageChanged(f"{record.path}: changed since the study was created")
        return data, record.media_type

    def verify_images(self) -> list[str]:
        """Problems with the registered images (missing or changed files), one line each; empty when fine."""
        problems = []
        for example_id, example in self.examples.items():
            for role in ROLES:
                try:
                    self.read_image(example_id, role)
                except ImageChanged as e:
                    problems.append(f"{example.key}: {e}")
        return problems
