"""The ``loom`` command (also ``python -m pytest_loom``): the runs of recent sessions.

``pytest --loom-scenarios`` saves every scenario run in pytest's cache (see
:mod:`pytest_loom.runlog`). ``loom runs`` lists them, ``show`` prints one step by step, ``diff``
compares two (stop reason first), ``export`` writes a run record as JSON, ``replay``
re-executes a run's scenario against the recorded run (up to a step, or, for a run that
stopped at a crash, resuming it), and ``report merge`` merges the drift reports of CI
shards. Output is a table for people; ``--json`` gives the same for scripts.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from ._atomic import write_atomic
from .diff import diff_records
from .record import RunRecord, Step
from .report_cli import add_report_parser
from .runlog import RunLogError, SavedRun, find_run, find_runs_dir, sessions

_Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``loom`` command; returns its exit status (0 ok, 1 a difference, 2 an error)."""
    args = _parser().parse_args(argv)
    command: _Command = args.func
    try:
        return command(args)
    except RunLogError as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        type=Path,
        help="the folder of saved runs (default: .pytest_cache/d/loom-runs in the current "
        "folder or a parent)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser = argparse.ArgumentParser(
        prog="loom",
        description="Look at, compare, export and replay the runs of recent sessions; "
        "merge drift reports.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    runs = commands.add_parser("runs", parents=[common], help="list the saved runs")
    which = runs.add_mutually_exclusive_group()
    which.add_argument("--session", type=int, help="the runs of this session (default: latest)")
    which.add_argument("--all", action="store_true", help="the runs of every kept session")
    runs.set_defaults(func=_runs)

    show = commands.add_parser("show", parents=[common], help="one run, step by step")
    show.add_argument("run", help="[SESSION:]ID, where ID may be a unique part of the run's id")
    show.set_defaults(func=_show)

    diff = commands.add_parser("diff", parents=[common], help="what changed between two runs")
    diff.add_argument("a", metavar="RUN_A")
    diff.add_argument("b", metavar="RUN_B")
    diff.set_defaults(func=_diff)

    export = commands.add_parser("export", parents=[common], help="a run record as JSON")
    export.add_argument("run")
    export.add_argument("-o", "--output", type=Path, help="write to this file (atomically)")
    export.set_defaults(func=_export)

    replay = commands.add_parser(
        "replay",
        parents=[common],
        help="re-execute a run's scenario against the recorded run",
        description="Steps before --from are answered from the recorded run and must ask for "
        "the same LLM requests; from that step on the loop runs against the scenario's mock "
        "LLM. Without --from, a run that stopped at a crash is resumed from the step it "
        "stopped at (its crash and kill faults from there on are left out), and any other run "
        "is replayed whole.",
    )
    replay.add_argument("run")
    replay.add_argument("--from", dest="from_step", type=_step_number, metavar="N")
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the step being replayed on stderr (default: when stderr is a terminal)",
    )
    replay.set_defaults(func=_replay)

    add_report_parser(commands)
    return parser


