"""Runtime resolution and the adapter contract, with a third-party adapter registered by entry
point exactly as docs/python-api.md shows it."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pytest_loom import Lab, RunRecord, RuntimeInfo, Step, Stop, StopReason, Totals
from pytest_loom.clock import FakeClock
from pytest_loom.runner import run_scenario
from pytest_loom.runtimes import (
    ENTRY_POINT_GROUP,
    RuntimeNotAvailable,
    build_entry,
    get_runtime,
)
from pytest_loom.scenario import Scenario, load_scenario
from pytest_loom.testing import run_file


class EchoRuntime:
    """The minimal adapter from docs/python-api.md: one step, then completed."""

    name = "echo"
    runs: ClassVar[list[bool]] = []

    def version(self) -> str:
        return "0.1"

    def run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None:
        EchoRuntime.runs.append(resume)
        build_entry(scenario, lab)
        lab.begin_step(1)
        lab.clock.advance(lab.step_seconds)

    def record(self, scenario: Scenario, lab: Lab) -> RunRecord:
        seen = lab.observed()[1]
        step = Step(index=1, start_s=seen.start_s, duration_s=seen.duration_s)
        return RunRecord(
            scenario=scenario.id,
            runtime=RuntimeInfo(self.name, self.version()),
            stop=Stop(StopReason.COMPLETED),
            totals=Totals(steps=1, elapsed_s=step.duration_s),
            steps=(step,),
            run_id=scenario.id,
        )


def build(lab: Lab) -> None:
    return None


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="echo", value=f"{__name__}:EchoRuntime", group=ENTRY_POINT_GROUP)

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [ep] if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr("pytest_loom.runtimes.entry_points", entry_points)
    EchoRuntime.runs.clear()


def scenario_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "echo.loom.yaml"
    text = f"version: 1\nruntime: echo\nentry: {__name__}:build\nclock: {{step: 3s}}\n{extra}"
    path.write_text(text)
    return path


@pytest.mark.usefixtures("echo_registered")
def test_a_registered_adapter_runs_a_scenario(tmp_path: Path) -> None:
    record = run_file(scenario_file(tmp_path), tmp_path / "run")
    assert (record.runtime, record.stop.label) == (RuntimeInfo("echo", "0.1"), "completed")
    assert (record.steps[0].duration_s, record.totals.elapsed_s) == (3.0, 3.0)
    assert get_runtime("echo") is not get_runtime("echo"), "one instance per run"


@pytest.mark.usefixtures("echo_registered")
def test_a_crash_resumes_through_the_adapter(tmp_path: Path) -> None:
    scenario = load_scenario(scenario_file(tmp_path, "faults:\n  - crash: {step: 1}\n"))
    with FakeClock() as clock:
        result = run_scenario(scenario, clock=clock, workdir=tmp_path)
    assert EchoRuntime.runs == [False, True]
    assert result.problems == []


def test_unknown_runtime_names_the_known_ones() -> None:
    with pytest.raises(RuntimeNotAvailable, match=r"unknown runtime 'echo': known runtimes are"):
        get_runtime("echo")


def test_observed_steps_add_up_retries_and_leave_out_calls_before_the_first_step(
    tmp_path: Path,
) -> None:
    from pytest_loom.runner import make_lab
    from pytest_loom.store import CheckpointStore

    scenario = load_scenario(
        scenario_file(tmp_path, "llm: {latency: 2s, rules: [{match: {contains: a}, reply: {}}]}\n")
    )
    with FakeClock() as clock, CheckpointStore(tmp_path / "c.db") as store:
        lab = make_lab(scenario, clock=clock, store=store, workdir=tmp_path)
        ask: Any = lab.llm.complete
        ask("a ping")
        lab.begin_step(1)
        ask("a one")
        lab.begin_step(2)
        ask("a two")
        lab.begin_step(2)  # a retry of step 2
        ask("a two again")
        observed = lab.observed()
    assert [c.prompt for c in observed[1].llm_calls] == ["a one"]
    assert [c.prompt for c in observed[2].llm_calls] == ["a two", "a two again"]
    assert (observed[1].start_s, observed[1].end_s) == (2.0, 4.0)
    assert (observed[2].start_s, observed[2].duration_s) == (4.0, 4.0)


def test_nothing_observed_before_the_first_step(tmp_path: Path) -> None:
    from pytest_loom.runner import make_lab
    from pytest_loom.store import CheckpointStore

    scenario = load_scenario(scenario_file(tmp_path))
    with FakeClock() as clock, CheckpointStore(tmp_path / "c.db") as store:
        assert make_lab(scenario, clock=clock, store=store, workdir=tmp_path).observed() == {}
