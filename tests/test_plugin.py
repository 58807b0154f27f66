"""The plugin as users meet it: collection, options, failure output, snapshots, xdist."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

LOOPS = """
from pytest_loom import Lab, Loop, score_at_least


def refine(state, ctx):
    text = ctx.llm.complete(PROMPT.format(draft=state["draft"]), model="gpt-4o").text
    return {"draft": text, "score": round(state["score"] + 0.3, 2)}


PROMPT = "Improve: {draft}"


def build(lab: Lab) -> Loop:
    return lab.loop(refine, scorer=lambda s: s["score"], converge_on=score_at_least(0.9))


def research(state, ctx):
    ctx.llm.complete("next source", model="gpt-4o")
    return {"n": state["n"] + 1}


def build_research(lab: Lab) -> Loop:
    return lab.loop(research)
"""

SCENARIO = """\
version: 1
entry: loops:build
input: {draft: "v0", score: 0.0}
budget: {usd: 1.0, iterations: 10}
llm:
  rules:
    - match: {contains: "Improve"}
      reply: {text: "better", usage: {input: 100, output: 50}}
expect:
  stop: converged
  steps: 3
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(loops=LOOPS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    pytester.path.joinpath("scenarios").mkdir()
    return pytester


def write(pytester: pytest.Pytester, name: str, text: str) -> Path:
    path = pytester.path / "scenarios" / name
    path.write_text(textwrap.dedent(text))
    return path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def no_internal_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str()
    assert "pytest_loom/" not in text and "pytest_loom\\" not in text, text


def test_scenarios_collected_only_when_asked(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO)
    assert run(project, "--collect-only", "-q").ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = run(project, "--loom-scenarios", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["scenarios/refine.loom.yaml::refine"])


def test_ini_switch_and_glob(project: pytest.Pytester) -> None:
    write(project, "refine.scenario.yml", SCENARIO)
    project.makeini(
        "[pytest]\npythonpath = .\nloom_scenarios = true\nloom_scenario_glob = *.scenario.yml\n"
    )
    run(project, "--collect-only", "-q").stdout.fnmatch_lines(
        ["scenarios/refine.scenario.yml::refine"]
    )


def test_snapshot_lifecycle(project: pytest.Pytester) -> None:
    scenario = write(project, "refine.loom.yaml", SCENARIO)
    first = run(project, "--loom-scenarios")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    first.stdout.fnmatch_lines(["*does not exist*", "*--snapshot-update*"])

    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=1)
    snapshot = project.path / "scenarios/__snapshots__/refine.loom/refine.run.json"
    assert snapshot.is_file()
    run(project, "--loom-scenarios").assert_outcomes(passed=1)

    # A budget change that turns convergence into budget exhaustion: a per-step diff,
    # the stop-reason change first.
    scenario.write_text(
        SCENARIO.replace("usd: 1.0", "usd: 0.002").replace("converged", "converged")
    )
    changed = run(project, "--loom-scenarios")
    changed.assert_outcomes(failed=1)
    text = changed.stdout.str()
    assert "stop: converged -> budget_exhausted(usd)" in text
    assert text.index("stop: converged -> budget_exhausted(usd)") < text.index("totals:")
    assert "step 3: removed" in text
    assert "expect.stop: expected converged, got budget_exhausted(usd)" in text
    no_internal_traceback(changed)

    scenario.write_text(
        SCENARIO.replace("usd: 1.0", "usd: 0.002")
        .replace("stop: converged", "stop: budget_exhausted(usd)")
        .replace("steps: 3", "steps: 2")
    )
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=1)
    run(project, "--loom-scenarios").assert_outcomes(passed=1)


def test_prompt_change_names_the_step_and_field(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO)
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=1)
    project.makepyfile(loops=LOOPS.replace("Improve: {draft}", "Improve this draft: {draft}"))
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*step 1: llm_calls[[]0[]].request_digest: *"])


