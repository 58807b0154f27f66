"""What the lab costs around a run: snapshots, start-up and Hypothesis examples.

``benchmarks/run.py`` calls :func:`measure`. Each figure is taken next to its yardstick in the
same run, the two sides interleaved, medians of the repeats:

* serialising a 10-step run record for its snapshot, per step, against ``orjson.dumps`` of the
  same record and syrupy's default serializer;
* one ``loom_snapshot == record`` assertion of that record inside pytest (the whole path through
  syrupy: naming the file, reading it, serialising, comparing), against a plain
  ``assert json.dumps(record) == expected`` and syrupy's ``JSONSnapshotExtension``;
* what the plugin adds to a session that does not use the lab (wall time against ``-p
  no:loom``), and what importing it and the lab costs a session that runs a scenario;
* a Hypothesis example running a 10-step scenario in memory against an example drawing the same
  data and doing the same loop in plain Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from run import Detail, Plan, Row, Scratch, median, ms, progress, us
from syrupy.extensions.amber.serializer import AmberDataSerializer

from pytest_loom._clockpatch import real_perf_counter as clock
from pytest_loom.budget import Budget
from pytest_loom.clock import FakeClock
from pytest_loom.invariants import check_run
from pytest_loom.llm import MockLLM
from pytest_loom.record import RunRecord
from pytest_loom.reference import Loop
from pytest_loom.script import DEFAULT_PRICING, Turn
from pytest_loom.snapshot import masking, serialize_record
from pytest_loom.store import CheckpointStore
from pytest_loom.strategies import llm_scripts

STEPS = 10
SERIALISE_BUDGET = 5e-6
"""Issue 7's targets: seconds per step to serialise, per assertion, and of import at start-up."""
ASSERT_BUDGET = 0.3e-3
IMPORT_BUDGET = 50e-3
UNUSED_NOISE = 1.03
"""A session with the plugin installed but unused may be this much slower: the noise band of
two pytest runs of one trivial test on a loaded 2-core machine (measured: 0.5-2%)."""


# -- a 10-step run -------------------------------------------------------------------------------


