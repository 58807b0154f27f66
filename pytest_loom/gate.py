"""The CI gate in pytest: options, judging each scenario's drift, the session's verdict, reports.

Each scenario item measures its run (or its trials), compares it with its baseline (the
committed snapshot, or ``--loom-baseline``'s summary), has the policy judge each change and
keeps the result as an :class:`~pytest_loom.summary.Entry`, with the per-step series only
when a report will plot it. An xdist worker sends each entry to the controller on the item's
report, and its headline numbers go into ``user_properties`` (so ``--junitxml`` writes them).
The controller alone builds the :class:`~pytest_loom.summary.Summary`, prints the terminal
section, writes the reports and sets the exit status. This module is loaded with the plugin,
so it imports nothing heavy at the top, and its configuration imports the policy and summary
modules only when a key, file or option needs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .drift import Measure, StepPoint
    from .policy import Policy
    from .record import RunRecord
    from .runner import ScenarioRun
    from .summary import Entry, Judged, Summary

MODES = ("fail", "warn", "off")


@dataclass(frozen=True, slots=True)
class _Settings:
    mode: str
    policy: Policy | None
    """``None`` when no ini key or file sets one: the default policy, loaded only on drift."""
    baselines: dict[str, Measure] | None
    trials: int
    report: Path | None
    updating: bool


_SETTINGS = pytest.StashKey[_Settings]()
_ENTRY = pytest.StashKey["Entry"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loom")
    group.addoption(
        "--loom-drift",
        choices=MODES,
        default=None,
        dest="loom_drift",
        help="the drift gate: fail (default) fails the session on drift the policy does not "
        "allow, warn only reports it, off compares nothing (snapshot mismatches fail as tests)",
    )
    group.addoption(
        "--loom-baseline",
        default=None,
        metavar="PATH",
        dest="loom_baseline",
        help="compare with this summary.json (from another run's --loom-report) instead of "
        "the committed snapshots",
    )
    group.addoption(
        "--loom-policy",
        default=None,
        metavar="PATH",
        dest="loom_policy",
        help="TOML policy file: allowed/forbidden stop transitions, tolerances, overrides",
    )
    group.addoption(
        "--loom-report",
        default=None,
        metavar="DIR",
        dest="loom_report",
        help="write summary.json, summary.md and report.html to DIR (and append the markdown "
        "to $GITHUB_STEP_SUMMARY when set)",
    )
    group.addoption(
        "--loom-trials",
        default=None,
        metavar="N",
        dest="loom_trials",
        help="run each scenario N times and gate on the distribution of stop reasons",
    )
    parser.addini(
        "loom_drift", default="fail", help="the drift gate when --loom-drift is not given"
    )
    parser.addini("loom_policy", default="", help="policy file (relative to the ini file)")
    for key, what in (
        ("steps", "steps"),
        ("llm_calls", "LLM calls"),
        ("tokens", "input and output tokens"),
        ("cost", "cost"),
        ("elapsed", "elapsed fake time"),
    ):
        parser.addini(
            f"loom_tolerance_{key}",
            default="",
            help=f"tolerated change of {what}, in percent of the baseline (default 0)",
        )
    parser.addini(
        "loom_allow", type="linelist", default=[], help="allowed stop transitions: 'a -> b'"
    )
    parser.addini(
        "loom_forbid", type="linelist", default=[], help="forbidden stop transitions: 'a -> *'"
    )
    parser.addini(
        "loom_trials", default="1", help="runs per scenario when --loom-trials is not given"
    )
    parser.addini(
        "loom_trials_threshold",
        default="",
        help="how many percentage points the share of the baseline's stop reason may fall "
        "across trials (default 20)",
    )


def pytest_configure(config: pytest.Config) -> None:
    flag = config.getoption("loom_scenarios")
    if not (bool(flag) if flag is not None else bool(config.getini("loom_scenarios"))):
        return
    config.stash[_SETTINGS] = _settings(config)
    config.pluginmanager.register(_Session(config), "loom-gate-session")


def _settings(config: pytest.Config) -> _Settings:
    """The gate's settings, validated: a bad value is a usage error naming the option or key.

    The policy and summary modules are imported only when a key, file or option needs them.
    """
    here = config.invocation_params.dir
    mode = config.getoption("loom_drift") or str(config.getini("loom_drift")).strip()
    if mode not in MODES:
        raise pytest.UsageError(
            f"ini key loom_drift: expected one of {', '.join(MODES)}, got {mode!r}"
        )
    raw = config.getoption("loom_trials")
    source = "--loom-trials" if raw is not None else "ini key loom_trials"
    raw = str(raw if raw is not None else config.getini("loom_trials")).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"{source}: expected a whole number >= 1, got {raw!r}")
    policy_path: Path | None = None
    if config.getoption("loom_policy"):
        policy_path = here / config.getoption("loom_policy")
    elif config.getini("loom_policy"):
        base = config.inipath.parent if config.inipath else config.rootpath
        policy_path = base / str(config.getini("loom_policy"))
    ini = {
        name: config.getini(name)
        for name in (
            *(f"loom_tolerance_{k}" for k in ("steps", "llm_calls", "tokens", "cost", "elapsed")),
            "loom_allow",
            "loom_forbid",
            "loom_trials_threshold",
        )
    }
    policy = None
    if policy_path is not None or any(ini.values()):
        from .policy import PolicyError, load_policy

        try:
            policy = load_policy(ini, policy_path)
        except PolicyError as exc:
            raise pytest.UsageError(str(exc)) from None
    baselines = None
    if config.getoption("loom_baseline"):
        from .drift import SummaryFormatError
        from .summary import load_summary

        try:
            baselines = load_summary(here / config.getoption("loom_baseline")).baselines()
        except SummaryFormatError as exc:
            raise pytest.UsageError(str(exc)) from None
    report = config.getoption("loom_report")
    if report and (here / report).exists() and not (here / report).is_dir():
        raise pytest.UsageError(
            f"--loom-report={report}: expected a directory for the reports, found a file"
        )
    return _Settings(
        mode=mode,
        policy=policy,
        baselines=baselines,
        trials=int(raw),
        report=here / report if report else None,
        updating=bool(getattr(config.option, "update_snapshots", False)),
    )


def trials(config: pytest.Config) -> int:
    """How many times each scenario runs in this session."""
    settings = config.stash.get(_SETTINGS, None)
    return settings.trials if settings is not None else 1


def gate_problems(
    item: pytest.Item,
    runs: list[ScenarioRun],
    tmp_path: Path,
    compared: Any,
    mismatch: str | None,
) -> list[str]:
    """Judge one scenario item's drift; the problem lines that fail it (first in its report).

    ``compared`` is the syrupy assertion the first trial was compared with (``None`` without
    one), ``mismatch`` the snapshot-mismatch problem. With the gate on and the snapshot as the
    baseline, a mismatch fails the item only when the policy does not allow the drift.
    """
    from .drift import measure, step_series
    from .summary import Entry

    settings = item.config.stash[_SETTINGS]
    record = runs[0].record
    judging = settings.mode != "off"
    # The tool sequence and the per-step series: for a report, and to compare with a baseline
    # that differs. A run that matches its snapshot is judged on its totals alone.
    detail = settings.report is not None
    execution = None
    if compared is not None and compared.executions:
        execution = compared.executions[compared.num_executions - 1]
    # The first trial's snapshot text: what the snapshot assertion serialised (masked).
    text = None if execution is None else execution.asserted_data
    if execution is not None and not isinstance(text, str):
        text = _masked_text(item, record, tmp_path)
    baseline: Measure | None = None
    source: str | None = None
    same = False  # the first trial is its snapshot: its baseline is itself
    if settings.baselines is not None:
        source, baseline = "summary", settings.baselines.get(item.nodeid)
        detail = detail or (judging and baseline is not None)
    elif execution is not None and execution.recalled_data is not None:
        recalled = execution.recalled_data
        source = "snapshot"
        same = recalled == text
        if not same:
            from .record import RecordError, RunRecord

            detail = detail or judging
            try:
                was = RunRecord.from_json(recalled)
            except RecordError:
                source = None  # the snapshot mismatch says the stored snapshot cannot be read
            else:
                baseline = measure([was], step_series(was, recalled) if detail else ())
    series: tuple[StepPoint, ...] = ()
    if detail:
        series = step_series(record, text or _masked_text(item, record, tmp_path))
    now = measure([run.record for run in runs], series)
    if same:
        baseline = now if len(runs) == 1 else measure([record], series)
    judged = _judge(item, settings, baseline, now, source, mismatch) if judging else ()
    if detail and settings.report is None:  # kept to the session's end: only what it shows
        now = replace(now, tools=(), series=())
        baseline = None if baseline is None else replace(baseline, tools=(), series=())
    entry = Entry(
        nodeid=item.nodeid,
        scenario=item.scenario.id,  # type: ignore[attr-defined]
        runtime=record.runtime.name,
        now=now,
        baseline=baseline,
        source=source,
        changes=judged,
    )
    item.stash[_ENTRY] = entry
    item.user_properties.extend(_properties(entry))
    failing = settings.mode == "fail" and entry.action == "fail"
    problems = [_drift_problem(entry)] if failing else []
    takes_over = judging and source == "snapshot"
    if mismatch and (failing or not takes_over):
        problems.append(mismatch)
    return problems


def _masked_text(item: pytest.Item, record: RunRecord, tmp_path: Path) -> str:
    """The record's snapshot text, for a run that was not compared with a snapshot."""
    from .snapshot import masking, serialize_record

    with masking(tmp_path, item.config.rootpath):
        return serialize_record(record)


