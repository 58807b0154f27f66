"""Drift: what changed between a scenario's baseline run and this run, field by field.

A :class:`Measure` is what the gate looks at in one scenario's run (or its trials): the stop
labels, the totals, the tool-call sequence and the per-step series the HTML report plots, each
step with a digest of its content (what it asked, answered and did, without its
measurements). :func:`compare` turns a baseline measure and a current one into :class:`Change`
entries, each already classified against the tolerances (``regression``, ``improvement``,
``tolerated``...). Whether a change is allowed is the policy's business
(:mod:`pytest_loom.policy`); this module only measures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .record import RunRecord

NUMERIC_FIELDS = ("steps", "llm_calls", "input_tokens", "output_tokens", "cost_usd", "elapsed_s")
"""The numeric fields the gate compares, each higher-is-worse."""

TOLERANCE_KEYS = {
    "steps": "steps",
    "llm_calls": "llm_calls",
    "input_tokens": "tokens",
    "output_tokens": "tokens",
    "cost_usd": "cost",
    "elapsed_s": "elapsed",
}
"""Which tolerance (policy key) applies to which numeric field."""

KINDS = (
    "stop",
    "distribution",
    "regression",
    "tools",
    "record",
    "improvement",
    "tolerated",
    "new",
    "none",
)
"""Drift kinds, most severe first."""

# Fields of a step that are measurements: its content digest leaves them out, so a cost or
# token change alone does not count as a content change.
_MEASURED_KEYS = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "cumulative_cost_usd",
        "latency_s",
        "start_s",
        "duration_s",
    }
)


class SummaryFormatError(ValueError):
    """A summary (or part of one) that cannot be read: names the key and what was expected."""


@dataclass(frozen=True, slots=True)
class StepPoint:
    """One step as the report's timeline and plots show it."""

    index: int
    start_s: float
    duration_s: float
    cost_usd: float
    cumulative_cost_usd: float
    tokens: int
    llm_calls: int
    score: float | None
    tools: tuple[str, ...]
    error: str | None
    events: tuple[str, ...]
    content: str
    """Digest of the step without its measurements: prompts, replies, tool calls, score, state."""