def test_unused_snapshot_is_reported_and_cleaned(project: pytest.Pytester) -> None:
    scenario = write(project, "refine.loom.yaml", SCENARIO)
    write(project, "other.loom.yaml", SCENARIO)
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=2)
    scenario.unlink()
    result = run(project, "--loom-scenarios")
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
    assert result.ret != pytest.ExitCode.OK
    run(project, "--loom-scenarios", "--snapshot-update").stdout.fnmatch_lines(
        ["*1 unused*deleted*"]
    )
    assert not (project.path / "scenarios/__snapshots__/refine.loom").exists()


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (
            ("budget:", "budjet:"),
            ["*refine.loom.yaml:4: budjet: unknown key*", "*did you mean 'budget'?*"],
        ),
        (
            ("iterations: 10", "iterations: ten"),
            ["*refine.loom.yaml:4: budget.iterations*expected*"],
        ),
        (
            ("entry: loops:build\n", ""),
            ["*refine.loom.yaml:1*missing required key 'entry'*", "*entry:*"],
        ),
    ],
)
def test_schema_errors_name_file_line_and_hint(
    project: pytest.Pytester, mutation: tuple[str, str], expected: list[str]
) -> None:
    write(project, "refine.loom.yaml", SCENARIO.replace(*mutation))
    result = run(project, "--loom-scenarios")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(expected)
    no_internal_traceback(result)


def test_missing_entry_module(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO.replace("loops:build", "no_such_loops:build"))
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*refine.loom.yaml:2: entry point 'no_such_loops:build': no module named*",
            "*hint:*pythonpath*",
        ]
    )
    no_internal_traceback(result)


def test_missing_entry_attribute_suggests(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO.replace("loops:build", "loops:buidl"))
    result = run(project, "--loom-scenarios")
    result.stdout.fnmatch_lines(["*has no attribute 'buidl'*", "*did you mean 'build'?*"])


def test_entry_raising_at_import(project: pytest.Pytester) -> None:
    project.makepyfile(broken="import os\nKEY = os.environ['NO_SUCH_API_KEY']\n")
    write(project, "refine.loom.yaml", SCENARIO.replace("loops:build", "broken:build"))
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*refine.loom.yaml:2: entry point 'broken:build' raised while importing: KeyError*",
            "*at broken.py:2*",
            "*hint:*",
        ]
    )
    no_internal_traceback(result)


def test_uninstalled_runtime_is_one_line(project: pytest.Pytester) -> None:
    from pytest_loom.runtimes import BUILTIN_ADAPTERS, installed

    # loom-runner and loom-agent cannot share an environment, so one of them is always missing.
    missing = [name for name in BUILTIN_ADAPTERS if not installed(name)]
    assert missing
    write(project, "refine.loom.yaml", f"runtime: {missing[0]}\n" + SCENARIO)
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"runtime '{missing[0]}' is not installed: pip install 'pytest-loom[{missing[0]}]'"]
    )
    no_internal_traceback(result)


def test_unknown_runtime_lists_the_known_ones(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", "runtime: loomx\n" + SCENARIO)
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "unknown runtime 'loomx': known runtimes are reference, loomc, loom-runner, "
            "tightloop, loom-agent*"
        ]
    )
    no_internal_traceback(result)


def test_no_loom_scenarios_overrides_the_ini(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO)
    project.makeini("[pytest]\npythonpath = .\nloom_scenarios = true\n")
    assert run(project, "--collect-only", "-q").ret == pytest.ExitCode.OK
    no = run(project, "--no-loom-scenarios", "--collect-only", "-q")
    assert no.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_entry_point_may_name_a_class_attribute(project: pytest.Pytester) -> None:
    project.makepyfile(
        builders="from loops import build\n\nclass Builders:\n    refine = staticmethod(build)\n"
    )
    write(project, "refine.loom.yaml", SCENARIO.replace("loops:build", "builders:Builders.refine"))
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=1)


