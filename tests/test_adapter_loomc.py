"""The loomc adapter: records, stops, resume, clock, files and budget mapping, as users rely on."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

loomc = pytest.importorskip(
    "loomc", reason="loomc is not installed (pip install 'pytest-loom[loomc]')"
)

from loomc.budget import BudgetLedger  # noqa: E402
from loomc.checkpoint import SQLiteCheckpointStore  # noqa: E402

from pytest_loom._clockpatch import real_perf_counter  # noqa: E402
from pytest_loom.adapters.loomc import LoomcRuntime, loomc_budget, store_path  # noqa: E402
from pytest_loom.budget import Budget  # noqa: E402
from pytest_loom.clock import FakeClock  # noqa: E402
from pytest_loom.lab import Lab  # noqa: E402
from pytest_loom.record import Event, RunRecord, digest, sum_usd  # noqa: E402
from pytest_loom.runner import drive, make_lab  # noqa: E402
from pytest_loom.runtimes import RuntimeNotAvailable  # noqa: E402
from pytest_loom.scenario import Scenario, load_scenario  # noqa: E402
from pytest_loom.store import CheckpointStore  # noqa: E402
from pytest_loom.testing import run_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios" / "loomc"


def scenario_file(tmp_path: Path, text: str, name: str = "case") -> Path:
    path = tmp_path / f"{name}.loom.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def run(path: Path, root: Path) -> tuple[RunRecord, Path]:
    """:func:`run_file` (the CWD must stay empty), and the run's work directory."""
    return run_file(path, root), root / "work"


def loomc_store(workdir: Path) -> SQLiteCheckpointStore:
    return SQLiteCheckpointStore(workdir / ".loomc" / "checkpoints.db")


REFINE = """\
    version: 1
    runtime: loomc
    entry: examples.loomc.refine:build
    input: {draft: "Loops retry.", score: 0.0, cost: 0.0}
    budget: {iterations: 4}
    llm:
      allow_unused: true
      rules:
        - match: {model: gpt-4o-mini}
          reply: {text: "Loops retry until done.", usage: {input: 100, output: 20}}
        - match: {model: gpt-4o}
          reply: {text: "score: 0.5", usage: {input: 90, output: 10}}
"""


# -- records ----------------------------------------------------------------------------------


def test_steps_come_from_loomc_store_and_costs_from_the_mock_llm(tmp_path: Path) -> None:
    record, workdir = run(SCENARIOS / "converged_predicate.loom.yaml", tmp_path)
    rows = loomc_store(workdir).load_steps("converged_predicate")
    assert [s.index for s in record.steps] == [r.step_n + 1 for r in rows] == [1, 2, 3]
    assert [s.score for s in record.steps] == [r.score for r in rows] == [0.55, 0.78, 0.93]
    assert [s.state_digest for s in record.steps] == [digest(r.state) for r in rows]
    cumulative = 0.0
    for step in record.steps:
        assert step.cost_usd == sum_usd(*(c.cost_usd for c in step.llm_calls))
        cumulative = sum_usd(cumulative, step.cost_usd)
        assert step.cumulative_cost_usd == cumulative
        assert [c.model for c in step.llm_calls] == ["gpt-4o-mini", "gpt-4o"]
    # loomc's own cost column is what the loop's cost_fn reported: the same spending.
    assert [r.cost_usd for r in rows] == [s.cost_usd for s in record.steps]
    assert [(s.start_s, s.duration_s) for s in record.steps] == [(0, 7), (7, 7), (14, 7)]
    assert record.totals.elapsed_s == 21.0
    assert record.run_id == record.scenario == "converged_predicate"
    assert record.runtime.name == "loomc" and record.runtime.version == "0.3.0"


@pytest.mark.parametrize(
    ("name", "label", "detail"),
    [
        ("converged_predicate", "converged", "Predicate"),
        ("converged_plateau", "converged", "ScorePlateau(patience=2, min_delta=0.02)"),
    ],
)
def test_convergence_names_the_detector_and_keeps_loomc_status(
    tmp_path: Path, name: str, label: str, detail: str
) -> None:
    record, _ = run(SCENARIOS / f"{name}.loom.yaml", tmp_path)
    assert (record.stop.label, record.stop.detail) == (label, detail)
    assert record.stop.raw_status == "completed" and record.stop.raw_exception is None


