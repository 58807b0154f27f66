"""The seed runtimes' own checkpoints, side by side with raw sqlite3 and the reference runtime.

Informational rows (no targets) for ``benchmarks/run.py``: the per-step cost and the resume
cost of loomc, loom-runner and tightloop, each driven through its real public API with the
benchmark's small state, next to raw ``sqlite3`` (WAL + ``synchronous=NORMAL``, one autocommit
``INSERT`` per step) and the reference runtime, all three measured in the same run, interleaved.
A runtime that is not installed gets a breakdown line saying so instead of its rows.

* loomc: ``@loop(checkpoint=path, budget=Budget(iterations=N))``, a step ``state -> state``;
  it ends by ``BudgetExhausted``. Resume is ``fn.resume(run_id)`` with a budget of one more
  iteration (loomc extends the budget by what the run already used), so it loads the history
  and runs one step.
* loom-runner: ``AgentRunner.start(max_steps=N)`` over its ``SQLiteCheckpointStore``, identity
  encoders; resume is ``AgentRunner.resume(max_steps=1)`` on a new runner.
* tightloop: one iteration is an LLM call (a ``CallableLLM`` answering at once) and one tool
  call; its state, a JSON file that it rewrites whole every iteration, grows with every
  iteration, so it runs a quarter of the steps. Resume is ``Loop.resume(state_path,
  extend={"max_iterations": N + 1})``.

Every file lives in the benchmark's temporary directory; nothing reaches the network. Times are
real (``perf_counter``): the runtimes run on the real clock here, not the lab's fake one.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from run import (
    NOTE,
    RUN_ID,
    Detail,
    Plan,
    Row,
    Scratch,
    build_crashed_run,
    build_raw_history,
    initial_state,
    median,
    ms,
    progress,
    raw_resume_and_step,
    raw_steps,
    reference_resume,
    reference_steps,
    trivial_step,
    us,
)

from pytest_loom._clockpatch import real_perf_counter as clock

REPEATS = 3
RESUMES = 5


@dataclass(frozen=True, slots=True)
class Seed:
    """One seed runtime: how to run it for ``steps`` steps, and how to resume that run."""

    name: str
    module: str
    """The import name that tells whether it is installed."""
    run: Callable[[Path, int], None]
    """Run ``steps`` steps from the benchmark's initial state, checkpointing under ``path``."""
    resume: Callable[[Path, int], None]
    """Resume the run under ``path`` (``steps`` long so far) in new objects and run one step."""
    divisor: int = 1
    """Runs ``steps // divisor`` steps (a runtime whose steps grow slower as the run grows)."""


# -- loomc ----------------------------------------------------------------------------------------


def _loomc(path: Path, iterations: int) -> Any:
    from loomc import Budget, loop

    @loop(checkpoint=str(path / "loomc.db"), budget=Budget(iterations=iterations))
    def step(state: dict[str, Any]) -> dict[str, Any]:
        return trivial_step(state)

    return step


def loomc_run(path: Path, steps: int) -> None:
    from loomc import BudgetExhausted

    try:
        _loomc(path, steps)(initial_state())
    except BudgetExhausted:
        return
    raise RuntimeError("loomc's run did not end on its iteration budget")


def loomc_resume(path: Path, steps: int) -> None:
    from loomc import BudgetExhausted

    fn = _loomc(path, 1)
    (run,) = fn._store.list_runs()
    try:
        fn.resume(run.id)
    except BudgetExhausted:
        return
    raise RuntimeError("loomc's resume did not end on its iteration budget")


# -- loom-runner ----------------------------------------------------------------------------------


def _runner(path: Path) -> Any:
    from loom_agent import AgentRunner, Continue, SQLiteCheckpointStore

    async def step(state: dict[str, Any], ctx: Any) -> Any:
        return Continue(trivial_step(state))

    def same(value: Any) -> Any:
        return value

    return AgentRunner(
        step=step,
        store=SQLiteCheckpointStore(path / "runs.db"),
        encode_state=same,
        decode_state=same,
        encode_result=same,
        decode_result=same,
    )


def loom_runner_run(path: Path, steps: int) -> None:
    runner = _runner(path)
    result = asyncio.run(
        runner.start(run_id=RUN_ID, initial_state=initial_state(), max_steps=steps)
    )
    if result.status != "paused" or result.step_index != steps:
        raise RuntimeError(f"loom-runner's run ended unexpectedly: {result}")


def loom_runner_resume(path: Path, steps: int) -> None:
    result = asyncio.run(_runner(path).resume(run_id=RUN_ID, max_steps=1))
    if result.status != "paused":
        raise RuntimeError(f"loom-runner's resume ended unexpectedly: {result}")


# -- tightloop ------------------------------------------------------------------------------------


