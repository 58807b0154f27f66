"""Budget and resume invariants: what every run record must satisfy, whatever produced it.

Golden scenarios check the runs someone thought of; these check any run. Each invariant is a
function over run records that raises :class:`InvariantViolation` (an ``AssertionError``) naming
the invariant, the step and the numbers. They are used by the property suite
(``pytest --loom-properties``), by scenarios (``expect: {invariants: [...]}``) and by your own
tests.

What a runtime promises differs: a runtime that checks its USD budget only before a step may
end above it by that step's cost. Each runtime's promises are a :class:`RuntimeContract`,
written from its page in ``docs/runtimes/``; an allowance applies only where that page
documents one. A runtime without a contract here gets :data:`STRICT`: no allowance at all.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from .budget import Budget
from .record import BudgetLimit, Event, RunRecord, Step, StopReason, digest, sum_usd

if TYPE_CHECKING:
    from .scenario import Scenario

__all__ = [
    "CONTRACTS",
    "INVARIANTS",
    "STRICT",
    "Allowance",
    "InvariantViolation",
    "RuntimeContract",
    "budget_holds",
    "check_run",
    "contract_for",
    "each_step_once",
    "resume_matches_uninterrupted",
    "resume_never_regrants",
    "stop_agrees_with_store",
    "stop_agrees_with_totals",
    "tool_calls_once",
    "totals_consistent",
    "wall_clock_holds_across_resume",
]


class InvariantViolation(AssertionError):
    """A run broke an invariant: which one, at which step (if one), and what happened."""

    def __init__(self, invariant: str, message: str, *, step: int | None = None) -> None:
        super().__init__(f"{invariant}: {message}")
        self.invariant = invariant
        self.message = message
        self.step = step


class Allowance(enum.StrEnum):
    """How far past a limit a runtime's documentation says a run may end."""

    NONE = "none"
    """The run never spends more than the limit."""
    CALL = "call"
    """Every paid LLM call starts below the limit (it is checked before each call), so the
    run may end above it by its last call."""
    STEP = "step"
    """Every step starts below the limit (it is checked before each step only), so the run may
    end above it by its last step."""


@dataclass(frozen=True, slots=True)
class RuntimeContract:
    """What one runtime promises about budgets, stops and resume, as its docs page states it."""

    name: str
    doc: str
    """Where the promises are written down."""
    allowance: Mapping[BudgetLimit, Allowance] = field(default_factory=dict)
    """Per limit, how far past it a run may end (absent: :attr:`Allowance.NONE`)."""
    defaults: Budget = field(default_factory=Budget)
    """Limits the runtime applies when the scenario sets none."""
    estimates: frozenset[BudgetLimit] = frozenset()
    """Limits the runtime may stop on before reaching them, because the next step's estimated
    cost would cross them (estimated as the most expensive step so far)."""
    exhausted_as: Mapping[BudgetLimit, StopReason] = field(default_factory=dict)
    """Limits whose exhaustion the runtime reports with another stop (loom-runner: paused)."""
    store_words: Mapping[StopReason, frozenset[str | None]] | None = None
    """Per stop reason, the statuses the runtime's own store may hold with it (``None``: the
    record shows no raw status). ``None`` for the whole mapping: not checked."""
    exactly_once: bool = True
    """Steps and tool calls run exactly once, across crashes and resumes."""
    resumes_in_place: bool = True
    """A resumed run continues where it stopped, so its history equals an uninterrupted run's
    apart from the ``resumed`` event."""


_BUDGET_LIMITS = tuple(BudgetLimit)
_LIMIT_NAMES = tuple(f.name for f in fields(Budget))
_ANY_STORE = frozenset({None})

