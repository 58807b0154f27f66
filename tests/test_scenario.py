"""Scenario files: every field parsed, every default filled, every error pointing at its line."""

from __future__ import annotations

import json
import pickle
import random
import re
import textwrap
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import pytest_loom.scenario as scenario_module
from pytest_loom.budget import Budget
from pytest_loom.record import ToolCallRequest
from pytest_loom.scenario import (
    DEFAULT_CLOCK_START,
    Bound,
    ClockSpec,
    CrashFault,
    Expectation,
    LLMErrorFault,
    LLMSpec,
    RaiseFault,
    Scenario,
    ScenarioError,
    load_scenario,
)
from pytest_loom.script import LLMErrorKind, Match, Price, Rule, Turn
from pytest_loom.units import parse_duration

SCHEMA_PATH = Path(scenario_module.__file__).with_name("scenario.schema.json")
HEAD = "version: 1\nentry: my_package.my_loop:build\n"


def write(tmp_path: Path, text: str, name: str = "case.loom.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, name: str = "case.loom.yaml") -> Scenario:
    return load_scenario(write(tmp_path, text, name))


def error(tmp_path: Path, text: str, name: str = "case.loom.yaml") -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load(tmp_path, text, name)
    return info.value


FULL = """\
version: 1
id: refine-converges
description: Refines a draft until it converges.
runtime: reference
entry: examples.refine.loop:build
input:
  draft: hello
  when: 2026-02-03
  seen: [1, 2.5, true, null]
options: {max_rounds: 3, style: {tone: terse}}
budget:
  usd: 0.5
  iterations: 10
  tokens: 20000
  wall_clock: 10m
llm:
  model: gpt-4o
  strict: false
  allow_unused: true
  latency: 2s
  pricing:
    my-model: {input: 1.0, output: 2}
  turns:
    - text: draft one
      tool_calls:
        - name: search
          args: {q: loops}
        - {name: fetch, id: mine}
      usage: {input: 120, output: 40}
      latency: 2m
      cost: 0.01
      model: gpt-4o
      match: {model: gpt-4o, contains: draft, regex: "^d.*", tools: [search]}
    - error: rate_limit
  rules:
    - match: {contains: summarise}
      reply:
        text: ok
        tool_calls: [{name: summarise}]
      times: 2
clock:
  start: 2026-01-01T10:00:00+02:00
  step: 1s
faults:
  - raise: {step: 3, error: ValueError, message: boom}
  - llm_error: {call: 2, kind: timeout}
  - crash: {step: 4, resume: false}
expect:
  stop: budget_exhausted(usd)
  steps: 5
  cost_usd: {max: 0.5}
  tokens: {min: 1, max: 30000}
  llm_calls: {min: 2}
snapshot: false
markers: [slow, smoke]
"""


# --- valid files ------------------------------------------------------------------------------


def test_full_scenario_reads_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, FULL, "full.loom.yaml")
    scenario = load_scenario(path)
    expected = Scenario(
        path=path,
        id="refine-converges",
        version=1,
        description="Refines a draft until it converges.",
        runtime="reference",
        entry="examples.refine.loop:build",
        entry_line=5,
        input={"draft": "hello", "when": "2026-02-03", "seen": [1, 2.5, True, None]},
        options={"max_rounds": 3, "style": {"tone": "terse"}},
        budget=Budget(usd=0.5, iterations=10, tokens=20000, wall_clock=600.0),
        llm=LLMSpec(
            model="gpt-4o",
            strict=False,
            allow_unused=True,
            latency_s=2.0,
            pricing={"my-model": Price(input=1.0, output=2.0)},
            turns=(
                Turn(
                    text="draft one",
                    tool_calls=(
                        ToolCallRequest("search", {"q": "loops"}, "call_1"),
                        ToolCallRequest("fetch", {}, "mine"),
                    ),
                    input_tokens=120,
                    output_tokens=40,
                    latency_s=120.0,
                    cost_usd=0.01,
                    model="gpt-4o",
                    match=Match(model="gpt-4o", contains="draft", regex="^d.*", tools=("search",)),
                ),
                Turn(error=LLMErrorKind.RATE_LIMIT),
            ),
            rules=(
                Rule(
                    match=Match(contains="summarise"),
                    reply=Turn(text="ok", tool_calls=(ToolCallRequest("summarise", {}, "call_3"),)),
                    times=2,
                ),
            ),
        ),
        clock=ClockSpec(start=datetime(2026, 1, 1, 8, 0, tzinfo=UTC), step_s=1.0),
        faults=(
            RaiseFault(step=3, error="ValueError", message="boom"),
            LLMErrorFault(call=2, kind=LLMErrorKind.TIMEOUT),
            CrashFault(step=4, resume=False),
        ),
        expect=Expectation(
            stop="budget_exhausted(usd)",
            steps=Bound(5, 5),
            cost_usd=Bound(None, 0.5),
            tokens=Bound(1, 30000),
            llm_calls=Bound(2, None),
        ),
        snapshot=False,
        markers=("slow", "smoke"),
    )
    assert replace(scenario, lines={}) == expected
    assert scenario.clock.start.tzinfo is UTC
    assert isinstance(scenario.budget.usd, float)


def test_lines_map_dotted_keys_to_their_lines(tmp_path: Path) -> None:
    scenario = load(tmp_path, FULL)
    assert scenario.lines["version"] == 1
    assert scenario.lines["entry"] == scenario.entry_line == 5
    assert scenario.lines["budget.usd"] == 12
    assert scenario.lines["budget.wall_clock"] == 15
    assert scenario.lines["llm.turns"] == 23
    assert scenario.lines["llm.turns[0]"] == 24
    assert scenario.lines["llm.turns[0].usage.input"] == 29
    assert scenario.lines["llm.turns[1].error"] == 34
    assert scenario.lines["llm.rules[0].reply.text"] == 38
    assert scenario.lines["faults[2].crash.resume"] == 47
    assert scenario.lines["expect.stop"] == 49


