"""The gate's summary as text: the terminal section and the markdown summary.

Both show the same things in the same order: the stop-reason transition matrix (baseline x
now), then the drifted scenarios, most severe first, with their deltas and the policy's
verdict, then the gate's decision. Numbers are formatted here once for both.
"""

from __future__ import annotations

from .drift import Change
from .summary import Entry, Summary

_LABELS = {
    "steps": "steps",
    "llm_calls": "LLM calls",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "cost_usd": "cost",
    "elapsed_s": "elapsed",
}
_VERDICT = {"fail": "FAIL", "warn": "warn", "allow": "ok", "": "ok"}


def number(name: str, value: float) -> str:
    """``$0.00327``, ``12s``, ``1500``: a measured value as reports show it."""
    if name == "cost_usd":
        return f"${value:.6g}"
    if name == "elapsed_s":
        return f"{value:g}s"
    return f"{value:g}"


def delta(name: str, before: float, after: float) -> str:
    """``2 -> 1 (-1, -50%)``, or just ``2`` when nothing changed."""
    diff = after - before
    if diff == 0:
        return number(name, after)
    text = f"{number(name, before)} -> {number(name, after)}"
    sign = "+" if diff > 0 else "-"
    shown = number(name, abs(diff))
    pct = f", {sign}{abs(diff) / before * 100:.3g}%" if before else ""
    return f"{text} ({sign}{shown}{pct})"


def describe(change: Change) -> str:
    """One change in words: ``stop: completed -> budget_exhausted(usd)``."""
    if change.field == "stop":
        if change.status == "new":
            return f"new scenario: {change.after}"
        return f"stop: {change.before} -> {change.after}"
    if change.field == "tools":
        return f"tool calls: {_tools(change.before)} -> {_tools(change.after)}"
    if change.field == "content":
        if change.step is None:
            return "content: per-step measurements moved while the totals did not"
        return f"content: step {change.step} differs"
    return f"{_LABELS[change.field]}: {delta(change.field, change.before, change.after)}"


def deltas(entry: Entry) -> str:
    """Steps, cost and tokens from the baseline to now."""
    now, base = entry.now, entry.baseline or entry.now
    return "; ".join(
        [
            f"steps {delta('steps', base.steps, now.steps)}",
            f"cost {delta('cost_usd', base.cost_usd, now.cost_usd)}",
            f"tokens {delta('tokens', base.tokens, now.tokens)}",
        ]
    )


def terminal_lines(summary: Summary) -> list[str]:
    """The ``loom drift gate`` section of the terminal summary."""
    lines = [f"stop reasons, baseline -> now ({_baseline_words(summary)}):"]
    matrix = summary.matrix()
    for (before, after), count in matrix.items():
        lines.append(f"  {before} -> {after}: {count}{'' if before == after else '  (changed)'}")
    if not matrix:
        lines.append("  (no scenario has a baseline)")
    drifted = summary.drifted()
    if drifted:
        lines.append("drifted scenarios, most severe first:")
    for entry in drifted:
        verdict = _VERDICT[summary.verdict(entry)]
        lines.append(f"  {verdict:<4} {entry.nodeid} [{entry.kind}]")
        if entry.baseline is not None:
            lines.append(f"       {deltas(entry)}")
        for judged in entry.changes:
            lines.append(f"       {describe(judged.change)}: {judged.action}, {judged.reason}")
    if summary.baseline_only:
        lines.append(f"not run (in the baseline only): {len(summary.baseline_only)} scenarios")
    lines.append(decision(summary))
    return lines


def decision(summary: Summary) -> str:
    """The gate's one-line verdict."""
    total = len(summary.entries)
    if summary.decision == "off":
        return f"loom gate off (--loom-drift=off): {total} scenarios, drift not judged"
    warned = len(summary.warned)
    warnings = f" with {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    if summary.decision == "failed":
        n = len(summary.failed)
        return (
            f"loom gate FAILED: {n} of {total} scenarios drifted in a way the policy does not "
            f"allow{warnings} (--loom-drift={summary.mode})"
        )
    drifted = len(summary.drifted())
    return (
        f"loom gate passed{warnings}: {total} scenarios, {drifted} drifted "
        f"(--loom-drift={summary.mode})"
    )


def markdown(summary: Summary) -> str:
    """The markdown summary (``summary.md``, and ``$GITHUB_STEP_SUMMARY``)."""
    out = [f"## pytest-loom drift gate: {summary.decision}", "", decision(summary), ""]
    out.append(f"Baseline: {_baseline_words(summary)}.")
    matrix = summary.matrix()
    if matrix:
        rows = sorted({b for b, _ in matrix})
        cols = sorted({a for _, a in matrix})
        out += ["", "### Stop reasons, baseline (rows) x now (columns)", ""]
        out.append("| baseline \\ now | " + " | ".join(f"`{c}`" for c in cols) + " |")
        out.append("|---|" + "---:|" * len(cols))
        for r in rows:
            cells = []
            for c in cols:
                count = matrix.get((r, c), 0)
                cells.append("" if not count else f"**{count}**" if r != c else str(count))
            out.append(f"| `{r}` | " + " | ".join(cells) + " |")
    drifted = summary.drifted()
    if drifted:
        out += ["", "### Drifted scenarios, most severe first", ""]
        out.append("| verdict | scenario | drift | steps | cost | tokens | why |")
        out.append("|---|---|---|---|---|---|---|")
        for entry in drifted:
            base = entry.baseline or entry.now
            why = "<br>".join(
                f"{_md(describe(j.change))}: {j.action}, {_md(j.reason)}" for j in entry.changes
            )
            out.append(
                f"| {_VERDICT[summary.verdict(entry)]} | `{entry.nodeid}` | "
                f"{_md(_stops(entry))} | {delta('steps', base.steps, entry.now.steps)} | "
                f"{_md(delta('cost_usd', base.cost_usd, entry.now.cost_usd))} | "
                f"{delta('tokens', base.tokens, entry.now.tokens)} | {why} |"
            )
    if summary.baseline_only:
        out += ["", f"Not run (in the baseline only): {len(summary.baseline_only)} scenarios."]
    return "\n".join(out) + "\n"


def _stops(entry: Entry) -> str:
    if entry.baseline is None:
        return entry.now.distribution()
    return f"{entry.baseline.distribution()} -> {entry.now.distribution()}"


def _baseline_words(summary: Summary) -> str:
    sources = {e.source for e in summary.entries if e.source}
    if sources == {"summary"}:
        return "a summary of another run (--loom-baseline)"
    if sources == {"snapshot"}:
        return "the committed snapshots"
    return "none" if not sources else "snapshots and a summary"


def _tools(names: object) -> str:
    if not isinstance(names, list) or not names:
        return "(none)"
    text = " ".join(map(str, names))
    return text if len(text) <= 60 else text[:57] + "..."


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("$", "\\$")
