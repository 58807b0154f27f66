"""Strict reading of composed YAML nodes, so that every complaint can name its line and key.

``yaml.safe_load`` forgets where each value came from and silently keeps the last of two
duplicate keys. Files people write by hand deserve better, so loaders walk the node tree that
``yaml.compose`` returns instead. Each helper here takes ``(node, keypath)``, checks one kind of
value and returns it as plain Python, or raises :class:`NodeError` (line, dotted key, problem,
what was expected, a hint). The helpers know nothing about what the keys mean: callers decide.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.error import YAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ._plainyaml import compose_plain
from .units import parse_duration

T = TypeVar("T")
D = TypeVar("D")
Parser = Callable[[Node, str], T]
"""Turns one node, found at a dotted keypath, into a value (or raises :class:`NodeError`)."""

_TAG = "tag:yaml.org,2002:"
_KIND_NAMES = {
    "map": "mapping",
    "seq": "sequence",
    "str": "string",
    "null": "null",
    "bool": "boolean",
    "int": "integer",
    "float": "float",
    "timestamp": "timestamp",
}
_SCALAR_KINDS = ("str", "null", "bool", "int", "float", "timestamp")
_STANDARD_KINDS = {_TAG + name: name for name in (*_KIND_NAMES, "merge", "value", "yaml")}
_STR_TAG = _TAG + "str"
_MAX_SHOWN = 40


class NodeError(Exception):
    """One problem with one node; the loader adds the file it came from."""

    def __init__(
        self,
        line: int | None,
        key: str,
        problem: str,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(line, key, problem, expected, hint)
        self.line = line
        self.key = key
        self.problem = problem
        self.expected = expected
        self.hint = hint


# --- describing nodes and keys ----------------------------------------------------------------


def line_of(node: Node) -> int:
    """The 1-based line a node starts on."""
    return int(node.start_mark.line) + 1


def child(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def item(key: str, index: int) -> str:
    return f"{key}[{index}]"


def kind(node: Node) -> str:
    """``str``, ``int``, ``map``, ``seq``, ... for standard tags; the tag itself otherwise."""
    standard = _STANDARD_KINDS.get(node.tag)
    if standard is not None:
        return standard
    tag = str(node.tag)
    return tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def describe(node: Node) -> str:
    """How a value reads in errors: ``string 'abc'``, ``integer 0``, ``null``, ``mapping {...}``."""
    tag = kind(node)
    name = _KIND_NAMES.get(tag, f"!!{tag}" if str(node.tag).startswith(_TAG) else tag)
    if tag == "null":
        return "null"
    if isinstance(node, ScalarNode):
        shown = repr(node.value) if kind(node) == "str" else str(node.value)
    else:
        try:
            shown = repr(plain(node, ""))
        except NodeError:
            return name
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 3] + "..."
    return f"{name} {shown}"


def one_of(choices: Iterable[str]) -> str:
    return "one of " + ", ".join(sorted(choices))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def type_error(node: Node, key: str, expected: str, hint: str | None = None) -> NodeError:
    """``expected <expected>, got <yaml type> <value>``, with a hint for the usual slips."""
    if hint is None and kind(node) == "null":
        hint = "give it a value, or remove the key"
    return NodeError(line_of(node), key, f"expected {expected}, got {describe(node)}", hint=hint)


# --- the whole tree ---------------------------------------------------------------------------


def compose(text: str) -> Node | None:
    """The node tree of one YAML document (``None`` when empty); syntax errors keep their line.

    Plain documents, the usual scenario file, take the fast path of :mod:`._plainyaml`, which
    builds the same tree; PyYAML composes the rest and reports every error.
    """
    node = compose_plain(text)
    if node is not None:
        return node
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = f"invalid YAML: {exc.problem or exc.context}"
        hint = exc.context if exc.problem else None
        if hint and str(exc.problem).startswith("but "):  # "expected X" + "but found Y"
            problem, hint = f"invalid YAML: {exc.context}, {exc.problem}", None
        start = exc.context_mark
        if hint and start is not None and start.line + 1 != line:
            hint += f" started on line {start.line + 1}"
        if "<block end>" in problem:
            hint = "check the indentation of this line" + (f" ({hint})" if hint else "")
        raise NodeError(line, "", problem, hint=hint) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        problem = f"invalid YAML: {exc.reason} (character #x{exc.character:04x})"
        raise NodeError(line, "", problem) from None
    except yaml.YAMLError as exc:
        raise NodeError(None, "", f"invalid YAML: {exc}") from None


def index_tree(node: Node, key: str, lines: dict[str, int]) -> None:
    """Check what applies everywhere and record the line of every keypath into ``lines``.

    Rejects duplicate keys, non-scalar keys, merge keys (``<<``) and aliases that contain
    themselves, so later walks may recurse freely.
    """
    _index(node, key, lines, set())


def _index(node: Node, key: str, lines: dict[str, int], ancestors: set[int]) -> None:
    """Index the collection ``node``; ``ancestors`` holds the ids of the collections around it."""
    if id(node) in ancestors:
        raise NodeError(line_of(node), key, "an alias refers to a value that contains it")
    ancestors.add(id(node))
    if isinstance(node, MappingNode):
        seen: dict[tuple[str, str], int] = {}
        prefix = f"{key}." if key else ""
        for key_node, value_node in node.value:
            text = key_node.tag == _STR_TAG and isinstance(key_node, ScalarNode)  # the usual key
            name = key_node.value if text else _key_text(key_node, key)
            path = prefix + name
            ident = (key_node.tag, name)
            if ident in seen:
                hint = f"it is already set on line {seen[ident]}; keep one"
                raise NodeError(line_of(key_node), path, f"duplicate key {name!r}", hint=hint)
            seen[ident] = lines[path] = key_node.start_mark.line + 1
            if not isinstance(value_node, ScalarNode):
                _index(value_node, path, lines, ancestors)
    elif isinstance(node, SequenceNode):
        for index, sub in enumerate(node.value):
            path = f"{key}[{index}]"
            lines[path] = sub.start_mark.line + 1
            if not isinstance(sub, ScalarNode):
                _index(sub, path, lines, ancestors)
    ancestors.remove(id(node))


def _key_text(key_node: Node, key: str) -> str:
    if not isinstance(key_node, ScalarNode):
        raise NodeError(line_of(key_node), key, "a key must be a plain scalar, not a collection")
    if kind(key_node) == "merge":
        raise NodeError(
            line_of(key_node),
            child(key, "<<"),
            "YAML merge keys (<<) are not supported",
            hint="write the keys out, or reuse a whole value with an alias (*name)",
        )
    return str(key_node.value)


# --- mappings and sequences -------------------------------------------------------------------


class Fields:
    """The checked keys of one YAML mapping; each value is parsed on demand with its keypath."""

    def __init__(self, key: str, values: dict[str, Node]) -> None:
        self.key = key
        self.values = values
        self._prefix = f"{key}." if key else ""

    def path(self, name: str) -> str:
        return self._prefix + name

    def opt(self, name: str, parse: Parser[T]) -> T | None:
        node = self.values.get(name)
        return None if node is None else parse(node, self._prefix + name)

    def get(self, name: str, parse: Parser[T], default: D) -> T | D:
        node = self.values.get(name)
        return default if node is None else parse(node, self._prefix + name)

    def require(self, name: str, parse: Parser[T]) -> T:
        return parse(self.values[name], self._prefix + name)


def mapping(
    node: Node,
    key: str,
    *,
    allowed: Sequence[str],
    required: Sequence[str] = (),
    examples: Mapping[str, str] | None = None,
    key_hints: Mapping[str, str] | None = None,
    type_hint: str | None = None,
) -> Fields:
    """A mapping whose keys are all in ``allowed`` and include every ``required`` one.

    ``examples`` gives a line to suggest for a missing key; ``key_hints`` a hint for a key that
    is known to be misplaced; ``type_hint`` a hint when the value is not a mapping at all.
    """
    if not isinstance(node, MappingNode) or kind(node) != "map":
        raise type_error(node, key, "a mapping", type_hint)
    values: dict[str, Node] = {}
    for key_node, value_node in node.value:
        text = key_node.tag == _STR_TAG and isinstance(key_node, ScalarNode)  # the usual key
        name = key_node.value if text else _key_text(key_node, key)
        if name not in allowed:
            hint = (key_hints or {}).get(name) or did_you_mean(name, allowed)
            raise NodeError(
                line_of(key_node), child(key, name), "unknown key", one_of(allowed), hint
            )
        values[name] = value_node
    for name in required:
        if name not in values:
            example = (examples or {}).get(name)
            raise NodeError(
                line_of(node),
                child(key, name),
                f"missing required key {name!r}",
                hint=f"add a line such as `{example}`" if example else None,
            )
    return Fields(key, values)


def keyed(node: Node, key: str, parse: Parser[T], *, what: str = "a mapping") -> dict[str, T]:
    """A mapping with free-form string keys, each value parsed by ``parse``."""
    if not isinstance(node, MappingNode) or kind(node) != "map":
        raise type_error(node, key, what)
    result: dict[str, T] = {}
    for key_node, value_node in node.value:
        name = _key_text(key_node, key)
        if kind(key_node) != "str":
            raise type_error(key_node, child(key, name), "a string key", f'quote it: "{name}"')
        result[name] = parse(value_node, child(key, name))
    return result


def sequence(node: Node, key: str, parse: Parser[T], *, what: str = "a list") -> tuple[T, ...]:
    """A list, each item parsed by ``parse`` with the keypath ``key[index]``."""
    if not isinstance(node, SequenceNode) or kind(node) != "seq":
        raise type_error(node, key, what)
    return tuple(parse(sub, item(key, index)) for index, sub in enumerate(node.value))


def list_of(parse: Parser[T], what: str) -> Parser[tuple[T, ...]]:
    """A parser for a list of what ``parse`` reads; ``what`` names it in type errors."""

    def parse_list(node: Node, key: str) -> tuple[T, ...]:
        return sequence(node, key, parse, what=what)

    return parse_list


def one_key(node: Node, key: str, kinds: Mapping[str, Parser[T]], *, example: str) -> T:
    """A mapping with exactly one of the keys in ``kinds``, whose parser reads its value."""
    expected = "exactly one of " + ", ".join(sorted(kinds))
    f = mapping(node, key, allowed=tuple(kinds), type_hint=f"for example `{example}`")
    names = list(f.values)
    if not names:
        raise NodeError(
            line_of(node), key, "empty: no kind given", expected, f"for example `{example}`"
        )
    if len(names) > 1:
        problem = f"one item, {len(names)} kinds: {', '.join(names)}"
        raise NodeError(line_of(node), key, problem, expected, "write each as its own list item")
    return f.require(names[0], kinds[names[0]])


# --- scalars ----------------------------------------------------------------------------------


def scalar(node: Node, key: str) -> Any:
    """The Python value of a scalar with a standard tag (timestamps stay ``date``/``datetime``)."""
    if not isinstance(node, ScalarNode):
        raise type_error(node, key, "a single value")
    tag = kind(node)
    value = str(node.value)
    if tag == "str":
        return value
    if tag == "int" and value.isdigit() and value.isascii() and (value[0] != "0" or value == "0"):
        return int(value)  # a plain decimal, as SafeConstructor reads it
    if tag == "null":
        return None
    if tag not in _SCALAR_KINDS:
        raise NodeError(
            line_of(node),
            key,
            f"unsupported YAML tag {node.tag!r}",
            expected="plain values: strings, numbers, booleans, null, dates",
        )
    try:
        return SafeConstructor().construct_object(node)
    except KeyError:  # a `!!bool` tag on a word that is not a boolean
        words = ", ".join(SafeConstructor.bool_values)
        problem = f"cannot read {value!r} as boolean: not one of {words}"
        raise NodeError(line_of(node), key, problem) from None
    except AttributeError:  # a `!!timestamp` tag on text that is not a date
        problem = f"cannot read {value!r} as timestamp: not an ISO 8601 date or date-time"
        raise NodeError(line_of(node), key, problem) from None
    except (YAMLError, ValueError, TypeError, OverflowError) as exc:
        problem = f"cannot read {value!r} as {_KIND_NAMES[tag]}: {exc}"
        raise NodeError(line_of(node), key, problem) from None


def timestamp(node: Node, key: str) -> datetime:
    """An ISO 8601 date-time or date, as an aware ``datetime`` in UTC (naive means UTC)."""
    expected = "an ISO 8601 date-time such as 2026-01-01T00:00:00Z"
    if kind(node) == "timestamp":
        value = scalar(node, key)
    elif kind(node) == "str":
        try:
            value = datetime.fromisoformat(str(node.value))
        except ValueError:
            problem = f"{node.value!r} is not a date-time"
            raise NodeError(line_of(node), key, problem, expected) from None
    else:
        raise type_error(node, key, expected)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def plain(node: Node, key: str) -> Any:
    """Any value as plain Python: dict, list, str, int, float, bool, None (dates as ISO text)."""
    if isinstance(node, MappingNode) and kind(node) == "map":
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            name = _key_text(key_node, key)
            result[plain(key_node, child(key, name))] = plain(value_node, child(key, name))
        return result
    if isinstance(node, SequenceNode) and kind(node) == "seq":
        return [plain(sub, item(key, index)) for index, sub in enumerate(node.value)]
    if not isinstance(node, ScalarNode):
        raise NodeError(line_of(node), key, f"unsupported YAML tag {node.tag!r}")
    value = scalar(node, key)
    return value.isoformat() if isinstance(value, date) else value


def plain_mapping(node: Node, key: str) -> dict[str, Any]:
    """A free-form mapping with string keys, converted with :func:`plain`."""
    return keyed(node, key, plain)


def string(
    node: Node,
    key: str,
    *,
    pattern: re.Pattern[str] | None = None,
    invalid: str = "is not valid here",
    expected: str | None = None,
    hint: str | None = None,
) -> str:
    """A string; with ``pattern``, one matching it in full (else ``'value' <invalid>``, with
    ``expected`` and ``hint``)."""
    if kind(node) != "str" or not isinstance(node, ScalarNode):
        quote = f'quote it to make it text: "{node.value}"'
        scalar_slip = isinstance(node, ScalarNode) and kind(node) in _SCALAR_KINDS[2:]
        raise type_error(node, key, "a string", quote if scalar_slip else None)
    value = str(node.value)
    if pattern is not None and not pattern.fullmatch(value):
        raise NodeError(line_of(node), key, f"{value!r} {invalid}", expected, hint)
    return value


def regex(node: Node, key: str) -> str:
    """A string that compiles as a Python regular expression."""
    value = string(node, key)
    try:
        re.compile(value)
    except re.error as exc:
        raise NodeError(line_of(node), key, f"not a valid regular expression: {exc}") from None
    return value


def nonempty_string(node: Node, key: str) -> str:
    value = string(node, key)
    if not value:
        raise NodeError(line_of(node), key, "must not be empty")
    return value


def string_list(node: Node, key: str) -> tuple[str, ...]:
    return sequence(node, key, nonempty_string, what="a list of strings")


def boolean(node: Node, key: str) -> bool:
    if kind(node) != "bool":
        raise type_error(node, key, "true or false")
    return bool(scalar(node, key))


def integer(node: Node, key: str, *, minimum: int | None = None) -> int:
    """A whole number (``true`` and ``1.0`` are not), at least ``minimum``."""
    expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    if kind(node) != "int":
        raise type_error(node, key, expected)
    value = int(scalar(node, key))
    if minimum is not None and value < minimum:
        raise type_error(node, key, expected)
    return value


def number(node: Node, key: str, *, minimum: float | None = None, exclusive: bool = False) -> float:
    """A finite int or float, ``>= minimum`` (``> minimum`` when ``exclusive``), as a ``float``.

    Always a float, so ``usd: 1`` and ``usd: 1.0`` serialise alike in records and snapshots.
    """
    expected = "a number"
    if minimum is not None:
        expected += f" {'>' if exclusive else '>='} {minimum:g}"
    if kind(node) not in ("int", "float"):
        raise type_error(node, key, expected)
    try:
        value = float(scalar(node, key))
    except OverflowError:
        value = math.inf
    too_small = minimum is not None and (value <= minimum if exclusive else value < minimum)
    if not math.isfinite(value) or too_small:
        raise type_error(node, key, expected)
    return value


def duration(node: Node, key: str, *, positive: bool = False) -> float:
    """Seconds, from a number or text such as ``"90s"``, ``"10m"``, ``"1h30m"``."""
    if kind(node) not in ("int", "float", "str"):
        raise type_error(node, key, "a duration such as 90, '90s', '10m' or '1h30m'")
    try:
        seconds = parse_duration(scalar(node, key))
    except ValueError as exc:
        raise NodeError(line_of(node), key, str(exc)) from None
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise type_error(node, key, "a finite duration")
    if positive and seconds == 0:
        raise NodeError(line_of(node), key, "must be longer than 0 seconds")
    return seconds


def choice(node: Node, key: str, choices: Sequence[str]) -> str:
    """One of ``choices``; anything else lists them, with a did-you-mean when one is close."""
    value = string(node, key)
    if value not in choices:
        raise NodeError(
            line_of(node),
            key,
            f"unknown value {value!r}",
            one_of(choices),
            did_you_mean(value, choices),
        )
    return value