def test_crashing_twice_resumes_twice(project: pytest.Pytester) -> None:
    faults = "faults:\n  - crash: {step: 2}\n  - crash: {step: 3}\n"
    write(project, "refine.loom.yaml", SCENARIO + faults)
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=1)
    record = (project.path / "scenarios/__snapshots__/refine.loom/refine.run.json").read_text()
    assert record.count('"resumed"') == 2


def test_a_real_kill_resumes_to_the_uninterrupted_record(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO)
    write(project, "killed.loom.yaml", SCENARIO + "faults:\n  - kill: {step: 2}\n")
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=2)
    snapshots = project.path / "scenarios/__snapshots__"
    plain = json.loads((snapshots / "refine.loom/refine.run.json").read_text())
    killed = json.loads((snapshots / "killed.loom/killed.run.json").read_text())
    assert killed["steps"][1].pop("events") == ["resumed"]
    assert plain["steps"][1].pop("events") == []
    assert (killed["steps"], killed["stop"], killed["totals"]) == (
        plain["steps"],
        plain["stop"],
        plain["totals"],
    )


def test_a_kill_without_resume_leaves_a_paused_run(project: pytest.Pytester) -> None:
    head = SCENARIO.partition("expect:")[0]
    faults = "faults:\n  - kill: {step: 3, resume: false}\n"
    write(project, "killed.loom.yaml", head + faults + "expect: {stop: paused, steps: 2}\n")
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=1)
    record = json.loads(
        (project.path / "scenarios/__snapshots__/killed.loom/killed.run.json").read_text()
    )
    assert record["stop"]["raw_status"] == "running"


def test_an_error_in_the_killed_process_is_reported_cleanly(project: pytest.Pytester) -> None:
    project.makepyfile(broken="raise ImportError('no such SDK')\n")
    text = SCENARIO.replace("loops:build", "broken:build") + "faults:\n  - kill: {step: 2}\n"
    write(project, "killed.loom.yaml", text)
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*entry point 'broken:build' raised while importing: ImportError: no such SDK"]
    )
    no_internal_traceback(result)


def test_a_fault_the_run_never_reaches_fails_the_scenario(project: pytest.Pytester) -> None:
    write(
        project, "refine.loom.yaml", SCENARIO + "faults:\n  - crash: {step: 7}\nsnapshot: false\n"
    )
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*refine.loom.yaml:13: faults[[]0[]]: the crash at step 7 never happened: the run ended"
            " after 3 steps (converged)"
        ]
    )


def test_wall_clock_budget_in_fake_time(project: pytest.Pytester) -> None:
    write(
        project,
        "slow.loom.yaml",
        """\
        version: 1
        entry: loops:build_research
        input: {n: 0}
        budget: {wall_clock: 10m}
        llm:
          latency: 2m
          rules: [{match: {contains: next}, reply: {text: ok}}]
        expect: {stop: budget_exhausted(wall_clock), steps: 5}
        """,
    )
    for _ in range(2):
        result = run(project, "--loom-scenarios", "--snapshot-update")
        result.assert_outcomes(passed=1)
    record = (project.path / "scenarios/__snapshots__/slow.loom/slow.run.json").read_text()
    assert '"elapsed_s": 600.0' in record


def test_markers_and_keyword_selection(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO + "markers: [smoke]\nsnapshot: false\n")
    write(project, "other.loom.yaml", SCENARIO + "snapshot: false\n")
    project.makeini("[pytest]\npythonpath = .\nmarkers = smoke: quick ones\n")
    run(project, "--loom-scenarios", "-m", "smoke").assert_outcomes(passed=1)
    run(project, "--loom-scenarios", "-k", "other").assert_outcomes(passed=1)
    run(project, "--loom-scenarios", "-m", "loom_scenario").assert_outcomes(passed=2)


def test_unconsumed_turns_fail_the_scenario(project: pytest.Pytester) -> None:
    extra_turn = "  turns:\n    - {text: never used, match: {contains: nobody-asks}}\n  rules:"
    write(
        project, "refine.loom.yaml", SCENARIO.replace("  rules:", extra_turn) + "snapshot: false\n"
    )
    result = run(project, "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*refine.loom.yaml:6: MockLLM: 1 scripted turn never used*", "*allow_unused*"]
    )


