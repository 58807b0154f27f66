"""Delta checkpoints: transcripts, what a step writes, O(1) resume, batched commits and crashes.

Every run uses the fake clock (``loom_clock``); nothing here times anything. Sizes are read
from the database file, and reads are counted as SQLite virtual-machine steps.
"""

from __future__ import annotations

import copy
import functools
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from pytest_loom import Transcript
from pytest_loom.budget import Budget
from pytest_loom.clock import FakeClock
from pytest_loom.llm import MockLLM
from pytest_loom.record import Event, StopReason
from pytest_loom.reference import Loop, build_record
from pytest_loom.script import Match, Rule, Turn
from pytest_loom.store import CheckpointError, CheckpointStore

MESSAGE = "m" * 400
"""A turn's text: the payload of a realistic message (~430 bytes of JSON with its role)."""


def add_turn(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The growing loop: every step appends one message and counts it."""
    state["messages"].append({"role": "assistant", "step": ctx.index, "content": MESSAGE})
    return {"turns": state["turns"] + 1, "messages": state["messages"]}


def fresh() -> dict[str, Any]:
    return {"turns": 0, "messages": Transcript([{"role": "user", "content": "go"}])}


class Killed(BaseException):
    """The process died: nothing in the loop may catch it."""


def crash_at(step: int) -> Callable[[int], None]:
    def hook(n: int) -> None:
        if n == step:
            raise Killed(f"killed at step {n}")

    return hook


def scripted(clock: FakeClock) -> MockLLM:
    """A mock LLM answering every request alike: $0.001, 120 tokens."""
    reply = Turn("ok", input_tokens=100, output_tokens=20, cost_usd=0.001)
    return MockLLM(rules=[Rule(Match(), reply)], clock=clock)


def run_growing(path: Path, steps: int, clock: FakeClock, **store: Any) -> Any:
    with CheckpointStore(path, **store) as db:
        return Loop(add_turn, budget=Budget(iterations=steps), store=db, clock=clock).run(
            fresh(), run_id="r"
        )


def file_size(path: Path) -> int:
    """The database's size once its WAL is checkpointed into it (as closing the store does)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.stat().st_size


def vm_steps(store: CheckpointStore, action: Callable[[], object]) -> int:
    """SQLite virtual-machine instructions ``action`` runs on the store: grows with rows read."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    store._db.set_progress_handler(tick, 1)
    try:
        action()
    finally:
        store._db.set_progress_handler(None, 1)
    return count


def restore_into(loop: Loop, out: list[Any]) -> None:
    out.extend(loop._restore("r"))


# --- the transcript itself ---------------------------------------------------------------------


def test_a_transcript_is_an_append_only_sequence_of_json_values() -> None:
    t = Transcript([{"a": 1}, "two"])
    t.append([3, {"four": (4,)}])
    t.extend([None, 5.5])

    assert len(t) == 5
    assert t[0] == {"a": 1} and t[-1] == 5.5
    assert t[1:3] == ["two", [3, {"four": [4]}]]  # stored as the JSON it serialises to
    assert t[::-2] == [5.5, [3, {"four": [4]}], {"a": 1}]
    assert list(t) == [{"a": 1}, "two", [3, {"four": [4]}], None, 5.5]
    assert t == [{"a": 1}, "two", [3, {"four": [4]}], None, 5.5]
    assert t == Transcript(list(t)) and t != Transcript(list(t)[:4])
    assert orjson.loads(orjson.dumps(list(t))) == list(t)
    with pytest.raises(IndexError):
        t[5]


@pytest.mark.parametrize(
    "change",
    [
        lambda item: item.__setitem__("content", "edited"),
        lambda item: item.update(content="edited"),
        lambda item: item.pop("content"),
        lambda item: item["parts"].append("more"),
        lambda item: item["parts"].__setitem__(0, "edited"),
        lambda item: item["parts"].sort(),
    ],
    ids=["setitem", "update", "pop", "nested-append", "nested-setitem", "nested-sort"],
)
def test_appended_items_cannot_be_changed(change: Callable[[Any], object]) -> None:
    message = {"content": "hello", "parts": ["b", "a"]}
    t = Transcript([message])
    message["content"] = "changed after appending"  # the caller's own object: not the item

    with pytest.raises(TypeError, match=r"cannot be changed once appended.*append a new item"):
        change(t[0])
    assert t[0] == {"content": "hello", "parts": ["b", "a"]}


def test_frozen_items_copy_and_pickle_as_plain_values() -> None:
    item = Transcript([{"parts": [1, {"x": 2}]}])[0]

    for copied in (copy.deepcopy(item), pickle.loads(pickle.dumps(item)), copy.copy(item)):
        assert copied == {"parts": [1, {"x": 2}]}


def test_an_item_that_is_not_json_is_refused_naming_it() -> None:
    t = Transcript()
    with pytest.raises(TypeError, match="Transcript items must be JSON-serialisable"):
        t.append({"when": object()})
    assert len(t) == 0


# --- checkpoints of a growing state ------------------------------------------------------------


def test_a_step_writes_about_what_it_appended_not_the_whole_state(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    item_bytes = len(orjson.dumps({"role": "assistant", "step": 1000, "content": MESSAGE}))
    sizes = {}
    for steps in (500, 1500):
        run_growing(tmp_path / f"{steps}.db", steps, loom_clock)
        sizes[steps] = file_size(tmp_path / f"{steps}.db")

    per_step = (sizes[1500] - sizes[500]) / 1000
    assert per_step <= 2 * item_bytes  # a full-state checkpoint would write ~1000x this


def test_the_database_of_a_long_growing_run_is_within_twice_its_deltas(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    outcome = run_growing(tmp_path / "c.db", 3000, loom_clock)

    deltas = sum(len(orjson.dumps(m)) for m in outcome.state["messages"])
    with CheckpointStore(tmp_path / "c.db") as store:
        deltas += sum(len(r) for _, r in store.records("r"))  # each step's own record
    assert file_size(tmp_path / "c.db") <= 2 * deltas


def test_a_resumed_run_restores_exactly_the_state_an_uninterrupted_run_has(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    whole = run_growing(tmp_path / "whole.db", 40, loom_clock)
    with CheckpointStore(tmp_path / "c.db") as store:
        loop = Loop(add_turn, budget=Budget(iterations=40), store=store, clock=loom_clock)
        loop.before_step = crash_at(25)
        with pytest.raises(Killed):
            loop.run(fresh(), run_id="r")
    with CheckpointStore(tmp_path / "c.db") as store:
        loop = Loop(add_turn, budget=Budget(iterations=40), store=store, clock=loom_clock)
        resumed = loop.resume("r")
        record = loop.record("r")
        later = resumed.state["messages"][5:]  # read from the store on first use: items 5..
    with pytest.raises(CheckpointError, match=r"c\.db: the store is closed.*before closing"):
        resumed.state["messages"][0]

    assert resumed.state["turns"] == 40
    assert later == whole.state["messages"][5:]
    assert resumed.state["messages"] == whole.state["messages"]  # same chained digest
    with CheckpointStore(tmp_path / "whole.db") as store:
        expected = build_record(store, "r")
    assert [s.state_digest for s in record.steps] == [s.state_digest for s in expected.steps]
    assert record.steps[24].events == (Event.RESUMED,)


def test_resume_reads_the_same_few_rows_whatever_the_history_length(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    reads: dict[str, int] = {}
    for steps in (20, 2000):
        path = tmp_path / f"{steps}.db"
        with CheckpointStore(path) as store:
            loop = Loop(add_turn, budget=Budget(iterations=steps + 5), store=store)
            loop.before_step = crash_at(steps + 1)
            with pytest.raises(Killed):
                loop.run(fresh(), run_id="r")
        with CheckpointStore(path) as store:
            loop = Loop(add_turn, budget=Budget(iterations=steps + 5), store=store)
            restored: list[Any] = []
            reads[f"restore {steps}"] = vm_steps(
                store, functools.partial(restore_into, loop, restored)
            )
            state, _, n = restored
            assert (n, state["turns"], len(state["messages"])) == (steps, steps, steps + 1)
            messages = state["messages"]
            # len() needs no read; the last item is one row.
            assert vm_steps(store, functools.partial(len, messages)) == 0
            reads[f"last item {steps}"] = vm_steps(
                store, functools.partial(messages.__getitem__, -1)
            )
            assert messages[-1]["step"] == steps

    assert reads["restore 20"] == reads["restore 2000"]
    assert reads["last item 20"] == reads["last item 2000"]


def test_a_failed_or_retried_step_has_its_appends_undone(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    def flaky(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        state["messages"].append({"step": ctx.index, "note": "appended before the failure"})
        ctx.llm.complete([{"role": "user", "content": "go"}], model="gpt-4o")  # 4th call fails
        if ctx.index == 5:
            raise RuntimeError("tool broke")
        return state

    llm = scripted(loom_clock)
    llm.inject_error(4, "rate_limit")
    with CheckpointStore(tmp_path / "c.db") as store:
        loop = Loop(flaky, budget=Budget(iterations=6), store=store, llm=llm, retries=1)
        outcome = loop.run({"messages": Transcript()}, run_id="r")
        record = loop.record("r")

    assert outcome.stop.reason is StopReason.FAILED
    assert [m["step"] for m in outcome.state["messages"]] == [1, 2, 3, 4]  # 4 once; 5 undone
    assert record.steps[3].events == (Event.RETRIED,)
    assert record.steps[4].state_digest == record.steps[3].state_digest  # the failed step's input


def test_backtracking_forks_the_transcript_and_resume_follows_the_fork(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    scores = iter([0.5, 0.9, 0.2, 0.95, 0.96, 0.97, 0.98])

    def step(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        state["messages"].append({"step": ctx.index})
        return {"score": next(scores), "messages": state["messages"]}

    with CheckpointStore(tmp_path / "c.db") as store:
        loop = Loop(
            step,
            budget=Budget(iterations=6),
            store=store,
            scorer=lambda s: s["score"],
            backtrack=True,
            clock=loom_clock,
        )
        loop.before_step = crash_at(6)
        with pytest.raises(Killed):
            loop.run({"score": 0.0, "messages": Transcript()}, run_id="r")
    with CheckpointStore(tmp_path / "c.db") as store:
        loop = Loop(step, budget=Budget(iterations=6), store=store, scorer=lambda s: s["score"])
        outcome = loop.resume("r")
        record = loop.record("r")
        # Step 3 scored worse than step 2, so step 4 went on from step 2's state.
        assert [m["step"] for m in outcome.state["messages"]] == [1, 2, 4, 5, 6]

    assert record.steps[2].events == (Event.BACKTRACKED,)
    with CheckpointStore(tmp_path / "c.db") as store:
        third = Loop(step, store=store)._state_of("r", store.step("r", 3), _record(store, 3))
        assert [m["step"] for m in third["messages"]] == [1, 2]  # the checkpoint of step 3


def _record(store: CheckpointStore, n: int) -> Any:
    return orjson.loads(store.step("r", n).record)


def test_stall_detection_sees_a_transcript_that_stopped_growing(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    def step(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if ctx.index <= 3:
            state["messages"].append({"step": ctx.index})
        return state

    with CheckpointStore(tmp_path / "c.db") as store:
        outcome = Loop(step, store=store, stall_after=2, clock=loom_clock).run(
            {"messages": Transcript()}
        )

    assert outcome.stop.reason is StopReason.STALLED
    assert outcome.steps == 5


def test_plain_states_keep_their_digest_and_their_whole_state_row(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db") as store:
        Loop(lambda n: n + 1, store=store, budget=Budget(iterations=2)).run(0, run_id="r")
        row = store.step("r", 2)
        tables = store._db.execute("SELECT count(*) FROM loom_items").fetchone()

    assert row.state == b"2"
    digest = orjson.loads(row.record)["step"]["state_digest"]
    import hashlib

    assert digest == hashlib.sha256(b"2").hexdigest()[:16]
    assert tables == (0,)


def test_a_damaged_transcript_is_a_checkpoint_error_naming_the_file(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    run_growing(tmp_path / "c.db", 5, loom_clock)
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("DELETE FROM loom_items WHERE id = (SELECT max(id) FROM loom_items)")
    db.commit()
    db.close()
    with CheckpointStore(tmp_path / "c.db") as store:
        state = Loop(add_turn, store=store)._state_of("r", store.step("r", 5), _record(store, 5))
        with pytest.raises(CheckpointError, match=r"c\.db: transcript 1 has no items 5\.\.5"):
            state["messages"][-1]


# --- batched commits ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_commit_every_must_be_a_whole_number_of_steps(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match=r"commit_every=.*expected a whole number of steps >= 1"):
        CheckpointStore(tmp_path / "c.db", commit_every=bad)


def test_a_batched_store_reads_its_open_batch_and_commits_it_on_close(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "c.db", commit_every=4) as store:
        store.begin_run("r", scenario="", runtime="reference", budget=b"{}")
        for n in range(1, 7):
            store.commit_step("r", n, b"s", b"r")
        assert store.last_step("r") is not None
        with CheckpointStore(tmp_path / "c.db") as other:  # another connection: committed only
            assert other.last_step("r").n == 4  # type: ignore[union-attr]
    with CheckpointStore(tmp_path / "c.db") as store:
        assert store.last_step("r").n == 6  # type: ignore[union-attr]


CRASHING_RUN = """
import os, sys
from pytest_loom import Budget, CheckpointStore, FakeClock, Loop, Match, MockLLM, Rule, Turn
from pytest_loom import Transcript

def step(state, ctx):
    if ctx.index == {crash}:
        os._exit(9)  # a real crash: no close, no commit, no clean-up
    reply = ctx.llm.complete([{{"role": "user", "content": "next"}}], model="gpt-4o")
    state["messages"].append({{"step": ctx.index, "text": reply.text}})
    return state

with FakeClock() as clock:
    reply = Turn("ok", input_tokens=100, output_tokens=20, cost_usd=0.001)
    llm = MockLLM(rules=[Rule(Match(), reply)], clock=clock)
    store = CheckpointStore(sys.argv[1], commit_every={every})
    Loop(step, budget=Budget(usd=0.02), store=store, llm=llm).run(
        {{"messages": Transcript()}}, run_id="r"
    )
"""


def test_a_crash_in_batched_mode_loses_only_the_open_batch_and_keeps_the_budget(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASHING_RUN.format(crash=12, every=5)))
    db = tmp_path / "c.db"
    done = subprocess.run([sys.executable, str(script), str(db)], check=False)
    assert done.returncode == 9

    def step(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
        reply = ctx.llm.complete([{"role": "user", "content": "next"}], model="gpt-4o")
        state["messages"].append({"step": ctx.index, "text": reply.text})
        return state

    def loop(store: CheckpointStore) -> Loop:
        return Loop(step, budget=Budget(usd=0.02), store=store, llm=scripted(loom_clock))

    with CheckpointStore(db) as store:
        # Steps 0-4 and 5-9 committed as batches; 10 and 11 were in the open batch.
        assert store.last_step("r").n == 9  # type: ignore[union-attr]
        resumed = loop(store).resume("r")
        record = loop(store).record("r")
        steps = [m["step"] for m in resumed.state["messages"]]
    with CheckpointStore(tmp_path / "whole.db") as store:
        whole = loop(store).run({"messages": Transcript()}, run_id="r")

    assert record.steps[9].events == (Event.RESUMED,)
    assert resumed.spend.usd == whole.spend.usd <= 0.02
    assert (resumed.steps, resumed.stop.label) == (whole.steps, whole.stop.label)
    assert steps == list(range(1, whole.steps + 1))


def test_batched_and_per_step_commits_store_the_same_run(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    one = run_growing(tmp_path / "one.db", 30, loom_clock)
    batched = run_growing(tmp_path / "batched.db", 30, loom_clock, commit_every=7)

    assert batched.state["messages"] == one.state["messages"]
    with CheckpointStore(tmp_path / "one.db") as a, CheckpointStore(tmp_path / "batched.db") as b:
        assert list(a.records("r")) == list(b.records("r"))
