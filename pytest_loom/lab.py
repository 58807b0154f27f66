"""The lab context: what a scenario's entry point receives to build the user's loop.

It carries the mock LLM, the fake clock, the test's checkpoint store, the scenario's budget and
options. ``lab.loop(step, ...)`` builds a reference :class:`~pytest_loom.Loop` wired to all of
them; loops on other runtimes take the pieces they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .budget import Budget
from .clock import FakeClock
from .faults import FaultPlan
from .llm import MockLLM
from .reference import Loop, StepFn
from .store import CheckpointStore


@dataclass(slots=True)
class Lab:
    """Everything a loop needs to run inside the lab (see the scenario's ``entry`` key)."""

    scenario: str
    llm: MockLLM
    clock: FakeClock
    store: CheckpointStore
    budget: Budget
    workdir: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    step_seconds: float = 0.0
    faults: FaultPlan = field(default_factory=lambda: FaultPlan(()))
    """The scenario's faults; a runtime adapter calls ``faults.before_step(n)`` as step n starts."""

    def loop(self, step: StepFn, **kwargs: Any) -> Loop:
        """A reference :class:`Loop` over ``step`` with the lab's budget, store, LLM and clock.

        Keyword arguments are passed to :class:`Loop` (``scorer``, ``converge_on``,
        ``stall_after``, ``backtrack``, ``retries``, ...) and may override the lab's own.
        """
        wired: dict[str, Any] = {
            "budget": self.budget,
            "store": self.store,
            "llm": self.llm,
            "clock": self.clock,
            "step_seconds": self.step_seconds,
            "scenario": self.scenario,
            "options": self.options,
        }
        wired.update(kwargs)
        return Loop(step, **wired)
