"""The lab context: what a scenario's entry point receives to build the user's loop.

It carries the mock LLM, the fake clock, the test's checkpoint store, the scenario's budget and
options. ``lab.loop(step, ...)`` builds a reference :class:`~pytest_loom.Loop` wired to all of
them; loops on other runtimes take the pieces they need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .budget import Budget
from .clock import FakeClock
from .faults import FaultPlan
from .llm import MockLLM
from .record import LLMCall
from .reference import Loop, StepFn
from .store import CheckpointStore


@dataclass(frozen=True, slots=True)
class Observed:
    """One step as the lab saw it, whatever the runtime recorded."""

    start_s: float
    end_s: float
    llm_calls: tuple[LLMCall, ...]

    @property
    def duration_s(self) -> float:
        return round(self.end_s - self.start_s, 9)


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
    """The scenario's faults; a runtime adapter calls :meth:`begin_step` as step n starts."""
    started_s: float = 0.0
    """``clock.elapsed`` when the run started: observed times are measured from it."""
    marks: list[tuple[int, int, float]] = field(default_factory=list)
    """``(step, LLM calls so far, fake seconds since the start)`` at each :meth:`begin_step`."""
    progress: Callable[[int], None] | None = None
    """Called with ``n`` as step ``n`` starts (the ``loom replay`` progress indicator)."""

    def begin_step(self, n: int) -> None:
        """Note that step ``n`` starts now (for :meth:`observed`), then fire its faults.

        Runtime adapters call it first thing in each step; calling it again for the same ``n``
        (a retried or resumed step) adds to that step's observations.
        """
        self.marks.append((n, len(self.llm.calls), self.elapsed()))
        self.llm.step = n
        if self.progress is not None:
            self.progress(n)
        self.faults.before_step(n)

    def elapsed(self) -> float:
        """Fake seconds since the run started."""
        return round(self.clock.elapsed - self.started_s, 9)

    def observed(self) -> dict[int, Observed]:
        """What the lab saw of each step: its LLM calls and fake start and end, by step number.

        Calls made before the first :meth:`begin_step` (a health-check ping) are left out.
        """
        if not self.marks:
            return {}
        calls = self.llm.calls
        ends = [*self.marks[1:], (0, len(calls), self.elapsed())]
        seen: dict[int, Observed] = {}
        for (n, first, start), (_, last, end) in zip(self.marks, ends, strict=True):
            before = seen.get(n)
            seen[n] = Observed(
                start_s=start if before is None else before.start_s,
                end_s=end,
                llm_calls=(() if before is None else before.llm_calls) + tuple(calls[first:last]),
            )
        return seen

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