def _judge(
    item: pytest.Item,
    settings: _Settings,
    baseline: Measure | None,
    now: Measure,
    source: str | None,
    mismatch: str | None,
) -> tuple[Judged, ...]:
    """The changes from ``baseline`` to ``now``, each with the policy's verdict."""
    if source is None or baseline is now:  # no baseline, or the run is its snapshot
        return ()
    from .drift import Change, compare
    from .policy import Policy
    from .summary import Judged

    policy = settings.policy or Policy()
    rules = policy.for_scenario(item.nodeid, item.scenario.id)  # type: ignore[attr-defined]
    changes = compare(baseline, now, tolerance=rules.tolerance, threshold=rules.threshold)
    if source == "snapshot" and mismatch and not changes:
        # Only a per-step measurement moved, the totals did not: still a change of content.
        changes = (Change("content", "", "", "changed"),)
    judged = []
    for change in changes:
        action, reason = rules.judge(change)
        if action == "fail" and settings.updating and source == "snapshot":
            action, reason = "warn", f"{reason}; accepted by --snapshot-update"
        judged.append(Judged(change, action, reason))
    return tuple(judged)


def _drift_problem(entry: Entry) -> str:
    from .report_text import deltas, describe

    where = "its snapshot" if entry.source == "snapshot" else "the --loom-baseline summary"
    lines = [f"drift from {where} that the gate does not allow:", f"    {deltas(entry)}"]
    lines += [f"    {describe(j.change)}: {j.reason}" for j in entry.changes if j.action == "fail"]
    fix = "accept it with --snapshot-update" if entry.source == "snapshot" else "--loom-drift=warn"
    lines.append(
        f"  hint: if the change is intended, allow it in the policy (loom_allow, "
        f"loom_tolerance_*, --loom-policy) or {fix}"
    )
    return "\n".join(lines)


