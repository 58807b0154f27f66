"""Which loop runtimes the lab can drive, and how a scenario names one.

``reference`` is built in; adapters for loomc, loom-runner, tightloop and loom-agent ship in
:mod:`pytest_loom.adapters` and need their runtime installed (``pip install
'pytest-loom[loomc]'``, ...). Third-party adapters register under the entry-point group
``pytest_loom.runtimes``. A scenario naming a runtime that is not available fails with one line
saying what to install.

An adapter is a class whose instances drive one scenario run (see :class:`Runtime`): ``run``
starts the loop (or resumes it after a crash) through the runtime's own API, and ``record``
builds the run record from what the runtime stored and what the lab observed.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from typing import Any, Protocol

from .entry import call_entry, load_entry
from .lab import Lab
from .record import RunRecord
from .reference import RUNTIME_NAME, RUNTIME_VERSION, Loop, build_record
from .scenario import Scenario, ScenarioError

ENTRY_POINT_GROUP = "pytest_loom.runtimes"

BUILTIN_ADAPTERS: dict[str, tuple[str, str]] = {
    "loomc": ("pytest_loom.adapters.loomc:LoomcRuntime", "loomc"),
    "loom-runner": ("pytest_loom.adapters.loom_runner:LoomRunnerRuntime", "loom-runner"),
    "tightloop": ("pytest_loom.adapters.tightloop:TightloopRuntime", "tightloop"),
    "loom-agent": ("pytest_loom.adapters.loom_agent:LoomAgentRuntime", "loom-agent"),
}
"""Runtime name -> (adapter class, the PyPI distribution it drives; also the extra's name)."""


class RuntimeNotAvailable(Exception):
    """The scenario's runtime is not installed or not known."""


class Runtime(Protocol):
    """What the lab needs of a runtime adapter. One instance drives one scenario run.

    ``run(resume=False)`` starts the loop from ``scenario.input``; ``run(resume=True)`` resumes
    it through the runtime's own resume API after a crash (possibly in a new process, on a new
    instance). A :class:`~pytest_loom.faults.SimulatedCrash` raised by ``lab.begin_step`` must
    propagate; every other ending of the loop is the runtime's to report. ``record`` works
    even on an instance that never ran (the process that started the run was killed).
    """

    name: str

    def version(self) -> str: ...

    def run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None: ...

    def record(self, scenario: Scenario, lab: Lab) -> RunRecord: ...


def build_entry(scenario: Scenario, lab: Lab) -> Any:
    """Import the scenario's entry point and call it with ``lab``; what it returns is the loop.

    Modules the entry point imports (the runtime itself) are put on the fake clock.
    """
    where = f"{scenario.path}:{scenario.entry_line}"
    build = load_entry(scenario.entry, where=where)
    lab.clock.rebind()
    loop = call_entry(build, lab, entry=scenario.entry, where=where)
    lab.clock.rebind()
    return loop


def wrong_entry(scenario: Scenario, got: object, wanted: str) -> RuntimeNotAvailable:
    """The error for an entry point that built something the runtime cannot drive."""
    return RuntimeNotAvailable(
        f"{scenario.path}:{scenario.entry_line}: entry point {scenario.entry!r} returned "
        f"{type(got).__name__}; a scenario on runtime {scenario.runtime!r} needs {wanted}"
    )


class ReferenceRuntime:
    """Drives :class:`~pytest_loom.Loop`, the lab's own runtime."""

    name = RUNTIME_NAME

    def version(self) -> str:
        return RUNTIME_VERSION

    def run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None:
        loop = build_entry(scenario, lab)
        if not isinstance(loop, Loop):
            raise wrong_entry(
                scenario, loop, "a pytest_loom.Loop (build it with lab.loop(step, ...))"
            )
        loop.before_step = lab.begin_step
        if resume:
            loop.resume(scenario.id)
        else:
            loop.run(scenario.input, run_id=scenario.id)

    def record(self, scenario: Scenario, lab: Lab) -> RunRecord:
        return build_record(lab.store, scenario.id)


def installed(name: str) -> bool:
    """Whether the runtime a shipped adapter drives (a key of ``BUILTIN_ADAPTERS``) is installed."""
    try:
        distribution(BUILTIN_ADAPTERS[name][1])
    except PackageNotFoundError:
        return False
    return True


def budget_error(
    scenario: Scenario, key: str, problem: str, expected: str | None = None, hint: str | None = None
) -> ScenarioError:
    """The error for ``budget.<key>`` of a scenario its runtime cannot enforce, at that line."""
    line = scenario.lines.get(f"budget.{key}", scenario.lines.get("budget"))
    return ScenarioError(scenario.path, line, f"budget.{key}", problem, expected, hint)


def get_runtime(name: str) -> Runtime:
    """A fresh adapter for runtime ``name``; :class:`RuntimeNotAvailable` says what to install."""
    if name == RUNTIME_NAME:
        return ReferenceRuntime()
    if name in BUILTIN_ADAPTERS:
        target, dist = BUILTIN_ADAPTERS[name]
        if not installed(name):
            raise RuntimeNotAvailable(
                f"runtime {name!r} is not installed: pip install 'pytest-loom[{dist}]'"
            )
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise RuntimeNotAvailable(
                f"runtime {name!r} is installed but does not import ({exc})"
                + (f"; {_LOOM_CLASH}" if "loom" in name else "")
            ) from None
        runtime: Runtime = getattr(module, attr)()
        return runtime
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            runtime = ep.load()()
            return runtime
    raise RuntimeNotAvailable(f"unknown runtime {name!r}: known runtimes are {', '.join(_known())}")


_LOOM_CLASH = (
    "loom-runner (through loom-tailcalls) and loom-agent both install a top-level package "
    "`loom`, so they cannot share one environment: install one of them per environment"
)


def _known() -> list[str]:
    third_party = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return [RUNTIME_NAME, *BUILTIN_ADAPTERS, *third_party]
