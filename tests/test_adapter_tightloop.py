"""The tightloop adapter as users meet it: statuses, both views, resume, kill, clock, budget."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest

pytest.importorskip(
    "loop", reason="tightloop is not installed: pip install 'pytest-loom[tightloop]'"
)

from pytest_loom import FakeClock, ScenarioRun, run_scenario
from pytest_loom._clockpatch import real_perf_counter
from pytest_loom._isolation import isolated
from pytest_loom.adapters.tightloop import tightloop_limits
from pytest_loom.budget import Budget
from pytest_loom.scenario import load_scenario

ROOT = Path(__file__).parent.parent
SHIPPED = ROOT / "scenarios" / "tightloop"

HEAD = """\
version: 1
runtime: tightloop
entry: examples.tightloop.release_notes:build
input: "Draft the release notes for 1.4"
"""

ADDED = """\
    - match: {contains: "Current observation\\nMissing sections: Added, Fixed"}
      text: "Start with what was added."
      tool_calls: [{name: write_section, args: {section: Added, text: "Headless approvals."}}]
      usage: {input: 400, output: 40}
"""

FIXED = """\
    - match: {contains: "Current observation\\nMissing sections: Fixed"}
      text: "Now the fixes."
      tool_calls: [{name: write_section, args: {section: Fixed, text: "Resume keeps metrics."}}]
      usage: {input: 520, output: 45}