@pytest.mark.parametrize(
    ("name", "label", "steps", "raw"),
    [
        ("budget_usd", "budget_exhausted(usd)", 3, "usd (0.0011 / 0.0010)"),
        ("budget_iterations", "budget_exhausted(iterations)", 3, "iterations (3.0000 / 3.0000)"),
        (
            "budget_wall_clock",
            "budget_exhausted(wall_clock)",
            3,
            "wall_clock (690.0000 / 600.0000)",
        ),
    ],
)
def test_each_loomc_budget_limit(
    tmp_path: Path, name: str, label: str, steps: int, raw: str
) -> None:
    record, _ = run(SCENARIOS / f"{name}.loom.yaml", tmp_path)
    assert record.stop.label == label
    assert record.stop.raw_exception == f"BudgetExhausted: Budget exhausted: {raw}"
    assert record.stop.raw_status is None  # loomc's store says budget_exhausted too
    assert record.totals.steps == steps


def test_usd_budget_is_checked_before_a_step_so_the_run_overspends(tmp_path: Path) -> None:
    record, _ = run(SCENARIOS / "budget_usd.loom.yaml", tmp_path)
    assert record.steps[1].cumulative_cost_usd < 0.001 < record.totals.cost_usd == 0.001056


def test_stall_shows_the_caller_view_and_loomc_status_that_disagree(tmp_path: Path) -> None:
    record, workdir = run(SCENARIOS / "stalled.loom.yaml", tmp_path)
    assert record.stop.label == "stalled"
    assert record.stop.raw_exception == (
        "StallError: Loop stalled: no score improvement for 2 iterations"
    )
    assert record.stop.raw_status == "completed"
    assert loomc_store(workdir).get_run("stalled").status.value == "completed"


def test_a_failed_step_loomc_did_not_store_is_recorded_from_the_lab(tmp_path: Path) -> None:
    record, workdir = run(SCENARIOS / "failed.loom.yaml", tmp_path)
    assert [r.step_n for r in loomc_store(workdir).load_steps("failed")] == [0]
    assert record.stop.label == "failed(ValueError)"
    assert record.stop.raw_status is None  # loomc's store says failed too
    assert "did not checkpoint" in (record.stop.detail or "")
    last = record.steps[-1]
    assert (last.index, last.score, len(last.llm_calls)) == (2, None, 2)
    assert last.error == record.stop.raw_exception
    assert last.cost_usd > 0 and record.totals.cost_usd == last.cumulative_cost_usd
    assert last.state_digest == record.steps[0].state_digest  # a failed step keeps its input


@pytest.mark.parametrize("backtrack", [None, "last_good"])
def test_a_raise_fault_with_and_without_backtrack(tmp_path: Path, backtrack: str | None) -> None:
    options = f"options: {{backtrack: {backtrack}}}\n" if backtrack else ""
    faults = 'faults:\n  - raise: {step: 2, error: KeyError, message: "boom"}\n'
    path = scenario_file(tmp_path, textwrap.dedent(REFINE) + options + faults)
    record, workdir = run(path, tmp_path)
    step2 = record.steps[1]
    assert (step2.error, step2.llm_calls) == ("KeyError: 'boom'", ())
    stored = [r.step_n for r in loomc_store(workdir).load_steps("case")]
    if backtrack is None:
        assert record.stop.label == "failed(KeyError)" and record.totals.steps == 2
        assert stored == [0]
    else:
        assert record.stop.label == "budget_exhausted(iterations)" and record.totals.steps == 4
        assert stored == [0, 1, 2, 3] and step2.events == (Event.BACKTRACKED,)


def test_backtracking_is_the_loop_strategy_asked_about_the_stored_history(
    tmp_path: Path,
) -> None:
    record, _ = run(SCENARIOS / "backtrack_best_score.loom.yaml", tmp_path)
    assert [s.events for s in record.steps] == [(), (), (Event.BACKTRACKED,), (), ()]
    # After going back, step 4 rewrites step 2's draft.
    assert record.steps[3].llm_calls[0].prompt.endswith(record.steps[1].llm_calls[0].text)


