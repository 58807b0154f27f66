"""LLM-aware matching of a request against a cassette, and the errors that explain a miss.

Two requests match when they go to the same provider and model with the same messages and the
same tool schemas, after the ignore rules have blanked what may vary between runs (a date in
the system prompt, a run id). Sampling parameters and streaming are not compared: a loop that
switches to streaming still replays. A miss lists the closest recorded calls with a diff of
the request, and says when the recording looks stale (same conversation, but the system prompt
or the tool schema changed since it was recorded).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cassette import RecordedCall, RecordedRequest

__all__ = ["IgnoreRule", "describe_unused", "explain_miss", "match_key", "stale_reason"]

IGNORED = "<ignored>"
_CLOSEST = 3
_DIFF_LINES = 40


@dataclass(frozen=True, slots=True)
class IgnoreRule:
    """Text matching ``regex`` in message contents reads as ``<ignored>`` when matching.

    With ``role`` set, only messages of that role are affected (``system`` covers both an
    OpenAI system message and Anthropic's ``system`` parameter).
    """

    regex: str
    role: str | None = None

    def __post_init__(self) -> None:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(
                f"IgnoreRule(regex={self.regex!r}): not a valid regex: {exc}"
            ) from None


def _blank(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(IGNORED, value)
    if isinstance(value, Mapping):
        return {k: _blank(v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_blank(v, pattern) for v in value]
    return value


def _messages(request: RecordedRequest, ignore: Sequence[IgnoreRule]) -> list[dict[str, Any]]:
    messages = [dict(m) for m in request.messages]
    for rule in ignore:
        pattern = re.compile(rule.regex)
        for m in messages:
            if rule.role is None or m.get("role") == rule.role:
                m["content"] = _blank(m.get("content"), pattern)
    return messages


def match_key(request: RecordedRequest, ignore: Sequence[IgnoreRule] = ()) -> dict[str, Any]:
    """What matching compares: provider, model, messages (ignore rules applied), tools."""
    return {
        "provider": request.provider,
        "model": request.model,
        "messages": _messages(request, ignore),
        "tools": [dict(t) for t in request.tools],
    }


def stale_reason(
    request: RecordedRequest, recorded: RecordedRequest, ignore: Sequence[IgnoreRule] = ()
) -> str | None:
    """Why ``recorded`` looks like an older recording of ``request``, or ``None``.

    Stale means: same provider, model and conversation, but the system prompt or the tool
    schema it was recorded with has changed.
    """
    now, then = match_key(request, ignore), match_key(recorded, ignore)
    if now["provider"] != then["provider"] or now["model"] != then["model"]:
        return None

    def split(key: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        system = [m for m in key["messages"] if m.get("role") == "system"]
        return system, [m for m in key["messages"] if m.get("role") != "system"]

    (sys_now, rest_now), (sys_then, rest_then) = split(now), split(then)
    if rest_now != rest_then:
        return None
    changed = []
    if sys_now != sys_then:
        changed.append("system prompt")
    if now["tools"] != then["tools"]:
        changed.append("tool schema")
    if not changed:
        return None
    return f"the {' and the '.join(changed)} changed since it was recorded"


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _diff(recorded: str, requested: str) -> list[str]:
    lines = list(
        difflib.unified_diff(
            recorded.splitlines(),
            requested.splitlines(),
            "recorded",
            "requested",
            n=1,
            lineterm="",
        )
    )
    if len(lines) > _DIFF_LINES:
        lines = [*lines[:_DIFF_LINES], f"... and {len(lines) - _DIFF_LINES} more diff lines"]
    return lines


def _short(text: str, limit: int = 100) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def explain_miss(
    *,
    where: str,
    index: int,
    step: int | None,
    request: RecordedRequest,
    calls: Sequence[RecordedCall],
    used: Sequence[bool],
    ignore: Sequence[IgnoreRule],
    hint: str,
) -> tuple[str, str | None]:
    """The error text for a request no unused recorded call matches, and a stale reason."""
    from .cassette import yaml_text

    key = match_key(request, ignore)
    text = yaml_text(key)
    lines = [
        f"cassette {where}: no recorded call matches request {index}"
        + (f" (step {step})" if step is not None else ""),
        "",
        "the request:",
        f"  provider: {request.provider}, model: {request.model!r}",
        f"  last user message: {_short(request.last_user_message)}",
        f"  messages: {len(request.messages)}, tools: "
        + (
            ", ".join(
                str(t.get("name") or t.get("function", {}).get("name")) for t in request.tools
            )
            or "(none)"
        ),
    ]
    stale: str | None = None
    if not calls:
        lines += ["", "the cassette holds no calls"]
    else:
        ranked = sorted(
            range(len(calls)),
            key=lambda i: (
                calls[i].request.provider != request.provider,
                calls[i].request.model != request.model,
                -_similarity(yaml_text(match_key(calls[i].request, ignore)), text),
                i,
            ),
        )
        lines += ["", "closest recorded calls:"]
        for i in ranked[:_CLOSEST]:
            call = calls[i]
            recorded_key = match_key(call.request, ignore)
            state = "already used" if used[i] else "unused"
            at = f"step {call.step}, " if call.step is not None else ""
            lines.append(f"  call {i + 1} ({at}{state}):")
            if recorded_key == key:
                lines.append("      matches, but was already used by an earlier request")
                continue
            reason = stale_reason(request, call.request, ignore)
            if reason is not None and stale is None and not used[i]:
                stale = f"call {i + 1}: {reason}"
            if reason is not None:
                lines.append(f"      stale: {reason}")
            lines += ["      " + line for line in _diff(yaml_text(recorded_key), text)]
        if len(calls) > _CLOSEST:
            lines.append(f"  ... and {len(calls) - _CLOSEST} more recorded calls less similar")
    lines += ["", f"to fix: {hint}"]
    return "\n".join(lines), stale


def describe_unused(calls: Sequence[RecordedCall], used: Sequence[bool]) -> list[str]:
    """One line per recorded call never used: its number, step and prompt."""
    return [
        f"  call {i + 1}"
        + (f" (step {call.step})" if call.step is not None else "")
        + f": {call.request.model} {_short(call.request.last_user_message, 60)}"
        for i, (call, was_used) in enumerate(zip(calls, used, strict=True))
        if not was_used
    ]
