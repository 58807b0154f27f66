"""What the drift gate keeps, sends and loads: a run that matches its snapshot is judged on its
totals, yet a change in any one step is still caught (serially, under xdist and against a
``--loom-baseline`` summary); per-step series are kept only for a report; an xdist worker's
entry reaches the controller whole; the policy and report modules load only when used."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_loom.drift import Change, measure, step_series
from pytest_loom.gate import _entry_text, _read_entries
from pytest_loom.record import RunRecord
from pytest_loom.summary import Entry, Judged

REPO = Path(__file__).resolve().parent.parent

SCENARIO = """\
version: 1
entry: loops:build
input: {{n: 0}}
budget: {{iterations: {steps}}}
llm:
  rules:
    - match: {{contains: "next source"}}
      reply: {{text: "a source", usage: {{input: 100, output: 20}}}}
"""

# Step 3 gets another reply with the same usage: one step's content changes, no total does.
STEP_3_CHANGED = """\
    - match: {contains: "next source 2"}
      reply: {text: "another source", usage: {input: 100, output: 20}}
"""

RECORDER = """
import json
import sys

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    gate = session.config.pluginmanager.get_plugin("loom-gate-session")
    kept = {}
    for nodeid, entry in (gate.entries if gate is not None else {}).items():
        if not isinstance(entry, str):  # an xdist worker's entry arrives as text
            kept[nodeid] = [len(entry.now.series), len(entry.now.tools)]
    with open("kept.json", "w") as f:
        json.dump(kept, f)


def pytest_unconfigure(config):
    with open("loaded-modules.json", "w") as f:
        json.dump(sorted(m for m in sys.modules if m.startswith("pytest_loom")), f)
"""

GATE_MODULES = (
    "pytest_loom.drift",
    "pytest_loom.summary",
    "pytest_loom.policy",
    "pytest_loom.report_text",
    "pytest_loom.reports",
    "pytest_loom._html",
)


@pytest.fixture
def project(research_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """Three research scenarios (3, 4 and 5 steps) with their snapshots recorded."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    research_project.makeconftest(RECORDER)
    for steps in (3, 4, 5):
        (research_project.path / f"r{steps}.loom.yaml").write_text(SCENARIO.format(steps=steps))
    run(research_project, "--snapshot-update").assert_outcomes(passed=3)
    return research_project


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--loom-scenarios", *args)


def change_step_3(pytester: pytest.Pytester) -> None:
    path = pytester.path / "r4.loom.yaml"
    path.write_text(path.read_text().replace("  rules:\n", "  rules:\n" + STEP_3_CHANGED))


def gate_section(result: pytest.RunResult) -> list[str]:
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "loom drift gate" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("loom gate "))
    return lines[start : end + 1]


def properties(path: Path) -> dict[str, dict[str, str | None]]:
    return {
        str(case.get("name")): {p.get("name") or "": p.get("value") for p in case.iter("property")}
        for case in ET.parse(path).iter("testcase")
    }


def test_a_change_in_one_step_is_caught_serially_and_under_xdist_alike(
    project: pytest.Pytester,
) -> None:
    unchanged = run(project, "-p", "no:xdist")
    unchanged.assert_outcomes(passed=3)
    unchanged.stdout.fnmatch_lines(["loom gate passed: 3 scenarios, 0 drifted*"])

    change_step_3(project)
    serial = run(project, "-p", "no:xdist", "--junitxml=serial.xml")
    serial.assert_outcomes(passed=2, failed=1)
    serial.stdout.fnmatch_lines(
        [
            "*content: step 3 differs: its prompts, replies, tool calls, score or state changed",
            "  FAIL r4.loom.yaml::r4 [record]",
            "       steps 4; cost $*; tokens 480",
            "       content: step 3 differs: fail, *",
            "loom gate FAILED: 1 of 3 scenarios drifted*",
        ]
    )
    parallel = run(project, "-n", "2", "--junitxml=parallel.xml")
    parallel.assert_outcomes(passed=2, failed=1)
    assert gate_section(parallel) == gate_section(serial)
    junit = properties(project.path / "serial.xml")
    assert junit == properties(project.path / "parallel.xml")
    assert junit["r4"]["loom_drift"] == "record" and junit["r4"]["loom_drift_action"] == "fail"
    assert junit["r3"] == {
        "loom_stop": "budget_exhausted(iterations)",
        "loom_baseline_stop": "budget_exhausted(iterations)",
        "loom_steps": "3",
        "loom_llm_calls": "3",
        "loom_input_tokens": "300",
        "loom_output_tokens": "60",
        "loom_cost_usd": "0.00135",
        "loom_elapsed_s": "0",
        "loom_trials": "1",
        "loom_drift": "none",
        "loom_drift_action": "none",
    }