def test_defaults(tmp_path: Path) -> None:
    scenario = load(tmp_path, HEAD, "refine-converges.loom.yaml")
    assert scenario.id == "refine-converges"
    assert scenario.version == 1
    assert scenario.description == ""
    assert scenario.runtime == "reference"
    assert scenario.entry == "my_package.my_loop:build"
    assert scenario.entry_line == 2
    assert scenario.input is None
    assert scenario.options == {}
    assert scenario.budget == Budget()
    assert scenario.llm == LLMSpec()
    assert scenario.llm.strict is True
    assert scenario.llm.allow_unused is False
    assert scenario.llm.latency_s == 0.0
    assert scenario.clock == ClockSpec(start=DEFAULT_CLOCK_START, step_s=0.0)
    assert scenario.clock.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert scenario.faults == ()
    assert scenario.expect == Expectation()
    assert scenario.snapshot is True
    assert scenario.markers == ()


def test_turn_and_fault_defaults(tmp_path: Path) -> None:
    scenario = load(
        tmp_path,
        HEAD
        + """\
llm:
  turns:
    - text: hi
      usage: {output: 7}
faults:
  - raise: {step: 1}
  - crash: {step: 2}
""",
    )
    assert scenario.llm.turns == (Turn(text="hi", output_tokens=7),)
    assert scenario.llm.turns[0].latency_s is None
    assert scenario.faults == (
        RaiseFault(step=1, error="RuntimeError", message="injected fault"),
        CrashFault(step=2, resume=True),
    )


def test_input_becomes_plain_python(tmp_path: Path) -> None:
    scenario = load(
        tmp_path,
        HEAD
        + """\
input:
  at: 2026-03-04T05:06:07Z
  day: 2026-03-04
  items: [{a: 1}, [2, 3.5], "4", ~, yes]
""",
    )
    assert scenario.input == {
        "at": "2026-03-04T05:06:07+00:00",
        "day": "2026-03-04",
        "items": [{"a": 1}, [2, 3.5], "4", None, True],
    }


@pytest.mark.parametrize("value", ["[1, 2]", "hello", "3", "null"])
def test_input_may_be_any_value(tmp_path: Path, value: str) -> None:
    scenario = load(tmp_path, HEAD + f"input: {value}\n")
    assert scenario.input == yaml.safe_load(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-05-06T07:08:09", datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2026-05-06T12:00:00+02:00", datetime(2026, 5, 6, 10, tzinfo=UTC)),
        ("2026-05-06", datetime(2026, 5, 6, tzinfo=UTC)),
        ('"2026-05-06T12:00:00+02:00"', datetime(2026, 5, 6, 10, tzinfo=UTC)),
        ('"2026-05-06 12:00"', datetime(2026, 5, 6, 12, tzinfo=UTC)),
    ],
)
def test_clock_start_forms(tmp_path: Path, text: str, expected: datetime) -> None:
    start = load(tmp_path, HEAD + f"clock: {{start: {text}}}\n").clock.start
    assert start == expected
    assert start.utcoffset() == timedelta(0)


# --- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("refine-converges.loom.yaml", "refine-converges"),
        ("v1.2_case.loom.yaml", "v1.2_case"),
        ("plain.yaml", "plain"),
    ],
)
def test_id_defaults_to_the_file_name(tmp_path: Path, name: str, expected: str) -> None:
    assert load(tmp_path, HEAD, name).id == expected


def test_explicit_id_wins(tmp_path: Path) -> None:
    assert load(tmp_path, HEAD + "id: Case_1.b-2\n", "other.loom.yaml").id == "Case_1.b-2"


@pytest.mark.parametrize("bad", ["-leading-dash", "has space", "slash/y", "'_under'"])
def test_invalid_id(tmp_path: Path, bad: str) -> None:
    err = error(tmp_path, HEAD + f"id: {bad}\n")
    assert (err.line, err.key) == (3, "id")
    assert "is not a valid id" in err.problem
    assert err.expected is not None and "starting with a letter or digit" in err.expected


def test_numeric_id_must_be_quoted(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "id: 123\n")
    assert (err.line, err.key) == (3, "id")
    assert err.problem == "expected a string, got integer 123"
    assert err.hint == 'quote it to make it text: "123"'


def test_file_name_that_is_not_an_id(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD, "my case.loom.yaml")
    assert (err.line, err.key) == (None, "id")
    assert err.hint is not None and "set `id:`" in err.hint
    assert load(tmp_path, HEAD + "id: my-case\n", "my case.loom.yaml").id == "my-case"


# --- tool-call ids ----------------------------------------------------------------------------


def test_tool_call_ids_count_through_the_whole_script(tmp_path: Path) -> None:
    scenario = load(
        tmp_path,
        HEAD
        + """\
llm:
  rules:
    - match: {contains: x}
      reply: {tool_calls: [{name: e}]}
  turns:
    - tool_calls: [{name: a}, {name: b, id: explicit}]
    - text: no calls
    - tool_calls: [{name: c}, {name: d}]
""",
    )
    turn_ids = [call.id for turn in scenario.llm.turns for call in turn.tool_calls]
    assert turn_ids == ["call_1", "explicit", "call_3", "call_4"]
    assert scenario.llm.rules[0].reply.tool_calls[0].id == "call_5"
    assert load(tmp_path, FULL).llm.turns[0].tool_calls[0].id == "call_1"


# --- error rendering --------------------------------------------------------------------------