# -- crash, kill and resume -------------------------------------------------------------------


def test_crash_resume_continues_loomc_numbering(tmp_path: Path) -> None:
    plain, _ = run(SCENARIOS / "converged_predicate.loom.yaml", tmp_path / "plain")
    crashed, workdir = run(SCENARIOS / "crash_resume.loom.yaml", tmp_path / "crashed")
    assert [r.step_n for r in loomc_store(workdir).load_steps("crash_resume")] == [0, 1, 2]
    assert [s.events for s in crashed.steps] == [(), (Event.RESUMED,), ()]
    assert [(s.state_digest, s.cost_usd, s.start_s) for s in crashed.steps] == [
        (s.state_digest, s.cost_usd, s.start_s) for s in plain.steps
    ]
    assert (crashed.stop, crashed.totals) == (plain.stop, plain.totals)


def test_a_real_kill_resumes_to_the_same_record_as_a_crash(tmp_path: Path) -> None:
    crashed, _ = run(SCENARIOS / "crash_resume.loom.yaml", tmp_path / "crash")
    killed, _ = run(SCENARIOS / "kill_resume.loom.yaml", tmp_path / "kill")
    assert (killed.steps, killed.stop, killed.totals) == (
        crashed.steps,
        crashed.stop,
        crashed.totals,
    )


def test_resume_regrants_the_budget(tmp_path: Path) -> None:
    record, _ = run(SCENARIOS / "resume_regrants_budget.loom.yaml", tmp_path)
    assert record.stop.label == "budget_exhausted(iterations)"
    assert record.totals.steps == 4  # a three-iteration budget
    assert record.stop.raw_exception == (
        "BudgetExhausted: Budget exhausted: iterations (4.0000 / 4.0000)"
    )


def test_a_crash_before_the_first_checkpoint_cannot_be_resumed(tmp_path: Path) -> None:
    record, _ = run(SCENARIOS / "crash_before_first_step.loom.yaml", tmp_path)
    assert record.steps == ()
    assert record.stop.label == "failed(ValueError)"
    assert record.stop.raw_status == "running"
    assert record.stop.raw_exception == (
        "ValueError: Run 'crash_before_first_step' has no checkpointed steps"
    )


@pytest.mark.parametrize("fault", ["crash", "kill"])
def test_an_unresumed_crash_or_kill_is_paused_with_loomc_status(tmp_path: Path, fault: str) -> None:
    text = textwrap.dedent(REFINE) + f"faults:\n  - {fault}: {{step: 3, resume: false}}\n"
    record, _ = run(scenario_file(tmp_path, text), tmp_path)
    assert record.stop.label == "paused" and record.stop.raw_status == "running"
    assert record.stop.detail == "the run stopped after step 2 without finishing (crashed?)"
    assert [s.index for s in record.steps] == [1, 2]


def test_async_loops_crash_and_resume_through_the_async_runner(tmp_path: Path) -> None:
    record, _ = run(SCENARIOS / "research_crash_resume.loom.yaml", tmp_path)
    assert [s.index for s in record.steps if s.events] == [3]
    assert record.stop.label == "converged" and record.totals.elapsed_s == 350.0


# -- records from the store alone ---------------------------------------------------------------


def _lab(scenario: Scenario, workdir: Path, clock: FakeClock) -> Lab:
    store = CheckpointStore(workdir / "lab.db", durability="off")
    return make_lab(scenario, clock=clock, store=store, workdir=workdir)


@pytest.mark.parametrize(
    ("name", "label", "raw_status"),
    [
        ("budget_iterations", "budget_exhausted(iterations)", None),
        ("budget_usd", "budget_exhausted(usd)", None),
        ("stalled", "converged", "completed"),  # loomc's store cannot tell a stall
        ("failed", "failed(unknown)", "failed"),
    ],
)
def test_an_instance_that_did_not_run_reports_loomc_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, label: str, raw_status: str
) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.loom.yaml")
    monkeypatch.chdir(tmp_path)
    with FakeClock(start=scenario.clock.start) as clock:
        lab = _lab(scenario, tmp_path, clock)
        drive(LoomcRuntime(), scenario, lab, resume=False)
        stop = LoomcRuntime().record(scenario, lab).stop
    assert stop.label == label
    assert stop.raw_status == raw_status
    assert stop.detail == "from runs.status alone: the caller's view was not seen"


