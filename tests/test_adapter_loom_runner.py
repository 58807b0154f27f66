"""The loom-runner adapter as users rely on it: records, stops, resume, kills, clock, budgets."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "loom_agent",
    reason="loom-runner is not installed: pip install 'pytest-loom[loom-runner]'",
    exc_type=ImportError,
)

from pytest_loom import RunRecord, StopReason
from pytest_loom._clockpatch import real_perf_counter
from pytest_loom.adapters import loom_runner
from pytest_loom.record import digest

SHIPPED = Path(__file__).parent.parent / "scenarios" / "loom-runner"

LOOPS = """
import asyncio

from loom_agent import (
    AgentRunner, CheckpointPolicy, Complete, Continue, RetryPolicy, SQLiteCheckpointStore,
    StepExecutionError, ToolRegistry,
)

from pytest_loom.adapters.loom_runner import lab_store
from pytest_loom.faults import SimulatedCrash

EXECUTED = []


def note(text):
    EXECUTED.append(text)
    return {"noted": text}


def runner(lab, step, store=None):
    tools = ToolRegistry()
    tools.register("note", note)
    same = lambda value: value
    policy = CheckpointPolicy(lab.options.get("policy", "full"), every=2)
    return AgentRunner(step=step, store=store or lab_store(lab), encode_state=same,
                       decode_state=same, encode_result=same, decode_result=same, tools=tools,
                       checkpoint_policy=policy, retry_policy=RetryPolicy(max_attempts=2))


async def counting(state, ctx):
    await ctx.call_tool("note", text=f"step {ctx.step_index}")
    if state["n"] + 1 >= state["until"]:
        return Complete({"n": state["n"] + 1})
    return Continue({"n": state["n"] + 1, "until": state["until"]})


def count(lab):
    return runner(lab, counting)


def flaky(lab):
    async def step(state, ctx):
        await ctx.call_tool("note", text=f"step {ctx.step_index}")
        if ctx.step_index == 1 and ctx.attempt_index == 0:
            raise StepExecutionError("try again", error_category="transient")
        return await counting(state, ctx)

    return runner(lab, step)


def dies_mid_attempt(lab):
    async def step(state, ctx):
        if ctx.step_index == 1:
            await ctx.call_tool("note", text="step 1")
            raise SimulatedCrash(2, resume=True)  # the process dies inside step 2
        return await counting(state, ctx)

    return runner(lab, step)


def cancelled(lab):
    async def step(state, ctx):
        if ctx.step_index == 1:
            raise asyncio.CancelledError("shutdown")
        return await counting(state, ctx)

    return runner(lab, step)


def elsewhere(lab):
    return runner(lab, counting, SQLiteCheckpointStore(lab.workdir.parent / "elsewhere.db"))


def not_a_runner(lab):
    return {"step": counting}
"""


@pytest.fixture(scope="module")
def loops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("loom_runner_loops")
    (root / "lr_loops.py").write_text(LOOPS)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        import lr_loops  # type: ignore[import-not-found]

        yield lr_loops


@pytest.fixture
def scenario(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "scenarios" / "case.loom.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text("version: 1\nruntime: loom-runner\n" + textwrap.dedent(text))
        return path

    return write


def journal(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of loom-runner's own store of the first ``loom_run`` of a test."""
    with sqlite3.connect(tmp_path / "loom-run-1" / "work" / "loom-runner.db") as conn:
        return conn.execute(sql).fetchall()


def shipped(name: str) -> Path:
    return SHIPPED / f"{name}.loom.yaml"


# -- what the record is built from -------------------------------------------------------------


def test_completed_run_costs_come_from_the_mock_llm_per_step(loom_run: Any) -> None:
    record: RunRecord = loom_run(shipped("completed"))
    assert record.runtime.name == "loom-runner" and record.runtime.version == "0.1.3"
    assert record.stop.label == "completed" and record.stop.raw_status == "completed"
    assert [s.index for s in record.steps] == [1, 2, 3]
    for step in record.steps:
        assert [c.cost_usd for c in step.llm_calls] and step.cost_usd == sum(
            c.cost_usd for c in step.llm_calls
        )
    assert [s.cumulative_cost_usd for s in record.steps] == [0.0012, 0.002575, 0.004375]
    assert record.totals.cost_usd == 0.004375 and record.totals.elapsed_s == 6.0
    assert [[t.name for t in s.tool_calls] for s in record.steps] == [
        ["fetch_thread", "search_kb"],
        ["fetch_thread", "set_priority"],
        ["fetch_thread"],
    ]


