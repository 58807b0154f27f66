"""The reference runtime: every way a run stops, budgets, resume, retries, backtracking, records.

Every test runs on the fake clock (``loom_clock``) and the mock LLM, with its checkpoint
database under ``tmp_path``, so each run is the same every time and takes no real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_loom.budget import Budget
from pytest_loom.clock import FakeClock
from pytest_loom.context import StepContext
from pytest_loom.convergence import predicate, score_at_least, score_plateau
from pytest_loom.llm import MockLLM
from pytest_loom.record import BudgetLimit, RunRecord, Stop, StopReason
from pytest_loom.reference import Done, Loop, Stalled
from pytest_loom.script import Match, Rule, Turn
from pytest_loom.store import CheckpointError, CheckpointStore

MakeLoop = Callable[..., Loop]


class Killed(BaseException):
    """The process died: a BaseException, so no loop code may catch it (like SIGKILL)."""


@pytest.fixture
def make_loop(tmp_path: Path, loom_clock: FakeClock) -> Iterator[MakeLoop]:
    """``make_loop(step, db="loop.db", **loop_kwargs)``: a Loop on the fake clock, its own store.

    Two calls with the same ``db`` open two stores on one file, as a restarted process would.
    """
    stores: list[CheckpointStore] = []

    def make(step: Callable[..., Any], *, db: str = "loop.db", **kwargs: Any) -> Loop:
        store = CheckpointStore(tmp_path / db)
        stores.append(store)
        kwargs.setdefault("clock", loom_clock)
        return Loop(step, store=store, **kwargs)

    yield make
    for store in stores:
        store.close()


def mock_llm(
    clock: FakeClock | None = None,
    *,
    cost: float = 0.01,
    input_tokens: int = 100,
    output_tokens: int = 20,
    latency: float = 0.0,
) -> MockLLM:
    """A mock LLM answering every request the same way, whatever is asked."""
    reply = Turn(
        text="ok",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost,
        latency_s=latency,
    )
    return MockLLM(rules=[Rule(Match(), reply)], clock=clock)


def count_up(state: int) -> int:
    return state + 1


def costing(usd: float = 0.0, tokens: int = 0) -> Callable[[int, StepContext], int]:
    """A step that counts up and spends ``usd`` and ``tokens`` (through ``ctx.add_cost``)."""

    def step(state: int, ctx: StepContext) -> int:
        ctx.add_cost(usd, input_tokens=tokens)
        return state + 1

    return step


def asking(calls: int = 1) -> Callable[[int, StepContext], int]:
    """A step that makes ``calls`` LLM calls, then counts up."""

    def step(state: int, ctx: StepContext) -> int:
        for i in range(calls):
            ctx.llm.complete(f"step {ctx.index} call {i + 1}: improve {state}")
        return state + 1

    return step


def crashing_at(k: int, step: Callable[..., Any]) -> Callable[[Any, StepContext], Any]:
    """``step``, except that the process is killed as step ``k`` starts."""

    def crashing(state: Any, ctx: StepContext) -> Any:
        if ctx.index == k:
            raise Killed(f"killed at step {k}")
        return step(state, ctx)

    return crashing


def without_events(record: RunRecord) -> RunRecord:
    steps = tuple(dataclasses.replace(s, events=()) for s in record.steps)
    return dataclasses.replace(record, steps=steps)


# --- how a run stops ---------------------------------------------------------------------------


def test_returning_done_completes_the_run(make_loop: MakeLoop) -> None:
    loop = make_loop(lambda s: Done(s + 1) if s + 1 == 3 else s + 1, budget=Budget(iterations=10))

    outcome = loop.run(0)

    assert outcome.stop == Stop(StopReason.COMPLETED)
    assert (outcome.state, outcome.steps) == (3, 3)
    assert loop.record(outcome.run_id).stop.label == "completed"


def test_predicate_convergence(make_loop: MakeLoop) -> None:
    loop = make_loop(
        count_up, budget=Budget(iterations=10), converge_on=predicate(lambda s: s >= 4)
    )

    outcome = loop.run(0)

    assert outcome.stop.reason is StopReason.CONVERGED
    assert (outcome.state, outcome.steps) == (4, 4)


def test_score_at_least_convergence(make_loop: MakeLoop) -> None:
    loop = make_loop(
        count_up,
        budget=Budget(iterations=10),
        scorer=lambda s: s / 10,
        converge_on=[score_at_least(0.5)],
    )

    outcome = loop.run(0)

    assert outcome.stop.reason is StopReason.CONVERGED
    assert [s.score for s in loop.record(outcome.run_id).steps] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_score_plateau_convergence(make_loop: MakeLoop) -> None:
    scores = [0.2, 0.5, 0.7, 0.705, 0.708, 0.9]
    loop = make_loop(
        lambda state, ctx: scores[ctx.index - 1],
        budget=Budget(iterations=10),
        scorer=lambda s: s,
        converge_on=score_plateau(window=3, min_delta=0.01),
    )

    outcome = loop.run(0.0)

    # the last three scores (0.7, 0.705, 0.708) improved by less than 0.01 in total
    assert outcome.stop.reason is StopReason.CONVERGED
    assert (outcome.steps, outcome.state) == (5, 0.708)


def test_usd_budget_exhausted(make_loop: MakeLoop) -> None:
    loop = make_loop(costing(usd=0.25), budget=Budget(usd=1.0))

    outcome = loop.run(0)

    assert outcome.stop == Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit.USD)
    assert outcome.stop.label == "budget_exhausted(usd)"
    assert (outcome.steps, outcome.spend.usd) == (4, 1.0)


def test_iterations_budget_exhausted(make_loop: MakeLoop) -> None:
    loop = make_loop(count_up, budget=Budget(iterations=3))

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(iterations)"
    assert (outcome.steps, outcome.spend.iterations) == (3, 3)


def test_tokens_budget_exhausted(make_loop: MakeLoop) -> None:
    loop = make_loop(costing(tokens=30), budget=Budget(tokens=90))

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(tokens)"
    assert (outcome.steps, outcome.spend.tokens) == (3, 90)


def test_wall_clock_budget_exhausted_by_llm_latency(
    make_loop: MakeLoop, loom_clock: FakeClock
) -> None:
    llm = mock_llm(loom_clock, latency=10.0)
    loop = make_loop(asking(1), budget=Budget(wall_clock=25.0), llm=llm)

    outcome = loop.run(0)

    # steps start at 0s, 10s and 20s; the third ends at 30s, past the 25s limit
    assert outcome.stop.label == "budget_exhausted(wall_clock)"
    assert outcome.steps == 3
    record = loop.record(outcome.run_id)
    assert [s.start_s for s in record.steps] == [0.0, 10.0, 20.0]
    assert record.totals.elapsed_s == outcome.spend.wall_clock == 30.0


def test_wall_clock_budget_exhausted_by_step_seconds(make_loop: MakeLoop) -> None:
    loop = make_loop(count_up, budget=Budget.of(wall_clock="150s"), step_seconds=60.0)

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(wall_clock)"
    assert outcome.steps == 3
    assert [s.duration_s for s in loop.record(outcome.run_id).steps] == [60.0, 60.0, 60.0]
    assert outcome.spend.wall_clock == 180.0


def test_stall_after_unchanged_state(make_loop: MakeLoop) -> None:
    # the state changes in steps 1 and 2, then stays at 2
    loop = make_loop(lambda s: min(s + 1, 2), budget=Budget(iterations=10), stall_after=2)

    outcome = loop.run(0)

    assert outcome.stop.reason is StopReason.STALLED
    assert outcome.stop.detail == "state unchanged for 2 steps"
    assert (outcome.steps, outcome.state) == (4, 2)


def test_stall_after_counts_a_first_step_that_changes_nothing(make_loop: MakeLoop) -> None:
    calls: list[int] = []

    def no_progress(state: int) -> int:
        calls.append(state)
        return state

    loop = make_loop(no_progress, budget=Budget(iterations=10), stall_after=1)

    outcome = loop.run(5)

    assert outcome.stop.reason is StopReason.STALLED
    assert outcome.steps == len(calls) == 1


def test_step_raising_stalled_stops_the_run(make_loop: MakeLoop) -> None:
    def step(state: int, ctx: StepContext) -> int:
        if ctx.index == 3:
            raise Stalled("no idea left")
        return state + 1

    loop = make_loop(step, budget=Budget(iterations=10))

    outcome = loop.run(0)

    assert outcome.stop == Stop(StopReason.STALLED, detail="no idea left")
    assert (outcome.steps, outcome.state) == (3, 2)
    assert loop.record(outcome.run_id).steps[-1].error is None


def test_step_raising_fails_the_run_and_keeps_the_failed_step(make_loop: MakeLoop) -> None:
    def step(state: int, ctx: StepContext) -> int:
        if ctx.index == 3:
            raise ValueError("bad input 42")
        return state + 1

    loop = make_loop(step, budget=Budget(iterations=10))

    outcome = loop.run(0)

    assert outcome.stop.reason is StopReason.FAILED
    assert outcome.stop.error_type == "ValueError"
    assert outcome.stop.label == "failed(ValueError)"
    assert "bad input 42" in (outcome.stop.raw_exception or "")
    assert outcome.state == 2  # the last good state
    record = loop.record(outcome.run_id)
    assert [s.index for s in record.steps] == [1, 2, 3]
    assert record.steps[-1].error == "ValueError: bad input 42"
    assert [s.error for s in record.steps[:2]] == [None, None]


# --- estimates: a step that would overspend is not started -------------------------------------


def test_step_estimated_over_usd_budget_is_not_started(make_loop: MakeLoop) -> None:
    started: list[int] = []

    def step(state: int, ctx: StepContext) -> int:
        started.append(ctx.index)
        ctx.add_cost(0.3)
        return state + 1

    loop = make_loop(step, budget=Budget(usd=1.0))

    outcome = loop.run(0)

    # after 3 steps $0.90 is spent; a 4th at $0.30 would cross $1.00, so it never starts
    assert outcome.stop.label == "budget_exhausted(usd)"
    assert "estimated" in (outcome.stop.detail or "")
    assert started == [1, 2, 3]
    assert outcome.spend.usd == 0.9


def test_step_estimated_over_token_budget_is_not_started(make_loop: MakeLoop) -> None:
    started: list[int] = []

    def step(state: int, ctx: StepContext) -> int:
        started.append(ctx.index)
        ctx.add_cost(input_tokens=30, output_tokens=10)
        return state + 1

    loop = make_loop(step, budget=Budget(tokens=100))

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(tokens)"
    assert started == [1, 2]
    assert outcome.spend.tokens == 80


@pytest.mark.parametrize("step_usd", [0.1, 0.07, 0.25, 0.3, 0.333, 0.5, 0.9])
def test_uniform_step_costs_never_overspend_the_usd_budget(
    make_loop: MakeLoop, step_usd: float
) -> None:
    loop = make_loop(costing(usd=step_usd), budget=Budget(usd=1.0))

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(usd)"
    assert outcome.spend.usd <= 1.0
    assert outcome.spend.usd + step_usd > 1.0  # and it did not stop while a step still fit
    assert loop.record(outcome.run_id).totals.cost_usd == outcome.spend.usd


def test_custom_estimate_decides_whether_the_next_step_starts(make_loop: MakeLoop) -> None:
    seen: list[int] = []

    def estimate(state: int) -> tuple[float, int]:
        seen.append(state)
        return 0.5, 0

    loop = make_loop(costing(usd=0.1), budget=Budget(usd=1.0), estimate=estimate)

    outcome = loop.run(0)

    # steps really cost $0.10, but each is estimated at $0.50: it stops at $0.60 spent
    assert outcome.stop.label == "budget_exhausted(usd)"
    assert (outcome.steps, outcome.spend.usd) == (6, 0.6)
    assert seen == [0, 1, 2, 3, 4, 5, 6]


def test_custom_estimate_over_budget_stops_before_the_first_step(make_loop: MakeLoop) -> None:
    loop = make_loop(count_up, budget=Budget(tokens=1000), estimate=lambda s: (0.0, 5000))

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(tokens)"
    assert outcome.steps == 0
    assert loop.record(outcome.run_id).steps == ()


def test_a_run_is_freed_as_soon_as_it_is_dropped() -> None:
    """The loop and its LLM hold no reference cycle: dropping them frees the run's objects (its
    requests, calls and store) at once, not at the cyclic garbage collector's next pass."""
    gc.collect()
    gc.disable()
    try:
        llm = mock_llm()
        store = CheckpointStore(":memory:")
        loop = Loop(asking(2), budget=Budget(iterations=3), store=store, llm=llm)
        outcome = loop.run(0)
        assert [len(s.llm_calls) for s in loop.record(outcome.run_id).steps] == [2, 2, 2]
        store.close()
        dropped = [weakref.ref(o) for o in (loop, llm, store)]
        del loop, llm, store
        assert [ref() for ref in dropped] == [None, None, None]
    finally:
        gc.enable()


