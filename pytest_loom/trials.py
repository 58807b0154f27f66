"""Trials: a scenario run N times in one item (``--loom-trials=N``), for loops that vary.

With the mock LLM every trial is the same run; with a live model, a cassette in a record mode
or a loop that draws on randomness, they differ, and the gate judges the distribution of their
stop reasons. Each trial has its own fake clock, checkpoint store and working directory (the
first in the item's ``tmp_path``, the others in ``tmp_path/trial-<k>``), and sees its number
in the environment, so a loop can seed its randomness by trial.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from .runner import ScenarioRun
    from .scenario import Scenario

TRIAL_ENV = "LOOM_TRIAL"
"""The trial's number, 1 to N, in the environment of every scenario run."""
TRIALS_ENV = "LOOM_TRIALS"
"""N, the number of trials of this session."""


def run_trials(
    scenario: Scenario, *, tmp_path: Path, trials: int, **run_args: Any
) -> list[ScenarioRun]:
    """Run ``scenario`` ``trials`` times; ``run_args`` go to :func:`~pytest_loom.run_scenario`."""
    from ._isolation import isolated
    from .clock import FakeClock
    from .runner import run_scenario

    runs = []
    for k in range(1, trials + 1):
        root = tmp_path if k == 1 else tmp_path / f"trial-{k}"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(TRIAL_ENV, str(k))
            patch.setenv(TRIALS_ENV, str(trials))
            with isolated(root) as workdir, FakeClock(start=scenario.clock.start) as clock:
                runs.append(run_scenario(scenario, clock=clock, workdir=workdir, **run_args))
    return runs


def trial_problems(runs: list[ScenarioRun]) -> list[str]:
    """The problems of every trial, once each; one seen in only some trials says which."""
    seen: dict[str, list[int]] = {}
    for k, run in enumerate(runs, 1):
        for problem in run.problems:
            seen.setdefault(problem, []).append(k)
    out = []
    for problem, trials in seen.items():
        if len(trials) == len(runs):
            out.append(problem)
        else:
            which = ", ".join(map(str, trials))
            out.append(f"trial{'s' if len(trials) > 1 else ''} {which} of {len(runs)}: {problem}")
    return out
