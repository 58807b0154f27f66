"""Hypothesis strategies for agent loops: budgets, LLM scripts, fault plans, clocks, scenarios.

Golden scenarios pin the runs someone thought of; these generate the rest: a crash at step 7
of 9, a resume after the budget ran out, a step whose cost crosses the cap. Every strategy
builds the lab's own types (:class:`~pytest_loom.Budget`, :class:`~pytest_loom.Turn`, faults,
:class:`~pytest_loom.scenario.ClockSpec`, :class:`~pytest_loom.Scenario`), so what they draw
runs as a scenario and prints as one (:func:`pytest_loom.reproducer.scenario_yaml`).

Arguments are checked when the strategy is made: a bad one raises Hypothesis'
``InvalidArgument`` naming the argument and the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .budget import Budget
from .record import ToolCallRequest
from .scenario import (
    ClockSpec,
    CrashFault,
    Expectation,
    Fault,
    KillFault,
    LLMErrorFault,
    LLMSpec,
    RaiseFault,
    Scenario,
    scenario_from_text,
)
from .script import LLMErrorKind, Match, Rule, Turn

__all__ = [
    "BUDGET_LIMITS",
    "FAULT_KINDS",
    "MALFORMED_TOOL",
    "budgets",
    "clock_schedules",
    "fault_plans",
    "llm_scripts",
    "llm_turns",
    "scenarios",
]

BUDGET_LIMITS = ("usd", "iterations", "tokens", "wall_clock")
FAULT_KINDS = ("raise", "crash", "kill", "llm_error")
MALFORMED_TOOL = "no_such_tool"
"""The name a malformed tool call asks for: no loop offers it."""
_ERROR_KINDS = tuple(k.value for k in LLMErrorKind)
_RAISED = ("RuntimeError", "ValueError", "KeyError")


# --- argument checks --------------------------------------------------------------------------


def _fail(function: str, name: str, value: Any, expected: str) -> InvalidArgument:
    return InvalidArgument(f"{function}({name}={value!r}): expected {expected}")


def _positive(function: str, name: str, value: Any, *, integral: bool = False) -> None:
    kind = int if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise _fail(function, name, value, f"{'an integer' if integral else 'a number'} > 0")


def _count(function: str, name: str, value: Any, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(function, name, value, f"an integer >= {minimum}")


def _subset(function: str, name: str, value: Any, choices: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise _fail(function, name, value, f"a sequence of some of {', '.join(choices)}")
    items = tuple(value)
    unknown = [v for v in items if v not in choices]
    if unknown or not items:
        raise _fail(
            function,
            name,
            value,
            f"a non-empty sequence of some of {', '.join(choices)}"
            + (f" ({unknown[0]!r} is not one)" if unknown else ""),
        )
    return tuple(dict.fromkeys(items))


def _flag(function: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(function, name, value, "True or False")


# --- budgets ----------------------------------------------------------------------------------


def budgets(
    *,
    limits: Sequence[str] = BUDGET_LIMITS,
    min_limits: int = 1,
    max_usd: float = 0.02,
    max_iterations: int = 8,
    max_tokens: int = 10_000,
    max_wall_clock: float = 300.0,
) -> st.SearchStrategy[Budget]:
    """Budgets setting ``min_limits`` or more of ``limits``, alone and combined.

    USD limits are multiples of $0.0001 up to ``max_usd``, tokens multiples of 100 up to
    ``max_tokens``, wall-clock limits whole seconds up to ``max_wall_clock``.
    """
    name = "budgets"
    chosen = _subset(name, "limits", limits, BUDGET_LIMITS)
    _count(name, "min_limits", min_limits)
    if min_limits > len(chosen):
        raise _fail(name, "min_limits", min_limits, f"at most {len(chosen)}, the number of limits")
    _positive(name, "max_usd", max_usd)
    _positive(name, "max_iterations", max_iterations, integral=True)
    _positive(name, "max_tokens", max_tokens, integral=True)
    _positive(name, "max_wall_clock", max_wall_clock)
    if max_usd < 0.0001:
        raise _fail(name, "max_usd", max_usd, "a number >= 0.0001")
    if max_tokens < 100:
        raise _fail(name, "max_tokens", max_tokens, "an integer >= 100")
    if max_wall_clock < 1:
        raise _fail(name, "max_wall_clock", max_wall_clock, "a number >= 1")
    values: dict[str, st.SearchStrategy[Any]] = {
        "usd": st.integers(1, round(max_usd * 10_000)).map(lambda n: round(n / 10_000, 4)),
        "iterations": st.integers(1, max_iterations),
        "tokens": st.integers(1, max_tokens // 100).map(lambda n: n * 100),
        "wall_clock": st.integers(1, int(max_wall_clock)).map(float),
    }
    subsets = st.lists(
        st.sampled_from(chosen), min_size=min_limits, max_size=len(chosen), unique=True
    )

    @st.composite
    def budget(draw: st.DrawFn) -> Budget:
        picked = draw(subsets)
        return Budget(**{limit: draw(values[limit]) for limit in chosen if limit in picked})

    return budget()


# --- LLM scripts ------------------------------------------------------------------------------


def llm_turns(
    *,
    tools: Sequence[str] = ("note",),
    max_tool_calls: int = 2,
    max_tokens: int = 2_000,
    max_latency: float = 30.0,
    explicit_costs: bool = True,
    errors: bool = True,
    malformed: bool = True,
    done: bool = True,
    tool_turns_only: bool = False,
    done_text: str = "DONE",
) -> st.SearchStrategy[Turn]:
    """One scripted reply: text, tool calls, usage, latency, maybe an explicit cost or an error.

    A reply whose text is ``done_text`` ends the task (only with ``done=True``). Tool calls ask
    for one of ``tools`` with an empty ``args``; :func:`llm_scripts` numbers them. With
    ``malformed``, a call may ask for :data:`MALFORMED_TOOL`, which no loop offers. With
    ``errors``, the turn may fail as a provider error (any :class:`~pytest_loom.LLMErrorKind`).
    With ``tool_turns_only``, every reply that does not end the task asks for a tool.
    """
    name = "llm_turns"
    if (
        isinstance(tools, str)
        or not isinstance(tools, Sequence)
        or not tools
        or not all(isinstance(t, str) and t for t in tools)
    ):
        raise _fail(name, "tools", tools, "a non-empty sequence of tool names")
    offered = tuple(tools)
    _count(name, "max_tool_calls", max_tool_calls, minimum=1 if tool_turns_only else 0)
    _count(name, "max_tokens", max_tokens)
    if isinstance(max_latency, bool) or not isinstance(max_latency, int | float) or max_latency < 0:
        raise _fail(name, "max_latency", max_latency, "a number >= 0")
    for flag, value in (
        ("explicit_costs", explicit_costs),
        ("errors", errors),
        ("malformed", malformed),
        ("done", done),
        ("tool_turns_only", tool_turns_only),
    ):
        _flag(name, flag, value)
    if not isinstance(done_text, str) or not done_text:
        raise _fail(name, "done_text", done_text, "a non-empty string")
    if not max_tool_calls and tool_turns_only:
        raise _fail(name, "max_tool_calls", max_tool_calls, "an integer >= 1 with tool_turns_only")
    offered_names = st.sampled_from(offered)
    # A malformed call and an error turn are each one in sixteen; a turn ending the task, one
    # in ten: most runs go on long enough for budgets and resumes to matter.
    names = (
        st.integers(0, 15).flatmap(lambda n: st.just(MALFORMED_TOOL) if n == 15 else offered_names)
        if malformed
        else offered_names
    )
    latencies = st.none() | st.integers(0, int(max_latency)).map(float)
    costs = st.none() | st.integers(0, 500).map(lambda n: round(n / 100_000, 5))

    @st.composite
    def turn(draw: st.DrawFn) -> Turn:
        if errors and draw(st.integers(0, 15)) == 15:
            kind = draw(st.sampled_from(_ERROR_KINDS))
            return Turn(error=LLMErrorKind(kind), latency_s=draw(latencies))
        finishes = done and draw(st.integers(0, 9)) == 9
        fewest = 1 if tool_turns_only and not finishes else 0
        calls = draw(st.lists(names, min_size=fewest, max_size=max(fewest, max_tool_calls)))
        return Turn(
            text=done_text if finishes else "working",
            tool_calls=() if finishes else tuple(ToolCallRequest(n) for n in calls),
            input_tokens=draw(st.integers(0, max_tokens)),
            output_tokens=draw(st.integers(0, max_tokens // 4)),
            latency_s=draw(latencies),
            cost_usd=draw(costs) if explicit_costs else None,
        )

    return turn()


def llm_scripts(
    *, min_turns: int = 1, max_turns: int = 10, **turn_options: Any
) -> st.SearchStrategy[tuple[Turn, ...]]:
    """A script of ``min_turns`` to ``max_turns`` turns from :func:`llm_turns` (same options).

    Tool calls are numbered through the script: call k is ``call_k`` with ``args
    {"text": "n<k>"}``, so no two calls of a script are alike.
    """
    _count("llm_scripts", "min_turns", min_turns)
    _count("llm_scripts", "max_turns", max_turns)
    if max_turns < min_turns:
        raise _fail("llm_scripts", "max_turns", max_turns, f"an integer >= min_turns={min_turns}")
    return st.lists(llm_turns(**turn_options), min_size=min_turns, max_size=max_turns).map(
        _numbered
    )


def _numbered(turns: Sequence[Turn]) -> tuple[Turn, ...]:
    numbered: list[Turn] = []
    k = 0
    for turn in turns:
        calls = []
        for call in turn.tool_calls:
            k += 1
            args = {} if call.name == MALFORMED_TOOL else {"text": f"n{k}"}
            calls.append(ToolCallRequest(call.name, args, f"call_{k}"))
        numbered.append(replace(turn, tool_calls=tuple(calls)))
    return tuple(numbered)


# --- faults, clocks ---------------------------------------------------------------------------


def fault_plans(
    *,
    kinds: Sequence[str] = ("raise", "crash", "llm_error"),
    min_faults: int = 0,
    max_faults: int = 2,
    max_step: int = 6,
    max_call: int = 12,
    resume: bool | None = True,
) -> st.SearchStrategy[tuple[Fault, ...]]:
    """``min_faults`` to ``max_faults`` faults of ``kinds``: raise, crash or kill at a step up to
    ``max_step``, an LLM error at a call up to ``max_call``.

    Step faults are at different steps. ``resume`` is whether crashes and kills resume
    (``None``: drawn). ``kill`` really ends a child process (about half a second each), so it
    is not in the default ``kinds``.
    """
    name = "fault_plans"
    chosen = _subset(name, "kinds", kinds, FAULT_KINDS)
    _count(name, "min_faults", min_faults)
    _count(name, "max_faults", max_faults)
    if max_faults < min_faults:
        raise _fail(name, "max_faults", max_faults, f"an integer >= min_faults={min_faults}")
    _positive(name, "max_step", max_step, integral=True)
    _positive(name, "max_call", max_call, integral=True)
    if resume is not None:
        _flag(name, "resume", resume)
    resumes = st.booleans() if resume is None else st.just(resume)
    steps = st.integers(1, max_step)
    makers: dict[str, st.SearchStrategy[Fault]] = {
        "raise": st.builds(RaiseFault, step=steps, error=st.sampled_from(_RAISED)),
        "crash": st.builds(CrashFault, step=steps, resume=resumes),
        "kill": st.builds(KillFault, step=steps, resume=resumes),
        "llm_error": st.builds(
            LLMErrorFault,
            call=st.integers(1, max_call),
            kind=st.sampled_from(list(LLMErrorKind)),
        ),
    }
    return st.lists(
        st.one_of([makers[k] for k in chosen]),
        min_size=min_faults,
        max_size=max_faults,
        unique_by=lambda f: ("call", f.call) if isinstance(f, LLMErrorFault) else ("step", f.step),
    ).map(lambda faults: tuple(sorted(faults, key=_fault_order)))


def _fault_order(fault: Fault) -> tuple[int, int]:
    if isinstance(fault, LLMErrorFault):
        return (1, fault.call)
    return (0, fault.step)


_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def clock_schedules(
    *, max_step: float = 60.0, days: int = 90, start: datetime | None = None
) -> st.SearchStrategy[ClockSpec]:
    """When the run starts (whole minutes in the ``days`` after 2026-01-01, or ``start``) and
    how many whole fake seconds, up to ``max_step``, each loop step takes."""
    name = "clock_schedules"
    if isinstance(max_step, bool) or not isinstance(max_step, int | float) or max_step < 0:
        raise _fail(name, "max_step", max_step, "a number >= 0")
    _positive(name, "days", days, integral=True)
    if start is not None and (not isinstance(start, datetime) or start.tzinfo is None):
        raise _fail(name, "start", start, "an aware datetime")
    starts = (
        st.just(start.astimezone(UTC))
        if start is not None
        else st.integers(0, days * 24 * 60).map(lambda m: _EPOCH + timedelta(minutes=m))
    )
    return st.builds(ClockSpec, start=starts, step_s=st.integers(0, int(max_step)).map(float))


# --- whole scenarios --------------------------------------------------------------------------

_GENERATED = Path("generated.loom.yaml")


def scenarios(
    runtime: str = "reference",
    entry: str | None = None,
    *,
    input: Any = None,
    budget: st.SearchStrategy[Budget] | None = None,
    turns: st.SearchStrategy[tuple[Turn, ...]] | None = None,
    faults: st.SearchStrategy[tuple[Fault, ...]] | None = None,
    clock: st.SearchStrategy[ClockSpec] | None = None,
    options: Mapping[str, Any] | None = None,
    id: str = "generated",
) -> st.SearchStrategy[Scenario]:
    """Whole scenarios for ``runtime`` and its entry point ``entry``.

    Without ``entry``, the runtime's property loop (:mod:`pytest_loom.property_loops`) is used,
    with its input, and the budgets and scripts default to what that runtime can run (the
    limits it enforces; tool calls in every turn where a reply without one ends the run).
    The script ends with a standing rule answering any request the turns left with
    ``DONE``, so a run never runs out of replies; unused turns are allowed (a budget may end
    the run first). Each scenario is read back through the loader, so it is exactly what
    :func:`~pytest_loom.reproducer.scenario_yaml` prints.
    """
    from .property_loops import DONE, TARGETS, TASK

    name = "scenarios"
    if not isinstance(runtime, str) or not runtime:
        raise _fail(name, "runtime", runtime, "a runtime name, such as 'reference'")
    if entry is None:
        if runtime not in TARGETS:
            raise _fail(
                name,
                "entry",
                entry,
                f"an entry point: {runtime!r} has no property loop (those with one: "
                f"{', '.join(TARGETS)})",
            )
        target = TARGETS[runtime][0]
        entry, input = target.entry, target.input if input is None else input
        limits, tool_only, costs = target.limits, target.tool_turns_only, target.explicit_costs
        options = {**target.options, **(options or {})}
    else:
        if not isinstance(entry, str) or ":" not in entry:
            raise _fail(name, "entry", entry, "'module.path:callable'")
        limits, tool_only, costs = BUDGET_LIMITS, False, True
    for arg, value in (("budget", budget), ("turns", turns), ("faults", faults), ("clock", clock)):
        if value is not None and not isinstance(value, st.SearchStrategy):
            raise _fail(name, arg, value, "a Hypothesis strategy")
    budget = budget if budget is not None else budgets(limits=limits)
    turns = (
        turns
        if turns is not None
        else llm_scripts(tool_turns_only=tool_only, explicit_costs=costs, done_text=DONE)
    )
    faults = faults if faults is not None else fault_plans()
    clock = clock if clock is not None else clock_schedules()
    fallback = Rule(Match(contains=TASK), Turn(text=DONE, input_tokens=10, output_tokens=2))

    @st.composite
    def scenario(draw: st.DrawFn) -> Scenario:
        drawn = Scenario(
            path=_GENERATED,
            id=id,
            version=1,
            description="",
            runtime=runtime,
            entry=entry,
            entry_line=1,
            input=input,
            options=dict(options or {}),
            budget=draw(budget),
            llm=LLMSpec(allow_unused=True, turns=draw(turns), rules=(fallback,)),
            clock=draw(clock),
            faults=draw(faults),
            expect=Expectation(),
            snapshot=False,
        )
        return reread(drawn)

    return scenario()


def reread(scenario: Scenario, path: Path | None = None) -> Scenario:
    """``scenario`` written as a file and read back by the loader (checked, with its lines)."""
    from .reproducer import scenario_yaml

    return scenario_from_text(scenario_yaml(scenario), path or scenario.path)
