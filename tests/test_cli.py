"""The ``loom`` command over the runs that ``pytest --loom-scenarios`` saves in pytest's cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_loom import RunRecord
from pytest_loom.cli import main
from pytest_loom.runtimes import installed

REPO = Path(__file__).resolve().parents[1]


def fresh_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    """``loom replay`` runs in this process: import the copied examples, not earlier ones."""
    for name in [m for m in sys.modules if m == "examples" or m.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, name)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The shipped refine scenarios and their example loops, in a fresh folder."""
    fresh_examples(monkeypatch)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.chdir(pytester.path)
    pytester.makeini("[pytest]\npythonpath = .\n")
    shutil.copytree(REPO / "scenarios" / "refine", pytester.path / "scenarios" / "refine")
    shutil.copytree(REPO / "examples" / "refine", pytester.path / "examples" / "refine")
    shutil.copy(REPO / "examples" / "__init__.py", pytester.path / "examples")
    return pytester


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def session(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = pytester.runpytest_subprocess("--loom-scenarios", "-p", "cacheprovider", *args)
    assert result.ret in (0, 1, 5), result.stdout.str()
    return result


def loom(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what pytester printed
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_runs_lists_the_latest_session(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project).assert_outcomes(passed=7)
    status, out, _ = loom(capsys, "runs")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "SCENARIO", "RUNTIME", "STOP", "STEPS", "COST", "CREATED"]
    assert len(lines) == 8
    row = next(line for line in lines if line.startswith("1:scenarios/refine/converged "))
    assert row.split()[1:6] == ["converged", "reference", "converged", "3", "$0.002254"]
    status, out, _ = loom(capsys, "runs", "--json")
    runs = json.loads(out)
    assert [r["id"] for r in runs] == sorted(r["id"] for r in runs)
    converged = next(r for r in runs if r["scenario"] == "converged")
    assert converged["run"] == "1:scenarios/refine/converged"
    assert (converged["stop"], converged["steps"]) == ("converged", 3)


def test_runs_of_every_kept_session_and_the_keep_limit(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    project.makeini("[pytest]\npythonpath = .\nloom_keep_sessions = 2\n")
    for _ in range(3):
        session(project, "-k", "converged")
    out = loom(capsys, "runs", "--all", "--json")[1]
    assert [r["run"] for r in json.loads(out)] == [
        "2:scenarios/refine/converged",
        "3:scenarios/refine/converged",
    ]
    assert loom(capsys, "runs", "--session", "1")[0] == 2
    project.makeini("[pytest]\npythonpath = .\nloom_keep_sessions = 0\n")
    session(project, "-k", "converged")
    assert [r["session"] for r in json.loads(loom(capsys, "runs", "--json")[1])] == [3]


def test_workers_save_into_their_controllers_session(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project, "-n", "2").assert_outcomes(passed=7)
    serial = project.path / ".pytest_cache" / "d" / "loom-runs"
    runs = json.loads(loom(capsys, "runs", "--json")[1])
    assert {r["session"] for r in runs} == {1} and len(runs) == 7
    assert sorted(p.name for p in serial.iterdir()) == ["1"]


def test_a_session_without_scenarios_leaves_no_session(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project, "-k", "no_such_scenario")
    status, out, _ = loom(capsys, "runs")
    assert (status, out.split(" in ")[0]) == (0, "no saved runs")
    assert list((project.path / ".pytest_cache" / "d" / "loom-runs").iterdir()) == []


def test_show_prints_the_steps(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project)
    status, out, _ = loom(capsys, "show", "retried")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "run 1:scenarios/refine/retried: scenario retried on reference 1"
    assert lines[1].endswith("scenarios/refine/retried.loom.yaml")
    assert lines[2].startswith("stop: converged")
    assert lines[3].startswith("totals: 1 step, 4 LLM calls")
    header = next(i for i, line in enumerate(lines) if line.startswith("STEP"))
    assert lines[header].split() == [
        "STEP",
        "COST",
        "CUM",
        "COST",
        "TOKENS",
        "IN/OUT",
        "SCORE",
        "ERROR",
        "EVENTS",
    ]
    assert len(lines) - header - 1 == 1
    assert lines[header + 1].split()[0] == "1" and lines[header + 1].endswith("retried")
    record = json.loads(loom(capsys, "show", "retried", "--json")[1])["record"]
    assert RunRecord.from_dict(record).stop.label == "converged"


def test_diff_puts_the_stop_reason_first(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project, "-k", "converged")
    status, out, _ = loom(capsys, "diff", "1:converged", "converged")
    assert (status, out) == (
        0,
        "1:scenarios/refine/converged and 1:scenarios/refine/converged are the same run\n",
    )
    scenario = project.path / "scenarios" / "refine" / "converged.loom.yaml"
    scenario.write_text(scenario.read_text().replace("usd: 0.50", "usd: 0.001"))
    session(project, "-k", "converged")
    status, out, _ = loom(capsys, "diff", "1:converged", "2:converged")
    assert status == 1
    lines = out.splitlines()
    assert lines[:3] == [
        "--- 1:scenarios/refine/converged",
        "+++ 2:scenarios/refine/converged",
        "stop: converged -> budget_exhausted(usd)",
    ]
    data = json.loads(loom(capsys, "diff", "1:converged", "2:converged", "--json")[1])
    assert data["stop"] == {"a": "converged", "b": "budget_exhausted(usd)"}
    assert data["identical"] is False and data["differences"][0].startswith("stop:")


def test_export_writes_the_record(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project, "-k", "backtrack")
    status, out, _ = loom(capsys, "export", "backtrack", "--json")
    assert status == 0
    record = RunRecord.from_json(out)
    snapshot = project.path / "scenarios/refine/__snapshots__/backtrack.loom/backtrack.run.json"
    committed = RunRecord.from_json(snapshot.read_bytes())
    assert record.to_dict() | {"run_id": ""} == committed.to_dict() | {"run_id": ""}
    target = project.path / "out" / "backtrack.json"
    assert loom(capsys, "export", "backtrack", "-o", str(target))[0] == 0
    assert target.read_text() == out


def test_replay_of_an_unchanged_run_reproduces_it(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project, "-k", "stalled")
    status, out, _ = loom(capsys, "replay", "stalled")
    assert status == 0, out
    assert out.startswith("replay of 1:scenarios/refine/stalled: replayed 3 recorded steps")
    data = json.loads(loom(capsys, "replay", "stalled", "--json")[1])
    saved = json.loads(loom(capsys, "export", "stalled")[1])
    assert data["problems"] == [] and data["record"] == saved


def test_replay_reports_a_divergence_and_how_to_replay_up_to_it(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    session(project, "-k", "converged")
    loop = project.path / "examples" / "refine" / "loop.py"
    loop.write_text(loop.read_text().replace("clearer and more concrete", "shorter"))
    status, out, _ = loom(capsys, "replay", "converged")
    assert status == 1
    assert (
        "replay diverged at step 1, LLM call 1 from the recorded run 1:scenarios/refine/converged"
        in out
    )
    assert (
        "hint: replay only the steps before this one: "
        "loom replay 1:scenarios/refine/converged --from 1" in out
    )


def test_replay_resumes_a_run_that_stopped_at_a_crash(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = project.path / "scenarios" / "refine" / "crash_resume.loom.yaml"
    text = scenario.read_text()
    text = text.replace("crash: {step: 2}", "crash: {step: 2, resume: false}")
    text = text.replace("  latency: 3s\n", "  latency: 3s\n  allow_unused: true\n")
    scenario.write_text(text[: text.index("expect:")])
    session(project, "-k", "crash_resume")
    assert json.loads(loom(capsys, "show", "crash_resume", "--json")[1])["stop"] == "paused"
    status, out, err = loom(capsys, "replay", "crash_resume", "--progress")
    assert status == 0, out
    assert out.startswith("replay of 1:scenarios/refine/crash_resume: resumed from step 2")
    assert "stop: converged" in out
    assert "replaying 1:scenarios/refine/crash_resume: step 2" in err


def test_errors_say_what_to_do(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = loom(capsys, "runs")
    assert status == 2
    assert "hint: run `pytest --loom-scenarios` first, or pass --dir" in err
    session(project)
    status, _, err = loom(capsys, "show", "refine")
    assert status == 2
    assert "run 'refine' is ambiguous in session 1:" in err
    status, _, err = loom(capsys, "show", "nothing_like_it")
    assert "no run matches 'nothing_like_it' in session 1" in err
    status, _, err = loom(capsys, "show", "7:converged")
    assert "there is no session 7" in err
    run_file = next((project.path / ".pytest_cache/d/loom-runs/1").glob("runs-*.json"))
    run_file.write_text("{")
    status, _, err = loom(capsys, "show", "converged")
    assert status == 2
    assert f"{run_file}: not valid JSON" in err
    with pytest.raises(SystemExit):
        main(["replay", "converged", "--from", "0"])
    assert "expected a step number >= 1, got '0'" in capsys.readouterr().err


def test_python_dash_m_and_the_console_script(project: pytest.Pytester) -> None:
    session(project, "-k", "converged")
    env = {**os.environ, "PYTHONPATH": str(project.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_loom", "runs", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["scenario"] == "converged"
    script = Path(sys.executable).with_name("loom")
    assert script.exists(), "the loom console script is installed with the package"


RESUMABLE = {
    "loomc": ("loomc", "crash_paused", "converged"),
    "tightloop": ("tightloop", "killed", "completed"),
    "loom-agent": ("loom_agent", "killed", "completed"),
}
# What the mock must also answer for the run to go on past the step it was killed at.
MORE_TURNS = {
    "loom-agent": (
        "faults:",
        '    - {text: "Loops stop when their check passes.", usage: {input: 320, output: 30}}\n'
        "  allow_unused: true\nfaults:",
    )
}


@pytest.mark.parametrize("runtime", sorted(RESUMABLE))
def test_replay_resumes_crashed_runs_on_the_runtimes(
    runtime: str,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not installed(runtime):
        pytest.skip(f"{runtime} not installed: pip install 'pytest-loom[{runtime}]'")
    example, name, stop = RESUMABLE[runtime]
    fresh_examples(monkeypatch)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.chdir(pytester.path)
    pytester.makeini("[pytest]\npythonpath = .\n")
    target = pytester.path / "scenarios" / runtime
    target.mkdir(parents=True)
    shutil.copy(REPO / "scenarios" / runtime / f"{name}.loom.yaml", target)
    if runtime in MORE_TURNS:
        edit(target / f"{name}.loom.yaml", *MORE_TURNS[runtime])
    shutil.copytree(REPO / "examples" / example, pytester.path / "examples" / example)
    shutil.copy(REPO / "examples" / "__init__.py", pytester.path / "examples")
    session(pytester, "--snapshot-update").assert_outcomes(passed=1)
    assert json.loads(loom(capsys, "show", name, "--json")[1])["stop"] == "paused"
    status, out, _ = loom(capsys, "replay", name, "--json")
    data = json.loads(out)
    assert data["resumed"] is True
    record = RunRecord.from_dict(data["record"])
    assert len(record.steps) >= data["from"], "the run went on past the step it stopped at"
    assert (status, record.stop.label) == (0, stop), data["problems"]