CONTRACTS: dict[str, RuntimeContract] = {
    "reference": RuntimeContract(
        name="reference",
        doc="docs/python-api.md#budget-semantics",
        allowance={
            BudgetLimit.USD: Allowance.CALL,
            BudgetLimit.TOKENS: Allowance.CALL,
            BudgetLimit.WALL_CLOCK: Allowance.STEP,
        },
        estimates=frozenset({BudgetLimit.USD, BudgetLimit.TOKENS}),
        store_words={reason: _ANY_STORE for reason in StopReason}
        | {StopReason.PAUSED: frozenset({"running"})},
    ),
    "loomc": RuntimeContract(
        name="loomc",
        doc="docs/runtimes/loomc.md#budget",
        allowance={BudgetLimit.USD: Allowance.STEP, BudgetLimit.WALL_CLOCK: Allowance.STEP},
        store_words={
            StopReason.CONVERGED: frozenset({"completed"}),
            StopReason.BUDGET_EXHAUSTED: _ANY_STORE,
            StopReason.STALLED: frozenset({"completed"}),
            StopReason.FAILED: frozenset({None, "failed", "running"}),
            StopReason.PAUSED: frozenset({"running"}),
        },
    ),
    "loom-runner": RuntimeContract(
        name="loom-runner",
        doc="docs/runtimes/loom-runner.md#budget-mapping",
        exhausted_as={BudgetLimit.ITERATIONS: StopReason.PAUSED},
        store_words={
            StopReason.COMPLETED: frozenset({"completed"}),
            StopReason.PAUSED: frozenset({"paused", "running"}),
            StopReason.FAILED: frozenset({"failed", "running"}),
        },
    ),
    "tightloop": RuntimeContract(
        name="tightloop",
        doc="docs/runtimes/tightloop.md#budget-mapping",
        allowance={
            BudgetLimit.USD: Allowance.STEP,
            BudgetLimit.TOKENS: Allowance.STEP,
            BudgetLimit.WALL_CLOCK: Allowance.STEP,
        },
        defaults=Budget(iterations=20, tokens=500_000, wall_clock=1800.0),
        store_words={
            StopReason.COMPLETED: frozenset({"SUCCESS"}),
            StopReason.BUDGET_EXHAUSTED: frozenset({"BUDGET_EXHAUSTED"}),
            StopReason.STALLED: frozenset({"NO_PROGRESS"}),
            StopReason.FAILED: frozenset({"PLAN_FAILED", "ERROR", "running"}),
            StopReason.DENIED: frozenset({"APPROVAL_DENIED", "PENDING_EXPIRED"}),
            StopReason.AWAITING_APPROVAL: frozenset({"AWAITING_APPROVAL"}),
            StopReason.PAUSED: frozenset({"running"}),
        },
    ),
    "loom-agent": RuntimeContract(
        name="loom-agent",
        doc="docs/runtimes/loom-agent.md#budget",
        exactly_once=False,  # its resume restarts the task (docs/runtimes/loom-agent.md#resume)
        store_words={
            StopReason.COMPLETED: _ANY_STORE,
            StopReason.BUDGET_EXHAUSTED: frozenset({"failed"}),
            StopReason.FAILED: frozenset({"failed"}),
            StopReason.PAUSED: _ANY_STORE,
        },
    ),
}
"""The contracts of the reference runtime and the four shipped adapters."""

STRICT = RuntimeContract(name="", doc="no documented allowance")
"""The contract of a runtime with none here: no allowance, stops not compared with a store."""


def contract_for(runtime: str) -> RuntimeContract:
    """The contract of ``runtime``: its entry in :data:`CONTRACTS`, else :data:`STRICT`."""
    return CONTRACTS.get(runtime, replace(STRICT, name=runtime))


# --- helpers ----------------------------------------------------------------------------------


def _effective(budget: Budget, contract: RuntimeContract) -> Budget:
    """The scenario's limits, plus the runtime's own defaults for the ones it leaves unset."""
    defaults = {
        name: value
        for name in _LIMIT_NAMES
        if getattr(budget, name) is None and (value := getattr(contract.defaults, name)) is not None
    }
    return replace(budget, **defaults) if defaults else budget


def _limit(budget: Budget, limit: BudgetLimit) -> float | None:
    value: float | None = getattr(budget, limit.value)
    return value


def _money(value: float) -> str:
    return f"${value:.10g}"


def _amount(limit: BudgetLimit, value: float) -> str:
    if limit is BudgetLimit.USD:
        return _money(value)
    if limit is BudgetLimit.WALL_CLOCK:
        return f"{value:.9g} s"
    return f"{value:.9g} {limit.value}"


def _resumed_at(record: RunRecord) -> int | None:
    return next((s.index for s in record.steps if Event.RESUMED in s.events), None)


class _Charge(NamedTuple):
    """One thing that spent a limit: its step and, at call granularity, which LLM call (or -1:
    the rest of the step's spending), what was spent before it, and how much it took."""

    step: int
    call: int
    before: float
    amount: float

    @property
    def what(self) -> str:
        if self.call > 0:
            return f"LLM call {self.call}"
        return "its other spending" if self.call < 0 else "the step"


