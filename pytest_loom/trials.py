"""Trials: a scenario run N times in one item (``--loom-trials=N``), for loops that vary.

With the mock LLM every trial is the same run; with a live model, a cassette in a record mode
or a loop that draws on randomness, they differ, and the gate judges the distribution of their
stop reasons. Each trial has its own fake clock, checkpoint store and empty working directory,
and sees its number in the environment, so a loop can seed its randomness by trial. Files a
trial leaves are kept in the item's directory (``trial-<k>/`` below it for trial k > 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from ._isolation import Sandbox
    from .runner import ScenarioRun
    from .scenario import Scenario

TRIAL_ENV = "LOOM_TRIAL"
"""The trial's number, 1 to N, in the environment of every scenario run."""
TRIALS_ENV = "LOOM_TRIALS"
"""N, the number of trials of this session."""


def run_trials(
    scenario: Scenario, *, sandbox: Sandbox, name: str, trials: int, **run_args: Any
) -> tuple[list[ScenarioRun], Path, Path | None]:
    """Run ``scenario`` ``trials`` times in ``sandbox``; ``run_args`` go to
    :func:`~pytest_loom.run_scenario`.

    Returns the runs, the root the runs were masked with (their ``<tmp>``) and the directory
    that keeps the files they left (``None`` if they left none); ``name`` names it.
    """
    from .clock import FakeClock
    from .runner import run_scenario

    runs = []
    item: list[Path] = []  # the item's directory, once a trial leaves files

    def keep(k: int) -> Callable[[], Path]:
        def where() -> Path:
            if not item:
                item.append(sandbox.directory(name))
            return item[0] if k == 1 else item[0] / f"trial-{k}"

        return where

    for k in range(1, trials + 1):
        env = {TRIAL_ENV: str(k), TRIALS_ENV: str(trials)}
        with sandbox.run(keep(k), env) as workdir, FakeClock(start=scenario.clock.start) as clock:
            runs.append(run_scenario(scenario, clock=clock, workdir=workdir, **run_args))
    return runs, sandbox.root, item[0] if item else None


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
