"""Drive tightloop (``loop``) agent loops in the lab and rebuild their run record.

tightloop runs observe -> plan (one LLM call through an ``LLMClient``) -> act -> evaluate, under
hard ceilings of its own (iterations, tokens, wall clock, USD), with approval gates and a state
file it rewrites after every iteration. This adapter exists so a tightloop user can pin such a
loop in golden scenarios: the mock LLM answers through tightloop's own seam (:class:`LabLLM`, an
``LLMClient``), the scenario's budget becomes the ``Loop``'s ceilings, approvals are answered by a
headless "human" the scenario configures, and the record is read back from what tightloop
stored (its ``State`` file and JSONL trace) plus what the lab observed (LLM calls, fake time).
See ``docs/runtimes/tightloop.md``.

The entry point returns :func:`lab_loop`'s :class:`LabLoop`: everything ``Loop()`` takes except
the goal, which is the scenario's ``input``, and the file paths, which the adapter chooses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from loop import (
    HeadlessApprovalRunner,
    LLMClient,
    LLMResponse,
    Loop,
    LoopResult,
    LoopStatus,
    State,
    Tool,
    ToolCallReq,
)
from loop.core.state import ActionRecord, IterationRecord

from .._toolresults import kept
from ..budget import Budget
from ..lab import Lab, Observed
from ..llm import MockLLM
from ..record import (
    RECORD_VERSION,
    BudgetLimit,
    Event,
    RecordError,
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
from ..scenario import Scenario, ScenarioError
from ..units import parse_duration

__all__ = ["LabLLM", "LabLoop", "TightloopRuntime", "lab_loop", "tightloop_limits"]

DISTRIBUTION = "tightloop"

LIMITS: dict[str, str] = {
    "usd": "cost_limit_usd",
    "iterations": "max_iterations",
    "tokens": "token_limit",
    "wall_clock": "wall_clock_s",
}
"""Scenario budget key -> the ``Loop`` argument that enforces it."""

_STORED_CONFIG = (*LIMITS.values(), "verbatim_window", "max_tokens_per_call")
"""What ``Loop`` stores in ``State.config``; ``Loop.resume`` reads it back unless passed again."""

_STOPS = {
    LoopStatus.SUCCESS: StopReason.COMPLETED,
    LoopStatus.NO_PROGRESS: StopReason.STALLED,
    LoopStatus.APPROVAL_DENIED: StopReason.DENIED,
    LoopStatus.PENDING_EXPIRED: StopReason.DENIED,
    LoopStatus.AWAITING_APPROVAL: StopReason.AWAITING_APPROVAL,
}
"""tightloop statuses with a plain counterpart; BUDGET_EXHAUSTED, PLAN_FAILED, ERROR are below."""

_BUDGET_REASONS = (
    ("max_iterations", BudgetLimit.ITERATIONS),
    ("token_limit", BudgetLimit.TOKENS),
    ("wall_clock", BudgetLimit.WALL_CLOCK),
    ("cost_limit", BudgetLimit.USD),
    ("estimated cost", BudgetLimit.USD),
)
"""How tightloop's BUDGET_EXHAUSTED reasons start (ceilings, ``Exit.*``, ``CostLimit``)."""

_DECISIONS = ("pending", "approve", "deny")


class LabLLM(LLMClient):  # type: ignore[misc]
    """tightloop's LLM seam answered by the lab's mock: ``max_tokens`` and tools reach it."""

    def __init__(self, llm: MockLLM, model_id: str = "gpt-4o") -> None:
        self.llm = llm
        self.model_id = model_id

    def complete(
        self,
        messages: list[dict[str, str]],
        tool_schemas: list[dict[str, Any]],
        max_tokens: int,
    ) -> LLMResponse:
        reply = self.llm.complete(
            messages, model=self.model_id, tools=tool_schemas, max_tokens=max_tokens
        )
        return LLMResponse(
            text=reply.text,
            tool_calls=[
                ToolCallReq(id=c.id, name=c.name, args=dict(c.args)) for c in reply.tool_calls
            ],
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            model_id=reply.model,
        )


def tightloop_limits(budget: Budget) -> dict[str, float]:
    """The budget's limits as ``Loop`` keyword arguments (``usd`` -> ``cost_limit_usd``, ...).

    Unset limits are left out, so tightloop's own defaults apply to them (20 iterations,
    500,000 tokens, 1800 s of wall clock, no USD limit).
    """
    limits = {"usd": budget.usd, "iterations": budget.iterations, "tokens": budget.tokens}
    limits["wall_clock"] = budget.wall_clock
    return {LIMITS[key]: value for key, value in limits.items() if value is not None}


