"""Replaying a saved run outside pytest: what ``loom replay`` does.

It loads the run's scenario file as it is now, imports its entry point as the session did
(the rootdir and its ``pythonpath``), and runs it in a throwaway directory on a fake clock with
the saved run as the recording (see :mod:`pytest_loom.replay`). A run that stopped at a crash is
resumed: replayed up to the step it stopped at, then run on without the crash.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from .record import RunRecord
from .replay import Replay, resume_point
from .runlog import RunLogError, SavedRun
from .scenario import CrashFault, Expectation, KillFault, Scenario, ScenarioError, load_scenario


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    record: RunRecord | None
    """The new run's record (``None`` if it could not run at all)."""
    from_step: int | None
    """The first step run anew (``None``: every recorded step was replayed)."""
    resumed: bool
    """Whether a run that stopped at a crash was resumed."""
    replayed: int
    """How many recorded steps were answered from the recording."""
    problems: list[str] = field(default_factory=list)


def replay_saved(
    run: SavedRun, *, from_step: int | None = None, progress: Callable[[int], None] | None = None
) -> ReplayOutcome:
    """Re-execute ``run``'s scenario against ``run`` (see the module docstring)."""
    from ._isolation import isolated
    from .clock import FakeClock
    from .runner import run_scenario

    try:
        scenario = load_scenario(run.path)
    except ScenarioError as exc:
        raise RunLogError(f"run {run.ref}: its scenario no longer loads:\n{exc}") from None
    resumed = from_step is None and (from_step := resume_point(run.record)) is not None
    if resumed:
        assert from_step is not None
        scenario = _resumable(scenario, from_step)
    replay = Replay(
        run.record,
        source=run.ref,
        from_step=from_step,
        hint=f"replay only the steps before this one: loom replay {run.ref} --from {{step}}",
    )
    with (
        _importable(run),
        tempfile.TemporaryDirectory(prefix="loom-replay-") as tmp,
        isolated(Path(tmp)) as workdir,
        FakeClock(start=scenario.clock.start) as clock,
    ):
        result = run_scenario(
            scenario, clock=clock, workdir=workdir, replay=replay, progress=progress
        )
    return ReplayOutcome(result.record, from_step, resumed, replay.until, result.problems)


def _resumable(scenario: Scenario, step: int) -> Scenario:
    """The scenario without the crash (and kill) it stopped at, nor its expectations of that."""
    faults = tuple(
        fault
        for fault in scenario.faults
        if not (isinstance(fault, CrashFault | KillFault) and fault.step >= step)
    )
    return replace(scenario, faults=faults, expect=Expectation())


@contextmanager
def _importable(run: SavedRun) -> Iterator[None]:
    """Entry points import as in the run's session: from its rootdir and ``pythonpath``."""
    added = [str(p) for p in (*run.session.pythonpath, run.session.rootdir)]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            sys.path.remove(entry)
