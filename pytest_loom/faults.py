"""Fault injection for scenarios: raise inside step k, fail LLM call j, crash or kill at step k.

A crash is simulated in-process by :class:`SimulatedCrash`, a ``BaseException`` that no loop
catches: the run stops exactly as a killed process would leave it (steps before k committed,
step k never started), and the runner then resumes it through the runtime's own resume path.
A kill is the real thing: the scenario runs in a child process that ``os._exit``\\ s as step k
starts (see ``_killrun``). Each fault fires once, so a resumed run does not crash again.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import NoReturn

from .llm import MockLLM
from .scenario import CrashFault, Fault, KillFault, LLMErrorFault, StepFault


class SimulatedCrash(BaseException):
    """The process "died" as step ``step`` was about to start."""

    def __init__(self, step: int, resume: bool) -> None:
        super().__init__(f"simulated crash at step {step}")
        self.step = step
        self.resume = resume


class FaultPlan:
    """The faults of one scenario, armed against one run."""

    def __init__(self, faults: Sequence[Fault]) -> None:
        self._pending: list[StepFault] = [f for f in faults if not isinstance(f, LLMErrorFault)]
        self._llm_errors = [f for f in faults if isinstance(f, LLMErrorFault)]
        self.on_kill: Callable[[KillFault], NoReturn] | None = None
        """Called by a process that may really die at a kill fault; it never returns."""

    def unfired(self) -> list[StepFault]:
        """Step faults the run never reached (it ended before their step)."""
        return list(self._pending)

    def replace_pending(self, faults: Sequence[StepFault]) -> None:
        """Carry the unfired faults over from another process running the same plan."""
        self._pending[:] = faults

    def kills_pending(self) -> bool:
        return any(isinstance(f, KillFault) for f in self._pending)

    def arm(self, llm: MockLLM) -> None:
        for fault in self._llm_errors:
            llm.inject_error(fault.call, fault.kind)

    def before_step(self, step: int) -> None:
        for fault in self._pending:
            if fault.step == step:
                self._pending.remove(fault)
                if isinstance(fault, KillFault):
                    if self.on_kill is None:
                        raise RuntimeError(f"a kill fault at step {step} outside a killable run")
                    self.on_kill(fault)
                if isinstance(fault, CrashFault):
                    raise SimulatedCrash(step, fault.resume)
                raise getattr(builtins, fault.error)(fault.message)