@dataclass(frozen=True, slots=True)
class LabLoop:
    """A tightloop ``Loop`` to run in the lab: its tools and every other ``Loop()`` argument.

    The goal is the scenario's ``input``; ``state_path`` and ``trace_path`` are chosen by the
    adapter (under the lab's workdir), so they must not be in ``kwargs``.
    """

    tools: Sequence[Tool | Callable[..., Any]]
    kwargs: Mapping[str, Any]


def lab_loop(
    lab: Lab, tools: Sequence[Tool | Callable[..., Any]], *, model: str = "gpt-4o", **kwargs: Any
) -> LabLoop:
    """Wire a tightloop loop to the lab: ``build(lab)`` in one call.

    It passes ``llm=LabLLM(lab.llm, model)``, the scenario budget
    (:func:`tightloop_limits`), ``quiet=True`` and a ``HeadlessApprovalRunner`` (so approvals
    pause the run and the scenario's ``options.approval`` answers them); ``kwargs`` (observe,
    exits, policies, ...) are passed to ``Loop`` as well and win over the wired ones.
    """
    wired: dict[str, Any] = {
        "llm": LabLLM(lab.llm, model),
        "quiet": True,
        "approval_runner": HeadlessApprovalRunner(),
        **tightloop_limits(lab.budget),
    }
    return LabLoop(tuple(tools), {**wired, **kwargs})


@dataclass(frozen=True, slots=True)
class _Files:
    """Where tightloop keeps one scenario run: its state file and its JSONL trace."""

    state: Path
    trace: Path

    @classmethod
    def of(cls, scenario: Scenario, lab: Lab) -> _Files:
        return cls(
            lab.workdir / f"{scenario.id}.state.json", lab.workdir / f"{scenario.id}.trace.jsonl"
        )


@dataclass(frozen=True, slots=True)
class _Human:
    """Who answers approvals: ``options.approval`` (pending, approve, deny) after
    ``options.approval_after`` (a duration; the wall clock moves, the run's elapsed time not)."""

    decision: str
    after_s: float

    @classmethod
    def of(cls, scenario: Scenario, lab: Lab) -> _Human:
        decision = lab.options.get("approval", "pending")
        if decision not in _DECISIONS:
            raise _option_error(scenario, "approval", f"got {decision!r}", ", ".join(_DECISIONS))
        try:
            after_s = parse_duration(lab.options.get("approval_after", 0))
        except ValueError as exc:
            raise _option_error(scenario, "approval_after", str(exc), "a duration") from None
        return cls(decision, after_s)

    def answer(self, lab: Lab, token: str) -> dict[str, Any] | None:
        """The approval to resume with, or ``None`` while it stays pending."""
        if self.decision == "pending":
            return None
        lab.clock.move_to(lab.clock.now() + timedelta(seconds=self.after_s))
        return {"token": token, "approved": self.decision == "approve"}


def _option_error(scenario: Scenario, key: str, problem: str, expected: str) -> ScenarioError:
    line = scenario.lines.get(f"options.{key}", scenario.lines.get("options"))
    hint = "options.approval answers tightloop's approval requests; see docs/runtimes/tightloop.md"
    return ScenarioError(scenario.path, line, f"options.{key}", problem, expected, hint)


