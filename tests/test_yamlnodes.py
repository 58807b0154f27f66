"""Strict node reading keeps PyYAML's values: every scalar reads as ``yaml.safe_load`` reads it.

:func:`pytest_loom._yamlnodes.scalar` reads the common plain values (strings, decimal integers,
nulls) itself and leaves the rest to PyYAML's constructor; the values must be the same either
way, and whatever PyYAML cannot read is a :class:`NodeError` naming the line and key.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from pytest_loom._yamlnodes import NodeError, index_tree, kind, scalar

PLAIN_VALUES = [
    *("0", "00", "07", "010", "0o17", "0x1F", "0b101", "1", "42", "-1", "+1", "-0", "1_000"),
    *("190:20:30", "12345678901234567890", "3.", ".5", "1e3", "1.5e3", "-.inf", ".nan", "1.2.3"),
    *("~", "null", "Null", "NULL", "", "true", "yes", "No", "on", "OFF", "y", "n", "False"),
    *("2026-01-01", "2026-01-01T10:00:00Z", "hello", "a b", "٣"),
]
TAGGED_VALUES = [
    *('!!int "12"', '!!int "012"', '!!int "٣"', '!!int "²"', "!!int nope", "!!float 1"),
    *("!!float nope", "!!bool yes", "!!bool maybe", "!!null x", "!!str 12", "!!timestamp x"),
]


def composed(text: str) -> MappingNode:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    assert isinstance(root, MappingNode)
    return root


def value_node(text: str) -> Node:
    node: Node = composed(f"key: {text}\n").value[0][1]
    return node


def same_value(ours: Any, theirs: Any) -> bool:
    if isinstance(theirs, float) and math.isnan(theirs):
        return isinstance(ours, float) and math.isnan(ours)
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("text", PLAIN_VALUES + TAGGED_VALUES)
def test_scalars_read_as_pyyaml_reads_them(text: str) -> None:
    try:
        theirs = yaml.safe_load(f"key: {text}\n")["key"]
    except (yaml.YAMLError, ValueError, KeyError, AttributeError):
        with pytest.raises(NodeError) as info:
            scalar(value_node(text), "key")
        assert (info.value.line, info.value.key) == (1, "key")
        word = text.split()[-1].strip('"')
        assert info.value.problem.startswith(f"cannot read {word!r} as ")
        return
    assert same_value(scalar(value_node(text), "key"), theirs)


def test_kind_names_standard_and_other_tags() -> None:
    assert [kind(value_node(text)) for text in ("1", "a", "~", "[1]", "{a: 1}")] == [
        *("int", "str", "null", "seq", "map"),
    ]
    assert kind(value_node("!custom 1")) == "!custom"
    assert kind(value_node("!!python/name:os.sep x")) == "python/name:os.sep"


def test_index_records_every_keypath_and_keeps_sibling_aliases() -> None:
    text = "a: &x {b: 1}\nc: [*x, *x]\nd:\n  - e: 2\n"
    lines: dict[str, int] = {}
    index_tree(composed(text), "", lines)
    assert lines == {  # an alias is where its anchor is
        **{"a": 1, "a.b": 1, "c": 2, "c[0]": 1, "c[0].b": 1, "c[1]": 1, "c[1].b": 1},
        **{"d": 3, "d[0]": 4, "d[0].e": 4},
    }


def test_index_rejects_an_alias_inside_itself() -> None:
    with pytest.raises(NodeError) as info:
        index_tree(composed("a: &x [1, *x]\n"), "", {})
    assert (info.value.line, info.value.key) == (1, "a[1]")
    assert info.value.problem == "an alias refers to a value that contains it"


def test_a_collection_tagged_as_a_string_is_not_taken_for_a_key() -> None:
    root = composed("? !!str [a]\n: 1\n")
    assert not isinstance(root.value[0][0], ScalarNode)
    with pytest.raises(NodeError) as info:
        index_tree(root, "", {})
    assert info.value.problem == "a key must be a plain scalar, not a collection"
