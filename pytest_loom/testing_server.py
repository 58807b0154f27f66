"""A fake OpenAI and Anthropic API on loopback, for testing record mode without the internet.

:class:`FakeLLMServer` speaks the chat-completions (``POST /v1/chat/completions``) and messages
(``POST /v1/messages``) wire formats, JSON and streaming SSE, checks the API key like the real
services do, and answers from a function you give it. Point the SDKs at it with
``OPENAI_BASE_URL=server.openai_base_url`` and ``ANTHROPIC_BASE_URL=server.anthropic_base_url``::

    with FakeLLMServer(reply, api_key="sk-test-key") as server:
        ...  # run pytest --loom-record=rewrite with those variables set

It is a standard-library ``http.server`` in a thread; nothing here is imported by the lab.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from . import _wire_anthropic, _wire_openai
from ._wire import Rendered, json_response
from .cassette import RecordedRequest, RecordedResponse

__all__ = ["FakeLLMServer", "ReceivedRequest", "echo_reply"]

Reply = Callable[[RecordedRequest], RecordedResponse]
"""Answers one normalised request (its ``provider`` says which API was called)."""


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request the server received: which API, the headers and the parsed body."""

    provider: str
    path: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]


def echo_reply(request: RecordedRequest) -> RecordedResponse:
    """The default answer: ``echo: <last user message>``, with token counts from lengths."""
    text = f"echo: {request.last_user_message}"
    return RecordedResponse(
        text=text,
        input_tokens=sum(len(json.dumps(m)) for m in request.messages) // 4,
        output_tokens=len(text) // 4 + 1,
    )


class FakeLLMServer:
    """A loopback HTTP server speaking the OpenAI and Anthropic wire formats."""

    def __init__(
        self,
        reply: Reply = echo_reply,
        *,
        api_key: str | None = None,
        organization: str = "org-fake-do-not-record",
    ) -> None:
        self.reply = reply
        self.api_key = api_key
        self.organization = organization
        self.received: list[ReceivedRequest] = []
        self.fail_next: list[tuple[int, str]] = []
        """``(status, message)`` answers to give before the next replies (e.g. ``(429, ...)``)."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._count = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, path: str, headers: Mapping[str, str], raw: bytes) -> Rendered:
        """The response to one request (used by the request handler)."""
        lower = {k.lower(): v for k, v in headers.items()}
        wire: Any
        key = lower.get("x-api-key") or lower.get("authorization", "").removeprefix("Bearer ")
        if _wire_openai.is_call("POST", path, lower):
            wire = _wire_openai
        elif _wire_anthropic.is_call("POST", path, lower):
            wire = _wire_anthropic
        else:
            return json_response(404, {"error": {"message": f"no route {path}"}})
        if self.api_key is not None and key != self.api_key:
            return _with_org(
                wire.render_error("auth", "invalid x-api-key / Authorization"), 401, self
            )
        body = json.loads(raw or b"{}")
        with self._lock:
            self.received.append(ReceivedRequest(wire.PROVIDER, path, lower, body))
            self._count += 1
            count = self._count
            failure = self.fail_next.pop(0) if self.fail_next else None
        if failure is not None:
            status, message = failure
            return _with_org(wire.render_error("server_error", message), status, self)
        request = wire.parse_request(body)
        response = self.reply(request)
        if not response.model:
            response = _replace_model(response, f"{request.model}-fake-2025")
        rendered: Rendered = wire.render(
            response, request, call_id=f"fake{count}", created=1_700_000_000 + count
        )
        return _with_org(rendered, rendered.status, self)


def _replace_model(response: RecordedResponse, model: str) -> RecordedResponse:
    from dataclasses import replace

    return replace(response, model=model)


def _with_org(rendered: Rendered, status: int, server: FakeLLMServer) -> Rendered:
    headers = {**rendered.headers, "openai-organization": server.organization}
    return Rendered(status, rendered.body, headers)


def _handler(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            rendered = server.answer(self.path, dict(self.headers.items()), raw)
            self.send_response(rendered.status)
            for name, value in rendered.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(rendered.body)))
            self.end_headers()
            self.wfile.write(rendered.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