class TightloopRuntime:
    """Runs the ``Loop`` a scenario's entry point describes; one instance, one scenario run.

    ``run`` starts it with ``Loop(...).run()`` or continues it with ``Loop.resume(...)``, and
    answers approval requests as the scenario says; ``record`` reads back tightloop's state
    file and trace.
    """

    name = "tightloop"

    def __init__(self) -> None:
        self._outcome: LoopResult | Exception | None = None
        """What the caller saw of the last phase this instance ran: a result or an exception."""

    def version(self) -> str:
        return version(DISTRIBUTION)

    def run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None:
        spec = build_entry(scenario, lab)
        if not isinstance(spec, LabLoop):
            raise wrong_entry(
                scenario, spec, "a LabLoop (build it with pytest_loom.adapters.tightloop.lab_loop)"
            )
        human = _Human.of(scenario, lab)
        files = _Files.of(scenario, lab)
        kwargs = _wired(scenario, lab, spec, files)
        tools = list(spec.tools)
        # Resuming needs a state file, which tightloop writes when an iteration ends; a run
        # that died in its first iteration has none and starts afresh.
        fresh = None if resume and files.state.exists() else Loop(_goal(scenario), tools, **kwargs)
        if fresh is not None:
            _check_budget(scenario, fresh)
        self._outcome = None
        try:
            if fresh is not None:
                result = fresh.run()
            else:
                pending = State.load(files.state).pending_approval
                approval = None if pending is None else human.answer(lab, pending.token)
                result = _resume(files, tools, kwargs, approval)
            while result.status is LoopStatus.AWAITING_APPROVAL:
                approval = human.answer(lab, result.approval_token)
                if approval is None:
                    break
                result = _resume(files, tools, kwargs, approval)
        except Exception as exc:
            self._outcome = exc
        else:
            self._outcome = result

    def record(self, scenario: Scenario, lab: Lab) -> RunRecord:
        files = _Files.of(scenario, lab)
        state = State.load(files.state) if files.state.exists() else None
        trace = _Trace.read(files.trace)
        stop = self._stop(trace, len(state.iterations) if state else 0)
        iterations = list(state.iterations) if state else []
        history = [it.model_dump(mode="json") for it in iterations]
        observed = lab.observed()
        numbers = list(range(1, len(iterations) + 1))
        if stop.reason is not StopReason.PAUSED and len(iterations) + 1 in observed:
            # A step tightloop began but never stored: it raised, or awaits an approval.
            numbers.append(len(iterations) + 1)
        failure = self._outcome if isinstance(self._outcome, Exception) else None
        steps: list[Step] = []
        cumulative = 0.0
        for n in numbers:
            it = iterations[n - 1] if n <= len(iterations) else None
            error = _describe(failure) if it is None and failure else None
            step = _step(n, it, observed[n], digest(history[:n]), n in trace.resumed, error)
            cumulative = sum_usd(cumulative, step.cost_usd)
            steps.append(replace(step, cumulative_cost_usd=cumulative))
        elapsed = state.metrics.elapsed_s if state else 0.0
        return RunRecord(
            scenario=scenario.id,
            runtime=RuntimeInfo(self.name, self.version()),
            stop=stop,
            totals=totals_of(steps, round(elapsed, 6)),
            steps=tuple(steps),
            run_id=scenario.id,
            version=RECORD_VERSION,
        )

    def _stop(self, trace: _Trace, stored: int) -> Stop:
        """The caller's view when this instance ran the last phase, else the trace's."""
        raw_status = trace.ended[0] if trace.ended else "running"
        outcome = self._outcome
        if isinstance(outcome, Exception):
            # tightloop lets it propagate: no LoopResult, no loop.end, the state of the last
            # stored iteration. The trace says "running", the caller saw the exception.
            return Stop(
                StopReason.FAILED,
                error_type=type(outcome).__name__,
                raw_status=raw_status,
                raw_exception=_describe(outcome),
            )
        if outcome is not None:
            status, reason = outcome.status, outcome.reason
        elif trace.ended is not None:
            status, reason = LoopStatus(trace.ended[0]), trace.ended[1]
        else:
            return Stop(
                StopReason.PAUSED,
                detail=f"tightloop stopped after iteration {stored} without ending (killed?)",
                raw_status=raw_status,
            )
        detail = trace.mask(reason)
        if status is LoopStatus.BUDGET_EXHAUSTED:
            limit = _budget_limit(reason)
            return Stop(
                StopReason.BUDGET_EXHAUSTED, limit=limit, detail=detail, raw_status=status.value
            )
        if status in _STOPS:
            return Stop(_STOPS[status], detail=detail, raw_status=status.value)
        # PLAN_FAILED and ERROR (a policy stopped the loop without a status) are failures
        # without an exception: the record names tightloop's status as the error type.
        return Stop(
            StopReason.FAILED, error_type=status.value, detail=detail, raw_status=status.value
        )


@dataclass(slots=True)
class _Trace:
    """What tightloop's JSONL trace says about the sessions of a run."""

    resumed: set[int]
    """Steps that were the first to run after a resume."""
    ended: tuple[str, str] | None
    """``(status, reason)`` of the ``loop.end`` that ended the last session, if it ended."""
    tokens: list[str]
    """Approval tokens (random, so masked in the record)."""

    @classmethod
    def read(cls, path: Path) -> _Trace:
        trace = cls(set(), None, [])
        done, session = 0, "none"  # none | running | ended | resumed
        for event in _events(path):
            kind = event.get("kind")
            if session == "ended":  # anything after a loop.end belongs to a resume
                trace.resumed.add(done + 1)
                session = "resumed"
            if kind == "loop.start":
                if session == "running":  # the previous session died without a loop.end
                    trace.resumed.add(done + 1)
                session = "running"
            elif kind == "loop.end":
                session = "ended"
                trace.ended = (str(event["status"]), str(event["reason"]))
            elif kind == "iteration.end":
                done += 1
            for key in ("token", "new_token"):
                if key in event and event[key] not in trace.tokens:
                    trace.tokens.append(str(event[key]))
        if session != "ended":
            trace.ended = None
        return trace

    def mask(self, text: str) -> str:
        for token in self.tokens:
            text = text.replace(token, "<token>")
        return text


