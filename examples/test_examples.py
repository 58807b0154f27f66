"""Hand-written tests of the example loops with the lab's fixtures.

Scenario files cover the golden runs; tests like these suit loops you want to drive from Python:
script the mock LLM inline, run the loop against this test's checkpoint store, and snapshot the
run record.
"""

from __future__ import annotations

import time

import pytest

from examples.fixer.loop import fixer_step, run_tests
from examples.refine.loop import refine_step
from pytest_loom import Budget, Loop, MockLLM, Turn, score_at_least

CALC = {"calc.py": "def add(a, b):\n    return a - b\n", "tests.txt": "assert add(2, 3) == 5\n"}


def test_the_fixer_test_command_reports_failures() -> None:
    assert run_tests(CALC) == {"passed": False, "failures": ["assert add(2, 3) == 5"]}


def test_refine_converges_and_matches_its_snapshot(loom_llm, loom_store, loom_run, loom_snapshot):
    for draft, score in [("Clearer.", 0.6), ("Clearer and concrete.", 0.95)]:
        loom_llm.script(Turn(text=draft, input_tokens=200, output_tokens=40))
        loom_llm.script(Turn(text=f"score: {score}", input_tokens=150, output_tokens=10))
    loop = Loop(
        refine_step,
        budget=Budget(usd=0.10),
        store=loom_store,
        llm=loom_llm,
        scorer=lambda s: s["score"],
        converge_on=score_at_least(0.9),
    )
    record = loom_run(loop, {"draft": "Vague.", "score": 0.0})
    assert record.stop.label == "converged"
    assert [s.score for s in record.steps] == [0.6, 0.95]
    assert loom_snapshot == record


@pytest.mark.loom_clock(step=30.0)
def test_fixer_gives_up_after_the_wall_clock_budget(loom_clock, loom_store) -> None:
    # Every attempt "takes" 30 s of fake time; a 2-minute budget allows four of them.
    llm = MockLLM(rules=[], strict=False, model="claude-sonnet-4", clock=loom_clock)
    loop = Loop(
        fixer_step,
        budget=Budget.of(wall_clock="2m"),
        store=loom_store,
        llm=llm,
        clock=loom_clock,
        step_seconds=loom_clock.step,
    )
    started = time.monotonic()
    outcome = loop.run({"files": CALC})
    assert outcome.stop.label == "budget_exhausted(wall_clock)"
    assert outcome.steps == 4
    assert time.monotonic() - started == 120.0
