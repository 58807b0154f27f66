"""Durable per-step checkpoints in SQLite, cheap enough to commit after every step.

One row per step holds the state and the step's record, including everything resume needs
(cumulative spend, best checkpoint so far). So resuming reads one row by primary key whatever
the history length, and a crash loses at most the step in flight (or the open batch, with
``commit_every``).

A state that grows every step keeps its growing part in transcripts
(:class:`pytest_loom.Transcript`): their items go into ``loom_items``, each written once, by the
step that appended it, and the step's row holds only a marker in the transcript's place. So a
step writes what it changed, not the whole state again. Item ``i`` of transcript ``k`` is the row
whose rowid is ``k << 32 | i``; a transcript that continues another's first ``base`` items (a
run that backtracked or resumed from an older state, then appended) names it as ``parent`` in
``loom_transcripts`` and shares those items instead of copying them.

Layout: ``loom_runs`` gives every run an integer ``key``; step ``n`` of a run is the row of
``loom_steps`` whose rowid is ``key << 32 | n``. A run's steps are one contiguous rowid range, so
the last step is a single seek to the end of that range, and the steps of the newest run are
appended at the end of the B-tree, as in a plain integer-keyed table. (Keying steps by
``(run_id TEXT, n)`` in a ``WITHOUT ROWID`` table, as schema version 1 did, made every commit
about 8 µs slower.)

Durability (the ``durability`` argument, always with a WAL journal):

* ``"normal"`` (the default) is SQLite's ``synchronous=NORMAL``: a committed step survives a
  crash of the process, but the last commits may be lost if the OS crashes or power fails.
* ``"full"`` adds an fsync per commit, so commits also survive an OS crash or power loss.
* ``"off"`` never fsyncs. A commit is still handed to the OS before ``commit_step`` returns, so
  it survives a crash of the process just the same; but an OS crash or power loss can lose
  recent commits and may corrupt the file. Meant for throwaway databases, such as the one each
  scenario gets in its temporary directory (whose crashes are simulated in-process): creating
  and closing a new database then costs no fsync instead of seven, and a new file starts as a
  copy of an empty database (made once per process) instead of having its schema created.

Batching (the ``commit_every`` argument, ``1`` by default): with ``commit_every=K`` the store
commits every K-th step, together with the steps before it, in one transaction. A crash of the
process loses the open batch, at most the K-1 steps after the last commit: resume continues
from the last committed step, whose carry holds the spend up to it, so nothing committed is
granted again; the lost steps run again. The step that ends a run, :meth:`finish_run`,
:meth:`flush` and :meth:`close` commit the open batch at once. Only the one open transaction is
held, so memory stays flat however long the run: SQLite spills a large batch to the WAL.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SCHEMA_VERSION = 3
"""Bumped whenever the layout changes; other versions are refused with a clear error."""

Durability = Literal["off", "normal", "full"]

_DURABILITIES = ("off", "normal", "full")
_STEP_BITS = 32
_MAX_STEP = (1 << _STEP_BITS) - 1

_SCHEMA = f"""
BEGIN;
CREATE TABLE IF NOT EXISTS loom_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS loom_runs (
    key INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    scenario TEXT NOT NULL,
    runtime TEXT NOT NULL,
    status TEXT NOT NULL,
    budget BLOB NOT NULL,
    stop BLOB
);
CREATE TABLE IF NOT EXISTS loom_steps (
    id INTEGER PRIMARY KEY,  -- loom_runs.key << {_STEP_BITS} | step number
    state BLOB NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS loom_transcripts (
    key INTEGER PRIMARY KEY,
    parent INTEGER,  -- the transcript whose first `base` items this one continues
    base INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS loom_items (
    id INTEGER PRIMARY KEY,  -- loom_transcripts.key << {_STEP_BITS} | item index
    item BLOB NOT NULL
);
INSERT OR IGNORE INTO loom_meta VALUES ('schema', '{SCHEMA_VERSION}');
COMMIT;
"""

_RUN_COLUMNS = "key, run_id, scenario, runtime, status, budget, stop"
_INSERT_STEP = "INSERT INTO loom_steps VALUES (?, ?, ?)"
_RUN_AND_LAST_STEP = f"""
SELECT r.key, r.run_id, r.scenario, r.runtime, r.status, r.budget, r.stop,
       s.id - (r.key << {_STEP_BITS}), s.state, s.record
FROM loom_runs AS r LEFT JOIN loom_steps AS s ON s.id = (
    SELECT id FROM loom_steps
    WHERE id BETWEEN r.key << {_STEP_BITS} AND (r.key << {_STEP_BITS}) | {_MAX_STEP}
    ORDER BY id DESC LIMIT 1
)
WHERE r.run_id = ?
"""


def _create_schema(db: sqlite3.Connection) -> None:
    """Set up a new database file: the WAL journal (stored in the file) and the schema."""
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_SCHEMA)


@functools.cache
def _new_database() -> bytes:
    """The file of a new, empty checkpoint database, made once per process in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="pytest-loom-") as tmp:
        path = Path(tmp, "new.db")
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=OFF")
            _create_schema(db)
        finally:
            db.close()
        return path.read_bytes()


@functools.cache
def _new_memory_database() -> bytes:
    """The image of a new, empty in-memory checkpoint database, made once per process.

    An in-memory database has no WAL (SQLite keeps its journal in memory and ignores the
    switch), so this image is in rollback mode, exactly what creating the schema in memory
    gives; a file's image is in WAL mode, which an in-memory database cannot open.
    """
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _create_schema(db)
        return db.serialize()
    finally:
        db.close()


def _copy_new_database(path: Path) -> None:
    """Make ``path``, if no file is there, a copy of a new, empty checkpoint database.

    Writing these bytes costs a fraction of creating the schema in a new file (the WAL switch
    and the schema's commit write and remove three files). The copy is not synced, so it is
    only for ``durability="off"``, which leaves an OS crash free to lose the file anyway; and
    such a throwaway database is made by one process (two making it at once could see half a
    copy).
    """
    if str(path) in ("", ":memory:"):  # sqlite3's names for a database that is not a file
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # as SQLite makes one
    except OSError:
        return  # a file is there already, or none can be made: connecting says what is wrong
    try:
        with open(fd, "wb") as file:
            file.write(_new_database())
    except OSError:
        path.unlink()  # half a copy: start from no file, as without the copy


_IDLE_LIMIT = 2
_idle: list[sqlite3.Connection] = []
"""In-memory databases that closed stores emptied, for the next in-memory stores.

A new connection reads the schema and prepares every statement again (about 45 of the 60 µs
a store on a new in-memory database costs); an emptied one has both ready, and rowids start
again from 1 in empty tables, so the next store sees a new database. At most ``_IDLE_LIMIT``
are kept (a nested run holds a second store while the first is open).
"""

# A forked child must not share its parent's connections (SQLite forbids using one in both).
os.register_at_fork(after_in_child=_idle.clear)

_CLOSED = sqlite3.connect(":memory:")
_CLOSED.close()
"""What a closed store's connection is: using it raises ``ProgrammingError`` as before."""

_TABLES = ("loom_runs", "loom_steps", "loom_transcripts", "loom_items")


def _recycle(db: sqlite3.Connection) -> bool:
    """Empty an in-memory database a store closed and keep it for the next, if there is room."""
    if len(_idle) >= _IDLE_LIMIT or db.in_transaction:
        return False
    try:
        # What a test may have set on the connection goes with the store that set it.
        db.set_progress_handler(None, 0)
        db.set_trace_callback(None)
        db.set_authorizer(None)
        db.row_factory = None
        db.text_factory = str
        for table in _TABLES:
            db.execute(f"DELETE FROM {table}")
    except sqlite3.Error:
        return False
    _idle.append(db)
    return True


class CheckpointError(RuntimeError):
    """A checkpoint database that cannot be used: names the file and what to do."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as the store knows it (``status`` is ``running`` until the run finishes)."""

    run_id: str
    scenario: str
    runtime: str
    status: str
    budget: bytes
    stop: bytes | None


@dataclass(frozen=True, slots=True)
class StepRow:
    n: int
    state: bytes
    record: bytes


Items = tuple[int, int, list[bytes]]
"""New items of a transcript for :meth:`CheckpointStore.commit_step`: ``(key, first index,
JSON of each item)``."""


class CheckpointStore:
    """A SQLite checkpoint database; each test gets its own (see the ``loom_store`` fixture).

    Values are opaque bytes (the reference runtime stores JSON); the store only guarantees that a
    committed step survives a crash of the process that wrote it.
    """

    def __init__(
        self, path: str | Path, *, durability: Durability = "normal", commit_every: int = 1
    ) -> None:
        if durability not in _DURABILITIES:
            raise ValueError(f"durability={durability!r}: expected one of {_DURABILITIES}")
        if type(commit_every) is not int or commit_every < 1:
            raise ValueError(
                f"commit_every={commit_every!r}: expected a whole number of steps >= 1 "
                "(1 commits every step)"
            )
        self.path = Path(path)
        self.durability = durability
        self.commit_every = commit_every
        self._uncommitted = 0
        """Steps in the open batch (only with ``commit_every`` > 1)."""
        self._keys: dict[str, int] = {}
        """run id -> run key, filled as runs are begun or looked up (a run's key never changes)."""
        self._transcripts: dict[int, tuple[int | None, int]] = {}
        """transcript key -> (parent, base), filled as transcripts are made or read."""
        self._lengths: dict[int, int] = {}
        """transcript key -> items stored under it, as this store last wrote or read it."""
        self._memory = str(self.path) == ":memory:"
        if self._memory:
            try:
                self._db = _idle.pop()
            except IndexError:
                pass
            else:
                self._db.execute(f"PRAGMA synchronous={durability.upper()}")
                return
        elif durability == "off":
            _copy_new_database(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        try:
            version = self._prepare()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._unusable(exc) from None
        if version != str(SCHEMA_VERSION):
            self._db.close()
            raise CheckpointError(
                f"{self.path}: checkpoint schema version {version} is not supported "
                f"(this pytest-loom reads version {SCHEMA_VERSION}). Re-record the database."
            )

    def _prepare(self) -> str | None:
        """Configure the connection; return the file's schema version, creating a new schema.

        The WAL journal mode is stored in the file, so only a new file needs switching to it.
        """
        db = self._db
        # synchronous first: switching a new file to WAL under the default FULL costs an fsync.
        if self._memory:
            # Loading a ready image costs a fraction of creating the schema; it comes first
            # because it reopens the database, which resets the `synchronous` pragma.
            db.deserialize(_new_memory_database())
        db.execute(f"PRAGMA synchronous={self.durability.upper()}")
        version = self._schema_version()
        if version is None:
            _create_schema(db)
            version = self._schema_version()
        return version

    def _unusable(self, exc: sqlite3.DatabaseError) -> CheckpointError:
        return CheckpointError(
            f"{self.path}: not a usable pytest-loom checkpoint database ({exc}). "
            "Delete the file or point the store at a fresh path."
        )

    def _schema_version(self) -> str | None:
        """The version an existing checkpoint database records; ``None`` for a new file."""
        try:
            row = self._db.execute("SELECT value FROM loom_meta WHERE key='schema'").fetchone()
        except sqlite3.OperationalError:  # no such table: nothing has set this file up yet
            return None
        return None if row is None else str(row[0])

    @classmethod
    def from_golden(
        cls,
        golden: str | Path,
        dest: str | Path,
        *,
        durability: Durability = "normal",
        commit_every: int = 1,
    ) -> CheckpointStore:
        """Open a private copy of a golden database kept in the repo; the golden is untouched.

        The database file and its write-ahead log (if any) are copied as files, so nothing is
        ever opened, created or written beside the golden.
        """
        golden, dest = Path(golden), Path(dest)
        if not golden.is_file():
            raise CheckpointError(f"golden checkpoint database {golden} does not exist")
        shutil.copyfile(golden, dest)
        wal = golden.with_name(golden.name + "-wal")
        if wal.is_file():
            shutil.copyfile(wal, dest.with_name(dest.name + "-wal"))
        try:
            return cls(dest, durability=durability, commit_every=commit_every)
        except CheckpointError as exc:
            for path in (dest, dest.with_name(dest.name + "-wal")):
                path.unlink(missing_ok=True)
            raise CheckpointError(str(exc).replace(str(dest), str(golden), 1)) from None

    # -- runs ---------------------------------------------------------------------------------

    def begin_run(self, run_id: str, *, scenario: str, runtime: str, budget: bytes) -> None:
        try:
            cursor = self._db.execute(
                "INSERT INTO loom_runs VALUES (NULL, ?, ?, ?, 'running', ?, NULL)",
                (run_id, scenario, runtime, budget),
            )
        except sqlite3.IntegrityError:
            raise CheckpointError(
                f"{self.path}: run {run_id!r} already exists; resume it or choose another run id"
            ) from None
        assert cursor.lastrowid is not None
        self._keys[run_id] = cursor.lastrowid

    def finish_run(self, run_id: str, status: str, stop: bytes) -> None:
        self._db.execute(
            "UPDATE loom_runs SET status=?, stop=? WHERE key=?", (status, stop, self._key(run_id))
        )
        self.flush()

    def run(self, run_id: str) -> RunRow:
        row = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM loom_runs WHERE run_id=?", (run_id,)
        ).fetchone()
        if row is None:
            raise self._no_run(run_id)
        self._keys[run_id] = row[0]
        return RunRow(*row[1:])

    def run_and_last_step(self, run_id: str) -> tuple[RunRow, StepRow | None]:
        """:meth:`run` and :meth:`last_step` in one read: all that resuming a run needs."""
        row = self._db.execute(_RUN_AND_LAST_STEP, (run_id,)).fetchone()
        if row is None:
            raise self._no_run(run_id)
        self._keys[run_id] = row[0]
        step = None if row[7] is None else StepRow(*row[7:])
        return RunRow(*row[1:7]), step

    def runs(self) -> list[RunRow]:
        rows = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM loom_runs ORDER BY key")
        return [RunRow(*r[1:]) for r in rows]

    def _key(self, run_id: str) -> int | None:
        """The run's integer key, ``None`` if there is no such run (cached: keys never change)."""
        key = self._keys.get(run_id)
        if key is None:
            row = self._db.execute("SELECT key FROM loom_runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                return None
            key = self._keys[run_id] = row[0]
        return key

    def _no_run(self, run_id: str) -> CheckpointError:
        known = ", ".join(r.run_id for r in self.runs()[:10]) or "none"
        return CheckpointError(f"{self.path}: no run {run_id!r} (runs here: {known})")

    # -- steps --------------------------------------------------------------------------------

    def _step_id(self, run_id: str, n: int) -> int:
        """The rowid of step ``n`` of ``run_id``, which must exist (a write needs its key)."""
        key = self._key(run_id)
        if key is None:
            raise self._no_run(run_id)
        if not 0 <= n <= _MAX_STEP:
            raise CheckpointError(f"{self.path}: step number {n} is out of range")
        return key << _STEP_BITS | n

    def commit_step(
        self,
        run_id: str,
        n: int,
        state: bytes,
        record: bytes,
        *,
        items: Sequence[Items] = (),
        stop: tuple[str, bytes] | None = None,
    ) -> None:
        """Add step ``n`` and the transcript ``items`` it appended, in one transaction.

        With ``stop=(status, stop)`` the run ends in the same transaction. The step is durable
        when this returns, or, with ``commit_every=K``, when the batch it is in commits. The run
        must have been begun (:meth:`begin_run`) in this database.
        """
        db = self._db
        key = self._keys.get(run_id)
        if key is not None and 0 <= n <= _MAX_STEP:
            step_id = key << _STEP_BITS | n  # _step_id's checks, inline: a step costs microseconds
        else:
            step_id = self._step_id(run_id, n)
        row = (step_id, state, record)
        if stop is None and not items and self.commit_every == 1:
            db.execute(_INSERT_STEP, row)  # autocommit: no BEGIN, no COMMIT statement
            return
        if not db.in_transaction:
            db.execute("BEGIN")
        try:
            db.execute(_INSERT_STEP, row)
            if items:
                self._insert_items(items)
            if stop is not None:
                db.execute(
                    "UPDATE loom_runs SET status=?, stop=? WHERE key=?",
                    (*stop, self._keys[run_id]),
                )
        except BaseException:
            self._rollback()
            raise
        self._uncommitted += 1
        if stop is not None or self._uncommitted >= self.commit_every:
            self.flush()

    def flush(self) -> None:
        """Commit the open batch now (nothing to do unless ``commit_every`` > 1)."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._uncommitted = 0

    def _rollback(self) -> None:
        """Drop the open transaction, and what this store believed it had written."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._uncommitted = 0
        self._lengths.clear()

    # -- transcripts --------------------------------------------------------------------------

    def new_transcript(self, parent: int | None = None, base: int = 0) -> int:
        """Make a transcript key; with ``parent``, it continues the parent's first ``base`` items.

        Within the open batch, if any (a crash loses an unused key, nothing else).
        """
        if parent is not None and not 0 <= base <= self.transcript_length(parent):
            raise CheckpointError(
                f"{self.path}: transcript {parent} has no {base} items to continue from"
            )
        cursor = self._db.execute(
            "INSERT INTO loom_transcripts VALUES (NULL, ?, ?)", (parent, base)
        )
        key = cursor.lastrowid
        assert key is not None
        self._transcripts[key] = (parent, base)
        self._lengths[key] = base
        return key

    def transcript_length(self, key: int) -> int:
        """How many items transcript ``key`` holds (its parent's first ``base`` included)."""
        length = self._lengths.get(key)
        if length is None:
            base = self._transcript(key)[1]
            first = key << _STEP_BITS
            row = self._db.execute(
                "SELECT max(id) FROM loom_items WHERE id BETWEEN ? AND ?",
                (first, first | _MAX_STEP),
            ).fetchone()
            length = self._lengths[key] = base if row[0] is None else row[0] - first + 1
        return length

    def items(self, key: int, start: int, stop: int) -> list[bytes]:
        """Items ``start <= i < stop`` of transcript ``key`` (JSON bytes), read in order."""
        try:
            return self._items(key, start, stop)
        except sqlite3.ProgrammingError:  # the only one sqlite3 raises here: a closed database
            raise CheckpointError(
                f"{self.path}: the store is closed, and a restored transcript reads its items "
                "from it when they are first used; read them (e.g. list(transcript)) before "
                "closing the store"
            ) from None

    def _items(self, key: int, start: int, stop: int) -> list[bytes]:
        parts: list[list[bytes]] = []
        while start < stop:
            parent, base = self._transcript(key)
            low = max(start, base)
            if low < stop:
                first = key << _STEP_BITS
                rows = self._db.execute(
                    "SELECT item FROM loom_items WHERE id >= ? AND id < ? ORDER BY id",
                    (first | low, first | stop),
                ).fetchall()
                if len(rows) != stop - low:
                    raise CheckpointError(
                        f"{self.path}: transcript {key} has no items {low}..{stop - 1} "
                        "(the database is damaged or was changed by hand)"
                    )
                parts.append([r[0] for r in rows])
            if parent is None or start >= base:
                break
            key, stop = parent, min(stop, base)
        return [item for part in reversed(parts) for item in part]

    def _transcript(self, key: int) -> tuple[int | None, int]:
        found = self._transcripts.get(key)
        if found is None:
            row = self._db.execute(
                "SELECT parent, base FROM loom_transcripts WHERE key=?", (key,)
            ).fetchone()
            if row is None:
                raise CheckpointError(
                    f"{self.path}: no transcript {key} (the database is damaged or was changed "
                    "by hand)"
                )
            found = self._transcripts[key] = (row[0], row[1])
        return found

    def _insert_items(self, items: Sequence[Items]) -> None:
        for key, first, blobs in items:
            if not blobs:
                continue
            base = key << _STEP_BITS
            self._db.executemany(
                "INSERT INTO loom_items VALUES (?, ?)",
                zip(range(base | first, base | (first + len(blobs))), blobs, strict=True),
            )
            self._lengths[key] = first + len(blobs)

    def last_step(self, run_id: str) -> StepRow | None:
        """The newest committed step: one seek to the end of the run's rowid range."""
        key = self._key(run_id)
        if key is None:
            return None
        first = key << _STEP_BITS
        row = self._db.execute(
            "SELECT id - :first, state, record FROM loom_steps WHERE id BETWEEN :first AND :last "
            "ORDER BY id DESC LIMIT 1",
            {"first": first, "last": first | _MAX_STEP},
        ).fetchone()
        return None if row is None else StepRow(*row)

    def step(self, run_id: str, n: int) -> StepRow:
        row = None
        if self._key(run_id) is not None and 0 <= n <= _MAX_STEP:
            row = self._db.execute(
                "SELECT state, record FROM loom_steps WHERE id=?", (self._step_id(run_id, n),)
            ).fetchone()
        if row is None:
            raise CheckpointError(f"{self.path}: run {run_id!r} has no step {n}")
        return StepRow(n, *row)

    def records(self, run_id: str, *, since: int = 0) -> Iterator[tuple[int, bytes]]:
        """Step records in order (``n > since``), streamed: memory stays flat for long runs."""
        key = self._key(run_id)
        if key is None:
            return
        first = key << _STEP_BITS
        cursor = self._db.execute(
            "SELECT id - :first, record FROM loom_steps WHERE id > :after AND id <= :last "
            "ORDER BY id",
            {"first": first, "after": first + max(since, -1), "last": first | _MAX_STEP},
        )
        yield from cursor

    def close(self) -> None:
        """Commit the open batch, if any, and close the database."""
        try:
            self.flush()
        finally:
            db, self._db = self._db, _CLOSED
            if not (self._memory and _recycle(db)):
                db.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