def test_an_llm_shared_by_two_loops_records_each_call_in_the_loop_that_made_it() -> None:
    llm = mock_llm()
    with CheckpointStore(":memory:") as store:
        first = Loop(asking(1), budget=Budget(iterations=1), store=store, llm=llm)
        second = Loop(asking(2), budget=Budget(iterations=1), store=store, llm=llm)
        one, two = first.run(0, run_id="one"), second.run(0, run_id="two")
        assert [len(s.llm_calls) for s in first.record(one.run_id).steps] == [1]
        assert [len(s.llm_calls) for s in second.record(two.run_id).steps] == [2]


# --- the budget is checked before each LLM call inside a step ----------------------------------


def test_wall_clock_runs_out_mid_step(make_loop: MakeLoop, loom_clock: FakeClock) -> None:
    llm = mock_llm(loom_clock, latency=10.0)
    loop = make_loop(asking(5), budget=Budget(wall_clock=25.0), llm=llm)

    outcome = loop.run(0)

    # calls start at 0s, 10s, 20s; at 30s the 4th call is refused
    assert outcome.stop.label == "budget_exhausted(wall_clock)"
    assert len(llm.requests) == 3
    (step,) = loop.record(outcome.run_id).steps
    assert len(step.llm_calls) == 3
    assert "budget exhausted" in (step.error or "")
    assert outcome.state == 0  # the interrupted step produced no new state