"""

TWO_SECTIONS = HEAD + "options: {publish: false}\nllm:\n  latency: 2s\n  turns:\n" + ADDED + FIXED


def scenario_at(path: Path, tmp_path: Path) -> ScenarioRun:
    scenario = load_scenario(path)
    with isolated(tmp_path) as workdir, FakeClock(start=scenario.clock.start) as clock:
        return run_scenario(scenario, clock=clock, workdir=workdir)


def run(tmp_path: Path, text: str, name: str = "notes") -> ScenarioRun:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / f"{name}.loom.yaml"
    path.write_text(text)
    return scenario_at(path, tmp_path / "run")


def shipped(name: str, tmp_path: Path) -> ScenarioRun:
    return scenario_at(SHIPPED / f"{name}.loom.yaml", tmp_path)


@pytest.mark.parametrize(
    ("name", "label", "raw_status"),
    [
        ("completed", "completed", "SUCCESS"),
        ("budget_iterations", "budget_exhausted(iterations)", "BUDGET_EXHAUSTED"),
        ("budget_tokens", "budget_exhausted(tokens)", "BUDGET_EXHAUSTED"),
        ("budget_usd", "budget_exhausted(usd)", "BUDGET_EXHAUSTED"),
        ("wall_clock", "budget_exhausted(wall_clock)", "BUDGET_EXHAUSTED"),
        ("stalled", "stalled", "NO_PROGRESS"),
        ("plan_failed", "failed(PLAN_FAILED)", "PLAN_FAILED"),
        ("denied", "denied", "APPROVAL_DENIED"),
        ("awaiting_approval", "awaiting_approval", "AWAITING_APPROVAL"),
        ("approval_expired", "denied", "PENDING_EXPIRED"),
        ("tool_errors", "failed(ERROR)", "ERROR"),
        ("llm_failed", "failed(RateLimitError)", "running"),
        ("observe_raises", "failed(KeyError)", "running"),
        ("killed", "paused", "running"),
    ],
)
def test_every_tightloop_ending_is_normalised_with_its_raw_status(
    name: str, label: str, raw_status: str, tmp_path: Path
) -> None:
    result = shipped(name, tmp_path)
    assert result.problems == []
    assert result.record.stop.label == label
    assert result.record.stop.raw_status == raw_status


def test_costs_and_tokens_come_from_the_mock_per_step(tmp_path: Path) -> None:
    record = shipped("completed", tmp_path).record
    assert [s.cost_usd for s in record.steps] == [0.0014, 0.00175, 0.0018, 0.0, 0.00185]
    assert [s.cumulative_cost_usd for s in record.steps][-1] == record.totals.cost_usd == 0.0068
    assert record.totals.tokens == 400 + 40 + 520 + 45 + 640 + 20 + 700 + 10
    # tightloop's own metrics agree on tokens and calls; elapsed comes from them.
    state = json.loads((tmp_path / "work" / "completed.state.json").read_text())["state"]
    metrics = state["metrics"]
    assert metrics["input_tokens"] + metrics["output_tokens"] == record.totals.tokens
    assert metrics["llm_calls"] == record.totals.llm_calls == 4
    assert record.totals.elapsed_s == metrics["elapsed_s"] == 8.0


def test_the_seam_passes_max_tokens_and_tool_schemas_to_the_mock(tmp_path: Path) -> None:
    result = shipped("completed", tmp_path)
    first = result.llm.requests[0]
    assert first.model == "gpt-4o"
    assert first.max_tokens == 1024  # the loop's max_tokens_per_call, clamped by tightloop
    assert first.tools == ("write_section", "publish")
    assert [m.role for m in first.messages] == ["system", "user"]


def test_a_propagated_exception_shows_both_views(tmp_path: Path) -> None:
    record = shipped("llm_failed", tmp_path).record
    stop = record.stop
    assert stop.raw_status == "running"  # tightloop's trace: the loop never ended
    assert stop.raw_exception is not None
    assert stop.raw_exception.startswith("RateLimitError: simulated rate_limit on LLM request 3")
    failed = record.steps[-1]
    assert (failed.index, failed.error) == (2, stop.raw_exception)
    assert [c.error for c in failed.llm_calls] == ["rate_limit", "rate_limit"]
    assert failed.events == ("retried",)
    assert failed.state_digest == record.steps[0].state_digest  # nothing stored for it
    # The retry slept 1 s of fake time between the two 2 s calls.
    assert failed.duration_s == 5.0


def test_a_retried_call_is_instant_and_visible(tmp_path: Path) -> None:
    started = real_perf_counter()
    record = shipped("retried", tmp_path).record
    assert real_perf_counter() - started < 2.0
    step = record.steps[1]
    assert step.events == ("retried",)
    assert [c.error for c in step.llm_calls] == ["rate_limit", None]
    assert step.duration_s == 5.0


def test_crash_and_resume_continue_numbering_with_the_same_history(tmp_path: Path) -> None:
    straight = run(tmp_path / "a", TWO_SECTIONS).record
    crashed = run(tmp_path / "b", TWO_SECTIONS + "faults:\n  - crash: {step: 2}\n").record
    assert [s.index for s in crashed.steps] == [1, 2]
    assert [s.events for s in crashed.steps] == [(), ("resumed",)]
    assert crashed.totals == straight.totals
    assert crashed.stop == straight.stop
    for a, b in zip(straight.steps, crashed.steps, strict=True):
        assert (a.state_digest, a.cost_usd, a.start_s) == (b.state_digest, b.cost_usd, b.start_s)


def test_a_crash_before_anything_is_stored_starts_the_run_again(tmp_path: Path) -> None:
    result = run(tmp_path, TWO_SECTIONS + "faults:\n  - crash: {step: 1}\n")
    assert result.problems == []
    assert result.record.stop.label == "completed"
    assert [s.events for s in result.record.steps] == [("resumed",), ()]


def test_kill_and_resume_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    straight = shipped("completed", tmp_path / "a").record
    killed = shipped("kill_resume", tmp_path / "b").record
    assert killed.stop == straight.stop
    assert killed.totals == straight.totals
    assert [s.events for s in killed.steps] == [(), (), ("resumed",), ("resumed",), ()]
    for a, b in zip(straight.steps, killed.steps, strict=True):
        assert (a.state_digest, a.llm_calls, a.start_s) == (b.state_digest, b.llm_calls, b.start_s)


def test_a_kill_without_resume_reports_what_tightloop_left(tmp_path: Path) -> None:
    record = shipped("killed", tmp_path).record
    assert record.stop.detail == "tightloop stopped after iteration 1 without ending (killed?)"
    assert [s.index for s in record.steps] == [1]
    state = json.loads((tmp_path / "work" / "killed.state.json").read_text())["state"]
    assert len(state["iterations"]) == 1


def test_wall_clock_stops_at_the_same_step_in_fake_time_only(tmp_path: Path) -> None:
    stops = []
    for attempt in range(3):
        started = real_perf_counter()
        record = shipped("wall_clock", tmp_path / str(attempt)).record
        took = real_perf_counter() - started
        assert took < 1.0, f"{took:.3f} s of real time for 13.5 fake minutes"
        stops.append((record.stop.label, record.totals.steps, record.totals.elapsed_s))
    assert stops == [("budget_exhausted(wall_clock)", 3, 810.0)] * 3


def test_approval_ttl_and_trace_run_on_the_fake_clock(tmp_path: Path) -> None:
    record = shipped("approval_expired", tmp_path).record
    assert record.stop.detail == "approval token <token> expired after 3600s"
    events = [
        json.loads(line)
        for line in (tmp_path / "work" / "approval_expired.trace.jsonl").read_text().splitlines()
    ]
    start = FakeClock().time()  # the scenario's clock starts at the default
    assert events[0]["ts"] == start
    expired = next(e for e in events if e["kind"] == "approval.expired")
    assert expired["ts"] == start + 2 * 3600  # the human answered 2 h later
    assert record.totals.elapsed_s == 0.0  # ...which is not the run's time


def test_files_stay_in_the_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    shipped("kill_resume", tmp_path / "run")
    assert list(here.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "run" / "work").iterdir()) == [
        "kill_resume.checkpoints.db",
        "kill_resume.state.json",
        "kill_resume.trace.jsonl",
        "notes.json",
    ]


def test_no_warnings_under_the_default_clock(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shipped("budget_usd", tmp_path).problems == []


def test_pricing_staleness_reads_the_fake_date(tmp_path: Path) -> None:
    late = TWO_SECTIONS.replace("llm:", "budget: {usd: 1.0}\nclock: {start: 2026-06-01}\nllm:")
    with pytest.warns(UserWarning, match=r"as_of=2026-01-15 is 137 days old"):
        run(tmp_path, late)


def test_the_budget_maps_onto_the_loop_limits() -> None:
    budget = Budget(usd=0.5, iterations=4, tokens=9000, wall_clock=600.0)
    assert tightloop_limits(budget) == {
        "cost_limit_usd": 0.5,
        "max_iterations": 4,
        "token_limit": 9000,
        "wall_clock_s": 600.0,
    }
    assert tightloop_limits(Budget()) == {}


LOOPS = """
from pytest_loom.adapters.tightloop import lab_loop


