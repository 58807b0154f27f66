"""The fast composer gives PyYAML's own node tree, or declines: checked on generated documents.

``compose_plain`` may only return a tree when ``yaml.compose`` (SafeLoader) composes the same
text into the same tree: node classes, tags, values, styles and start marks. These tests
generate documents in and around the subset it accepts (and mangle real scenario files), and
compare. Scenario loading is then compared end to end, with and without the fast path.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

import pytest_loom._yamlnodes
from pytest_loom._plainyaml import compose_plain
from pytest_loom.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIO_FILES = sorted(
    path for base in ("scenarios", "examples") for path in (REPO / base).rglob("*.loom.yaml")
)

SCALARS = [
    *("a", "hello world", "x y  z", "1", "-1", "+1", "0", "00", "-0", "3.", "1.2.3", ".5"),
    *("0x1F", "0o17", "0b101", "1_000", "1e3", "1.5e3", ".inf", "-.inf", ".nan", "12:30:00"),
    *("190:20:30", "~", "null", "Null", "NULL", "true", "yes", "No", "on", "OFF", "y", "n"),
    *("False", "FALSE", "fAlse", "2026-01-01", "2026-01-01T10:00:00Z", "2026-1-1 1:00:00 +02"),
    *("<<", "=", "a:b", "a: b", "a:", "a :b", "http://x.y/z", "a #b", "a#b", "-x", "- x", "-"),
    *("?x", "? x", ":x", "é", "a\xa0b", "a'b", 'a"b', "a,b", "a]b", "a}b", "a{b", "1:2"),
    *("'q'", "'it''s'", "'a'''", "''", '""', '"dq"', '"a\\nb"', '"a\\"b"', '"\\x41"', '"\\q"'),
    *('"\\u00e9"', '"\\\\"', '"\\ "', "[1, 2]", "{a: 1}", "[]", "{}", "[ ]", "{ }", "[a, [b]]"),
    *("{a: {b: c}}", "{a: b, c: d}", "{a: b , c: d}", "[a,]", "{a: }", "{a}", "[a: b]", "{a:b}"),
    *('{"a":b}', '{"a": b}', "{a: 2026-01-01T10:00:00Z}", "[a, 'b', \"c\"]", "[a b, c]", "[a"),
    *("{a: [1, {b: c}]}", "[-1, -x, - x]", "{? a: b}", "[a, b]x", "{a: b} # c", "[a]#c"),
    *(">", "|", "|-", ">+", "|2", "> # c", "|  ", "&x a", "*x", "!!str 1", "!t x", "%x", "@x"),
    *("`x", "...", "---"),
]
KEYS = [
    *("a", "b", "key", "my-model", "gpt-4o", "1", "true", "null", "x.y", "a/b", "+x", "_"),
    *('"q k"', "'s k'", "'it''s'", '"a\\tb"', "<<", "-k", "a b", "k:", "2026-01-01", "~", "? k"),
    *("[k]", "{k: v}", "é", "&a k", "!t k", "k#", "k #"),
]
BLOCK_LINES = ["text", "more text ", "# not a comment", "a: b", "- x", "", "  ", "'q'"]
MANGLES = [
    *" \n:-[]{},'\"&*!#|>?%@`0123.xyz\t~",
    *("<<", "!!", "yes", "null", "---", "...", " #", ": ", "- ", "\n  ", "\n    ", "\n- "),
    *("\\", "\\n", "\r", "\r\n", "\xa0", "é", "\x85", "\u2028", "\ufeff", "\x00", "  "),
]


def same_tree(ours: Node, theirs: Node, path: str = "") -> str | None:
    """Where two node trees differ, or ``None`` if they are the same in everything compared."""
    if type(ours) is not type(theirs) or ours.tag != theirs.tag:
        return f"{path}: {type(ours).__name__} {ours.tag} != {type(theirs).__name__} {theirs.tag}"
    a, b = ours.start_mark, theirs.start_mark
    marks = ("name", "index", "line", "column", "buffer", "pointer")
    if [getattr(a, m) for m in marks] != [getattr(b, m) for m in marks]:
        return f"{path}: start mark {a.line}:{a.column} != {b.line}:{b.column}"
    if isinstance(ours, ScalarNode):
        if (ours.value, ours.style) != (theirs.value, theirs.style):
            return f"{path}: {ours.value!r} ({ours.style}) != {theirs.value!r} ({theirs.style})"
        return None
    if ours.flow_style != theirs.flow_style or len(ours.value) != len(theirs.value):
        return f"{path}: flow style or length differ"
    pairs = zip(children(ours), children(theirs), strict=True)
    return next(
        (f for n, (x, y) in enumerate(pairs) if (f := same_tree(x, y, f"{path}/{n}"))), None
    )


def children(node: Node) -> list[Node]:
    """A collection's nodes in order: a mapping's keys and values alternate."""
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value)


GOOD = ("same", "declined")


def verdict(text: str) -> str:
    """``declined``, ``same``, or what went wrong."""
    ours = compose_plain(text)
    if ours is None:
        return "declined"
    try:
        theirs = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return f"accepted what PyYAML rejects: {exc}"
    if theirs is None:
        return "accepted an empty document"
    return f"different tree at {difference}" if (difference := same_tree(ours, theirs)) else "same"


# --- generated documents ----------------------------------------------------------------------


def block_mapping(rng: random.Random, depth: int, indent: int) -> list[str]:
    lines = []
    for _ in range(rng.randint(1, 4)):
        key = " " * indent + rng.choice(KEYS) + ":"
        comment = rng.choice(["", "", "", " # c", "  #c", "#c"])
        roll = rng.random()
        if depth > 3 or roll < 0.5:
            lines.append(f"{key} {rng.choice(SCALARS)}{comment}")
        elif roll < 0.6:
            lines.append(f"{key} {rng.choice(['|', '>', '|-', '> # c', '|  '])}")
            lines += block_text(rng, indent + rng.choice([1, 2, 4]))
        elif roll < 0.8:
            lines.append(key + comment)
            lines += block_mapping(rng, depth + 1, indent + rng.choice([1, 2, 2, 2, 4]))
        else:
            lines.append(key + comment)
            lines += block_sequence(rng, depth + 1, indent + rng.choice([0, 0, 2, 2, 4]))
        if rng.random() < 0.1:
            lines.append(rng.choice(["", "# comment", " " * rng.randint(0, 6) + "# c", "   "]))
    return lines


def block_text(rng: random.Random, indent: int) -> list[str]:
    return [
        " " * (indent + rng.choice([0, 0, 0, 0, 1, 2])) + rng.choice(BLOCK_LINES)
        for _ in range(rng.randint(1, 4))
    ]


def block_sequence(rng: random.Random, depth: int, indent: int) -> list[str]:
    lines = []
    for _ in range(rng.randint(1, 3)):
        dash = " " * indent + "-" + " " * rng.choice([1, 1, 1, 2, 3])
        roll = rng.random()
        if roll < 0.5:
            lines.append(dash + rng.choice(SCALARS))
        elif roll < 0.9:
            first, *rest = block_mapping(rng, depth + 1, len(dash))
            lines += [dash + first[len(dash) :], *rest]
        else:
            lines += [" " * indent + "-", *block_mapping(rng, depth + 1, indent + 2)]
    return lines


def document(rng: random.Random) -> str:
    text = "\n".join(block_mapping(rng, 0, rng.choice([0, 0, 0, 0, 2])))
    return text + rng.choice(["\n", "\n", "", "\n\n", "\n# end\n"])


def mangle(rng: random.Random, text: str) -> str:
    """Insert, delete, indent, dedent, repeat, drop or swap a few characters or lines."""
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        at = rng.randrange(len(text) or 1)
        if roll < 0.35:
            text = text[:at] + rng.choice(MANGLES) + text[at:]
        elif roll < 0.6:
            text = text[:at] + text[at + rng.randint(1, 5) :]
        else:
            lines = text.split("\n")
            k, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            op = rng.randrange(5)
            if op == 0:
                lines[k] = " " * rng.randint(1, 3) + lines[k]
            elif op == 1:
                lines[k] = lines[k][rng.randint(1, 3) :]
            elif op == 2:
                lines.insert(k, lines[k])
            elif op == 3:
                del lines[k]
            else:
                lines[k], lines[j] = lines[j], lines[k]
            text = "\n".join(lines)
    return text


def documents(seed: int, count: int) -> Iterator[str]:
    """Generated documents, some mangled, and mangled scenario files: ``count`` in all."""
    rng = random.Random(seed)
    seeds = [path.read_text(encoding="utf-8") for path in SCENARIO_FILES]
    for _ in range(count):
        if rng.random() < 0.5:
            text = document(rng)
            yield mangle(rng, text) if rng.random() < 0.3 else text
        else:
            yield mangle(rng, rng.choice(seeds))


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_accepted_documents_compose_as_pyyaml_does(seed: int) -> None:
    outcomes = {text: verdict(text) for text in documents(seed, 1_500)}
    wrong = {text: outcome for text, outcome in outcomes.items() if outcome not in GOOD}
    assert not wrong, list(wrong.items())[:3]
    assert list(outcomes.values()).count("same") > 200  # the subset is exercised, not declined


def test_most_repo_scenario_files_take_the_fast_path() -> None:
    outcomes = [verdict(path.read_text(encoding="utf-8")) for path in SCENARIO_FILES]
    assert set(outcomes) <= set(GOOD)
    assert outcomes.count("same") >= 0.8 * len(SCENARIO_FILES) > 0


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty: PyYAML says None
        "a: 1\n---\nb: 2\n",  # two documents
        "- a\n- b\n",  # not a mapping at the top
        "a:\n\tb: 1\n",  # tab
        "a: 1\r\nb: 2\r\n",  # CR
        "a: &x 1\nb: *x\n",  # anchor, alias
        "a: !!str 1\n",  # tag
        "? a\n: 1\n",  # complex key
        "a: one\n  two\n",  # multi-line plain scalar
        'a: "one\n  two"\n',  # multi-line quoted scalar
        "a: [1,\n  2]\n",  # multi-line flow collection
        "a: |-\n  x\n",  # chomping indicator
        "a: >\n  x\n\n  y\n",  # blank line in a block scalar
        "a: >\n  x\n    y\n",  # more-indented block scalar line
        'a: "\\x41"\n',  # escape outside the plain set
        "a b: 1\n",  # key with a space
        "a: b: c\n",  # mapping values not allowed here
        "a: [b,]\n",  # trailing comma
    ],
)
def test_unusual_documents_are_left_to_pyyaml(text: str) -> None:
    assert compose_plain(text) is None


def test_values_as_pyyaml_reads_them() -> None:
    text = (
        "a: 'it''s'\n"
        'b: "tab\\tand \\"quote\\""\n'
        "c: >\n  folded\n  text\n"
        "d: |\n  literal\n  text\n"
        "e:\n- x\n- y: 1\n  z: [1, {w: 2026-01-01T00:00:00Z}]\n"
        "f: # nothing\n"
    )
    assert verdict(text) == "same"
    assert yaml.safe_load(text) == {
        "a": "it's",
        "b": 'tab\tand "quote"',
        "c": "folded text\n",
        "d": "literal\ntext\n",
        "e": ["x", {"y": 1, "z": [1, {"w": yaml.safe_load("2026-01-01T00:00:00Z")}]}],
        "f": None,
    }


def loaded(path: Path) -> object:
    """What loading a scenario file gives: the scenario, or the error's text and fields."""
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        return (str(exc), exc.line, exc.key, exc.problem, exc.expected, exc.hint)


