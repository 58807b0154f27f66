"""What a loop may spend: :class:`Budget` limits, and the :class:`Spend` carried across resume."""

from __future__ import annotations

from dataclasses import dataclass

from .record import BudgetLimit, sum_usd
from .units import parse_duration


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on one run. ``None`` means unlimited; at least one limit should be set.

    ``wall_clock`` is in seconds of the lab's fake clock (``Budget.of(wall_clock="10m")``
    accepts text).
    """

    usd: float | None = None
    iterations: int | None = None
    tokens: int | None = None
    wall_clock: float | None = None

    def __post_init__(self) -> None:
        for name in ("usd", "iterations", "tokens", "wall_clock"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"Budget({name}={value!r}): a limit must be a number >= 0")
        if self.iterations is not None and not isinstance(self.iterations, int):
            raise ValueError(f"Budget(iterations={self.iterations!r}): must be a whole number")
        if self.tokens is not None and not isinstance(self.tokens, int):
            raise ValueError(f"Budget(tokens={self.tokens!r}): must be a whole number")

    @classmethod
    def of(
        cls,
        *,
        usd: float | None = None,
        iterations: int | None = None,
        tokens: int | None = None,
        wall_clock: float | str | None = None,
    ) -> Budget:
        """Like the constructor, but ``wall_clock`` may be a duration string such as ``"10m"``."""
        seconds = None if wall_clock is None else parse_duration(wall_clock)
        return cls(usd=usd, iterations=iterations, tokens=tokens, wall_clock=seconds)


@dataclass(frozen=True, slots=True)
class Spend:
    """What a run has used so far. It is persisted with every step, so resume never re-grants it."""

    usd: float = 0.0
    iterations: int = 0
    tokens: int = 0
    wall_clock: float = 0.0

    def exhausted(self, budget: Budget) -> BudgetLimit | None:
        """The first limit reached, in a fixed order (iterations, usd, tokens, wall clock)."""
        if budget.iterations is not None and self.iterations >= budget.iterations:
            return BudgetLimit.ITERATIONS
        if budget.usd is not None and self.usd >= budget.usd:
            return BudgetLimit.USD
        if budget.tokens is not None and self.tokens >= budget.tokens:
            return BudgetLimit.TOKENS
        if budget.wall_clock is not None and self.wall_clock >= budget.wall_clock:
            return BudgetLimit.WALL_CLOCK
        return None

    def would_exceed(self, budget: Budget, *, usd: float, tokens: int) -> BudgetLimit | None:
        """The limit a step estimated to cost ``usd`` and ``tokens`` would cross, if any."""
        if budget.usd is not None and sum_usd(self.usd, usd) > budget.usd:
            return BudgetLimit.USD
        if budget.tokens is not None and self.tokens + tokens > budget.tokens:
            return BudgetLimit.TOKENS
        return None
