"""Scenario files as pytest items: one ``*.loom.yaml`` file, one test.

A scenario item is a real ``pytest.Function``, so fixtures, markers, ``-k``, xdist and syrupy's
snapshot bookkeeping treat it like any test. Its failures read as the user's scenario (file,
line, per-step diff), never as a traceback through pytest-loom.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cassette import CassetteError
from .entry import EntryPointError
from .record import RecordError, RunRecord
from .runtimes import RuntimeNotAvailable
from .scenario import Scenario, ScenarioError, load_scenario
from .store import CheckpointError

RECORD_KEY = pytest.StashKey[RunRecord]()
"""Where a scenario item keeps its run record for later reporting."""

_CLEAN_ERRORS = (
    *(ScenarioError, EntryPointError, RuntimeNotAvailable, CheckpointError, RecordError),
    CassetteError,
)


class ScenarioFailure(AssertionError):
    """A scenario ran but did not match its snapshot or expectations."""


class ScenarioFile(pytest.File):
    """A ``*.loom.yaml`` file; parsing it strictly is collection."""

    def collect(self) -> Iterator[ScenarioItem]:
        glob = str(self.config.getini("loom_scenario_glob"))
        suffix = glob[1:] if glob.startswith("*") and not any(c in glob[1:] for c in "*?[") else ""
        scenario = load_scenario(self.path, suffix=suffix or ".loom.yaml")
        item = ScenarioItem.from_parent(self, name=scenario.id, callobj=_scenario_test(scenario))
        item.scenario = scenario
        item.add_marker(pytest.mark.loom_scenario(runtime=scenario.runtime))
        for name in scenario.markers:
            item.add_marker(name)
        yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, ScenarioError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class ScenarioItem(pytest.Function):
    scenario: Scenario

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"loom scenario: {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, (ScenarioFailure, *_CLEAN_ERRORS)):
            return _relative(str(excinfo.value), self.config)
        return super().repr_failure(excinfo)


def _relative(message: str, config: pytest.Config) -> str:
    """Show paths under the invocation directory relative to it, as pytest does."""
    base = str(config.invocation_params.dir)
    return message.replace(base + "/", "")


def _scenario_test(scenario: Scenario) -> Any:
    def run(request: pytest.FixtureRequest, tmp_path: Path, snapshot: Any) -> None:
        from ._isolation import isolated
        from .clock import FakeClock
        from .recordmode import record_mode
        from .runner import run_scenario
        from .snapshot import RunRecordExtension, masking

        mode = record_mode(request.config)
        with isolated(tmp_path) as workdir, FakeClock(start=scenario.clock.start) as clock:
            result = run_scenario(scenario, clock=clock, workdir=workdir, mode=mode)
        request.node.stash[RECORD_KEY] = result.record
        problems = list(result.problems)
        if scenario.snapshot:
            assertion = snapshot.use_extension(RunRecordExtension)
            with masking(tmp_path, request.config.rootpath):
                matches = assertion == result.record
            if not matches:
                diff = "\n".join(assertion.get_assert_diff())
                problems.insert(
                    0,
                    "run record differs from its snapshot:\n"
                    + textwrap.indent(diff, "    ")
                    + "\n  hint: if the change is intended, run: "
                    "pytest --loom-scenarios --snapshot-update",
                )
        if problems:
            raise ScenarioFailure(
                f"scenario {scenario.id!r} ({scenario.path.name}) failed:\n"
                + "\n".join("- " + textwrap.indent(p, "  ")[2:] for p in problems)
            )

    run.__name__ = scenario.id
    run.__qualname__ = scenario.id
    return run
