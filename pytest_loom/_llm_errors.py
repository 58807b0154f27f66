"""Why a request did not match, and the messages :class:`~pytest_loom.llm.MockLLM` fails with.

Matching and explaining share :func:`_failures`, the checks themselves: :func:`matches` stops at
the first that fails and formats nothing (it runs for every scripted entry a request is tried
against), :func:`mismatches` words each one that failed. So the reasons an error gives are
exactly the checks that failed. Everything else here only formats text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING

from .script import LLMErrorKind, Match, Rule, Turn

if TYPE_CHECKING:
    from .llm import Request

_MESSAGE_LIMIT = 200
_NEAREST_RULES = 3


def matches(match: Match | None, model: str | None, request: Request, last: str) -> bool:
    """Whether ``request``, whose last user message is ``last``, passes ``match`` and the turn's
    own ``model``."""
    return next(_failures(match, model, request, last), None) is None


def mismatches(match: Match | None, model: str | None, request: Request) -> list[str]:
    """Why ``request`` fails ``match`` and the turn's own ``model``: empty means it matches."""
    last = request.last_user_message
    where = "last user message" if _has_user_message(request) else "last user message (none sent)"
    reasons: list[str] = []
    for check, wanted in _failures(match, model, request, last):
        first = wanted[0]
        if check == "model":
            reasons.append(f"model {first!r} wanted, request is for {request.model!r}")
        elif check == "contains":
            hint = " (it is, ignoring case)" if first.lower() in last.lower() else ""
            reasons.append(f"contains {first!r} not in {where}{hint}")
        elif check == "regex":
            reasons.append(f"regex {first!r} finds nothing in {where}")
        else:
            reasons.append(f"tool{'s' * (len(wanted) > 1)} {', '.join(wanted)} not offered")
    return reasons


