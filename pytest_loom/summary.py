"""The drift summary: every scenario's measure, baseline and judged drift, and the gate decision.

One :class:`Summary` flows through everything the gate produces: the terminal section, the
JSON file (which a later run reads back as its baseline, ``--loom-baseline``), the markdown and
the HTML report, and ``loom report merge``. It holds no timestamps, hosts, paths of the run or
worker ids, and its scenarios are sorted by node id, so a serial run, a ``-n 2`` run and merged
shards give the same bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .drift import KINDS, Change, Measure, SummaryFormatError, _field

FORMAT = "pytest-loom-summary"
SUMMARY_VERSION = 1
"""Bumped whenever the summary JSON gains, loses or redefines a field."""

MODES = ("fail", "warn", "off")
_RANK = {"fail": 0, "warn": 1, "allow": 2, "": 3}


@dataclass(frozen=True, slots=True)
class Judged:
    """A change with the policy's verdict: ``action`` is ``fail``, ``warn`` or ``allow``."""

    change: Change
    action: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        c = self.change
        return {
            "field": c.field,
            "before": c.before,
            "after": c.after,
            "status": c.status,
            "tolerance": c.tolerance,
            "transitions": list(c.transitions),
            "step": c.step,
            "action": self.action,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Judged:
        if not isinstance(data, Mapping):
            raise SummaryFormatError(f"{where}: expected an object")
        try:
            change = Change(
                field=data["field"],
                before=data["before"],
                after=data["after"],
                status=data["status"],
                tolerance=data["tolerance"],
                transitions=tuple(data["transitions"]),
                step=data["step"],
            )
            action, reason = data["action"], data["reason"]
        except (KeyError, TypeError) as exc:
            raise SummaryFormatError(f"{where}: malformed change: {exc}") from None
        if action not in _RANK or not action:
            raise SummaryFormatError(f"{where}.action: expected fail, warn or allow")
        return cls(change, action, str(reason))


@dataclass(frozen=True, slots=True)
class Entry:
    """One scenario: what it did now, its baseline (if any) and the judged drift."""

    nodeid: str
    scenario: str
    runtime: str
    now: Measure
    baseline: Measure | None = None
    source: str | None = None
    """Where the baseline came from: ``snapshot`` or ``summary`` (``--loom-baseline``)."""
    changes: tuple[Judged, ...] = ()

    @property
    def action(self) -> str:
        """The worst verdict over the changes, ``""`` when nothing changed."""
        return min((j.action for j in self.changes), key=_RANK.__getitem__, default="")

    @property
    def kind(self) -> str:
        """The most severe kind of change (``none`` when nothing changed)."""
        kinds = [j.change.kind for j in self.changes]
        return min(kinds, key=KINDS.index, default="none")

    @property
    def drifted(self) -> bool:
        return bool(self.changes)

    def change(self, name: str) -> Change | None:
        return next((j.change for j in self.changes if j.change.field == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "scenario": self.scenario,
            "runtime": self.runtime,
            "drift": {
                "kind": self.kind,
                "action": self.action or None,
                "changes": [j.to_dict() for j in self.changes],
            },
            "now": self.now.to_dict(),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Entry:
        if not isinstance(data, Mapping):
            raise SummaryFormatError(f"{where}: expected an object")
        drift = _field(data, "drift", Mapping, where)
        changes = _field(drift, "changes", list, f"{where}.drift")
        baseline = data.get("baseline")
        now = Measure.from_dict(data.get("now"), f"{where}.now")
        if baseline is not None:  # usually the same as now (the run matched its snapshot)
            same = baseline == data.get("now")
            baseline = now if same else Measure.from_dict(baseline, f"{where}.baseline")
        return cls(
            nodeid=_field(data, "nodeid", str, where),
            scenario=_field(data, "scenario", str, where),
            runtime=_field(data, "runtime", str, where),
            now=now,
            baseline=baseline,
            source=data.get("source"),
            changes=tuple(
                Judged.from_dict(c, f"{where}.drift.changes[{i}]") for i, c in enumerate(changes)
            ),
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """All scenarios of a run (or of merged shards) and the gate mode they were judged in."""

    mode: str
    entries: tuple[Entry, ...]
    baseline_only: tuple[str, ...] = ()
    """Node ids in the ``--loom-baseline`` summary that this run did not run."""

    _drifted: tuple[Entry, ...] = field(init=False, repr=False, compare=False)
    """What :meth:`drifted` returns, sorted once: the entries of a summary never change."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda e: e.nodeid)))
        object.__setattr__(self, "baseline_only", tuple(sorted(set(self.baseline_only))))

        def severity(entry: Entry) -> tuple[int, int, float, str]:
            cost = entry.change("cost_usd")
            pct = abs(cost.pct() or 0.0) if cost is not None else 0.0
            return (_RANK[self.verdict(entry)], KINDS.index(entry.kind), -pct, entry.nodeid)

        drifted = sorted((e for e in self.entries if e.drifted), key=severity)
        object.__setattr__(self, "_drifted", tuple(drifted))

    def verdict(self, entry: Entry) -> str:
        """The entry's action in this summary's mode: under ``warn`` nothing fails."""
        if entry.action == "fail" and self.mode != "fail":
            return "warn"
        return entry.action

    @property
    def failed(self) -> tuple[Entry, ...]:
        """Scenarios whose drift the gate does not allow (empty unless the mode is ``fail``)."""
        return tuple(e for e in self.drifted() if self.verdict(e) == "fail")

    @property
    def warned(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.drifted() if self.verdict(e) == "warn")

    @property
    def decision(self) -> str:
        """``passed``, ``failed`` or ``off``."""
        if self.mode == "off":
            return "off"
        return "failed" if self.failed else "passed"

    def drifted(self) -> tuple[Entry, ...]:
        """Scenarios that changed, most severe first: verdict, kind, cost change, node id."""
        return self._drifted

    def matrix(self) -> dict[tuple[str, str], int]:
        """Counts of (baseline stop, stop now) over scenarios that have a baseline."""
        counts = Counter(
            (e.baseline.stop, e.now.stop) for e in self.entries if e.baseline is not None
        )
        return dict(sorted(counts.items()))

    def baselines(self) -> dict[str, Measure]:
        """Each scenario's measure by node id: this summary read as the next run's baseline."""
        return {e.nodeid: e.now for e in self.entries}

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "version": SUMMARY_VERSION,
            "gate": {
                "mode": self.mode,
                "decision": self.decision,
                "failed": [e.nodeid for e in self.failed],
                "warned": [e.nodeid for e in self.warned],
            },
            "matrix": [
                {"baseline": before, "now": after, "count": count}
                for (before, after), count in self.matrix().items()
            ],
            "scenarios": [e.to_dict() for e in self.entries],
            "baseline_only": list(self.baseline_only),
        }
        return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> Summary:
        """Read a summary file's bytes; errors start with ``source`` (the file)."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SummaryFormatError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SummaryFormatError(
                f"{source}: not a pytest-loom summary (expected a JSON object with "
                f'"format": "{FORMAT}", as written by --loom-report)'
            )
        if data.get("version") != SUMMARY_VERSION:
            raise SummaryFormatError(
                f"{source}: summary version {data.get('version')!r} is not supported "
                f"(expected {SUMMARY_VERSION}); re-create it with this pytest-loom"
            )
        gate = _field(data, "gate", Mapping, source)
        mode = gate.get("mode")
        if mode not in MODES:
            raise SummaryFormatError(f"{source}: gate.mode: expected one of {', '.join(MODES)}")
        scenarios = _field(data, "scenarios", list, source)
        entries = [Entry.from_dict(e, f"{source}: scenarios[{i}]") for i, e in enumerate(scenarios)]
        only = _field(data, "baseline_only", list, source)
        return cls(mode, tuple(entries), tuple(str(n) for n in only))


def load_summary(path: Path) -> Summary:
    """Read ``path`` (a summary JSON file, or a report directory holding ``summary.json``)."""
    file = path / "summary.json" if path.is_dir() else path
    try:
        raw = file.read_bytes()
    except OSError as exc:
        hint = " (write one with --loom-report=DIR)" if not file.exists() else ""
        raise SummaryFormatError(f"{file}: cannot be read ({exc.strerror}){hint}") from None
    return Summary.from_json(raw, str(file))


def merge_summaries(summaries: Sequence[tuple[str, Summary]], mode: str | None = None) -> Summary:
    """One summary from shards: ``(source, summary)`` pairs; ``mode`` overrides theirs."""
    modes = {s.mode for _, s in summaries}
    if mode is None:
        if len(modes) > 1:
            listed = ", ".join(f"{s.mode} in {src}" for src, s in summaries)
            raise SummaryFormatError(
                f"the shards were gated in different modes ({listed}); choose one with --drift"
            )
        mode = modes.pop()
    seen: dict[str, tuple[str, Entry]] = {}
    for source, summary in summaries:
        for entry in summary.entries:
            if entry.nodeid in seen and seen[entry.nodeid][1] != entry:
                raise SummaryFormatError(
                    f"scenario {entry.nodeid} is in {seen[entry.nodeid][0]} and in {source} with "
                    "different results; merge the summaries of one run's shards only"
                )
            seen.setdefault(entry.nodeid, (source, entry))
    only: set[str] | None = None
    for _, summary in summaries:
        only = set(summary.baseline_only) if only is None else only & set(summary.baseline_only)
    entries = tuple(entry for _, entry in seen.values())
    return Summary(mode, entries, tuple((only or set()) - set(seen)))