def _charges(record: RunRecord, limit: BudgetLimit, allowance: Allowance) -> Iterator[_Charge]:
    """What spent ``limit`` in the run, at the granularity its allowance is checked at."""
    spent = 0.0
    for step in record.steps:
        if limit is BudgetLimit.WALL_CLOCK:
            yield _Charge(step.index, 0, step.start_s, step.duration_s)
            continue
        if limit is BudgetLimit.ITERATIONS:
            yield _Charge(step.index, 0, float(step.index - 1), 1.0)
            continue
        step_amount = _spent(step, limit)
        if allowance is Allowance.CALL:
            for i, call in enumerate(step.llm_calls, 1):
                cost = (
                    call.cost_usd
                    if limit is BudgetLimit.USD
                    else call.input_tokens + call.output_tokens
                )
                yield _Charge(step.index, i, spent, cost)
                spent = sum_usd(spent, cost)
            rest = step_amount - sum(
                c.cost_usd if limit is BudgetLimit.USD else c.input_tokens + c.output_tokens
                for c in step.llm_calls
            )
            if rest > 0:
                yield _Charge(step.index, -1, spent, rest)
                spent = sum_usd(spent, rest)
        else:
            yield _Charge(step.index, 0, spent, step_amount)
            spent = sum_usd(spent, step_amount)


def _spent(step: Step, limit: BudgetLimit) -> float:
    if limit is BudgetLimit.USD:
        return step.cost_usd
    return float(step.input_tokens + step.output_tokens)


def _over(
    record: RunRecord, budget: Budget, contract: RuntimeContract, limit: BudgetLimit, since: int
) -> str | None:
    """The first charge at step ``since`` or later that the contract does not allow, described."""
    cap = _limit(_effective(budget, contract), limit)
    if cap is None:
        return None
    allowance = contract.allowance.get(limit, Allowance.NONE)
    for charge in _charges(record, limit, allowance):
        if charge.step < since:
            continue
        if charge.amount <= 0 and limit in (BudgetLimit.USD, BudgetLimit.TOKENS):
            continue  # nothing was spent
        after = charge.before + charge.amount
        if allowance is Allowance.NONE:
            if after > cap + 1e-12:
                return (
                    f"step {charge.step}: {charge.what} took the run to "
                    f"{_amount(limit, after)}, over its {limit.value} budget of "
                    f"{_amount(limit, cap)} "
                    f"({contract.name or 'this runtime'} documents no allowance: {contract.doc})"
                )
        elif charge.before >= cap - 1e-12:
            return (
                f"step {charge.step}: {charge.what} started with {_amount(limit, charge.before)} "
                f"already spent of its {limit.value} budget of {_amount(limit, cap)}, and spent "
                f"{_amount(limit, charge.amount)} more (allowance for {contract.name}: each "
                f"{'call' if allowance is Allowance.CALL else 'step'} starts below the limit, "
                f"{contract.doc})"
            )
    return None


# --- the invariants ---------------------------------------------------------------------------


def totals_consistent(record: RunRecord) -> None:
    """Cumulative cost is monotone and equals the running sum of the steps; totals are the sums
    of the steps; a step's tokens and cost are at least its LLM calls'."""
    name = "totals_consistent"
    running = 0.0
    llm_calls = input_tokens = output_tokens = 0
    for step in record.steps:
        if step.cost_usd < 0 or step.input_tokens < 0 or step.output_tokens < 0:
            raise InvariantViolation(name, f"step {step.index} spent a negative amount")
        running = sum_usd(running, step.cost_usd)
        if abs(step.cumulative_cost_usd - running) > 1e-9:
            raise InvariantViolation(
                name,
                f"step {step.index}: cumulative cost {_money(step.cumulative_cost_usd)}, but the "
                f"steps up to it cost {_money(running)}",
                step=step.index,
            )
        calls = step.llm_calls
        llm_calls += len(calls)
        input_tokens += step.input_tokens
        output_tokens += step.output_tokens
        calls_usd = sum_usd(*[c.cost_usd for c in calls])
        calls_in = sum([c.input_tokens for c in calls])
        calls_out = sum([c.output_tokens for c in calls])
        if step.cost_usd + 1e-9 < calls_usd or (step.input_tokens, step.output_tokens) < (
            calls_in,
            calls_out,
        ):
            raise InvariantViolation(
                name,
                f"step {step.index}: the step says {_money(step.cost_usd)} and "
                f"{step.input_tokens}+{step.output_tokens} tokens, its LLM calls "
                f"{_money(calls_usd)} and {calls_in}+{calls_out} tokens",
                step=step.index,
            )
    totals = record.totals
    sums = {
        "steps": len(record.steps),
        "llm_calls": llm_calls,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }
    for key, value in sums.items():
        if getattr(totals, key) != value:
            raise InvariantViolation(
                name, f"totals.{key} is {getattr(totals, key)}, the steps add up to {value}"
            )
    if abs(totals.cost_usd - running) > 1e-9:
        raise InvariantViolation(
            name,
            f"totals.cost_usd is {_money(totals.cost_usd)}, the steps add up to {_money(running)}",
        )


