"""Suite throughput: scenario items next to plain pytest tests, serially and under xdist.

``benchmarks/run.py`` calls :func:`measure`. Every figure comes from ``pytest`` subprocesses over
projects generated in the benchmark's temporary directory, with a warm bytecode cache; the sides
of a figure run back to back, taking turns at going first, and the medians count:

* issue 2's scenario overhead: N three-step scenarios, each compared with its syrupy snapshot,
  against N bare parametrized tests that each assert a syrupy snapshot of the same run record;
  a third project has the scenario items' shape without the lab (a file per test). Runs with
  a small plugin that marks pytest's phases split each side's wall time;
* suite throughput: 10N ten-step scenarios serially, against 10N trivial tests (``def
  test_x(i): pass``, parametrized), and under ``-n 2`` against plain xdist: the trivial tests
  under ``-n 2`` plus the lab's own serial work as xdist runs any test's, its collection in
  every worker and the rest shared by the two. These runs keep pytest's cache on, as users
  do, so they include saving the runs for the ``loom`` command;
* in-process, the pieces a scenario item is made of.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from run import Detail, Plan, Row, median, ms, progress, remove_db, seconds

from pytest_loom._clockpatch import real_perf_counter as clock
from pytest_loom._isolation import Sandbox
from pytest_loom._yamlnodes import compose
from pytest_loom.clock import FakeClock
from pytest_loom.runner import run_scenario
from pytest_loom.scenario import load_scenario
from pytest_loom.store import CheckpointStore


def measure(plan: Plan, root: Path) -> tuple[list[Row], list[Detail]]:
    """Issue 2's scenario overhead, then the suite's throughput."""
    rows, details = measure_scenarios(plan, root)
    more_rows, more_details = measure_throughput(plan, root)
    return rows + more_rows, details + more_details


# -- issue 2: scenario overhead -------------------------------------------------------------------

ENTRY_MODULE = '''\
"""The loop the benchmark scenarios run: one scripted LLM call per step."""

from typing import Any


def step(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    notes = list(state["notes"])
    reply = ctx.llm.complete(
        [
            {"role": "system", "content": f"You research: {state['question']}"},
            {"role": "user", "content": f"Find the next source ({len(notes)} so far)."},
        ],
        model="gpt-4o",
    )
    return {"question": state["question"], "notes": [*notes, reply.text]}


def build(lab: Any) -> Any:
    return lab.loop(step)
'''

SCENARIO = """\
version: 1
description: "Benchmark copy {i}: three research steps, then the iteration budget stops it."
entry: benchloop:build
input: {{question: "Why do agent loops overspend? ({i})", notes: []}}
budget: {{iterations: 3}}
llm:
  rules:
    - match: {{contains: "(0 so far)"}}
      reply: {{text: "A first source.", usage: {{input: 300, output: 80}}}}
    - match: {{contains: "(1 so far)"}}
      reply: {{text: "A second source.", usage: {{input: 350, output: 90}}}}
    - match: {{contains: "next source"}}
      reply: {{text: "Another source.", usage: {{input: 400, output: 100}}}}
expect:
  stop: budget_exhausted(iterations)
  steps: 3
"""

BARE_TEST = '''\
"""The yardstick: plain parametrized tests, each asserting a snapshot of a run-record-sized dict."""

import json
from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

RECORD = json.loads((Path(__file__).parent / "record.json").read_text())


@pytest.fixture
def snapshot_json(snapshot: Any) -> Any:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("i", range({n}))
def test_record(i: int, snapshot_json: Any) -> None:
    assert snapshot_json == {{**RECORD, "scenario": f"s{{i:03d}}"}}
'''

SHAPE_CONFTEST = '''\
"""One test per *.shape file, with a snapshot: a scenario item's shape without the lab."""

import json
from pathlib import Path

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

RECORD = json.loads((Path(__file__).parent / "record.json").read_text())


def check(request, snapshot):
    expected = {**RECORD, "scenario": request.node.name}
    assert snapshot.use_extension(JSONSnapshotExtension) == expected


class OneTest(pytest.File):
    def collect(self):
        yield pytest.Function.from_parent(self, name=self.path.stem, callobj=check)


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".shape":
        return OneTest.from_parent(parent, path=file_path)
