"""Drive loom-runner (``loom_agent``) loops in the lab and rebuild their run record.

loom-runner is a durable async state machine: ``AgentRunner(step=..., store=...)`` runs a step
function ``(state, ctx) -> Continue(state) | Complete(result)`` and journals every step, attempt
and tool call in its checkpoint store. It never calls an LLM and has no budgets, so the lab
reaches the loop through the user's own code (``build(lab)`` hands ``lab.llm`` to the step
function) and the record joins what loom-runner journaled with what the lab observed: LLM
calls, usage, cost and fake time per step. See ``docs/runtimes/loom-runner.md``.

The scenario's ``budget.iterations`` becomes loom-runner's ``max_steps`` (a slice per call, so a
resume gets what is left); usd, tokens and wall_clock cannot be enforced by loom-runner and are
rejected with the file and line.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from loom_agent import (
    AgentRunner,
    CheckpointStore,
    Complete,
    Continue,
    RunContext,
    RunResult,
    SQLiteCheckpointStore,
    StoredAttempt,
    StoredRun,
    StoredToolCall,
)

from .._toolresults import kept
from ..lab import Lab, Observed
from ..record import (
    RECORD_VERSION,
    Event,
    RunRecord,
    RuntimeInfo,
    Step,
    Stop,
    StopReason,
    ToolCall,
    digest,
    sum_usd,
    totals_of,
)
from ..runtimes import budget_error, build_entry, wrong_entry
from ..scenario import Scenario
from ..store import CheckpointError

__all__ = ["DEFAULT_MAX_STEPS", "LoomRunnerRuntime", "lab_store"]

DEFAULT_MAX_STEPS = 1000
"""``max_steps`` of a scenario without ``budget.iterations``: a runaway loop pauses there."""

_UNENFORCEABLE = {
    "usd": "it never sees what the step function spends",
    "tokens": "it never sees what the step function spends",
    "wall_clock": "it has no deadline, only max_steps",
}

StepFn = Callable[[Any, RunContext], Awaitable[Continue[Any] | Complete[Any]]]


def lab_store(lab: Lab) -> SQLiteCheckpointStore:
    """A loom-runner checkpoint store in the test's directory: ``<workdir>/loom-runner.db``."""
    return SQLiteCheckpointStore(lab.workdir / "loom-runner.db")