def test_error_renders_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = HEAD + "description: x\nruntime: reference\nid: bad\nbudget:\n  usdd: 0.5\n"
    err = error(tmp_path, text, "scenarios/refine/bad.loom.yaml")
    assert str(err) == (
        "scenarios/refine/bad.loom.yaml:7: budget.usdd: unknown key\n"
        "  expected: one of iterations, tokens, usd, wall_clock\n"
        "  hint: did you mean 'usd'?"
    )


def test_error_outside_cwd_shows_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path.parent / f"{tmp_path.name}-elsewhere" / "x.loom.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:1: entry: missing required key 'entry'")


def test_error_without_line_or_key_renders_cleanly(tmp_path: Path) -> None:
    err = ScenarioError(tmp_path / "x.loom.yaml", None, "", "cannot read the file")
    assert str(err) == f"{tmp_path / 'x.loom.yaml'}: cannot read the file"


def test_error_survives_pickling(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "budget: {usdd: 1}\n")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err)
    assert (copy.line, copy.key, copy.hint) == (3, "budget.usdd", "did you mean 'usd'?")


# --- unknown keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "hint"),
    [
        ("budgett: {}\n", 3, "budgett", "did you mean 'budget'?"),
        ("zzz: 1\n", 3, "zzz", None),
        ("llm:\n  turns:\n    - txt: hi\n", 5, "llm.turns[0].txt", "did you mean 'text'?"),
        ("expect:\n  step: 3\n", 4, "expect.step", "did you mean 'steps'?"),
        ("clock:\n  stepp: 1s\n", 4, "clock.stepp", "did you mean 'step'?"),
        ("faults:\n  - rase: {step: 1}\n", 4, "faults[0].rase", "did you mean 'raise'?"),
    ],
)
def test_unknown_key(tmp_path: Path, text: str, line: int, key: str, hint: str | None) -> None:
    err = error(tmp_path, HEAD + text)
    assert (err.line, err.key, err.problem, err.hint) == (line, key, "unknown key", hint)
    assert err.expected is not None and err.expected.startswith("one of ")


def test_unknown_top_level_key_lists_every_key(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "zzz: 1\n")
    assert err.expected == (
        "one of budget, clock, description, entry, expect, faults, id, input, llm, markers, "
        "options, runtime, snapshot, version"
    )


def test_match_inside_a_rule_reply_gets_a_hint(tmp_path: Path) -> None:
    text = "llm:\n  rules:\n    - match: {contains: a}\n      reply: {text: b, match: {}}\n"
    err = error(tmp_path, HEAD + text)
    assert (err.line, err.key, err.problem) == (6, "llm.rules[0].reply.match", "unknown key")
    assert err.hint == "a rule's `match` goes beside `reply`, not inside it"


# --- wrong types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"),
    [
        ("budget: 5\n", 3, "budget", "expected a mapping, got integer 5"),
        (
            "budget:\n  iterations: ten\n",
            4,
            "budget.iterations",
            "expected an integer >= 1, got string 'ten'",
        ),
        (
            "budget:\n  iterations: 2.5\n",
            4,
            "budget.iterations",
            "expected an integer >= 1, got float 2.5",
        ),
        (
            "budget:\n  tokens: true\n",
            4,
            "budget.tokens",
            "expected an integer >= 1, got boolean true",
        ),
        ("budget:\n  usd: cheap\n", 4, "budget.usd", "expected a number > 0, got string 'cheap'"),
        ("llm:\n  strict: maybe\n", 4, "llm.strict", "expected true or false, got string 'maybe'"),
        (
            "llm:\n  turns: {text: hi}\n",
            4,
            "llm.turns",
            "expected a list of turns, got mapping {'text': 'hi'}",
        ),
        (
            "llm:\n  turns:\n    - text: [a, b]\n",
            5,
            "llm.turns[0].text",
            "expected a string, got sequence ['a', 'b']",
        ),
        ("options: [1, 2]\n", 3, "options", "expected a mapping, got sequence [1, 2]"),
        ("markers: slow\n", 3, "markers", "expected a list of marker names, got string 'slow'"),
        ("snapshot: 1\n", 3, "snapshot", "expected true or false, got integer 1"),
    ],
)
def test_wrong_type(tmp_path: Path, text: str, line: int, key: str, problem: str) -> None:
    err = error(tmp_path, HEAD + text)
    assert (err.line, err.key, err.problem) == (line, key, problem)


def test_long_values_are_truncated_in_errors(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "budget:\n  usd: " + "x" * 100 + "\n")
    assert (
        err.problem == "expected a number > 0, got string 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."
    )


def test_null_value_is_a_type_error_with_a_hint(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "budget:\nsnapshot: true\n")
    assert (err.line, err.key, err.problem) == (3, "budget", "expected a mapping, got null")
    assert err.hint == "give it a value, or remove the key"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("budget: {usd: 0}", "budget.usd", "expected a number > 0, got integer 0"),
        ("budget: {usd: .inf}", "budget.usd", "expected a number > 0, got float .inf"),
        ("budget: {iterations: 0}", "budget.iterations", "expected an integer >= 1, got integer 0"),
        ("budget: {tokens: -5}", "budget.tokens", "expected an integer >= 1, got integer -5"),
        ("budget: {wall_clock: 0}", "budget.wall_clock", "must be longer than 0 seconds"),
        (
            "llm: {turns: [{usage: {input: -1}}]}",
            "llm.turns[0].usage.input",
            "expected an integer >= 0, got integer -1",
        ),
        (
            "llm: {turns: [{cost: -0.5}]}",
            "llm.turns[0].cost",
            "expected a number >= 0, got float -0.5",
        ),
        (
            "llm: {rules: [{match: {model: m}, reply: {}, times: 0}]}",
            "llm.rules[0].times",
            "expected an integer >= 1, got integer 0",
        ),
        (
            "faults: [{crash: {step: 0}}]",
            "faults[0].crash.step",
            "expected an integer >= 1, got integer 0",
        ),
        (
            "llm: {pricing: {m: {input: -1, output: 1}}}",
            "llm.pricing.m.input",
            "expected a number >= 0, got integer -1",
        ),
        (
            "llm: {turns: [{tool_calls: [{name: ''}]}]}",
            "llm.turns[0].tool_calls[0].name",
            "must not be empty",
        ),
        ("markers: [1slow]", "markers[0]", "'1slow' is not a marker name"),
        ("runtime: Reference", "runtime", "'Reference' is not a runtime name"),
    ],
)
def test_out_of_range_values(tmp_path: Path, text: str, key: str, problem: str) -> None:
    err = error(tmp_path, HEAD + text + "\n")
    assert (err.line, err.key, err.problem) == (3, key, problem)