def budget_holds(record: RunRecord, budget: Budget, contract: RuntimeContract) -> None:
    """No limit is overspent beyond what the runtime documents (:attr:`RuntimeContract.allowance`).

    Iterations are never exceeded; USD and tokens at most by the allowance; the wall clock:
    every step starts before it runs out (the last step may end after it).
    """
    for limit in _BUDGET_LIMITS:
        problem = _over(record, budget, contract, limit, since=1)
        if problem is not None:
            raise InvariantViolation("budget_holds", problem, step=_step_of(problem))


def resume_never_regrants(record: RunRecord, budget: Budget, contract: RuntimeContract) -> None:
    """After a resume, the run goes on with what it had left: USD, tokens and iterations spent
    before the resume still count."""
    resumed = _resumed_at(record)
    if resumed is None:
        return
    for limit in (BudgetLimit.ITERATIONS, BudgetLimit.USD, BudgetLimit.TOKENS):
        problem = _over(record, budget, contract, limit, since=resumed)
        if problem is not None:
            raise InvariantViolation(
                "resume_never_regrants",
                f"{problem}; the run was resumed at step {resumed}",
                step=_step_of(problem),
            )


def wall_clock_holds_across_resume(
    record: RunRecord, budget: Budget, contract: RuntimeContract
) -> None:
    """After a resume, the wall-clock budget counts the fake time spent before it."""
    resumed = _resumed_at(record)
    if resumed is None:
        return
    problem = _over(record, budget, contract, BudgetLimit.WALL_CLOCK, since=resumed)
    if problem is not None:
        raise InvariantViolation(
            "wall_clock_holds_across_resume",
            f"{problem}; the run was resumed at step {resumed}",
            step=_step_of(problem),
        )


def stop_agrees_with_totals(record: RunRecord, budget: Budget, contract: RuntimeContract) -> None:
    """A budget stop names a limit that is set and was reached (or, where the runtime estimates,
    that the next step's estimate would cross); a limit shown as another stop
    (:attr:`RuntimeContract.exhausted_as`) was reached too."""
    name = "stop_agrees_with_totals"
    stop = record.stop
    limits = _effective(budget, contract)
    if stop.reason is StopReason.BUDGET_EXHAUSTED:
        assert stop.limit is not None
        cap = _limit(limits, stop.limit)
        if cap is None:
            raise InvariantViolation(
                name, f"the run stopped {stop.label}, but no {stop.limit.value} limit was set"
            )
        used = _used(record, stop.limit)
        if used >= cap - 1e-12:
            return
        if stop.limit in contract.estimates:
            largest = max((_spent(s, stop.limit) for s in record.steps), default=0.0)
            if used + largest > cap + 1e-12:
                return
        raise InvariantViolation(
            name,
            f"the run stopped {stop.label} after {len(record.steps)} steps with "
            f"{_amount(stop.limit, used)} used of {_amount(stop.limit, cap)}"
            + (
                f" (and the most expensive step, {_amount(stop.limit, largest)}, would fit)"
                if stop.limit in contract.estimates
                else ""
            ),
        )
    for limit, reason in contract.exhausted_as.items():
        cap = _limit(limits, limit)
        if stop.reason is reason and cap is not None and stop.raw_status == str(reason):
            used = _used(record, limit)
            if used < cap:
                raise InvariantViolation(
                    name,
                    f"the run stopped {stop.label} (how {contract.name} reports a used-up "
                    f"{limit.value} budget) with {_amount(limit, used)} used of "
                    f"{_amount(limit, cap)}",
                )


