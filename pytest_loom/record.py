"""The canonical run record: one loop run, as every part of the lab sees it.

Runtimes produce a :class:`RunRecord`; snapshots, drift reports, replay and invariants consume
it. It is a tree of frozen dataclasses that serialises to plain JSON (``to_dict``/``to_json``)
and back (``RunRecord.from_dict``), versioned by :data:`RECORD_VERSION`. Every number in it is
measured on the lab's fake clock and the mock LLM, so the same inputs give the same record,
byte for byte.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

RECORD_VERSION = 1
"""Bumped whenever a released record format gains, loses or redefines a field."""


class StopReason(enum.StrEnum):
    """Why a loop run ended: the one vocabulary every runtime's endings are normalised into."""

    COMPLETED = "completed"
    """The loop said it was done (the step returned :class:`~pytest_loom.Done`)."""
    CONVERGED = "converged"
    """A convergence rule held (predicate, score plateau)."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """A budget limit hit; :attr:`Stop.limit` names which."""
    STALLED = "stalled"
    """No progress: the stall rule fired or the loop escalated."""
    FAILED = "failed"
    """An error ended the run; :attr:`Stop.error_type` names it."""
    PAUSED = "paused"
    """The run stopped resumably: it was interrupted (a crash) and has not been resumed."""
    AWAITING_APPROVAL = "awaiting_approval"
    """A human approval is pending."""
    DENIED = "denied"
    """A human approval was refused."""


class BudgetLimit(enum.StrEnum):
    """The budget dimensions a loop can run out of."""

    USD = "usd"
    ITERATIONS = "iterations"
    TOKENS = "tokens"
    WALL_CLOCK = "wall_clock"


class Event(enum.StrEnum):
    """Things that happened to a step besides running it."""

    RESUMED = "resumed"
    BACKTRACKED = "backtracked"
    RETRIED = "retried"


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True, slots=True)
class LLMCall:
    """One request served by an LLM (the mock or a recording), as the run saw it."""

    model: str
    request_digest: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    prompt: str = ""
    """The last user message: what a reviewer reads when a prompt change shows up in a diff."""
    text: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool the loop executed."""

    name: str
    args: Mapping[str, Any]
    status: str
    result_digest: str
    result: Any = None
    """The result as JSON (a failure: ``{"error": type, "args": [...]}``) when JSON holds it
    exactly, else a ``"<not kept: ...>"`` note: what a replay gives back instead of calling the
    tool again."""


@dataclass(frozen=True, slots=True)
class Step:
    """One iteration of a loop, committed (or attempted) as a unit."""

    index: int
    start_s: float
    duration_s: float
    llm_calls: tuple[LLMCall, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cumulative_cost_usd: float = 0.0
    score: float | None = None
    error: str | None = None
    state_digest: str = ""
    events: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Totals:
    """What the whole run used."""

    steps: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Stop:
    """Why the run ended, normalised, plus what the runtime itself said."""

    reason: StopReason
    limit: BudgetLimit | None = None
    error_type: str | None = None
    detail: str | None = None
    raw_status: str | None = None
    raw_exception: str | None = None

    def __post_init__(self) -> None:
        if (self.reason is StopReason.BUDGET_EXHAUSTED) != (self.limit is not None):
            raise ValueError("a budget_exhausted stop names its limit, and only such a stop")
        if self.reason is StopReason.FAILED and not self.error_type:
            raise ValueError("a failed stop names its error type")

    @property
    def label(self) -> str:
        """``budget_exhausted(usd)``, ``failed(ValueError)``, ``converged``: how reports show it."""
        if self.limit is not None:
            return f"{self.reason}({self.limit})"
        if self.error_type is not None:
            return f"{self.reason}({self.error_type})"
        return str(self.reason)


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One loop run: the lab's single currency."""

    scenario: str
    runtime: RuntimeInfo
    stop: Stop
    totals: Totals
    steps: tuple[Step, ...]
    run_id: str = ""
    version: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, *, indent: bool = True) -> bytes:
        """Canonical JSON: fields in declaration order, mapping keys sorted; equal records give
        equal bytes."""
        option = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
        if indent:
            option |= orjson.OPT_INDENT_2
        return orjson.dumps(self, option=option)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Rebuild a record from :meth:`to_dict` output; raises ``RecordError`` on bad input."""
        return _decode_record(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> RunRecord:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"run record is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RecordError("run record must be a JSON object")
        return _decode_record(data)


class RecordError(ValueError):
    """A run record that cannot be read: says which key and what was expected."""


def digest(value: Any) -> str:
    """A short, stable digest of any JSON-serialisable value (sorted keys)."""
    try:
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        raw = repr(value).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def sum_usd(*amounts: float) -> float:
    """Add money without float noise creeping into snapshots (12 decimal places)."""
    return round(float(sum(amounts)), 12)


def _decode_record(data: Mapping[str, Any]) -> RunRecord:
    version = data.get("version")
    if version != RECORD_VERSION:
        raise RecordError(
            f"run record version {version!r} is not supported (expected {RECORD_VERSION}); "
            "re-create it with this pytest-loom (e.g. --snapshot-update)"
        )
    try:
        stop = stop_from_dict(data["stop"])
        steps = tuple(step_from_dict(s) for s in data["steps"])
        return RunRecord(
            scenario=data["scenario"],
            runtime=RuntimeInfo(**data["runtime"]),
            steps=steps,
            totals=Totals(**data["totals"]),
            stop=stop,
            run_id=data.get("run_id", ""),
            version=version,
        )
    except KeyError as exc:
        raise RecordError(f"run record is missing key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise RecordError(f"run record is malformed: {exc}") from None


def stop_from_dict(data: Mapping[str, Any]) -> Stop:
    """Rebuild a :class:`Stop` from its ``asdict`` form."""
    raw = dict(data)
    raw["reason"] = StopReason(raw["reason"])
    if raw.get("limit") is not None:
        raw["limit"] = BudgetLimit(raw["limit"])
    return Stop(**raw)


def step_from_dict(data: Mapping[str, Any]) -> Step:
    """Rebuild a :class:`Step` from its ``asdict`` form."""
    raw = dict(data)
    raw["llm_calls"] = tuple(map(_llm_call_from_dict, raw.get("llm_calls", ())))
    raw["tool_calls"] = tuple([ToolCall(**t) for t in raw.get("tool_calls", ())])
    raw["events"] = tuple(raw.get("events", ()))
    return Step(**raw)


def _llm_call_from_dict(call: Mapping[str, Any]) -> LLMCall:
    tool_calls = tuple([ToolCallRequest(**t) for t in call.get("tool_calls", ())])
    return LLMCall(**{**call, "tool_calls": tool_calls})


def totals_of(steps: Sequence[Step], elapsed_s: float) -> Totals:
    """Totals derived from the steps themselves (the record never stores them independently)."""
    return Totals(
        steps=len(steps),
        llm_calls=sum(len(s.llm_calls) for s in steps),
        input_tokens=sum(s.input_tokens for s in steps),
        output_tokens=sum(s.output_tokens for s in steps),
        cost_usd=sum_usd(*(s.cost_usd for s in steps)),
        elapsed_s=round(elapsed_s, 9),
    )
