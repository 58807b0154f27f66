"""The property suite: generated runs of real runtimes, checked against every invariant.

A property draws a scenario (:mod:`pytest_loom.strategies`) for one runtime's loop, runs it
through the runtime's adapter exactly as a scenario item would, runs it again without its
crashes and kills when it had any, and checks :mod:`pytest_loom.invariants` on the records.
When an invariant breaks, Hypothesis shrinks the scenario and the failure prints it as a
ready-to-commit ``.loom.yaml`` file that reproduces the violation under ``pytest
--loom-scenarios`` (its ``expect.invariants`` lists what broke).

Three properties run per loop:

* ``budget``: a budget, a script, a clock and a fault plan drawn up front;
* ``stepwise``: the loop is driven step by step by a small state machine that, before each step,
  draws a rule (go on; crash here and resume; raise in this step; fail this step's LLM call)
  and records it as a fault. It drives async loops too (the reference runtime's ``async def``
  steps, loom-runner, loom-agent), which Hypothesis' own ``RuleBasedStateMachine`` cannot;
* ``kill``: the process really dies at a drawn step and the run is resumed in a new one.

Settings come from the Hypothesis profiles registered here, ``loom-dev`` and ``loom-ci``
(derandomised, bounded, no example database), unless ``--hypothesis-profile`` names another.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from . import strategies
from ._isolation import isolated
from .clock import FakeClock
from .faults import FaultPlan
from .invariants import NAMES, InvariantViolation, check_run, without_interruptions
from .llm import MockLLM
from .property_loops import TARGETS, Target
from .record import RunRecord
from .reproducer import scenario_yaml
from .runner import drive, make_lab, run_scenario
from .runtimes import get_runtime
from .scenario import (
    CrashFault,
    Expectation,
    Fault,
    KillFault,
    LLMErrorFault,
    RaiseFault,
    Scenario,
    load_scenario,
)
from .script import LLMErrorKind
from .store import CheckpointStore

__all__ = [
    "CI_PROFILE",
    "DEV_PROFILE",
    "PROPERTIES",
    "PropertyFailure",
    "known_findings",
    "profile_for",
    "property_test",
]

PROPERTIES = ("budget", "stepwise", "kill")
DEV_PROFILE = "loom-dev"
CI_PROFILE = "loom-ci"

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    DEV_PROFILE,
    max_examples=40,
    deadline=None,
    suppress_health_check=_QUIET,
    report_multiple_bugs=False,
    print_blob=True,
)
settings.register_profile(
    CI_PROFILE,
    parent=settings.get_profile(DEV_PROFILE),
    max_examples=25,
    derandomize=True,
    database=None,
    print_blob=False,
)


def profile_for(chosen: str | None = None, environ: Any = None) -> settings:
    """The settings the suite runs with: the profile ``chosen`` (``--hypothesis-profile``), else
    ``loom-ci`` when the ``CI`` environment variable is set (and not ``0``/``false``), else
    ``loom-dev``."""
    if chosen:
        return settings.get_profile(chosen)
    ci = (environ if environ is not None else os.environ).get("CI", "")
    on_ci = ci.strip().lower() not in ("", "0", "false", "no")
    return settings.get_profile(CI_PROFILE if on_ci else DEV_PROFILE)


class PropertyFailure(AssertionError):
    """A generated run broke invariants; ``reproducer`` is the scenario file that shows it."""

    def __init__(self, message: str, scenario: Scenario, invariants: Sequence[str]) -> None:
        super().__init__(message)
        self.scenario = scenario
        self.invariants = tuple(invariants)

    @property
    def reproducer(self) -> str:
        return scenario_yaml(self.scenario)


# --- one generated run ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Run:
    scenario: Scenario
    """What ran, faults drawn along the way included."""
    record: RunRecord
    uninterrupted: RunRecord | None


class _StepMachine(FaultPlan):
    """Draws a rule before each new step: go on, crash and resume, raise, or fail the LLM call.

    Each rule it draws becomes a fault, so the run it drove is a scenario like any other.
    """

    _RULES = ("step", "crash", "raise", "llm_error")

    def __init__(
        self, data: st.DataObject, planned: Sequence[Fault], llm: MockLLM, max_faults: int
    ) -> None:
        super().__init__(planned)
        self._data = data
        self._llm = llm
        self._left = max_faults
        self._seen: set[int] = set()
        self.drawn: list[Fault] = []

    def before_step(self, step: int) -> None:
        if step not in self._seen and self._left:
            self._seen.add(step)
            # Mostly "go on" (it is what the rule shrinks to); then crash, raise, LLM error.
            roll = self._data.draw(st.integers(0, 19), label=f"rule before step {step}")
            rule = self._RULES[(roll >= 15) + (roll >= 18) + (roll >= 19)]
            if rule != "step":
                self._left -= 1
                self.drawn.append(self._fault(rule, step))
        super().before_step(step)

    def _fault(self, rule: str, step: int) -> Fault:
        if rule == "llm_error":
            kind = self._data.draw(st.sampled_from(list(LLMErrorKind)), label="error kind")
            call = len(self._llm.requests) + 1
            self._llm.inject_error(call, kind)
            return LLMErrorFault(call=call, kind=kind)
        fault: CrashFault | RaiseFault = CrashFault(step) if rule == "crash" else RaiseFault(step)
        self.replace_pending([*self.unfired(), fault])
        return fault


def _interrupted(scenario: Scenario) -> bool:
    return any(isinstance(f, CrashFault | KillFault) for f in scenario.faults)


def _run(scenario: Scenario, root: Path, data: st.DataObject | None) -> _Run:
    """Run ``scenario`` (step by step under a :class:`_StepMachine` when ``data`` is given)
    and, if it was interrupted, the same scenario uninterrupted."""
    with isolated(root / "run") as workdir, FakeClock(start=scenario.clock.start) as clock:
        if data is None:
            record = run_scenario(scenario, clock=clock, workdir=workdir).record
        else:
            runtime = get_runtime(scenario.runtime)
            path = workdir / f"{scenario.id}.checkpoints.db"
            with CheckpointStore(path, durability="off") as store:
                lab = make_lab(scenario, clock=clock, store=store, workdir=workdir)
                machine = _StepMachine(data, scenario.faults, lab.llm, max_faults=3)
                lab.faults = machine
                drive(runtime, scenario, lab, resume=False)
                record = runtime.record(scenario, lab)
            faults = sorted((*scenario.faults, *machine.drawn), key=_fault_order)
            scenario = strategies.reread(replace(scenario, faults=tuple(faults)))
        uninterrupted = None
        if _interrupted(scenario):
            twin = root / "uninterrupted"
            with isolated(twin) as where:
                twin_run = run_scenario(without_interruptions(scenario), clock=clock, workdir=where)
            uninterrupted = twin_run.record
    return _Run(scenario, record, uninterrupted)


def _fault_order(fault: Fault) -> tuple[int, int]:
    return (1, fault.call) if isinstance(fault, LLMErrorFault) else (0, fault.step)


# --- the properties ---------------------------------------------------------------------------


def _scenarios(target: Target, prop: str) -> st.SearchStrategy[Scenario]:
    ident = f"{target.runtime}-{prop}"
    if prop == "kill":
        faults = strategies.fault_plans(kinds=("kill",), min_faults=1, max_faults=1, max_step=3)
    elif prop == "stepwise":
        faults = st.just(())
    else:
        faults = strategies.fault_plans()
    return strategies.scenarios(
        target.runtime,
        target.entry,
        input=target.input,
        budget=strategies.budgets(limits=target.limits),
        turns=strategies.llm_scripts(
            min_turns=3,
            tool_turns_only=target.tool_turns_only,
            explicit_costs=target.explicit_costs,
        ),
        faults=faults,
        options=target.options,
        id=ident,
    )


def property_test(
    runtime: str,
    entry: str | None = None,
    *,
    input: Any = None,
    prop: str = "budget",
    known: Collection[str] = (),
    profile: settings | None = None,
) -> Callable[[Path], None]:
    """A test function (taking ``tmp_path``) that checks property ``prop`` of ``runtime``.

    Without ``entry``, the runtime's property loop runs; give ``entry`` (and ``input``) to
    check your own loop written like one (see :mod:`pytest_loom.property_loops`). Violations
    of the invariants in ``known`` (committed findings) do not fail it. Collect it from a test
    module: ``test_my_loop = property_test("reference", "my_loops.spend:build")``.
    """
    if prop not in PROPERTIES:
        raise ValueError(f"property_test(prop={prop!r}): expected one of {', '.join(PROPERTIES)}")
    unknown = [name for name in known if name not in NAMES]
    if unknown:
        raise ValueError(f"property_test(known={list(known)!r}): {unknown[0]!r} is no invariant")
    shipped = {t.entry: t for t in TARGETS.get(runtime, ())}
    if entry is None and not shipped:
        raise ValueError(
            f"property_test(runtime={runtime!r}): no property loop for it; pass entry="
        )
    if entry is None or entry in shipped:
        target = shipped[entry] if entry else TARGETS[runtime][0]
    else:
        target = Target(runtime, entry, input, strategies.BUDGET_LIMITS)
    chosen = profile or profile_for()
    if prop == "kill":  # each kill starts a process: a tenth of the examples, not shrunk
        phases = tuple(p for p in chosen.phases if p is not Phase.shrink)
        chosen = settings(chosen, max_examples=max(1, chosen.max_examples // 10), phases=phases)
    scenario_strategy = _scenarios(target, prop)

    def check(data: st.DataObject, root: Path) -> None:
        scenario = data.draw(scenario_strategy, label="scenario")
        run = _run(scenario, root, data if prop == "stepwise" else None)
        found = check_run(
            run.record, run.scenario.budget, runtime=runtime, uninterrupted=run.uninterrupted
        )
        if any(v.invariant not in known for v in found):
            raise _failure(run, found, prop)

    def test(tmp_path: Path) -> None:
        __tracebackhide__ = True
        counter = iter(range(1_000_000_000))

        @settings(chosen)
        @given(data=st.data())
        def examples(data: st.DataObject) -> None:
            root = Path(tempfile.mkdtemp(prefix=f"ex{next(counter)}-", dir=tmp_path))
            try:
                check(data, root)
            finally:
                shutil.rmtree(root, ignore_errors=True)

        examples.hypothesis.inner_test._hypothesis_internal_add_digest = (  # type: ignore[attr-defined]
            f"{target.runtime}|{target.entry}|{prop}".encode()
        )
        try:
            examples()
        except PropertyFailure as failure:
            raise _verified(failure, tmp_path) from None

    test.__name__ = f"test_{prop}"
    return test


def _failure(run: _Run, found: list[InvariantViolation], prop: str) -> PropertyFailure:
    names = [v.invariant for v in found]
    scenario = run.scenario
    reproducer = replace(
        scenario,
        id=f"{scenario.runtime}-{names[0].replace('_', '-')}",
        description="; ".join(str(v) for v in found),
        expect=Expectation(invariants=tuple(names)),
    )
    reproducer = strategies.reread(reproducer, Path(f"{reproducer.id}.loom.yaml"))
    lines = "\n".join(f"- {textwrap.indent(str(v), '  ')[2:]}" for v in found)
    message = (
        f"property {prop!r} on {scenario.runtime} ({scenario.entry}) broke "
        f"{len(found)} invariant{'s' if len(found) > 1 else ''}:\n{lines}\n"
    )
    return PropertyFailure(message, reproducer, names)


def _verified(failure: PropertyFailure, tmp_path: Path) -> PropertyFailure:
    """The failure, with its reproducer and whether running that file breaks the same rules."""
    scenario = failure.scenario
    where = tmp_path / "reproducer"
    where.mkdir(exist_ok=True)
    path = where / f"{scenario.id}.loom.yaml"
    path.write_text(failure.reproducer, encoding="utf-8")
    loaded = load_scenario(path)
    with isolated(where) as workdir, FakeClock(start=loaded.clock.start) as clock:
        problems = run_scenario(loaded, clock=clock, workdir=workdir).problems
    hits = [name for name in failure.invariants if any(f": {name}: " in p for p in problems)]
    if len(hits) == len(failure.invariants):
        note = "running this file breaks the same invariants (checked)"
    else:
        note = "WARNING: running this file did not break them all: " + "; ".join(problems)
    folder = f"scenarios/findings/{scenario.runtime}"
    message = (
        f"{failure}reproducer ({note}; written to {path}); save it as "
        f"{folder}/{scenario.id}.loom.yaml and run "
        "pytest --loom-scenarios: it fails while the violation is there (add `markers: "
        "[xfail]` to commit it as a known finding):\n\n" + textwrap.indent(failure.reproducer, "  ")
    )
    return PropertyFailure(message, scenario, failure.invariants)


# --- committed findings -----------------------------------------------------------------------


def known_findings(folder: Path) -> dict[str, tuple[str, ...]]:
    """The committed findings in ``folder`` (``*.loom.yaml``): file name -> invariants."""
    if not folder.is_dir():
        return {}
    return {
        path.name: load_scenario(path).expect.invariants
        for path in sorted(folder.glob("*.loom.yaml"))
    }