'''

PYTEST_INI = "[pytest]\npythonpath = .\n"

PHASES_PLUGIN = '''\
"""Marks the wall time of pytest's phases; loaded with -p in untimed runs only."""

import json
import os
import time

import pytest

MARKS = {"import": time.perf_counter()}
ITEMS = {"setup": 0.0, "call": 0.0, "teardown": 0.0}


def item_phase(name):
    @pytest.hookimpl(wrapper=True)
    def hook():
        began = time.perf_counter()
        try:
            return (yield)
        finally:
            ITEMS[name] += time.perf_counter() - began

    return hook


def marks_end(name, then=None):
    @pytest.hookimpl(wrapper=True)
    def hook():
        MARKS.setdefault(f"{name} began", time.perf_counter())
        try:
            return (yield)
        finally:
            MARKS[name] = time.perf_counter()
            if then:
                then()

    return hook


def save():
    with open(os.environ["LOOM_BENCH_PHASES"], "w") as f:
        json.dump({**MARKS, **ITEMS}, f)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """In a scenario session, also time each scenario's run (``run_trials``: the fake clock,
    the mock LLM, the loop's steps and checkpoints, the record) inside the call."""
    if not any(hasattr(item, "scenario") for item in session.items):
        return
    from pytest_loom import trials
    from pytest_loom._clockpatch import real_perf_counter

    run_trials = trials.run_trials
    ITEMS["run"] = 0.0

    def timed(*args, **kwargs):
        began = real_perf_counter()
        try:
            return run_trials(*args, **kwargs)
        finally:
            ITEMS["run"] += real_perf_counter() - began

    trials.run_trials = timed