# --- missing required keys --------------------------------------------------------------------


def test_missing_entry(tmp_path: Path) -> None:
    err = error(tmp_path, "version: 1\nbudget: {usd: 1}\n")
    assert (err.line, err.key, err.problem) == (1, "entry", "missing required key 'entry'")
    assert err.hint == "add a line such as `entry: my_package.my_loop:build`"


def test_missing_version(tmp_path: Path) -> None:
    err = error(tmp_path, "# a comment\nentry: a.b:c\n")
    assert (err.line, err.key, err.problem) == (2, "version", "missing required key 'version'")
    assert err.hint == "add a line such as `version: 1`"


@pytest.mark.parametrize(
    ("text", "line", "key", "example"),
    [
        (
            "llm:\n  turns:\n    - tool_calls:\n        - args: {}\n",
            6,
            "llm.turns[0].tool_calls[0].name",
            "name: search",
        ),
        ("llm:\n  pricing:\n    m:\n      input: 1\n", 6, "llm.pricing.m.output", "output: 10.0"),
        (
            "llm:\n  rules:\n    - reply: {text: x}\n",
            5,
            "llm.rules[0].match",
            'match: {contains: "summarise"}',
        ),
        (
            "llm:\n  rules:\n    - match: {contains: x}\n",
            5,
            "llm.rules[0].reply",
            'reply: {text: "..."}',
        ),
        ("faults:\n  - raise: {error: ValueError}\n", 4, "faults[0].raise.step", "step: 3"),
        (
            "faults:\n  - llm_error:\n      call: 1\n",
            5,
            "faults[0].llm_error.kind",
            "kind: rate_limit",
        ),
        ("faults:\n  - crash: {resume: true}\n", 4, "faults[0].crash.step", "step: 4"),
    ],
)
def test_missing_nested_key(tmp_path: Path, text: str, line: int, key: str, example: str) -> None:
    err = error(tmp_path, HEAD + text)
    name = key.rsplit(".", 1)[-1]
    assert (err.line, err.key, err.problem) == (line, key, f"missing required key {name!r}")
    assert err.hint == f"add a line such as `{example}`"


# --- enums, durations, regexes, entries -------------------------------------------------------


def test_bad_enum_lists_values_and_suggests(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "llm:\n  turns:\n    - error: rate_limt\n")
    assert (err.line, err.key, err.problem) == (
        5,
        "llm.turns[0].error",
        "unknown value 'rate_limt'",
    )
    assert err.expected == "one of malformed_tool_call, rate_limit, server_error, timeout"
    assert err.hint == "did you mean 'rate_limit'?"


def test_bad_fault_kind_enum(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "faults:\n  - llm_error: {call: 1, kind: boom}\n")
    assert (err.line, err.key, err.problem) == (
        4,
        "faults[0].llm_error.kind",
        "unknown value 'boom'",
    )
    assert err.hint is None


@pytest.mark.parametrize("bad", ["10 minutes", "soon", "-5s", "1h30"])
def test_bad_duration_uses_parse_duration_message(tmp_path: Path, bad: str) -> None:
    err = error(tmp_path, HEAD + f"budget:\n  wall_clock: '{bad}'\n")
    assert (err.line, err.key) == (4, "budget.wall_clock")
    with pytest.raises(ValueError) as parse_error:
        parse_duration(bad)
    assert err.problem == str(parse_error.value)


def test_duration_of_the_wrong_type(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "llm:\n  latency: [1]\n")
    assert (err.line, err.key) == (4, "llm.latency")
    assert (
        err.problem == "expected a duration such as 90, '90s', '10m' or '1h30m', got sequence [1]"
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("'1h30m'", 5400.0), ("2.5", 2.5), ("250ms", 0.25)]
)
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    assert load(tmp_path, HEAD + f"clock: {{step: {text}}}\n").clock.step_s == seconds


def test_invalid_regex(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "llm:\n  turns:\n    - match:\n        regex: 'a(b'\n")
    assert (err.line, err.key) == (6, "llm.turns[0].match.regex")
    with pytest.raises(re.error) as re_error:
        re.compile("a(b")
    assert err.problem == f"not a valid regular expression: {re_error.value}"


@pytest.mark.parametrize(
    "bad",
    [
        "examples/refine.py",
        "examples.refine",
        "a:b:c",
        "a..b:c",
        "1a:build",
        "a.b:",
        ":build",
        "a b:c",
    ],
)
def test_bad_entry_shape(tmp_path: Path, bad: str) -> None:
    err = error(tmp_path, f"version: 1\nentry: '{bad}'\n")
    assert (err.line, err.key, err.problem) == (2, "entry", f"{bad!r} is not an entry point")
    assert err.expected == "module.path:callable"
    assert err.hint == "for example `entry: my_package.my_loop:build`"


