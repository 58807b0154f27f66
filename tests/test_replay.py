"""``--loom-replay`` and ``--loom-replay-from``: re-executing scenarios against recorded runs.

The recorded run of a scenario is its committed snapshot. The SDK examples are the ones a user
writes (``examples/sdk``), copied so a test can change their prompts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_loom._toolresults import NOT_KEPT, kept, kept_error, servable, serve
from pytest_loom.record import ToolCall, digest

pytest.importorskip("openai")

REPO = Path(__file__).resolve().parents[1]
FIRST_DRAFT = "Loops retry things."
WRITER_PROMPT = "Rewrite this draft so it is clearer and more concrete:"
# The mock's answers for the steps run anew after a change (a writer reply and a critic score).
RULES = """\
  rules:
    - match: {model: gpt-4o-mini}
      reply: {text: "Loops retry failed steps with backoff.", usage: {input: 50, output: 12}}
    - match: {model: gpt-4o}
      reply:
        tool_calls: [{name: record_score, args: {score: 0.95}}]
        usage: {input: 60, output: 8}
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("CI", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    pytester.makeini("[pytest]\n")
    shutil.copytree(REPO / "scenarios" / "sdk", pytester.path / "sdk")
    shutil.copytree(REPO / "examples" / "sdk", pytester.path / "examples" / "sdk")
    shutil.copy(REPO / "examples" / "__init__.py", pytester.path / "examples")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--loom-scenarios", *args)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def change_prompt_after_first_step(project: pytest.Pytester) -> None:
    """The writer asks differently once it rewrites its own draft (steps 2 and on)."""
    edit(
        project.path / "examples" / "sdk" / "openai_loop.py",
        "WRITER_PROMPT.format(draft=draft)",
        f'(WRITER_PROMPT if draft == "{FIRST_DRAFT}" else "Tighten:\\n\\n{{draft}}")'
        ".format(draft=draft)",
    )


def test_unchanged_code_replays_every_recorded_run(project: pytest.Pytester) -> None:
    run(project, "--loom-replay", "-p", "no:xdist").assert_outcomes(passed=6)
    run(project, "--loom-replay", "-n", "2").assert_outcomes(passed=6)


def test_a_changed_prompt_diverges_naming_the_step_the_call_and_the_diff(
    project: pytest.Pytester,
) -> None:
    edit(project.path / "examples" / "sdk" / "openai_loop.py", "clearer and more", "shorter and")
    result = run(
        project, "--loom-replay", "sdk/openai_sync.loom.yaml", "sdk/openai_async.loom.yaml"
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*replay diverged at step 1, LLM call 1 from the recorded run "
            "sdk/__snapshots__/openai_sync.loom/openai_sync.run.json:",
            "*the request differs from the recorded one",
            "*--- recorded",
            "*+++ now",
            "*-Rewrite this draft so it is clearer and more concrete:",
            "*+Rewrite this draft so it is shorter and concrete:",
            "*hint: *--snapshot-update, or replay only the steps before this one: "
            "--loom-replay-from=1",
        ]
    )
    # The divergence is the news: no noise about cassette calls left unused.
    assert "never used" not in result.stdout.str()


def test_a_changed_anthropic_prompt_diverges_too(project: pytest.Pytester) -> None:
    pytest.importorskip("anthropic")
    edit(project.path / "examples" / "sdk" / "anthropic_loop.py", "Improve this", "Shorten this")
    result = run(project, "--loom-replay", "sdk/anthropic_stream.loom.yaml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay diverged at step 1, LLM call 1 from the recorded run *",
            "*-Improve this draft, then end with a line 'score: <0..1>':",
            "*+Shorten this draft, then end with a line 'score: <0..1>':",
        ]
    )


def test_replay_from_n_replays_the_prefix_then_runs_the_rest_against_the_mock(
    project: pytest.Pytester,
) -> None:
    change_prompt_after_first_step(project)
    scenario = project.path / "sdk" / "openai_sync.loom.yaml"
    edit(
        scenario,
        "  cassette: cassettes/openai_sync.yaml\n",
        f"  cassette: cassettes/openai_sync.yaml\n{RULES}",
    )
    edit(scenario, "  steps: 3\n  llm_calls: 6\n", "  steps: 2\n")
    # Replaying the whole run fails at step 2, where the prompt changed ...
    whole = run(project, "--loom-replay", str(scenario))
    whole.assert_outcomes(failed=1)
    whole.stdout.fnmatch_lines(["*replay diverged at step 2, LLM call 1*", "*+Tighten:*"])
    # ... replaying step 1 and running the rest against the mock passes, and reports the change.
    result = run(project, "--loom-replay-from=2", "-rA", str(scenario))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*loom replay from step 2*",
            "*step 2: llm_calls[[]0[]].prompt: *Tighten*",
        ]
    )
    assert "step 1:" not in result.stdout.str()


