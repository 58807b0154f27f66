"""A scenario written back as a ``.loom.yaml`` file: how a property failure becomes a test.

The property suite generates :class:`~pytest_loom.scenario.Scenario` objects; when one breaks an
invariant, :func:`scenario_yaml` prints it as a file the loader reads back to the same scenario,
ready to commit and run with ``pytest --loom-scenarios``. Only what differs from the loader's
defaults is written, in the order the scenario reference documents the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

import yaml

from .budget import Budget
from .record import ToolCallRequest
from .scenario import (
    DEFAULT_CLOCK_START,
    ClockSpec,
    CrashFault,
    Expectation,
    Fault,
    KillFault,
    LLMErrorFault,
    LLMSpec,
    RaiseFault,
    Scenario,
)
from .script import Match, Rule, Turn

__all__ = ["scenario_document", "scenario_yaml"]

_HEADER = "# yaml-language-server: $schema={schema}\n"


def scenario_yaml(scenario: Scenario, *, schema: str | None = None) -> str:
    """``scenario`` as the text of a scenario file; ``schema`` adds the editor's schema line."""
    text = yaml.safe_dump(
        scenario_document(scenario),
        sort_keys=False,
        default_flow_style=None,
        allow_unicode=True,
        width=100,
    )
    return (_HEADER.format(schema=schema) if schema else "") + text


def scenario_document(scenario: Scenario) -> dict[str, Any]:
    """``scenario`` as the mapping a scenario file holds (defaults left out)."""
    if scenario.llm.cassette is not None:
        raise ValueError("a scenario replaying a cassette cannot be written back")
    doc: dict[str, Any] = {"version": scenario.version, "id": scenario.id}
    if scenario.description:
        doc["description"] = scenario.description
    if scenario.runtime != "reference":
        doc["runtime"] = scenario.runtime
    doc["entry"] = scenario.entry
    if scenario.input is not None:
        doc["input"] = _plain(scenario.input)
    if scenario.options:
        doc["options"] = _plain(scenario.options)
    _put(doc, "budget", _budget(scenario.budget))
    _put(doc, "llm", _llm(scenario.llm))
    _put(doc, "clock", _clock(scenario.clock))
    _put(doc, "faults", [_fault(f) for f in scenario.faults])
    _put(doc, "expect", _expect(scenario.expect))
    if not scenario.snapshot:
        doc["snapshot"] = False
    _put(doc, "markers", list(scenario.markers))
    return doc


def _put(doc: dict[str, Any], key: str, value: Any) -> None:
    if value:
        doc[key] = value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _budget(budget: Budget) -> dict[str, Any]:
    values = {
        "usd": budget.usd,
        "iterations": budget.iterations,
        "tokens": budget.tokens,
        "wall_clock": budget.wall_clock,
    }
    return {key: value for key, value in values.items() if value is not None}


def _llm(llm: LLMSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if llm.model is not None:
        doc["model"] = llm.model
    if not llm.strict:
        doc["strict"] = False
    if llm.allow_unused:
        doc["allow_unused"] = True
    if llm.latency_s:
        doc["latency"] = llm.latency_s
    if llm.pricing:
        doc["pricing"] = {m: {"input": p.input, "output": p.output} for m, p in llm.pricing.items()}
    _put(doc, "turns", [_turn(t) for t in llm.turns])
    _put(doc, "rules", [_rule(r) for r in llm.rules])
    return doc


def _turn(turn: Turn, *, reply: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if turn.model is not None and not reply:
        doc["model"] = turn.model
    if turn.match is not None and not reply:
        doc["match"] = _match(turn.match)
    if turn.text:
        doc["text"] = turn.text
    if turn.tool_calls:
        doc["tool_calls"] = [_tool_call(c) for c in turn.tool_calls]
    if turn.input_tokens or turn.output_tokens:
        doc["usage"] = {"input": turn.input_tokens, "output": turn.output_tokens}
    if turn.latency_s is not None:
        doc["latency"] = turn.latency_s
    if turn.cost_usd is not None:
        doc["cost"] = turn.cost_usd
    if turn.error is not None:
        doc["error"] = str(turn.error)
    return doc


def _tool_call(call: ToolCallRequest) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": call.name}
    if call.args:
        doc["args"] = _plain(call.args)
    if call.id:
        doc["id"] = call.id
    return doc


def _match(match: Match) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if match.model is not None:
        doc["model"] = match.model
    if match.contains is not None:
        doc["contains"] = match.contains
    if match.regex is not None:
        doc["regex"] = match.regex
    if match.tools:
        doc["tools"] = list(match.tools)
    return doc


def _rule(rule: Rule) -> dict[str, Any]:
    doc: dict[str, Any] = {"match": _match(rule.match), "reply": _turn(rule.reply, reply=True)}
    if rule.reply.model is not None:
        doc["reply"]["model"] = rule.reply.model
    if rule.times is not None:
        doc["times"] = rule.times
    return doc


def _clock(clock: ClockSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if clock.start != DEFAULT_CLOCK_START:
        doc["start"] = clock.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if clock.step_s:
        doc["step"] = clock.step_s
    return doc


def _fault(fault: Fault) -> dict[str, Any]:
    if isinstance(fault, RaiseFault):
        body: dict[str, Any] = {"step": fault.step}
        if fault.error != "RuntimeError":
            body["error"] = fault.error
        if fault.message != "injected fault":
            body["message"] = fault.message
        return {"raise": body}
    if isinstance(fault, LLMErrorFault):
        return {"llm_error": {"call": fault.call, "kind": str(fault.kind)}}
    kind = "crash" if isinstance(fault, CrashFault) else "kill"
    assert isinstance(fault, CrashFault | KillFault)
    body = {"step": fault.step}
    if not fault.resume:
        body["resume"] = False
    return {kind: body}


def _expect(expect: Expectation) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if expect.stop is not None:
        doc["stop"] = expect.stop
    for key in ("steps", "cost_usd", "tokens", "llm_calls"):
        bound = getattr(expect, key)
        if bound is None:
            continue
        if bound.min is not None and bound.min == bound.max:
            doc[key] = bound.min
        else:
            doc[key] = {k: v for k, v in (("min", bound.min), ("max", bound.max)) if v is not None}
    if expect.invariants:
        doc["invariants"] = list(expect.invariants)
    return doc
