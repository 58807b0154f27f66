"""Running one scenario: build its mock LLM and store, drive its runtime, check expectations.

This is the path every scenario item takes, and what ``loom_run`` exposes to Python tests. It
returns the run record and the list of problems (unmet expectations, scripting mistakes) rather
than raising, so the caller can report them together with a snapshot diff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import FakeClock
from .faults import FaultPlan, SimulatedCrash
from .lab import Lab
from .llm import MockLLM, UnconsumedTurnsError
from .record import RunRecord
from .recordmode import RecordMode, is_recording
from .reference import RUNTIME_NAME
from .runtimes import Runtime, get_runtime
from .scenario import Bound, CrashFault, KillFault, RaiseFault, Scenario
from .store import CheckpointStore

if TYPE_CHECKING:
    from .replay import Replay

MEMORY = ":memory:"
"""The store location of a run whose checkpoints stay in memory (see :func:`store_location`)."""


@dataclass(slots=True)
class ScenarioRun:
    scenario: Scenario
    record: RunRecord
    llm: MockLLM
    problems: list[str] = field(default_factory=list)


def run_scenario(
    scenario: Scenario,
    *,
    clock: FakeClock,
    workdir: Path,
    mode: RecordMode | str = RecordMode.NONE,
    replay: Replay | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScenarioRun:
    """Run ``scenario`` under ``clock`` (already started), keeping all files in ``workdir``.

    ``mode`` is the record mode of the scenario's cassette, if it has one (``llm.cassette``).
    With ``replay``, the steps it covers are answered from its recording and must ask for the
    same things. ``progress`` is called with each step number as the step starts.
    """
    runtime = get_runtime(scenario.runtime)
    blocked: list[str] = []
    # A throwaway database: a simulated crash needs no fsync, and a real kill loses only what
    # the kernel has not been handed, which is nothing.
    with CheckpointStore(store_location(scenario, workdir), durability="off") as store:
        lab = make_lab(
            scenario, clock=clock, store=store, workdir=workdir, mode=mode, replay=replay
        )
        lab.progress = progress
        record: RunRecord | None = None
        resume = stopped = False
        while record is None and not stopped and lab.faults.kills_pending():
            # The run goes on in a child process that really dies at the kill.
            from ._killrun import run_killable

            phase = run_killable(scenario, lab, resume=resume)
            record, stopped, resume = phase.record, not phase.resume, True
        if record is None:
            if not stopped:
                drive(runtime, scenario, lab, resume=resume, blocked=blocked)
            record = runtime.record(scenario, lab)
    if scenario.llm.cassette is not None:
        from .recorded import RecordedLLM  # loaded by make_lab for the cassette

        if isinstance(lab.llm, RecordedLLM):
            lab.llm.save()
    run = ScenarioRun(scenario, record, lab.llm)
    run.problems.extend(dict.fromkeys(f"{scenario.path}: {message}" for message in blocked))
    run.problems.extend(_llm_problems(scenario, lab.llm, replay))
    if replay is not None:
        run.problems.extend(replay.problems(record))
    run.problems.extend(_fault_problems(scenario, lab.faults, record))
    run.problems.extend(check_expectations(scenario, record))
    if scenario.expect.invariants:
        from .invariants import scenario_problems

        def rerun(twin: Scenario) -> RunRecord:
            (workdir / "uninterrupted").mkdir(exist_ok=True)
            return run_scenario(
                twin, clock=clock, workdir=workdir / "uninterrupted", mode=mode
            ).record

        run.problems.extend(scenario_problems(scenario, record, rerun))
    return run


def store_location(scenario: Scenario, workdir: Path) -> Path | str:
    """Where a run of ``scenario`` keeps the lab's checkpoint store.

    In memory on the reference runtime, unless a ``kill`` fault runs part of it in another
    process, which reopens the store: a simulated crash resumes through the same store in the
    same process, and the record is rebuilt from it before it closes, so a file would add
    nothing but its cost. Other runtimes get ``<workdir>/<id>.checkpoints.db``: an adapter may
    hand ``lab.store`` to code that opens its path.
    """
    if scenario.runtime == RUNTIME_NAME and not any(
        isinstance(fault, KillFault) for fault in scenario.faults
    ):
        return MEMORY
    return workdir / f"{scenario.id}.checkpoints.db"


def make_lab(
    scenario: Scenario,
    *,
    clock: FakeClock,
    store: CheckpointStore,
    workdir: Path,
    mode: RecordMode | str = RecordMode.NONE,
    replay: Replay | None = None,
) -> Lab:
    """The lab for one run of ``scenario``: its mock LLM with faults armed, clock and store.

    With ``llm.cassette``, the LLM is a :class:`~pytest_loom.RecordedLLM` in record mode ``mode``.
    With ``replay``, it answers the steps the replay covers from the recording.
    """
    spec = scenario.llm
    mock_args: dict[str, Any] = {
        "pricing": spec.pricing,
        "model": spec.model or "gpt-4o",
        "latency_s": spec.latency_s,
        "strict": spec.strict,
        "allow_unused": spec.allow_unused,
        "clock": clock,
    }
    llm: MockLLM
    if spec.cassette is None:
        llm = MockLLM(spec.turns, spec.rules, **mock_args)
    else:
        from .recorded import RecordedLLM

        llm = RecordedLLM(
            scenario.path.parent / spec.cassette.path,
            mode=mode,
            ignore=spec.cassette.ignore,
            turns=spec.turns,
            rules=spec.rules,
            **mock_args,
        )
    if replay is not None:
        llm.replaying(replay)
    faults = FaultPlan(scenario.faults)
    faults.arm(llm)
    return Lab(
        scenario=scenario.id,
        llm=llm,
        clock=clock,
        store=store,
        budget=scenario.budget,
        workdir=workdir,
        options=scenario.options,
        step_seconds=scenario.clock.step_s,
        faults=faults,
        started_s=clock.elapsed,
    )


def drive(
    runtime: Runtime,
    scenario: Scenario,
    lab: Lab,
    *,
    resume: bool,
    blocked: list[str] | None = None,
) -> None:
    """Run (or resume) the loop to its end, resuming after each simulated crash that asks.

    Provider SDK calls are served by the lab's LLM, and the network is blocked unless the
    LLM records a cassette; ``blocked`` collects the blocked connections.
    """
    from .intercept import serve_sdks
    from .netguard import block_network

    recording = is_recording(lab.llm)
    with serve_sdks(lab.llm), block_network(not recording) as log:
        try:
            while True:
                try:
                    runtime.run(scenario, lab, resume=resume)
                    return
                except SimulatedCrash as crash:
                    if not crash.resume:
                        return
                    resume = True
        finally:
            if blocked is not None:
                blocked.extend(log)


def _fault_problems(scenario: Scenario, faults: FaultPlan, record: RunRecord) -> list[str]:
    problems = []
    for fault in faults.unfired():
        i = scenario.faults.index(fault)
        kind = {CrashFault: "crash", KillFault: "kill", RaiseFault: "raise"}[type(fault)]
        problems.append(
            f"{scenario.path}:{scenario.lines.get(f'faults[{i}]', 1)}: faults[{i}]: the {kind} "
            f"at step {fault.step} never happened: the run ended after "
            f"{record.totals.steps} steps ({record.stop.label})\n"
            "  hint: move the fault to a step the run reaches, or remove it"
        )
    return problems


def _llm_problems(scenario: Scenario, llm: MockLLM, replay: Replay | None) -> list[str]:
    problems = [str(error) for error in llm.script_errors]
    if replay is not None and (replay.diverged or replay.from_step is not None):
        # After a divergence, unused turns are a consequence, not news; from step N on, the
        # loop is meant to ask for other things than the script or the cassette holds.
        return problems
    try:
        llm.verify()
    except UnconsumedTurnsError as exc:
        where = "llm.turns"
        if scenario.llm.cassette is not None:
            from .recorded import UnusedRecordingsError  # loaded by make_lab for the cassette

            if isinstance(exc, UnusedRecordingsError):
                where = "llm.cassette"
        line = scenario.lines.get(where, scenario.lines.get("llm", 1))
        problems.append(
            f"{scenario.path}:{line}: {exc}\n"
            "  hint: set `llm: {allow_unused: true}` if the loop may stop early on purpose"
        )
    return problems


def check_expectations(scenario: Scenario, record: RunRecord) -> list[str]:
    """The scenario's ``expect`` entries that the record does not meet, as readable lines."""
    expect = scenario.expect
    problems: list[str] = []

    def where(key: str) -> str:
        return f"{scenario.path}:{scenario.lines.get(key, scenario.lines.get('expect', 1))}"

    if expect.stop is not None and not expect.stop_matches(record.stop.label):
        detail = f" ({record.stop.detail})" if record.stop.detail else ""
        raw = f" [runtime said: {record.stop.raw_exception}]" if record.stop.raw_exception else ""
        problems.append(
            f"{where('expect.stop')}: expect.stop: expected {expect.stop}, "
            f"got {record.stop.label}{detail}{raw}"
        )
    measured: dict[str, tuple[Bound | None, float]] = {
        "steps": (expect.steps, record.totals.steps),
        "cost_usd": (expect.cost_usd, record.totals.cost_usd),
        "tokens": (expect.tokens, record.totals.tokens),
        "llm_calls": (expect.llm_calls, record.totals.llm_calls),
    }
    for key, (bound, value) in measured.items():
        if bound is not None and not bound.contains(value):
            problems.append(
                f"{where('expect.' + key)}: expect.{key}: expected {bound}, got {value:g}"
            )
    return problems