def test_replay_from_n_on_an_unchanged_run_still_checks_the_prefix(
    project: pytest.Pytester,
) -> None:
    edit(project.path / "examples" / "sdk" / "openai_loop.py", "clearer and more", "shorter and")
    result = run(project, "--loom-replay-from=2", "sdk/openai_sync.loom.yaml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*replay diverged at step 1, LLM call 1*"])


def test_replay_needs_a_recorded_run(project: pytest.Pytester) -> None:
    shutil.rmtree(project.path / "sdk" / "__snapshots__" / "openai_sync.loom")
    result = run(project, "--loom-replay", "sdk/openai_sync.loom.yaml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*sdk/openai_sync.loom.yaml: --loom-replay: scenario 'openai_sync' has no recorded "
            "run: *openai_sync.run.json does not exist",
            "*hint: record it: pytest --loom-scenarios --snapshot-update",
        ]
    )


def test_a_corrupt_recording_names_the_file(project: pytest.Pytester) -> None:
    snapshot = project.path / "sdk" / "__snapshots__" / "openai_sync.loom" / "openai_sync.run.json"
    snapshot.write_text(snapshot.read_text()[:200])
    result = run(project, "--loom-replay", "sdk/openai_sync.loom.yaml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*openai_sync.run.json: run record is not valid JSON*", "*--snapshot-update*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_replay_from_takes_a_step_number(project: pytest.Pytester) -> None:
    result = run(project, "--loom-replay-from=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--loom-replay-from: expected a step number >= 1, got '0'"])


LOOP = """\
from pytest_loom import Done

def step(state, ctx):
    reply = ctx.llm.complete(f"improve {state['n']}")
    ctx.tool("lookup", lookup, key=TOOL_ARG)
    if state["n"] >= 3:
        return Done({"n": state["n"]})
    return {"n": state["n"] + 1}

TOOL_ARG = "a"

def lookup(key):
    return {"key": key.upper(), "hits": [1, 2]}

def build(lab):
    return lab.loop(step)
"""

SCENARIO = """\
version: 1
entry: loop:build
input: {n: 1}
llm:
  rules:
    - match: {regex: "improve"}
      reply: {text: "ok", usage: {input: 10, output: 2}}
"""


@pytest.fixture
def loop_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(loop=LOOP)
    (pytester.path / "run.loom.yaml").write_text(SCENARIO)
    run(pytester, "--snapshot-update").assert_outcomes(passed=1)
    return pytester


def test_a_tool_called_differently_diverges(loop_project: pytest.Pytester) -> None:
    edit(loop_project.path / "loop.py", 'TOOL_ARG = "a"', 'TOOL_ARG = "b"')
    result = run(loop_project, "--loom-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay diverged at step 1, tool call 1 from the recorded run *run.run.json:",
            "*the recorded run called lookup(key='a'), this run lookup(key='b')",
        ]
    )


LOOKUP = 'def lookup(key):\n    return {"key": key.upper(), "hits": [1, 2]}\n'


def test_replayed_steps_get_the_recorded_tool_results(loop_project: pytest.Pytester) -> None:
    """The tool is not called again in the replayed steps: its recorded result is given back."""
    unreachable = "def lookup(key):\n    raise ConnectionError('no lookup service in CI')\n"
    edit(loop_project.path / "loop.py", LOOKUP, unreachable)
    run(loop_project, "--loom-replay").assert_outcomes(passed=1)
    # From step 2 on the loop runs for real, and so does the tool.
    result = run(loop_project, "--loom-replay-from=2", "-rA")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*loom replay from step 2*", "*step 2: error: None -> *ConnectionError: no lookup*"]
    )
    assert "step 1: error" not in result.stdout.str()