# -- clock ------------------------------------------------------------------------------------


def test_wall_clock_budget_runs_on_fake_time_in_milliseconds(tmp_path: Path) -> None:
    records, took = [], []
    for i in range(2):
        began = real_perf_counter()
        record, _ = run(SCENARIOS / "budget_wall_clock.loom.yaml", tmp_path / str(i))
        took.append(real_perf_counter() - began)
        records.append(record.to_json())
    assert records[0] == records[1]
    record = RunRecord.from_json(records[0])
    assert record.totals.elapsed_s == 690.0  # 11.5 minutes of backoffs, waits and latency
    assert max(took) < 1.0, took


def test_loomc_budget_ledger_reads_the_lab_clock() -> None:
    import time

    field = BudgetLedger.__dataclass_fields__["start_time"]
    with FakeClock() as clock:
        clock.rebind()
        ledger = BudgetLedger()
        assert ledger.start_time == clock.monotonic()
        clock.advance(61)
        with pytest.raises(loomc.BudgetExhausted) as exc:
            ledger.check_pre(loomc.Budget(wall_clock="1m"))
        assert (exc.value.limit, exc.value.used) == ("wall_clock", 61.0)
    assert field.default_factory is time.monotonic


# -- files ------------------------------------------------------------------------------------

EARLY = """\
from loomc import Budget, loop


@loop(budget=Budget(iterations=2), scorer=lambda s: s["n"])
def count(state):
    return {"n": state["n"] + 1}


def build(lab):
    return count
"""


def test_a_loop_decorated_before_the_scenario_keeps_its_directory_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = tmp_path / "early"
    early.mkdir()
    (early / "early_loomc_loop.py").write_text(EARLY)
    monkeypatch.syspath_prepend(str(early))
    monkeypatch.chdir(early)
    monkeypatch.setitem(sys.modules, "early_loomc_loop", None)
    del sys.modules["early_loomc_loop"]
    __import__("early_loomc_loop")  # loomc creates ./.loomc/checkpoints.db as it decorates
    assert loomc_store(early).list_runs() == []
    path = scenario_file(
        tmp_path,
        """\
        version: 1
        runtime: loomc
        entry: early_loomc_loop:build
        input: {n: 0}
        budget: {iterations: 2}
        """,
    )
    record, workdir = run(path, tmp_path / "run")
    assert record.stop.label == "budget_exhausted(iterations)"
    assert loomc_store(early).list_runs() == []
    assert [r.id for r in loomc_store(workdir).list_runs()] == ["case"]
    assert sorted(p.name for p in workdir.iterdir()) == [".loomc", "case.checkpoints.db"]


def test_a_loop_decorated_during_the_scenario_writes_only_under_workdir(tmp_path: Path) -> None:
    _, workdir = run(SCENARIOS / "converged_plateau.loom.yaml", tmp_path)
    assert sorted(p.name for p in (workdir / ".loomc").iterdir()) == ["checkpoints.db"]


# -- budget mapping -----------------------------------------------------------------------------


def _bare_lab(budget: Budget, tmp_path: Path) -> Lab:
    from pytest_loom.llm import MockLLM

    return Lab(
        scenario="s",
        llm=MockLLM(),
        clock=FakeClock(),
        store=None,  # type: ignore[arg-type]
        budget=budget,
        workdir=tmp_path,
    )


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (Budget(), None),
        (Budget(usd=0.5), loomc.Budget(usd=0.5)),
        (Budget(iterations=3), loomc.Budget(iterations=3)),
        (Budget.of(wall_clock="10m"), loomc.Budget(wall_clock="600s")),
        (Budget.of(wall_clock="250ms"), loomc.Budget(wall_clock="0.25s")),
        (Budget.of(usd=1, iterations=2, wall_clock=90), loomc.Budget(1, 2, "90s")),
    ],
)
def test_loomc_budget_maps_the_scenario_budget(
    tmp_path: Path, budget: Budget, expected: object
) -> None:
    mapped = loomc_budget(_bare_lab(budget, tmp_path))
    assert mapped == expected
    if mapped is not None and budget.wall_clock is not None:
        assert mapped.wall_clock_seconds == budget.wall_clock