class LoomRunnerRuntime:
    """Runs the ``AgentRunner`` a scenario's entry point builds; one instance, one scenario run.

    ``run`` starts it with ``AgentRunner.start`` (or continues it with ``AgentRunner.resume``)
    under the lab's clock; ``record`` reads the run back from loom-runner's store.
    """

    name = "loom-runner"

    def __init__(self) -> None:
        self._outcome: RunResult[Any, Any] | BaseException | None = None
        """What the caller saw of the last phase this instance ran (``None``: it died)."""
        self._raise: Exception | None = None

    def version(self) -> str:
        return version("loom-runner")

    def run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None:
        _check_budget(scenario, lab)
        runner = self._build(scenario, lab)
        runner.step = self._observed(runner.step, lab)
        runner.store = _StepBoundary(runner.store, self._begin_step, lab)
        self._outcome = None
        try:
            if resume:
                done = runner.store.get_run(scenario.id).step_index
                main = runner.resume(run_id=scenario.id, max_steps=_max_steps(lab, done))
            else:
                initial = runner.decode_state(scenario.input)
                main = runner.start(
                    run_id=scenario.id, initial_state=initial, max_steps=_max_steps(lab, 0)
                )
            self._outcome = asyncio.run(main)
        except (Exception, asyncio.CancelledError) as exc:
            # An Exception: loom-runner marked the run failed and re-raised it. A cancelled
            # step escapes it unmarked (the store still says running): the record shows both.
            self._outcome = exc
        finally:
            _close(runner.store)

    def record(self, scenario: Scenario, lab: Lab) -> RunRecord:
        runner = self._build(scenario, lab)
        try:
            return self._record(runner, scenario, lab)
        finally:
            _close(runner.store)

    # -- driving ------------------------------------------------------------------------------

    def _build(self, scenario: Scenario, lab: Lab) -> AgentRunner[Any, Any]:
        runner = build_entry(scenario, lab)
        if not isinstance(runner, AgentRunner):
            raise wrong_entry(
                scenario, runner, "a loom_agent.AgentRunner (store it with lab_store(lab))"
            )
        store = runner.store
        if isinstance(store, SQLiteCheckpointStore) and not _inside(store.path, lab.workdir):
            _close(store)
            raise CheckpointError(
                f"{scenario.path}:{scenario.entry_line}: the AgentRunner built by "
                f"{scenario.entry!r} keeps its store at {store.path}, outside the test's "
                "directory, so runs would leak between tests\n"
                "  hint: build its store with pytest_loom.adapters.loom_runner.lab_store(lab)"
            )
        return runner

    def _begin_step(self, lab: Lab, n: int) -> None:
        """Step ``n`` starts: loom-runner has journaled nothing of it yet.

        A crash or kill fires here, so the run resumes as a process that died between two
        steps. A ``raise`` fault belongs inside the step: it is kept for the step function.
        """
        self._raise = None
        try:
            lab.begin_step(n)
        except Exception as exc:
            self._raise = exc

    def _observed(self, step: StepFn, lab: Lab) -> StepFn:
        async def observed_step(state: Any, ctx: RunContext) -> Continue[Any] | Complete[Any]:
            try:
                if self._raise is not None:
                    exc, self._raise = self._raise, None
                    raise exc
                return await step(state, ctx)
            finally:
                if lab.step_seconds:
                    lab.clock.advance(lab.step_seconds)

        return observed_step

    # -- reading the run back -----------------------------------------------------------------

    def _record(self, runner: AgentRunner[Any, Any], scenario: Scenario, lab: Lab) -> RunRecord:
        run_id = scenario.id
        try:
            run = runner.store.get_run(run_id)
        except KeyError:
            why = self._outcome if isinstance(self._outcome, BaseException) else None
            raise CheckpointError(
                f"{scenario.path}: loom-runner's store has no run {run_id!r}: the run never "
                "started" + (f" ({_describe(why)})" if why is not None else "")
            ) from None
        attempts: dict[int, list[StoredAttempt]] = {}
        for attempt in runner.get_attempts(run_id):
            attempts.setdefault(attempt.step_index, []).append(attempt)
        tools: dict[int, list[StoredToolCall]] = {}
        for call in sorted(runner.get_tool_calls(run_id), key=_journal_order):
            tools.setdefault(call.step_index, []).append(call)
        states = {s.step_index: s.state_json for s in runner.store.get_steps(run_id)}
        committed = run.step_index + (run.status == "completed")
        observed = lab.observed()
        begun = Counter(n for n, _, _ in lab.marks)
        steps: list[Step] = []
        spent = 0.0
        for i in range(max(committed, max(attempts, default=-1) + 1)):
            n = i + 1
            seen = observed.get(n, Observed(0.0, 0.0, ()))
            tried = attempts.get(i, [])
            produced = _produced(run, i, tried, states) if i < committed else None
            before = states.get(i, run.state_json)
            cost = sum_usd(*(c.cost_usd for c in seen.llm_calls))
            spent = sum_usd(spent, cost)
            steps.append(
                Step(
                    index=n,
                    start_s=seen.start_s,
                    duration_s=seen.duration_s,
                    llm_calls=seen.llm_calls,
                    tool_calls=tuple(_tool_call(c) for c in tools.get(i, [])),
                    input_tokens=sum(c.input_tokens for c in seen.llm_calls),
                    output_tokens=sum(c.output_tokens for c in seen.llm_calls),
                    cost_usd=cost,
                    cumulative_cost_usd=spent,
                    error=None if i < committed else _step_error(n, tried),
                    state_digest=_digest_json(produced if produced is not None else before),
                    events=(Event.RESUMED,) * (begun[n] - 1)
                    + (Event.RETRIED,) * sum(a.attempt_index > 0 for a in tried),
                )
            )
        elapsed = observed[len(steps)].end_s if len(steps) in observed else 0.0
        return RunRecord(
            scenario=scenario.id,
            runtime=RuntimeInfo(self.name, self.version()),
            stop=self._stop(run, steps, lab),
            totals=totals_of(steps, elapsed),
            steps=tuple(steps),
            run_id=run_id,
            version=RECORD_VERSION,
        )

    def _stop(self, run: StoredRun, steps: list[Step], lab: Lab) -> Stop:
        """The caller's view when this instance ran the last phase, else the store's."""
        outcome, raw = self._outcome, run.status
        if isinstance(outcome, BaseException):
            said = _describe(outcome)
            return Stop(
                StopReason.FAILED,
                error_type=type(outcome).__name__,
                detail=None if run.error in (None, said) else f"the store says: {run.error}",
                raw_status=raw,
                raw_exception=said,
            )
        status = raw if outcome is None else outcome.status
        if status == "completed":
            return Stop(StopReason.COMPLETED, raw_status=raw)
        if status == "failed":
            error = run.error or "unknown error"
            return Stop(
                StopReason.FAILED,
                error_type=error.partition(":")[0],
                raw_status=raw,
                raw_exception=error,
            )
        limit = lab.budget.iterations
        cap = (
            f"budget.iterations={limit}" if limit is not None else f"max_steps={DEFAULT_MAX_STEPS}"
        )
        detail = (
            f"max_steps used up after step {len(steps)} ({cap}); resume continues the run"
            if status == "paused"
            else f"the run stopped after step {len(steps)} without finishing (killed or crashed?)"
        )
        return Stop(StopReason.PAUSED, detail=detail, raw_status=raw)