pytest_runtest_setup = item_phase("setup")
pytest_runtest_call = item_phase("call")
pytest_runtest_teardown = item_phase("teardown")
pytest_collection = marks_end("collected")
pytest_runtestloop = marks_end("tested")
pytest_sessionfinish = marks_end("finished")
pytest_unconfigure = marks_end("unconfigured", then=save)
'''
PHASES = (
    ("start", "loading the plugins, configuring, starting the session"),
    ("collection", "collecting the tests: the scenario files are read and checked here"),
    ("setup", "fixtures: syrupy's `snapshot`, `tmp_path_factory`"),
    ("call", "the test itself"),
    ("teardown", "fixture teardown"),
    ("reporting", "the rest of each test's run: reports, logging, the progress line"),
    (
        "finish",
        "session end: pytest's clean-up of old temporary dirs, syrupy's report, saving runs",
    ),
    ("unconfigure", "unconfiguring the plugins"),
    ("process", "starting Python and importing pytest (before the plugins), exiting"),
)


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def run_pytest(
    cwd: Path, args: list[str], expect_tests: int, sandbox: Path, *, phases: Path | None = None
) -> float:
    """Wall time of one pytest process; fails loudly if the tests did not all pass.

    The process keeps its files under ``sandbox`` (inside the benchmark's temporary
    directory): ``TMPDIR`` for pytest's ``tmp_path`` dirs, with pytest's usual numbering and
    cleanup, and ``PYTHONPYCACHEPREFIX`` for bytecode and pytest's rewritten modules, so the
    timed runs see a warm cache, as a developer's second run does, and nothing is written
    next to the sources or into the machine's shared ``/tmp/pytest-of-*``. With ``phases``, the
    process also loads :data:`PHASES_PLUGIN`, which writes its phase times there as JSON.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(sandbox / "pycache")
    env["TMPDIR"] = str(sandbox / "tmp")
    (sandbox / "tmp").mkdir(parents=True, exist_ok=True)
    if phases is not None:
        (sandbox / "loom_bench_phases.py").write_text(PHASES_PLUGIN)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(sandbox), env.get("PYTHONPATH")]))
        env["LOOM_BENCH_PHASES"] = str(phases)
        args = [*args, "-p", "loom_bench_phases"]
    t0 = clock()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = clock() - t0
    if done.returncode != 0 or f"{expect_tests} passed" not in done.stdout:
        raise RuntimeError(
            f"{shlex.join(args)} in {cwd} failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return elapsed


def phase_times(
    project: Path, args: list[str], n: int, sandbox: Path, repeats: int
) -> dict[str, float]:
    """Median seconds of each of :data:`PHASES`, over ``repeats`` untimed runs with the phases
    plugin; they add up to the process's wall time. Also ``run``: the scenarios' own runs,
    part of the call (0 in a session without scenarios)."""
    runs: list[dict[str, float]] = []
    for i in range(repeats):
        out = sandbox / f"phases-{project.name}-{i}.json"
        wall = run_pytest(project, args, n, sandbox, phases=out)
        m = json.loads(out.read_text())
        in_tests = m["setup"] + m["call"] + m["teardown"]
        runs.append(
            {
                "start": m["collected began"] - m["import"],
                "collection": m["collected"] - m["collected began"],
                "setup": m["setup"],
                "call": m["call"],
                "teardown": m["teardown"],
                "reporting": m["tested"] - m["collected"] - in_tests,
                "finish": m["finished"] - m["tested"],
                "unconfigure": m["unconfigured"] - m["finished"],
                "process": wall - (m["unconfigured"] - m["import"]),
                "run": m.get("run", 0.0),
            }
        )
    return {name: median(run[name] for run in runs) for name in runs[0]}


def make_shape_project(root: Path, n: int, record: dict[str, Any]) -> Path:
    project = root / "shape-project"
    project.mkdir()
    (project / "pytest.ini").write_text(PYTEST_INI)
    (project / "record.json").write_text(json.dumps(record))
    (project / "conftest.py").write_text(SHAPE_CONFTEST)
    for i in range(n):
        (project / f"s{i:03d}.shape").write_text(f"s{i:03d}\n")
    return project


def make_loom_project(root: Path, n: int) -> Path:
    project = root / "loom-project"
    project.mkdir()
    (project / "pytest.ini").write_text(PYTEST_INI)
    (project / "benchloop.py").write_text(ENTRY_MODULE)
    for i in range(n):
        (project / f"s{i:03d}.loom.yaml").write_text(SCENARIO.format(i=i))
    return project


def make_bare_project(root: Path, n: int, record: dict[str, Any]) -> Path:
    project = root / "bare-project"
    project.mkdir()
    (project / "pytest.ini").write_text(PYTEST_INI)
    (project / "record.json").write_text(json.dumps(record))
    (project / "test_bare.py").write_text(BARE_TEST.format(n=n))
    return project


def measure_scenarios(plan: Plan, root: Path) -> tuple[list[Row], list[Detail]]:
    n = plan.scenarios
    progress(f"scenario overhead: {n} scenarios vs {n} bare tests, creating snapshots")
    sandbox = root / "sandbox"
    loom = make_loom_project(root, n)
    loom_args = pytest_cmd("--loom-scenarios")
    run_pytest(loom, [*loom_args, "--snapshot-update"], n, sandbox)
    snapshots = sorted(loom.rglob("*.json"))
    if len(snapshots) != n:
        raise RuntimeError(f"expected {n} scenario snapshots, found {len(snapshots)}")
    record = json.loads(snapshots[0].read_text())
    bare = make_bare_project(root, n, record)
    shape = make_shape_project(root, n, record)
    args = pytest_cmd()
    for project in (bare, shape):
        run_pytest(project, [*args, "--snapshot-update"], n, sandbox)
    progress(f"scenario overhead: {plan.scenario_repeats} timed runs each, then phase runs")
    sides = [(loom, loom_args), (bare, args), (shape, args)]
    times: dict[Path, list[float]] = {project: [] for project, _ in sides}
    pieces: list[tuple[float, ...]] = []
    for i in range(plan.scenario_repeats):
        # Back to back, in turns, so drift hits every side alike.
        for project, side_args in sides[i % 3 :] + sides[: i % 3]:
            times[project].append(run_pytest(project, side_args, n, sandbox))
        pieces += item_pieces(root, 7)
    lt, bt, st = (median(times[project]) for project, _ in sides)
    loom_phases, bare_phases = (
        phase_times(project, side_args, n, sandbox, plan.scenario_repeats)
        for project, side_args in sides[:2]
    )
    files = sorted(loom.glob("*.loom.yaml"))[:50]
    texts = [path.read_text() for path in files]
    load_times = [seconds(load_scenario, path) for path in files]
    plain_times = [seconds(compose, text) for text in texts]
    pyyaml_times = [seconds(yaml.compose, text, Loader=yaml.SafeLoader) for text in texts]
    clock_times, run_times = scenario_run_cost(loom, root / "in-process", 50)
    row = Row(
        f"{n} scenarios under `pytest --loom-scenarios` (median of {plan.scenario_repeats})",
        f"{lt:.2f} s",
        f"{bt:.2f} s for {n} bare syrupy tests",
        lt / bt,
        1.3,
    )
    memory, file, new_dir, new_file = (median(column) for column in zip(*pieces, strict=True))
    details = [
        Detail(
            "scenario overhead per test",
            ms((lt - bt) / n),
            f"({lt:.2f} s - {bt:.2f} s) / {n}; snapshot of {len(json.dumps(record))} B of JSON "
            "in both",
        ),
        Detail(
            "the scenario items' shape, without the lab",
            f"{st:.2f} s ({st / bt:.2f}x)",
            f"{n} tests as bare, but one per file (a {len(SHAPE_CONFTEST.splitlines())}-line "
            "conftest collects them), as scenario items are: what pytest alone costs for that "
            "shape",
        ),
        *phase_details(loom_phases, bare_phases, n),
        Detail(
            "checkpoint store of a scenario, in memory",
            ms(memory),
            f'`CheckpointStore(":memory:")` + `close()` (median of {len(pieces)}): what a '
            "reference scenario without a kill fault gets",
        ),
        Detail(
            "the same as a new file",
            ms(file),
            '`CheckpointStore(new file, durability="off")` + `close()` + deleting its files '
            f"(median of {len(pieces)}): what a kill fault or another runtime gets",
        ),
        Detail(
            "strict load of one scenario file",
            ms(median(load_times)),
            f"`load_scenario` of a {len(texts[0])} B `*.loom.yaml` in-process (YAML with line "
            f"numbers, strict validation; median of {len(load_times)})",
        ),
        Detail(
            "of which composing its YAML",
            ms(median(plain_times)),
            f"the fast composer for plain YAML; PyYAML's composer, which reads every other file "
            f"and reports every error, takes {ms(median(pyyaml_times))} on the same file",
        ),
        Detail(
            "run one scenario in-process",
            ms(median(run_times)),
            "`run_scenario` in the process's sandbox, as the item runs it: mock LLM, checkpoint "
            "store in memory, build the loop, 3 steps, rebuild the record from the store, check "
            f"expectations (median of {len(run_times)})",
        ),
        Detail(
            "fake clock start + stop",
            ms(median(clock_times)),
            "installing and removing the `FakeClock` patches, once per scenario "
            f"(median of {len(clock_times)})",
        ),
        Detail(
            "a new directory in the temp dir, and deleting it",
            ms(new_dir),
            f"this file system's cost (median of {len(pieces)}); a `tmp_path` per test with "
            "`work/` and `home/` in it cost three, as scenario items had; they now share one "
            "sandbox per process and make a directory only when a run leaves files",
        ),
        Detail(
            "a new empty file in the temp dir, and deleting it",
            ms(new_file),
            f"(median of {len(pieces)}) each scenario used to write its checkpoint database "
            "and its saved run as files of their own",
        ),
    ]
    return [row], details


def phase_details(
    loom: dict[str, float],
    other: dict[str, float],
    n: int,
    label: str = "per test",
    other_name: str = "bare",
) -> list[Detail]:
    """Where the overhead per test goes, phase by phase (loom minus the other side, by ``n``)."""
    return [
        Detail(
            f"{label}: {name}",
            ms((loom[name] - other[name]) / n),
            f"{ms(loom[name])} under loom, {ms(other[name])} {other_name}, in all: {what}",
        )
        for name, what in PHASES
    ]


def scenario_run_cost(project: Path, root: Path, count: int) -> tuple[list[float], list[float]]:
    """Seconds to start and stop a fake clock, and to run one loaded scenario, in-process."""
    sys.path.insert(0, str(project))  # the scenarios' entry module
    try:
        scenarios = [load_scenario(path) for path in sorted(project.glob("*.loom.yaml"))[:count]]
        sandbox = Sandbox(_TempDirs(root))
        clock_times: list[float] = []
        run_times: list[float] = []
        for scenario in scenarios:
            with sandbox.run(lambda: root / "kept") as workdir:
                t0 = clock()
                fake = FakeClock(start=scenario.clock.start).start()
                t1 = clock()
                run_scenario(scenario, clock=fake, workdir=workdir)
                t2 = clock()
                fake.stop()
                t3 = clock()
            if sandbox.kept is not None:
                raise RuntimeError(f"scenario {scenario.id} left files in {sandbox.kept}")
            clock_times.append(t1 - t0 + t3 - t2)
            run_times.append(t2 - t1)
    finally:
        sys.path.remove(str(project))
    return clock_times, run_times


class _TempDirs:
    """Numbered directories under ``root``, as pytest's ``tmp_path_factory`` makes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made = 0

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        self.made += 1
        path = self.root / f"{basename}{self.made if numbered else ''}"
        path.mkdir(parents=True)
        return path


def item_pieces(root: Path, repeats: int) -> list[tuple[float, ...]]:
    """Seconds for a scenario's checkpoint store in memory and as a new file (opened, closed,
    deleted), and for a new directory and a new empty file (made and deleted)."""
    samples: list[tuple[float, ...]] = []
    path, folder, scratch_file = root / "fresh.db", root / "fresh-dir", root / "fresh.bin"
    for _ in range(repeats):
        t0 = clock()
        CheckpointStore(":memory:", durability="off").close()
        t1 = clock()
        CheckpointStore(path, durability="off").close()
        remove_db(path)
        t2 = clock()
        folder.mkdir()
        folder.rmdir()
        t3 = clock()
        os.close(os.open(scratch_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        scratch_file.unlink()
        t4 = clock()
        samples.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    return samples


# -- issue 7: suite throughput --------------------------------------------------------------------

TEN_STEPS = (
    SCENARIO.replace("three research steps", "ten research steps")
    .replace("iterations: 3", "iterations: 10")
    .replace("steps: 3", "steps: 10")
)

TRIVIAL_TEST = '''\
"""The yardstick: trivial tests."""