def _properties(entry: Entry) -> list[tuple[str, object]]:
    now = entry.now
    props: list[tuple[str, object]] = [("loom_stop", now.distribution())]
    if entry.baseline is not None:
        props.append(("loom_baseline_stop", entry.baseline.distribution()))
    props += [
        ("loom_steps", now.steps),
        ("loom_llm_calls", now.llm_calls),
        ("loom_input_tokens", now.input_tokens),
        ("loom_output_tokens", now.output_tokens),
        ("loom_cost_usd", now.cost_usd),
        ("loom_elapsed_s", now.elapsed_s),
        ("loom_trials", now.trials),
        ("loom_drift", entry.kind),
        ("loom_drift_action", entry.action or "none"),
    ]
    return props


def _entry_text(entry: Entry) -> str:
    """The entry as it rides on an xdist worker's report to the controller: one JSON text,
    which the controller keeps as it is until the session's end. The node id is the
    report's; a baseline that is the run itself (it matched its snapshot) is sent as 0."""
    import orjson

    baseline = entry.baseline
    return orjson.dumps(
        [
            entry.scenario,
            entry.runtime,
            entry.source,
            entry.now.to_dict(),
            0 if baseline is entry.now else None if baseline is None else baseline.to_dict(),
            [judged.to_dict() for judged in entry.changes],
        ]
    ).decode()