def test_usd_runs_out_mid_step(make_loop: MakeLoop) -> None:
    llm = mock_llm(cost=0.4)
    loop = make_loop(asking(5), budget=Budget(usd=1.0), llm=llm)

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(usd)"
    assert len(llm.requests) == 3  # no call is made once $1.00 is reached
    (step,) = loop.record(outcome.run_id).steps
    assert step.cost_usd == outcome.spend.usd == 1.2


# --- resume after a crash ----------------------------------------------------------------------


def test_resume_after_crash_continues_where_it_stopped(
    make_loop: MakeLoop, loom_clock: FakeClock
) -> None:
    def loop_on(db: str, step: Callable[..., Any]) -> Loop:
        return make_loop(
            step,
            db=db,
            budget=Budget(iterations=6),
            llm=mock_llm(loom_clock, latency=1.5),
            scorer=lambda s: s / 10,
            step_seconds=0.5,
        )

    with pytest.raises(Killed):
        loop_on("crash.db", crashing_at(4, asking(1))).run(0)

    resumed = loop_on("crash.db", asking(1))
    outcome = resumed.resume("run-1")

    assert outcome.stop.label == "budget_exhausted(iterations)"
    assert (outcome.state, outcome.steps) == (6, 6)
    record = resumed.record("run-1")
    assert [s.index for s in record.steps] == [1, 2, 3, 4, 5, 6]
    assert [s.events for s in record.steps] == [(), (), (), ("resumed",), (), ()]
    assert record.steps[3].start_s == 6.0  # 3 steps of 1.5s + 0.5s each, carried over

    uninterrupted = loop_on("straight.db", asking(1))
    straight = uninterrupted.record(uninterrupted.run(0).run_id)
    assert without_events(record) == without_events(straight)
    assert record != straight  # only the "resumed" event tells them apart


