"""The SQLite checkpoint store: committing and reading steps, bad files, golden copies, WAL."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_loom.budget import Budget
from pytest_loom.clock import FakeClock
from pytest_loom.reference import Loop, build_record
from pytest_loom.store import SCHEMA_VERSION, CheckpointError, CheckpointStore


class Killed(BaseException):
    """The process died: nothing in the loop may catch it."""


def begin(store: CheckpointStore, run_id: str = "r1") -> None:
    store.begin_run(run_id, scenario="demo", runtime="reference", budget=b"{}")


def commit(store: CheckpointStore, run_id: str, *steps: int) -> None:
    for n in steps:
        store.commit_step(run_id, n, f"state {n}".encode(), f"record {n}".encode())


def crash_at_step_3(state: int, ctx: object) -> int:
    if getattr(ctx, "index", None) == 3:
        raise Killed("killed at step 3")
    return state + 1


def make_golden(path: Path, clock: FakeClock) -> None:
    """A golden database holding one run that crashed before step 3 (closed cleanly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with CheckpointStore(path) as store, pytest.raises(Killed):
        Loop(crash_at_step_3, budget=Budget(iterations=5), store=store, clock=clock).run(0)


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# --- committing and reading back -------------------------------------------------------------


def test_committed_steps_read_back(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        begin(store)
        commit(store, "r1", 1, 2, 3)

        last = store.last_step("r1")
        second = store.step("r1", 2)

    assert last is not None
    assert (last.n, last.state, last.record) == (3, b"state 3", b"record 3")
    assert (second.n, second.state, second.record) == (2, b"state 2", b"record 2")


def test_records_are_streamed_in_step_order(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        begin(store)
        begin(store, "other")
        commit(store, "r1", 2, 3, 1)
        commit(store, "other", 1)

        rows = store.records("r1")
        assert isinstance(rows, Iterator)  # a lazy iterator, not a list built in memory
        assert list(rows) == [(1, b"record 1"), (2, b"record 2"), (3, b"record 3")]
        assert [n for n, _ in store.records("r1", since=1)] == [2, 3]
        assert list(store.records("r1", since=3)) == []


def test_a_run_without_steps_has_no_last_step(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        begin(store)

        assert store.last_step("r1") is None
        with pytest.raises(CheckpointError, match="run 'r1' has no step 4"):
            store.step("r1", 4)


def test_committed_steps_survive_a_process_that_never_closed_the_store(tmp_path: Path) -> None:
    crashed = CheckpointStore(tmp_path / "c.db")  # never closed, as after a kill -9
    begin(crashed)
    commit(crashed, "r1", 1, 2)

    with CheckpointStore(tmp_path / "c.db") as reopened:
        last = reopened.last_step("r1")
        run = reopened.run("r1")

    assert last is not None and last.n == 2
    assert (run.status, run.stop) == ("running", None)
    crashed.close()


def test_finished_run_keeps_its_status_and_stop(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        begin(store)
        begin(store, "r2")
        store.finish_run("r1", "converged", b'{"reason": "converged"}')

        run = store.run("r1")
        assert (run.status, run.stop) == ("converged", b'{"reason": "converged"}')
        assert [r.run_id for r in store.runs()] == ["r1", "r2"]


def test_beginning_a_run_twice_is_an_error(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        begin(store)

        with pytest.raises(CheckpointError, match="run 'r1' already exists"):
            begin(store)


def test_unknown_run_names_the_known_ones(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        begin(store, "alpha")
        begin(store, "beta")

        with pytest.raises(CheckpointError, match=r"no run 'gamma' \(runs here: alpha, beta\)"):
            store.run("gamma")


# --- files that are not checkpoint databases ---------------------------------------------------


def test_a_file_that_is_not_sqlite_is_rejected_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"\x00\xffthis is not a database\n" * 64)

    with pytest.raises(CheckpointError) as info:
        CheckpointStore(path)

    assert str(path) in str(info.value)
    assert "not a usable pytest-loom checkpoint database" in str(info.value)


def test_another_schema_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    CheckpointStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE loom_meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),)
        )
    db.close()

    with pytest.raises(CheckpointError, match=f"schema version {SCHEMA_VERSION + 1} is not"):
        CheckpointStore(path)


def test_reopening_a_store_keeps_its_runs(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        begin(store)
        commit(store, "r1", 1)

    with CheckpointStore(tmp_path / "c.db") as store:
        assert [r.run_id for r in store.runs()] == ["r1"]


# --- golden databases --------------------------------------------------------------------------


def test_from_golden_works_on_a_copy_and_leaves_the_golden_untouched(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    golden = tmp_path / "golden" / "run.db"
    make_golden(golden, loom_clock)
    before = fingerprint(golden)

    with CheckpointStore.from_golden(golden, tmp_path / "work.db") as copy:
        loop = Loop(lambda s: s + 1, budget=Budget(iterations=5), store=copy, clock=loom_clock)
        outcome = loop.resume("run-1")
        loop.run(0, run_id="another")

    assert (outcome.stop.label, outcome.steps) == ("budget_exhausted(iterations)", 5)
    assert fingerprint(golden) == before
    with CheckpointStore.from_golden(golden, tmp_path / "check.db") as again:
        assert [r.run_id for r in again.runs()] == ["run-1"]
        assert len(build_record(again, "run-1").steps) == 2


def test_from_golden_copies_uncheckpointed_wal_data(tmp_path: Path, loom_clock: FakeClock) -> None:
    golden = tmp_path / "golden.db"
    writer = CheckpointStore(golden)  # kept open: its pages are still only in golden.db-wal
    Loop(lambda s: s + 1, budget=Budget(iterations=3), store=writer, clock=loom_clock).run(0)
    wal = golden.with_name("golden.db-wal")
    assert wal.stat().st_size > 0
    shutil.copyfile(golden, tmp_path / "naive.db")
    with CheckpointStore(tmp_path / "naive.db") as naive:
        assert naive.runs() == []  # the main file alone does not hold the run
    before = fingerprint(golden)

    with CheckpointStore.from_golden(golden, tmp_path / "copy.db") as copy:
        copied = build_record(copy, "run-1")

    assert copied == build_record(writer, "run-1")
    assert len(copied.steps) == 3
    assert fingerprint(golden) == before
    writer.close()


def test_from_golden_leaves_no_files_beside_the_golden(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    golden = tmp_path / "golden" / "run.db"
    make_golden(golden, loom_clock)
    assert sorted(p.name for p in golden.parent.iterdir()) == ["run.db"]

    CheckpointStore.from_golden(golden, tmp_path / "work.db").close()

    assert sorted(p.name for p in golden.parent.iterdir()) == ["run.db"]


def test_from_golden_copies_a_golden_whose_path_has_a_hash(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    golden = tmp_path / "issue#12" / "run.db"
    make_golden(golden, loom_clock)

    with CheckpointStore.from_golden(golden, tmp_path / "work.db") as copy:
        assert [r.run_id for r in copy.runs()] == ["run-1"]


def test_from_golden_of_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        CheckpointStore.from_golden(tmp_path / "missing.db", tmp_path / "work.db")

    assert not (tmp_path / "work.db").exists()


def test_from_golden_of_a_file_that_is_not_sqlite_is_an_error(tmp_path: Path) -> None:
    golden = tmp_path / "golden.db"
    golden.write_bytes(b"definitely not sqlite" * 100)

    with pytest.raises(CheckpointError) as info:
        CheckpointStore.from_golden(golden, tmp_path / "work.db")

    assert str(golden) in str(info.value)
    assert not (tmp_path / "work.db").exists()


# --- durability and journal mode ---------------------------------------------------------------


def test_durability_full_is_accepted(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db", durability="full") as store:
        begin(store)
        commit(store, "r1", 1)

        assert store.durability == "full"
        # the connection really fsyncs each commit (synchronous=FULL is 2, NORMAL is 1)
        assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)

    with CheckpointStore(tmp_path / "c.db") as store:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (1,)
        assert store.last_step("r1") is not None


def test_invalid_durability_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability='paranoid'"):
        CheckpointStore(tmp_path / "c.db", durability="paranoid")  # type: ignore[arg-type]


def test_the_store_uses_write_ahead_logging(tmp_path: Path) -> None:
    CheckpointStore(tmp_path / "c.db").close()

    with sqlite3.connect(tmp_path / "c.db") as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()
    db.close()

    assert mode == ("wal",)


def test_loom_store_fixture_is_a_fresh_wal_store_under_tmp_path(
    loom_store: CheckpointStore, tmp_path: Path
) -> None:
    assert loom_store.path.parent == tmp_path
    assert loom_store.runs() == []
    assert loom_store._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def schema_of(path: Path) -> list[tuple[str, ...]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows += db.execute("SELECT * FROM loom_meta").fetchall()
        rows += [db.execute("PRAGMA journal_mode").fetchone()]
    db.close()
    return rows


def test_a_new_throwaway_store_is_a_copy_of_a_new_database(tmp_path: Path) -> None:
    CheckpointStore(tmp_path / "made.db").close()
    copied = CheckpointStore(tmp_path / "copied.db", durability="off")
    begin(copied)
    commit(copied, "r1", 1, 2)
    assert copied.last_step("r1") == copied.step("r1", 2)
    copied.close()

    assert schema_of(tmp_path / "copied.db") == schema_of(tmp_path / "made.db")
    assert ("schema", str(SCHEMA_VERSION)) in schema_of(tmp_path / "copied.db")
    with sqlite3.connect(tmp_path / "copied.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_a_throwaway_store_keeps_an_existing_file(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db", durability="off") as store:
        begin(store)
        commit(store, "r1", 1)
    with CheckpointStore(tmp_path / "c.db", durability="off") as store:
        assert [r.run_id for r in store.runs()] == ["r1"]
        assert store.last_step("r1") is not None


def test_a_throwaway_store_where_no_file_can_be_made_is_the_usual_error(tmp_path: Path) -> None:
    messages = []
    for durability in ("off", "normal"):
        with pytest.raises(CheckpointError) as info:
            CheckpointStore(tmp_path / "missing" / "c.db", durability=durability)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "not a usable pytest-loom checkpoint database" in messages[0]


def test_an_in_memory_throwaway_store_makes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with CheckpointStore(":memory:", durability="off") as store:
        begin(store)
    assert list(tmp_path.iterdir()) == []