@pytest.mark.parametrize("good", ["loop:build", "a.b.c:Factory.create", "pkg_1.mod:_make"])
def test_good_entry_shapes(tmp_path: Path, good: str) -> None:
    assert load(tmp_path, f"version: 1\nentry: {good}\n").entry == good


def test_bad_clock_start(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "clock:\n  start: yesterday\n")
    assert (err.line, err.key, err.problem) == (4, "clock.start", "'yesterday' is not a date-time")


# --- whole-file problems ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    err = error(tmp_path, text)
    assert (err.line, err.key, err.problem) == (1, "", "the file is empty")


@pytest.mark.parametrize(
    ("text", "got"), [("- a\n- b\n", "sequence ['a', 'b']"), ("hello\n", "string 'hello'")]
)
def test_top_level_not_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    err = error(tmp_path, text)
    assert (err.line, err.key) == (1, "")
    assert err.problem == f"expected a mapping at the top level, got {got}"


def test_bad_indentation_gets_a_hint(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "budget:\n    usd: 1\n  tokens: 3\n")
    assert err.line == 5
    assert err.problem == "invalid YAML: expected <block end>, but found '<block mapping start>'"
    assert err.hint == (
        "check the indentation of this line (while parsing a block mapping started on line 1)"
    )


def test_yaml_syntax_error_keeps_its_line(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "budget:\n  usd: 1\n  tokens: : 3\n")
    assert err.line == 5
    assert err.problem.startswith("invalid YAML: ")
    assert "path" not in err.problem


def test_unclosed_flow_sequence(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "markers: [slow\n")
    assert (err.line, err.problem) == (
        4,
        "invalid YAML: expected ',' or ']', but got '<stream end>'",
    )
    assert err.hint == "while parsing a flow sequence started on line 3"


def test_two_documents(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "---\nversion: 1\n")
    assert err.line == 3
    assert "single document" in err.problem


def test_tab_indentation(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "budget:\n\tusd: 1\n")
    assert err.line == 4
    assert "'\\t'" in err.problem


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("budget: {usd: 1}\nbudget: {usd: 2}\n", 4, "budget"),
        ("budget:\n  usd: 1\n  tokens: 5\n  usd: 2\n", 6, "budget.usd"),
        ("input:\n  a: 1\n  a: 2\n", 5, "input.a"),
        ("llm:\n  turns:\n    - {text: a, text: b}\n", 5, "llm.turns[0].text"),
        ("entry: again.x:y\n", 3, "entry"),
    ],
)
def test_duplicate_key(tmp_path: Path, text: str, line: int, key: str) -> None:
    err = error(tmp_path, HEAD + text)
    name = key.rsplit(".", 1)[-1].split("[")[0]
    assert (err.line, err.key, err.problem) == (line, key, f"duplicate key {name!r}")
    assert err.hint is not None and err.hint.startswith("it is already set on line ")


def test_duplicate_key_hint_names_the_first_line(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "budget:\n  usd: 1\n  tokens: 5\n  usd: 2\n")
    assert err.hint == "it is already set on line 4; keep one"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("input: !custom 3\n", 3),
        ("input: !!binary aGVsbG8=\n", 3),
        ("input: !!set {a, b}\n", 3),
        ("input: &x [1, *x]\n", 3),
        ("base: &b {usd: 1}\n", 3),
        ("budget:\n  <<: {usd: 1}\n", 4),
        ("input:\n  ? [a, b]\n  : 1\n", 4),
        ("budget: {usd: !!float nope}\n", 3),
    ],
)
def test_exotic_yaml_is_a_scenario_error(tmp_path: Path, text: str, line: int) -> None:
    assert error(tmp_path, HEAD + text).line == line


def test_a_bool_tag_on_a_word_that_is_not_a_boolean(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "snapshot: !!bool maybe\n")
    assert (err.line, err.key) == (3, "snapshot")
    assert err.problem == (
        "cannot read 'maybe' as boolean: not one of yes, no, true, false, on, off"
    )


def test_deep_nesting_is_a_scenario_error(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "input: " + "[" * 5000 + "]" * 5000 + "\n")
    assert err.problem == "the YAML is nested too deeply"


def test_mangled_files_only_ever_raise_scenario_errors(tmp_path: Path) -> None:
    rng = random.Random(0)
    alphabet = [*" \n:-[]{},'\"&*!#|>?%@`0123.xyz\t~", "<<", "!!", "yes", "null", "---"]
    path = tmp_path / "mangled.loom.yaml"
    for _ in range(300):
        text = FULL
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(text))
            if rng.random() < 0.5:
                text = text[:at] + rng.choice(alphabet) + text[at:]
            else:
                text = text[:at] + text[at + rng.randint(1, 5) :]
        path.write_text(text, encoding="utf-8")
        try:
            load_scenario(path)
        except ScenarioError as err:
            assert err.line is None or 1 <= err.line <= text.count("\n") + 1
            assert str(err)


def test_aliases_are_allowed(tmp_path: Path) -> None:
    text = "input: {shared: &s [1, 2]}\noptions: {again: *s}\n"
    scenario = load(tmp_path, HEAD + text)
    assert scenario.options == {"again": [1, 2]}


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.loom.yaml")
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path)
    bad = tmp_path / "latin1.loom.yaml"
    bad.write_bytes(b"version: 1\ndescription: caf\xe9\n")
    with pytest.raises(ScenarioError, match="not UTF-8 text") as info:
        load_scenario(bad)
    assert info.value.line is None


# --- version ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "got"), [("2", "integer 2"), ("'1'", "string '1'"), ("1.0", "float 1.0")]
)
def test_unsupported_version(tmp_path: Path, value: str, got: str) -> None:
    err = error(tmp_path, f"entry: a:b\nversion: {value}\n")
    assert (err.line, err.key) == (2, "version")
    assert err.problem == f"expected the integer 1, got {got}"
    assert err.hint == "this pytest-loom reads version 1"