@pytest.mark.parametrize(
    ("budget", "step_seconds"),
    [
        (Budget(iterations=5), 0.0),
        (Budget(usd=1.0), 0.0),
        (Budget(tokens=600), 0.0),
        (Budget(wall_clock=50.0), 10.0),
    ],
    ids=["iterations", "usd", "tokens", "wall_clock"],
)
def test_resume_never_grants_spent_budget_again(
    make_loop: MakeLoop, budget: Budget, step_seconds: float
) -> None:
    llm_cost = {"cost": 0.25, "input_tokens": 100, "output_tokens": 20}
    options = {"budget": budget, "step_seconds": step_seconds}
    crashed = make_loop(
        crashing_at(3, asking(1)), db="crash.db", llm=mock_llm(**llm_cost), **options
    )
    with pytest.raises(Killed):
        crashed.run(0)

    resumed = make_loop(asking(1), db="crash.db", llm=mock_llm(**llm_cost), **options)
    outcome = resumed.resume("run-1")
    straight = make_loop(asking(1), db="straight.db", llm=mock_llm(**llm_cost), **options)
    expected = straight.run(0)

    assert outcome.stop == expected.stop
    assert outcome.steps == expected.steps
    assert outcome.spend == expected.spend
    assert resumed.record("run-1").totals == straight.record("run-1").totals


