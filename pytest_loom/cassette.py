"""Cassettes: recorded LLM calls, kept as readable YAML and replayed offline.

A cassette is LLM-level, not HTTP bytes: each call is the request as the lab normalised it
(provider, model, messages, tools, parameters) and the response (text, tool calls, usage,
latency), with the loop step it happened in. No header is ever stored, so API keys,
authorization headers and organisation ids cannot land in one; as a second line of defence the
writer blanks any secret it was told about. Files are versioned (:data:`CASSETTE_VERSION`),
written atomically, and end with YAML's ``...`` end-of-document line, so a truncated file is
told from a short one. Reading is strict: a corrupt, truncated or unknown-version file is a
:class:`CassetteError` naming the file and what is wrong, never a silent re-record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ._atomic import write_atomic
from .record import ToolCallRequest

__all__ = [
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteError",
    "RecordedCall",
    "RecordedRequest",
    "RecordedResponse",
    "dump_cassette",
    "load_cassette",
    "write_cassette",
]

CASSETTE_VERSION = 1
"""Bumped whenever the cassette format gains, loses or redefines a field."""

_END = "...\n"
_HEADER = (
    "# pytest-loom cassette: recorded LLM calls, replayed offline (see docs/replay.md).\n"
    "# Re-record with: pytest --loom-record=rewrite. Keys and headers are never stored.\n"
)
REDACTED = "<redacted>"
PROVIDERS = ("openai", "anthropic")


class CassetteError(Exception):
    """A cassette that cannot be used: which file, what is wrong, what to do."""

    def __init__(self, path: Path, problem: str, hint: str | None = None) -> None:
        super().__init__(path, problem, hint)
        self.path = path
        self.problem = problem
        self.hint = hint

    def __str__(self) -> str:
        text = f"cassette {shown_path(self.path)}: {self.problem}"
        return text + (f"\n  hint: {self.hint}" if self.hint else "")


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request, normalised: what matching looks at (``params`` and ``stream`` aside)."""

    provider: str
    model: str
    messages: tuple[Mapping[str, Any], ...]
    tools: tuple[Mapping[str, Any], ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False

    @property
    def last_user_message(self) -> str:
        """The text of the last ``user`` message (what run records show as the prompt)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return content_text(message.get("content"))
        return ""


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    """What the provider answered, as the run record and the SDK response need it."""

    text: str = ""
    tool_calls: tuple[ToolCallRequest, ...] = ()
    model: str = ""
    """The model name the provider reported (often dated, e.g. ``gpt-4o-2024-08-06``)."""
    finish: str = ""
    """The provider's own stop reason (``stop``, ``tool_calls``, ``end_turn``, ...)."""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One recorded call and the loop step it happened in (``None`` when not known)."""

    request: RecordedRequest
    response: RecordedResponse
    step: int | None = None


@dataclass(frozen=True, slots=True)
class Cassette:
    calls: tuple[RecordedCall, ...] = ()
    version: int = CASSETTE_VERSION


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its parts, joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                inner = part.get("text", part.get("content"))
                parts.append(content_text(inner) if inner is not None else "")
        return "".join(parts)
    return str(content)


# --- writing ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings as ``|`` blocks, so prompts read as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def yaml_text(value: Any) -> str:
    """``value`` as block YAML, keys in their order, multi-line strings as ``|`` blocks."""
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )


def _call_data(call: RecordedCall) -> dict[str, Any]:
    request, response = call.request, call.response
    req: dict[str, Any] = {
        "provider": request.provider,
        "model": request.model,
        "stream": request.stream,
        "messages": [dict(m) for m in request.messages],
    }
    if request.tools:
        req["tools"] = [dict(t) for t in request.tools]
    if request.params:
        req["params"] = dict(request.params)
    resp: dict[str, Any] = {"model": response.model, "finish": response.finish}
    resp["text"] = response.text
    if response.tool_calls:
        resp["tool_calls"] = [
            {"id": c.id, "name": c.name, "args": dict(c.args)} for c in response.tool_calls
        ]
    resp["usage"] = {"input": response.input_tokens, "output": response.output_tokens}
    resp["latency"] = response.latency_s
    return {"step": call.step, "request": req, "response": resp}


def dump_cassette(cassette: Cassette, *, secrets: Iterable[str] = ()) -> str:
    """The cassette's text: a comment header, the calls, and the ``...`` end line.

    Any of ``secrets`` (at least 8 characters long) that appears anywhere is replaced by
    ``<redacted>``.
    """
    data = {"version": cassette.version, "calls": [_call_data(c) for c in cassette.calls]}
    text = _HEADER + yaml_text(data) + _END
    for secret in sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def write_cassette(path: Path, cassette: Cassette, *, secrets: Iterable[str] = ()) -> None:
    """Write ``cassette`` to ``path`` atomically: readers see the old file or the new one."""
    write_atomic(path, dump_cassette(cassette, secrets=secrets).encode(), fsync=True)