def test_version_is_checked_before_unknown_keys(tmp_path: Path) -> None:
    err = error(tmp_path, "new_key: 1\nversion: 2\nentry: a:b\n")
    assert (err.line, err.key) == (2, "version")


# --- faults -----------------------------------------------------------------------------------


def test_fault_with_no_kind(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "faults:\n  - {}\n")
    assert (err.line, err.key, err.problem) == (4, "faults[0]", "empty: no kind given")
    assert err.expected == "exactly one of crash, kill, llm_error, raise"


def test_fault_with_two_kinds(tmp_path: Path) -> None:
    text = "faults:\n  - crash: {step: 1}\n  - raise: {step: 1}\n    crash: {step: 2}\n"
    err = error(tmp_path, HEAD + text)
    assert (err.line, err.key, err.problem) == (5, "faults[1]", "one item, 2 kinds: raise, crash")
    assert err.expected == "exactly one of crash, kill, llm_error, raise"
    assert err.hint == "write each as its own list item"


def test_fault_that_is_not_a_mapping(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "faults:\n  - crash\n")
    assert (err.line, err.key) == (4, "faults[0]")
    assert err.problem == "expected a mapping, got string 'crash'"


@pytest.mark.parametrize(
    ("name", "problem", "hint"),
    [
        (
            "ValueErorr",
            "'ValueErorr' is not a built-in exception class that takes a message",
            "did you mean 'ValueError'?",
        ),
        (
            "KeyboardInterrupt",
            "'KeyboardInterrupt' is not a built-in exception class that takes a message",
            None,
        ),
        ("print", "'print' is not a built-in exception class that takes a message", None),
        ("Frobnicate", "'Frobnicate' is not a built-in exception class that takes a message", None),
    ],
)
def test_raise_fault_needs_a_builtin_exception(
    tmp_path: Path, name: str, problem: str, hint: str | None
) -> None:
    err = error(tmp_path, HEAD + f"faults:\n  - raise:\n      step: 1\n      error: {name}\n")
    assert (err.line, err.key, err.problem, err.hint) == (6, "faults[0].raise.error", problem, hint)


@pytest.mark.parametrize("name", ["ValueError", "KeyError", "TimeoutError", "UserWarning"])
def test_builtin_exceptions_are_accepted(tmp_path: Path, name: str) -> None:
    fault = load(tmp_path, HEAD + f"faults: [{{raise: {{step: 2, error: {name}}}}}]\n").faults[0]
    assert fault == RaiseFault(step=2, error=name)


# --- rules ------------------------------------------------------------------------------------


def test_rule_match_must_not_be_empty(tmp_path: Path) -> None:
    text = "llm:\n  rules:\n    - reply: {text: x}\n      match: {tools: []}\n"
    err = error(tmp_path, HEAD + text)
    assert (err.line, err.key) == (6, "llm.rules[0].match")
    assert "must not be empty" in err.problem
    assert err.expected == "at least one of contains, model, regex, tools"


def test_turn_match_may_be_empty(tmp_path: Path) -> None:
    turn = load(tmp_path, HEAD + "llm: {turns: [{match: {}}]}\n").llm.turns[0]
    assert turn.match == Match()


# --- expectations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "completed",
        "converged",
        "stalled",
        "paused",
        "awaiting_approval",
        "denied",
        "budget_exhausted",
        "budget_exhausted(usd)",
        "budget_exhausted(wall_clock)",
        "failed",
        "failed(ValueError)",
        "failed(ReadTimeout)",
    ],
)
def test_valid_stop_labels(tmp_path: Path, label: str) -> None:
    assert load(tmp_path, HEAD + f"expect: {{stop: '{label}'}}\n").expect.stop == label


@pytest.mark.parametrize(
    ("label", "problem", "hint"),
    [
        ("convergd", "unknown stop reason 'convergd'", "did you mean 'converged'?"),
        ("Converged", "unknown stop reason 'Converged'", "did you mean 'converged'?"),
        ("budget_exhausted(dollars)", "unknown budget limit 'dollars'", None),
        ("budget_exhausted(tokns)", "unknown budget limit 'tokns'", "did you mean 'tokens'?"),
        ("failed(not a type)", "'not a type' is not an error type name", None),
        ("failed()", "'' is not an error type name", None),
        ("converged(fast)", "stop reason 'converged' takes no argument", None),
        ("done!", "'done!' is not a stop label", None),
    ],
)
def test_invalid_stop_labels(tmp_path: Path, label: str, problem: str, hint: str | None) -> None:
    err = error(tmp_path, HEAD + f"expect:\n  stop: '{label}'\n")
    assert (err.line, err.key, err.problem) == (4, "expect.stop", problem)
    if hint is not None or "unknown" in problem:
        assert err.hint == hint


@pytest.mark.parametrize(
    ("expected", "label", "matches"),
    [
        (None, "failed(KeyError)", True),
        ("converged", "converged", True),
        ("converged", "completed", False),
        ("failed", "failed(KeyError)", True),
        ("failed", "failed", True),
        ("failed(KeyError)", "failed(KeyError)", True),
        ("failed(KeyError)", "failed(ValueError)", False),
        ("budget_exhausted", "budget_exhausted(usd)", True),
        ("budget_exhausted(usd)", "budget_exhausted(tokens)", False),
        ("budget_exhausted(usd)", "budget_exhausted", False),
        ("paused", "paused_forever", False),
    ],
)
def test_stop_matches(expected: str | None, label: str, matches: bool) -> None:
    assert Expectation(stop=expected).stop_matches(label) is matches


