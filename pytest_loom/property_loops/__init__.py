"""The loops the property suite drives: one small loop per runtime, written the same way.

Each step asks the LLM once (``step <n>: continue the task``), runs every tool call in the reply
through the runtime's own tool mechanism, and ends the task when the reply's text is ``DONE``.
A budget, the script and the faults do the rest, so every run is shaped by what Hypothesis
generated. The loops put the step number in each request and a unique id in each tool call's
arguments, which is what ``each_step_once`` and ``tool_calls_once`` rely on.

:data:`TARGETS` says, per runtime, which entry point to drive, from which input, which budget
limits the runtime can enforce and what its scripts must look like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DONE", "MODEL", "TARGETS", "TASK", "TOOL", "Target", "note", "prompt"]

MODEL = "gpt-4o"
"""Priced alike by the mock LLM and by tightloop, so both count the same USD."""
DONE = "DONE"
"""A reply with this text ends the task."""
TOOL = "note"
"""The one tool the loops offer."""
TASK = "continue the task"
"""In every request the loops make: the script's standing rule answers it when turns run out."""


def prompt(n: int) -> str:
    """The request of step ``n``."""
    return f"step {n}: {TASK}"


def note(text: str) -> str:
    """Keep a note (the loops' tool; ``text`` carries the tool call's unique id)."""
    return f"noted {text}"


@dataclass(frozen=True, slots=True)
class Target:
    """How the property suite drives one runtime."""

    runtime: str
    entry: str
    input: Any
    limits: tuple[str, ...]
    """The budget limits the runtime enforces (its adapter refuses the others)."""
    tool_turns_only: bool = False
    """Every turn that does not end the task must ask for a tool (a reply without tool calls is
    the runtime's final answer)."""
    explicit_costs: bool = True
    """Turns may set ``cost:`` (the runtime counts the mock's cost, not its own estimate)."""
    options: Mapping[str, Any] = field(default_factory=dict)


_STATE = {"step": 0, "notes": []}
_ALL = ("usd", "iterations", "tokens", "wall_clock")

TARGETS: dict[str, tuple[Target, ...]] = {
    "reference": (
        Target("reference", "pytest_loom.property_loops.reference:build", _STATE, _ALL),
        Target("reference", "pytest_loom.property_loops.reference:build_async", _STATE, _ALL),
    ),
    "loomc": (
        Target(
            "loomc",
            "pytest_loom.property_loops.loomc:build",
            {**_STATE, "cost": 0.0, "done": False},
            ("usd", "iterations", "wall_clock"),
        ),
    ),
    "loom-runner": (
        Target(
            "loom-runner", "pytest_loom.property_loops.loom_runner:build", _STATE, ("iterations",)
        ),
    ),
    "tightloop": (
        Target(
            "tightloop",
            "pytest_loom.property_loops.tightloop:build",
            f"{TASK} until the model says {DONE}",
            _ALL,
            explicit_costs=False,
        ),
    ),
    "loom-agent": (
        Target(
            "loom-agent",
            "pytest_loom.property_loops.loom_agent:build",
            f"{TASK} until you answer {DONE}",
            ("iterations",),
            tool_turns_only=True,
        ),
    ),
}
"""Per runtime, the loops the suite drives (the reference runtime: a sync and an async one)."""