def test_resume_with_iterations_budget_runs_only_the_rest(make_loop: MakeLoop) -> None:
    calls: list[int] = []

    def step(state: int, ctx: StepContext) -> int:
        calls.append(ctx.index)
        return state + 1

    crashed = make_loop(crashing_at(3, step), budget=Budget(iterations=5))
    with pytest.raises(Killed):
        crashed.run(0)

    outcome = make_loop(step, budget=Budget(iterations=5)).resume("run-1")

    assert outcome.steps == 5  # not 2 + 5
    assert calls == [1, 2, 3, 4, 5]
    assert outcome.spend.iterations == 5


def test_resume_with_usd_budget_spends_only_the_rest(make_loop: MakeLoop) -> None:
    crashed = make_loop(crashing_at(3, costing(usd=0.25)), budget=Budget(usd=1.0))
    with pytest.raises(Killed):
        crashed.run(0)

    resumed = make_loop(costing(usd=0.25), budget=Budget(usd=1.0))
    outcome = resumed.resume("run-1")

    assert outcome.stop.label == "budget_exhausted(usd)"
    assert (outcome.steps, outcome.spend.usd) == (4, 1.0)
    assert [s.cumulative_cost_usd for s in resumed.record("run-1").steps] == [
        0.25,
        0.5,
        0.75,
        1.0,
    ]


