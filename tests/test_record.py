"""The run record: JSON round trips, readable errors on bad input, Stop rules and labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from pytest_loom.budget import Budget
from pytest_loom.clock import FakeClock
from pytest_loom.llm import MockLLM
from pytest_loom.record import (
    RECORD_VERSION,
    BudgetLimit,
    LLMCall,
    RecordError,
    RunRecord,
    RuntimeInfo,
    Step,
    Stop,
    StopReason,
    ToolCall,
    ToolCallRequest,
    Totals,
)
from pytest_loom.reference import Loop
from pytest_loom.script import Match, Rule, Turn
from pytest_loom.store import CheckpointStore


def make_record(**changes: Any) -> RunRecord:
    """A record using every kind of field: LLM calls with tool calls, tool calls, events."""
    call = LLMCall(
        model="gpt-4o",
        request_digest="abc123",
        input_tokens=120,
        output_tokens=30,
        cost_usd=0.0006,
        latency_s=1.5,
        text="let me read it",
        tool_calls=(ToolCallRequest("read_file", {"path": "a.py", "lines": [1, 2]}, id="c1"),),
    )
    failed = LLMCall("gpt-4o", "def456", 0, 0, 0.0, 0.2, error="rate_limit")
    steps = (
        Step(
            index=1,
            start_s=0.0,
            duration_s=1.7,
            llm_calls=(failed, call),
            tool_calls=(ToolCall("read_file", {"path": "a.py"}, "ok", "d1"),),
            input_tokens=120,
            output_tokens=30,
            cost_usd=0.0006,
            cumulative_cost_usd=0.0006,
            score=0.4,
            state_digest="s1",
            events=("retried",),
        ),
        Step(
            index=2,
            start_s=1.7,
            duration_s=0.5,
            cumulative_cost_usd=0.0006,
            error="ValueError: boom",
            state_digest="s1",
            events=("resumed", "backtracked"),
        ),
    )
    fields: dict[str, Any] = {
        "scenario": "refine-converges",
        "runtime": RuntimeInfo("reference", "1"),
        "stop": Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit.USD, detail="over"),
        "totals": Totals(2, 2, 120, 30, 0.0006, 2.2),
        "steps": steps,
        "run_id": "run-1",
    }
    return RunRecord(**{**fields, **changes})


def record_json(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(make_record(**changes).to_json())
    return data


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("indent", [True, False])
def test_to_json_from_json_round_trip(indent: bool) -> None:
    record = make_record()

    assert RunRecord.from_json(record.to_json(indent=indent)) == record


def test_from_json_accepts_text_as_well_as_bytes() -> None:
    record = make_record()

    assert RunRecord.from_json(record.to_json().decode()) == record


def test_to_dict_from_dict_round_trip() -> None:
    record = make_record(stop=Stop(StopReason.FAILED, error_type="KeyError", raw_exception="x"))

    assert RunRecord.from_dict(record.to_dict()) == record


def test_a_real_run_record_round_trips(tmp_path: Path, loom_clock: FakeClock) -> None:
    reply = Turn(text="ok", input_tokens=10, output_tokens=5, cost_usd=0.001, latency_s=0.5)
    llm = MockLLM(rules=[Rule(Match(), reply)], clock=loom_clock)
    llm.inject_error(2, "timeout")

    def step(state: int, ctx: Any) -> int:
        ctx.llm.complete(f"improve {state}")
        ctx.tool("count", lambda n: n + 1, n=state)
        return state + 1

    with CheckpointStore(tmp_path / "c.db") as store:
        loop = Loop(step, budget=Budget(iterations=3), store=store, llm=llm, retries=1)
        record = loop.record(loop.run(0).run_id)

    assert record.steps[1].events == ("retried",)
    assert RunRecord.from_json(record.to_json()) == record


def test_equal_records_give_equal_bytes_whatever_the_key_order() -> None:
    first = make_record(scenario="s")
    args = dict(reversed(list(first.steps[0].tool_calls[0].args.items())))
    reordered_call = dataclasses.replace(first.steps[0].tool_calls[0], args=args)
    reordered = dataclasses.replace(
        first, steps=(dataclasses.replace(first.steps[0], tool_calls=(reordered_call,)),)
    )
    first = dataclasses.replace(first, steps=first.steps[:1])

    assert reordered == first
    assert reordered.to_json() == first.to_json()
    assert reordered.to_json(indent=False) == first.to_json(indent=False)


# --- bad input ---------------------------------------------------------------------------------


def test_from_json_on_invalid_json_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="not valid JSON"):
        RunRecord.from_json(b'{"version": 1, "steps": [')


def test_record_error_is_a_value_error() -> None:
    assert issubclass(RecordError, ValueError)


def test_from_json_on_a_non_object_is_a_record_error() -> None:
    with pytest.raises(RecordError, match="must be a JSON object"):
        RunRecord.from_json(b"[1, 2, 3]")


@pytest.mark.parametrize("version", [RECORD_VERSION + 1, 0, None, "1"])
def test_from_json_on_another_version_is_a_record_error(version: Any) -> None:
    data = record_json()
    data["version"] = version

    with pytest.raises(RecordError, match=rf"version {version!r} is not supported"):
        RunRecord.from_json(orjson.dumps(data))


@pytest.mark.parametrize("key", ["scenario", "runtime", "stop", "totals", "steps"])
def test_from_json_missing_key_names_it(key: str) -> None:
    data = record_json()
    del data[key]

    with pytest.raises(RecordError, match=f"missing key '{key}'"):
        RunRecord.from_json(orjson.dumps(data))


def test_from_json_missing_stop_reason_names_it() -> None:
    data = record_json()
    del data["stop"]["reason"]

    with pytest.raises(RecordError, match="missing key 'reason'"):
        RunRecord.from_json(orjson.dumps(data))


def test_from_json_step_missing_a_field_names_it() -> None:
    data = record_json()
    del data["steps"][1]["index"]

    with pytest.raises(RecordError, match="index"):
        RunRecord.from_json(orjson.dumps(data))


def test_from_json_unknown_stop_reason_is_a_record_error() -> None:
    data = record_json()
    data["stop"] = {"reason": "exploded"}

    with pytest.raises(RecordError, match="exploded"):
        RunRecord.from_json(orjson.dumps(data))


def test_from_json_inconsistent_stop_is_a_record_error() -> None:
    data = record_json()
    data["stop"] = {"reason": "budget_exhausted", "limit": None}

    with pytest.raises(RecordError, match="names its limit"):
        RunRecord.from_json(orjson.dumps(data))


# --- Stop ---------------------------------------------------------------------------------------


def test_budget_exhausted_stop_needs_a_limit() -> None:
    with pytest.raises(ValueError, match="names its limit"):
        Stop(StopReason.BUDGET_EXHAUSTED)


def test_only_a_budget_exhausted_stop_has_a_limit() -> None:
    with pytest.raises(ValueError, match="names its limit"):
        Stop(StopReason.CONVERGED, limit=BudgetLimit.USD)


@pytest.mark.parametrize("error_type", [None, ""])
def test_failed_stop_needs_an_error_type(error_type: str | None) -> None:
    with pytest.raises(ValueError, match="names its error type"):
        Stop(StopReason.FAILED, error_type=error_type)


@pytest.mark.parametrize(
    ("stop", "label"),
    [
        (Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit.USD), "budget_exhausted(usd)"),
        (
            Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit.WALL_CLOCK),
            "budget_exhausted(wall_clock)",
        ),
        (Stop(StopReason.FAILED, error_type="ValueError"), "failed(ValueError)"),
        (Stop(StopReason.CONVERGED, detail="score_at_least(0.9)"), "converged"),
        (Stop(StopReason.COMPLETED), "completed"),
        (Stop(StopReason.STALLED, detail="state unchanged for 2 steps"), "stalled"),
    ],
)
def test_stop_label(stop: Stop, label: str) -> None:
    assert stop.label == label


def test_totals_tokens_adds_input_and_output() -> None:
    assert Totals(input_tokens=120, output_tokens=30).tokens == 150