@dataclass(frozen=True, slots=True)
class Measure:
    """What the gate compares for one scenario: one run, or the trials of one scenario.

    With several trials, ``stops`` counts each stop label and the numeric fields are means;
    ``tools`` and ``series`` are those of the first trial.
    """

    stops: Mapping[str, int]
    steps: float
    llm_calls: float
    input_tokens: float
    output_tokens: float
    cost_usd: float
    elapsed_s: float
    tools: tuple[str, ...]
    series: tuple[StepPoint, ...]

    @property
    def trials(self) -> int:
        return sum(self.stops.values())

    @property
    def stop(self) -> str:
        """The most frequent stop label (ties: the first in alphabetical order)."""
        if len(self.stops) == 1:  # a single run, or trials that all stopped alike
            return next(iter(self.stops))
        return min(self.stops, key=lambda label: (-self.stops[label], label))

    @property
    def tokens(self) -> float:
        return _num(self.input_tokens + self.output_tokens)

    def share(self, label: str) -> float:
        return self.stops.get(label, 0) / self.trials

    def distribution(self) -> str:
        """``completed 9/10, failed(ValueError) 1/10``; just the label for a single run."""
        if self.trials == 1:
            return self.stop
        ordered = sorted(self.stops, key=lambda label: (-self.stops[label], label))
        return ", ".join(f"{label} {self.stops[label]}/{self.trials}" for label in ordered)

    def value(self, name: str) -> float:
        return float(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stops": dict(sorted(self.stops.items())),
            **{name: getattr(self, name) for name in NUMERIC_FIELDS},
            "tools": list(self.tools),
            "series": [
                {
                    "index": p.index,
                    "start_s": p.start_s,
                    "duration_s": p.duration_s,
                    "cost_usd": p.cost_usd,
                    "cumulative_cost_usd": p.cumulative_cost_usd,
                    "tokens": p.tokens,
                    "llm_calls": p.llm_calls,
                    "score": p.score,
                    "tools": list(p.tools),
                    "error": p.error,
                    "events": list(p.events),
                    "content": p.content,
                }
                for p in self.series
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Measure:
        """Read the ``to_dict`` form back; ``where`` names it in errors (``scenarios[3].now``)."""
        if not isinstance(data, Mapping):
            raise SummaryFormatError(f"{where}: expected an object, got {_kind(data)}")
        stops = _field(data, "stops", Mapping, where)
        if not stops or not all(
            isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in stops.items()
        ):
            raise SummaryFormatError(
                f"{where}.stops: expected stop labels counting runs, such as "
                f'{{"completed": 1}}, got {stops!r}'
            )
        for name in NUMERIC_FIELDS:
            value = _field(data, name, (int, float), where)
            if isinstance(value, bool) or value < 0:
                raise SummaryFormatError(f"{where}.{name}: expected a number >= 0, got {value!r}")
        _field(data, "tools", list, where)
        _field(data, "series", list, where)
        try:
            return cls.unchecked(data)
        except (TypeError, KeyError) as exc:
            raise SummaryFormatError(f"{where}.series: malformed step: {exc}") from None

    @classmethod
    def unchecked(cls, data: Mapping[str, Any]) -> Measure:
        """The ``to_dict`` form this package wrote (an xdist worker's), read back without the
        checks of :meth:`from_dict`."""
        return cls(
            stops=dict(data["stops"]),
            tools=tuple(str(t) for t in data["tools"]),
            series=tuple(
                StepPoint(
                    **{
                        **point,
                        "tools": tuple(point["tools"]),
                        "events": tuple(point["events"]),
                    }
                )
                for point in data["series"]
            ),
            **{name: data[name] for name in NUMERIC_FIELDS},
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One field that differs from the baseline, classified against its tolerance.

    ``status`` is ``transition`` (the stop label changed), ``distribution`` (the share of the
    baseline's stop fell by more than the threshold), ``regression``/``improvement`` (beyond
    tolerance, up/down), ``tolerated`` (within tolerance), ``changed`` (tool sequence or
    content, with ``step`` the first step that differs) or ``new`` (no baseline).
    """

    field: str
    before: Any
    after: Any
    status: str
    tolerance: float | None = None
    transitions: tuple[str, ...] = ()
    step: int | None = None

    @property
    def kind(self) -> str:
        if self.status in ("transition", "new"):
            return "stop" if self.status == "transition" else "new"
        if self.status == "changed":
            return "tools" if self.field == "tools" else "record"
        return self.status

    def delta(self) -> float | None:
        if self.field not in NUMERIC_FIELDS:
            return None
        return _num(float(self.after) - float(self.before))

    def pct(self) -> float | None:
        """The relative change in percent (``None`` when the baseline is 0)."""
        if self.field not in NUMERIC_FIELDS or not self.before:
            return None
        return round((float(self.after) - float(self.before)) / float(self.before) * 100, 1)


def measure(records: Sequence[RunRecord], series: tuple[StepPoint, ...] = ()) -> Measure:
    """The measure of one scenario's trials.

    ``series`` is the first trial's per-step detail (:func:`step_series`); its tool sequence
    is read from it. It is left empty when neither a comparison nor a report needs it: a run
    that matches its snapshot is judged by the totals alone.
    """
    n = len(records)
    stops: dict[str, int] = {}
    for record in records:
        label = record.stop.label
        stops[label] = stops.get(label, 0) + 1
    totals = [record.totals for record in records]
    return Measure(
        stops=dict(sorted(stops.items())),
        tools=tuple(name for point in series for name in point.tools),
        series=series,
        **{
            name: _num(
                round(sum(getattr(t, name) for t in totals) / n, 12 if name == "cost_usd" else 6)
            )
            for name in NUMERIC_FIELDS
        },
    )


def step_series(record: RunRecord, text: str) -> tuple[StepPoint, ...]:
    """Each step of ``record`` as the reports plot it; ``text`` is the record's (masked)
    snapshot text, whose steps the content digests are taken from."""
    return tuple(
        StepPoint(
            index=s.index,
            start_s=s.start_s,
            duration_s=s.duration_s,
            cost_usd=s.cost_usd,
            cumulative_cost_usd=s.cumulative_cost_usd,
            tokens=s.input_tokens + s.output_tokens,
            llm_calls=len(s.llm_calls),
            score=s.score,
            tools=tuple(call.name for call in s.tool_calls),
            error=s.error,
            events=tuple(str(e) for e in s.events),
            content=_step_digest(raw),
        )
        for s, raw in zip(record.steps, orjson.loads(text)["steps"], strict=True)
    )


def _step_digest(step: dict[str, Any]) -> str:
    """A digest of what a step did, leaving out what it measured (tokens, cost, times).

    Two steps whose prompts, replies, tool calls, score and state are the same have the same
    digest even when their costs differ; the gate judges those through tolerances.
    """
    data = _strip(step)
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


_NESTED = (dict, list)


def _strip(value: Any) -> Any:
    """JSON data without the measured keys, at any depth (recursing into containers only)."""
    if type(value) is dict:
        return {
            k: _strip(v) if type(v) in _NESTED else v
            for k, v in value.items()
            if k not in _MEASURED_KEYS
        }
    return [_strip(v) if type(v) in _NESTED else v for v in value]


def compare(
    baseline: Measure | None,
    current: Measure,
    *,
    tolerance: Mapping[str, float],
    threshold: float,
) -> tuple[Change, ...]:
    """The changes from ``baseline`` to ``current``: stop first, then the numbers, tools, content.

    ``tolerance`` maps the keys of :data:`TOLERANCE_KEYS` to percents of the baseline;
    ``threshold`` is how many percentage points the share of the baseline's stop label may fall
    across trials before it counts as drift.
    """
    if baseline is None:
        return (Change("stop", None, current.distribution(), "new"),)
    changes: list[Change] = []
    before, after = baseline.stop, current.stop
    gained = tuple(
        f"{before} -> {label}"
        for label in sorted(current.stops)
        if label != before and current.share(label) > baseline.share(label)
    )
    if before != after:
        changes.append(
            Change(
                "stop",
                baseline.distribution(),
                current.distribution(),
                "transition",
                transitions=(f"{before} -> {after}",),
            )
        )
    elif (baseline.share(before) - current.share(before)) * 100 > threshold and gained:
        changes.append(
            Change(
                "stop",
                baseline.distribution(),
                current.distribution(),
                "distribution",
                tolerance=threshold,
                transitions=gained,
            )
        )
    for name in NUMERIC_FIELDS:
        old, new = baseline.value(name), current.value(name)
        if old == new:
            continue
        pct = tolerance.get(TOLERANCE_KEYS[name], 0.0)
        if abs(new - old) <= abs(old) * pct / 100 + 1e-12:
            status = "tolerated"
        else:
            status = "regression" if new > old else "improvement"
        changes.append(Change(name, getattr(baseline, name), getattr(current, name), status, pct))
    if baseline.tools != current.tools:
        changes.append(Change("tools", list(baseline.tools), list(current.tools), "changed"))
    for was, step in zip(baseline.series, current.series, strict=False):
        if was.content != step.content:
            changes.append(Change("content", was.content, step.content, "changed", step=step.index))
            break
    return tuple(changes)


def _num(value: float) -> float:
    """Whole numbers as ``int`` so the JSON reads ``6``, not ``6.0``."""
    return int(value) if float(value).is_integer() else value


def _field(data: Mapping[str, Any], key: str, types: Any, where: str) -> Any:
    if key not in data:
        raise SummaryFormatError(f"{where}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, types):
        names = (
            " or ".join(t.__name__ for t in types) if isinstance(types, tuple) else types.__name__
        )
        raise SummaryFormatError(f"{where}.{key}: expected {names}, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