def test_serial_and_xdist_give_identical_snapshots(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    for i in range(4):
        write(
            project,
            f"s{i}.loom.yaml",
            SCENARIO.replace("usd: 1.0", f"usd: {0.001 * (i + 1)}").replace(
                "expect:\n  stop: converged\n  steps: 3\n", ""
            ),
        )
    run(project, "--loom-scenarios", "--snapshot-update").assert_outcomes(passed=4)
    serial = {p.name: p.read_bytes() for p in project.path.rglob("*.run.json")}
    for p in project.path.rglob("*.run.json"):
        p.unlink()
    run(project, "--loom-scenarios", "--snapshot-update", "-n", "2").assert_outcomes(passed=4)
    parallel = {p.name: p.read_bytes() for p in project.path.rglob("*.run.json")}
    assert serial == parallel and len(serial) == 4
    run(project, "--loom-scenarios", "-n", "2").assert_outcomes(passed=4)


def test_nothing_written_outside_tmp(
    project: pytest.Pytester, project_files: Callable[[], set[Path]]
) -> None:
    project.makepyfile(
        writer="""
from pathlib import Path
from pytest_loom import Lab


def build(lab: Lab):
    Path("scratch.txt").write_text("x")
    Path.home().joinpath(".loopcache").write_text("x")
    return lab.loop(lambda s: {"n": s["n"] + 1})
"""
    )
    write(
        project,
        "w.loom.yaml",
        "version: 1\nentry: writer:build\ninput: {n: 0}\nbudget: {iterations: 2}\n"
        "snapshot: false\n",
    )

    before = project_files()
    run(project, "--loom-scenarios").assert_outcomes(passed=1)
    assert project_files() - before == set()
    assert not (Path.home() / ".loopcache").exists()


def test_fixtures_from_python(project: pytest.Pytester) -> None:
    write(project, "refine.loom.yaml", SCENARIO)
    project.makepyfile(
        test_loops="""
import datetime
import time

import pytest
from pytest_loom import Budget, Loop, Rule, Match, Turn


def test_run_scenario(loom_run, loom_snapshot):
    record = loom_run("scenarios/refine.loom.yaml")
    assert record.stop.label == "converged"
    assert loom_snapshot == record


@pytest.mark.loom_clock(start="2030-05-01T12:00:00Z")
def test_clock(loom_clock):
    assert datetime.date.today() == datetime.date(2030, 5, 1)
    before = time.monotonic()
    time.sleep(3600)
    assert time.monotonic() - before == 3600


@pytest.mark.loom_llm(rules=[Rule(Match(contains="hi"), Turn(text="hello", latency_s=5.0))])
def test_llm_and_store(loom_llm, loom_store, loom_clock, loom_run):
    loop = Loop(lambda s, ctx: {"said": ctx.llm.complete("hi").text}, budget=Budget(iterations=2),
                store=loom_store, llm=loom_llm)
    record = loom_run(loop, {})
    assert record.totals.steps == 2 and record.totals.elapsed_s == 10.0
    assert len(loom_llm.requests) == 2


@pytest.mark.loom_llm(turns=[Turn(text="unused")])
def test_unconsumed_turn_fails_at_teardown(loom_llm):
    pass
"""
    )
    run(project, "--snapshot-update", "-k", "test_run_scenario").assert_outcomes(passed=1)
    assert (project.path / "__snapshots__/test_loops/test_run_scenario.run.json").is_file()
    result = run(project)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_unconsumed_turn_fails_at_teardown*", "*turn 1: text 'unused'*"]
    )


def test_plugin_import_is_light() -> None:
    code = (
        "import sys, pytest_loom.plugin, pytest_loom;"
        "heavy = {'yaml', 'orjson', 'sqlite3', 'time_machine', 'syrupy.extensions.single_file',"
        " 'pytest_loom.reference', 'pytest_loom.clock'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