def _tightloop_settings(path: Path) -> dict[str, Any]:
    from loop import CallableLLM, HeadlessApprovalRunner, LLMResponse, ToolCallReq

    def note(i: int) -> str:
        """Write down note ``i``."""
        return NOTE

    def reply(messages: list[Any], tool_schemas: Any) -> Any:
        call = ToolCallReq(id=f"c{len(messages)}", name="note", args={"i": len(messages)})
        return LLMResponse(text="plan", tool_calls=[call], input_tokens=100, output_tokens=20)

    return {
        "tools": [note],
        "llm": CallableLLM(reply, model_id="gpt-4o"),
        "observe": lambda state: f"{len(state.iterations)} notes written",
        "exits": [],
        "policies": [],  # its default NoProgress(3) would stop a loop that repeats a tool call
        "token_limit": 10**12,
        "wall_clock_s": 10**9,
        "cost_limit_usd": 10**9,
        "pricing_staleness": "token-only",  # no warning about its pricing table's date
        "quiet": True,
        "approval_runner": HeadlessApprovalRunner(),
        "trace_path": str(path / "trace.jsonl"),
    }


def tightloop_run(path: Path, steps: int) -> None:
    from loop import Loop

    settings = _tightloop_settings(path)
    state_path = str(path / "state.json")
    result = Loop("write notes", state_path=state_path, max_iterations=steps, **settings).run()
    if result.iterations != steps:
        raise RuntimeError(f"tightloop's run ended unexpectedly: {result}")


def tightloop_resume(path: Path, steps: int) -> None:
    from loop import Loop

    state_path = str(path / "state.json")
    done = Loop.resume(
        state_path, extend={"max_iterations": steps + 1}, **_tightloop_settings(path)
    )
    if done.iterations != steps + 1:
        raise RuntimeError(f"tightloop's resume ended unexpectedly: {done}")


SEEDS = (
    Seed("loomc", "loomc", loomc_run, loomc_resume),
    Seed("loom-runner", "loom_agent", loom_runner_run, loom_runner_resume),
    Seed("tightloop", "loop", tightloop_run, tightloop_resume, divisor=4),
)


# -- measurement ----------------------------------------------------------------------------------


def _timed(function: Callable[[Path, int], None], path: Path, steps: int) -> float:
    t0 = clock()
    function(path, steps)
    return clock() - t0


def _per_step(seed: Seed, steps: int, scratch: Scratch) -> tuple[Path, float, float, float]:
    """The runtime's last run directory and the medians of its, raw's and the reference's
    seconds per step, the three interleaved, each in a fresh database."""
    mine: list[float] = []
    raw: list[float] = []
    ref: list[float] = []
    run_dir = scratch.root
    for _ in range(REPEATS):
        run_dir = scratch.db(seed.name).with_suffix("")  # a directory of its own
        run_dir.mkdir()
        mine.append(_timed(seed.run, run_dir, steps) / steps)
        raw.append(raw_steps(scratch.db("seed-raw"), steps))
        ref.append(reference_steps(scratch.db("seed-ref"), steps))
    return run_dir, median(mine), median(raw), median(ref)


def _resume(seed: Seed, run_dir: Path, steps: int, scratch: Scratch) -> tuple[float, float, float]:
    """Medians of resume + 1 step: the runtime's, raw's and the reference's, interleaved."""
    raw_db, ref_db = scratch.db("seed-raw-resume"), scratch.db("seed-ref-resume")
    build_raw_history(raw_db, steps)
    build_crashed_run(ref_db, steps)
    mine: list[float] = []
    raw: list[float] = []
    ref: list[float] = []
    for i in range(RESUMES):
        mine.append(_timed(seed.resume, run_dir, steps + i))
        raw.append(raw_resume_and_step(raw_db))
        ref.append(reference_resume(ref_db, steps).total)
    return median(mine), median(raw), median(ref)


def measure(plan: Plan, scratch: Scratch) -> tuple[list[Row], list[Detail]]:
    rows: list[Row] = []
    details: list[Detail] = []
    for seed in SEEDS:
        if importlib.util.find_spec(seed.module) is None:
            details.append(
                Detail(
                    f"{seed.name}: not measured",
                    "-",
                    f"not installed (no module `{seed.module}`); `pip install {seed.name}` "
                    "adds its rows",
                )
            )
            continue
        steps = plan.step_sizes[0][0] // seed.divisor
        progress(f"{seed.name}: {steps:,} steps x {REPEATS}, resume x {RESUMES}")
        run_dir, mine, raw, ref = _per_step(seed, steps, scratch)
        rows.append(
            Row(
                f"{seed.name} per-step cost, {steps:,} steps (median of {REPEATS}; no target)",
                f"{us(mine)}/step",
                f"{us(raw)}/step raw sqlite3; reference runtime {us(ref)}/step "
                f"({mine / ref:.1f}x it)",
                mine / raw,
                None,
            )
        )
        resumed, raw_resumed, ref_resumed = _resume(seed, run_dir, steps, scratch)
        rows.append(
            Row(
                f"{seed.name} resume + 1 step after {steps:,} steps (median of {RESUMES}; "
                "no target)",
                ms(resumed),
                f"{ms(raw_resumed)} raw sqlite3 open + read last row + commit 1 row; reference "
                f"runtime {ms(ref_resumed)} ({resumed / ref_resumed:.1f}x it)",
                resumed / raw_resumed,
                None,
            )
        )
    return rows, details
