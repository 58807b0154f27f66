"""A fast composer for the plain YAML that scenario files are written in.

PyYAML's pure-Python composer takes about a millisecond per scenario file, most of what loading
one costs. libyaml is faster but does not accept and report exactly the same things, and a
scenario's errors must read the same on every machine. So :func:`compose_plain` composes the
common case itself: for a document in the subset below it returns the node tree that
``yaml.compose(text, Loader=yaml.SafeLoader)`` returns (the same node classes, tags, values,
styles and start marks; end marks are left out, nothing reads them), and for anything else it
returns ``None`` and the caller asks PyYAML. Everything unusual, and every error, is PyYAML's
own. ``tests/test_plainyaml.py`` checks this on thousands of generated and mangled documents
(and it held on 300,000 more while this was written).

The subset, all else declined:

* printable text with ``\\n`` line breaks (no tabs, ``\\r``, BOM or Unicode line breaks); one
  document, a block mapping (a line starting with ``---``, ``...`` or ``%`` is neither a key, an
  entry nor a comment, so it is declined);
* simple keys: a word of ``A-Za-z0-9_.+/-`` or a one-line quoted string, then ``:``;
* block mappings, block sequences (also unindented under a key), ``- key: value`` items;
* on a key's line: a plain scalar that ends on that line, a one-line quoted scalar (escapes of
  one character only, such as ``\\n``), a one-line flow collection of those, or a bare ``>`` or
  ``|`` block scalar whose lines are all indented alike, with no blank line inside;
* comments outside block scalars.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeAlias

import yaml
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["compose_plain"]

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_NAME = "<unicode string>"  # what PyYAML's reader calls a str it reads
_MAX_DEPTH = 50
_MAX_KEY = 1000  # PyYAML looks no further than 1024 characters back for a simple key

_UNUSUAL = re.compile(  # control characters, tabs, CR, NEL, LS, PS, surrogates, BOM, non-characters
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]"
)
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F)) + b"\n"
_Resolvers: TypeAlias = list[tuple[str, re.Pattern[str]]]
_ESCAPES = yaml.scanner.Scanner.ESCAPE_REPLACEMENTS
_DOUBLE = r'"(?:[^"\\]|\\[0abtnvfre /\\"N_LP])*+"'
_SINGLE = r"'(?:[^']|'')*+'"
_KEY = re.compile(rf"([A-Za-z0-9_][A-Za-z0-9_.+/-]*|{_DOUBLE}|{_SINGLE}):(?: +|$)")
_ESCAPE = re.compile(r"\\(.)")
_QUOTED = re.compile(rf"{_DOUBLE}|{_SINGLE}")
_FLOW_PLAIN = (  # a plain scalar in a flow collection
    r"-?[^\s\-?:,\[\]{}#&*!|>'\"%@`]"
    r"(?:[^\s,\[\]{}#:?'\"]|:(?=[^\s,\[\]{}]))*"
    r"(?: +(?:[^\s,\[\]{}#:?'\"]|:(?=[^\s,\[\]{}]))+)*"
)
_FLOW_SCALAR = rf"(?>{_DOUBLE}|{_SINGLE}|{_FLOW_PLAIN})"
_FLOW_ITEM = re.compile(  # [key: ] then a scalar and the "," "]" or "}" after it, or "[" or "{"
    rf" *(?:({_FLOW_SCALAR}): +)?(?:({_FLOW_SCALAR}) *([,\]}}])|([\[{{]))"
)
_FLOW_NEXT = re.compile(r" *([,\]}])")
_BLOCK_START = re.compile(r"-?[^\s\-?:,\[\]{}#&*!|>'\"%@`]")
_BLOCK_HEADER = re.compile(r"[>|](?: +#.*| *)")
_LINE_END = re.compile(r" +#.*| *")


class _Decline(Exception):
    """The document is outside the subset: PyYAML composes it."""


def compose_plain(text: str) -> Node | None:
    """The node tree of ``text`` if it is in the plain subset, else ``None``."""
    if text.isascii():  # the usual case, checked without a regular expression
        unusual = bool(text.encode("ascii").translate(None, _PRINTABLE_ASCII))
    else:
        unusual = _UNUSUAL.search(text) is not None
    loader = yaml.SafeLoader  # read now: a program may add resolvers to it at any time
    resolvers: dict[str | None, _Resolvers] = loader.yaml_implicit_resolvers
    if unusual or loader.yaml_path_resolvers or None in resolvers:
        return None
    try:
        return _Composer(text, resolvers).document()
    except _Decline:
        return None


def _after_spaces(line: str, at: int) -> int:
    while line.startswith(" ", at):
        at += 1
    return at


def _is_entry(line: str, col: int) -> bool:
    """``-`` at ``col`` starts a block sequence entry (followed by a space or the line end)."""
    return line.startswith("-", col) and line[col + 1 : col + 2] in ("", " ")


class _Composer:
    def __init__(self, text: str, resolvers: Mapping[str | None, _Resolvers]) -> None:
        self.resolvers = resolvers  # first character -> the (tag, pattern) pairs to try, in order
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.buffer = text + "\0"  # the buffer PyYAML's marks point into
        self.i = 0  # the line being composed

    def document(self) -> Node:
        col = self._next_line()
        if col < 0:
            raise _Decline  # empty: PyYAML says so
        root = self._mapping(col, 0)
        if self._next_line() >= 0:
            raise _Decline
        return root

    def _mark(self, line: int, col: int) -> Mark:
        index = self.starts[line] + col
        return Mark(_NAME, index, line, col, self.buffer, index)

    def _next_line(self) -> int:
        """Skip blank and comment lines; the indentation of the next line, or -1 at the end."""
        lines = self.lines
        for i in range(self.i, len(lines)):
            body = lines[i].lstrip(" ")
            if body and body[0] != "#":
                self.i = i
                return len(lines[i]) - len(body)
        self.i = len(lines)
        return -1

    # --- block collections ----------------------------------------------------------------

    def _mapping(self, col: int, depth: int) -> MappingNode:
        """The block mapping whose first key is at ``col`` of the current line."""
        if depth > _MAX_DEPTH:
            raise _Decline
        node = MappingNode(_MAP, [], self._mark(self.i, col), None, flow_style=False)
        while True:
            node.value.append(self._entry(col, depth))
            indent = self._next_line()
            if indent < col:
                return node
            if indent > col:
                raise _Decline

    def _entry(self, col: int, depth: int) -> tuple[Node, Node]:
        i, line = self.i, self.lines[self.i]
        found = _KEY.match(line, col)
        if found is None or found.end(1) - col > _MAX_KEY:
            raise _Decline
        key = self._scalar(i, col, found.group(1))
        at = found.end()
        if at < len(line) and line[at] != "#":
            return key, self._inline(i, line, at, col, depth)
        self.i = i + 1
        indent = self._next_line()
        if indent > col or (indent == col and _is_entry(self.lines[self.i], col)):
            return key, self._block_node(indent, depth + 1, indentless=indent == col)
        empty = self._scalar(i, found.end(1) + 1, "")  # PyYAML marks it just after the colon
        return key, empty

    def _block_node(self, col: int, depth: int, *, indentless: bool) -> Node:
        """The mapping or sequence that starts the current line, at ``col``."""
        if _is_entry(self.lines[self.i], col):
            return self._sequence(col, depth, indentless=indentless)
        return self._mapping(col, depth)

    def _sequence(self, col: int, depth: int, *, indentless: bool) -> SequenceNode:
        if depth > _MAX_DEPTH:
            raise _Decline
        style = None if indentless else False  # as PyYAML's parser sets it
        node = SequenceNode(_SEQ, [], self._mark(self.i, col), None, flow_style=style)
        while True:
            i, line = self.i, self.lines[self.i]
            at = _after_spaces(line, col + 1)
            if at == len(line) or line[at] == "#" or _is_entry(line, at):
                raise _Decline  # an item below its dash, or a nested sequence
            if _KEY.match(line, at):
                node.value.append(self._mapping(at, depth + 1))
            elif line[at] in ">|":
                raise _Decline
            else:
                node.value.append(self._inline(i, line, at, col, depth + 1))
            indent = self._next_line()
            if indent < col:
                return node
            if indent > col:
                raise _Decline
            if not _is_entry(self.lines[self.i], col):
                if indentless:
                    return node
                raise _Decline

    # --- values on the current line -------------------------------------------------------

    def _inline(self, i: int, line: str, at: int, parent: int, depth: int) -> Node:
        """The value at ``line[at:]``, in a collection at column ``parent``; then the next line."""
        first = line[at]
        if first in ">|":
            return self._block_scalar(i, line, at, parent)
        if first in "{[":
            node, end = self._flow(i, line, at, depth)
        elif first in "\"'":
            quoted = _QUOTED.match(line, at)
            if quoted is None:
                raise _Decline
            node, end = self._scalar(i, at, quoted.group()), quoted.end()
        else:
            value = line[at:].split(" #", 1)[0].rstrip(" ")
            if not _BLOCK_START.match(value) or ": " in value or value.endswith(":"):
                raise _Decline
            node, end = self._scalar(i, at, value), len(line)
        if not _LINE_END.fullmatch(line, end):
            raise _Decline
        self.i = i + 1
        return node

    def _scalar(self, i: int, col: int, token: str) -> ScalarNode:
        """A plain or quoted scalar token (quotes included) starting at ``col`` of line ``i``."""
        index = self.starts[i] + col
        mark = Mark(_NAME, index, i, col, self.buffer, index)
        first = token[:1]
        if first == '"':
            value = token[1:-1]
            if "\\" in value:
                value = _ESCAPE.sub(lambda escape: _ESCAPES[escape[1]], value)
            return ScalarNode(_STR, value, mark, None, '"')
        if first == "'":
            return ScalarNode(_STR, token[1:-1].replace("''", "'"), mark, None, "'")
        for tag, pattern in self.resolvers.get(first, ()):  # as SafeLoader resolves a plain one
            if pattern.match(token):
                return ScalarNode(tag, token, mark)
        return ScalarNode(_STR, token, mark)

    def _block_scalar(self, i: int, line: str, at: int, parent: int) -> ScalarNode:
        """A ``>`` or ``|`` scalar with clip chomping, its lines all indented alike."""
        if not _BLOCK_HEADER.fullmatch(line, at):
            raise _Decline
        lines = self.lines
        j = i + 1
        body = lines[j].lstrip(" ") if j < len(lines) else ""
        indent = len(lines[j]) - len(body) if body else 0
        if indent <= parent:
            raise _Decline  # empty, or starts with a blank line
        parts: list[str] = []
        blank, last = False, j
        while j < len(lines):
            body = lines[j].lstrip(" ")
            spaces = len(lines[j]) - len(body)
            if not body:
                if spaces >= indent:
                    raise _Decline  # a line of spaces only, which would be content
                blank = True
            elif spaces < indent:
                break
            elif spaces > indent or blank:
                raise _Decline
            else:
                parts.append(body)
                last = j
            j += 1
        value = (" " if line[at] == ">" else "\n").join(parts)
        if last + 1 < len(lines):
            value += "\n"  # the last line's break, which clip chomping keeps
        self.i = j
        return ScalarNode(_STR, value, self._mark(i, at), None, line[at])

    # --- flow collections -----------------------------------------------------------------

    def _flow(self, i: int, line: str, at: int, depth: int) -> tuple[Node, int]:
        """The flow collection opening at ``line[at]``, and where it ends; all on one line."""
        if depth > _MAX_DEPTH:
            raise _Decline
        index = self.starts[i] + at
        mark = Mark(_NAME, index, i, at, self.buffer, index)
        node: MappingNode | SequenceNode
        if line[at] == "{":
            node, close = MappingNode(_MAP, [], mark, None, flow_style=True), "}"
        else:
            node, close = SequenceNode(_SEQ, [], mark, None, flow_style=True), "]"
        found = _FLOW_NEXT.match(line, at + 1)
        if found is not None:  # empty, or a comma first
            if found[1] != close:
                raise _Decline
            return node, found.end()
        items: list[object] = node.value
        at += 1
        while True:
            found = _FLOW_ITEM.match(line, at)
            if found is None or (found[1] is None) == (close == "}"):
                raise _Decline  # nothing readable, a trailing comma, a key missing or out of place
            value: Node
            if found[4]:  # a collection inside
                value, at = self._flow(i, line, found.start(4), depth + 1)
                found_next = _FLOW_NEXT.match(line, at)
                if found_next is None:
                    raise _Decline
                after, at = found_next[1], found_next.end()
            else:
                value = self._scalar(i, found.start(2), found[2])
                after, at = found[3], found.end()
            if found[1]:
                if found.end(1) - found.start(1) > _MAX_KEY:
                    raise _Decline
                items.append((self._scalar(i, found.start(1), found[1]), value))
            else:
                items.append(value)
            if after != ",":
                if after != close:
                    raise _Decline
                return node, at