def test_a_baseline_summary_catches_a_change_in_one_step(project: pytest.Pytester) -> None:
    assert run(project, "--loom-report=main").ret == pytest.ExitCode.OK
    change_step_3(project)
    # The branch accepts the change into its snapshots: they pass, the gate warns.
    updated = run(project, "--snapshot-update")
    updated.stdout.fnmatch_lines(["*content: step 3 differs: warn, *accepted by --snapshot-update"])
    assert run(project).ret == pytest.ExitCode.OK
    # Against main's summary, whose step digests it compares with, the change fails.
    for args in (("-p", "no:xdist"), ("-n", "2")):
        against_main = run(project, "--loom-baseline=main", *args)
        assert against_main.ret == pytest.ExitCode.TESTS_FAILED
        against_main.stdout.fnmatch_lines(
            ["  FAIL r4.loom.yaml::r4 [record]", "loom gate FAILED: 1 of 3 scenarios drifted*"]
        )


def test_only_a_report_keeps_per_step_series(project: pytest.Pytester) -> None:
    change_step_3(project)  # a drifted scenario measures its steps to compare them
    assert run(project, "-p", "no:xdist").ret == pytest.ExitCode.TESTS_FAILED
    kept = json.loads((project.path / "kept.json").read_text())
    assert kept == {f"r{n}.loom.yaml::r{n}": [0, 0] for n in (3, 4, 5)}

    assert run(project, "-p", "no:xdist", "--loom-report=out").ret == 1
    kept = json.loads((project.path / "kept.json").read_text())
    assert kept == {f"r{n}.loom.yaml::r{n}": [n, 0] for n in (3, 4, 5)}  # no tool calls
    summary = json.loads((project.path / "out" / "summary.json").read_text())
    assert [len(s["now"]["series"]) for s in summary["scenarios"]] == [3, 4, 5]


def loaded(project: pytest.Pytester, *args: str) -> list[str]:
    run(project, "-p", "no:xdist", *args)
    names: list[str] = json.loads((project.path / "loaded-modules.json").read_text())
    return [m for m in names if m in GATE_MODULES]


def test_the_gate_loads_its_policy_and_report_modules_only_when_used(
    project: pytest.Pytester,
) -> None:
    # Every run matches its snapshot: the default policy never has anything to judge.
    assert loaded(project) == [
        "pytest_loom.drift",
        "pytest_loom.report_text",
        "pytest_loom.summary",
    ]
    with_report = loaded(project, "--loom-report=out")
    assert {"pytest_loom.reports", "pytest_loom._html"} <= set(with_report)
    project.makeini("[pytest]\npythonpath = .\nloom_tolerance_cost = 5\n")
    assert "pytest_loom.policy" in loaded(project)  # read (and checked) at start-up
    # A session with the gate on that runs no scenario loads none of the gate's modules.
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    project.makeini("[pytest]\npythonpath = .\nloom_scenarios = true\n")
    assert loaded(project, "test_plain.py") == []


FIXER_SNAPSHOT = REPO / "scenarios/fixer/__snapshots__/completed.loom/completed.run.json"


def test_step_digests_are_stable_so_earlier_summaries_still_compare() -> None:
    text = FIXER_SNAPSHOT.read_text()
    record = RunRecord.from_json(text)
    series = step_series(record, text)
    assert [p.content for p in series] == ["7b689051b251011f", "24c25e7a723498e3"]
    now = measure([record], series)
    assert now.tools == tuple(c.name for s in record.steps for c in s.tool_calls)
    assert measure([record]).tools == () and measure([record]).series == ()


def test_an_entry_crosses_from_a_worker_whole() -> None:
    text = FIXER_SNAPSHOT.read_text()
    record = RunRecord.from_json(text)
    full = measure([record], step_series(record, text))
    totals = measure([record])
    cost = Change("cost_usd", 0.003, 0.00327, "regression", 5.0)
    entries = {
        "same": Entry("same", "s", "reference", totals, totals, "snapshot"),
        "new": Entry("new", "n", "reference", full, None, "summary"),
        "drifted": Entry(
            "drifted",
            "d",
            "reference",
            full,
            totals,
            "snapshot",
            (Judged(cost, "fail", "beyond the 5% tolerance"),),
        ),
    }
    read = _read_entries({n: _entry_text(e) for n, e in entries.items()})
    assert read == tuple(entries.values())
    assert read[0].baseline is read[0].now  # sent once, as the run's own
    assert len(_entry_text(entries["same"])) < 250
