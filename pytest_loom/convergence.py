"""Convergence rules for the reference runtime: when a loop has reached a good-enough result.

A rule looks at :class:`Progress` (the newest state and the recent scores) after each committed
step and says whether the run has converged. Rules are small frozen objects, so they print well
in reproducers and compare equal across runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Progress:
    """What a rule may look at: newest state, step number, recent scores (oldest first)."""

    state: Any
    step: int
    scores: Sequence[float]


class Convergence(Protocol):
    window: int
    """How many recent scores the rule needs (the runtime keeps and restores that many)."""

    def __call__(self, progress: Progress) -> bool: ...


@dataclass(frozen=True, slots=True)
class predicate:
    """Converged when ``fn(state)`` is true."""

    fn: Callable[[Any], bool]
    window: int = 0

    def __call__(self, progress: Progress) -> bool:
        return bool(self.fn(progress.state))

    def __repr__(self) -> str:
        # Stable across processes (no memory address), since it lands in run records.
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"predicate({name})"


@dataclass(frozen=True, slots=True)
class score_at_least:
    """Converged when the newest score reaches ``threshold``."""

    threshold: float
    window: int = 1

    def __call__(self, progress: Progress) -> bool:
        return bool(progress.scores) and progress.scores[-1] >= self.threshold


@dataclass(frozen=True, slots=True)
class score_plateau:
    """Converged when the last ``window`` scores improved by less than ``min_delta`` in total."""

    window: int = 3
    min_delta: float = 0.01

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"score_plateau(window={self.window!r}): needs at least 2 scores")

    def __call__(self, progress: Progress) -> bool:
        recent = progress.scores[-self.window :]
        return len(recent) == self.window and max(recent) - recent[0] < self.min_delta