@pytest.mark.parametrize(
    ("text", "bound"),
    [
        ("steps: 5", Bound(5, 5)),
        ("steps: {min: 2}", Bound(2, None)),
        ("steps: {max: 9}", Bound(None, 9)),
        ("steps: {min: 1, max: 3}", Bound(1, 3)),
        ("cost_usd: 0.25", Bound(0.25, 0.25)),
        ("cost_usd: {max: 1}", Bound(None, 1.0)),
        ("tokens: {min: 0, max: 0}", Bound(0, 0)),
    ],
)
def test_bound_parsing(tmp_path: Path, text: str, bound: Bound) -> None:
    expect = load(tmp_path, HEAD + f"expect: {{{text}}}\n").expect
    assert getattr(expect, text.split(":")[0]) == bound


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("steps: {}", "an empty bound"),
        ("steps: {min: 3, max: 1}", "min (3) is greater than max (1)"),
        ("steps: 2.5", "expected an integer, or a mapping with min and/or max, got float 2.5"),
        ("steps: '5'", "expected an integer, or a mapping with min and/or max, got string '5'"),
        ("llm_calls: -1", "expected an integer >= 0, got integer -1"),
        ("cost_usd: {max: -1}", "expected a number >= 0, got integer -1"),
        ("tokens: {max: 1.5}", "expected an integer >= 0, got float 1.5"),
    ],
)
def test_bad_bounds(tmp_path: Path, text: str, problem: str) -> None:
    err = error(tmp_path, HEAD + f"expect:\n  {text}\n")
    assert err.line == 4
    assert err.problem == problem


def test_bound_unknown_key(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "expect:\n  steps: {mx: 3}\n")
    assert (err.key, err.expected, err.hint) == (
        "expect.steps.mx",
        "one of max, min",
        "did you mean 'max'?",
    )


@pytest.mark.parametrize(
    ("bound", "inside", "outside", "shown"),
    [
        (Bound(5, 5), [5, 5.0], [4, 6], "== 5"),
        (Bound(None, 0.5), [0, 0.5, -1], [0.51], "<= 0.5"),
        (Bound(2, None), [2, 100], [1.99], ">= 2"),
        (Bound(1, 3), [1, 2, 3], [0, 3.01], "between 1 and 3"),
        (Bound(0.1, 0.25), [0.1, 0.2], [0.3], "between 0.1 and 0.25"),
        (Bound(None, None), [0, -5, 1e9], [], "any value"),
    ],
)
def test_bound_contains_and_str(
    bound: Bound, inside: list[float], outside: list[float], shown: str
) -> None:
    assert all(bound.contains(v) for v in inside)
    assert not any(bound.contains(v) for v in outside)
    assert str(bound) == shown


# --- the JSON schema --------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    data = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _at(schema: dict[str, Any], pointer: str) -> dict[str, Any]:
    node: Any = schema
    for part in pointer.strip("/").split("/"):
        if part:
            node = node[int(part)] if isinstance(node, list) else node[part]
        while isinstance(node, dict) and "$ref" in node:
            node = _at(schema, node["$ref"].removeprefix("#"))
    assert isinstance(node, dict)
    return node


def test_schema_is_draft_2020_12_json() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"version", "entry"}

    def closed_with_descriptions(node: Any, where: str) -> None:
        if isinstance(node, dict):
            free_form = where.endswith(("/options", "/args", "/input"))
            if node.get("type") == "object" and "properties" in node and not free_form:
                assert node.get("additionalProperties") is False, where
                for name, sub in node["properties"].items():
                    assert "description" in sub, f"{where}/{name} has no description"
            for name, sub in node.items():
                closed_with_descriptions(sub, f"{where}/{name}")
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                closed_with_descriptions(sub, f"{where}/{index}")

    closed_with_descriptions(schema, "")


SECTIONS = [
    ("", "zzz: 1", "/properties"),
    ("budget", "budget: {zzz: 1}", "/properties/budget/properties"),
    ("llm", "llm: {zzz: 1}", "/properties/llm/properties"),
    (
        "pricing",
        "llm: {pricing: {m: {zzz: 1}}}",
        "/properties/llm/properties/pricing/additionalProperties/properties",
    ),
    ("turn", "llm: {turns: [{zzz: 1}]}", "/$defs/turn/properties"),
    ("usage", "llm: {turns: [{usage: {zzz: 1}}]}", "/$defs/turn/properties/usage/properties"),
    (
        "tool call",
        "llm: {turns: [{tool_calls: [{name: a, zzz: 1}]}]}",
        "/$defs/toolCall/properties",
    ),
    ("match", "llm: {turns: [{match: {zzz: 1}}]}", "/$defs/match/properties"),
    ("rule", "llm: {rules: [{zzz: 1}]}", "/$defs/rule/properties"),
    ("reply", "llm: {rules: [{match: {model: m}, reply: {zzz: 1}}]}", "/$defs/reply/properties"),
    (
        "cassette",
        "llm: {cassette: {path: c.yaml, zzz: 1}}",
        "/properties/llm/properties/cassette/oneOf/1/properties",
    ),
    (
        "ignore rule",
        "llm: {cassette: {path: c.yaml, ignore: [{regex: x, zzz: 1}]}}",
        "/properties/llm/properties/cassette/oneOf/1/properties/ignore/items/properties",
    ),
    ("clock", "clock: {zzz: 1}", "/properties/clock/properties"),
    ("fault", "faults: [{zzz: 1}]", "/$defs/fault/properties"),
    ("raise", "faults: [{raise: {zzz: 1}}]", "/$defs/fault/properties/raise/properties"),
    (
        "llm_error",
        "faults: [{llm_error: {zzz: 1}}]",
        "/$defs/fault/properties/llm_error/properties",
    ),
    ("crash", "faults: [{crash: {zzz: 1}}]", "/$defs/fault/properties/crash/properties"),
    ("expect", "expect: {zzz: 1}", "/properties/expect/properties"),
    (
        "bound",
        "expect: {steps: {zzz: 1}}",
        "/properties/expect/properties/steps/oneOf/1/properties",
    ),
]