def test_the_last_step_and_the_ending_commit_together(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    class DiesWhileFinishing(CheckpointStore):
        def commit_step(self, *args: Any, stop: Any = None, **kwargs: Any) -> None:
            if stop is not None:
                raise Killed("killed while committing the last step")
            super().commit_step(*args, **kwargs)

    calls: list[int] = []

    def step(state: int) -> int | Done:
        calls.append(state)
        return Done(state + 1) if state + 1 == 2 else state + 1

    with DiesWhileFinishing(tmp_path / "run.db") as dying, pytest.raises(Killed):
        Loop(step, budget=Budget(iterations=10), store=dying).run(0)

    with CheckpointStore(tmp_path / "run.db") as store:
        assert store.last_step("run-1").n == 1  # nothing of step 2 was half-written
        outcome = Loop(step, budget=Budget(iterations=10), store=store).resume("run-1")

    assert outcome.stop.label == "completed"
    assert calls == [0, 1, 1]  # step 2 ran again once, then the run ended


def test_a_crashed_run_reads_back_as_paused(make_loop: MakeLoop) -> None:
    loop = make_loop(crashing_at(3, costing()), budget=Budget(iterations=5))
    with pytest.raises(Killed):
        loop.run(0)

    record = loop.record("run-1")

    assert record.stop.reason is StopReason.PAUSED
    assert len(record.steps) == 2


def test_resuming_a_finished_run_is_refused(make_loop: MakeLoop) -> None:
    loop = make_loop(count_up, budget=Budget(iterations=2))
    loop.run(0)

    with pytest.raises(CheckpointError, match=r"already ended \(budget_exhausted\(iterations\)\)"):
        make_loop(count_up, budget=Budget(iterations=2)).resume("run-1")


def test_resuming_an_unknown_run_names_the_known_runs(make_loop: MakeLoop) -> None:
    loop = make_loop(count_up, budget=Budget(iterations=1))
    loop.run(0)
    loop.run(0, run_id="nightly")

    with pytest.raises(CheckpointError, match=r"no run 'missing' \(runs here: run-1, nightly\)"):
        loop.resume("missing")


def test_a_run_that_crashed_before_its_first_step_resumes_from_the_initial_state(
    make_loop: MakeLoop,
) -> None:
    loop = make_loop(crashing_at(1, costing()), budget=Budget(iterations=3))
    with pytest.raises(Killed):
        loop.run(10)
    assert loop.record("run-1").steps == ()

    outcome = make_loop(count_up, budget=Budget(iterations=3)).resume("run-1")

    assert (outcome.steps, outcome.state) == (3, 13)
    assert loop.record("run-1").steps[0].events == ("resumed",)


# --- retries -----------------------------------------------------------------------------------


def test_llm_error_is_retried(make_loop: MakeLoop) -> None:
    llm = mock_llm()
    llm.inject_error(1, "rate_limit")
    loop = make_loop(asking(1), budget=Budget(iterations=2), llm=llm, retries=1)

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(iterations)"
    first = loop.record(outcome.run_id).steps[0]
    assert first.events == ("retried",)
    assert [c.error for c in first.llm_calls] == ["rate_limit", None]
    assert first.error is None


def test_retried_step_counts_the_cost_of_failed_attempts(make_loop: MakeLoop) -> None:
    llm = mock_llm(cost=0.01)
    llm.inject_error(2, "server_error")  # the 2nd call of the 1st attempt fails
    loop = make_loop(asking(2), budget=Budget(iterations=1), llm=llm, retries=2)

    outcome = loop.run(0)

    (step,) = loop.record(outcome.run_id).steps
    assert step.events == ("retried",)
    assert len(step.llm_calls) == 4  # 2 of the failed attempt, 2 of the retry
    assert step.cost_usd == 0.03  # the failed attempt's successful call is paid for too
    assert step.input_tokens == 300
    assert outcome.spend.usd == 0.03


def test_llm_error_fails_the_run_when_retries_run_out(make_loop: MakeLoop) -> None:
    llm = mock_llm()
    for call in (1, 2, 3):
        llm.inject_error(call, "rate_limit")
    loop = make_loop(asking(1), budget=Budget(iterations=3), llm=llm, retries=2)

    outcome = loop.run(0)

    assert outcome.stop.label == "failed(RateLimitError)"
    (step,) = loop.record(outcome.run_id).steps
    assert step.events == ("retried", "retried")
    assert (step.error or "").startswith("RateLimitError: simulated rate_limit")


# --- backtracking to the best checkpoint -------------------------------------------------------


def scripted(moves: dict[int, Callable[[int], int]], seen: list[int]) -> Callable[..., int]:
    """A step that records the state it starts from and applies ``moves[ctx.index]`` (+1)."""

    def step(state: int, ctx: StepContext) -> int:
        seen.append(state)
        return moves.get(ctx.index, lambda s: s + 1)(state)

    return step


def fail(state: int) -> int:
    raise ValueError(f"cannot improve {state}")


def test_backtrack_on_error_restarts_from_the_best_state(make_loop: MakeLoop) -> None:
    seen: list[int] = []
    loop = make_loop(
        scripted({1: lambda s: 10, 2: lambda s: 15, 3: fail}, seen),
        budget=Budget(iterations=5),
        scorer=lambda s: float(s // 10),  # 10 and 15 score the same: step 1 stays the best
        backtrack=True,
    )

    outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(iterations)"
    failed = loop.record(outcome.run_id).steps[2]
    assert failed.error == "ValueError: cannot improve 15"
    assert failed.events == ("backtracked",)
    assert seen == [0, 10, 15, 10, 11]  # step 4 starts from step 1's state, not from 15
    assert outcome.state == 12


def test_failure_once_max_backtracks_are_used_ends_the_run(make_loop: MakeLoop) -> None:
    seen: list[int] = []
    loop = make_loop(
        scripted({1: lambda s: 10, 2: lambda s: 4, 3: fail}, seen),
        budget=Budget(iterations=4),
        scorer=float,
        backtrack=True,
        max_backtracks=1,
    )

    outcome = loop.run(0)

    # step 2 regresses to 4 (backtracked), step 3 fails (not backtracked: max_backtracks=1)
    assert outcome.stop.label == "failed(ValueError)"
    assert seen == [0, 10, 10]
    record = loop.record(outcome.run_id)
    assert [s.events for s in record.steps] == [(), ("backtracked",), ()]


def test_backtrack_on_score_regression(make_loop: MakeLoop) -> None:
    seen: list[int] = []
    loop = make_loop(
        scripted({1: lambda s: 5, 2: lambda s: 8, 3: lambda s: 3}, seen),
        budget=Budget(iterations=4),
        scorer=float,
        backtrack=True,
    )

    outcome = loop.run(0)

    record = loop.record(outcome.run_id)
    assert [s.score for s in record.steps] == [5.0, 8.0, 3.0, 9.0]
    assert [s.events for s in record.steps] == [(), (), ("backtracked",), ()]
    assert seen == [0, 5, 8, 8]  # step 4 starts from 8, not from the regressed 3
    assert outcome.state == 9


def test_max_backtracks_limits_backtracking(make_loop: MakeLoop) -> None:
    seen: list[int] = []
    worse = {i: (lambda s: s - 1) for i in (2, 3, 4)}
    loop = make_loop(
        scripted({1: lambda s: 10, **worse}, seen),
        budget=Budget(iterations=4),
        scorer=float,
        backtrack=True,
        max_backtracks=2,
    )

    outcome = loop.run(0)

    record = loop.record(outcome.run_id)
    assert [s.events for s in record.steps] == [(), ("backtracked",), ("backtracked",), ()]
    assert seen == [0, 10, 10, 10]
    assert outcome.state == 9  # the third regression is kept


# --- async steps and one-parameter steps -------------------------------------------------------


async def async_step(state: int, ctx: StepContext) -> int | Done:
    reply = await ctx.llm.acomplete(f"improve {state}")
    assert reply.text == "ok"
    return Done(state + 1) if state + 1 == 3 else state + 1


def test_async_step_runs_with_run(make_loop: MakeLoop, loom_clock: FakeClock) -> None:
    loop = make_loop(async_step, budget=Budget(iterations=10), llm=mock_llm(loom_clock, latency=2))

    outcome = loop.run(0)

    assert outcome.stop.label == "completed"
    assert (outcome.state, outcome.steps) == (3, 3)
    record = loop.record(outcome.run_id)
    assert record.totals.llm_calls == 3
    assert record.totals.elapsed_s == 6.0


def test_async_step_runs_with_arun(make_loop: MakeLoop) -> None:
    loop = make_loop(async_step, budget=Budget(iterations=10), llm=mock_llm())

    outcome = asyncio.run(loop.arun(0))

    assert outcome.stop.label == "completed"
    assert outcome.state == 3


def test_async_step_crash_and_aresume(make_loop: MakeLoop) -> None:
    async def crashing(state: int, ctx: StepContext) -> int | Done:
        if ctx.index == 2:
            raise Killed("killed at step 2")
        return await async_step(state, ctx)

    loop = make_loop(crashing, db="crash.db", budget=Budget(iterations=10), llm=mock_llm())
    with pytest.raises(Killed):
        asyncio.run(loop.arun(0))

    resumed = make_loop(async_step, db="crash.db", budget=Budget(iterations=10), llm=mock_llm())
    outcome = asyncio.run(resumed.aresume("run-1"))

    assert outcome.stop.label == "completed"
    assert (outcome.state, outcome.steps) == (3, 3)
    assert resumed.record("run-1").steps[1].events == ("resumed",)


def test_sync_step_with_one_parameter(make_loop: MakeLoop) -> None:
    received: list[Any] = []

    def step(state: dict[str, int]) -> dict[str, int]:
        received.append(state)
        return {"n": state["n"] + 1}

    loop = make_loop(step, budget=Budget(iterations=2))

    outcome = loop.run({"n": 0})

    assert outcome.state == {"n": 2}
    assert received == [{"n": 0}, {"n": 1}]


# --- the run record ----------------------------------------------------------------------------


def test_record_totals_are_the_sum_of_the_steps(make_loop: MakeLoop, loom_clock: FakeClock) -> None:
    llm = mock_llm(loom_clock, cost=0.013, input_tokens=120, output_tokens=33, latency=1.5)
    loop = make_loop(asking(2), budget=Budget(iterations=4), llm=llm, step_seconds=0.5)

    outcome = loop.run(0)
    record = loop.record(outcome.run_id)

    steps = record.steps
    assert record.totals.steps == len(steps) == outcome.steps == 4
    assert record.totals.llm_calls == sum(len(s.llm_calls) for s in steps) == 8
    assert record.totals.input_tokens == sum(s.input_tokens for s in steps) == 960
    assert record.totals.output_tokens == sum(s.output_tokens for s in steps) == 264
    assert record.totals.cost_usd == pytest.approx(sum(s.cost_usd for s in steps))
    assert record.totals.cost_usd == outcome.spend.usd == 0.104
    assert record.totals.elapsed_s == sum(s.duration_s for s in steps) == 14.0


def test_cumulative_cost_is_monotone_and_ends_at_the_total(make_loop: MakeLoop) -> None:
    costs = [0.05, 0.0, 0.2, 0.01, 0.0]

    def step(state: int, ctx: StepContext) -> int:
        ctx.add_cost(costs[ctx.index - 1])
        return state + 1

    loop = make_loop(step, budget=Budget(iterations=5))

    record = loop.record(loop.run(0).run_id)

    cumulative = [s.cumulative_cost_usd for s in record.steps]
    assert cumulative == sorted(cumulative)
    assert cumulative == [0.05, 0.05, 0.25, 0.26, 0.26]
    assert cumulative[-1] == record.totals.cost_usd


def test_same_inputs_give_byte_identical_records(
    make_loop: MakeLoop, loom_clock: FakeClock
) -> None:
    def run(db: str) -> bytes:
        llm = mock_llm(loom_clock, cost=0.0123, latency=0.7)
        loop = make_loop(
            asking(2),
            db=db,
            budget=Budget(usd=0.2, wall_clock=60.0),
            llm=llm,
            scorer=lambda s: s / 10,
            converge_on=score_at_least(0.9),
            step_seconds=1.25,
            scenario="determinism",
        )
        return loop.record(loop.run(0).run_id).to_json()

    first, second = run("first.db"), run("second.db")

    assert first == second
    assert b'"run_id": "run-1"' in first


def test_predicate_convergence_record_does_not_depend_on_the_process(
    make_loop: MakeLoop,
) -> None:
    def build(db: str) -> Loop:
        # What an entry point does in each test process: build the rule afresh.
        def good_enough(state: int) -> bool:
            return state >= 3

        return make_loop(
            count_up, db=db, budget=Budget(iterations=10), converge_on=predicate(good_enough)
        )

    first, second = build("first.db"), build("second.db")  # both alive: distinct functions

    assert first.record(first.run(0).run_id).to_json() == (
        second.record(second.run(0).run_id).to_json()
    )


def test_state_that_is_not_json_serialisable_is_a_type_error(make_loop: MakeLoop) -> None:
    loop = make_loop(lambda s: {"seen": {1, 2}}, budget=Budget(iterations=3))

    with pytest.raises(TypeError, match="loop state must be JSON-serialisable"):
        loop.run({})


def test_a_step_catching_every_exception_cannot_swallow_the_budget(
    tmp_path: Path, loom_clock: FakeClock
) -> None:
    llm = MockLLM(rules=[Rule(Match(), Turn(text="ok", latency_s=60.0))], clock=loom_clock)

    def stubborn(state: int, ctx: StepContext) -> int:
        for _ in range(10):
            with contextlib.suppress(Exception):  # a broad handler, as real loops have
                ctx.llm.complete("again")
        return state + 1

    with CheckpointStore(tmp_path / "run.db") as store:
        loop = Loop(stubborn, budget=Budget.of(wall_clock="3m"), store=store, llm=llm)
        outcome = loop.run(0)

    assert outcome.stop.label == "budget_exhausted(wall_clock)"
    assert len(llm.calls) == 3


def test_tool_arguments_are_recorded_as_called(tmp_path: Path, loom_clock: FakeClock) -> None:
    def step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        files = {"a.py": "old"}
        ctx.tool("read", lambda files: dict(files), files=files)
        files["a.py"] = "new"  # mutated after the call
        return {"n": state["n"] + 1}

    with CheckpointStore(tmp_path / "run.db") as store:
        loop = Loop(step, budget=Budget(iterations=1), store=store)
        record = loop.record(loop.run({"n": 0}).run_id)

    assert record.steps[0].tool_calls[0].args == {"files": {"a.py": "old"}}
