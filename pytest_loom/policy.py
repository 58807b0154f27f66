"""The gate's policy: which drifts fail a session, which only warn, and the tolerances.

A :class:`Policy` comes from the ini keys (``loom_tolerance_*``, ``loom_allow``,
``loom_forbid``, ``loom_trials_threshold``) with an optional TOML policy file on top
(``--loom-policy`` / ``loom_policy``), which can also override any of it per scenario. Both
sources are read into the same dict shape and validated by one function, so an error names the
ini key or the file and key, what was expected, and an example.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .drift import Change
from .record import StopReason

ACTIONS = ("fail", "warn", "allow")
GATE_KEYS = ("stop", "regression", "improvement", "tools", "record", "new")
DEFAULT_GATE = {
    "stop": "fail",
    "regression": "fail",
    "improvement": "warn",
    "tools": "fail",
    "record": "fail",
    "new": "warn",
}
TOLERANCES = ("steps", "llm_calls", "tokens", "cost", "elapsed")
DEFAULT_THRESHOLD = 20.0


class PolicyError(ValueError):
    """A policy that cannot be used: which key (or file), what was expected, how to fix it."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A transition rule such as ``completed -> *`` (globs; a bare reason matches any detail)."""

    text: str
    before: str
    after: str

    @classmethod
    def parse(cls, text: str, where: str) -> Transition:
        parts = [p.strip() for p in text.split("->")]
        if len(parts) != 2 or not all(parts):
            raise PolicyError(
                f"{where}: {text!r} is not a transition; write '<baseline stop> -> <stop now>', "
                "e.g. 'budget_exhausted -> completed' or 'completed -> *'"
            )
        for side in parts:
            reason = side.split("(", 1)[0]
            if not any(c in reason for c in "*?[") and reason not in set(StopReason):
                known = ", ".join(StopReason)
                raise PolicyError(
                    f"{where}: unknown stop reason {reason!r} in {text!r}; known: {known} "
                    "(a glob such as '*' matches any)"
                )
        return cls(text.strip(), parts[0], parts[1])

    def matches(self, transition: str) -> bool:
        before, after = transition.split(" -> ")
        return _side(self.before, before) and _side(self.after, after)


