"""What the provider wire formats share: canonical JSON, SSE framing, rendered responses.

The per-provider modules (:mod:`pytest_loom._wire_openai`, :mod:`pytest_loom._wire_anthropic`)
turn an HTTP request body into a :class:`~pytest_loom.cassette.RecordedRequest`, a
:class:`~pytest_loom.cassette.RecordedResponse` into the bytes the SDK expects (JSON or a
server-sent event stream), and a real provider's answer back into a response to record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_SECRET_PARAMS = frozenset({"api_key", "organization", "project", "authorization"})


@dataclass(frozen=True, slots=True)
class Rendered:
    """An HTTP response to hand the SDK: status, headers and the whole body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def canonical(value: Any) -> Any:
    """``value`` with mapping keys sorted, recursively, so recorded requests diff cleanly."""
    if isinstance(value, Mapping):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def message(value: Mapping[str, Any]) -> dict[str, Any]:
    """A chat message in canonical form, its ``role`` first (it reads better in a cassette)."""
    rest: dict[str, Any] = canonical({k: v for k, v in value.items() if k != "role"})
    return {"role": value.get("role"), **rest}


def params_of(body: Mapping[str, Any], taken: tuple[str, ...]) -> dict[str, Any]:
    """The sampling and other parameters: every body key not ``taken``, secrets dropped."""
    kept = {k: v for k, v in body.items() if k not in taken and k.lower() not in _SECRET_PARAMS}
    params: dict[str, Any] = canonical(kept)
    return params


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_response(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Rendered:
    return Rendered(
        status,
        dumps(value).encode(),
        {"content-type": "application/json", **(headers or {})},
    )


def sse_response(events: Sequence[tuple[str | None, str]]) -> Rendered:
    """A ``text/event-stream`` body from ``(event name or None, data)`` pairs."""
    chunks = []
    for event, data in events:
        chunks.append((f"event: {event}\n" if event else "") + f"data: {data}\n\n")
    return Rendered(200, "".join(chunks).encode(), {"content-type": "text/event-stream"})


def sse_events(body: bytes) -> Iterator[tuple[str | None, str]]:
    """``(event, data)`` pairs of a server-sent event stream (multi-line data joined)."""
    event: str | None = None
    data: list[str] = []
    for line in body.decode("utf-8").splitlines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


def pieces(text: str) -> list[str]:
    """``text`` cut into word-sized stream deltas (whitespace kept with the word before it)."""
    out: list[str] = []
    word = ""
    for ch in text:
        if word and not word[-1].isspace() and ch.isspace():
            word += ch
            continue
        if word and word[-1].isspace() and not ch.isspace():
            out.append(word)
            word = ""
        word += ch
    if word:
        out.append(word)
    return out


def parse_args(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as sent (JSON text); unparsable text is kept under ``_unparsed``."""
    try:
        value = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return {"_unparsed": arguments}
    return value if isinstance(value, dict) else {"_value": value}
