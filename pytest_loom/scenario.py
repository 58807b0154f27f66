"""Scenario files: one golden loop run, described in a ``*.loom.yaml`` file and read strictly.

A scenario says which loop to run (``entry``), from which state, under which budget, against
which scripted LLM replies, clock and injected faults, and what the run is expected to do.
These files are written by hand and read by people, so the loader is strict and specific: an
unknown key, a wrong type or a bad value is a :class:`ScenarioError` naming the file, the line
and the dotted key, saying what was expected and, where it can guess, what was meant. Nothing
here runs anything; the result is a tree of frozen dataclasses that the runner, the mock LLM
and the reports consume (``Scenario.lines`` lets them point back at the file too).
"""

from __future__ import annotations

import builtins
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias

from yaml.nodes import Node

from ._yamlnodes import (
    NodeError,
    Parser,
    boolean,
    choice,
    compose,
    describe,
    did_you_mean,
    duration,
    index_tree,
    integer,
    keyed,
    kind,
    line_of,
    list_of,
    mapping,
    nonempty_string,
    number,
    one_key,
    one_of,
    plain,
    plain_mapping,
    regex,
    scalar,
    string,
    string_list,
    timestamp,
    type_error,
)
from .budget import Budget
from .matching import IgnoreRule
from .record import BudgetLimit, StopReason, ToolCallRequest
from .script import LLMErrorKind, Match, Price, Rule, Turn

__all__ = [
    "DEFAULT_CLOCK_START",
    "Bound",
    "CassetteSpec",
    "ClockSpec",
    "CrashFault",
    "Expectation",
    "Fault",
    "KillFault",
    "LLMErrorFault",
    "LLMSpec",
    "RaiseFault",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "scenario_from_text",
]

SCENARIO_VERSION = 1
DEFAULT_CLOCK_START = datetime(2026, 1, 1, tzinfo=UTC)


