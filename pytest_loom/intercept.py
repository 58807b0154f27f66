"""SDK interception: the real ``openai`` and ``anthropic`` clients, served by the lab.

Both SDKs send requests through httpx (``httpx2`` in their newer releases). While
:func:`serve_sdks` is active, the default sync and async httpx transports answer chat
completions (``POST .../chat/completions``) and Anthropic messages (``POST .../v1/messages``)
themselves: the request body is normalised, served by the lab's LLM (the scenario's
:class:`~pytest_loom.MockLLM`, or a :class:`~pytest_loom.RecordedLLM` over a cassette) and the
answer is rendered in the provider's wire format, JSON or a server-sent event stream, so the
SDK parses it into its own types. Nothing is sent anywhere. Other requests go through
untouched (and meet the network guard). In a record mode a
:class:`~pytest_loom.RecordedLLM` forwards what it cannot replay to the real API and records
the answer; the SDK is then served the recorded answer, exactly as a replay will serve it.

The transports are patched once, when first needed, and then only consult the active server:
outside :func:`serve_sdks` they behave as usual. httpx is not imported here: if it is not
loaded yet, it is patched as it is imported.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from ._clockpatch import real_perf_counter
from .llm import LLMError, MockLLM, MockLLMError, Response
from .recordmode import is_recording

if TYPE_CHECKING:
    from ._wire import Rendered
    from .cassette import RecordedRequest, RecordedResponse

__all__ = ["OFFLINE_KEY", "serve_sdks"]

OFFLINE_KEY = "loom-offline-key"
"""The API key set for the SDKs (when none is set) while replaying: clients need one."""

_HTTP_MODULES = ("httpx2", "httpx")
_KEY_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
_lock = threading.Lock()
_active: list[MockLLM] = []
_patched: set[str] = set()


class _Wire(Protocol):
    PROVIDER: str

    def is_call(self, method: str, path: str, headers: Any) -> bool: ...

    def parse_request(self, body: Any) -> RecordedRequest: ...

    def live_body(self, body: Any) -> dict[str, Any]: ...

    def render(
        self, response: RecordedResponse, request: RecordedRequest, *, call_id: str, created: int
    ) -> Rendered: ...

    def render_error(self, kind: str, message: str) -> Rendered: ...

    def parse_response(self, body: bytes, *, stream: bool) -> RecordedResponse: ...


class _LiveFailed(Exception):
    """The real provider answered with an error: it goes to the SDK as it came, unrecorded."""

    def __init__(self, response: Any) -> None:
        super().__init__(response.status_code)
        self.response = response


@contextmanager
def serve_sdks(llm: MockLLM) -> Iterator[MockLLM]:
    """Serve every openai/anthropic SDK call made inside the block from ``llm``.

    Contexts nest; the innermost serves. While replaying (``llm`` is not a recording
    :class:`~pytest_loom.RecordedLLM`), ``OPENAI_API_KEY`` and ``ANTHROPIC_API_KEY`` are set to
    a placeholder if unset, so clients that insist on a key can be built offline.
    """
    _install()
    recording = is_recording(llm)
    saved = {name: os.environ.get(name) for name in _KEY_ENV}
    if not recording:
        for name in _KEY_ENV:
            os.environ.setdefault(name, OFFLINE_KEY)
    with _lock:
        _active.append(llm)
    try:
        yield llm
    finally:
        with _lock:
            del _active[len(_active) - 1 - _active[::-1].index(llm)]
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _current() -> MockLLM | None:
    return _active[-1] if _active else None


# --- patching httpx -----------------------------------------------------------------------------


def _install() -> None:
    with _lock:
        for name in _HTTP_MODULES:
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "HTTPTransport"):
                _patch(module)
        if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _PatchOnImport())


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches httpx as it is imported, so the lab never imports it itself."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _HTTP_MODULES or fullname in _patched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        if hasattr(module, "HTTPTransport"):
            with _lock:
                _patch(module)


def _patch(module: ModuleType) -> None:
    if module.__name__ in _patched:
        return
    _patched.add(module.__name__)
    sync_cls, async_cls = module.HTTPTransport, module.AsyncHTTPTransport
    original_sync = sync_cls.handle_request
    original_async = async_cls.handle_async_request

    def handle_request(self: Any, request: Any) -> Any:
        llm = _current()
        wire = _wire_for(request) if llm is not None else None
        if llm is None or wire is None:
            return original_sync(self, request)
        request.read()
        return _serve(module, original_sync, llm, wire, request)

    async def handle_async_request(self: Any, request: Any) -> Any:
        llm = _current()
        wire = _wire_for(request) if llm is not None else None
        if llm is None or wire is None:
            return await original_async(self, request)
        await request.aread()
        return _serve(module, original_sync, llm, wire, request)

    sync_cls.handle_request = handle_request
    async_cls.handle_async_request = handle_async_request


def _wire_for(request: Any) -> _Wire | None:
    # The wire formats load with the first request the lab sees, not with every scenario.
    from . import _wire_anthropic, _wire_openai

    wires: Sequence[_Wire] = (_wire_openai, _wire_anthropic)
    path = request.url.path
    for wire in wires:
        if wire.is_call(request.method, path, request.headers):
            return wire
    return None


# --- serving one request -----------------------------------------------------------------------


def _serve(
    module: ModuleType, original_sync: Callable[..., Any], llm: MockLLM, wire: _Wire, request: Any
) -> Any:
    from ._wire import json_response
    from .cassette import RecordedResponse
    from .recorded import RecordedLLM, secrets_in_headers

    body = json.loads(request.content or b"{}")
    call = wire.parse_request(body)
    index = len(llm.requests) + 1
    try:
        if isinstance(llm, RecordedLLM):
            for secret in secrets_in_headers(request.headers):
                llm.add_secret(secret)

            def live() -> RecordedResponse:
                return _live(module, original_sync, wire, request, body, call)

            response = llm.serve(call, live)
            recorded = llm.last_recorded
        else:
            response = _complete(llm, call)
            recorded = None
    except _LiveFailed as failed:
        return failed.response
    except LLMError as exc:
        rendered = wire.render_error(exc.kind.value, str(exc))
    except MockLLMError as exc:
        # A test failure, not a provider one: the SDK must not retry it.
        rendered = json_response(
            400,
            {"error": {"message": str(exc), "type": "pytest_loom_error"}, "type": "error"},
            {"x-should-retry": "false"},
        )
    else:
        answer = RecordedResponse(
            text=response.text,
            tool_calls=response.tool_calls,
            model=recorded.model if recorded else call.model,
            finish=recorded.finish if recorded else "",
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
        )
        rendered = wire.render(answer, call, call_id=f"loom{index}", created=int(time.time()))
    return module.Response(
        rendered.status, headers=rendered.headers, content=rendered.body, request=request
    )


def _complete(llm: MockLLM, call: RecordedRequest) -> Response:
    """Serve an SDK call from a plain mock's script."""
    from .cassette import content_text

    params = dict(call.params)
    max_tokens = params.pop("max_tokens", None) or params.pop("max_completion_tokens", None)
    messages = [
        {"role": str(m.get("role", "user")), "content": content_text(m.get("content"))}
        for m in call.messages
    ]
    return llm.complete(
        messages, model=call.model, tools=list(call.tools), max_tokens=max_tokens, **params
    )


def _live(
    module: ModuleType,
    original_sync: Callable[..., Any],
    wire: _Wire,
    request: Any,
    body: Any,
    call: RecordedRequest,
) -> RecordedResponse:
    """Send the request to the real provider (blocking, also from async code) and parse it."""
    content = json.dumps(wire.live_body(body)).encode()
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
    sent = module.Request(
        request.method, request.url, headers=headers, content=content, extensions=request.extensions
    )
    transport = module.HTTPTransport()
    started = real_perf_counter()
    try:
        answer = original_sync(transport, sent)
        raw = answer.read()
    finally:
        transport.close()
    latency = round(real_perf_counter() - started, 3)
    if not 200 <= answer.status_code < 300:
        kept = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        }
        raise _LiveFailed(
            module.Response(answer.status_code, headers=kept, content=raw, request=request)
        )
    return dataclasses.replace(wire.parse_response(raw, stream=call.stream), latency_s=latency)
