"""A plain scenario session leaves the replay, cassette-recording, kill and TOML machinery unloaded.

Each test runs pytest in a subprocess (so imports start from nothing) over a scenario project
and checks which of the lab's modules the session loaded by its end: names, never timings (those
are measured by ``benchmarks/startup.py``). The other side is checked too: a scenario that uses
a kill fault, a policy file or a cassette loads what it needs and still passes.
"""

from __future__ import annotations

import json

import pytest

RECORDER = """
import json
import sys


def pytest_sessionfinish(session):
    with open("loaded-modules.json", "w") as f:
        json.dump(sorted(sys.modules), f)
"""

LOOPS = """
def research(state, ctx):
    ctx.llm.complete(f"next source {state['n']}", model="gpt-4o")
    return {"n": state["n"] + 1}


def build(lab):
    return lab.loop(research)
"""

SCENARIO = """\
version: 1
entry: loops:build
input: {n: 0}
budget: {iterations: 3}
llm:
  rules:
    - match: {contains: "next source"}
      reply: {text: "a source", usage: {input: 100, output: 20}}
expect:
  stop: budget_exhausted(iterations)
  steps: 3
snapshot: false
"""

UNUSED = (
    "pickle",
    "tomllib",
    "pytest_loom._killrun",
    "pytest_loom.replay",
    "pytest_loom.recorded",
    "pytest_loom._wire",
    "pytest_loom._wire_openai",
    "pytest_loom._wire_anthropic",
)
"""What a scenario with no kill fault, replay, cassette, SDK call or policy file never needs."""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(loops=LOOPS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def loaded(project: pytest.Pytester, *args: str) -> set[str]:
    """The modules a passing scenario session over ``project`` had imported when it finished."""
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:xdist", "--loom-scenarios", *args
    )
    result.assert_outcomes(passed=1)
    names: list[str] = json.loads((project.path / "loaded-modules.json").read_text())
    return set(names)


def test_a_plain_scenario_session_loads_no_replay_recording_kill_or_toml(
    project: pytest.Pytester,
) -> None:
    project.path.joinpath("research.loom.yaml").write_text(SCENARIO)
    modules = loaded(project)
    assert {"pytest_loom.runner", "pytest_loom.store", "pytest_loom.intercept"} <= modules
    assert sorted(modules & set(UNUSED)) == []


def test_a_kill_fault_loads_the_kill_runner(project: pytest.Pytester) -> None:
    killed = SCENARIO.replace("snapshot: false", "faults:\n  - {kill: {step: 2}}\nsnapshot: false")
    project.path.joinpath("research.loom.yaml").write_text(killed)
    modules = loaded(project)
    assert {"pytest_loom._killrun", "pickle"} <= modules
    assert "pytest_loom.recorded" not in modules


def test_a_policy_file_loads_the_toml_reader(project: pytest.Pytester) -> None:
    project.path.joinpath("research.loom.yaml").write_text(SCENARIO)
    project.path.joinpath("loom-policy.toml").write_text("[tolerance]\ncost = 0.5\n")
    modules = loaded(project, "--loom-policy=loom-policy.toml")
    assert "tomllib" in modules


def test_a_bad_policy_file_is_still_named_with_its_toml_error(project: pytest.Pytester) -> None:
    project.path.joinpath("research.loom.yaml").write_text(SCENARIO)
    project.path.joinpath("loom-policy.toml").write_text("[tolerance\n")
    result = project.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "--loom-scenarios",
        "--loom-policy=loom-policy.toml",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*policy file *loom-policy.toml: not valid TOML: *"])
