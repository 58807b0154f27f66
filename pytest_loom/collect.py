"""Scenario files as pytest items: one ``*.loom.yaml`` file, one test.

A scenario item is a real ``pytest.Function``, so fixtures, markers, ``-k``, xdist and syrupy's
snapshot bookkeeping treat it like any test. Its failures read as the user's scenario (file,
line, per-step diff), never as a traceback through pytest-loom.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._isolation import Sandbox
from .diff import diff_records
from .entry import EntryPointError
from .record import RecordError, RunRecord
from .runlog import SESSION_KEY
from .runtimes import RuntimeNotAvailable
from .scenario import Scenario, ScenarioError, load_scenario
from .store import CheckpointError

if TYPE_CHECKING:
    from .replay import Replay

_SANDBOX_KEY = pytest.StashKey[Sandbox]()

_CLEAN_ERRORS = (ScenarioError, EntryPointError, RuntimeNotAvailable, CheckpointError, RecordError)


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
            # A scenario kept as a known failure says why in its description.
            reason = scenario.description.strip() if name == "xfail" else ""
            item.add_marker(pytest.mark.xfail(reason=reason) if reason else name)
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
        from .cassette import CassetteError  # a scenario without a cassette never loads it

        if isinstance(excinfo.value, (ScenarioFailure, CassetteError, *_CLEAN_ERRORS)):
            return _relative(str(excinfo.value), self.config)
        return super().repr_failure(excinfo)


def _relative(message: str, config: pytest.Config) -> str:
    """Show paths under the invocation directory relative to it, as pytest does."""
    base = str(config.invocation_params.dir)
    return message.replace(base + "/", "")


def _scenario_test(scenario: Scenario) -> Any:
    def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
        from .gate import gate_problems, trials
        from .recordmode import record_mode
        from .snapshot import masking, record_assertion, serialize_record
        from .trials import run_trials, trial_problems

        mode = record_mode(request.config)
        assertion = record_assertion(request.node) if scenario.snapshot else None
        replay = _replay(request.config, scenario, assertion)
        runs, tmp_path, kept = run_trials(
            scenario,
            sandbox=_sandbox(request.config, tmp_path_factory),
            name=request.node.name,
            trials=trials(request.config),
            mode=mode,
            replay=replay,
        )
        result = runs[0]
        saved = request.config.stash.get(SESSION_KEY, None)
        if saved is not None:
            saved.save(_run_id(request.node, scenario), scenario.path, kept, result.record)
        problems = trial_problems(runs)
        compared, mismatch = None, None  # the snapshot the run was compared with, a mismatch
        if replay is not None and replay.from_step is not None:
            # The steps from N on are meant to change: the recording is not the expected run.
            assert assertion is not None
            recorded = replay.recording
            assert assertion == serialize_record(recorded)  # keeps syrupy's snapshot in use
            now = replace(result.record, run_id=recorded.run_id)
            changes = diff_records(recorded.to_dict(), now.to_dict())
            request.node.add_report_section(
                "call",
                f"loom replay from step {replay.from_step}",
                "\n".join(changes) or "the run is the recorded run",
            )
        elif assertion is not None:
            with masking(tmp_path, request.config.rootpath):
                matches = assertion == result.record
            compared = assertion
            if not matches:
                diff = "\n".join(assertion.get_assert_diff())
                mismatch = (
                    "run record differs from its snapshot:\n"
                    + textwrap.indent(diff, "    ")
                    + "\n  hint: if the change is intended, run: "
                    "pytest --loom-scenarios --snapshot-update"
                )
        # The drift gate decides whether a snapshot mismatch fails the scenario (docs/gate.md).
        problems[:0] = gate_problems(request.node, runs, tmp_path, compared, mismatch)
        if problems:
            raise ScenarioFailure(
                f"scenario {scenario.id!r} ({scenario.path.name}) failed:\n"
                + "\n".join("- " + textwrap.indent(p, "  ")[2:] for p in problems)
            )

    run.__name__ = scenario.id
    run.__qualname__ = scenario.id
    return run


def _sandbox(config: pytest.Config, factory: pytest.TempPathFactory) -> Sandbox:
    """This process's sandbox for scenario runs, made at the first scenario that runs."""
    sandbox = config.stash.get(_SANDBOX_KEY, None)
    if sandbox is None:
        sandbox = config.stash[_SANDBOX_KEY] = Sandbox(factory)
    return sandbox


def _run_id(item: pytest.Item, scenario: Scenario) -> str:
    """The id a saved run goes by: the scenario file's path without its suffix."""
    path, _, name = item.nodeid.partition("::")
    stem = path.removesuffix(".loom.yaml")
    return stem if name == scenario.id and stem != path else item.nodeid


def _replay(config: pytest.Config, scenario: Scenario, assertion: Any) -> Replay | None:
    """With ``--loom-replay``, the scenario's committed snapshot as the recording to replay."""
    from_step: int | None = config.getoption("loom_replay_from")
    if not config.getoption("loom_replay") and from_step is None:
        return None
    from .replay import Replay

    where = f"{scenario.path}:{scenario.lines.get('snapshot', 1)}"
    if assertion is None:
        raise ScenarioFailure(
            f"{where}: --loom-replay: scenario {scenario.id!r} has `snapshot: false`, so there "
            "is no recorded run to replay\n  hint: remove `snapshot: false` and record it "
            "with --snapshot-update"
        )
    location = Path(
        assertion.extension.get_location(test_location=assertion.test_location, index=0)
    )
    try:
        recording = RunRecord.from_json(location.read_bytes())
    except FileNotFoundError:
        raise ScenarioFailure(
            f"{scenario.path}: --loom-replay: scenario {scenario.id!r} has no recorded run: "
            f"{location} does not exist\n  hint: record it: pytest --loom-scenarios "
            "--snapshot-update"
        ) from None
    except RecordError as exc:
        raise RecordError(
            f"{location}: {exc}\n  hint: regenerate it with --snapshot-update"
        ) from None
    return Replay(
        recording,
        source=str(location),
        from_step=from_step,
        hint="if the change is intended, update the recording with --snapshot-update, or "
        "replay only the steps before this one: --loom-replay-from={step}",
    )