# --- reading ----------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_cassette(path: Path) -> Cassette:
    """Read and check the cassette at ``path``; every problem is a :class:`CassetteError`."""
    hint = "re-record it with --loom-record=rewrite, or restore it from version control"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CassetteError(
            path, "no such file", "record it with: pytest --loom-record=once"
        ) from None
    except UnicodeDecodeError as exc:
        raise CassetteError(path, f"not UTF-8 text ({exc.reason})", hint) from None
    except OSError as exc:
        raise CassetteError(path, f"cannot read the file: {exc.strerror or exc}") from None
    if not text.strip():
        raise CassetteError(path, "the file is empty", hint)
    if not text.endswith("\n" + _END):
        raise CassetteError(
            path,
            "truncated: it does not end with the `...` line every cassette ends with"
            " (an interrupted write, or a bad merge?)",
            hint,
        )
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CassetteError(path, f"{where}not valid YAML ({problem})", hint) from None
    try:
        return _cassette(data)
    except _Bad as bad:
        where = f"{bad.key}: " if bad.key else ""
        raise CassetteError(path, where + bad.problem, hint) from None


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _get(
    data: Mapping[str, Any], key: str, where: str, check: Callable[[Any], bool], what: str
) -> Any:
    path = f"{where}.{key}" if where else key
    if key not in data:
        raise _Bad(path, f"missing; expected {what}")
    value = data[key]
    if not check(value):
        raise _Bad(path, f"expected {what}, got {_kind(value)} {value!r:.60}")
    return value


def _keys(data: Any, where: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise _Bad(where, f"expected a mapping, got {_kind(data)}")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise _Bad(where, f"unknown key {unknown[0]!r}; expected one of {', '.join(allowed)}")
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_list_of_maps(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _cassette(data: Any) -> Cassette:
    if data is None:
        raise _Bad("", "the file holds no YAML document")
    top = _keys(data, "", ("version", "calls"))
    version = top.get("version")
    if version != CASSETTE_VERSION:
        raise _Bad(
            "version",
            f"this pytest-loom reads cassette version {CASSETTE_VERSION},"
            f" the file says {version!r}",
        )
    calls = _get(top, "calls", "", lambda v: isinstance(v, list), "a list of calls")
    return Cassette(tuple(_call(c, f"calls[{i}]") for i, c in enumerate(calls)))


def _call(data: Any, where: str) -> RecordedCall:
    call = _keys(data, where, ("step", "request", "response"))
    step = call.get("step")
    if step is not None and (not _is_int(step) or step < 1):
        raise _Bad(f"{where}.step", f"expected null or a step number >= 1, got {step!r}")
    return RecordedCall(
        request=_request(_get(call, "request", where, lambda v: True, "a mapping"), where),
        response=_response(_get(call, "response", where, lambda v: True, "a mapping"), where),
        step=step,
    )


def _request(data: Any, where: str) -> RecordedRequest:
    where += ".request"
    req = _keys(data, where, ("provider", "model", "stream", "messages", "tools", "params"))
    provider = _get(req, "provider", where, lambda v: v in PROVIDERS, " or ".join(PROVIDERS))
    params = req.get("params", {})
    if not isinstance(params, dict):
        raise _Bad(f"{where}.params", f"expected a mapping, got {_kind(params)}")
    tools = req.get("tools", [])
    if not _is_list_of_maps(tools):
        raise _Bad(f"{where}.tools", "expected a list of tool schemas (mappings)")
    return RecordedRequest(
        provider=provider,
        model=_get(req, "model", where, _is_str, "a model name"),
        messages=tuple(_get(req, "messages", where, _is_list_of_maps, "a list of messages")),
        tools=tuple(tools),
        params=params,
        stream=bool(_get(req, "stream", where, lambda v: isinstance(v, bool), "true or false")),
    )


def _response(data: Any, where: str) -> RecordedResponse:
    where += ".response"
    allowed = ("model", "finish", "text", "tool_calls", "usage", "latency")
    resp = _keys(data, where, allowed)
    usage = _keys(
        _get(resp, "usage", where, lambda v: True, "{input, output}"),
        f"{where}.usage",
        ("input", "output"),
    )
    calls = resp.get("tool_calls", [])
    if not _is_list_of_maps(calls):
        raise _Bad(f"{where}.tool_calls", "expected a list of {id, name, args}")
    tool_calls = []
    for i, raw in enumerate(calls):
        at = f"{where}.tool_calls[{i}]"
        call = _keys(raw, at, ("id", "name", "args"))
        args = _get(call, "args", at, lambda v: isinstance(v, dict), "a mapping")
        tool_calls.append(
            ToolCallRequest(
                name=_get(call, "name", at, _is_str, "a tool name"),
                args=args,
                id=_get(call, "id", at, _is_str, "a tool-call id"),
            )
        )
    return RecordedResponse(
        text=_get(resp, "text", where, _is_str, "a string"),
        tool_calls=tuple(tool_calls),
        model=_get(resp, "model", where, _is_str, "a model name"),
        finish=_get(resp, "finish", where, _is_str, "a stop reason"),
        input_tokens=_get(usage, "input", f"{where}.usage", _is_int, "an integer >= 0"),
        output_tokens=_get(usage, "output", f"{where}.usage", _is_int, "an integer >= 0"),
        latency_s=float(_get(resp, "latency", where, _is_number, "seconds >= 0")),
    )