def step(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """One LLM call per step; the state gains a note each step."""
    reply = ctx.llm.complete(f"next source ({state['n']} so far)", model="gpt-4o")
    return {"n": state["n"] + 1, "notes": [*state["notes"], reply.text]}


def run_in_memory(turns: tuple[Turn, ...], budget: Budget) -> RunRecord:
    """A run of :func:`step` on the reference runtime: mock LLM, fake clock, in-memory store."""
    with FakeClock() as fake, CheckpointStore(":memory:") as store:
        llm = MockLLM(turns, clock=fake)
        loop = Loop(step, budget=budget, store=store, llm=llm, clock=fake)
        outcome = loop.run({"n": 0, "notes": []}, run_id="bench")
        return loop.record(outcome.run_id)


def ten_step_record() -> RunRecord:
    turns = tuple(
        Turn(text=f"source {i}: " + "x" * 40, input_tokens=300 + i, output_tokens=80, latency_s=2)
        for i in range(STEPS)
    )
    record = run_in_memory(turns, Budget(iterations=STEPS))
    if len(record.steps) != STEPS:
        raise RuntimeError(f"expected a {STEPS}-step record, got {len(record.steps)} steps")
    return record


def per_call(function: Callable[[], object], calls: int) -> float:
    t0 = clock()
    for _ in range(calls):
        function()
    return (clock() - t0) / calls


# -- 4a. serialisation ---------------------------------------------------------------------------


def measure_serialisation(record: RunRecord, root: Path, repeats: int) -> tuple[Row, list[Detail]]:
    progress(f"snapshot serialisation of a {STEPS}-step record x {repeats}")
    as_dict = record.to_dict()
    sides: dict[str, tuple[Callable[[], object], int]] = {
        "ours": (lambda: serialize_record(record), 500),
        "orjson": (lambda: orjson.dumps(record), 500),
        "json": (lambda: json.dumps(as_dict, sort_keys=True, indent=2), 50),
        "amber": (lambda: AmberDataSerializer.serialize(record), 5),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    with masking(root, root):
        for _ in range(repeats):
            for name, (function, calls) in sides.items():
                times[name].append(per_call(function, calls) / STEPS)
    ours, raw, plain, amber = (median(times[name]) for name in sides)
    row = Row(
        f"snapshot serialisation of a {STEPS}-step record, per step (budget 5 µs; "
        f"median of {repeats})",
        f"{us(ours)}/step",
        f"`orjson.dumps` of the record {us(raw)}/step ({ours / raw:.1f}x of it); syrupy's "
        f"default serializer {us(amber)}/step",
        ours / SERIALISE_BUDGET,
        1.0,
    )
    details = [
        Detail(
            "snapshot serialisation: `json.dumps` of the record's dict",
            f"{us(plain)}/step",
            "stdlib JSON with sorted keys and indent, what the extension would cost without orjson",
        ),
        Detail(
            "snapshot serialisation: syrupy's default serializer",
            f"{us(amber)}/step ({amber / ours:.0f}x ours)",
            "`AmberDataSerializer.serialize` of the same record (what `snapshot == record` runs)",
        ),
    ]
    return row, details


# -- 4b. the assertion in pytest -----------------------------------------------------------------

ASSERT_TESTS = '''\
"""Times one snapshot assertion per test; the sides are in separate directories."""

import json
import os
import time
from pathlib import Path

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from pytest_loom.record import RunRecord

RECORD = RunRecord.from_json((Path(__file__).parent.parent / "record.json").read_bytes())
AS_DICT = RECORD.to_dict()
EXPECTED = json.dumps(AS_DICT, sort_keys=True, indent=2)


def log(side, seconds):
    with open(os.environ["LOOM_BENCH_ASSERTS"], "a") as f:
        f.write(f"{{side}} {{seconds}}\\n")


@pytest.fixture
def json_snapshot(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("i", range({n}))
def test_{side}(i, {fixture}):
    t0 = time.perf_counter()
    ok = {assertion}
    log("{side}", time.perf_counter() - t0)
    assert ok
'''
ASSERT_SIDES = {
    "loom": ("loom_snapshot", "loom_snapshot == RECORD"),
    "syrupy_json": ("json_snapshot", "json_snapshot == AS_DICT"),
    "plain": ("request", "json.dumps(AS_DICT, sort_keys=True, indent=2) == EXPECTED"),
}
"""Side -> (the fixture its tests use, the assertion timed)."""


def pytest_env(sandbox: Path) -> dict[str, str]:
    """A subprocess environment with a warm bytecode cache of its own under ``sandbox``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(sandbox / "pycache")
    env["TMPDIR"] = str(sandbox / "tmp")
    (sandbox / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def run_python(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args} in {cwd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def measure_assertion(record: RunRecord, root: Path, repeats: int) -> tuple[Row, list[Detail]]:
    progress(f"snapshot assertion of a {STEPS}-step record in pytest x {repeats}")
    project, sandbox = root / "assert-project", root / "assert-sandbox"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "record.json").write_text(serialize_record(record))
    n = 50
    for side in ASSERT_SIDES:
        # One directory each: a project-wide --snapshot-update would have syrupy's JSON
        # extension claim (and delete) the `.run.json` files as its own unused snapshots.
        (project / side).mkdir()
        fixture, assertion = ASSERT_SIDES[side]
        test = ASSERT_TESTS.format(side=side, n=n, fixture=fixture, assertion=assertion)
        (project / side / f"test_{side}.py").write_text(test)
    env = pytest_env(sandbox)
    log = root / "asserts.txt"
    env["LOOM_BENCH_ASSERTS"] = str(log)
    base = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    for side in ASSERT_SIDES:
        run_python([*base, side, "--snapshot-update"], project, env)
    times: dict[str, list[float]] = {side: [] for side in ASSERT_SIDES}
    for i in range(repeats):
        log.write_text("")
        names = list(ASSERT_SIDES)
        order = names[i % 3 :] + names[: i % 3]
        for side in order:
            run_python([*base, side], project, env)
        samples: dict[str, list[float]] = {side: [] for side in ASSERT_SIDES}
        for line in log.read_text().splitlines():
            side, seconds = line.split()
            samples[side].append(float(seconds))
        for side in ASSERT_SIDES:
            if len(samples[side]) != n:
                raise RuntimeError(f"{side}: {len(samples[side])} assertions timed, expected {n}")
            times[side].append(median(samples[side]))
    loom, syrupy_json, plain = (median(times[side]) for side in ASSERT_SIDES)
    row = Row(
        f"`assert loom_snapshot == record`, {STEPS}-step record (budget 0.3 ms; median of "
        f"{repeats} sessions x {n})",
        ms(loom),
        f"plain `assert json.dumps(...) == expected` {ms(plain)} ({loom / plain:.2f}x of it); "
        f"syrupy's `JSONSnapshotExtension` {ms(syrupy_json)}",
        loom / ASSERT_BUDGET,
        1.0,
    )
    return row, []


# -- 5. start-up ---------------------------------------------------------------------------------

RECORDER = """\
import json
import os
import sys


def pytest_sessionfinish(session):
    if "LOOM_BENCH_MODULES" in os.environ:
        with open(os.environ["LOOM_BENCH_MODULES"], "w") as f:
            json.dump(list(sys.modules), f)
"""

SCENARIO = """\
version: 1
entry: benchloop:build
input: {n: 0, notes: []}
budget: {iterations: 3}
llm:
  rules:
    - match: {contains: "next source"}
      reply: {text: "a source", usage: {input: 300, output: 80}}
expect:
  stop: budget_exhausted(iterations)
snapshot: false
"""

ENTRY = """\
def step(state, ctx):
    reply = ctx.llm.complete(f"next source ({state['n']} so far)", model="gpt-4o")
    return {"n": state["n"] + 1, "notes": [*state["notes"], reply.text]}


def build(lab):
    return lab.loop(step)
"""

IMPORT_TIMER = """\
import importlib, json, sys, time

before, after = (json.load(open(path)) for path in sys.argv[1:3])
for name in before:
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
t0 = time.perf_counter()
for name in after:
    if name not in sys.modules:
        importlib.import_module(name)
print(time.perf_counter() - t0)
"""


def session_modules(project: Path, args: list[str], env: dict[str, str], out: Path) -> list[str]:
    """The modules, in import order, a pytest session over ``project`` had at its end."""
    run_python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        project,
        {
            **env,
            "LOOM_BENCH_MODULES": str(out),
        },
    )
    skip = ("__main__", "conftest", "benchloop", "test_plain")
    return [m for m in json.loads(out.read_text()) if m.split(".")[0] not in skip]


def measure_startup(root: Path, repeats: int) -> tuple[list[Row], list[Detail]]:
    progress(f"start-up: plugin unused vs -p no:loom, lab imports x {repeats}")
    project, sandbox = root / "startup-project", root / "startup-sandbox"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    (project / "conftest.py").write_text(RECORDER)
    (project / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    (project / "benchloop.py").write_text(ENTRY)
    (project / "research.loom.yaml").write_text(SCENARIO)
    env = pytest_env(sandbox)
    bare = session_modules(project, ["-p", "no:loom", "test_plain.py"], env, root / "bare.json")
    unused = session_modules(project, ["test_plain.py"], env, root / "unused.json")
    lab = session_modules(
        project, ["--loom-scenarios", "research.loom.yaml"], env, root / "lab.json"
    )
    (root / "bare.json").write_text(json.dumps(bare))
    (root / "lab.json").write_text(json.dumps(lab))
    (root / "unused.json").write_text(json.dumps(unused))
    timer = root / "import_timer.py"
    timer.write_text(IMPORT_TIMER)
    session = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"]
    walls: dict[str, list[float]] = {"off": [], "on": []}
    imports: dict[str, list[float]] = {"lab": [], "plugin": []}
    for i in range(repeats + 1):  # the first round warms the bytecode caches, untimed
        for side in ("off", "on") if i % 2 else ("on", "off"):
            args = [*session, "-p", "no:loom"] if side == "off" else session
            t0 = clock()
            run_python(args, project, env)
            if i:
                walls[side].append(clock() - t0)
        for side, after in (("lab", "lab.json"), ("plugin", "unused.json")):
            seconds = float(run_python([str(timer), "bare.json", after], root, env))
            if i:
                imports[side].append(seconds)
    off, on = median(walls["off"]), median(walls["on"])
    lab_import, plugin_import = median(imports["lab"]), median(imports["plugin"])
    added = sorted(set(lab) - set(bare))
    ours = [m for m in added if m.split(".")[0] == "pytest_loom"]
    rows = [
        Row(
            f"session not using the lab: plugin installed vs `-p no:loom` (median of {repeats})",
            ms(on),
            f"{ms(off)} with `-p no:loom` (one trivial test)",
            on / off,
            UNUSED_NOISE,
        ),
        Row(
            f"session running a scenario: importing the plugin and the lab (budget 50 ms; "
            f"median of {repeats})",
            ms(lab_import),
            f"{ms(off)} for a whole session without the plugin",
            lab_import / IMPORT_BUDGET,
            1.0,
        ),
    ]
    details = [
        Detail(
            "session not using the lab: importing the plugin",
            ms(plugin_import),
            f"{', '.join(sorted(set(unused) - set(bare)))}: the entry point and the drift "
            "gate's options, nothing else",
        ),
        Detail(
            "session running a scenario: what it imports besides pytest and its plugins",
            f"{len(added)} modules",
            f"{len(ours)} of the lab's own, and {', '.join(m for m in added if m in THIRD)}",
        ),
    ]
    return rows, details


THIRD = ("yaml", "sqlite3", "orjson", "tomllib", "pickle", "syrupy.extensions.single_file")


# -- 6. a Hypothesis example ---------------------------------------------------------------------

PRICE = DEFAULT_PRICING["gpt-4o"]


def bare_loop(turns: tuple[Turn, ...], budget: Budget) -> dict[str, Any]:
    """The yardstick's body: the same 10-step loop in plain Python, no lab.

    It serves each scripted reply, prices it, stops at the budget, keeps the state and a JSON
    checkpoint of it per step, and checks that the spend stays within the budget.
    """
    state: dict[str, Any] = {"n": 0, "notes": []}
    spent, tokens, checkpoints = 0.0, 0, []
    for turn in turns[: budget.iterations]:
        cost = (turn.input_tokens * PRICE.input + turn.output_tokens * PRICE.output) / 1e6
        if budget.usd is not None and spent + cost > budget.usd:
            break
        spent, tokens = round(spent + cost, 12), tokens + turn.input_tokens + turn.output_tokens
        state = {"n": state["n"] + 1, "notes": [*state["notes"], turn.text]}
        checkpoints.append(orjson.dumps({"state": state, "spent": spent, "tokens": tokens}))
    assert budget.usd is None or spent <= budget.usd
    return state


def measure_hypothesis(examples: int, repeats: int) -> tuple[Row, list[Detail]]:
    progress(f"Hypothesis: {examples} examples x {repeats}, lab vs bare")
    scripts = llm_scripts(
        min_turns=STEPS,
        max_turns=STEPS,
        errors=False,
        done=False,
        malformed=False,
        explicit_costs=False,
    )
    budgets = st.builds(Budget, iterations=st.just(STEPS), usd=st.just(1.0))
    chosen = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    steps_run: list[int] = []

    @chosen
    @given(scripts, budgets)
    def lab_example(turns: tuple[Turn, ...], budget: Budget) -> None:
        record = run_in_memory(turns, budget)
        steps_run.append(len(record.steps))
        assert not check_run(record, budget)

    @chosen
    @given(scripts, budgets)
    def bare_example(turns: tuple[Turn, ...], budget: Budget) -> None:
        assert bare_loop(turns, budget)["n"] == STEPS

    times: dict[str, list[float]] = {"lab": [], "bare": []}
    for i in range(repeats + 1):  # the first round warms up, untimed
        for name, test in (("lab", lab_example), ("bare", bare_example))[:: 1 if i % 2 else -1]:
            t0 = clock()
            test()
            if i:
                times[name].append((clock() - t0) / examples)
    if set(steps_run) != {STEPS}:
        raise RuntimeError(f"lab examples ran {sorted(set(steps_run))} steps, expected {STEPS}")
    lab, bare = median(times["lab"]), median(times["bare"])
    row = Row(
        f"Hypothesis example, {STEPS}-step in-memory scenario (median of {repeats} x "
        f"{examples} examples)",
        ms(lab),
        f"{ms(bare)} a bare example: same draws, the same loop in plain Python",
        lab / bare,
        1.5,
    )
    details = [
        Detail(
            "Hypothesis example: the lab's run itself",
            ms(lab - bare),
            "fake clock, mock LLM, in-memory checkpoint store, reference `Loop` (10 steps), "
            "record, every budget invariant; the rest is Hypothesis drawing 10 turns",
        )
    ]
    return row, details


# -- entry ---------------------------------------------------------------------------------------


def measure(plan: Plan, scratch: Scratch) -> tuple[list[Row], list[Detail]]:
    root = scratch.root / "startup"
    root.mkdir()
    repeats = 3 * plan.scenario_repeats
    record = ten_step_record()
    rows: list[Row] = []
    details: list[Detail] = []
    for row, more in (
        measure_serialisation(record, root, repeats),
        measure_assertion(record, root, plan.scenario_repeats),
        measure_hypothesis(100 if plan.scenario_repeats < 5 else 200, repeats),
    ):
        rows.append(row)
        details += more
    startup_rows, startup_details = measure_startup(root, repeats)
    return [*rows, *startup_rows], [*details, *startup_details]
