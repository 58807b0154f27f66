"""``loom report merge DIR...``: one report and one gate decision from the shards of a CI run.

Each shard runs ``pytest --loom-scenarios --loom-report=DIR`` on its part of the scenarios;
this command reads their ``summary.json`` files, merges them (a scenario in two shards must
have the same result in both), writes the three reports into ``--output`` exactly as one full
run would, prints the gate's terminal section and exits 1 when the gate fails (0 when it
passes, 2 on bad input).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .drift import SummaryFormatError
from .summary import MODES, load_summary, merge_summaries


def add_report_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` (with its ``merge`` subcommand) on the ``loom`` command's parser."""
    report = subparsers.add_parser(
        "report", help="the drift gate's reports", description="The drift gate's reports."
    )
    commands = report.add_subparsers(title="commands", required=True, metavar="COMMAND")
    merger = commands.add_parser(
        "merge",
        help="merge the summaries of CI shards into one report and one gate decision",
        description="Merge the summary.json of each shard (a --loom-report directory or the "
        "file itself) into one report; exit 1 if the gate fails, 2 on bad input.",
    )
    merger.add_argument("inputs", nargs="+", type=Path, metavar="DIR", help="shard reports")
    merger.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DIR", help="write the reports here"
    )
    merger.add_argument(
        "--drift",
        choices=MODES,
        default=None,
        help="judge in this mode instead of the shards' own (--loom-drift)",
    )
    merger.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from .report_text import terminal_lines
    from .reports import write_reports

    try:
        summaries = [(str(_file(path)), load_summary(path)) for path in args.inputs]
        summary = merge_summaries(summaries, args.drift)
        write_reports(summary, args.output)
    except SummaryFormatError as exc:
        print(f"loom report merge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"loom report merge: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(terminal_lines(summary)))
    print(f"reports written to {args.output}")
    return 1 if summary.decision == "failed" else 0


def _file(path: Path) -> Path:
    return path / "summary.json" if path.is_dir() else path