def _side(pattern: str, label: str) -> bool:
    if fnmatch.fnmatchcase(label, pattern):
        return True
    return "(" not in pattern and fnmatch.fnmatchcase(label.split("(", 1)[0], pattern)


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings one scenario is judged by."""

    gate: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GATE))
    tolerance: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(TOLERANCES, 0.0))
    allow: tuple[Transition, ...] = ()
    forbid: tuple[Transition, ...] = ()
    threshold: float = DEFAULT_THRESHOLD

    def judge(self, change: Change) -> tuple[str, str]:
        """The action (``fail``, ``warn``, ``allow``) for one change, and why."""
        if change.status in ("transition", "distribution"):
            return self._transition(change)
        if change.status == "tolerated":
            return "allow", f"within the {change.tolerance:g}% tolerance"
        key = change.kind
        if key in ("regression", "improvement"):
            reason = f"beyond the {change.tolerance:g}% tolerance"
        else:
            reason = {
                "tools": "the tool-call sequence changed",
                "record": "its prompts, replies, tool calls, score or state changed",
                "new": "no baseline for this scenario",
            }[key]
        return self.gate[key], reason

    def _transition(self, change: Change) -> tuple[str, str]:
        worst = ("allow", "")
        for transition in change.transitions:
            forbidden = next((r for r in self.forbid if r.matches(transition)), None)
            allowed = next((r for r in self.allow if r.matches(transition)), None)
            if forbidden is not None:
                verdict = ("fail", f"forbidden by {forbidden.text!r}")
            elif allowed is not None:
                verdict = ("warn", f"allowed by {allowed.text!r}")
            else:
                verdict = (self.gate["stop"], "the stop reason changed")
            if ACTIONS.index(verdict[0]) < ACTIONS.index(worst[0]) or not worst[1]:
                worst = verdict
        return worst


@dataclass(frozen=True, slots=True)
class Policy:
    """Global rules plus per-scenario overrides (first matching override wins)."""

    rules: Rules = field(default_factory=Rules)
    overrides: tuple[tuple[str, Rules], ...] = ()

    def for_scenario(self, nodeid: str, scenario: str) -> Rules:
        for pattern, rules in self.overrides:
            if fnmatch.fnmatchcase(nodeid, pattern) or fnmatch.fnmatchcase(scenario, pattern):
                return rules
        return self.rules


def load_policy(ini: Mapping[str, Any], path: Path | None) -> Policy:
    """The policy from the ini values (already read, by key) and an optional TOML file."""
    from_ini = {
        "tolerance": {
            k: ini[f"loom_tolerance_{k}"] for k in TOLERANCES if ini.get(f"loom_tolerance_{k}")
        },
        "allow": ini.get("loom_allow") or None,
        "forbid": ini.get("loom_forbid") or None,
        "threshold": ini.get("loom_trials_threshold") or None,
    }
    base = _rules(from_ini, Rules(), _ini_label)
    if path is None:
        return Policy(base)
    import tomllib  # only a policy file needs it: most sessions have none

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"policy file {path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy file {path}: not valid TOML: {exc}") from None
    where = f"policy file {path}:"
    _only(data, ("gate", "tolerance", "transitions", "trials", "scenario"), where)
    transitions = _table(data, "transitions", where, keys=("allow", "forbid"))
    flat = {
        "gate": _table(data, "gate", where),
        "tolerance": _table(data, "tolerance", where),
        "allow": transitions.get("allow"),
        "forbid": transitions.get("forbid"),
        "threshold": _table(data, "trials", where, keys=("threshold",)).get("threshold"),
    }
    names = {
        "allow": "transitions.allow",
        "forbid": "transitions.forbid",
        "threshold": "trials.threshold",
    }
    rules = _rules(
        flat,
        base,
        lambda section, key: (
            f"{where} {section or names.get(key, key)}{'.' + key if section else ''}"
        ),
    )
    overrides = []
    scenarios = data.get("scenario", [])
    if not isinstance(scenarios, list):
        raise PolicyError(f"{where} scenario: expected an array of tables ([[scenario]])")
    for i, entry in enumerate(scenarios):
        here = f"{where} scenario[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str):
            raise PolicyError(
                f"{here}: each [[scenario]] needs match = '<node id or scenario id glob>'"
            )
        _only(entry, ("match", "gate", "tolerance", "allow", "forbid", "threshold"), here)
        label = _file_label(here)
        overrides.append((entry["match"], _rules(entry, rules, label, prepend=True)))
    return Policy(rules, tuple(overrides))


def _ini_label(section: str, key: str) -> str:
    if section == "tolerance":
        return f"ini key loom_tolerance_{key}"
    return f"ini key loom_{'trials_' if key == 'threshold' else ''}{key}"


def _file_label(where: str) -> Callable[[str, str], str]:
    return lambda section, key: f"{where}.{section + '.' if section else ''}{key}"


def _rules(
    data: Mapping[str, Any],
    base: Rules,
    label: Callable[[str, str], str],
    *,
    prepend: bool = False,
) -> Rules:
    """``base`` with the settings in ``data`` applied; ``label(section, key)`` names a key."""
    gate = dict(base.gate)
    tolerance = dict(base.tolerance)
    for key, value in _section(data, "gate", label).items():
        if key not in GATE_KEYS:
            raise PolicyError(f"{label('gate', key)}: unknown key; known: {', '.join(GATE_KEYS)}")
        if value not in ACTIONS:
            raise PolicyError(
                f"{label('gate', key)}: expected one of {', '.join(ACTIONS)}, got {value!r}"
            )
        gate[key] = value
    for key, value in _section(data, "tolerance", label).items():
        if key not in TOLERANCES:
            raise PolicyError(
                f"{label('tolerance', key)}: unknown tolerance; known: {', '.join(TOLERANCES)}"
            )
        tolerance[key] = percent(value, label("tolerance", key))
    transitions: dict[str, tuple[Transition, ...]] = {}
    for key in ("allow", "forbid"):
        value = data.get(key)
        if value is None:
            transitions[key] = getattr(base, key)
            continue
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise PolicyError(
                f"{label('', key)}: expected a list of transitions such as ['completed -> *'], "
                f"got {value!r}"
            )
        parsed = tuple(Transition.parse(str(t), label("", key)) for t in value)
        transitions[key] = (*parsed, *getattr(base, key)) if prepend else parsed
    threshold = data.get("threshold")
    return Rules(
        gate=gate,
        tolerance=tolerance,
        allow=transitions["allow"],
        forbid=transitions["forbid"],
        threshold=base.threshold
        if threshold is None
        else percent(threshold, label("", "threshold")),
    )


def percent(value: Any, where: str) -> float:
    """``10``, ``10%``, ``"2.5"`` -> 10.0, 10.0, 2.5; anything else is a :class:`PolicyError`."""
    text = str(value).strip().removesuffix("%").strip()
    try:
        number = float(text) if not isinstance(value, bool) else -1.0
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise PolicyError(f"{where}: expected a percentage >= 0 such as 10 or 10%, got {value!r}")
    return number


def _section(
    data: Mapping[str, Any], key: str, label: Callable[[str, str], str]
) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise PolicyError(f"{label('', key)}: expected a table of settings, got {value!r}")
    return value


def _table(
    data: Mapping[str, Any], key: str, where: str, keys: Sequence[str] | None = None
) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where} {key}: expected a table, got {value!r}")
    if keys is not None:
        _only(value, keys, f"{where} {key}.")
    return value


def _only(data: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    for key in data:
        if key not in keys:
            raise PolicyError(f"{where} {key}: unknown key; expected one of {', '.join(keys)}")
