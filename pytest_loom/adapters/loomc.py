"""The loomc adapter: golden scenarios for loops written with loomc's ``@loop`` decorator.

loomc (``pip install loomc``) turns one iteration ``state -> state`` into a loop with a budget,
convergence detectors, backtracking, stall escalation and a SQLite checkpoint after every step.
It never calls an LLM itself, keeps no tokens, and its stored run status is not always what the
caller saw. This adapter drives the real decorated function inside the lab:

* the scenario's entry point returns the decorated function (a ``LoopRunner``); it reaches the
  mock LLM through whatever ``build(lab)`` hands the user's code, and the scenario's budget
  through :func:`loomc_budget`;
* loomc's store is put under ``lab.workdir`` (``.loomc/checkpoints.db``, loomc's own layout),
  whatever directory the function was decorated in, and the run is named after the scenario;
* each iteration is wrapped so the lab sees step boundaries (``lab.begin_step``, faults,
  ``clock.step``); a crash resumes through ``fn.resume(run_id)``;
* the record is read back from loomc's ``runs`` and ``steps`` tables and the lab's observations
  (LLM calls, fake time), with the caller's view (the return, or the exception) deciding the stop.

How each field is built and what loomc does on its own terms: ``docs/runtimes/loomc.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import loomc
from loomc.budget import BudgetLedger
from loomc.checkpoint import SQLiteCheckpointStore
from loomc.loop import AsyncLoopRunner, LoopRunner

from ..lab import Lab, Observed
from ..record import (
    BudgetLimit,
    Event,
    RunRecord,
    RuntimeInfo,
    Step,
    Stop,
    StopReason,
    digest,
    sum_usd,
    totals_of,
)
from ..runtimes import RuntimeNotAvailable, build_entry, wrong_entry
from ..scenario import Scenario

__all__ = ["LoomcRuntime", "loomc_budget", "store_path"]

RUNTIME_NAME = "loomc"

_UNSEEN = Observed(start_s=0.0, end_s=0.0, llm_calls=())


def loomc_budget(lab: Lab) -> loomc.Budget | None:
    """The scenario's budget as loomc's ``Budget``, or ``None`` when the scenario sets none.

    Decorate the loop with it in the entry point: ``@loop(budget=loomc_budget(lab), ...)``.
    loomc has no token budget, so a ``tokens`` limit is a ``ValueError`` (a scenario that sets
    ``budget.tokens`` fails before the loop is built, naming the line).
    """
    budget = lab.budget
    if budget.tokens is not None:
        raise ValueError("loomc has no token budget: its Budget limits usd, iterations, wall_clock")
    if budget.usd is None and budget.iterations is None and budget.wall_clock is None:
        return None
    wall_clock = None
    if budget.wall_clock is not None:
        # loomc reads "<number><s|m|h>" with a plain decimal number (no exponent).
        wall_clock = format(budget.wall_clock, "f").rstrip("0").rstrip(".") + "s"
    return loomc.Budget(usd=budget.usd, iterations=budget.iterations, wall_clock=wall_clock)


def store_path(lab: Lab) -> Path:
    """Where a scenario's loomc checkpoints live: loomc's default layout, under ``lab.workdir``."""
    return lab.workdir / ".loomc" / "checkpoints.db"


class _ScenarioStore(SQLiteCheckpointStore):  # type: ignore[misc]  # loomc ships no types
    """loomc's own SQLite store, except that the run it creates is named ``run_id``.

    loomc names a new run with a random id, and ``fn(state, run_id=...)`` does not register the
    run at all (it only updates a row that does not exist, so the run could never be resumed).
    """

    def __init__(self, path: Path, run_id: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path)
        self.run_id = run_id

    def _conn(self) -> sqlite3.Connection:
        # A scenario's throwaway database: a real kill (os._exit) loses nothing the kernel was
        # handed, so skipping fsync changes no outcome and most of loomc's real time per step.
        conn: sqlite3.Connection = super()._conn()
        conn.execute("PRAGMA synchronous = OFF")
        return conn

    def create_run(self, spec_hash: str) -> str:
        made: str = super().create_run(spec_hash)
        with contextlib.closing(sqlite3.connect(self.db_path)) as conn, conn:
            conn.execute("UPDATE runs SET id = ? WHERE id = ?", (self.run_id, made))
        return self.run_id


class LoomcRuntime:
    """Drives a loomc ``@loop`` function through one scenario run (see the module docstring)."""

    name = RUNTIME_NAME

    def __init__(self) -> None:
        self._runner: LoopRunner | None = None
        self._ended = False
        """Whether this instance saw the run end (a return or an exception, not a crash)."""
        self._error: Exception | None = None
        """The exception the caller got, if the run ended with one."""
        self._started: int | None = None
        """The last step whose iteration this instance started."""

    def version(self) -> str:
        return version("loomc")

    # -- running ----------------------------------------------------------------------------

    def run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None:
        self._ended, self._error, self._started = False, None, None
        self._runner = runner = self._build(scenario, lab)
        store = _ScenarioStore(store_path(lab), scenario.id)
        done = len(store.load_steps(scenario.id)) if resume else 0
        saved = runner._fn, runner._store
        runner._fn = self._hooked(runner, lab, first=done + 1)
        runner._store = store
        try:
            with contextlib.chdir(lab.workdir):
                call = runner.resume(scenario.id) if resume else runner(scenario.input)
                if inspect.iscoroutine(call):
                    asyncio.run(call)
        except Exception as exc:  # the loop's ending, for record() to report
            self._error = exc
        finally:
            runner._fn, runner._store = saved
        self._ended = True

    def _build(self, scenario: Scenario, lab: Lab) -> LoopRunner:
        """The scenario's loomc loop from its entry point, checked against the scenario."""
        if lab.budget.tokens is not None:
            raise RuntimeNotAvailable(
                f"{scenario.path}:{_line(scenario, 'budget.tokens')}: budget.tokens: loomc has "
                "no token budget (its Budget limits usd, iterations and wall_clock)\n"
                "  hint: remove budget.tokens, or run this scenario on a runtime that enforces it"
            )
        # loomc creates its default store in the working directory when it decorates.
        with contextlib.chdir(lab.workdir):
            runner = build_entry(scenario, lab)
        if not isinstance(runner, LoopRunner):
            raise wrong_entry(
                scenario, runner, "a loomc loop (the function decorated with @loomc.loop)"
            )
        wanted = loomc_budget(lab)
        if wanted is not None and _limits(runner._budget) != _limits(wanted):
            raise RuntimeNotAvailable(
                f"{scenario.path}:{_line(scenario, 'budget')}: budget: the loop runs with "
                f"loomc {runner._budget!r}, not the scenario's {wanted!r}\n"
                "  hint: loomc fixes a loop's budget when it decorates it: decorate it inside "
                "build(lab) with budget=loomc_budget(lab) (from pytest_loom.adapters.loomc)"
            )
        return runner

    def _hooked(self, runner: LoopRunner, lab: Lab, *, first: int) -> Callable[[Any], Any]:
        """The user's iteration, numbered from ``first`` and announced to the lab."""
        fn: Callable[[Any], Any] = runner._fn
        numbers = itertools.count(first)
        if isinstance(runner, AsyncLoopRunner):

            async def astep(state: Any) -> Any:
                with self._step(lab, next(numbers)):
                    return await fn(state)

            return astep

        def step(state: Any) -> Any:
            with self._step(lab, next(numbers)):
                return fn(state)

        return step

    @contextlib.contextmanager
    def _step(self, lab: Lab, n: int) -> Iterator[None]:
        """Step ``n``: the lab fires its faults as it starts; ``clock.step`` passes once it ran.

        A crash fault propagates from here, before the step ran; a raise fault fails the step.
        """
        self._started = n
        try:
            lab.begin_step(n)
            yield
        except Exception:
            lab.clock.advance(lab.step_seconds)
            raise
        lab.clock.advance(lab.step_seconds)

    # -- the record -------------------------------------------------------------------------

    def record(self, scenario: Scenario, lab: Lab) -> RunRecord:
        runner = self._runner or self._build(scenario, lab)
        store = SQLiteCheckpointStore(store_path(lab))
        run = store.get_run(scenario.id)
        if run is None:
            raise RuntimeNotAvailable(
                f"{scenario.path}: loomc has no run {scenario.id!r} in {store.db_path}"
            )
        stored = store.load_steps(scenario.id)
        seen = lab.observed()
        starts = Counter(n for n, *_ in lab.marks)
        steps: list[Step] = []
        for i, row in enumerate(stored):
            index = row.step_n + 1
            events = [Event.RESUMED] if starts[index] > 1 else []
            if runner._backtrack is not None and _backtracks(runner._backtrack, stored[: i + 1]):
                events.append(Event.BACKTRACKED)
            step = _step(index, seen.get(index, _UNSEEN), row.state, row.score, row.error, steps)
            steps.append(replace(step, events=tuple(events)))
        lost = self._lost_step(stored)
        stop = self._stop(runner, run.status.value, stored, lost)
        if lost is not None:
            state = stored[-1].state if stored else scenario.input
            steps.append(
                _step(lost, seen.get(lost, _UNSEEN), state, None, stop.raw_exception, steps)
            )
        elapsed = max((seen.get(s.index, _UNSEEN).end_s for s in steps), default=0.0)
        return RunRecord(
            scenario=scenario.id,
            runtime=RuntimeInfo(RUNTIME_NAME, self.version()),
            stop=stop,
            totals=totals_of(steps, elapsed),
            steps=tuple(steps),
            run_id=scenario.id,
        )

    def _lost_step(self, stored: Sequence[Any]) -> int | None:
        """The step this instance started last, if the run ended in it and loomc did not store
        it (loomc stores a raising step only with backtrack=)."""
        if self._ended and self._started is not None and self._started > len(stored):
            return self._started
        return None

    def _stop(
        self, runner: LoopRunner, status: str, stored: Sequence[Any], lost: int | None
    ) -> Stop:
        """The caller's view decides; ``runs.status`` is kept where it says something else."""
        if not self._ended:
            return _stored_stop(runner, status, stored)
        exc = self._error
        limit, error_type, detail = None, None, None
        if exc is None:  # loomc returns only when its convergence detector says stop
            reason, detail = StopReason.CONVERGED, _describe(runner._converge_on)
        elif isinstance(exc, loomc.BudgetExhausted):
            reason, limit = StopReason.BUDGET_EXHAUSTED, BudgetLimit(exc.limit)
        elif isinstance(exc, loomc.StallError):
            reason, detail = StopReason.STALLED, str(exc)
        else:
            reason, error_type = StopReason.FAILED, type(exc).__name__
            if lost is not None:
                detail = (
                    f"step {lost} raised and loomc did not checkpoint it (it stores a raising "
                    "step only with backtrack=): the record has it from the lab's observation"
                )
        return Stop(
            reason,
            limit=limit,
            error_type=error_type,
            detail=detail,
            raw_status=None if status == reason else status,
            raw_exception=None if exc is None else _exception(exc),
        )