def _step_number(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a step number >= 1, got {value!r}")
    return int(value)


# --- commands -----------------------------------------------------------------------------------


def _runs(args: argparse.Namespace) -> int:
    root = _root(args)
    kept = sessions(root)
    if args.session is not None:
        kept = [s for s in kept if s.number == args.session]
        if not kept:
            raise RunLogError(f"there is no session {args.session} in {root}")
    elif not args.all:
        kept = kept[-1:]
    runs = [run for session in kept for run in session.runs()]
    if args.json:
        _print_json([_summary(run) for run in runs])
        return 0
    if not runs:
        print(f"no saved runs in {root}")
        return 0
    rows = [
        [
            run.ref,
            run.record.scenario,
            run.record.runtime.name,
            run.record.stop.label,
            str(run.record.totals.steps),
            _usd(run.record.totals.cost_usd),
            run.session.created,
        ]
        for run in runs
    ]
    _print_table(["RUN", "SCENARIO", "RUNTIME", "STOP", "STEPS", "COST", "CREATED"], rows)
    return 0


def _show(args: argparse.Namespace) -> int:
    run = find_run(_root(args), args.run)
    if args.json:
        _print_json({**_summary(run), "record": run.record.to_dict()})
        return 0
    _print_run(run.record, title=f"run {run.ref}", file=run.path, workdir=run.workdir)
    return 0


def _diff(args: argparse.Namespace) -> int:
    root = _root(args)
    a, b = find_run(root, args.a), find_run(root, args.b)
    old = dataclasses.replace(a.record, run_id="").to_dict()
    new = dataclasses.replace(b.record, run_id="").to_dict()
    changes = diff_records(old, new)
    if args.json:
        _print_json(
            {
                "a": a.ref,
                "b": b.ref,
                "stop": {"a": a.record.stop.label, "b": b.record.stop.label},
                "identical": not changes,
                "differences": changes,
            }
        )
    elif changes:
        print(f"--- {a.ref}\n+++ {b.ref}")
        print("\n".join(changes))
    else:
        print(f"{a.ref} and {b.ref} are the same run")
    return 1 if changes else 0


def _export(args: argparse.Namespace) -> int:
    run = find_run(_root(args), args.run)
    data = run.record.to_json() + b"\n"
    if args.output is None:
        sys.stdout.buffer.write(data)
        return 0
    write_atomic(args.output, data)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from .replaying import replay_saved

    run = find_run(_root(args), args.run)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    outcome = replay_saved(run, from_step=args.from_step, progress=_progress(run) if show else None)
    if show:
        print(file=sys.stderr)
    if args.json:
        _print_json(
            {
                "run": run.ref,
                "from": outcome.from_step,
                "resumed": outcome.resumed,
                "problems": outcome.problems,
                "record": outcome.record.to_dict() if outcome.record else None,
            }
        )
    else:
        if outcome.record is not None:
            what = (
                f"resumed from step {outcome.from_step}"
                if outcome.resumed
                else f"replayed {outcome.replayed} recorded steps"
            )
            _print_run(outcome.record, title=f"replay of {run.ref}: {what}")
        for problem in outcome.problems:
            print(f"\n{problem}")
    return 1 if outcome.problems else 0


# --- output -------------------------------------------------------------------------------------


def _root(args: argparse.Namespace) -> Path:
    if args.dir is not None:
        if not args.dir.is_dir():
            raise RunLogError(f"--dir {args.dir}: no such folder")
        root: Path = args.dir
        return root
    found = find_runs_dir(Path.cwd())
    if found is None:
        raise RunLogError(
            "no saved runs here: there is no .pytest_cache/d/loom-runs in this folder or a "
            "parent\n  hint: run `pytest --loom-scenarios` first, or pass --dir"
        )
    return found


def _summary(run: SavedRun) -> dict[str, Any]:
    record = run.record
    return {
        "run": run.ref,
        "session": run.session.number,
        "id": run.id,
        "scenario": record.scenario,
        "runtime": record.runtime.name,
        "stop": record.stop.label,
        "steps": record.totals.steps,
        "cost_usd": record.totals.cost_usd,
        "tokens": record.totals.tokens,
        "created": run.session.created,
        "file": str(run.path),
    }


def _print_run(
    record: RunRecord, *, title: str, file: Path | None = None, workdir: Path | None = None
) -> None:
    totals, stop = record.totals, record.stop
    print(f"{title}: scenario {record.scenario} on {record.runtime.name} {record.runtime.version}")
    if file is not None:
        print(f"file: {file}")
    raw = [
        _clip(x.splitlines()[0], 100)
        for x in (stop.raw_status, stop.raw_exception, stop.detail)
        if x
    ]
    print(f"stop: {stop.label}" + (f"  ({'; '.join(raw)})" if raw else ""))
    print(
        f"totals: {_count(totals.steps, 'step')}, {_count(totals.llm_calls, 'LLM call')}, "
        f"{_count(totals.tokens, 'token')} "
        f"(in {totals.input_tokens}, out {totals.output_tokens}), {_usd(totals.cost_usd)}, "
        f"{totals.elapsed_s:g} s of fake time"
    )
    if workdir is not None and workdir.is_dir():
        print(f"checkpoints: {workdir}")
    print()
    rows = [_step_row(step) for step in record.steps]
    headers = ["STEP", "COST", "CUM COST", "TOKENS IN/OUT", "SCORE", "ERROR", "EVENTS"]
    _print_table(headers, rows)


def _step_row(step: Step) -> list[str]:
    return [
        str(step.index),
        _usd(step.cost_usd),
        _usd(step.cumulative_cost_usd),
        f"{step.input_tokens}/{step.output_tokens}",
        "" if step.score is None else f"{step.score:g}",
        _clip(step.error or ""),
        ",".join(step.events),
    ]


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _print_json(data: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def _progress(run: SavedRun) -> Callable[[int], None]:
    total = run.record.totals.steps

    def show(step: int) -> None:
        print(
            f"\rreplaying {run.ref}: step {step} (recorded run: {total})", end="", file=sys.stderr
        )
        sys.stderr.flush()

    return show


def _usd(value: float) -> str:
    """``$0.0123``, ``$1.50``: at least cents, at most micro-dollars, no trailing zeros."""
    whole, _, fraction = f"{value:.6f}".rstrip("0").partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
