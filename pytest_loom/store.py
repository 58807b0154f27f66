"""Durable per-step checkpoints in SQLite, cheap enough to commit after every step.

One row per step holds the state and the step's record, including everything resume needs
(cumulative spend, best checkpoint so far). So resuming reads one row by primary key whatever
the history length, and a crash loses at most the step in flight. Defaults match what users
expect of a checkpointer: WAL journal, ``synchronous=NORMAL`` (durable against a process crash,
not against power loss); ``durability="full"`` adds an fsync per commit.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SCHEMA_VERSION = 1

Durability = Literal["normal", "full"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS loom_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS loom_runs (
    run_id TEXT PRIMARY KEY,
    scenario TEXT NOT NULL,
    runtime TEXT NOT NULL,
    status TEXT NOT NULL,
    budget BLOB NOT NULL,
    stop BLOB
);
CREATE TABLE IF NOT EXISTS loom_steps (
    run_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    state BLOB NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (run_id, n)
) WITHOUT ROWID;
"""


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


class CheckpointStore:
    """A SQLite checkpoint database; each test gets its own (see the ``loom_store`` fixture).

    Values are opaque bytes (the reference runtime stores JSON); the store only guarantees that a
    committed step survives a crash of the process that wrote it.
    """

    def __init__(self, path: str | Path, *, durability: Durability = "normal") -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"durability={durability!r}: expected 'normal' or 'full'")
        self.path = Path(path)
        self.durability = durability
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={durability.upper()}")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as exc:
            raise CheckpointError(
                f"{self.path}: not a usable pytest-loom checkpoint database ({exc}). "
                "Delete the file or point the store at a fresh path."
            ) from None

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM loom_meta WHERE key='schema'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT OR IGNORE INTO loom_meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif row[0] != str(SCHEMA_VERSION):
            raise CheckpointError(
                f"{self.path}: checkpoint schema version {row[0]} is not supported "
                f"(this pytest-loom reads version {SCHEMA_VERSION}). Re-record the database."
            )

    @classmethod
    def from_golden(
        cls, golden: str | Path, dest: str | Path, *, durability: Durability = "normal"
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
            return cls(dest, durability=durability)
        except CheckpointError as exc:
            for path in (dest, dest.with_name(dest.name + "-wal")):
                path.unlink(missing_ok=True)
            raise CheckpointError(str(exc).replace(str(dest), str(golden), 1)) from None

    def begin_run(self, run_id: str, *, scenario: str, runtime: str, budget: bytes) -> None:
        try:
            self._db.execute(
                "INSERT INTO loom_runs VALUES (?, ?, ?, 'running', ?, NULL)",
                (run_id, scenario, runtime, budget),
            )
        except sqlite3.IntegrityError:
            raise CheckpointError(
                f"{self.path}: run {run_id!r} already exists; resume it or choose another run id"
            ) from None

    def commit_step(
        self,
        run_id: str,
        n: int,
        state: bytes,
        record: bytes,
        *,
        stop: tuple[str, bytes] | None = None,
    ) -> None:
        """Durably add step ``n`` in one transaction; with ``stop=(status, stop)`` end the run."""
        db = self._db
        if stop is None:
            db.execute("INSERT INTO loom_steps VALUES (?, ?, ?, ?)", (run_id, n, state, record))
            return
        db.execute("BEGIN")
        try:
            db.execute("INSERT INTO loom_steps VALUES (?, ?, ?, ?)", (run_id, n, state, record))
            db.execute(
                "UPDATE loom_runs SET status=?, stop=? WHERE run_id=?", (stop[0], stop[1], run_id)
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def finish_run(self, run_id: str, status: str, stop: bytes) -> None:
        self._db.execute(
            "UPDATE loom_runs SET status=?, stop=? WHERE run_id=?", (status, stop, run_id)
        )

    def run(self, run_id: str) -> RunRow:
        row = self._db.execute(
            "SELECT run_id, scenario, runtime, status, budget, stop FROM loom_runs WHERE run_id=?",
            (run_id,),
        ).fetchone()
        if row is None:
            known = ", ".join(r.run_id for r in self.runs()[:10]) or "none"
            raise CheckpointError(f"{self.path}: no run {run_id!r} (runs here: {known})")
        return RunRow(*row)

    def runs(self) -> list[RunRow]:
        rows = self._db.execute(
            "SELECT run_id, scenario, runtime, status, budget, stop FROM loom_runs ORDER BY rowid"
        )
        return [RunRow(*r) for r in rows]

    def last_step(self, run_id: str) -> StepRow | None:
        """The newest committed step: one primary-key lookup, whatever the history length."""
        row = self._db.execute(
            "SELECT n, state, record FROM loom_steps WHERE run_id=? ORDER BY n DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return None if row is None else StepRow(*row)

    def step(self, run_id: str, n: int) -> StepRow:
        row = self._db.execute(
            "SELECT n, state, record FROM loom_steps WHERE run_id=? AND n=?", (run_id, n)
        ).fetchone()
        if row is None:
            raise CheckpointError(f"{self.path}: run {run_id!r} has no step {n}")
        return StepRow(*row)

    def records(self, run_id: str, *, since: int = 0) -> Iterator[tuple[int, bytes]]:
        """Step records in order (``n > since``), streamed: memory stays flat for long runs."""
        cursor = self._db.execute(
            "SELECT n, record FROM loom_steps WHERE run_id=? AND n>? ORDER BY n", (run_id, since)
        )
        yield from cursor

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