class ScenarioError(Exception):
    """A scenario file that cannot be used: where, which key, what is wrong, and what would do."""

    def __init__(
        self,
        path: Path,
        line: int | None,
        key: str,
        problem: str,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(path, line, key, problem, expected, hint)
        self.path = path
        self.line = line
        self.key = key
        self.problem = problem
        self.expected = expected
        self.hint = hint

    def __str__(self) -> str:
        where = _shown_path(self.path) + (f":{self.line}" if self.line is not None else "")
        text = f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"
        if self.expected:
            text += f"\n  expected: {self.expected}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def _shown_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# --- the parsed form --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bound:
    """An inclusive range a measured number must fall in; ``None`` leaves that side open."""

    min: float | None = None
    max: float | None = None

    def contains(self, value: float) -> bool:
        above = self.min is None or value >= self.min
        return above and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            if self.min == self.max:
                return f"== {_num(self.min)}"
            return f"between {_num(self.min)} and {_num(self.max)}"
        if self.max is not None:
            return f"<= {_num(self.max)}"
        if self.min is not None:
            return f">= {_num(self.min)}"
        return "any value"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the run must do; ``None`` everywhere means only "it runs"."""

    stop: str | None = None
    steps: Bound | None = None
    cost_usd: Bound | None = None
    tokens: Bound | None = None
    llm_calls: Bound | None = None
    invariants: tuple[str, ...] = ()
    """Names of :mod:`pytest_loom.invariants` the run must satisfy."""

    def stop_matches(self, label: str) -> bool:
        """The run's stop label (``Stop.label``) is the expected one.

        A bare reason (``failed``) matches that reason with any argument (``failed(KeyError)``).
        """
        if self.stop is None or label == self.stop:
            return True
        return "(" not in self.stop and label.startswith(f"{self.stop}(")


@dataclass(frozen=True, slots=True)
class CassetteSpec:
    """The recording SDK calls are replayed from: a path relative to the scenario file."""

    path: str
    ignore: tuple[IgnoreRule, ...] = ()


@dataclass(frozen=True, slots=True)
class LLMSpec:
    """The mock LLM's script: a default model and latency, prices, turns and standing rules."""

    model: str | None = None
    strict: bool = True
    allow_unused: bool = False
    latency_s: float = 0.0
    pricing: Mapping[str, Price] = field(default_factory=dict)
    turns: tuple[Turn, ...] = ()
    rules: tuple[Rule, ...] = ()
    cassette: CassetteSpec | None = None


@dataclass(frozen=True, slots=True)
class ClockSpec:
    """The fake clock: when the run starts (aware, UTC) and how long each loop step takes."""

    start: datetime = DEFAULT_CLOCK_START
    step_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RaiseFault:
    """Raise ``error(message)`` (a builtin exception class name) in step ``step`` (1-based)."""

    step: int
    error: str = "RuntimeError"
    message: str = "injected fault"


@dataclass(frozen=True, slots=True)
class LLMErrorFault:
    """Make the ``call``-th LLM request of the run (1-based) fail with ``kind``."""

    call: int
    kind: LLMErrorKind


@dataclass(frozen=True, slots=True)
class CrashFault:
    """Crash the process-to-be during step ``step``; with ``resume``, the run is then resumed."""

    step: int
    resume: bool = True


@dataclass(frozen=True, slots=True)
class KillFault:
    """Kill the process for real (``os._exit``) as step ``step`` starts; with ``resume``, a new
    process then resumes the run through the runtime's own resume API."""

    step: int
    resume: bool = True


Fault: TypeAlias = RaiseFault | LLMErrorFault | CrashFault | KillFault
StepFault: TypeAlias = RaiseFault | CrashFault | KillFault


@dataclass(frozen=True, slots=True)
class Scenario:
    """One golden loop run, as read from its file. ``lines`` maps dotted keys to their line."""

    path: Path
    id: str
    version: int
    description: str
    runtime: str
    entry: str
    entry_line: int
    input: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    llm: LLMSpec = field(default_factory=LLMSpec)
    clock: ClockSpec = field(default_factory=ClockSpec)
    faults: tuple[Fault, ...] = ()
    expect: Expectation = field(default_factory=Expectation)
    snapshot: bool = True
    markers: tuple[str, ...] = ()
    lines: Mapping[str, int] = field(default_factory=dict)


# --- loading ----------------------------------------------------------------------------------


def load_scenario(path: Path, *, suffix: str = ".loom.yaml") -> Scenario:
    """Read and check one scenario file; every problem is a :class:`ScenarioError`.

    Without an ``id:`` key the id is the file name minus ``suffix`` (or minus its extension).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(path, None, "", f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ScenarioError(
            path, None, "", f"cannot read the file: {exc.strerror or exc}"
        ) from None
    return scenario_from_text(text, path, suffix=suffix)


def scenario_from_text(text: str, path: Path, *, suffix: str = ".loom.yaml") -> Scenario:
    """Check scenario YAML ``text`` as :func:`load_scenario` checks the file ``path``.

    ``path`` names the scenario in errors and gives its id and base directory; it need not
    exist. Every problem is a :class:`ScenarioError`.
    """
    try:
        return _scenario(path, compose(text), suffix)
    except NodeError as exc:
        raise ScenarioError(path, exc.line, exc.key, exc.problem, exc.expected, exc.hint) from None
    except RecursionError:
        raise ScenarioError(path, None, "", "the YAML is nested too deeply") from None


_TOP_KEYS = (
    *("version", "id", "description", "runtime", "entry", "input", "options", "budget"),
    *("llm", "clock", "faults", "expect", "snapshot", "markers"),
)
_START = "a scenario is a mapping of `key: value` lines, starting with `version: 1`"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ID_EXPECTED = "letters, digits, '_', '.' and '-', starting with a letter or digit"
_RUNTIME = re.compile(r"[a-z0-9_-]+")
_RUNTIME_EXPECTED = "lowercase letters, digits, '_' and '-', such as reference"
_DOTTED = r"[^\W\d]\w*(?:\.[^\W\d]\w*)*"
_ENTRY = re.compile(rf"{_DOTTED}:{_DOTTED}")
_ENTRY_EXAMPLE = "entry: my_package.my_loop:build"
_MARKER = re.compile(r"[^\W\d]\w*")
_MARKER_EXPECTED = "a Python identifier, such as slow"


def _scenario(path: Path, root: Node | None, suffix: str) -> Scenario:
    if root is None or (kind(root) == "null" and not root.value):  # nothing, or a bare "---"
        raise NodeError(1, "", "the file is empty", "a mapping with `version` and `entry`", _START)
    if kind(root) != "map":
        raise NodeError(
            1, "", f"expected a mapping at the top level, got {describe(root)}", hint=_START
        )
    lines: dict[str, int] = {}
    index_tree(root, "", lines)
    _check_version_first(root)
    f = mapping(
        root,
        "",
        allowed=_TOP_KEYS,
        required=("version", "entry"),
        examples={"version": "version: 1", "entry": _ENTRY_EXAMPLE},
    )
    return Scenario(
        path=path,
        id=f.opt("id", _id) or _default_id(path, suffix),
        version=f.require("version", _version),
        description=f.get("description", string, ""),
        runtime=f.get("runtime", _runtime, "reference"),
        entry=f.require("entry", _entry),
        entry_line=lines["entry"],
        input=f.get("input", plain, None),
        options=f.get("options", plain_mapping, {}),
        budget=f.opt("budget", _budget) or Budget(),  # defaults built only when needed
        llm=f.opt("llm", _llm) or LLMSpec(),
        clock=f.opt("clock", _clock) or ClockSpec(),
        faults=f.get("faults", list_of(_fault, "a list of faults"), ()),
        expect=f.opt("expect", _expect) or Expectation(),
        snapshot=f.get("snapshot", boolean, True),
        markers=f.get("markers", _markers, ()),
        lines=lines,
    )


def _check_version_first(root: Node) -> None:
    """A file for another format version gets that said, rather than its unknown keys."""
    for key_node, value_node in root.value:
        if key_node.value == "version":
            _version(value_node, "version")


def _version(node: Node, key: str) -> int:
    hint = f"this pytest-loom reads version {SCENARIO_VERSION}"
    if kind(node) != "int" or scalar(node, key) != SCENARIO_VERSION:
        raise type_error(node, key, f"the integer {SCENARIO_VERSION}", hint)
    return SCENARIO_VERSION


def _default_id(path: Path, suffix: str) -> str:
    name = path.name.removesuffix(suffix) if path.name.endswith(suffix) else path.stem
    if not _ID.fullmatch(name):
        raise NodeError(
            None,
            "id",
            f"the file name gives the id {name!r}, which is not a valid id",
            _ID_EXPECTED,
            "rename the file, or set `id:` in it",
        )
    return name


def _entry(node: Node, key: str) -> str:
    return string(
        node,
        key,
        pattern=_ENTRY,
        invalid="is not an entry point",
        expected="module.path:callable",
        hint=f"for example `{_ENTRY_EXAMPLE}`",
    )


_id = partial(string, pattern=_ID, invalid="is not a valid id", expected=_ID_EXPECTED)
_runtime = partial(
    string, pattern=_RUNTIME, invalid="is not a runtime name", expected=_RUNTIME_EXPECTED
)
_markers = list_of(
    partial(string, pattern=_MARKER, invalid="is not a marker name", expected=_MARKER_EXPECTED),
    "a list of marker names",
)
_count = partial(integer, minimum=0)
_positive_count = partial(integer, minimum=1)
_usd = partial(number, minimum=0)


# --- budget, clock ----------------------------------------------------------------------------


def _budget(node: Node, key: str) -> Budget:
    f = mapping(node, key, allowed=[limit.value for limit in BudgetLimit])
    return Budget(
        usd=f.opt("usd", _budget_usd),
        iterations=f.opt("iterations", _positive_count),
        tokens=f.opt("tokens", _positive_count),
        wall_clock=f.opt("wall_clock", _wall_clock),
    )


_budget_usd = partial(number, minimum=0, exclusive=True)
_wall_clock = partial(duration, positive=True)


def _clock(node: Node, key: str) -> ClockSpec:
    f = mapping(node, key, allowed=("start", "step"))
    return ClockSpec(
        start=f.get("start", timestamp, DEFAULT_CLOCK_START),
        step_s=f.get("step", duration, 0.0),
    )


# --- the LLM script ---------------------------------------------------------------------------

_TURN_KEYS = ("text", "tool_calls", "usage", "latency", "cost", "error", "model", "match")
_REPLY_KEYS = _TURN_KEYS[:-1]
_RULE_EXAMPLES = {"match": 'match: {contains: "summarise"}', "reply": 'reply: {text: "..."}'}


def _llm(node: Node, key: str) -> LLMSpec:
    f = mapping(
        node,
        key,
        allowed=(
            *("model", "strict", "allow_unused", "latency", "pricing", "turns", "rules"),
            "cassette",
        ),
    )
    ids = itertools.count(1)  # tool-call ids are numbered across turns, then rules
    turns = f.get("turns", list_of(partial(_turn, ids=ids), "a list of turns"), ())
    rules = f.get("rules", list_of(partial(_rule, ids=ids), "a list of rules"), ())
    return LLMSpec(
        model=f.opt("model", nonempty_string),
        strict=f.get("strict", boolean, True),
        allow_unused=f.get("allow_unused", boolean, False),
        latency_s=f.get("latency", duration, 0.0),
        pricing=f.get("pricing", _pricing, {}),
        turns=turns,
        rules=rules,
        cassette=f.opt("cassette", _cassette),
    )


def _cassette(node: Node, key: str) -> CassetteSpec:
    """``cassette: path``, or ``cassette: {path: ..., ignore: [{regex: ..., role: ...}]}``."""
    if kind(node) == "str":
        return CassetteSpec(path=nonempty_string(node, key))
    f = mapping(
        node,
        key,
        allowed=("path", "ignore"),
        required=("path",),
        examples={"path": "path: cassettes/run.yaml"},
        type_hint="a cassette is a path, or a mapping with `path` and `ignore`",
    )
    rules = list_of(_ignore_rule, "a list of ignore rules, such as `- {regex: 'id-\\d+'}`")
    return CassetteSpec(path=f.require("path", nonempty_string), ignore=f.get("ignore", rules, ()))


def _ignore_rule(node: Node, key: str) -> IgnoreRule:
    f = mapping(
        node,
        key,
        allowed=("regex", "role"),
        required=("regex",),
        examples={"regex": 'regex: "Today is \\S+"'},
    )
    return IgnoreRule(regex=f.require("regex", regex), role=f.opt("role", nonempty_string))


def _pricing(node: Node, key: str) -> dict[str, Price]:
    return keyed(node, key, _price, what="a mapping of model name to {input, output}")


def _price(node: Node, key: str) -> Price:
    f = mapping(
        node,
        key,
        allowed=("input", "output"),
        required=("input", "output"),
        examples={"input": "input: 2.5", "output": "output: 10.0"},
    )
    return Price(input=f.require("input", _usd), output=f.require("output", _usd))


def _turn(node: Node, key: str, *, ids: Iterator[int], reply: bool = False) -> Turn:
    f = mapping(
        node,
        key,
        allowed=_REPLY_KEYS if reply else _TURN_KEYS,
        key_hints={"match": "a rule's `match` goes beside `reply`, not inside it"},
        type_hint='a turn is a mapping, such as `{text: "..."}`',
    )
    calls = list_of(partial(_tool_call, ids=ids), "a list of tool calls")
    tool_calls = f.get("tool_calls", calls, ())
    input_tokens, output_tokens = f.get("usage", _usage, (0, 0))
    return Turn(
        text=f.get("text", string, ""),
        tool_calls=tool_calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_s=f.opt("latency", duration),
        cost_usd=f.opt("cost", _usd),
        error=f.opt("error", _llm_error_kind),
        model=f.opt("model", nonempty_string),
        match=f.opt("match", _match),
    )


def _tool_call(node: Node, key: str, *, ids: Iterator[int]) -> ToolCallRequest:
    number_in_script = next(ids)
    f = mapping(
        node,
        key,
        allowed=("name", "args", "id"),
        required=("name",),
        examples={"name": "name: search"},
    )
    return ToolCallRequest(
        name=f.require("name", nonempty_string),
        args=f.get("args", plain_mapping, {}),
        id=f.get("id", nonempty_string, f"call_{number_in_script}"),
    )


def _usage(node: Node, key: str) -> tuple[int, int]:
    f = mapping(node, key, allowed=("input", "output"))
    return f.get("input", _count, 0), f.get("output", _count, 0)


def _llm_error_kind(node: Node, key: str) -> LLMErrorKind:
    return LLMErrorKind(choice(node, key, [k.value for k in LLMErrorKind]))


def _match(node: Node, key: str) -> Match:
    f = mapping(node, key, allowed=("model", "contains", "regex", "tools"))
    return Match(
        model=f.opt("model", nonempty_string),
        contains=f.opt("contains", string),
        regex=f.opt("regex", regex),
        tools=f.get("tools", string_list, ()),
    )


def _rule(node: Node, key: str, *, ids: Iterator[int]) -> Rule:
    f = mapping(
        node,
        key,
        allowed=("match", "reply", "times"),
        required=("match", "reply"),
        examples=_RULE_EXAMPLES,
    )
    match = f.require("match", _match)
    if match.is_empty:
        match_node = f.values["match"]
        raise NodeError(
            line_of(match_node),
            f.path("match"),
            "a rule's match must not be empty (it would answer every request)",
            "at least one of " + ", ".join(("contains", "model", "regex", "tools")),
        )
    return Rule(
        match=match,
        reply=f.require("reply", partial(_turn, ids=ids, reply=True)),
        times=f.opt("times", _positive_count),
    )


# --- faults -----------------------------------------------------------------------------------


def _raise_fault(node: Node, key: str) -> RaiseFault:
    f = mapping(
        node,
        key,
        allowed=("step", "error", "message"),
        required=("step",),
        examples={"step": "step: 3"},
    )
    return RaiseFault(
        step=f.require("step", _positive_count),
        error=f.get("error", _exception_name, "RuntimeError"),
        message=f.get("message", string, "injected fault"),
    )


def _raisable(cls: type[Exception]) -> bool:
    try:
        cls("injected fault")
    except TypeError:
        return False
    return True


_BUILTIN_EXCEPTIONS = sorted(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, Exception) and _raisable(value)
)


def _exception_name(node: Node, key: str) -> str:
    name = string(node, key)
    if name not in _BUILTIN_EXCEPTIONS:
        raise NodeError(
            line_of(node),
            key,
            f"{name!r} is not a built-in exception class that takes a message",
            "the name of a built-in subclass of Exception, such as ValueError or RuntimeError",
            did_you_mean(name, _BUILTIN_EXCEPTIONS),
        )
    return name


def _llm_error_fault(node: Node, key: str) -> LLMErrorFault:
    f = mapping(
        node,
        key,
        allowed=("call", "kind"),
        required=("call", "kind"),
        examples={"call": "call: 2", "kind": "kind: rate_limit"},
    )
    return LLMErrorFault(
        call=f.require("call", _positive_count),
        kind=f.require("kind", _llm_error_kind),
    )


def _crash_fault(node: Node, key: str) -> CrashFault:
    f = mapping(
        node, key, allowed=("step", "resume"), required=("step",), examples={"step": "step: 4"}
    )
    return CrashFault(
        step=f.require("step", _positive_count),
        resume=f.get("resume", boolean, True),
    )


def _kill_fault(node: Node, key: str) -> KillFault:
    crash = _crash_fault(node, key)
    return KillFault(step=crash.step, resume=crash.resume)


_FAULT_KINDS: dict[str, Parser[Fault]] = {
    "raise": _raise_fault,
    "llm_error": _llm_error_fault,
    "crash": _crash_fault,
    "kill": _kill_fault,
}


def _fault(node: Node, key: str) -> Fault:
    return one_key(node, key, _FAULT_KINDS, example="- raise: {step: 3}")


# --- expectations -----------------------------------------------------------------------------

_LABEL = re.compile(r"(\w+)(?:\((.*)\))?")
_ERROR_TYPE = re.compile(r"[^\W\d]\w*")
_REASONS = [reason.value for reason in StopReason]
_LIMITS = [limit.value for limit in BudgetLimit]


def _expect(node: Node, key: str) -> Expectation:
    f = mapping(
        node, key, allowed=("stop", "steps", "cost_usd", "tokens", "llm_calls", "invariants")
    )
    return Expectation(
        stop=f.opt("stop", _stop_label),
        steps=f.opt("steps", _count_bound),
        cost_usd=f.opt("cost_usd", _usd_bound),
        tokens=f.opt("tokens", _count_bound),
        llm_calls=f.opt("llm_calls", _count_bound),
        invariants=f.get("invariants", list_of(_invariant, "a list of invariant names"), ()),
    )


def _invariant(node: Node, key: str) -> str:
    from .invariants import NAMES

    name = string(node, key)
    if name not in NAMES:
        raise NodeError(
            line_of(node),
            key,
            f"unknown invariant {name!r}",
            one_of(NAMES),
            did_you_mean(name, NAMES),
        )
    return name


def _stop_label(node: Node, key: str) -> str:
    """``converged``, ``budget_exhausted(usd)``, ``failed(ValueError)``, or a bare reason."""
    label = string(node, key)
    parsed = _LABEL.fullmatch(label)
    if parsed is None:
        expected = "a stop reason, optionally with its argument, such as failed(ValueError)"
        raise NodeError(line_of(node), key, f"{label!r} is not a stop label", expected)
    reason, argument = parsed.groups()
    line = line_of(node)
    if reason not in _REASONS:
        raise NodeError(
            line,
            key,
            f"unknown stop reason {reason!r}",
            one_of(_REASONS),
            did_you_mean(reason, _REASONS),
        )
    if argument is None:
        return label
    if reason == StopReason.BUDGET_EXHAUSTED and argument not in _LIMITS:
        problem = f"unknown budget limit {argument!r}"
        raise NodeError(line, key, problem, one_of(_LIMITS), did_you_mean(argument, _LIMITS))
    if reason == StopReason.FAILED and not _ERROR_TYPE.fullmatch(argument):
        expected = "an exception class name, such as failed(ValueError)"
        hint = "records name the bare class (failed(JSONDecodeError)), not its module"
        raise NodeError(line, key, f"{argument!r} is not an error type name", expected, hint)
    if reason not in (StopReason.BUDGET_EXHAUSTED, StopReason.FAILED):
        hint = "only budget_exhausted(<limit>) and failed(<ErrorType>) take an argument"
        raise NodeError(line, key, f"stop reason {reason!r} takes no argument", reason, hint)
    return label


def _bound(node: Node, key: str, *, integral: bool) -> Bound:
    """An exact value (``5``) or a range (``{min: 1, max: 3}``, either side optional)."""
    value: Parser[float] = _count if integral else _usd
    what = "an integer" if integral else "a number"
    if kind(node) == "map":
        f = mapping(node, key, allowed=("min", "max"))
        low, high = f.opt("min", value), f.opt("max", value)
        if low is None and high is None:
            raise NodeError(
                line_of(node), key, "an empty bound", "min, max or both", "for example `{max: 3}`"
            )
        if low is not None and high is not None and low > high:
            raise NodeError(
                line_of(node), key, f"min ({_num(low)}) is greater than max ({_num(high)})"
            )
        return Bound(low, high)
    if kind(node) in (("int",) if integral else ("int", "float")):
        exact = value(node, key)
        return Bound(exact, exact)
    raise type_error(node, key, f"{what}, or a mapping with min and/or max")


_count_bound = partial(_bound, integral=True)
_usd_bound = partial(_bound, integral=False)