def test_loomc_budget_refuses_tokens(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loomc has no token budget"):
        loomc_budget(_bare_lab(Budget(tokens=100), tmp_path))


def _failure(path: Path, tmp_path: Path) -> str:
    with pytest.raises(RuntimeNotAvailable) as exc:
        run(path, tmp_path)
    return str(exc.value)


def test_a_token_budget_fails_naming_the_file_and_line(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, REFINE.replace("{iterations: 4}", "\n      tokens: 500"))
    message = _failure(path, tmp_path)
    assert message.startswith(f"{path}:6: budget.tokens: loomc has no token budget")
    assert "hint: remove budget.tokens" in message


def test_a_loop_decorated_with_another_budget_fails_clearly(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        """\
        version: 1
        runtime: loomc
        entry: examples.loomc.research:build
        input: {topic: t, sources: [], cost: 0.0}
        budget: {usd: 1.0}
        """,
    )
    message = _failure(path, tmp_path)
    assert message.startswith(f"{path}:5: budget: the loop runs with loomc Budget(usd=None")
    assert "budget=loomc_budget(lab)" in message


def test_an_entry_point_that_is_not_a_loomc_loop(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        """\
        version: 1
        runtime: loomc
        entry: examples.loomc.refine:reached
        """,
    )
    message = _failure(path, tmp_path)
    assert "returned Predicate; a scenario on runtime 'loomc' needs a loomc loop" in message


def test_the_store_lives_in_loomc_layout_under_workdir(tmp_path: Path) -> None:
    assert store_path(_bare_lab(Budget(), tmp_path)) == tmp_path / ".loomc" / "checkpoints.db"


# -- the plugin ---------------------------------------------------------------------------------

LOOPS = """
from loomc import loop, predicate

from pytest_loom.adapters.loomc import loomc_budget


def build(lab):
    @loop(
        budget=loomc_budget(lab),
        scorer=lambda s: s["score"],
        converge_on=predicate(lambda h: h[-1].score >= 0.9),
        cost_fn=lambda s: s["cost"],
    )
    def refine(state):
        reply = lab.llm.complete("Improve: " + state["draft"], model="gpt-4o")
        score = round(state["score"] + 0.3, 2)
        return {"draft": reply.text, "score": score, "cost": reply.cost_usd}

    return refine
"""

SCENARIO = """\
version: 1
runtime: loomc
entry: loops:build
input: {draft: "v0", score: 0.0, cost: 0.0}
budget:
  iterations: 10
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


def test_plugin_runs_and_snapshots_a_loomc_scenario(project: pytest.Pytester) -> None:
    project.path.joinpath("scenarios", "refine.loom.yaml").write_text(SCENARIO)
    args = ("-p", "no:cacheprovider", "--loom-scenarios", "-p", "no:xdist")
    result = project.runpytest_subprocess(*args, "--snapshot-update")
    result.assert_outcomes(passed=1)
    snapshot = project.path / "scenarios/__snapshots__/refine.loom/refine.run.json"
    record = RunRecord.from_json(snapshot.read_bytes())
    assert (record.runtime.name, record.stop.label, record.totals.steps) == (
        "loomc",
        "converged",
        3,
    )
    project.runpytest_subprocess(*args).assert_outcomes(passed=1)
    leftovers = sorted(p.name for p in project.path.iterdir() if p.name.startswith("."))
    assert leftovers == [], "nothing of loomc's in the project directory"


def test_plugin_reports_a_token_budget_as_the_scenario_line(project: pytest.Pytester) -> None:
    text = SCENARIO.replace("  iterations: 10\n", "  iterations: 10\n  tokens: 500\n")
    project.path.joinpath("scenarios", "refine.loom.yaml").write_text(text)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*scenarios/refine.loom.yaml:7: budget.tokens: loomc has no token budget*"]
    )
    assert "pytest_loom/" not in result.stdout.str()
