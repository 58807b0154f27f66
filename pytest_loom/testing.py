"""The conformance suite every runtime adapter must pass, shipped for third-party adapters too.

Subclass :class:`AdapterConformance` in a test module, name the runtime and two scenario files
that run on it, and pytest collects the checks::

    from pytest_loom.testing import AdapterConformance

    class TestMyRuntime(AdapterConformance):
        runtime = "my-runtime"                      # registered under pytest_loom.runtimes
        scenario = "scenarios/my-runtime/completed.loom.yaml"   # at least two steps
        resume_scenario = "scenarios/my-runtime/crash.loom.yaml"  # has a crash fault
        kill_scenario = "scenarios/my-runtime/kill.loom.yaml"     # optional: a kill fault

Paths are relative to the rootdir. The checks: the record is well formed and versioned; two
runs of the same scenario give byte-identical records; a serial run and a run under ``-n 2``
write byte-identical snapshots; a resumed run continues the step numbering; a stop reason is
always present; the run writes nothing outside its own work directory; a replay of a run
reproduces it; and a run that stopped at a crash, replayed from there, ends as the resumed run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from .clock import FakeClock
from .record import RECORD_VERSION, Event, RunRecord, StopReason, sum_usd, totals_of
from .replay import Replay, resume_point
from .runner import run_scenario
from .scenario import CrashFault, Expectation, KillFault, Scenario, load_scenario

__all__ = ["AdapterConformance", "check_record", "replay_file", "run_file"]


def run_file(path: Path, root: Path) -> RunRecord:
    """Run the scenario file ``path`` with its files in ``root/work``, the CWD ``root/cwd``.

    Fails the calling test if the run wrote anything into the CWD or left problems (unmet
    expectations, an unused script).
    """
    scenario = load_scenario(path)
    workdir, cwd = root / "work", root / "cwd"
    workdir.mkdir(parents=True)
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        with FakeClock(start=scenario.clock.start) as clock:
            result = run_scenario(scenario, clock=clock, workdir=workdir)
    left = sorted(p.name for p in cwd.iterdir())
    assert not left, f"{scenario.id}: the run wrote {left} into the working directory"
    assert not result.problems, "\n".join(result.problems)
    return result.record


def replay_file(
    path: Path, root: Path, replay: Replay, scenario: Scenario | None = None
) -> RunRecord:
    """Run the scenario file ``path`` (or ``scenario``, read from it) against ``replay``;
    fails the calling test on any problem (a divergence first)."""
    scenario = scenario or load_scenario(path)
    root.mkdir(parents=True)
    with FakeClock(start=scenario.clock.start) as clock:
        result = run_scenario(scenario, clock=clock, workdir=root, replay=replay)
    assert not result.problems, "\n".join(result.problems)
    return result.record


def check_record(record: RunRecord, scenario: Scenario) -> None:
    """Assert what every record promises, whatever runtime produced it."""
    assert record.version == RECORD_VERSION
    assert record.runtime.name == scenario.runtime and record.runtime.version
    assert record.scenario == scenario.id
    assert isinstance(record.stop.reason, StopReason), "a run always has a stop reason"
    assert RunRecord.from_json(record.to_json()) == record, "the record survives JSON"
    indices = [step.index for step in record.steps]
    assert indices == list(range(1, len(indices) + 1)), f"steps numbered 1..n: {indices}"
    cumulative = 0.0
    for step in record.steps:
        cumulative = sum_usd(cumulative, step.cost_usd)
        assert step.cumulative_cost_usd == cumulative, f"step {step.index}: cumulative cost"
        assert step.input_tokens == sum(c.input_tokens for c in step.llm_calls)
        assert step.output_tokens == sum(c.output_tokens for c in step.llm_calls)
    assert record.totals == totals_of(record.steps, record.totals.elapsed_s)


class AdapterConformance:
    """Checks for one runtime adapter; subclass it and set the three class attributes."""

    runtime: ClassVar[str]
    scenario: ClassVar[str]
    """A scenario on ``runtime`` that runs at least two steps."""
    resume_scenario: ClassVar[str]
    """A scenario on ``runtime`` with a ``crash`` fault that resumes."""
    kill_scenario: ClassVar[str | None] = None
    """A scenario on ``runtime`` with a ``kill`` fault that resumes, if the runtime can."""

    def _path(self, request: pytest.FixtureRequest, name: str) -> Path:
        path = request.config.rootpath / name
        scenario = load_scenario(path)
        if scenario.runtime != self.runtime:
            pytest.fail(f"{name} runs on {scenario.runtime!r}, not {self.runtime!r}")
        return path

    def test_record_is_well_formed(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        path = self._path(request, self.scenario)
        record = run_file(path, tmp_path)
        check_record(record, load_scenario(path))
        assert len(record.steps) >= 2, f"{self.scenario} must run at least two steps"

    def test_two_runs_are_identical(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        path = self._path(request, self.scenario)
        first = run_file(path, tmp_path / "a").to_json()
        assert run_file(path, tmp_path / "b").to_json() == first

    def test_resume_continues_numbering(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        self._check_resume(request, tmp_path, self.resume_scenario)

    def test_resume_after_a_real_kill(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        if self.kill_scenario is None:
            pytest.skip(f"no kill scenario given for {self.runtime}")
        self._check_resume(request, tmp_path, self.kill_scenario)

    def _check_resume(self, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> None:
        path = self._path(request, name)
        scenario = load_scenario(path)
        record = run_file(path, tmp_path)
        check_record(record, scenario)
        crashes = [
            f.step for f in scenario.faults if isinstance(f, CrashFault | KillFault) and f.resume
        ]
        assert crashes, f"{name} has no crash or kill fault that resumes"
        # A runtime may also resume for reasons of its own (tightloop after an approval).
        resumed = [step.index for step in record.steps if Event.RESUMED in step.events]
        assert set(crashes) <= set(resumed), f"resumed at steps {resumed}, crashed at {crashes}"

    def test_replay_reproduces_the_recorded_run(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        path = self._path(request, self.resume_scenario)
        recorded = run_file(path, tmp_path / "recorded")
        replayed = replay_file(path, tmp_path / "replayed", Replay(recorded, source="recorded"))
        assert replayed.to_json() == recorded.to_json()

    def test_replay_resumes_a_crashed_run(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        """A run that stopped at a crash, replayed from there without the crash, ends as the
        run that never crashed."""
        path = self._path(request, self.resume_scenario)
        scenario = load_scenario(path)
        crashes = tuple(f for f in scenario.faults if isinstance(f, CrashFault))
        calm = replace(scenario, faults=tuple(f for f in scenario.faults if f not in crashes))
        crashed = replace(
            scenario,
            faults=tuple(replace(f, resume=False) if f in crashes else f for f in scenario.faults),
            llm=replace(scenario.llm, allow_unused=True),
            expect=Expectation(),
        )
        uninterrupted, recording = (
            _run(s, tmp_path / name) for s, name in ((calm, "calm"), (crashed, "crashed"))
        )
        assert recording.stop.reason is StopReason.PAUSED, recording.stop
        step = resume_point(recording)
        assert step is not None
        replay = Replay(recording, source="crashed", from_step=step)
        record = replay_file(path, tmp_path / "replayed", replay, calm)
        assert replay.until == step - 1
        assert record.stop == uninterrupted.stop
        assert [s.llm_calls for s in record.steps] == [s.llm_calls for s in uninterrupted.steps]

    def test_serial_equals_xdist(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        pytest.importorskip("xdist")
        path = self._path(request, self.scenario)
        snapshots = []
        for mode in (["-p", "no:xdist"], ["-n", "2"]):
            copy = tmp_path / mode[1].replace(":", "_") / path.name
            copy.parent.mkdir()
            shutil.copy(path, copy)
            _pytest(copy.parent, "--loom-scenarios", "--snapshot-update", *mode)
            snapshots.append(sorted((p.name, p.read_bytes()) for p in copy.parent.rglob("*.json")))
        assert snapshots[0], "no snapshot was written"
        assert snapshots[0] == snapshots[1]


def _run(scenario: Scenario, workdir: Path) -> RunRecord:
    workdir.mkdir(parents=True)
    with FakeClock(start=scenario.clock.start) as clock:
        return run_scenario(scenario, clock=clock, workdir=workdir).record


def _pytest(where: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for key in [k for k in env if k.startswith("PYTEST_XDIST") or k == "PYTEST_ADDOPTS"]:
        del env[key]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