def test_state_digests_are_of_what_loom_runner_stored(loom_run: Any, tmp_path: Path) -> None:
    record: RunRecord = loom_run(shipped("completed"))
    states = dict(journal(tmp_path, "select step_index, state_json from steps"))
    (result,) = journal(tmp_path, "select result_json from runs")[0]
    assert record.steps[0].state_digest == digest(json.loads(states[1]))
    assert record.steps[1].state_digest == digest(json.loads(states[2]))
    assert record.steps[2].state_digest == digest(json.loads(result))  # Complete(result)


def test_tool_calls_are_the_journal_rows(loom_run: Any, tmp_path: Path) -> None:
    record: RunRecord = loom_run(shipped("failed_tool"))
    rows = journal(tmp_path, "select tool_name, request_hash, status from tool_calls")
    recorded = [(t.name, t.args["request_hash"], t.status) for t in record.steps[0].tool_calls]
    assert recorded == [(name, h[:16], status) for name, h, status in rows]
    assert [t.status for t in record.steps[0].tool_calls] == ["completed", "error"]


def test_record_is_deterministic_and_free_of_paths(loom_run: Any) -> None:
    first: RunRecord = loom_run(shipped("retried"))
    second: RunRecord = loom_run(shipped("retried"))
    assert first.to_json() == second.to_json()
    assert b"/tmp" not in first.to_json() and b"pytest-" not in first.to_json()


# -- stops ---------------------------------------------------------------------------------------


def test_iterations_are_max_steps_and_the_run_pauses(loom_run: Any) -> None:
    record: RunRecord = loom_run(shipped("paused"))
    assert record.stop.reason is StopReason.PAUSED and record.stop.raw_status == "paused"
    assert record.stop.detail == (
        "max_steps used up after step 2 (budget.iterations=2); resume continues the run"
    )


def test_without_iterations_a_runaway_loop_pauses_at_the_default(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loom_runner, "DEFAULT_MAX_STEPS", 4)
    record: RunRecord = loom_run(scenario("entry: lr_loops:count\ninput: {n: 0, until: 99}\n"))
    assert record.stop.label == "paused" and record.totals.steps == 4
    assert "(max_steps=4)" in (record.stop.detail or "")


def test_a_raise_fault_fails_the_step_inside_loom_runner(loom_run: Any, tmp_path: Path) -> None:
    record: RunRecord = loom_run(shipped("raise_fault"))
    assert record.stop.label == "failed(RuntimeError)"
    assert record.stop.raw_status == "failed"
    assert record.stop.raw_exception == "RuntimeError: disk full"
    failed = record.steps[1]
    assert failed.error == "RuntimeError: disk full"
    assert failed.state_digest == record.steps[0].state_digest  # its input state
    rows = journal(tmp_path, "select step_index, status, error_category from attempts")
    assert rows[-1] == (1, "failed", "unknown")


def test_retried_step_carries_every_attempt_and_reuses_its_tool_call(
    loom_run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.loom_runner import triage

    executed: list[str] = []
    monkeypatch.setattr(triage, "fetch_thread", lambda ticket: executed.append(ticket) or "t")
    record: RunRecord = loom_run(shipped("retried"), check=False)
    step = record.steps[1]
    assert step.events == ("retried",)
    assert [c.error for c in step.llm_calls] == ["rate_limit", None]
    assert [t.name for t in step.tool_calls] == ["fetch_thread"]  # one execution, two attempts
    assert executed == ["T-1042", "T-1042"]  # steps 1 and 2; the retry reused the journal
    attempts = journal(tmp_path, "select step_index, attempt_index, status from attempts")
    assert attempts[1:] == [(1, 0, "failed"), (1, 1, "completed")]


def test_retries_used_up_fail_with_the_last_error(loom_run: Any) -> None:
    record: RunRecord = loom_run(shipped("retries_exhausted"))
    assert record.stop.label == "failed(StepExecutionError)"
    assert (record.stop.raw_exception or "").startswith("StepExecutionError: ServerError")
    assert record.steps[0].events == ("retried",)
    assert record.totals.elapsed_s == 60.0  # two 30 s timeouts of fake time


@pytest.mark.parametrize("policy", ["compact", "interval"])
def test_checkpoint_policies_give_the_record_of_the_full_journal(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path], policy: str
) -> None:
    # compact journals no first attempt that succeeded; interval keeps every 2nd checkpoint.
    text = "entry: lr_loops:flaky\ninput: {n: 0, until: 4}\noptions: {policy: %s}\n"
    full: RunRecord = loom_run(scenario(text % "full"))
    other: RunRecord = loom_run(scenario(text % policy))
    assert other == full
    assert [s.events for s in full.steps] == [(), ("retried",), (), ()]


