"""The per-step diff of two run records: stop change first, then totals, then each step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pytest_loom.budget import Budget
from pytest_loom.clock import FakeClock
from pytest_loom.convergence import score_at_least
from pytest_loom.diff import MAX_LINES, diff_records
from pytest_loom.record import (
    BudgetLimit,
    LLMCall,
    RunRecord,
    RuntimeInfo,
    Step,
    Stop,
    StopReason,
    totals_of,
)
from pytest_loom.reference import Loop
from pytest_loom.store import CheckpointStore


def step(index: int, cost: float = 0.1, **fields: Any) -> Step:
    return Step(index=index, start_s=float(index - 1), duration_s=1.0, cost_usd=cost, **fields)


def as_json(
    steps: list[Step], stop: Stop | None = None, *, run_id: str = "run-1"
) -> dict[str, Any]:
    """The JSON form of a record (what a snapshot holds), which is what the diff compares."""
    record = RunRecord(
        scenario="refine",
        runtime=RuntimeInfo("reference", "1"),
        stop=stop or Stop(StopReason.CONVERGED),
        totals=totals_of(steps, float(len(steps))),
        steps=tuple(steps),
        run_id=run_id,
    )
    data: dict[str, Any] = orjson.loads(record.to_json())
    return data


def test_identical_records_have_no_differences() -> None:
    old = as_json([step(1), step(2)])

    assert diff_records(old, as_json([step(1), step(2)])) == []


def test_stop_change_comes_first() -> None:
    old = as_json([step(1), step(2)], Stop(StopReason.CONVERGED))
    new = as_json(
        [step(1), step(2, cost=0.2)], Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit.USD)
    )

    lines = diff_records(old, new)

    assert lines[0] == "stop: converged -> budget_exhausted(usd)"
    assert "step 2: cost_usd: 0.1 -> 0.2" in lines


def test_failed_error_type_change_is_a_stop_change() -> None:
    old = as_json([step(1)], Stop(StopReason.FAILED, error_type="ValueError"))
    new = as_json([step(1)], Stop(StopReason.FAILED, error_type="KeyError"))

    assert diff_records(old, new) == ["stop: failed(ValueError) -> failed(KeyError)"]


def test_stop_detail_change_is_listed_under_stop() -> None:
    old = as_json([step(1)], Stop(StopReason.STALLED, detail="state unchanged for 2 steps"))
    new = as_json([step(1)], Stop(StopReason.STALLED, detail="state unchanged for 3 steps"))

    assert diff_records(old, new) == [
        "stop: detail: 'state unchanged for 2 steps' -> 'state unchanged for 3 steps'"
    ]


def test_changed_step_field_names_the_step_and_field() -> None:
    old = as_json([step(1), step(2), step(3)])
    new = as_json([step(1), step(2, cost=0.25), step(3)])

    lines = diff_records(old, new)

    assert "step 2: cost_usd: 0.1 -> 0.25" in lines
    assert "totals: cost_usd: 0.3 -> 0.45" in lines
    assert not any(line.startswith(("step 1:", "step 3:")) for line in lines)


def test_changed_nested_field_gives_its_path() -> None:
    def with_reply(text: str) -> Step:
        call = LLMCall("gpt-4o", "d1", 10, 5, 0.0, 0.0, text=text)
        return step(1, llm_calls=(call,))

    lines = diff_records(as_json([with_reply("draft")]), as_json([with_reply("final")]))

    assert lines == ["step 1: llm_calls[0].text: 'draft' -> 'final'"]


def test_added_steps_are_listed() -> None:
    old = as_json([step(1), step(2)])
    new = as_json([step(1), step(2), step(3, cost=0.3, score=0.9)])

    lines = diff_records(old, new)

    assert "step 3: added (cost_usd=0.3, score=0.9)" in lines
    assert "totals: steps: 2 -> 3" in lines


def test_removed_steps_are_listed() -> None:
    old = as_json([step(1), step(2), step(3, error="ValueError: boom")])
    new = as_json([step(1), step(2)])

    lines = diff_records(old, new)

    assert "step 3: removed (cost_usd=0.1, score=None, error='ValueError: boom')" in lines


def test_other_top_level_differences_are_listed() -> None:
    lines = diff_records(as_json([step(1)], run_id="run-1"), as_json([step(1)], run_id="run-2"))

    assert lines == ["run_id: 'run-1' -> 'run-2'"]


def test_long_diffs_are_truncated() -> None:
    old = as_json([step(i) for i in range(1, 101)])
    new = as_json([step(i, cost=0.2) for i in range(1, 101)])

    lines = diff_records(old, new)

    # 100 steps changed, plus totals.cost_usd: 101 differences in all
    assert len(lines) == MAX_LINES + 1
    assert lines[-1] == f"... and {101 - MAX_LINES} more differences"
    assert lines[0] == "totals: cost_usd: 10.0 -> 20.0"


def test_short_diffs_are_not_truncated() -> None:
    old = as_json([step(i) for i in range(1, MAX_LINES)])
    new = as_json([step(i, cost=0.2) for i in range(1, MAX_LINES)])

    lines = diff_records(old, new)

    assert len(lines) == MAX_LINES  # MAX_LINES - 1 steps and the total
    assert not lines[-1].startswith("...")


def test_diff_of_a_run_whose_budget_ran_out(tmp_path: Path, loom_clock: FakeClock) -> None:
    def run(budget: Budget) -> dict[str, Any]:
        def step(state: int, ctx: Any) -> int:
            ctx.add_cost(0.1)
            return state + 1

        with CheckpointStore(tmp_path / f"{budget.usd}.db") as store:
            loop = Loop(
                step,
                budget=budget,
                store=store,
                scorer=lambda s: s / 10,
                converge_on=score_at_least(0.4),
            )
            data: dict[str, Any] = orjson.loads(loop.record(loop.run(0).run_id).to_json())
        return data

    lines = diff_records(run(Budget(usd=1.0)), run(Budget(usd=0.25)))

    assert lines[0] == "stop: converged -> budget_exhausted(usd)"
    assert "step 3: removed (cost_usd=0.1, score=0.3)" in lines


@pytest.mark.parametrize("missing", ["stop", "totals", "steps"])
def test_records_missing_a_section_still_diff(missing: str) -> None:
    old = as_json([step(1)])
    new = dict(old)
    del new[missing]

    assert diff_records(old, new)  # it reports the difference instead of raising


def test_long_strings_are_shown_from_where_they_differ() -> None:
    prefix = "You are a careful writer. " * 5
    old = {"stop": {"reason": "converged"}, "steps": [{"index": 1, "prompt": prefix + "Be brief."}]}
    new = {"stop": {"reason": "converged"}, "steps": [{"index": 1, "prompt": prefix + "Be vivid."}]}
    [line] = diff_records(old, new)
    assert line.startswith("step 1: prompt: '...")
    assert "Be brief." in line and "Be vivid." in line