def test_a_recorded_tool_failure_is_raised_again(loop_project: pytest.Pytester) -> None:
    loop = loop_project.path / "loop.py"
    edit(loop, LOOKUP, "def lookup(key):\n    return {}[key]\n")
    edit(
        loop,
        '    ctx.tool("lookup", lookup, key=TOOL_ARG)\n',
        "    try:\n"
        '        ctx.tool("lookup", lookup, key=TOOL_ARG)\n'
        "    except KeyError as exc:\n"
        "        state = {**state, 'missing': exc.args[0]}\n",
    )
    edit(loop, '{"n": state["n"] + 1}', '{**state, "n": state["n"] + 1}')
    run(loop_project, "--snapshot-update").assert_outcomes(passed=1)
    edit(loop, "return {}[key]", "raise OSError('must not run')")
    run(loop_project, "--loom-replay").assert_outcomes(passed=1)


def test_a_result_json_cannot_hold_is_checked_by_running_the_tool(
    loop_project: pytest.Pytester,
) -> None:
    loop = loop_project.path / "loop.py"
    edit(loop, LOOKUP, "def lookup(key):\n    return (key, 1)\n")
    run(loop_project, "--snapshot-update").assert_outcomes(passed=1)
    run(loop_project, "--loom-replay").assert_outcomes(passed=1)
    edit(loop, "return (key, 1)", "return (key, 2)")
    result = run(loop_project, "--loom-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tool call 1, lookup(key='a'), returned something else: *"])


def test_a_run_that_ends_early_diverges(loop_project: pytest.Pytester) -> None:
    edit(loop_project.path / "loop.py", 'state["n"] >= 3', 'state["n"] >= 2')
    result = run(loop_project, "--loom-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay diverged at step 3 *",
            "*the run ended after 2 steps (completed) without step 3, but the recorded run "
            "went on to step 3 (completed)",
        ]
    )


def test_a_step_that_asks_more_diverges_at_the_extra_call(loop_project: pytest.Pytester) -> None:
    edit(
        loop_project.path / "loop.py",
        "    reply = ctx.llm.complete(f\"improve {state['n']}\")\n",
        "    reply = ctx.llm.complete(f\"improve {state['n']}\")\n"
        "    ctx.llm.complete('improve once more')\n",
    )
    result = run(loop_project, "--loom-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay diverged at step 1, LLM call 2 *",
            "*step 1 asks for LLM call 2, but the recorded run made 1 LLM call in that step",
            "*the request: model 'gpt-4o', prompt 'improve once more'",
        ]
    )


def test_a_step_that_asks_less_diverges(loop_project: pytest.Pytester) -> None:
    edit(
        loop_project.path / "loop.py",
        "    reply = ctx.llm.complete(f\"improve {state['n']}\")\n",
        "    reply = None if state['n'] == 2 else ctx.llm.complete(f\"improve {state['n']}\")\n",
    )
    result = run(loop_project, "--loom-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*replay diverged at step 2 *",
            "*step 2 made 0 LLM calls, but the recorded run made 1 LLM call in that step; the "
            "next recorded call asked 'improve 2'",
        ]
    )


@pytest.mark.parametrize(
    ("value", "kept_as"),
    [
        ({"a": [1, 2.5, None, "x"]}, {"a": [1, 2.5, None, "x"]}),
        (None, None),
        ((1, 2), NOT_KEPT),  # a tuple would come back as a list
        ({1: "a"}, NOT_KEPT),  # a non-string key would come back as a string
        (float("nan"), NOT_KEPT),  # JSON has no NaN (its digest is the digest of null)
        ({"ok": True, "n": 1.0}, {"ok": True, "n": 1.0}),
        (object(), NOT_KEPT),
    ],
)
def test_tool_results_are_kept_only_when_json_holds_them_exactly(
    value: object, kept_as: object
) -> None:
    assert kept(value) == kept_as
    call = ToolCall("t", {}, "ok", digest(value), kept(value))
    assert servable(call) is (kept_as is not NOT_KEPT)


def test_a_kept_builtin_error_is_raised_again_and_other_errors_are_not_served() -> None:
    error = KeyError("calc.py")
    call = ToolCall("t", {}, "error", digest(repr(error)), kept_error(error))
    assert call.result == {"error": "KeyError", "args": ["calc.py"]}
    assert servable(call)
    with pytest.raises(KeyError) as raised:
        serve(call)
    assert repr(raised.value) == repr(error)

    class QuotaError(Exception):
        pass

    assert kept_error(QuotaError("x")) is NOT_KEPT
    assert kept_error(ValueError(object())) is NOT_KEPT
    assert not servable(ToolCall("t", {}, "error", digest(repr(QuotaError("x"))), NOT_KEPT))
    # A recording whose kept value does not match its digest is never served.
    assert not servable(ToolCall("t", {}, "ok", digest("real"), "edited by hand"))