def _events(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open() as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _wired(scenario: Scenario, lab: Lab, spec: LabLoop, files: _Files) -> dict[str, Any]:
    """The ``Loop`` arguments: the entry point's, plus the lab's files and step hook."""
    for key in ("state_path", "trace_path"):
        if key in spec.kwargs:
            raise ScenarioError(
                scenario.path,
                scenario.entry_line,
                "entry",
                f"the loop sets {key}=; the lab keeps tightloop's files under its workdir",
                hint=f"remove {key}= from the arguments build(lab) passes to lab_loop",
            )
    observe = spec.kwargs.get("observe")
    on_event = spec.kwargs.get("on_event")

    def observing(state: State) -> Any:
        # tightloop observes first thing in every iteration (and before an approved action).
        lab.begin_step(len(state.iterations) + 1)
        return "" if observe is None else observe(state)

    def stepping(event: dict[str, Any]) -> None:
        if event["kind"] == "iteration.end" and lab.step_seconds:
            lab.clock.advance(lab.step_seconds)
        if on_event is not None:
            on_event(event)

    return {
        **spec.kwargs,
        "observe": observing,
        "on_event": stepping,
        "state_path": str(files.state),
        "trace_path": str(files.trace),
    }


def _resume(
    files: _Files, tools: list[Any], kwargs: dict[str, Any], approval: dict[str, Any] | None
) -> LoopResult:
    """``Loop.resume`` with the limits stored in the state (passing them again would win)."""
    kept = {k: v for k, v in kwargs.items() if k not in _STORED_CONFIG and k != "state_path"}
    result: LoopResult = Loop.resume(str(files.state), tools=tools, approval=approval, **kept)
    return result


def _goal(scenario: Scenario) -> str:
    if isinstance(scenario.input, str) and scenario.input.strip():
        return scenario.input
    raise ScenarioError(
        scenario.path,
        scenario.lines.get("input", 1),
        "input",
        f"tightloop's Loop takes a goal, got {type(scenario.input).__name__}",
        "the goal as text",
        'input: "Draft the release notes for 1.4"',
    )


def _check_budget(scenario: Scenario, loop: Loop) -> None:
    """Fail unless the loop enforces every limit of the scenario's budget."""
    for key, attr in LIMITS.items():
        wanted = getattr(scenario.budget, key)
        if wanted is None:
            continue
        got = getattr(loop, attr)
        if got != wanted:
            raise budget_error(
                scenario,
                key,
                f"the loop built by {scenario.entry!r} has {attr}={got!r}, not {wanted!r}",
                hint="pass the budget to the Loop: lab_loop(lab, ...) does, or "
                "**tightloop_limits(lab.budget)",
            )
        model = loop.llm.model_id
        if key == "usd" and model not in loop.pricing["models"]:
            raise budget_error(
                scenario,
                "usd",
                f"tightloop cannot enforce it: model {model!r} is not in the Loop's pricing "
                "table, so tightloop tracks no USD cost",
                f"a model it prices: {', '.join(sorted(loop.pricing['models']))}",
                "pass pricing={'as_of': ..., 'models': {...}} to the Loop, or drop budget.usd",
            )


def _budget_limit(reason: str) -> BudgetLimit:
    for prefix, limit in _BUDGET_REASONS:
        if reason.startswith(prefix):
            return limit
    raise RecordError(
        f"tightloop ended BUDGET_EXHAUSTED with the reason {reason!r}, which names none of its "
        f"limits; start a custom exit's reason with one of: "
        + ", ".join(prefix for prefix, _ in _BUDGET_REASONS)
    )


def _step(
    n: int,
    it: IterationRecord | None,
    seen: Observed,
    state_digest: str,
    resumed: bool,
    error: str | None,
) -> Step:
    """Step ``n``: what tightloop stored of iteration ``n - 1`` and what the lab saw of it."""
    calls = seen.llm_calls
    # tightloop retries a failed LLM call once: each failure followed by a call was retried.
    retried = [Event.RETRIED for call in calls[:-1] if call.error is not None]
    return Step(
        index=n,
        start_s=seen.start_s,
        duration_s=seen.duration_s,
        llm_calls=calls,
        tool_calls=tuple(_tool_call(a) for a in it.actions) if it else (),
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        cost_usd=sum_usd(*(c.cost_usd for c in calls)),
        score=it.metric.value if it and it.metric else None,
        error="plan failed tool-argument validation 3 times" if it and it.plan_invalid else error,
        state_digest=state_digest,
        events=((Event.RESUMED,) if resumed else ()) + tuple(retried),
    )


def _tool_call(action: ActionRecord) -> ToolCall:
    try:
        args = json.loads(action.args_excerpt)
    except ValueError:  # tightloop cuts arguments at 1 KiB
        args = {"args_excerpt": action.args_excerpt}
    excerpt = action.result_excerpt
    return ToolCall(action.tool, args, action.status, digest(excerpt), kept(excerpt))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
