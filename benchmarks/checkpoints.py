"""Checkpoint storage at scale: a growing state, batched commits, memory, whole-process resume.

Measured for ``benchmarks/run.py`` next to yardsticks from the same run:

* a loop whose state gains a ~430-byte message every step (kept in a ``Transcript``): per-step
  time late in the run against early in it, and the database against the sum of what the
  steps added;
* resuming that run in a fresh process after 100k steps against after 1k steps, and the memory
  the resume takes;
* the reference runtime's checkpoint of a step with ``commit_every=1000`` (serialise the state
  and the step's record and carry, commit them: ``Loop._checkpoint``, the code the loop runs)
  against raw sqlite3 serialising the same state and record and inserting them, every row in
  one transaction; the whole loop, batched, as a breakdown figure;
* peak memory growth of a 100k-step run (RSS of a child process);
* replaying a history (``CheckpointStore.records``) against a raw cursor over the same rows.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
from run import (
    RUN_ID,
    Detail,
    Plan,
    Row,
    Scratch,
    initial_state,
    median,
    ms,
    progress,
    reference_row,
    remove_db,
    trivial_step,
    us,
)

from pytest_loom._clockpatch import real_perf_counter as clock
from pytest_loom.budget import Budget
from pytest_loom.reference import Loop, _Carry, _collector, _decode_carry, _dumps
from pytest_loom.store import CheckpointStore
from pytest_loom.transcript import Transcript

MESSAGE = "m" * 400
PROBES = 10
"""Per-step time is read over this many equal slices of the run (first vs last)."""


def growing_step(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    state["messages"].append({"role": "assistant", "step": ctx.index, "content": MESSAGE})
    return {"turns": state["turns"] + 1, "messages": state["messages"]}


def growing_state() -> dict[str, Any]:
    return {"turns": 0, "messages": Transcript()}


def db_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.stat().st_size


def growing_run(path: Path, steps: int) -> tuple[float, float, int, int]:
    """(early, late) seconds per step, database bytes, and the bytes the steps added."""
    marks: list[float] = []
    every = steps // PROBES

    def mark(n: int) -> None:
        if n % every == 1:
            marks.append(clock())

    def mark_or_crash(n: int) -> None:
        mark(n)
        if n > steps:
            raise _Crash

    with CheckpointStore(path) as store:
        loop = Loop(growing_step, budget=Budget(iterations=steps + 1), store=store)
        loop.before_step = mark_or_crash
        try:
            loop.run(growing_state(), run_id=RUN_ID)
        except _Crash:
            pass
        else:
            raise RuntimeError("the crash hook did not fire")
        added = sum(len(r) for _, r in store.records(RUN_ID))
    added += steps * len(orjson.dumps({"role": "assistant", "step": steps, "content": MESSAGE}))
    early = (marks[1] - marks[0]) / every
    late = (marks[-1] - marks[-2]) / every
    return early, late, db_bytes(path), added


class _Crash(BaseException):
    """Ends a run as a killed process would: the steps so far committed, the run unfinished."""


RESUME_CHILD = textwrap.dedent(
    """
    import sys, tracemalloc
    from pytest_loom.budget import Budget
    from pytest_loom.reference import Loop
    from pytest_loom.store import CheckpointStore
    tracemalloc.start()
    store = CheckpointStore(sys.argv[1])
    loop = Loop(lambda state: state, budget=Budget(iterations=10**9), store=store)
    state, carry, n = loop._restore("bench")
    last = state["messages"][-1]
    size, peak = tracemalloc.get_traced_memory()
    assert n == int(sys.argv[2]) and last["step"] == n, (n, last)
    print(peak)
    """
)


def resume_process(path: Path, steps: int, child: Path) -> tuple[float, int]:
    """Wall time of a fresh process that imports the lab, opens the database, restores the
    run and reads its newest message; and the peak memory the restore took (tracemalloc)."""
    t0 = clock()
    done = subprocess.run(
        [sys.executable, str(child), str(path), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return clock() - t0, int(done.stdout)


BATCH = 1000
"""``commit_every`` of the batched rows."""


def batched_steps(path: Path, steps: int) -> float:
    """Seconds per step of the whole reference loop, batched (a breakdown figure)."""
    with CheckpointStore(path, commit_every=BATCH) as store:
        loop = Loop(trivial_step, budget=Budget(iterations=steps), store=store)
        t0 = clock()
        loop.run(initial_state(), run_id=RUN_ID)
        elapsed = clock() - t0
    remove_db(path)
    return elapsed / steps


def sample_step(path: Path) -> tuple[dict[str, Any], _Carry, dict[str, Any]]:
    """The step record and carry the reference runtime checkpoints for a step of this
    benchmark, decoded (the record as the loop builds it, the carry as a ``_Carry``), and the
    carry as the record stores it."""
    _, raw = reference_row(path)
    data = orjson.loads(raw)
    return data["step"], _decode_carry(path, RUN_ID, 2, data), data["carry"]


def reference_checkpoints(path: Path, steps: int, record: dict[str, Any], carry: _Carry) -> float:
    """Seconds per step of what the reference runtime does to checkpoint a step, batched.

    Serialising the state as the loop does (with its transcript hook) and ``Loop._checkpoint``,
    the loop's own code: the record and carry serialised, ``commit_step`` into the open batch.
    The step function runs too, as it does on the raw side.
    """
    with CheckpointStore(path, commit_every=BATCH) as store:
        store.begin_run(RUN_ID, scenario="", runtime="reference", budget=b"{}")
        loop = Loop(trivial_step, store=store)
        checkpoint = loop._checkpoint
        found: list[Transcript] = []
        default = _collector(found)
        state = initial_state()
        t0 = clock()
        for n in range(1, steps + 1):
            state = trivial_step(state)
            found.clear()
            checkpoint(RUN_ID, n, _dumps(state, default), found, record, carry, None)
        store.flush()
        elapsed = clock() - t0
    remove_db(path)
    return elapsed / steps


def raw_one_transaction(
    path: Path, steps: int, record: dict[str, Any], carry: dict[str, Any]
) -> float:
    """Seconds per step of raw sqlite3 doing the same: the same state and record serialised
    with orjson and inserted, all rows in one transaction."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE steps (n INTEGER PRIMARY KEY, state BLOB NOT NULL, record BLOB)")
    insert = "INSERT INTO steps VALUES (?, ?, ?)"
    state = initial_state()
    t0 = clock()
    db.execute("BEGIN")
    for n in range(1, steps + 1):
        state = trivial_step(state)
        db.execute(insert, (n, orjson.dumps(state), orjson.dumps({"step": record, "carry": carry})))
    db.execute("COMMIT")
    elapsed = clock() - t0
    db.close()
    remove_db(path)
    return elapsed / steps