@pytest.mark.parametrize("seed", range(2))
def test_scenarios_load_the_same_without_the_fast_path(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "case.loom.yaml"
    fast = 0
    for text in documents(100 + seed, 250):
        path.write_text(text, encoding="utf-8")
        with_fast = loaded(path)
        fast += compose_plain(text) is not None
        with monkeypatch.context() as patch:
            patch.setattr(pytest_loom._yamlnodes, "compose_plain", lambda _: None)
            assert loaded(path) == with_fast, text
    assert fast > 25


def test_resolvers_added_to_the_safe_loader_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    resolvers.setdefault("w", []).insert(0, ("tag:example.org,2026:widget", re.compile("widget$")))
    monkeypatch.setattr(yaml.SafeLoader, "yaml_implicit_resolvers", resolvers)
    text = "a: widget\nb: [widget, widgets]\nwidget: 1\n"
    assert verdict(text) == "same"
    root = compose_plain(text)
    assert isinstance(root, MappingNode)
    assert root.value[0][1].tag == "tag:example.org,2026:widget"


def test_a_resolver_for_every_scalar_leaves_the_document_to_pyyaml(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolvers = {**yaml.SafeLoader.yaml_implicit_resolvers, None: [("!any", re.compile("x"))]}
    monkeypatch.setattr(yaml.SafeLoader, "yaml_implicit_resolvers", resolvers)
    assert compose_plain("a: x\n") is None
