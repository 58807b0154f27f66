"""Real process kills: a scenario phase runs in a child process that ``os._exit``\\ s at a kill.

A ``kill`` fault must leave exactly what a dead process leaves: whatever the runtime had handed
to the kernel, nothing it still held in memory, no ``finally`` blocks, no atexit. So the phase
that reaches the kill runs in ``python -m pytest_loom._killrun``. The parent passes it the lab's
state (the mock LLM's position, the fake clock, the step marks, the faults still pending); the
child hands it back as it dies, so the run goes on in the parent, through the runtime's own
resume API, as if one machine had been restarted. A phase that ends without reaching a kill
(the run stopped earlier) returns its run record instead.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from .lab import Lab
from .record import RunRecord
from .scenario import KillFault, Scenario

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

KILLED = 86
"""The exit status of a child killed by a kill fault (anything else is an accident)."""

_LLM_PROCESS_LOCAL = ("_listeners", "_clock", "_replay")


class KillRunError(Exception):
    """The child process running a scenario phase died of something other than its kill."""


@dataclass(frozen=True, slots=True)
class Phase:
    record: RunRecord | None
    """The run record, if the run ended in the child without reaching a kill."""
    resume: bool
    """Whether the run is to be resumed (the kill fault's ``resume``)."""


def run_killable(scenario: Scenario, lab: Lab, *, resume: bool) -> Phase:
    """Run (or resume) ``scenario`` in a child process until it is killed or ends."""
    with tempfile.TemporaryDirectory(prefix="loom-phase-", dir=lab.workdir.parent) as tmp:
        payload, result = Path(tmp, "payload.pickle"), Path(tmp, "result.pickle")
        payload.write_bytes(
            pickle.dumps(
                {
                    "scenario": scenario,
                    "resume": resume,
                    "db": lab.store.path,
                    "sys_path": sys.path,
                    "state": _capture(lab),
                }
            )
        )
        # Output goes to a file and the wait has no timeout: pipes and timed waits would poll
        # the (faked) clock and move it.
        with Path(tmp, "output.txt").open("w+") as output:
            status = subprocess.call(
                [sys.executable, "-m", "pytest_loom._killrun", str(payload), str(result)],
                cwd=lab.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            output.seek(0)
            text = output.read()
        if status not in (0, KILLED) or not result.exists():
            raise KillRunError(
                f"{scenario.path}: the process running scenario {scenario.id!r} up to its kill "
                f"fault exited with status {status}:\n{text[-4000:]}"
            )
        outcome: dict[str, Any] = pickle.loads(result.read_bytes())
    if "error" in outcome:
        raise outcome["error"]
    _restore(lab, outcome["state"])
    return Phase(outcome["record"], outcome["resume"])


def _capture(lab: Lab) -> dict[str, Any]:
    llm = {k: v for k, v in vars(lab.llm).items() if k not in _LLM_PROCESS_LOCAL}
    return {
        "llm": llm,
        "wall_ns": lab.clock.time_ns(),
        "monotonic_ns": lab.clock.monotonic_ns(),
        "started_s": lab.started_s,
        "marks": list(lab.marks),
        "pending": lab.faults.unfired(),
        "replay": lab.llm.replay,
    }


def _restore(lab: Lab, state: dict[str, Any]) -> None:
    vars(lab.llm).update(state["llm"])
    lab.clock.advance((state["monotonic_ns"] - lab.clock.monotonic_ns()) / 1e9)
    if lab.clock.time_ns() != state["wall_ns"]:
        lab.clock.move_to(_EPOCH + timedelta(microseconds=state["wall_ns"] // 1_000))
    lab.started_s = state["started_s"]
    lab.marks[:] = state["marks"]
    lab.faults.replace_pending(state["pending"])
    replay = state["replay"]
    if replay is not None:
        if lab.llm.replay is None:
            lab.llm.replaying(replay)
        else:
            lab.llm.replay.carry(replay)


def _write(path: Path, outcome: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(outcome))
    os.replace(tmp, path)


def _main(payload_path: str, result_path: str) -> None:
    payload = pickle.loads(Path(payload_path).read_bytes())
    sys.path[:] = payload["sys_path"]
    from .clock import FakeClock
    from .runner import drive, make_lab
    from .runtimes import get_runtime
    from .store import CheckpointStore

    scenario: Scenario = payload["scenario"]
    result = Path(result_path)
    clock = FakeClock(start=scenario.clock.start)
    try:
        with CheckpointStore(payload["db"], durability="off") as store:
            lab = make_lab(scenario, clock=clock, store=store, workdir=Path.cwd())
            _restore(lab, payload["state"])

            def kill(fault: KillFault) -> NoReturn:
                _write(result, {"state": _capture(lab), "record": None, "resume": fault.resume})
                os._exit(KILLED)

            lab.faults.on_kill = kill
            with clock:
                runtime = get_runtime(scenario.runtime)
                drive(runtime, scenario, lab, resume=payload["resume"])
                record = runtime.record(scenario, lab)
            _write(result, {"state": _capture(lab), "record": record, "resume": False})
    except Exception as exc:
        _write(result, {"error": _picklable(exc)})


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return KillRunError(f"{type(exc).__name__}: {exc}")
    return exc


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