def write_note(text: str) -> str:
    return text


def ignores_budget(lab):
    return lab_loop(lab, [write_note], max_iterations=3)


def unpriced(lab):
    return lab_loop(lab, [write_note], model="gpt-4o-mini")


def not_a_loop(lab):
    return [write_note]
"""


def build_error(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "tl_loops.py").write_text(LOOPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Exception) as excinfo:
        run(tmp_path, textwrap.dedent(text))
    return str(excinfo.value)


def test_a_budget_the_loop_does_not_enforce_names_key_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
        version: 1
        runtime: tightloop
        entry: tl_loops:ignores_budget
        input: "Take notes"
        budget:
          iterations: 5
        """
    message = build_error(tmp_path, text, monkeypatch)
    assert "notes.loom.yaml:6: budget.iterations: the loop built by" in message
    assert "has max_iterations=3, not 5" in message
    assert "tightloop_limits(lab.budget)" in message


def test_a_usd_budget_needs_a_model_tightloop_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = """\
        version: 1
        runtime: tightloop
        entry: tl_loops:unpriced
        input: "Take notes"
        budget: {usd: 0.1}
        """
    message = build_error(tmp_path, text, monkeypatch)
    assert "notes.loom.yaml:5: budget.usd: tightloop cannot enforce it" in message
    assert "'gpt-4o-mini' is not in the Loop's pricing table" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("options: {approval: yes please}\n", "notes.loom.yaml:5: options.approval: got 'yes"),
        ("options: {approval_after: soon}\n", "notes.loom.yaml:5: options.approval_after:"),
    ],
)
def test_bad_approval_options_name_the_line(
    extra: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "version: 1\nruntime: tightloop\nentry: tl_loops:unpriced\ninput: go\n" + extra
    assert expected in build_error(tmp_path, text, monkeypatch)


def test_the_goal_must_be_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "version: 1\nruntime: tightloop\nentry: tl_loops:unpriced\ninput: {goal: x}\n"
    message = build_error(tmp_path, text, monkeypatch)
    assert "notes.loom.yaml:4: input: tightloop's Loop takes a goal, got dict" in message


def test_an_entry_point_must_build_a_lab_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "version: 1\nruntime: tightloop\nentry: tl_loops:not_a_loop\ninput: go\n"
    message = build_error(tmp_path, text, monkeypatch)
    assert "entry point 'tl_loops:not_a_loop' returned list" in message
    assert "lab_loop" in message


def test_budget_errors_read_as_the_scenario_in_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tl_loops=LOOPS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    pytester.path.joinpath("notes.loom.yaml").write_text(
        "version: 1\nruntime: tightloop\nentry: tl_loops:ignores_budget\ninput: go\n"
        "budget: {iterations: 5}\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--loom-scenarios")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["notes.loom.yaml:5: budget.iterations: the loop built by 'tl_loops:ignores_budget'*"]
    )
    assert "pytest_loom/" not in result.stdout.str()


def test_a_passing_scenario_snapshots_under_pytest(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\npythonpath = {ROOT}\n")
    pytester.path.joinpath("notes.loom.yaml").write_text(TWO_SECTIONS)
    args = ("-p", "no:cacheprovider", "--loom-scenarios")
    pytester.runpytest_subprocess(*args, "--snapshot-update").assert_outcomes(passed=1)
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    # The loop's files went to the scenario's own directory, not where pytest ran.
    written = {p.name for p in pytester.path.iterdir()} - {
        "tox.ini",
        "notes.loom.yaml",
        "stdout",
        "stderr",
    }
    assert {n for n in written if not n.startswith("runpytest-")} == {"__snapshots__"}
