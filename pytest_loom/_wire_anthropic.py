"""The Anthropic messages wire format (``POST .../v1/messages``), JSON and SSE."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._wire import (
    Rendered,
    canonical,
    dumps,
    json_response,
    message,
    params_of,
    pieces,
    sse_events,
    sse_response,
)
from .cassette import RecordedRequest, RecordedResponse
from .record import ToolCallRequest

PROVIDER = "anthropic"
_TAKEN = ("model", "messages", "tools", "system", "stream")
_ERRORS = {
    "rate_limit": (429, "rate_limit_error"),
    "server_error": (500, "api_error"),
    "timeout": (408, "timeout_error"),
    "malformed_tool_call": (500, "api_error"),
}


def is_call(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return (
        method == "POST"
        and path.rstrip("/").endswith("/messages")
        and "anthropic-version" in headers
    )


def _uncached(value: Any) -> Any:
    """``value`` without ``cache_control`` marks: they change the bill, not the answer."""
    if isinstance(value, Mapping):
        return {k: _uncached(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list | tuple):
        return [_uncached(v) for v in value]
    return value


def parse_request(body: Mapping[str, Any]) -> RecordedRequest:
    messages = [message(_uncached(m)) for m in body.get("messages") or ()]
    system = body.get("system")
    if system:
        messages.insert(0, {"role": "system", "content": canonical(_uncached(system))})
    return RecordedRequest(
        provider=PROVIDER,
        model=str(body.get("model", "")),
        messages=tuple(messages),
        tools=tuple(canonical(_uncached(t)) for t in body.get("tools") or ()),
        params=params_of(body, _TAKEN),
        stream=bool(body.get("stream")),
    )


def live_body(body: Mapping[str, Any]) -> dict[str, Any]:
    return dict(body)


def _finish(response: RecordedResponse) -> str:
    return response.finish or ("tool_use" if response.tool_calls else "end_turn")


def _blocks(response: RecordedResponse) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if response.text:
        blocks.append({"type": "text", "text": response.text})
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.args)}
        for c in response.tool_calls
    ]
    return blocks


def render(
    response: RecordedResponse, request: RecordedRequest, *, call_id: str, created: int
) -> Rendered:
    message: dict[str, Any] = {
        "id": f"msg_{call_id}",
        "type": "message",
        "role": "assistant",
        "model": response.model or request.model,
        "content": _blocks(response),
        "stop_reason": _finish(response),
        "stop_sequence": None,
        "usage": {"input_tokens": response.input_tokens, "output_tokens": response.output_tokens},
    }
    if not request.stream:
        return json_response(200, message)
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": response.input_tokens, "output_tokens": 0},
    }
    events: list[tuple[str | None, str]] = [
        ("message_start", dumps({"type": "message_start", "message": start}))
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opened: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
        else:
            opened = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": dumps(block["input"])}]
        events.append(
            (
                "content_block_start",
                dumps({"type": "content_block_start", "index": index, "content_block": opened}),
            )
        )
        events += [
            (
                "content_block_delta",
                dumps({"type": "content_block_delta", "index": index, "delta": delta}),
            )
            for delta in deltas
        ]
        events.append(("content_block_stop", dumps({"type": "content_block_stop", "index": index})))
    events.append(
        (
            "message_delta",
            dumps(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _finish(response), "stop_sequence": None},
                    "usage": {"output_tokens": response.output_tokens},
                }
            ),
        )
    )
    events.append(("message_stop", dumps({"type": "message_stop"})))
    return sse_response(events)


def render_error(kind: str, message: str) -> Rendered:
    status, error_type = _ERRORS.get(kind, (400, "invalid_request_error"))
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return json_response(status, body, {"retry-after": "1"})


def parse_response(body: bytes, *, stream: bool) -> RecordedResponse:
    """A real answer (JSON, or the SSE stream) as a response to record (latency left 0)."""
    if not stream:
        data = json.loads(body)
        blocks = data.get("content") or []
        usage = data.get("usage") or {}
        return RecordedResponse(
            text="".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
            tool_calls=tuple(
                ToolCallRequest(name=b["name"], args=dict(b.get("input") or {}), id=b["id"])
                for b in blocks
                if b.get("type") == "tool_use"
            ),
            model=str(data.get("model", "")),
            finish=str(data.get("stop_reason") or ""),
            input_tokens=int(usage.get("input_tokens", 0)),
            output_tokens=int(usage.get("output_tokens", 0)),
        )
    model = finish = ""
    input_tokens = output_tokens = 0
    blocks_by_index: dict[int, dict[str, Any]] = {}
    for _, data_text in sse_events(body):
        data = json.loads(data_text)
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            model = message.get("model", "")
            input_tokens = int((message.get("usage") or {}).get("input_tokens", 0))
        elif kind == "content_block_start":
            block = dict(data.get("content_block") or {})
            block["_json"] = ""
            blocks_by_index[int(data.get("index", 0))] = block
        elif kind == "content_block_delta":
            block = blocks_by_index.setdefault(
                int(data.get("index", 0)), {"type": "text", "_json": ""}
            )
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif delta.get("type") == "input_json_delta":
                block["_json"] += delta.get("partial_json", "")
        elif kind == "message_delta":
            finish = (data.get("delta") or {}).get("stop_reason") or finish
            output_tokens = int((data.get("usage") or {}).get("output_tokens", output_tokens))
    blocks = [blocks_by_index[i] for i in sorted(blocks_by_index)]
    return RecordedResponse(
        text="".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
        tool_calls=tuple(
            ToolCallRequest(
                name=b["name"],
                args=json.loads(b["_json"]) if b["_json"] else dict(b.get("input") or {}),
                id=b["id"],
            )
            for b in blocks
            if b.get("type") == "tool_use"
        ),
        model=model,
        finish=finish,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
