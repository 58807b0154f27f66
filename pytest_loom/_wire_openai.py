"""The OpenAI chat-completions wire format (``POST .../chat/completions``), JSON and SSE."""

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
    parse_args,
    pieces,
    sse_events,
    sse_response,
)
from .cassette import RecordedRequest, RecordedResponse
from .record import ToolCallRequest

PROVIDER = "openai"
_TAKEN = ("model", "messages", "tools", "stream")
_ERRORS = {
    "rate_limit": (429, "rate_limit_error"),
    "server_error": (500, "server_error"),
    "timeout": (408, "timeout"),
    "malformed_tool_call": (500, "server_error"),
}


def is_call(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return method == "POST" and path.rstrip("/").endswith("/chat/completions")


def parse_request(body: Mapping[str, Any]) -> RecordedRequest:
    return RecordedRequest(
        provider=PROVIDER,
        model=str(body.get("model", "")),
        messages=tuple(message(m) for m in body.get("messages") or ()),
        tools=tuple(canonical(t) for t in body.get("tools") or ()),
        params=params_of(body, _TAKEN),
        stream=bool(body.get("stream")),
    )


def live_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body sent to the real API when recording: streams also report usage."""
    sent = dict(body)
    if sent.get("stream"):
        sent["stream_options"] = {**(sent.get("stream_options") or {}), "include_usage": True}
    return sent


def _finish(response: RecordedResponse) -> str:
    return response.finish or ("tool_calls" if response.tool_calls else "stop")


def _usage(response: RecordedResponse) -> dict[str, int]:
    return {
        "prompt_tokens": response.input_tokens,
        "completion_tokens": response.output_tokens,
        "total_tokens": response.input_tokens + response.output_tokens,
    }


def _tool_call(call: ToolCallRequest) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": dumps(dict(call.args))},
    }


def render(
    response: RecordedResponse, request: RecordedRequest, *, call_id: str, created: int
) -> Rendered:
    model = response.model or request.model
    head = {"id": f"chatcmpl-{call_id}", "created": created, "model": model}
    if not request.stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": response.text if response.text or not response.tool_calls else None,
            "refusal": None,
        }
        if response.tool_calls:
            message["tool_calls"] = [_tool_call(c) for c in response.tool_calls]
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": _finish(response),
            "logprobs": None,
        }
        body = {**head, "object": "chat.completion", "choices": [choice], "usage": _usage(response)}
        return json_response(200, body)
    head["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, str]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return None, dumps({**head, "choices": [choice]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces(response.text)]
    for i, call in enumerate(response.tool_calls):
        events.append(chunk({"tool_calls": [{"index": i, **_tool_call(call)}]}))
    events.append(chunk({}, _finish(response)))
    options = request.params.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage"):
        events.append((None, dumps({**head, "choices": [], "usage": _usage(response)})))
    events.append((None, "[DONE]"))
    return sse_response(events)


def render_error(kind: str, message: str) -> Rendered:
    status, error_type = _ERRORS.get(kind, (400, "invalid_request_error"))
    body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
    return json_response(status, body, {"retry-after": "1"})


def parse_response(body: bytes, *, stream: bool) -> RecordedResponse:
    """A real answer (JSON, or the SSE stream) as a response to record (latency left 0)."""
    if not stream:
        data = json.loads(body)
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        calls = tuple(
            ToolCallRequest(
                name=c["function"]["name"],
                args=parse_args(c["function"].get("arguments", "")),
                id=c["id"],
            )
            for c in message.get("tool_calls") or ()
        )
        usage = data.get("usage") or {}
        return RecordedResponse(
            text=message.get("content") or "",
            tool_calls=calls,
            model=str(data.get("model", "")),
            finish=str(choice.get("finish_reason") or ""),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
        )
    text: list[str] = []
    tools: dict[int, dict[str, str]] = {}
    model = finish = ""
    usage = {}
    for _, data_text in sse_events(body):
        if data_text.strip() == "[DONE]":
            break
        data = json.loads(data_text)
        model = data.get("model") or model
        usage = data.get("usage") or usage
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for tc in delta.get("tool_calls") or ():
                slot = tools.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
                function = tc.get("function") or {}
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] = function.get("name") or slot["name"]
                slot["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return RecordedResponse(
        text="".join(text),
        tool_calls=tuple(
            ToolCallRequest(name=t["name"], args=parse_args(t["arguments"]), id=t["id"])
            for _, t in sorted(tools.items())
        ),
        model=model,
        finish=finish,
        input_tokens=int(usage.get("prompt_tokens", 0)),
        output_tokens=int(usage.get("completion_tokens", 0)),
    )
