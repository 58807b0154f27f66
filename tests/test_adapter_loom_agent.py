"""The loom-agent adapter as its users rely on it: records, stops, resume, fake time, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest.importorskip(
    "loom.agent", reason="loom-agent is not installed (pip install 'pytest-loom[loom-agent]')"
)

import loom.agent

from pytest_loom import RunRecord
from pytest_loom._clockpatch import real_perf_counter
from pytest_loom._isolation import isolated
from pytest_loom.adapters.loom_agent import LoomAgentRuntime, loom_agent_limits
from pytest_loom.clock import FakeClock
from pytest_loom.runner import ScenarioRun, make_lab, run_scenario
from pytest_loom.runtimes import RuntimeNotAvailable
from pytest_loom.scenario import Scenario, ScenarioError, load_scenario
from pytest_loom.store import CheckpointStore

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios" / "loom-agent"

HEAD = """\
version: 1
runtime: loom-agent
entry: examples.loom_agent.notes:build
input: "Research how agent loops stop."
"""
NOTE = '{tool_calls: [{name: write_note, args: {text: "n"}}], usage: {input: 300, output: 10}}'


def run(scenario: Scenario, root: Path) -> tuple[ScenarioRun, Path]:
    with isolated(root) as workdir, FakeClock(start=scenario.clock.start) as clock:
        result = run_scenario(scenario, clock=clock, workdir=workdir)
    return result, workdir


def shipped(name: str, tmp_path: Path) -> RunRecord:
    result, _ = run(load_scenario(SCENARIOS / f"{name}.loom.yaml"), tmp_path)
    assert result.problems == []
    return result.record


def scenario(tmp_path: Path, body: str, head: str = HEAD) -> Scenario:
    path = tmp_path / "s.loom.yaml"
    path.write_text(head + textwrap.dedent(body))
    return load_scenario(path)


def test_a_completed_run_records_one_step_per_turn_with_its_tools_and_costs(
    tmp_path: Path,
) -> None:
    record = shipped("completed", tmp_path)
    assert record.stop.label == "completed"
    assert record.runtime.name == "loom-agent" and record.runtime.version == "0.8.2"
    assert record.run_id == record.scenario == "completed"
    assert [len(s.tool_calls) for s in record.steps] == [1, 1, 0]
    assert record.steps[0].tool_calls[0].args == {"text": "A loop stops when its check passes."}
    assert [s.start_s for s in record.steps] == [0.0, 2.0, 4.0]
    running = 0.0
    for step in record.steps:
        assert step.cost_usd == sum(c.cost_usd for c in step.llm_calls)
        running = round(running + step.cost_usd, 12)
        assert step.cumulative_cost_usd == running
    assert len({s.state_digest for s in record.steps}) == 3
    assert record.totals.cost_usd == running and record.totals.elapsed_s == 6.0


def test_the_health_check_ping_never_reaches_the_script(tmp_path: Path) -> None:
    result, _ = run(load_scenario(SCENARIOS / "completed.loom.yaml"), tmp_path)
    assert [m.content for m in result.llm.requests[0].messages][-1] == (
        "Research how agent loops stop."
    )
    assert len(result.llm.requests) == 3


def test_budget_iterations_are_turns_of_four_transitions(tmp_path: Path) -> None:
    record = shipped("max_iterations", tmp_path)
    assert record.stop.label == "budget_exhausted(iterations)"
    assert (record.stop.raw_status, record.stop.detail) == ("failed", "max_iterations")
    assert record.totals.steps == 2
    assert all(len(s.tool_calls) == 1 for s in record.steps)  # the last turn ran in full
    s = scenario(tmp_path, "budget: {iterations: 3}\n")
    with CheckpointStore(tmp_path / "c.db") as store:
        lab = make_lab(s, clock=FakeClock(), store=store, workdir=tmp_path)
        assert loom_agent_limits(lab).max_iterations == 12


def test_a_provider_failure_keeps_the_status_and_the_exception(tmp_path: Path) -> None:
    record = shipped("failed", tmp_path)
    stop = record.stop
    assert stop.label == "failed(ProviderUnavailableError)"
    assert (stop.raw_status, stop.detail) == ("failed", "provider_error")
    assert stop.raw_exception is not None and "simulated server_error" in stop.raw_exception
    (step,) = record.steps
    assert [c.error for c in step.llm_calls] == ["server_error"] * 3
    assert step.events == ("retried", "retried")
    assert step.duration_s == 3 * 2.0 + 1.0 + 2.0  # latencies plus the 1 s and 2 s backoff


def test_retry_backoff_runs_on_the_fake_clock(tmp_path: Path) -> None:
    started = real_perf_counter()
    record = shipped("retried", tmp_path)
    assert real_perf_counter() - started < 2.0
    assert record.stop.label == "completed"
    assert record.steps[1].events == ("retried",)
    assert record.steps[1].duration_s == 2.0 + 1.0 + 2.0
    assert [c.error for c in record.steps[1].llm_calls] == ["rate_limit", None]


def test_a_raise_fault_fails_the_turn_and_the_run(tmp_path: Path) -> None:
    record = shipped("raised", tmp_path)
    assert record.stop.label == "failed(RuntimeError)"
    assert record.stop.raw_exception == "RuntimeError: disk full"
    assert record.steps[-1].error == "RuntimeError: disk full"
    assert record.steps[-1].llm_calls == ()


def test_resume_restores_the_session_and_restarts_the_task(tmp_path: Path) -> None:
    record = shipped("crash_resume", tmp_path / "a")
    assert [s.index for s in record.steps] == [1, 2, 3]
    assert [s.events for s in record.steps] == [(), ("resumed",), ()]
    first, resumed = record.steps[0].llm_calls[0], record.steps[1].llm_calls[0]
    assert resumed.request_digest == first.request_digest  # the same first question again
    assert record.totals.cost_usd == sum(s.cost_usd for s in record.steps)
    killed = shipped("kill_resume", tmp_path / "b")
    assert killed.steps == record.steps and killed.stop == record.stop


def test_a_killed_run_not_resumed_is_paused(tmp_path: Path) -> None:
    record = shipped("killed", tmp_path)
    assert record.stop.label == "paused"
    assert record.stop.detail is not None and "stopped during step 2" in record.stop.detail
    assert record.totals.steps == 1 and record.steps[0].tool_calls[0].status == "ok"


def test_a_fresh_instance_reads_the_same_record_back(tmp_path: Path) -> None:
    s = load_scenario(SCENARIOS / "completed.loom.yaml")
    with (
        isolated(tmp_path) as workdir,
        FakeClock(start=s.clock.start) as clock,
        CheckpointStore(workdir / "c.db") as store,
    ):
        lab = make_lab(s, clock=clock, store=store, workdir=workdir)
        ran = LoomAgentRuntime()
        ran.run(s, lab, resume=False)
        assert LoomAgentRuntime().record(s, lab) == ran.record(s, lab)


@pytest.mark.parametrize(
    ("latency", "refused"), [("25s", ["ok", "ok", "error", "ok"]), ("40s", ["ok"] * 4)]
)
def test_the_tool_rate_limit_follows_the_fake_clock(
    tmp_path: Path, latency: str, refused: list[str]
) -> None:
    s = scenario(
        tmp_path,
        f"""\
        options: {{calls_per_minute: 2}}
        llm:
          model: gpt-4o-mini
          latency: {latency}
          turns: [{NOTE}, {NOTE}, {NOTE}, {NOTE}, {{text: "done"}}]
        """,
    )
    started = real_perf_counter()
    result, _ = run(s, tmp_path)
    assert real_perf_counter() - started < 2.0
    assert [s.tool_calls[0].status for s in result.record.steps[:4]] == refused


def test_the_wall_clock_scenario_is_the_same_every_run_in_milliseconds(tmp_path: Path) -> None:
    records = []
    for i in range(3):
        started = real_perf_counter()
        records.append(shipped("rate_limited", tmp_path / str(i)))
        assert real_perf_counter() - started < 1.0
    assert records[0] == records[1] == records[2]
    assert records[0].totals.elapsed_s == 125.0


def test_a_reply_starting_with_error_is_taken_for_a_provider_error(tmp_path: Path) -> None:
    s = scenario(
        tmp_path, 'llm: {model: gpt-4o-mini, turns: [{text: "Error: no sources found"}]}\n'
    )
    result, _ = run(s, tmp_path)
    stop = result.record.stop
    assert stop.label == "failed(provider_error)" and stop.raw_exception is None
    assert stop.detail is not None and "no provider call failed" in stop.detail


def test_everything_persisted_stays_in_the_workdir_and_the_seam_is_restored(
    tmp_path: Path,
) -> None:
    seam = loom.agent._resolve_provider
    _, workdir = run(load_scenario(SCENARIOS / "completed.loom.yaml"), tmp_path)
    assert loom.agent._resolve_provider is seam
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "work"]
    assert (workdir / ".loom" / "memory").is_dir()
    assert (workdir / "loom-agent" / "sessions.json").is_file()
    assert not any((tmp_path / "home").iterdir())


@pytest.mark.parametrize(
    ("budget", "key"),
    [("{usd: 0.5}", "usd"), ("{tokens: 900}", "tokens"), ("{wall_clock: 10m}", "wall_clock")],
)
def test_a_budget_loom_agent_cannot_enforce_is_named_with_its_line(
    tmp_path: Path, budget: str, key: str
) -> None:
    s = scenario(tmp_path, f"budget: {budget}\n")
    with pytest.raises(ScenarioError) as info:
        run(s, tmp_path)
    message = str(info.value)
    assert f"s.loom.yaml:5: budget.{key}: loom-agent cannot enforce" in message
    assert f"hint: remove budget.{key}" in message


AGENTS = """
from loom import Agent, FileSessionStore, InMemorySessionStore, Model

