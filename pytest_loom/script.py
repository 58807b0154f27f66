"""The data of an LLM script: scripted turns, matching rules and error kinds.

Scenario files are parsed into these, and :class:`~pytest_loom.MockLLM` serves requests from
them. They hold no behaviour beyond validation, so both sides agree on one shape.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .record import ToolCallRequest


class LLMErrorKind(enum.StrEnum):
    """Provider failures a scripted turn can simulate."""

    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    MALFORMED_TOOL_CALL = "malformed_tool_call"


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a turn or rule answers. Every field set must hold; none set matches all.

    ``contains`` and ``regex`` look at the last user message; ``tools`` must all be offered.
    """

    model: str | None = None
    contains: str | None = None
    regex: str | None = None
    tools: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"Match(regex={self.regex!r}): not a valid regex: {exc}") from None

    @property
    def is_empty(self) -> bool:
        return (
            self.model is None and self.contains is None and self.regex is None and not self.tools
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """One scripted reply: text and/or tool calls, usage, latency, and an optional error.

    ``cost_usd`` set explicitly wins over the pricing table.
    """

    text: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float | None = None
    cost_usd: float | None = None
    error: LLMErrorKind | None = None
    model: str | None = None
    match: Match | None = None

    def __post_init__(self) -> None:
        if self.error is not None and not isinstance(self.error, LLMErrorKind):
            try:
                object.__setattr__(self, "error", LLMErrorKind(self.error))
            except ValueError:
                known = ", ".join(k.value for k in LLMErrorKind)
                raise ValueError(f"Turn(error={self.error!r}): expected one of {known}") from None
        for name in ("input_tokens", "output_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Turn({name}={value!r}): must be a whole number >= 0")
        for name in ("latency_s", "cost_usd"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ValueError(f"Turn({name}={value!r}): must be a number >= 0")


@dataclass(frozen=True, slots=True)
class Rule:
    """A standing reply: answers every request its ``match`` accepts, ``times`` times at most."""

    match: Match
    reply: Turn
    times: int | None = None

    def __post_init__(self) -> None:
        if self.times is not None and (isinstance(self.times, bool) or self.times < 1):
            raise ValueError(f"Rule(times={self.times!r}): must be a whole number >= 1")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input and output tokens."""

    input: float
    output: float


DEFAULT_PRICING: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-haiku-3.5": Price(0.80, 4.00),
    "claude-opus-4": Price(15.00, 75.00),
}
"""Prices the mock LLM knows without being told; a scenario's ``llm.pricing`` extends it."""