def _used(record: RunRecord, limit: BudgetLimit) -> float:
    totals = record.totals
    if limit is BudgetLimit.ITERATIONS:
        return float(totals.steps)
    if limit is BudgetLimit.USD:
        return totals.cost_usd
    if limit is BudgetLimit.TOKENS:
        return float(totals.tokens)
    last = record.steps[-1] if record.steps else None
    return max(totals.elapsed_s, last.start_s + last.duration_s if last else 0.0)


def stop_agrees_with_store(record: RunRecord, contract: RuntimeContract) -> None:
    """The runtime's own stored status is one its docs map to the record's stop reason."""
    if contract.store_words is None:
        return
    allowed = contract.store_words.get(record.stop.reason)
    raw = record.stop.raw_status
    if allowed is None or raw not in allowed:
        words = sorted("(none)" if w is None else w for w in allowed or ())
        raise InvariantViolation(
            "stop_agrees_with_store",
            f"the record says {record.stop.label}, the runtime's store says "
            f"{raw or '(nothing)'}; {contract.doc.split('#')[0]} maps {record.stop.reason} to "
            + (", ".join(words) if words else "no stored status at all"),
        )


def each_step_once(record: RunRecord, contract: RuntimeContract) -> None:
    """No step's work is done twice: no LLM request of one step is made again in a later step.

    It relies on the loop's requests carrying its progress (the property loops put the step
    number in every prompt); retries within a step are not repeats.
    """
    if not contract.exactly_once:
        return
    seen: dict[str, int] = {}
    for step in record.steps:
        for call in step.llm_calls:
            first = seen.setdefault(call.request_digest, step.index)
            if first != step.index:
                raise InvariantViolation(
                    "each_step_once",
                    f"step {step.index} made the request of step {first} again "
                    f"({call.prompt!r}): {contract.name} promises each step runs once",
                    step=step.index,
                )


def tool_calls_once(record: RunRecord, contract: RuntimeContract) -> None:
    """No tool call is executed twice: no two executed calls have the same name and arguments.

    It relies on distinct tool-call requests having distinct arguments (the property loops'
    generated calls do).
    """
    if not contract.exactly_once:
        return
    seen: dict[tuple[str, str], int] = {}
    for step in record.steps:
        for call in step.tool_calls:
            key = (call.name, digest(dict(call.args)))
            if key in seen:
                first = seen[key]
                raise InvariantViolation(
                    "tool_calls_once",
                    f"step {step.index} executed {call.name}({_args(call.args)}) again (first "
                    f"in step {first}): {contract.name} promises exactly-once tool calls",
                    step=step.index,
                )
            seen[key] = step.index


def _args(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(args.items()))


_COMPARED = (
    "llm_calls",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cumulative_cost_usd",
    "score",
    "error",
    "state_digest",
)


def resume_matches_uninterrupted(
    resumed: RunRecord, uninterrupted: RunRecord, contract: RuntimeContract
) -> None:
    """A run crashed (or killed) and resumed has the history of the same run uninterrupted:
    the same steps, calls, spend, states and stop, apart from the ``resumed`` events (and the
    fake times, which a resume may shift)."""
    name = "resume_matches_uninterrupted"
    if not contract.resumes_in_place:
        return
    if resumed.stop.label != uninterrupted.stop.label:
        raise InvariantViolation(
            name,
            f"resumed, the run stopped {resumed.stop.label} after {len(resumed.steps)} steps; "
            f"uninterrupted, {uninterrupted.stop.label} after {len(uninterrupted.steps)}",
        )
    for mine, theirs in zip(resumed.steps, uninterrupted.steps, strict=False):
        for key in _COMPARED:
            if getattr(mine, key) != getattr(theirs, key):
                raise InvariantViolation(
                    name,
                    f"step {mine.index}: {_field_diff(key, mine, theirs)} "
                    f"(resumed vs uninterrupted)",
                    step=mine.index,
                )
        others = tuple(e for e in mine.events if e != Event.RESUMED)
        if others != theirs.events:
            raise InvariantViolation(
                name,
                f"step {mine.index}: events {list(mine.events)} vs {list(theirs.events)}",
                step=mine.index,
            )
    if len(resumed.steps) != len(uninterrupted.steps):
        raise InvariantViolation(
            name,
            f"resumed, the run has {len(resumed.steps)} steps; uninterrupted, "
            f"{len(uninterrupted.steps)}",
        )


