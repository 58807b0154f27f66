"""What keeps scenario items cheap, checked as behaviour: the files a run makes, where its
checkpoints live, how saved runs are written, and that isolation still holds."""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import orjson
import pytest

from pytest_loom import runlog
from pytest_loom.clock import FakeClock
from pytest_loom.runner import MEMORY, run_scenario, store_location
from pytest_loom.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]

LOOPS = """
import os
from pathlib import Path

from pytest_loom import Lab


def count(state, ctx):
    ctx.llm.complete(f"step {state['n']} in {os.getcwd()}", model="gpt-4o")
    return {"n": state["n"] + 1}


def build(lab: Lab):
    assert os.listdir(".") == [] and os.listdir(Path.home()) == [], "a run starts empty"
    return lab.loop(count)


def quiet(state, ctx):
    ctx.llm.complete(f"step {state['n']}", model="gpt-4o")
    return {"n": state["n"] + 1}


def build_quiet(lab: Lab):
    return lab.loop(quiet)


def build_writer(lab: Lab):
    loop = build(lab)
    Path("out.txt").write_text("x")
    Path.home().joinpath(".cache").mkdir()
    Path.home().joinpath(".cache", "x").write_text("x")
    return loop
"""

SCENARIO = """\
version: 1
entry: loops:{entry}
input: {{n: 0}}
budget: {{iterations: 2}}
llm:
  rules:
    - match: {{contains: "step"}}
      reply: {{text: "ok", usage: {{input: 10, output: 5}}}}
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(loops=LOOPS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def scenario_file(project: pytest.Pytester, name: str, entry: str = "build") -> Path:
    path = project.path / f"{name}.loom.yaml"
    path.write_text(SCENARIO.format(entry=entry))
    return path


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_runs_that_write_nothing_make_no_directory_of_their_own(
    project: pytest.Pytester,
) -> None:
    for i in range(3):
        scenario_file(project, f"s{i}")
    basetemp = project.path.parent / "basetemp"
    result = project.runpytest_subprocess(
        "--loom-scenarios", "--snapshot-update", f"--basetemp={basetemp}"
    )
    result.assert_outcomes(passed=3)
    # One sandbox for the process, still empty; no tmp_path, no database file per scenario.
    made = [path for path in tree(basetemp) if not path.endswith("current")]  # pytest's link
    assert made == ["loom-sandbox0", "loom-sandbox0/home", "loom-sandbox0/work"]
    snapshot = (project.path / "__snapshots__/s0.loom/s0.run.json").read_text()
    assert "in <tmp>/work" in snapshot  # the prompt's working directory, masked as before


def test_a_run_that_leaves_files_keeps_them_and_the_next_run_starts_empty(
    project: pytest.Pytester,
) -> None:
    scenario_file(project, "a_writer", entry="build_writer")
    scenario_file(project, "b_reader")
    basetemp = project.path.parent / "basetemp"
    result = project.runpytest_subprocess(
        "--loom-scenarios", "--snapshot-update", f"--basetemp={basetemp}", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=2)  # b_reader's build asserts that it starts empty
    assert tree(basetemp / "a_writer0") == [
        "home",
        "home/.cache",
        "home/.cache/x",
        "work",
        "work/out.txt",
    ]
    assert tree(basetemp / "loom-sandbox0") == ["home", "work"]
    assert not (basetemp / "b_reader0").exists()
    snapshot = (project.path / "__snapshots__/a_writer.loom/a_writer.run.json").read_text()
    assert "in <tmp>/work" in snapshot and str(basetemp) not in snapshot


def test_trials_that_leave_files_keep_them_per_trial(project: pytest.Pytester) -> None:
    scenario_file(project, "writer", entry="build_writer")
    basetemp = project.path.parent / "basetemp"
    result = project.runpytest_subprocess(
        "--loom-scenarios", "--snapshot-update", "--loom-trials=3", f"--basetemp={basetemp}"
    )
    result.assert_outcomes(passed=1)
    kept = tree(basetemp / "writer0")
    assert "work/out.txt" in kept
    assert "trial-2/work/out.txt" in kept and "trial-3/home/.cache/x" in kept


def test_the_reference_runtime_keeps_checkpoints_in_memory_unless_a_kill_needs_a_file(
    tmp_path: Path,
) -> None:
    refine = REPO / "scenarios" / "refine"
    workdir = tmp_path / "work"
    converged = load_scenario(refine / "converged.loom.yaml")
    assert store_location(converged, workdir) == MEMORY
    assert store_location(load_scenario(refine / "crash_resume.loom.yaml"), workdir) == MEMORY
    killed = load_scenario(refine / "kill_resume.loom.yaml")
    assert store_location(killed, workdir) == workdir / "kill_resume.checkpoints.db"
    tightloop = load_scenario(REPO / "scenarios" / "tightloop" / "completed.loom.yaml")
    assert store_location(tightloop, workdir) == workdir / "completed.checkpoints.db"
    workdir.mkdir()
    with FakeClock(start=converged.clock.start) as clock:
        run = run_scenario(converged, clock=clock, workdir=workdir)
    assert run.problems == [] and run.record.totals.steps == 3
    assert list(workdir.iterdir()) == []


def test_kill_scenarios_keep_their_database_for_the_loom_command(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\npythonpath = .\n")
    for part in ("scenarios/refine", "examples/refine"):
        source = REPO / part
        for path in source.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                target = pytester.path / part / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    (pytester.path / "examples" / "__init__.py").write_text("")
    result = pytester.runpytest_subprocess(
        "--loom-scenarios", "-p", "cacheprovider", "-k", "kill_resume or converged"
    )
    result.assert_outcomes(passed=2)
    session = runlog.sessions(pytester.path / ".pytest_cache" / "d" / runlog.CACHE_KEY)[-1]
    runs = {run.id.rpartition("/")[2]: run for run in session.runs()}
    assert runs["converged"].workdir is None  # left no file: nothing kept
    kept = runs["kill_resume"].workdir
    assert kept is not None
    assert (kept / "work" / "kill_resume.checkpoints.db").is_file()


def test_each_process_writes_its_runs_once(project: pytest.Pytester) -> None:
    for i in range(4):
        scenario_file(project, f"s{i}")
    cache = project.path / ".pytest_cache" / "d" / runlog.CACHE_KEY
    project.runpytest_subprocess("--loom-scenarios", "-p", "cacheprovider", "--snapshot-update")
    assert sorted(p.name for p in (cache / "1").iterdir()) == ["runs-main-1.json", "session.json"]
    written = json.loads((cache / "1" / "runs-main-1.json").read_text())
    assert [run["id"] for run in written["runs"]] == ["s0", "s1", "s2", "s3"]
    project.runpytest_subprocess("--loom-scenarios", "-p", "cacheprovider", "-n", "2")
    files = sorted(p.name for p in (cache / "2").iterdir())
    assert files == ["runs-gw0-1.json", "runs-gw1-1.json", "session.json"]
    runs = runlog.sessions(cache)[-1].runs()
    assert [run.id for run in runs] == ["s0", "s1", "s2", "s3"]
    assert [run.record.totals.steps for run in runs] == [2, 2, 2, 2]


def test_a_process_writes_a_file_per_batch_of_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runlog, "BATCH", 2)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    path = REPO / "scenarios" / "refine" / "converged.loom.yaml"
    scenario = load_scenario(path)
    with FakeClock(start=scenario.clock.start) as clock:
        record = run_scenario(scenario, clock=clock, workdir=tmp_path).record
    session = runlog.start_session(tmp_path / "runs", keep=5, rootdir=tmp_path, pythonpath=[])
    for i in range(5):
        session.save(f"run{i}", path, None, record)
        if i == 2:
            assert sorted(p.name for p in session.path.glob("runs-*")) == ["runs-main-1.json"]
    session.flush()
    session.flush()  # nothing new: no file
    names = sorted(p.name for p in session.path.glob("runs-*"))
    assert names == ["runs-main-1.json", "runs-main-2.json", "runs-main-3.json"]
    runs = runlog.open_session(session.path).runs()
    assert [run.id for run in runs] == [f"run{i}" for i in range(5)]
    assert all(run.record == record for run in runs)


def test_sessions_of_another_format_are_removed_when_a_session_starts(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    old = root / "1"
    old.mkdir(parents=True)
    (old / "session.json").write_bytes(orjson.dumps({"format": 1, "created": "x"}))
    (old / "converged.json").write_text("{}")
    kept = runlog.start_session(root, keep=5, rootdir=tmp_path, pythonpath=[])
    assert kept.number == 2
    assert sorted(p.name for p in root.iterdir()) == ["2"]
    assert runlog.sessions(root) == [kept]


def test_the_gate_says_the_same_under_xdist_from_the_results_workers_send(
    project: pytest.Pytester,
) -> None:
    for i in range(3):
        scenario_file(project, f"s{i}", entry="build_quiet")
    project.runpytest_subprocess("--loom-scenarios", "--snapshot-update").assert_outcomes(passed=3)
    drifted = project.path / "s1.loom.yaml"
    drifted.write_text(drifted.read_text().replace("iterations: 2", "iterations: 3"))

    def gate_section(*args: str) -> list[str]:
        result = project.runpytest_subprocess("--loom-scenarios", *args)
        result.assert_outcomes(passed=2, failed=1)
        lines = result.outlines
        start = next(i for i, line in enumerate(lines) if "loom drift gate" in line)
        end = next(i for i, line in enumerate(lines) if "snapshot report summary" in line)
        return lines[start:end]

    serial = gate_section("-p", "no:xdist")
    assert any("loom gate FAILED: 1 of 3 scenarios" in line for line in serial)
    assert gate_section("-n", "2") == serial


def test_a_sandbox_run_that_removes_its_directories_gets_them_back(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_loom._isolation import Sandbox

    monkeypatch.setenv("LOOM_TRIAL", "outer")
    sandbox = Sandbox(tmp_path_factory)
    home = str(Path.home())
    with sandbox.run(lambda: tmp_path_factory.mktemp("kept"), {"LOOM_TRIAL": "1"}) as workdir:
        assert Path.cwd() == workdir and os.environ["LOOM_TRIAL"] == "1"
        os.rmdir(Path.home())  # the run leaves no file, but no home either
    assert sandbox.kept is None
    assert (Path.home(), os.environ["LOOM_TRIAL"]) == (Path(home), "outer")
    with sandbox.run(lambda: tmp_path_factory.mktemp("kept")) as workdir:
        assert os.listdir(workdir) == os.listdir(Path.home()) == []
        assert Path.home() == sandbox.root / "home"
    assert sandbox.kept is None and sorted(os.listdir(sandbox.root)) == ["home", "work"]


EXIT_PROBE = """
import atexit
import gc
import os