import pytest


@pytest.mark.parametrize("i", range({n}))
def test_x(i: int) -> None:
    pass
'''

ONE_TRIVIAL_TEST = "def test_x() -> None:\n    pass\n"


def cached_cmd(*args: str) -> list[str]:
    """``pytest -q`` with pytest's cache on, as users run it (scenario runs get saved)."""
    return [sys.executable, "-m", "pytest", "-q", *args]


def make_project(root: Path, name: str, files: dict[str, str]) -> Path:
    project = root / name
    project.mkdir()
    (project / "pytest.ini").write_text(PYTEST_INI)
    for file_name, text in files.items():
        (project / file_name).write_text(text)
    return project


def measure_throughput(plan: Plan, root: Path) -> tuple[list[Row], list[Detail]]:
    n, repeats = 10 * plan.scenarios, plan.scenario_repeats
    sandbox = root / "sandbox"
    progress(f"suite throughput: {n} ten-step scenarios vs {n} trivial tests, creating snapshots")
    scenarios = {f"s{i:04d}.loom.yaml": TEN_STEPS.format(i=i) for i in range(n)}
    loom = make_project(root, "ten-step-project", {"benchloop.py": ENTRY_MODULE, **scenarios})
    trivial = make_project(root, "trivial-project", {"test_trivial.py": TRIVIAL_TEST.format(n=n)})
    files = make_project(
        root, "trivial-files", {f"test_{i:04d}.py": ONE_TRIVIAL_TEST for i in range(n)}
    )
    loom_args = cached_cmd("--loom-scenarios")
    run_pytest(loom, [*loom_args, "--snapshot-update"], n, sandbox)
    xdist = ["-n", "2"]
    sides = {
        "loom": (loom, loom_args),
        "trivial": (trivial, cached_cmd()),
        "files": (files, cached_cmd()),
        "loom -n 2": (loom, [*loom_args, *xdist]),
        "trivial -n 2": (trivial, cached_cmd(*xdist)),
    }
    for project, args in sides.values():  # warm the bytecode caches, untimed
        run_pytest(project, args, n, sandbox)
    progress(f"suite throughput: {repeats} timed runs each of {len(sides)} sides")
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for i in range(repeats):
        for name in order[i % len(order) :] + order[: i % len(order)]:
            project, args = sides[name]
            times[name].append(run_pytest(project, args, n, sandbox))
    lt, tt, ft, l2, t2 = (median(times[name]) for name in sides)
    phase_repeats = max(1, repeats - 2)
    progress(f"suite throughput: {phase_repeats} phase runs each")
    loom_phases, trivial_phases = (
        phase_times(project, args, n, sandbox, phase_repeats)
        for project, args in (sides["loom"], sides["trivial"])
    )
    # Plain xdist: every worker collects every test, and the tests are shared by the workers.
    collecting = loom_phases["collection"] - trivial_phases["collection"]
    run = loom_phases["run"]
    plain = t2 + collecting + (lt - tt - collecting) / 2
    rows = [
        Row(
            f"{n:,} ten-step scenarios, serial (median of {repeats})",
            f"{lt:.2f} s",
            f"{tt:.2f} s for {n:,} trivial tests",
            lt / tt,
            2.0,
        ),
        Row(
            f"{n:,} ten-step scenarios under `-n 2` (median of {repeats})",
            f"{l2:.2f} s",
            f"{plain:.2f} s plain xdist: the trivial tests under `-n 2` ({t2:.2f} s) + the "
            f"lab's serial {lt - tt:.2f} s, its collection ({collecting:.2f} s) in each worker, "
            "the rest shared by 2 workers",
            l2 / plain,
            1.05,
        ),
    ]
    saved, per_file = saved_run_cost(loom, root / "runs")
    details = [
        Detail(
            "per ten-step scenario, serial",
            ms((lt - tt) / n),
            f"({lt:.2f} s - {tt:.2f} s) / {n:,}: what a ten-step scenario costs more than a "
            "trivial test (its run, its snapshot, the drift gate, its saved run)",
        ),
        Detail(
            "the trivial tests, one file each",
            f"{ft:.2f} s ({ft / tt:.2f}x)",
            f"{n:,} files of one trivial test: a file per test, as scenario items have; the "
            f"scenarios take {lt / ft:.2f}x of this",
        ),
        Detail(
            "the scenarios under `-n 2` against serial",
            f"{l2:.2f} s ({l2 / lt:.2f}x)",
            f"the trivial tests: {t2:.2f} s under `-n 2`, {t2 / tt:.2f}x of serial (xdist's "
            "own start-up and report traffic)",
        ),
        *phase_details(loom_phases, trivial_phases, n, f"per scenario ({n:,})", "trivial"),
        Detail(
            f"per scenario ({n:,}): of the call, the run",
            ms(run / n),
            f"{run:.2f} s in all: `run_trials`, timed inside the call: the fake clock, the "
            "mock LLM, the ten steps with their checkpoints, the record read back from the "
            "store, the expectations",
        ),
        Detail(
            "the scenarios without their runs",
            f"{lt - run:.2f} s ({(lt - run) / tt:.2f}x)",
            f"({lt:.2f} s - {run:.2f} s of runs) against {tt:.2f} s for the trivial tests: what "
            "the items cost before a loop takes a step (reading and checking the files, the "
            "snapshot assertions, the drift gate, the saved runs), against the 2x target",
        ),
        Detail(
            "saving a ten-step run for the `loom` command",
            ms(saved),
            f"per run: kept in memory and written with its process's other runs in one file at "
            f"the end (median of 5 x {n:,} runs); a file of its own per run took "
            f"{ms(per_file)}",
        ),
    ]
    return rows, details


def saved_run_cost(project: Path, root: Path) -> tuple[float, float]:
    """Seconds per run to save ``n`` runs as the session does, and as a file per run."""
    from pytest_loom._atomic import write_atomic
    from pytest_loom.record import RunRecord
    from pytest_loom.runlog import start_session

    snapshots = sorted(project.rglob("*.run.json"))
    record = RunRecord.from_json(snapshots[0].read_bytes())
    n = len(snapshots)
    batched: list[float] = []
    single: list[float] = []
    for _ in range(5):
        session = start_session(root, keep=2, rootdir=project, pythonpath=[])
        t0 = clock()
        for i in range(n):
            session.save(f"s{i:04d}", project / f"s{i:04d}.loom.yaml", None, record)
        session.flush()
        batched.append((clock() - t0) / n)
        folder = root / "single"
        folder.mkdir(exist_ok=True)
        t0 = clock()
        for i in range(n):
            data = {"format": 1, "id": f"s{i:04d}", "workdir": None, "record": record.to_dict()}
            write_atomic(folder / f"s{i:04d}.json", json.dumps(data).encode())
        single.append((clock() - t0) / n)
        for path in folder.iterdir():
            path.unlink()
    return median(batched), median(single)
