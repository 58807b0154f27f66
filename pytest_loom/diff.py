"""A per-step diff of two run records that a reviewer can read.

The stop-reason change comes first (it is what a reviewer cares about most), then the totals,
then each step that changed: which field, before and after. It works on the JSON form of the
records, so it can compare a committed snapshot with a fresh run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_LINES = 60


def stop_label(stop: Mapping[str, Any]) -> str:
    reason = str(stop.get("reason"))
    if stop.get("limit"):
        return f"{reason}({stop['limit']})"
    if stop.get("error_type"):
        return f"{reason}({stop['error_type']})"
    return reason


def diff_records(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Readable differences from ``old`` (the snapshot) to ``new`` (this run)."""
    lines: list[str] = []
    old_stop, new_stop = old.get("stop") or {}, new.get("stop") or {}
    if stop_label(old_stop) != stop_label(new_stop):
        lines.append(f"stop: {stop_label(old_stop)} -> {stop_label(new_stop)}")
    lines += _fields("stop", old_stop, new_stop, skip={"reason", "limit", "error_type"})
    lines += _fields("totals", old.get("totals") or {}, new.get("totals") or {})
    old_steps, new_steps = old.get("steps") or [], new.get("steps") or []
    for i in range(max(len(old_steps), len(new_steps))):
        if i >= len(new_steps):
            lines.append(f"step {_index(old_steps[i], i)}: removed ({_summary(old_steps[i])})")
        elif i >= len(old_steps):
            lines.append(f"step {_index(new_steps[i], i)}: added ({_summary(new_steps[i])})")
        else:
            lines += _fields(f"step {_index(new_steps[i], i)}", old_steps[i], new_steps[i])
    for key in sorted(set(old) | set(new)):
        if key not in ("stop", "totals", "steps") and old.get(key) != new.get(key):
            lines.append(f"{key}: {_show(old.get(key))} -> {_show(new.get(key))}")
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more differences"]
    return lines


def _index(step: Any, position: int) -> Any:
    return step.get("index", position + 1) if isinstance(step, Mapping) else position + 1


def _summary(step: Any) -> str:
    if not isinstance(step, Mapping):
        return _show(step)
    parts = [f"cost_usd={step.get('cost_usd')}", f"score={step.get('score')}"]
    if step.get("error"):
        parts.append(f"error={step['error']!r}")
    return ", ".join(parts)


def _fields(
    prefix: str, old: Any, new: Any, *, skip: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """Leaf-level differences under ``prefix`` (``step 3: llm_calls[0].text: 'a' -> 'b'``)."""
    out: list[str] = []

    def walk(path: str, a: Any, b: Any) -> None:
        if a == b:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b)):
                if not path and key in skip:
                    continue
                walk(f"{path}.{key}" if path else str(key), a.get(key), b.get(key))
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(f"{path}[{i}]", x, y)
        elif isinstance(a, str) and isinstance(b, str):
            start = _first_difference(a, b)
            out.append(f"{prefix}: {path}: {_show(a, start=start)} -> {_show(b, start=start)}")
        else:
            out.append(f"{prefix}: {path or '(value)'}: {_show(a)} -> {_show(b)}")

    walk("", old, new)
    return out


def _first_difference(a: str, b: str) -> int:
    """Where two strings start to differ, less some context, so long prompts show the change."""
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return max(0, i - 20)


def _show(value: Any, limit: int = 80, *, start: int = 0) -> str:
    if start and isinstance(value, str):
        text = "..." + repr(value[start:])[1:-1]
        text = f"'{text}'"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