# -- crashes, kills and both views ---------------------------------------------------------------


def test_crash_resume_equals_the_uninterrupted_run_plus_resumed(loom_run: Any) -> None:
    plain: RunRecord = loom_run(shipped("completed"))
    crashed: RunRecord = loom_run(shipped("crash_resume"))
    assert [s.events for s in crashed.steps] == [(), ("resumed",), ()]
    assert [(s.state_digest, s.tool_calls, s.cost_usd) for s in crashed.steps] == [
        (s.state_digest, s.tool_calls, s.cost_usd) for s in plain.steps
    ]
    assert crashed.totals == plain.totals
    # loom-runner resumes from its JSON checkpoint, written with sorted keys: the resumed step
    # sees {"result", "tool"} where the uninterrupted one saw {"tool", "result"}.
    assert crashed.steps[0].llm_calls == plain.steps[0].llm_calls
    resumed, uninterrupted = crashed.steps[1].llm_calls[0], plain.steps[1].llm_calls[0]
    assert "[{'result': ['KB-7'], 'tool': 'search_kb'}]" in resumed.prompt
    assert "[{'tool': 'search_kb', 'result': ['KB-7']}]" in uninterrupted.prompt


def test_every_resume_is_numbered_on_from_the_checkpoint(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path]
) -> None:
    path = scenario(
        """\
        entry: lr_loops:count
        input: {n: 0, until: 5}
        faults: [{crash: {step: 2}}, {crash: {step: 4}}]
        """
    )
    record: RunRecord = loom_run(path)
    assert [s.index for s in record.steps] == [1, 2, 3, 4, 5]
    assert [s.events for s in record.steps] == [(), ("resumed",), (), ("resumed",), ()]


def test_iterations_are_a_total_across_resume(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path]
) -> None:
    path = scenario(
        """\
        entry: lr_loops:count
        input: {n: 0, until: 9}
        budget: {iterations: 3}
        faults: [{crash: {step: 2}}]
        """
    )
    record: RunRecord = loom_run(path)
    assert record.stop.label == "paused" and record.totals.steps == 3


def test_kill_and_resume_in_a_new_process(loom_run: Any, tmp_path: Path) -> None:
    plain: RunRecord = loom_run(shipped("completed"))
    killed: RunRecord = loom_run(shipped("kill_resume"))
    assert [s.events for s in killed.steps] == [(), (), ("resumed",)]
    assert [s.tool_calls for s in killed.steps] == [s.tool_calls for s in plain.steps]
    assert killed.totals == plain.totals and killed.stop == plain.stop


def test_killed_and_not_resumed_reads_what_the_dead_process_left(loom_run: Any) -> None:
    record: RunRecord = loom_run(shipped("killed"))
    assert record.stop.reason is StopReason.PAUSED
    assert record.stop.raw_status == "running" and record.stop.raw_exception is None
    assert record.totals.steps == 1 and record.totals.elapsed_s == 2.0


def test_a_process_dying_inside_a_step_cannot_be_resumed_by_loom_runner(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path]
) -> None:
    # loom-runner 0.1.3 journals the attempt as started, then resume inserts the same
    # attempt row again: sqlite3.IntegrityError. The record says so, step by step.
    loops.EXECUTED.clear()
    record: RunRecord = loom_run(
        scenario("entry: lr_loops:dies_mid_attempt\ninput: {n: 0, until: 3}\n")
    )
    assert record.stop.label == "failed(IntegrityError)" and record.stop.raw_status == "failed"
    died = record.steps[1]
    assert died.events == ("resumed",)
    assert died.error == "attempt 1 of step 2 started and never finished (the process died)"
    assert [t.status for t in died.tool_calls] == ["completed"]
    assert loops.EXECUTED == ["step 0", "step 1"]


