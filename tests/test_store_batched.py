"""Batched commits where users reach them, and the side-by-side benchmark of the seed runtimes.

``@pytest.mark.loom_store(commit_every=K)`` configures the ``loom_store`` fixture: these tests
run it in real pytest sessions (pytester, in subprocesses), crash one of them for real
(``os._exit`` in the middle of a run: no close, no flush) and resume what the crash left through
the marker's ``golden=``. Nothing here times anything; the benchmark test checks what the rows
say and that each runtime really ran, never a figure.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pytest_loom.budget import Budget
from pytest_loom.reference import Loop
from pytest_loom.store import CheckpointStore

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

LOOP = """
import os

import pytest

from pytest_loom import Budget, Loop, Transcript

CRASH_AT = int(os.environ.get("CRASH_AT", "0"))


def step(state, ctx):
    if ctx.index == CRASH_AT:
        os._exit(9)  # a real crash: the process dies with its open batch
    state["messages"].append({"step": ctx.index})
    return {"turns": state["turns"] + 1, "messages": state["messages"]}


def loop(store):
    return Loop(step, store=store, budget=Budget(iterations=20))
"""

CRASHING = """
from loops import loop
from pytest_loom import Transcript


@pytest.mark.loom_store(commit_every=5)
def test_run(loom_store):
    assert loom_store.commit_every == 5
    loop(loom_store).run({"turns": 0, "messages": Transcript()}, run_id="nightly")
"""

RESUMING = """
from loops import loop


@pytest.mark.loom_store(golden="crashed.db", commit_every=5)
def test_resume(loom_store):
    assert loom_store.commit_every == 5
    # Batches 0-4 and 5-9 committed; 10 and 11 were in the open batch when step 12 crashed.
    assert loom_store.run("nightly").status == "running"
    assert loom_store.last_step("nightly").n == 9
    outcome = loop(loom_store).resume("nightly")
    assert (outcome.steps, outcome.stop.label) == (20, "budget_exhausted(iterations)")
    assert outcome.state["turns"] == 20
    assert [m["step"] for m in outcome.state["messages"]] == list(range(1, 21))
    record = loop(loom_store).record("nightly")
    assert [s.index for s in record.steps] == list(range(1, 21))
    assert record.steps[9].events == ("resumed",)
"""


def write_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(loops=LOOP)
    pytester.makeini("[pytest]\npythonpath = .\n")


def test_the_marker_batches_commits_and_a_real_crash_loses_only_the_open_batch(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(pytester)
    pytester.makepyfile(test_crash="import pytest\n" + CRASHING)
    monkeypatch.setenv("CRASH_AT", "12")
    crashed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    assert crashed.ret == 9  # the session died with the run, as a killed CI job would
    (left,) = pytester.path.glob("runpytest-[0-9]*/test_run0/loom_store.db")  # the crash left
    for suffix in ("", "-wal"):
        if Path(f"{left}{suffix}").exists():
            shutil.copyfile(f"{left}{suffix}", pytester.path / f"crashed.db{suffix}")
    (pytester.path / "test_crash.py").unlink()

    pytester.makepyfile(test_resume="import pytest\n" + RESUMING)
    monkeypatch.setenv("CRASH_AT", "0")
    resumed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    resumed.assert_outcomes(passed=1)


def test_a_batched_run_stores_what_a_per_step_run_stores(pytester: pytest.Pytester) -> None:
    write_project(pytester)
    pytester.makepyfile(
        test_same="""
        import pytest
        from loops import loop
        from pytest_loom import Transcript

        def run(store):
            loop(store).run({"turns": 0, "messages": Transcript()}, run_id="r")
            return list(store.records("r")), store.run("r")

        @pytest.mark.loom_store(commit_every=7)
        def test_batched(loom_store, loom_clock, tmp_path):
            from pytest_loom import CheckpointStore

            with CheckpointStore(tmp_path / "one.db") as one:
                assert run(loom_store) == run(one)
            assert not loom_store._db.in_transaction  # the run's end committed its batch
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("commit_every=0", "commit_every=0: expected a whole number of steps >= 1"),
        ("commit_every='10'", "commit_every='10': expected a whole number of steps >= 1"),
        ("durability='paranoid'", "durability='paranoid': expected one of"),
        ("batch=10", "got batch: it takes golden=, durability= and commit_every= only"),
        ("golden='missing.db'", "golden checkpoint database"),
    ],
)
def test_bad_marker_arguments_fail_the_test_with_what_to_fix(
    pytester: pytest.Pytester, arguments: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.loom_store({arguments})
        def test_it(loom_store):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.loom_store*{message}*"])
    assert "store.py" not in result.stdout.str()  # no traceback from our internals


def test_a_golden_copy_can_be_batched(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "golden.db") as golden:
        Loop(lambda n: n + 1, store=golden, budget=Budget(iterations=3)).run(0, run_id="r")
    with CheckpointStore.from_golden(
        tmp_path / "golden.db", tmp_path / "copy.db", commit_every=4
    ) as copy:
        assert copy.commit_every == 4
        assert copy.last_step("r").n == 3  # type: ignore[union-attr]


# --- the seed runtimes' benchmark ---------------------------------------------------------------


@pytest.fixture
def seed_benchmark(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``benchmarks/seed_runtimes.py`` imported as ``run.py`` imports it (``run`` beside it)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import seed_runtimes

    yield seed_runtimes
    for name in ("seed_runtimes", "run"):
        sys.modules.pop(name, None)


def test_the_seed_runtimes_run_and_resume_through_their_own_apis(
    seed_benchmark: ModuleType, tmp_path: Path
) -> None:
    import seed_runtimes

    for seed in seed_runtimes.SEEDS:
        pytest.importorskip(seed.module)
        where = tmp_path / seed.name
        where.mkdir()
        seed.run(where, 6)
        written = {p.name for p in where.iterdir()}
        assert written, f"{seed.name} wrote no checkpoint under {where}"
        seed.resume(where, 6)  # each driver checks the runtime ran exactly one more step
        seed.resume(where, 7)


def test_the_seed_rows_name_both_yardsticks_and_skip_what_is_missing(
    seed_benchmark: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import run
    import seed_runtimes

    for seed in seed_runtimes.SEEDS:
        pytest.importorskip(seed.module)
    absent = dataclasses.replace(seed_runtimes.SEEDS[1], name="nosuch", module="no_such_module")
    monkeypatch.setattr(seed_runtimes, "SEEDS", (seed_runtimes.SEEDS[1], absent))
    monkeypatch.setattr(seed_runtimes, "REPEATS", 1)
    monkeypatch.setattr(seed_runtimes, "RESUMES", 1)
    plan = run.Plan(((8, 1),), 8, 8, 1, 1, 1)
    rows, details = seed_runtimes.measure(plan, run.Scratch(tmp_path))

    assert [r.what.split(",")[0] for r in rows] == [
        "loom-runner per-step cost",
        "loom-runner resume + 1 step after 8 steps (median of 1; no target)",
    ]
    assert all(r.target is None and r.passed and r.ratio > 0 for r in rows)
    assert all("raw sqlite3" in r.yardstick and "reference runtime" in r.yardstick for r in rows)
    assert [d.what for d in details] == ["nosuch: not measured"]
    assert "not installed (no module `no_such_module`)" in details[0].note
