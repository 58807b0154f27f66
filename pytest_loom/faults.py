"""Fault injection for scenarios: raise inside step k, fail LLM call j, crash at step k.

A crash is simulated in-process by :class:`SimulatedCrash`, a ``BaseException`` that no loop
catches: the run stops exactly as a killed process would leave it (steps before k committed,
step k never started), and the runner then resumes it through the runtime's own resume path.
Each fault fires once, so a resumed run does not crash again.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from .llm import MockLLM
from .scenario import CrashFault, Fault, LLMErrorFault, RaiseFault


class SimulatedCrash(BaseException):
    """The process "died" as step ``step`` was about to start."""

    def __init__(self, step: int, resume: bool) -> None:
        super().__init__(f"simulated crash at step {step}")
        self.step = step
        self.resume = resume


class FaultPlan:
    """The faults of one scenario, armed against one run."""

    def __init__(self, faults: Sequence[Fault]) -> None:
        self._pending: list[RaiseFault | CrashFault] = [
            f for f in faults if isinstance(f, RaiseFault | CrashFault)
        ]
        self._llm_errors = [f for f in faults if isinstance(f, LLMErrorFault)]

    def unfired(self) -> list[RaiseFault | CrashFault]:
        """Step faults the run never reached (it ended before their step)."""
        return list(self._pending)

    def arm(self, llm: MockLLM) -> None:
        for fault in self._llm_errors:
            llm.inject_error(fault.call, fault.kind)

    def before_step(self, step: int) -> None:
        for fault in self._pending:
            if fault.step == step:
                self._pending.remove(fault)
                if isinstance(fault, CrashFault):
                    raise SimulatedCrash(step, fault.resume)
                error = getattr(builtins, fault.error)
                raise error(fault.message)
