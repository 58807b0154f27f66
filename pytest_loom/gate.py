"""The CI gate in pytest: options, judging each scenario's drift, the session's verdict, reports.

Each scenario item measures its run (or its trials), compares it with its baseline (the
committed snapshot, or ``--loom-baseline``'s summary), has the policy judge each change and
keeps the result as an :class:`~pytest_loom.summary.Entry`. The entry rides on the item's
report (so xdist workers hand it to the controller), and its headline numbers go into
``user_properties`` (so ``--junitxml`` writes them). The controller alone builds the
:class:`~pytest_loom.summary.Summary`, prints the terminal section, writes the reports and sets
the exit status. This module is loaded with the plugin, so it imports nothing heavy at the top.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .drift import Measure
    from .policy import Policy
    from .runner import ScenarioRun
    from .summary import Entry, Summary

MODES = ("fail", "warn", "off")


@dataclass(frozen=True, slots=True)
class _Settings:
    mode: str
    policy: Policy
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
    """The gate's settings, validated: a bad value is a usage error naming the option or key."""
    from .drift import SummaryFormatError
    from .policy import PolicyError, load_policy
    from .summary import load_summary

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
    try:
        policy = load_policy(ini, policy_path)
        baselines = None
        if config.getoption("loom_baseline"):
            baselines = load_summary(here / config.getoption("loom_baseline")).baselines()
    except (PolicyError, SummaryFormatError) as exc:
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
    from .drift import Change, compare, measure
    from .policy import Rules
    from .record import RecordError, RunRecord
    from .snapshot import masking, serialize_record
    from .summary import Entry, Judged

    settings = item.config.stash[_SETTINGS]
    scenario = item.scenario  # type: ignore[attr-defined]
    execution = None
    if compared is not None and compared.executions:
        execution = compared.executions[compared.num_executions - 1]
    # The first trial's snapshot text is what the snapshot assertion serialised.
    asserted = None if execution is None else execution.asserted_data
    with masking(tmp_path, item.config.rootpath):
        texts = [
            asserted if k == 0 and isinstance(asserted, str) else serialize_record(run.record)
            for k, run in enumerate(runs)
        ]
    now = measure([run.record for run in runs], texts)
    baseline: Measure | None = None
    source: str | None = None
    if settings.baselines is not None:
        source, baseline = "summary", settings.baselines.get(item.nodeid)
    elif execution is not None and execution.recalled_data is not None:
        recalled = execution.recalled_data
        source = "snapshot"
        if recalled == texts[0]:  # the first trial is its snapshot: measured already
            baseline = now if len(runs) == 1 else measure([runs[0].record], texts[:1])
        else:
            try:
                baseline = measure([RunRecord.from_json(recalled)], [recalled])
            except RecordError:
                source = None  # the snapshot mismatch says the stored snapshot cannot be read
    rules: Rules = settings.policy.for_scenario(item.nodeid, scenario.id)
    changes: tuple[Change, ...] = ()
    if source is not None and settings.mode != "off":
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
    entry = Entry(
        nodeid=item.nodeid,
        scenario=scenario.id,
        runtime=runs[0].record.runtime.name,
        now=now,
        baseline=baseline,
        source=source,
        changes=tuple(judged),
    )
    item.stash[_ENTRY] = entry
    item.user_properties.extend(_properties(entry))
    failing = settings.mode == "fail" and entry.action == "fail"
    problems = [_drift_problem(entry)] if failing else []
    takes_over = settings.mode != "off" and source == "snapshot"
    if mismatch and (failing or not takes_over):
        problems.append(mismatch)
    return problems


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


def _properties(entry: Entry) -> Iterator[tuple[str, object]]:
    now = entry.now
    yield "loom_stop", now.distribution()
    if entry.baseline is not None:
        yield "loom_baseline_stop", entry.baseline.distribution()
    yield "loom_steps", now.steps
    yield "loom_llm_calls", now.llm_calls
    yield "loom_input_tokens", now.input_tokens
    yield "loom_output_tokens", now.output_tokens
    yield "loom_cost_usd", now.cost_usd
    yield "loom_elapsed_s", now.elapsed_s
    yield "loom_trials", now.trials
    yield "loom_drift", entry.kind
    yield "loom_drift_action", entry.action or "none"


_SAME = "now"
"""An entry's baseline on its way from a worker when it is the same as its ``now``."""


def _entry_text(entry: Entry, *, series: bool) -> str:
    """The entry as it rides on its report: JSON text, which travels from an xdist worker as
    one string and which the controller keeps as one string until the session's end. Without
    ``series`` it leaves out the per-step points, which only the HTML report plots."""
    import orjson

    data = entry.to_dict()
    if not series:
        for side in ("now", "baseline"):
            if data[side] is not None:
                data[side]["series"] = []
    if entry.baseline is entry.now:  # the run matched its snapshot: send it once
        data["baseline"] = _SAME
    return orjson.dumps(data).decode()


def _read_entry(text: str, nodeid: str) -> Entry:
    """The entry :func:`_entry_text` wrote."""
    import orjson

    from .summary import Entry

    data = orjson.loads(text)
    if data.get("baseline") == _SAME:
        data["baseline"] = data["now"]
    return Entry.from_dict(data, nodeid)


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
            report.loom_drift = _entry_text(entry, series=self.settings.report is not None)
            del item.stash[_ENTRY]
            if self.controller:  # no need to read back what this process just wrote
                self.entries[item.nodeid] = entry
        return report  # type: ignore[no-any-return]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "loom_drift", None)
        # A worker's entry arrives as text; this process's own is kept from makereport.
        own = not isinstance(self.entries.get(report.nodeid, ""), str)
        if self.controller and data is not None and not own:
            self.entries[report.nodeid] = data

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.controller or not self.entries:
            return
        from .reports import write_reports
        from .summary import Summary

        entries = tuple(
            _read_entry(e, n) if isinstance(e, str) else e for n, e in self.entries.items()
        )
        ran = {e.nodeid for e in entries}
        only = () if self.settings.baselines is None else tuple(set(self.settings.baselines) - ran)
        self.summary = summary = Summary(self.settings.mode, entries, only)
        if summary.decision == "failed" and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.settings.report is not None:
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