def _failures(
    match: Match | None, model: str | None, request: Request, last: str
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Each check ``request`` fails, lazily: ``(check, what it wanted)``, where what a ``tools``
    check wanted is the tools not offered."""
    if model is not None and model != request.model:
        yield "model", (model,)
    if match is None:
        return
    if match.model is not None and match.model != model and match.model != request.model:
        yield "model", (match.model,)
    if match.contains is not None and match.contains not in last:
        yield "contains", (match.contains,)
    if match.regex is not None and re.search(match.regex, last) is None:
        yield "regex", (match.regex,)
    if match.tools:
        missing = tuple(t for t in match.tools if t not in request.tools)
        if missing:
            yield "tools", missing


def similarity(match: Match, text: str) -> float:
    """How close a match's ``contains``/``regex`` text is to ``text`` (difflib ratio, 0 to 1)."""
    patterns = [p for p in (match.contains, match.regex) if p is not None]
    return max((difflib.SequenceMatcher(None, p, text).ratio() for p in patterns), default=0.0)


def format_unmatched(
    request: Request,
    call_index: int,
    turns: Sequence[Turn],
    cursor: int,
    rules: Sequence[Rule],
    uses_left: Sequence[int | None],
) -> str:
    lines = [
        f"MockLLM: no scripted turn or rule matches request {call_index}",
        "",
        "the request:",
        *_describe_request(request),
        "",
        "nearest in the script:",
    ]
    if cursor < len(turns):
        turn = turns[cursor]
        lines.append(f"  turn {cursor + 1} (next in order) -> {describe_reply(turn)}")
        lines += _bullets(mismatches(turn.match, turn.model, request))
    elif turns:
        lines.append(f"  no turns left: all {len(turns)} scripted turns were served")
    else:
        lines.append("  no scripted turns")
    lines += _nearest_rules(request, rules, uses_left)
    lines += [
        "",
        "to fix: script a turn or rule that matches this request (each entry says why it did not),",
        "  or use MockLLM(strict=False) to answer unmatched requests with an empty reply",
    ]
    return "\n".join(lines)


def format_unconsumed(
    pending: Sequence[tuple[int, Turn]],
    injected: Sequence[tuple[int, LLMErrorKind]],
    served: int,
) -> str:
    count = len(pending) + len(injected)
    noun = "item" if injected else "turn"
    lines = [
        f"MockLLM: {count} scripted {noun}{'s' * (count != 1)} never used after {served} "
        f"request{'s' * (served != 1)}:"
    ]
    lines += [f"  turn {index}: {describe_reply(turn)}" for index, turn in pending]
    lines += [
        f"  inject_error({at}, {str(kind)!r}): request {at} never came" for at, kind in injected
    ]
    lines += [
        "the loop stopped early, or asked for less than the script expects",
        "to fix: remove them from the script, or use MockLLM(allow_unused=True) if stopping early"
        " is expected",
    ]
    return "\n".join(lines)


def format_pricing(model: str, known: Collection[str]) -> str:
    # Dated or provider-prefixed names ("gpt-4o-2024-08-06", "openai:gpt-4o") contain a known one.
    close = sorted((k for k in known if k in model), key=len)[-1:]
    close = close or difflib.get_close_matches(model, known, n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return "\n".join(
        [
            f"MockLLM: no price for model {model!r}{guess}",
            "to fix: add it under llm.pricing in the scenario, or give the turn an explicit cost"
            " (cost_usd);",
            f"  in Python: MockLLM(pricing={{{model!r}: Price(input=..., output=...)}}),"
            " in USD per million tokens",
            f"known models: {', '.join(sorted(known))}",
        ]
    )


def describe_reply(turn: Turn) -> str:
    """A one-line summary of what a turn answers: its text, tool calls or error."""
    parts: list[str] = []
    if turn.error is not None:
        parts.append(f"error {str(turn.error)!r}")
    if turn.text:
        parts.append(f"text {shorten(turn.text, 60)}")
    if turn.tool_calls:
        calls = ", ".join(
            f"{c.name}({', '.join(f'{k}={v!r}' for k, v in c.args.items())})"
            for c in turn.tool_calls
        )
        parts.append(f"tool calls {shorten(calls, 80, quote=False)}")
    return "; ".join(parts) or "empty reply"


def shorten(text: str, limit: int = _MESSAGE_LIMIT, *, quote: bool = True) -> str:
    """``text`` cut to ``limit`` characters (saying how long it was), quoted on one line."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    shown = repr(cut) if quote else cut
    return shown if cut is text else f"{shown} ({len(text)} chars)"


def _describe_request(request: Request) -> list[str]:
    roles = [m.role for m in request.messages]
    role_list = f" ({', '.join(roles)})" if 0 < len(roles) <= 8 else ""
    last = shorten(request.last_user_message) if _has_user_message(request) else "(none)"
    return [
        f"  model: {request.model!r}",
        f"  last user message: {last}",
        f"  tools offered: {', '.join(request.tools) or '(none)'}",
        f"  messages: {len(roles)}{role_list}",
    ]


def _nearest_rules(
    request: Request, rules: Sequence[Rule], uses_left: Sequence[int | None]
) -> list[str]:
    if not rules:
        return ["  no rules"]
    last = request.last_user_message
    ranked = []
    for index, (rule, left) in enumerate(zip(rules, uses_left, strict=True)):
        reasons = mismatches(rule.match, rule.reply.model, request)
        # A rule that only ran out of uses is the likeliest culprit, so it ranks first.
        spent_only = not reasons and left == 0
        if left == 0:
            spent = f"used up (times={rule.times})"
            reasons.append(f"matches, but {spent}" if spent_only else spent)
        ranked.append((not spent_only, -similarity(rule.match, last), index, reasons))
    ranked.sort(key=lambda r: r[:3])
    lines: list[str] = []
    for _, negative_ratio, index, reasons in ranked[:_NEAREST_RULES]:
        rule, left = rules[index], uses_left[index]
        uses = "unlimited uses" if left is None else f"{left} use{'s' * (left != 1)} left"
        lines.append(
            f"  rule {index + 1} (similarity {-negative_ratio:.2f}, {uses})"
            f" -> {describe_reply(rule.reply)}"
        )
        lines += _bullets(reasons)
    if len(rules) > _NEAREST_RULES:
        lines.append(f"  ... and {len(rules) - _NEAREST_RULES} more rule(s) less similar")
    return lines


def _bullets(reasons: Sequence[str]) -> list[str]:
    return [f"      - {reason}" for reason in reasons]


def _has_user_message(request: Request) -> bool:
    return any(m.role == "user" for m in request.messages)