@pytest.mark.parametrize(
    ("section", "text", "pointer"), SECTIONS, ids=[s[0] or "top" for s in SECTIONS]
)
def test_schema_and_parser_accept_the_same_keys(
    tmp_path: Path, section: str, text: str, pointer: str
) -> None:
    err = error(tmp_path, HEAD + text + "\n")
    assert err.problem == "unknown key", section
    assert err.expected is not None
    parser_keys = set(err.expected.removeprefix("one of ").split(", "))
    assert parser_keys == set(_at(_schema(), pointer))


VALID = "valid"
INVALID = "invalid"
CASES = [
    ("minimal", HEAD, VALID),
    ("full", FULL, VALID),
    ("stop failed(type)", HEAD + "expect: {stop: failed(ValueError), steps: {min: 1}}\n", VALID),
    ("durations", HEAD + "budget: {wall_clock: 1h30m}\nclock: {step: 90}\n", VALID),
    ("missing entry", "version: 1\n", INVALID),
    ("unknown top key", HEAD + "budgett: {}\n", INVALID),
    ("unknown budget key", HEAD + "budget: {usdd: 1}\n", INVALID),
    ("version 2", "version: 2\nentry: a:b\n", INVALID),
    ("entry shape", "version: 1\nentry: examples/refine.py\n", INVALID),
    ("bad id", HEAD + "id: -x\n", INVALID),
    ("iterations 0", HEAD + "budget: {iterations: 0}\n", INVALID),
    ("bad duration", HEAD + "budget: {wall_clock: 10 minutes}\n", INVALID),
    ("error kind typo", HEAD + "llm: {turns: [{error: rate_limt}]}\n", INVALID),
    ("negative usage", HEAD + "llm: {turns: [{usage: {input: -1}}]}\n", INVALID),
    ("tool call without name", HEAD + "llm: {turns: [{tool_calls: [{args: {}}]}]}\n", INVALID),
    ("price without output", HEAD + "llm: {pricing: {m: {input: 1}}}\n", INVALID),
    ("empty rule match", HEAD + "llm: {rules: [{match: {}, reply: {}}]}\n", INVALID),
    ("fault without kind", HEAD + "faults: [{}]\n", INVALID),
    ("fault with two kinds", HEAD + "faults: [{crash: {step: 1}, raise: {step: 1}}]\n", INVALID),
    ("stop typo", HEAD + "expect: {stop: convergd}\n", INVALID),
    ("bound min only bad", HEAD + "expect: {steps: {}}\n", INVALID),
    ("marker", HEAD + "markers: [1slow]\n", INVALID),
    ("cassette path", HEAD + "llm: {cassette: cassettes/run.yaml}\n", VALID),
    (
        "cassette with ignore rules",
        HEAD + "llm: {cassette: {path: c.yaml, ignore: [{regex: 'id-\\d+', role: system}]}}\n",
        VALID,
    ),
    ("cassette without path", HEAD + "llm: {cassette: {ignore: []}}\n", INVALID),
    ("cassette empty path", HEAD + "llm: {cassette: ''}\n", INVALID),
    (
        "ignore rule without regex",
        HEAD + "llm: {cassette: {path: c, ignore: [{role: x}]}}\n",
        INVALID,
    ),
]


@pytest.mark.parametrize(("text", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parser_verdicts(tmp_path: Path, text: str, verdict: str) -> None:
    try:
        load(tmp_path, text)
    except ScenarioError:
        assert verdict == INVALID
    else:
        assert verdict == VALID


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


@pytest.mark.parametrize(("text", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_schema_agrees_with_the_parser(text: str, verdict: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(_json_ready(yaml.safe_load(textwrap.dedent(text)))))
    assert (VALID if not errors else INVALID) == verdict, [e.message for e in errors]


def test_raise_fault_rejects_exceptions_that_take_no_message(tmp_path: Path) -> None:
    path = tmp_path / "s.loom.yaml"
    path.write_text(
        "version: 1\nentry: m:build\nfaults:\n  - raise: {step: 1, error: UnicodeDecodeError}\n"
    )
    with pytest.raises(ScenarioError, match="not a built-in exception class that takes a message"):
        load_scenario(path)


def test_failed_label_takes_the_bare_class_name(tmp_path: Path) -> None:
    path = tmp_path / "s.loom.yaml"
    path.write_text("version: 1\nentry: m:build\nexpect: {stop: failed(json.JSONDecodeError)}\n")
    with pytest.raises(ScenarioError, match="bare class") as info:
        load_scenario(path)
    assert info.value.line == 3


def test_cassette_and_ignore_rules_are_read(tmp_path: Path) -> None:
    path = tmp_path / "s.loom.yaml"
    path.write_text(
        "version: 1\nentry: m:build\nllm:\n  cassette:\n    path: cassettes/s.yaml\n"
        "    ignore:\n      - {regex: 'Today is \\S+', role: system}\n"
    )
    spec = load_scenario(path).llm.cassette
    assert spec is not None and spec.path == "cassettes/s.yaml"
    assert [(r.regex, r.role) for r in spec.ignore] == [("Today is \\S+", "system")]
    path.write_text("version: 1\nentry: m:build\nllm: {cassette: {path: c, ignor: []}}\n")
    with pytest.raises(ScenarioError, match="did you mean 'ignore'") as info:
        load_scenario(path)
    assert info.value.key == "llm.cassette.ignor"
