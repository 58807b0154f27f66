"""What a pytest session imports from the lab: only what it uses.

Each test runs pytest in a subprocess on a small project whose conftest writes the names in
``sys.modules`` at ``pytest_sessionfinish`` (before any plugin's terminal summary), so it sees
exactly what the session loaded, and checks names, never timings (the timings are measured by
``benchmarks/startup.py``).
"""

from __future__ import annotations

import json
import textwrap

import pytest

RECORDER = """
import json
import sys


def pytest_sessionfinish(session):
    with open("loaded-modules.json", "w") as f:
        json.dump(sorted(sys.modules), f)
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

ENTRY_POINT = {"pytest_loom", "pytest_loom.plugin", "pytest_loom.gate"}
"""What registering the plugin imports: the package (lazy re-exports), the entry point and the
drift gate's options and hooks."""

LAB_LIBRARIES = ("yaml", "sqlite3", "orjson", "syrupy.extensions.single_file")
"""What the lab needs to run scenarios and the plugin itself never imports."""

ONLY_WHEN_USED = (
    "hypothesis",
    "pytest_loom.strategies",
    "pytest_loom.properties",
    "pytest_loom._property_items",
    "pytest_loom.adapters",
    "loomc",
    "loom",
    "loom_agent",
    "loop",
    "openai",
    "anthropic",
)
"""Hypothesis, the property suite, the runtime adapters and the runtimes and SDKs they drive."""


UNUSED = (
    "pickle",
    "tomllib",
    "pytest_loom._killrun",
    "pytest_loom.replay",
    "pytest_loom.recorded",
    "pytest_loom._wire",
    "pytest_loom._wire_openai",
    "pytest_loom._wire_anthropic",
    "pytest_loom.cassette",
    "pytest_loom.convergence",
)
"""What a scenario with no kill fault, replay, cassette, SDK call, convergence rule or policy
file never needs."""


@pytest.fixture
def project(research_project: pytest.Pytester) -> pytest.Pytester:
    research_project.makeconftest(RECORDER)
    return research_project


def loaded(project: pytest.Pytester, *args: str, passed: int = 1) -> set[str]:
    """The modules a pytest session over ``project`` had imported when it finished."""
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", *args)
    result.assert_outcomes(passed=passed)
    names: list[str] = json.loads((project.path / "loaded-modules.json").read_text())
    return set(names)


def imported(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """Which of ``packages`` (or modules inside them) are among ``modules``."""
    return sorted(
        m for m in modules if m in packages or m.startswith(tuple(f"{p}." for p in packages))
    )


def test_a_session_without_the_lab_imports_only_the_entry_point(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    modules = loaded(project)
    assert {m for m in modules if m.split(".")[0] == "pytest_loom"} == ENTRY_POINT
    assert imported(modules, (*LAB_LIBRARIES, *ONLY_WHEN_USED)) == []


def test_scenario_files_are_not_read_without_loom_scenarios(project: pytest.Pytester) -> None:
    project.path.joinpath("research.loom.yaml").write_text(SCENARIO)
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    modules = loaded(project)
    assert {m for m in modules if m.split(".")[0] == "pytest_loom"} == ENTRY_POINT


def test_a_disabled_plugin_is_not_imported_at_all(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    modules = loaded(project, "-p", "no:loom")
    assert imported(modules, ("pytest_loom",)) == []


def test_a_scenario_session_loads_no_hypothesis_adapters_or_sdks(
    project: pytest.Pytester,
) -> None:
    project.path.joinpath("research.loom.yaml").write_text(SCENARIO)
    modules = loaded(project, "--loom-scenarios")
    assert {"pytest_loom.runner", "pytest_loom.reference", "yaml", "sqlite3"} <= modules
    assert imported(modules, ONLY_WHEN_USED) == []


def test_the_clock_fixture_loads_the_clock_and_not_the_scenario_machinery(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_clock=textwrap.dedent(
            """
            import time


            def test_ten_minutes_pass_at_once(loom_clock):
                before = time.monotonic()
                loom_clock.advance(600)
                assert time.monotonic() - before == 600
            """
        )
    )
    modules = loaded(project)
    assert "pytest_loom.clock" in modules
    assert imported(modules, LAB_LIBRARIES) == []
    assert imported(modules, ONLY_WHEN_USED) == []
    assert imported(modules, ("pytest_loom.scenario", "pytest_loom.store")) == []


def test_the_property_suite_loads_hypothesis_when_asked(project: pytest.Pytester) -> None:
    """The other side of the bargain: what is used does load. ``--hypothesis-profile`` may name
    the lab's profiles, which exist before Hypothesis' plugin loads the profile."""
    project.makepyfile(
        test_prop=textwrap.dedent(
            """
            from hypothesis import settings

            from pytest_loom import property_test

            test_budget = property_test("reference")


            def test_profile_loaded():
                assert settings.default.derandomize and settings.default.database is None
            """
        )
    )
    modules = loaded(project, "--hypothesis-profile=loom-ci", "-k", "profile_loaded")
    assert {"hypothesis", "pytest_loom.properties", "pytest_loom.strategies"} <= modules


def test_the_entry_point_knows_the_lab_s_profile_names() -> None:
    from pytest_loom.plugin import _LOOM_PROFILES
    from pytest_loom.properties import CI_PROFILE, DEV_PROFILE

    assert (DEV_PROFILE, CI_PROFILE) == _LOOM_PROFILES


def test_a_plain_scenario_session_loads_no_replay_recording_kill_or_toml(
    project: pytest.Pytester,
) -> None:
    project.path.joinpath("research.loom.yaml").write_text(SCENARIO)
    modules = loaded(project, "--loom-scenarios")
    assert {"pytest_loom.runner", "pytest_loom.store", "pytest_loom.intercept"} <= modules
    assert sorted(modules & set(UNUSED)) == []


def test_a_kill_fault_loads_the_kill_runner(project: pytest.Pytester) -> None:
    killed = SCENARIO.replace("snapshot: false", "faults:\n  - {kill: {step: 2}}\nsnapshot: false")
    project.path.joinpath("research.loom.yaml").write_text(killed)
    modules = loaded(project, "--loom-scenarios")
    assert {"pytest_loom._killrun", "pickle"} <= modules
    assert "pytest_loom.recorded" not in modules


def test_a_policy_file_loads_the_toml_reader(project: pytest.Pytester) -> None:
    project.path.joinpath("research.loom.yaml").write_text(SCENARIO)
    project.path.joinpath("loom-policy.toml").write_text("[tolerance]\ncost = 0.5\n")
    modules = loaded(project, "--loom-scenarios", "--loom-policy=loom-policy.toml")
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