def _read_entries(entries: dict[str, Entry | str]) -> tuple[Entry, ...]:
    """The entries, with those :func:`_entry_text` wrote (a worker's) read back."""
    import orjson

    from .drift import Measure
    from .summary import Entry, Judged

    def read(text: str, nodeid: str) -> Entry:
        scenario, runtime, source, now, baseline, changes = orjson.loads(text)
        measured = Measure.unchecked(now)
        if baseline is not None:
            baseline = measured if baseline == 0 else Measure.unchecked(baseline)
        where = f"the report of {nodeid}"
        return Entry(
            nodeid=nodeid,
            scenario=scenario,
            runtime=runtime,
            now=measured,
            baseline=baseline,
            source=source,
            changes=tuple(Judged.from_dict(change, where) for change in changes),
        )

    return tuple(read(e, n) if isinstance(e, str) else e for n, e in entries.items())


class _Session:
    """The gate's hooks for one session: workers attach entries, the controller reports."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = config.stash[_SETTINGS]
        self.controller = not hasattr(config, "workerinput")
        self.entries: dict[str, Entry | str] = {}
        """Node id -> the entry: this process's own, or the JSON text a worker's report brought."""
        self.summary: Summary | None = None
        self.error: str | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Iterator[None]:
        report: Any = yield
        entry = item.stash.get(_ENTRY, None)
        if call.when == "call" and entry is not None:
            del item.stash[_ENTRY]
            if self.controller:  # serial: this process keeps its own entries
                self.entries[item.nodeid] = entry
            else:
                report.loom_drift = _entry_text(entry)
        return report  # type: ignore[no-any-return]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # An xdist worker's entry arrives on its report, as text.
        data = getattr(report, "loom_drift", None)
        if data is not None and self.controller:
            self.entries[report.nodeid] = data

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.controller or not self.entries:
            return
        from .summary import Summary

        entries = _read_entries(self.entries)
        ran = {e.nodeid for e in entries}
        only = () if self.settings.baselines is None else tuple(set(self.settings.baselines) - ran)
        self.summary = summary = Summary(self.settings.mode, entries, only)
        if summary.decision == "failed" and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.settings.report is not None:
            from .reports import write_reports

            try:
                write_reports(summary, self.settings.report)
            except OSError as exc:
                self.error = f"--loom-report={self.settings.report}: cannot write ({exc})"
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.summary is None:
            return
        from .report_text import decision, terminal_lines

        terminalreporter.write_sep("-", "loom drift gate")
        lines = terminal_lines(self.summary) if self.summary.mode != "off" else []
        for line in lines or [decision(self.summary)]:
            markup = {"red": True} if line.startswith("loom gate FAILED") else {}
            terminalreporter.write_line(line, **markup)
        if self.error is not None:
            terminalreporter.write_line(self.error, red=True)
        elif self.settings.report is not None:
            terminalreporter.write_line(f"loom reports written to {self.settings.report}")

    def pytest_unconfigure(self) -> None:
        # Freed now, one by one, rather than traversed by the collector as the process exits.
        self.entries.clear()
        self.summary = None