class _StepBoundary:
    """The runner's store, as the adapter hands it back: it notes when each step starts.

    loom-runner has no step hook; the first thing it does for step ``i`` (in every checkpoint
    policy, before journaling an attempt) is ``get_committed_step``, so that call is the step
    boundary. Everything else goes straight to the user's store.
    """

    def __init__(self, store: CheckpointStore, begin: Callable[[Lab, int], None], lab: Lab):
        self._store = store
        self._begin = begin
        self._lab = lab

    def get_committed_step(self, *, run_id: str, step_index: int, input_hash: str) -> Any:
        self._begin(self._lab, step_index + 1)
        return self._store.get_committed_step(
            run_id=run_id, step_index=step_index, input_hash=input_hash
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _check_budget(scenario: Scenario, lab: Lab) -> None:
    for key, why in _UNENFORCEABLE.items():
        if getattr(lab.budget, key) is not None:
            raise budget_error(
                scenario,
                key,
                f"loom-runner cannot enforce this limit: {why}",
                hint="loom-runner enforces only budget.iterations (as max_steps); remove "
                f"budget.{key}, or have your step function enforce it (pass it in options:)",
            )


def _max_steps(lab: Lab, done: int) -> int:
    """loom-runner's ``max_steps`` for a call when ``done`` steps are already committed."""
    limit = lab.budget.iterations
    return DEFAULT_MAX_STEPS if limit is None else max(limit - done, 0)


def _produced(
    run: StoredRun, i: int, tried: list[StoredAttempt], states: dict[int, str]
) -> str | None:
    """The JSON that committed step ``i`` produced: its next state, or its ``Complete`` result.

    The finished attempt's output, or (a compact checkpoint policy journals no first attempt
    that succeeded) the retained checkpoint, or the run's result.
    """
    output: str | None = next(
        (a.output_json for a in tried if a.status == "completed" and a.output_json is not None),
        None,
    )
    if output is None:
        output = states.get(i + 1, run.result_json)
    return output


def _step_error(n: int, tried: list[StoredAttempt]) -> str | None:
    if not tried:
        return None
    last = tried[-1]
    if last.status == "failed":
        error: str | None = last.error
        return error
    return (
        f"attempt {last.attempt_index + 1} of step {n} started and never finished "
        "(the process died)"
    )


def _tool_call(call: StoredToolCall) -> ToolCall:
    """A journaled tool execution. loom-runner journals a hash of the arguments, not them."""
    result = json.loads(call.result_json) if call.result_json is not None else call.error
    return ToolCall(
        name=call.tool_name,
        args={"request_hash": call.request_hash[:16]},
        status=call.status,
        result_digest=digest(result) if result is not None else "",
        result=kept(result),
    )


def _journal_order(call: StoredToolCall) -> tuple[int, int, int]:
    """Step, attempt, then call position (the id ends ``:call:<n>``; timestamps may tie)."""
    return call.step_index, call.attempt_index, int(call.tool_call_id.rpartition(":")[2])


def _digest_json(raw: str | None) -> str:
    return digest(None if raw is None else json.loads(raw))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()