def _stored_stop(runner: LoopRunner, status: str, stored: Sequence[Any]) -> Stop:
    """The stop when the caller's view is unknown (this instance did not see the run end)."""
    if status == "running":
        return Stop(
            StopReason.PAUSED,
            detail=f"the run stopped after step {len(stored)} without finishing (crashed?)",
            raw_status=status,
        )
    unseen = "from runs.status alone: the caller's view was not seen"
    if status == "budget_exhausted":
        # Which limit: loomc's own pre-step check over what the store says was spent.
        ledger = BudgetLedger(sum(s.cost_usd for s in stored), len(stored))
        limit = "wall_clock"
        if runner._budget is not None:
            try:
                ledger.check_pre(loomc.Budget(runner._budget.usd, runner._budget.iterations))
            except loomc.BudgetExhausted as exc:
                limit = exc.limit
        return Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit(limit), detail=unseen)
    if status == "failed":
        last = stored[-1].error if stored and stored[-1].error else ""
        error_type = last.partition(":")[0] or "unknown"
        return Stop(StopReason.FAILED, error_type=error_type, detail=unseen, raw_status=status)
    # "completed" is what loomc writes when it returns, and also when StallError ends the run.
    return Stop(StopReason.CONVERGED, detail=unseen, raw_status=status)