def _field_diff(key: str, mine: Step, theirs: Step) -> str:
    a, b = getattr(mine, key), getattr(theirs, key)
    if key == "llm_calls":
        if len(a) != len(b):
            return f"{len(a)} LLM calls vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True), 1):
            if x != y:
                diff = next(f.name for f in fields(x) if getattr(x, f.name) != getattr(y, f.name))
                return f"LLM call {i} {diff}: {getattr(x, diff)!r} vs {getattr(y, diff)!r}"
    if key == "tool_calls":
        return f"tool calls {[c.name for c in a]} vs {[c.name for c in b]}"
    return f"{key} {a!r} vs {b!r}"


def _step_of(problem: str) -> int | None:
    head = problem.split(":", 1)[0]
    return int(head.removeprefix("step ")) if head.startswith("step ") else None


# --- running them together --------------------------------------------------------------------

Check = Callable[[RunRecord, Budget, RuntimeContract], None]

INVARIANTS: dict[str, Check] = {
    "totals_consistent": lambda record, budget, contract: totals_consistent(record),
    "wall_clock_holds_across_resume": wall_clock_holds_across_resume,
    "resume_never_regrants": resume_never_regrants,
    "budget_holds": budget_holds,
    "stop_agrees_with_totals": stop_agrees_with_totals,
    "stop_agrees_with_store": lambda record, budget, contract: stop_agrees_with_store(
        record, contract
    ),
    "each_step_once": lambda record, budget, contract: each_step_once(record, contract),
    "tool_calls_once": lambda record, budget, contract: tool_calls_once(record, contract),
}
"""The invariants over one record, by name, in the order :func:`check_run` checks them.
``resume_matches_uninterrupted`` compares two records and comes last."""

NAMES = (*INVARIANTS, "resume_matches_uninterrupted")
"""Every invariant's name: what ``expect.invariants`` in a scenario may list."""


def check_run(
    record: RunRecord,
    budget: Budget,
    *,
    runtime: str | None = None,
    uninterrupted: RunRecord | None = None,
    only: Sequence[str] | None = None,
) -> list[InvariantViolation]:
    """Every invariant the run breaks (each at most once), in :data:`NAMES` order.

    ``runtime`` picks the contract (default: the record's runtime). ``uninterrupted`` is the
    record of the same scenario without its crash and kill faults; without it,
    ``resume_matches_uninterrupted`` is not checked. ``only`` limits the check to those names.
    """
    contract = contract_for(runtime or record.runtime.name)
    wanted = NAMES if only is None else [n for n in NAMES if n in only]
    found: list[InvariantViolation] = []
    for invariant in wanted:
        try:
            if invariant == "resume_matches_uninterrupted":
                if uninterrupted is not None:
                    resume_matches_uninterrupted(record, uninterrupted, contract)
            else:
                INVARIANTS[invariant](record, budget, contract)
        except InvariantViolation as violation:
            found.append(violation)
    return found


def scenario_problems(
    scenario: Scenario, record: RunRecord, rerun: Callable[[Scenario], RunRecord]
) -> list[str]:
    """The scenario's ``expect.invariants`` that the run breaks, as readable problem lines.

    ``rerun`` runs a scenario and returns its record: it runs the scenario without its crash
    and kill faults when ``resume_matches_uninterrupted`` is expected.
    """
    names = scenario.expect.invariants
    uninterrupted = None
    if "resume_matches_uninterrupted" in names and _interrupted(scenario):
        uninterrupted = rerun(without_interruptions(scenario))
    line = scenario.lines.get("expect.invariants", scenario.lines.get("expect", 1))
    return [
        f"{scenario.path}:{line}: expect.invariants: {violation}"
        for violation in check_run(
            record,
            scenario.budget,
            runtime=scenario.runtime,
            uninterrupted=uninterrupted,
            only=names,
        )
    ]


def _interrupted(scenario: Scenario) -> bool:
    from .scenario import CrashFault, KillFault

    return any(isinstance(f, CrashFault | KillFault) for f in scenario.faults)


def without_interruptions(scenario: Scenario) -> Scenario:
    """``scenario`` without its crash and kill faults: the run it would be, uninterrupted."""
    from .scenario import CrashFault, KillFault

    kept = tuple(f for f in scenario.faults if not isinstance(f, CrashFault | KillFault))
    return replace(scenario, faults=kept)