def test_both_views_when_the_store_and_the_caller_disagree(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path]
) -> None:
    # A cancelled step escapes loom-runner without marking the run failed.
    record: RunRecord = loom_run(scenario("entry: lr_loops:cancelled\ninput: {n: 0, until: 3}\n"))
    assert record.stop.label == "failed(CancelledError)"
    assert record.stop.raw_status == "running"
    assert record.stop.raw_exception == "CancelledError: shutdown"


# -- clock ---------------------------------------------------------------------------------------


def test_deadline_in_fake_time_stops_at_the_same_step_in_milliseconds(loom_run: Any) -> None:
    records = []
    for _ in range(3):
        began = real_perf_counter()
        records.append(loom_run(shipped("deadline")))
        assert real_perf_counter() - began < 2.0  # 36 fake minutes of backoff and latency
    assert {r.to_json() for r in records} == {records[0].to_json()}
    assert records[0].totals.steps == 8 and records[0].totals.elapsed_s == 2173.0


def test_loom_runner_stamps_fake_time_that_stays_out_of_the_record(
    loom_run: Any, tmp_path: Path
) -> None:
    record: RunRecord = loom_run(shipped("deadline"))
    ((created, updated),) = journal(tmp_path, "select created_at, updated_at from runs")
    assert created == "2026-03-02T09:00:00+00:00"
    assert updated == "2026-03-02T09:36:13+00:00"
    assert b"2026" not in record.to_json()


# -- mistakes ------------------------------------------------------------------------------------


def test_an_entry_point_that_builds_no_runner(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path]
) -> None:
    from pytest_loom import RuntimeNotAvailable

    with pytest.raises(RuntimeNotAvailable, match=r"needs a loom_agent\.AgentRunner"):
        loom_run(scenario("entry: lr_loops:not_a_runner\n"))


def test_a_store_outside_the_test_directory_is_refused(
    loom_run: Any, loops: Any, scenario: Callable[[str], Path]
) -> None:
    from pytest_loom import CheckpointError

    with pytest.raises(CheckpointError, match=r"outside the test's directory(.|\n)*lab_store"):
        loom_run(scenario("entry: lr_loops:elsewhere\ninput: {n: 0, until: 2}\n"))


# -- the plugin, as a user runs it ---------------------------------------------------------------

PROJECT_LOOPS = LOOPS.replace("from pytest_loom.faults import SimulatedCrash\n", "")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(lr_loops=PROJECT_LOOPS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    pytester.path.joinpath("scenarios").mkdir()
    return pytester


def test_budgets_loom_runner_cannot_enforce_name_file_line_and_fix(
    project: pytest.Pytester,
) -> None:
    for key, value in [("usd", "0.5"), ("tokens", "1000"), ("wall_clock", "10m")]:
        project.path.joinpath("scenarios", f"{key}.loom.yaml").write_text(
            "version: 1\nruntime: loom-runner\nentry: lr_loops:count\ninput: {n: 0, until: 2}\n"
            f"budget:\n  iterations: 5\n  {key}: {value}\n"
        )
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--loom-scenarios")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines_random(
        [
            "scenarios/usd.loom.yaml:7: budget.usd: loom-runner cannot enforce this limit: *",
            "scenarios/tokens.loom.yaml:7: budget.tokens: loom-runner cannot enforce this limit*",
            "scenarios/wall_clock.loom.yaml:7: budget.wall_clock: loom-runner cannot enforce *",
            "*hint: loom-runner enforces only budget.iterations (as max_steps); remove budget.usd*",
        ]
    )
    assert "pytest_loom/" not in result.stdout.str()


def test_scenarios_write_nothing_outside_the_test_directory(
    project: pytest.Pytester, project_files: Callable[[], set[Path]]
) -> None:
    project.path.joinpath("scenarios", "count.loom.yaml").write_text(
        "version: 1\nruntime: loom-runner\nentry: lr_loops:count\ninput: {n: 0, until: 3}\n"
        "faults: [{kill: {step: 2}}]\nexpect: {stop: completed, steps: 3}\n"
    )

    before = project_files()
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "--loom-scenarios", "--snapshot-update"
    )
    result.assert_outcomes(passed=1)
    snapshot = Path("scenarios/__snapshots__/count.loom/count.run.json")
    assert project_files() - before == {snapshot.parent.parent, snapshot.parent, snapshot}
    snapshot = project.path / snapshot
    assert json.loads(snapshot.read_text())["steps"][1]["events"] == ["resumed"]
