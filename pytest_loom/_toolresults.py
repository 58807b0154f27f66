"""What a tool returned, kept in the run record so a replay can hand it back without the tool.

A replay answers the steps before ``--loom-replay-from`` from the recording, and tools are part
of that: a tool that called a paid API, a search engine or a flaky service must not run again.
So each :class:`~pytest_loom.record.ToolCall` keeps its result as JSON, when JSON holds it
exactly (a round trip gives an equal value: no tuples, no non-string keys, no NaN), and a
failure of a built-in exception type with JSON arguments as ``{"error": type, "args": [...]}``.
Anything else is kept as :data:`NOT_KEPT` and the replay runs the tool again, comparing its
result digest with the recorded one. Whether a kept value is the real result is checked against the
result digest, which every runtime records: a mismatch (an old recording, a value JSON could
not hold) is never served.
"""

from __future__ import annotations

import builtins
from typing import Any

import orjson

from .record import ToolCall, digest

NOT_KEPT = "<not kept: JSON cannot hold it exactly>"
"""What the record holds for a result it could not keep (its digest is still recorded)."""


def kept(value: Any) -> Any:
    """``value`` if JSON holds it exactly, else :data:`NOT_KEPT`."""
    try:
        raw = orjson.dumps(value)
    except TypeError:
        return NOT_KEPT
    copy = orjson.loads(raw)
    return copy if copy == value and _same_types(copy, value) else NOT_KEPT


def kept_error(exc: Exception) -> Any:
    """A built-in exception as ``{"error": name, "args": [...]}``, else :data:`NOT_KEPT`."""
    kind = type(exc)
    args = kept(list(exc.args))
    if getattr(builtins, kind.__name__, None) is not kind or args is NOT_KEPT:
        return NOT_KEPT
    return {"error": kind.__name__, "args": args}


def servable(call: ToolCall) -> bool:
    """Whether ``call.result`` is what the tool really gave (checked against its digest)."""
    if call.status == "ok":
        return digest(call.result) == call.result_digest
    error = _rebuilt(call.result)
    return error is not None and digest(repr(error)) == call.result_digest


def serve(call: ToolCall) -> Any:
    """Give back a recorded result: return the value (a fresh copy), or raise the error."""
    if call.status == "ok":
        return orjson.loads(orjson.dumps(call.result))
    error = _rebuilt(call.result)
    assert error is not None, "serve() needs a servable call"
    raise error


def _rebuilt(result: Any) -> BaseException | None:
    if not isinstance(result, dict) or set(result) != {"error", "args"}:
        return None
    kind = getattr(builtins, str(result["error"]), None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        return None
    try:
        return kind(*result["args"])
    except Exception:  # a built-in that its recorded arguments no longer fit
        return None


def _same_types(a: Any, b: Any) -> bool:
    """Equal values of the same JSON types all the way down (``1 == 1.0 == True`` in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return True
