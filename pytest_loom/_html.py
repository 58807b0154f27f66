"""The HTML report: one self-contained file that opens from disk with no network.

It holds the gate's decision, the stop-reason matrix, a table of every scenario and, per
scenario, a step timeline on fake time and plots of cumulative cost and score, baseline against
now. The plots are inline SVG drawn here, with no script, font or stylesheet from anywhere
else, and every number is formatted deterministically, so equal summaries give equal bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from .drift import Measure, StepPoint
from .report_text import decision, delta, describe, number
from .summary import Entry, Summary

NOW_COLOUR = "#1f6feb"
"""The stroke of this run's lines in the plots."""
BASELINE_COLOUR = "#8c959f"
_VERDICT_CLASS = {"fail": "fail", "warn": "warn", "allow": "ok", "": "ok"}

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1f2328}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
h3{font-size:15px;margin:0 0 6px;font-family:ui-monospace,monospace}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.fail{color:#cf222e;font-weight:600}.warn{color:#9a6700;font-weight:600}.ok{color:#1a7f37}
.decision{padding:8px 12px;border-radius:6px;display:inline-block;margin:8px 0}
.decision.failed{background:#ffebe9}.decision.passed{background:#dafbe1}
.decision.off{background:#f6f8fa}
.scenario{border:1px solid #d0d7de;border-radius:6px;padding:12px;margin:12px 0}
.plots{display:flex;flex-wrap:wrap;gap:16px}.legend{font-size:12px;color:#57606a}
code{font-family:ui-monospace,monospace;font-size:13px}
"""


def render_html(summary: Summary) -> str:
    """The whole report as one HTML document."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>pytest-loom drift report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>pytest-loom drift report</h1>",
        f'<div class="decision {summary.decision}">{escape(decision(summary))}</div>',
        _matrix(summary),
        _table(summary),
        "<h2>Scenarios</h2>",
        '<p class="legend">Plots: <span style="color:'
        f'{NOW_COLOUR}">&#9632; now</span> &nbsp; <span style="color:{BASELINE_COLOUR}">'
        "&#9632; baseline (dashed)</span>. x: step; timeline x: fake-clock seconds.</p>",
    ]
    parts += [_scenario(summary, entry) for entry in _ordered(summary)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _ordered(summary: Summary) -> list[Entry]:
    drifted = list(summary.drifted())
    return drifted + [e for e in summary.entries if not e.drifted]


def _matrix(summary: Summary) -> str:
    matrix = summary.matrix()
    if not matrix:
        return "<h2>Stop reasons</h2><p>No scenario has a baseline.</p>"
    rows = sorted({b for b, _ in matrix})
    cols = sorted({a for _, a in matrix})
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            count = matrix.get((r, c), 0)
            style = ' class="n fail"' if count and r != c else ' class="n"'
            cells.append(f"<td{style}>{count or ''}</td>")
        body.append(f"<tr><th>{escape(r)}</th>{''.join(cells)}</tr>")
    return (
        "<h2>Stop reasons: baseline (rows) &times; now (columns)</h2>"
        f"<table><tr><th>baseline \\ now</th>{head}</tr>{''.join(body)}</table>"
    )


def _table(summary: Summary) -> str:
    head = (
        "<tr><th>verdict</th><th>scenario</th><th>stop</th><th>steps</th><th>LLM calls</th>"
        "<th>tokens</th><th>cost</th><th>elapsed</th><th>drift</th></tr>"
    )
    rows = []
    for i, entry in enumerate(_ordered(summary)):
        now, base = entry.now, entry.baseline or entry.now
        verdict = summary.verdict(entry)
        stops = escape(now.distribution())
        if entry.baseline is not None and entry.baseline.stops != now.stops:
            stops = f"{escape(entry.baseline.distribution())} &rarr; {stops}"
        rows.append(
            f'<tr><td class="{_VERDICT_CLASS[verdict]}">{verdict or "ok"}</td>'
            f'<td><a href="#s{i}"><code>{escape(entry.nodeid)}</code></a></td>'
            f"<td>{stops}</td>"
            f'<td class="n">{escape(delta("steps", base.steps, now.steps))}</td>'
            f'<td class="n">{escape(delta("llm_calls", base.llm_calls, now.llm_calls))}</td>'
            f'<td class="n">{escape(delta("tokens", base.tokens, now.tokens))}</td>'
            f'<td class="n">{escape(delta("cost_usd", base.cost_usd, now.cost_usd))}</td>'
            f'<td class="n">{escape(delta("elapsed_s", base.elapsed_s, now.elapsed_s))}</td>'
            f"<td>{escape(entry.kind)}</td></tr>"
        )
    return f"<h2>All scenarios ({len(rows)})</h2><table>{head}{''.join(rows)}</table>"


def _scenario(summary: Summary, entry: Entry) -> str:
    index = _ordered(summary).index(entry)
    verdict = summary.verdict(entry)
    changes = "".join(
        f'<li><span class="{_VERDICT_CLASS[j.action]}">{j.action}</span> '
        f"{escape(describe(j.change))} &mdash; {escape(j.reason)}</li>"
        for j in entry.changes
    )
    base = entry.baseline
    source = {"snapshot": "its snapshot", "summary": "--loom-baseline"}.get(entry.source or "")
    return (
        f'<div class="scenario" id="s{index}"><h3>{escape(entry.nodeid)}</h3>'
        f'<div><span class="{_VERDICT_CLASS[verdict]}">{verdict or "unchanged"}</span> '
        f"&middot; runtime {escape(entry.runtime)} &middot; {_words(entry.now)}"
        + (f" &middot; baseline ({escape(source or '')}): {_words(base)}" if base else "")
        + "</div>"
        + (f"<ul>{changes}</ul>" if changes else "")
        + '<div class="plots">'
        + _timeline(entry.now, base)
        + _plot("cumulative cost (USD)", entry.now, base, lambda p: p.cumulative_cost_usd)
        + _plot("score", entry.now, base, lambda p: p.score)
        + "</div></div>"
    )


def _words(measure: Measure) -> str:
    return escape(
        f"{measure.distribution()}, {number('steps', measure.steps)} steps, "
        f"{number('cost_usd', measure.cost_usd)}, {number('tokens', measure.tokens)} tokens"
    )


_W, _H, _PAD = 320, 170, 54


def _plot(
    title: str, now: Measure, base: Measure | None, value: Callable[[StepPoint], float | None]
) -> str:
    """A line plot of ``value(step)`` over steps, now against the baseline."""

    def points(series: Sequence[StepPoint]) -> list[tuple[int, float]]:
        out = []
        for p in series:
            y = value(p)
            if y is not None:
                out.append((p.index, float(y)))
        return out

    lines = [("now", NOW_COLOUR, "", points(now.series))]
    if base is not None:
        lines.insert(
            0, ("baseline", BASELINE_COLOUR, ' stroke-dasharray="5 4"', points(base.series))
        )
    xs = [x for _, _, _, pts in lines for x, _ in pts]
    ys = [y for _, _, _, pts in lines for _, y in pts]
    if not xs:
        return _frame(
            title, '<text x="160" y="90" text-anchor="middle" fill="#57606a">no data</text>'
        )
    x_max, y_max = max(max(xs), 1), max(max(ys), 0.0) or 1.0

    def sx(x: float) -> str:
        return f"{_PAD + (x - 0) / x_max * (_W - _PAD - 10):.1f}"

    def sy(y: float) -> str:
        return f"{_H - 24 - y / y_max * (_H - 24 - 22):.1f}"

    body = [
        f'<line x1="{_PAD}" y1="{_H - 24}" x2="{_W - 10}" y2="{_H - 24}" stroke="#d0d7de"/>',
        f'<line x1="{_PAD}" y1="22" x2="{_PAD}" y2="{_H - 24}" stroke="#d0d7de"/>',
        f'<text x="{_PAD - 4}" y="26" text-anchor="end" font-size="10">{_short(y_max)}</text>',
        f'<text x="{_PAD - 4}" y="{_H - 24}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{sx(x_max)}" y="{_H - 10}" text-anchor="middle" font-size="10">{x_max}</text>',
    ]
    for name, colour, dash, pts in lines:
        if not pts:
            continue
        path = " ".join(f"{sx(x)},{sy(y)}" for x, y in pts)
        body.append(
            f'<polyline class="{name}" points="{path}" fill="none" stroke="{colour}" '
            f'stroke-width="3"{dash}/>'
        )
        body += [
            f'<circle cx="{sx(x)}" cy="{sy(y)}" r="3.5" fill="{colour}">'
            f"<title>{name} step {x}: {_short(y)}</title></circle>"
            for x, y in pts
        ]
    return _frame(title, "".join(body))


def _timeline(now: Measure, base: Measure | None) -> str:
    """Each step as a bar on fake time: one row for now, one for the baseline."""
    rows = [("now", now, NOW_COLOUR)]
    if base is not None:
        rows.insert(0, ("baseline", base, BASELINE_COLOUR))
    end = max((p.start_s + p.duration_s for _, m, _ in rows for p in m.series), default=0.0)
    end = end or 1.0
    body = []
    for i, (name, measure, colour) in enumerate(rows):
        y = 34 + i * 56
        body.append(f'<text x="4" y="{y + 16}" font-size="10">{name}</text>')
        for p in measure.series:
            x = _PAD + 22 + p.start_s / end * (_W - _PAD - 32)
            w = max(p.duration_s / end * (_W - _PAD - 32), 2.0)
            fill = "#cf222e" if p.error else "#bf8700" if p.events else colour
            body.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="24" fill="{fill}" '
                f'stroke="#ffffff"><title>{name} step {p.index}: {_short(p.duration_s)}s, '
                f"{escape(number('cost_usd', p.cost_usd))}, score {_short(p.score)}"
                f"{escape(', ' + p.error) if p.error else ''}"
                f"{escape(', ' + ' '.join(p.events)) if p.events else ''}</title></rect>"
            )
    body.append(
        f'<text x="{_W - 10}" y="{_H - 10}" text-anchor="end" font-size="10">{_short(end)}s</text>'
    )
    return _frame("step timeline (fake time)", "".join(body))


def _frame(title: str, body: str) -> str:
    return (
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}">'
        f'<rect width="{_W}" height="{_H}" fill="#ffffff" stroke="#d0d7de"/>'
        f'<text x="8" y="15" font-size="12" font-weight="600">{escape(title)}</text>'
        f"{body}</svg>"
    )


def _short(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