MEMORY_CHILD = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, sys.argv[3])
    from run import initial_state, trivial_step
    from pytest_loom.budget import Budget
    from pytest_loom.reference import Loop
    from pytest_loom.store import CheckpointStore

    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def run(path, steps, every):
        with CheckpointStore(path, commit_every=every) as store:
            Loop(trivial_step, budget=Budget(iterations=steps), store=store).run(initial_state())

    every = int(sys.argv[2])
    run(sys.argv[1] + ".warm", 1000, every)
    before = rss()
    run(sys.argv[1], int(sys.argv[4]), every)
    print(rss() - before)
    """
)


def memory_growth(path: Path, steps: int, every: int, child: Path) -> int:
    done = subprocess.run(
        [sys.executable, str(child), str(path), str(every), str(Path(__file__).parent), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in (path, Path(f"{path}.warm")):
        remove_db(name)
    return int(done.stdout)


def replay(path: Path) -> float:
    t0 = clock()
    with CheckpointStore(path) as store:
        for _ in store.records(RUN_ID):
            pass
    return clock() - t0


def raw_replay(path: Path) -> float:
    t0 = clock()
    db = sqlite3.connect(path)
    for _ in db.execute("SELECT id, record FROM loom_steps ORDER BY id"):
        pass
    db.close()
    return clock() - t0


def measure(plan: Plan, scratch: Scratch) -> tuple[list[Row], list[Detail]]:
    long, short = plan.resume_long, plan.resume_short
    rows: list[Row] = []
    details: list[Detail] = []

    progress(f"growing state: {long:,}- and {short:,}-step runs")
    paths = {n: scratch.db(f"growing-{n}") for n in (long, short)}
    early, late, size, added = growing_run(paths[long], long)
    growing_run(paths[short], short)
    rows.append(
        Row(
            f"growing state, {long:,} steps: late vs early per-step time",
            f"{us(late)}/step (last {long // PROBES:,})",
            f"{us(early)}/step (first {long // PROBES:,})",
            late / early,
            1.2,
        )
    )
    rows.append(
        Row(
            f"growing state, {long:,} steps: database vs what the steps added",
            f"{size / 2**20:.1f} MiB",
            f"{added / 2**20:.1f} MiB of messages and step records",
            size / added,
            2.0,
        )
    )
    full_state = len(orjson.dumps({"messages": [{"content": MESSAGE}] * long}))
    details.append(
        Detail(
            f"growing state, {long:,} steps: a full-state checkpoint of the last step",
            f"{full_state / 2**20:.1f} MiB",
            f"what one step would write if the state were a plain list ({size / long:.0f} B "
            "per step with a `Transcript`)",
        )
    )

    progress("growing state: resume in a fresh process")
    child = scratch.root / "resume_child.py"
    child.write_text(RESUME_CHILD)
    times: dict[int, list[float]] = {long: [], short: []}
    peaks: dict[int, list[int]] = {long: [], short: []}
    for rep in range(1 + plan.resume_repeats // 3):
        for n in (long, short) if rep % 2 else (short, long):
            elapsed, peak = resume_process(paths[n], n, child)
            if rep:
                times[n].append(elapsed)
                peaks[n].append(peak)
    resumed_long, resumed_short = median(times[long]), median(times[short])
    rows.append(
        Row(
            f"growing state: resume after {long:,} vs {short:,} steps, whole process "
            f"(median of {len(times[long])})",
            ms(resumed_long),
            f"{ms(resumed_short)} after {short:,} steps",
            resumed_long / resumed_short,
            1.1,
        )
    )
    peak = max(peaks[long])
    rows.append(
        Row(
            f"growing state: memory of the resume after {long:,} steps",
            f"{peak / 2**10:.0f} KiB",
            "1 MiB",
            peak / 2**20,
            1.0,
        )
    )

    steps = plan.step_sizes[-1][0]
    progress(f"batched commits and replay, {steps:,} steps")
    record, carry, stored_carry = sample_step(scratch.db("sample"))
    batched: list[float] = []
    raw: list[float] = []
    loops: list[float] = []
    for rep in range(5):
        ours = reference_checkpoints(scratch.db("batched"), steps, record, carry)
        theirs = raw_one_transaction(scratch.db("raw-txn"), steps, record, stored_carry)
        loops.append(batched_steps(scratch.db("batched-loop"), steps))
        if rep:  # the first round warms the caches of both sides
            batched.append(ours)
            raw.append(theirs)
    rows.append(
        Row(
            f"checkpoint of a step, `commit_every={BATCH}`, {steps:,} steps (median of "
            f"{len(batched)})",
            f"{us(median(batched))}/step",
            f"{us(median(raw))}/step raw sqlite3: same serialisation, one transaction for all",
            median(batched) / median(raw),
            2.0,
        )
    )
    details.append(
        Detail(
            f"whole reference loop, `commit_every={BATCH}`, {steps:,} steps",
            f"{us(median(loops))}/step",
            f"{median(loops) / median(raw):.1f}x the raw yardstick above: the checkpoint plus "
            "the loop's own bookkeeping (timing, budget, digest, record)",
        )
    )

    replays: list[float] = []
    raw_replays: list[float] = []
    for _ in range(5):
        replays.append(replay(paths[long]))
        raw_replays.append(raw_replay(paths[long]))
    rows.append(
        Row(
            f"replay {long:,} step records (`CheckpointStore.records`, median of 5)",
            ms(median(replays)),
            f"{ms(median(raw_replays))} raw cursor over the same rows",
            median(replays) / median(raw_replays),
            1.5,
        )
    )

    progress(f"peak memory growth over {long:,} steps (child processes)")
    memory_child = scratch.root / "memory_child.py"
    memory_child.write_text(MEMORY_CHILD)
    for every in (1, 1000):
        growth = memory_growth(scratch.db("memory"), long, every, memory_child)
        mode = "default" if every == 1 else f"commit_every={every}"
        rows.append(
            Row(
                f"peak memory growth over {long:,} steps, {mode}",
                f"{growth / 2**20:.1f} MiB",
                "16 MiB",
                growth / 2**24,
                1.0,
            )
        )
    return rows, details