from pytest_loom.adapters.loom_agent import loom_agent_store


def no_limits(lab):
    return Agent(model=Model.openai("gpt-4o-mini"), session_store=loom_agent_store(lab))


def in_memory(lab):
    return Agent(model=Model.openai("gpt-4o-mini"), session_store=InMemorySessionStore())


def not_an_agent(lab):
    return "agent"
"""


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "lab_agents.py").write_text(AGENTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "lab_agents"


def test_an_agent_that_ignores_budget_iterations_is_refused(tmp_path: Path, agents: str) -> None:
    s = scenario(
        tmp_path,
        "budget: {iterations: 3}\n",
        HEAD.replace("examples.loom_agent.notes", agents).replace(":build", ":no_limits"),
    )
    with pytest.raises(ScenarioError) as info:
        run(s, tmp_path)
    assert "s.loom.yaml:5: budget.iterations:" in str(info.value)
    assert "max_iterations=100, not the 12 transitions" in str(info.value)
    assert "loom_agent_limits(lab)" in str(info.value)


def test_an_agent_without_a_file_session_store_is_refused(tmp_path: Path, agents: str) -> None:
    s = scenario(
        tmp_path, "", HEAD.replace("examples.loom_agent.notes:build", f"{agents}:in_memory")
    )
    with pytest.raises(ScenarioError, match="loom_agent_store"):
        run(s, tmp_path)


def test_an_entry_that_builds_no_agent_is_refused(tmp_path: Path, agents: str) -> None:
    s = scenario(
        tmp_path, "", HEAD.replace("examples.loom_agent.notes:build", f"{agents}:not_an_agent")
    )
    with pytest.raises(RuntimeNotAvailable, match=r"returned str; .* needs a loom\.Agent"):
        run(s, tmp_path)


def test_input_that_is_no_task_is_named_with_its_line(tmp_path: Path) -> None:
    s = scenario(tmp_path, "", HEAD.replace('"Research how agent loops stop."', "{topic: loops}"))
    with pytest.raises(ScenarioError) as info:
        run(s, tmp_path)
    assert "s.loom.yaml:4: input: a loom-agent scenario's input is the task" in str(info.value)


def test_input_with_context_reaches_the_run(tmp_path: Path) -> None:
    s = scenario(
        tmp_path,
        "llm: {model: gpt-4o-mini, turns: [{text: done}]}\n",
        HEAD.replace(
            '"Research how agent loops stop."', '{prompt: "Go.", context: {topic: loops}}'
        ),
    )
    result, _ = run(s, tmp_path)
    assert result.problems == [] and result.record.stop.label == "completed"
    assert result.llm.requests[0].last_user_message == "Go."


def test_a_scenario_error_reads_as_one_clean_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(lab_agents=AGENTS)
    pytester.makeini("[pytest]\npythonpath = .\n")
    pytester.makefile(
        ".loom.yaml",
        usd=HEAD.replace("examples.loom_agent.notes:build", "lab_agents:no_limits")
        + "budget: {usd: 0.5}\n",
    )
    result = pytester.runpytest("--loom-scenarios", "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*usd.loom.yaml:5: budget.usd: loom-agent cannot enforce*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*pytest_loom/adapters*")


def test_the_provider_circuit_breaker_runs_on_the_fake_clock() -> None:
    # loom-agent's breaker cannot open inside one run (a request gives up after 3 attempts,
    # the breaker needs 5 failures), so its clock is checked on loom's own class directly.
    from loom.providers.base import CircuitBreaker, RetryConfig

    started = real_perf_counter()
    with FakeClock() as clock:
        breaker = CircuitBreaker(RetryConfig())
        for _ in range(5):
            breaker.record_failure()
        assert breaker.is_open()
        clock.advance(59.9)
        assert breaker.is_open()
        clock.advance(0.1)
        assert not breaker.is_open(), "half-open after circuit_reset_after fake seconds"
    assert real_perf_counter() - started < 1.0