def pytest_configure(config):
    # Registered before the lab's own exit hook, so it runs after it (atexit is LIFO). What
    # the interpreter keeps frozen from its start (375 objects on 3.12) does not count.
    path = os.path.join(str(config.rootpath), "frozen-at-exit.txt")
    before = gc.get_freeze_count()
    atexit.register(lambda: open(path, "w").write(str(gc.get_freeze_count() - before)))
"""


def test_a_scenario_session_exits_without_tracing_what_it_leaves_alive(
    project: pytest.Pytester,
) -> None:
    scenario_file(project, "s0")
    project.makeconftest(EXIT_PROBE)
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    probe = project.path / "frozen-at-exit.txt"

    project.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert probe.read_text() == "0"  # a session without scenarios: the process as pytest left it

    result = project.runpytest_subprocess("--loom-scenarios", "--snapshot-update")
    result.assert_outcomes(passed=2)
    assert int(probe.read_text()) > 1000  # shutdown's collector skips the session's objects


FREEZE_PROBE = """
import gc


def test_probe():
    with open("frozen-in-test.txt", "w") as f:
        f.write(str(gc.get_freeze_count()))
"""


def test_a_scenario_session_sets_aside_what_collection_left_alive(
    project: pytest.Pytester,
) -> None:
    scenario_file(project, "s0")
    project.makepyfile(test_probe=FREEZE_PROBE)
    probe = project.path / "frozen-in-test.txt"
    before = gc.get_freeze_count()

    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert int(probe.read_text()) == before  # a session without scenarios: as pytest leaves it

    args = ("--loom-scenarios", "--snapshot-update", "-p", "no:cacheprovider")
    project.runpytest(*args).assert_outcomes(passed=2)
    # The tests ran with collection's objects (and this host's) out of the collector's way...
    assert int(probe.read_text()) > before + 1000
    # ...which gets them back when the session ends: an in-process session leaves its host thawed.
    assert gc.get_freeze_count() <= before


def test_pytest_does_not_walk_snapshot_directories_when_scenarios_run(
    project: pytest.Pytester,
) -> None:
    scenario_file(project, "s0", entry="build_quiet")
    project.runpytest_subprocess("--loom-scenarios", "--snapshot-update").assert_outcomes(passed=1)
    # A test module inside a snapshot directory shows whether pytest looked there.
    (project.path / "__snapshots__" / "test_inside.py").write_text("def test_x():\n    pass\n")
    project.runpytest_subprocess("--loom-scenarios").assert_outcomes(passed=1)
    project.runpytest_subprocess().assert_outcomes(passed=1)  # not a scenario session: as before


def test_scenarios_without_syrupy_fail_with_a_hint(project: pytest.Pytester) -> None:
    scenario_file(project, "s0")
    result = project.runpytest_subprocess("--loom-scenarios", "-p", "no:syrupy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*loom scenario snapshots need syrupy's pytest plugin*(-p no:syrupy)",
            "*hint: enable it, or set `snapshot: false` in the scenario",
        ]
    )
    assert "Traceback" not in result.stdout.str()
