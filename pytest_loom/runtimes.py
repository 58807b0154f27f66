"""Which loop runtimes the lab can drive, and how a scenario names one.

``reference`` is built in. Adapters for other runtimes register under the entry-point group
``pytest_loom.runtimes`` (an object with ``name``, ``version()`` and ``run(scenario, lab)``
returning a :class:`~pytest_loom.RunRecord`). A scenario naming a runtime that is not available
fails with one line saying so and listing the installed runtimes.
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import entry_points
from typing import Protocol

from .entry import call_entry, load_entry
from .faults import SimulatedCrash
from .lab import Lab
from .record import RunRecord
from .reference import RUNTIME_NAME, RUNTIME_VERSION, Loop, build_record
from .scenario import Scenario

ENTRY_POINT_GROUP = "pytest_loom.runtimes"
PLANNED_ADAPTERS = ("loomc", "loom-runner", "tightloop", "loom-agent")


class RuntimeNotAvailable(Exception):
    """The scenario's runtime is not installed or not known."""


class Runtime(Protocol):
    """What the lab needs of a runtime adapter."""

    name: str

    def version(self) -> str: ...

    def run(self, scenario: Scenario, lab: Lab) -> RunRecord: ...


class ReferenceRuntime:
    """Drives :class:`~pytest_loom.Loop`, the lab's own runtime."""

    name = RUNTIME_NAME

    def version(self) -> str:
        return RUNTIME_VERSION

    def run(self, scenario: Scenario, lab: Lab) -> RunRecord:
        where = f"{scenario.path}:{scenario.entry_line}"
        build = load_entry(scenario.entry, where=where)
        faults = lab.faults

        def make_loop() -> Loop:
            loop = call_entry(build, lab, entry=scenario.entry, where=where)
            if not isinstance(loop, Loop):
                raise RuntimeNotAvailable(
                    f"{where}: entry point {scenario.entry!r} returned "
                    f"{type(loop).__name__}; a scenario on the reference runtime needs a "
                    "pytest_loom.Loop (build it with lab.loop(step, ...)), or name its runtime"
                )
            loop.before_step = faults.before_step
            return loop

        resuming = False
        while True:
            loop = make_loop()
            try:
                if resuming:
                    loop.resume(scenario.id)
                else:
                    loop.run(scenario.input, run_id=scenario.id)
                break
            except SimulatedCrash as crash:
                if not crash.resume:
                    break
                # A restarted process builds the loop afresh and resumes from the checkpoint.
                resuming = True
        record = build_record(lab.store, scenario.id)
        return dataclasses.replace(record, scenario=scenario.id)


def get_runtime(name: str) -> Runtime:
    if name == RUNTIME_NAME:
        return ReferenceRuntime()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            runtime: Runtime = ep.load()()
            return runtime
    if name in PLANNED_ADAPTERS:
        raise RuntimeNotAvailable(
            f"runtime {name!r} is not available: this pytest-loom has no {name} adapter yet "
            f"(installed runtimes: {', '.join(_installed())})"
        )
    raise RuntimeNotAvailable(
        f"unknown runtime {name!r}: installed runtimes are {', '.join(_installed())}"
    )


def _installed() -> list[str]:
    return [RUNTIME_NAME, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))]
