"""An in-memory checkpoint store starts from a ready image: the same database, each its own.

``CheckpointStore(":memory:")`` (what every reference scenario without a kill fault gets) loads
a new database's image made once per process instead of creating the schema; these tests pin
that the result is the database creating the schema gives, per store, with its pragmas.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pytest_loom.store import SCHEMA_VERSION, CheckpointError, CheckpointStore, Durability, _idle


def schema(db: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    rows = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    return [(str(kind), str(name), sql) for kind, name, sql in rows]


def test_an_in_memory_store_has_the_schema_a_new_file_gets(tmp_path: Path) -> None:
    with (
        CheckpointStore(":memory:") as memory,
        CheckpointStore(tmp_path / "c.db") as file,
    ):
        assert schema(memory._db) == schema(file._db)
        assert memory._db.execute("SELECT key, value FROM loom_meta").fetchall() == [
            ("schema", str(SCHEMA_VERSION))
        ]


@pytest.mark.parametrize(("durability", "level"), [("off", 0), ("normal", 1), ("full", 2)])
def test_an_in_memory_store_keeps_its_durability_and_memory_journal(
    durability: Durability, level: int
) -> None:
    with CheckpointStore(":memory:", durability=durability) as store:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (level,)
        assert store._db.execute("PRAGMA journal_mode").fetchone() == ("memory",)


def test_in_memory_stores_share_nothing() -> None:
    with CheckpointStore(":memory:") as first, CheckpointStore(":memory:") as second:
        first.begin_run("r1", scenario="demo", runtime="reference", budget=b"{}")
        first.commit_step("r1", 1, b"state 1", b"record 1")
        assert [run.run_id for run in second.runs()] == []
        second.begin_run("r1", scenario="other", runtime="reference", budget=b"{}")
        assert second.last_step("r1") is None
    with CheckpointStore(":memory:") as third:
        assert third.runs() == []


def test_an_in_memory_store_runs_batches_and_rolls_back_like_a_file() -> None:
    with CheckpointStore(":memory:", commit_every=3) as store:
        store.begin_run("r1", scenario="demo", runtime="reference", budget=b"{}")
        for n in (1, 2, 3, 4):
            store.commit_step("r1", n, f"state {n}".encode(), f"record {n}".encode())
        store.finish_run("r1", "stopped", b"{}")
        last = store.last_step("r1")
        assert last is not None and (last.n, last.state) == (4, b"state 4")
        assert [n for n, _ in store.records("r1")] == [1, 2, 3, 4]
        assert store.run("r1").status == "stopped"


def test_a_closed_in_memory_store_hands_the_next_one_an_empty_database() -> None:
    with CheckpointStore(":memory:", durability="full") as first:
        first.begin_run("r1", scenario="demo", runtime="reference", budget=b"{}")
        first.commit_step("r1", 1, b"state 1", b"record 1")
        first.new_transcript()
        used = first._db
        used.set_progress_handler(lambda: 1, 1)  # what a test may leave: it aborts every query
    with CheckpointStore(":memory:", durability="off") as second:
        assert second._db is used  # the emptied connection, not a new one
        assert second.runs() == []
        assert second._db.execute("SELECT count(*) FROM loom_items").fetchone() == (0,)
        assert second._db.execute("PRAGMA synchronous").fetchone() == (0,)
        second.begin_run("r1", scenario="other", runtime="reference", budget=b"{}")
        second.commit_step("r1", 1, b"state", b"record")
        assert second._step_id("r1", 1) == 1 << 32 | 1  # keys start again from 1
        assert second.new_transcript() == 1
        assert second.run("r1").scenario == "other"


def test_a_closed_in_memory_store_refuses_use_and_keeps_nothing_alive() -> None:
    with CheckpointStore(":memory:") as store:
        store.begin_run("r1", scenario="demo", runtime="reference", budget=b"{}")
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        store.runs()
    with pytest.raises(CheckpointError, match="the store is closed"):
        store.items(1, 0, 1)
    # However many stores close, only a few emptied databases are kept for reuse.
    stores = [CheckpointStore(":memory:") for _ in range(5)]
    for each in stores:
        each.close()
    assert len(_idle) <= 2