def _step(
    index: int,
    seen: Observed,
    state: Any,
    score: float | None,
    error: str | None,
    before: Sequence[Step],
) -> Step:
    calls = seen.llm_calls
    cost = sum_usd(*(c.cost_usd for c in calls))
    return Step(
        index=index,
        start_s=seen.start_s,
        duration_s=seen.duration_s,
        llm_calls=calls,
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        cost_usd=cost,
        cumulative_cost_usd=sum_usd(before[-1].cumulative_cost_usd if before else 0.0, cost),
        score=score,
        error=error,
        state_digest=digest(state),
    )


def _backtracks(strategy: Any, history: Sequence[Any]) -> bool:
    """Whether loomc went back to a checkpoint after the last step of ``history``.

    loomc asks its strategy after every step and records nothing of the answer, so the record
    asks it again about the same stored history.
    """
    should, restore_to = strategy.should_backtrack(list(history))
    return bool(should) and restore_to is not None


def _limits(budget: loomc.Budget | None) -> tuple[Any, ...]:
    if budget is None:
        return (None, None, None)
    return (budget.usd, budget.iterations, budget.wall_clock_seconds)


def _describe(detector: object) -> str | None:
    """A convergence detector as ``ScorePlateau(patience=3, min_delta=0.01)``: its class and its
    plain settings (functions and objects left out, their reprs carry addresses)."""
    if detector is None:
        return None
    settings = ", ".join(
        f"{k}={v!r}"
        for k, v in vars(detector).items()
        if not k.startswith("_") and isinstance(v, int | float | str | bool)
    )
    name = type(detector).__name__
    return f"{name}({settings})" if settings else name


def _exception(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _line(scenario: Scenario, key: str) -> int:
    return scenario.lines.get(key, scenario.lines.get("budget", 1))
