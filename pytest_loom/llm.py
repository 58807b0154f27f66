"""The mock LLM: serves scripted replies so an agent loop runs the same way every time.

A loop under test talks to :class:`MockLLM` instead of a provider. It answers from scripted
:class:`~pytest_loom.script.Turn` objects in order, then from standing
:class:`~pytest_loom.script.Rule` objects; it prices each call, advances a fake clock by the
call's latency, simulates provider errors, and records every call as a
:class:`~pytest_loom.record.LLMCall`. It is a plain class, sync and async, usable without pytest.
A request nothing in the script answers fails loudly with :class:`UnmatchedRequestError`, which
says what was asked and why the nearest scripted entries did not match.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from . import _llm_errors
from .record import LLMCall, ToolCall, ToolCallRequest, digest, sum_usd
from .script import DEFAULT_PRICING, LLMErrorKind, Price, Rule, Turn

if TYPE_CHECKING:
    from .replay import Replay


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: str
    content: str

    @classmethod
    def of(cls, value: Message | Mapping[str, Any]) -> Message:
        """A message from itself or an OpenAI-style ``{"role": ..., "content": ...}`` dict.

        ``content`` may be ``None`` (read as ``""``) or a list of parts, whose text is joined.
        """
        if isinstance(value, Message):
            return value
        # dict first: it is what callers pass, and the Mapping check costs more.
        if not isinstance(value, dict | Mapping) or not isinstance(value.get("role"), str):
            raise TypeError(f"a message must be a Message or a dict with a 'role', got {value!r}")
        content = value.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list):
            content = "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)
        elif not isinstance(content, str):
            raise TypeError(f"message content must be text, got {content!r}")
        return cls(value["role"], content)


Messages: TypeAlias = str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]
"""What :meth:`MockLLM.complete` accepts: one user message as text, or a list of messages."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the mock saw it, with the model already resolved."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[str, ...] = ()
    max_tokens: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def last_user_message(self) -> str:
        """The content of the last ``user`` message, ``""`` if there is none."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""

    @property
    def digest(self) -> str:
        """A stable digest of what was asked (model, messages, tools); sampling params excluded."""
        messages = [{"role": m.role, "content": m.content} for m in self.messages]
        return digest({"model": self.model, "messages": messages, "tools": list(self.tools)})


@dataclass(frozen=True, slots=True)
class Response:
    """The mock's answer to one request."""

    text: str
    tool_calls: tuple[ToolCallRequest, ...]
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float


class SupportsAdvance(Protocol):
    """A fake clock: anything that can be moved forward by some seconds."""

    def advance(self, seconds: float) -> None: ...


class LLMError(Exception):
    """A simulated provider failure. Loops are expected to catch it (retry, back off, give up)."""

    def __init__(
        self, message: str, *, kind: LLMErrorKind, call_index: int, request: Request
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.call_index = call_index
        """1-based position of the failed request among all requests the mock received."""
        self.request = request


class RateLimitError(LLMError):
    """Simulated HTTP 429."""


class LLMTimeoutError(LLMError):
    """Simulated request timeout."""


class ServerError(LLMError):
    """Simulated HTTP 5xx."""


class MalformedToolCallError(LLMError):
    """Simulated tool call the provider returned but that could not be parsed."""


_ERROR_TYPES: dict[LLMErrorKind, type[LLMError]] = {
    LLMErrorKind.RATE_LIMIT: RateLimitError,
    LLMErrorKind.TIMEOUT: LLMTimeoutError,
    LLMErrorKind.SERVER_ERROR: ServerError,
    LLMErrorKind.MALFORMED_TOOL_CALL: MalformedToolCallError,
}


class MockLLMError(AssertionError):
    """The script and the code under test disagree: a test failure, not a provider failure."""


class UnmatchedRequestError(MockLLMError):
    """A request that no scripted turn or rule answers (with ``strict=True``)."""

    def __init__(self, message: str, *, request: Request) -> None:
        super().__init__(message)
        self.request = request


class UnconsumedTurnsError(MockLLMError):
    """Scripted turns (or injected errors) that no request ever reached."""

    def __init__(self, message: str, *, turns: Sequence[Turn]) -> None:
        super().__init__(message)
        self.turns = tuple(turns)


class PricingError(MockLLMError):
    """A call to a model with no known price and no explicit cost on the turn."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


@dataclass(slots=True)
class _Choice:
    """The reply picked for a request, and where it came from (so it can be consumed)."""

    turn: Turn
    source: str
    turn_index: int | None = None
    rule_index: int | None = None


class MockLLM:
    """A deterministic stand-in for a chat-completion API.

    Each request is answered by the next scripted turn if it accepts the request, else by the
    first rule that does and has uses left; else it raises :class:`UnmatchedRequestError`
    (``strict=True``) or gets an empty reply. Turns are consumed strictly in order.
    """

    def __init__(
        self,
        turns: Sequence[Turn] = (),
        rules: Sequence[Rule] = (),
        *,
        pricing: Mapping[str, Price] | None = None,
        model: str = "gpt-4o",
        latency_s: float = 0.0,
        strict: bool = True,
        allow_unused: bool = False,
        clock: SupportsAdvance | None = None,
    ) -> None:
        for name, items, kind in (("turns", turns, Turn), ("rules", rules, Rule)):
            for i, item in enumerate(items):
                if not isinstance(item, kind):
                    raise TypeError(f"MockLLM({name}[{i}]={item!r}): expected a {kind.__name__}")
        if isinstance(latency_s, bool) or latency_s < 0:
            raise ValueError(f"MockLLM(latency_s={latency_s!r}): must be a number >= 0")
        self._turns = list(turns)
        self._rules = list(rules)
        self._pricing: dict[str, Price] = {**DEFAULT_PRICING, **(pricing or {})}
        self._model = model
        self._latency_s = latency_s
        self._strict = strict
        self._allow_unused = allow_unused
        self._clock = clock
        self._cursor = 0
        self._uses_left: list[int | None] = [rule.times for rule in self._rules]
        self._injected: dict[int, LLMErrorKind] = {}
        self._listeners: list[Callable[[LLMCall], None]] = []
        self._requests: list[Request] = []
        self._calls: list[LLMCall] = []
        self._script_errors: list[MockLLMError] = []
        self.step: int | None = None
        """The loop step requests now belong to, when the runtime says (``Lab.begin_step``)."""
        self._replay: Replay | None = None

    def __repr__(self) -> str:
        return (
            f"<MockLLM model={self._model!r} turns={self._cursor}/{len(self._turns)} served"
            f" rules={len(self._rules)} requests={len(self._requests)}>"
        )

    @property
    def requests(self) -> list[Request]:
        """Every request received, in order, including unmatched ones (a copy)."""
        return list(self._requests)

    @property
    def script_errors(self) -> list[MockLLMError]:
        """Script problems raised while serving (unmatched requests, missing prices), in order.

        Kept because a loop that catches every exception may swallow them; the lab reports them.
        """
        return list(self._script_errors)

    @property
    def calls(self) -> list[LLMCall]:
        """Every served call (errors included) as the run record sees it, in order (a copy)."""
        return list(self._calls)

    def complete(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[str | Mapping[str, Any]] = (),
        max_tokens: int | None = None,
        **params: Any,
    ) -> Response:
        """Answer one request from the script; raises :class:`LLMError` for a scripted failure."""
        __tracebackhide__ = True
        outcome = self._serve(messages, model, tools, max_tokens, params)
        if isinstance(outcome, LLMError):
            raise outcome
        return outcome

    async def acomplete(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        tools: Sequence[str | Mapping[str, Any]] = (),
        max_tokens: int | None = None,
        **params: Any,
    ) -> Response:
        """:meth:`complete`, awaitable; it yields to the event loop once, never really sleeps."""
        __tracebackhide__ = True
        outcome = self._serve(messages, model, tools, max_tokens, params)
        await asyncio.sleep(0)
        if isinstance(outcome, LLMError):
            raise outcome
        return outcome

    def inject_error(self, at_call: int, kind: LLMErrorKind | str) -> None:
        """Make request number ``at_call`` (1-based, counting every request) fail with ``kind``.

        The failure replaces serving: no turn or rule is used up, so a retry gets the reply the
        failed request would have got. A second injection at the same call replaces the first.
        """
        try:
            error_kind = LLMErrorKind(kind)
        except ValueError:
            known = ", ".join(repr(k.value) for k in LLMErrorKind)
            raise ValueError(f"inject_error(kind={kind!r}): expected one of {known}") from None
        if isinstance(at_call, bool) or not isinstance(at_call, int) or at_call < 1:
            raise ValueError(f"inject_error(at_call={at_call!r}): must be a whole number >= 1")
        if at_call <= len(self._requests):
            raise ValueError(
                f"inject_error(at_call={at_call}): request {at_call} was already served"
                f" ({len(self._requests)} so far); inject errors before the calls they affect"
            )
        self._injected[at_call] = error_kind

    def script(self, *items: Turn | Rule) -> MockLLM:
        """Append scripted turns (served in order after the existing ones) and rules."""
        for item in items:
            if isinstance(item, Turn):
                self._turns.append(item)
            elif isinstance(item, Rule):
                self._rules.append(item)
                self._uses_left.append(item.times)
            else:
                raise TypeError(f"MockLLM.script({item!r}): expected a Turn or a Rule")
        return self

    @property
    def scripted(self) -> bool:
        """Whether the script has turns or rules (an empty mock answers nothing)."""
        return bool(self._turns or self._rules)

    @property
    def replay(self) -> Replay | None:
        """The replay answering some steps from a recording, if any (:meth:`replaying`)."""
        return self._replay

    def replayed_tool(self, name: str, args: Mapping[str, Any]) -> ToolCall | None:
        """The recorded call a replayed step's next tool call gives back, if any.

        ``None`` outside the replayed steps, and when the recording does not hold the result
        (the tool then runs, and its result digest is compared after the run). A call that is
        not the recorded one raises :class:`~pytest_loom.replay.DivergenceError`."""
        replay = self._replay
        if replay is None or not replay.covers(self.step):
            return None
        assert self.step is not None
        try:
            return replay.take_tool(name, args, self.step)
        except MockLLMError as exc:
            self._script_errors.append(exc)
            raise

    def replaying(self, replay: Replay) -> None:
        """Answer the steps ``replay`` covers from its recording (see :mod:`pytest_loom.replay`).

        The script is used up as if it had answered them, so later steps get what they would
        have got in the recorded run.
        """
        self._replay = replay

    def add_listener(self, fn: Callable[[LLMCall], None]) -> None:
        """Call ``fn`` with the :class:`LLMCall` of every served request, failed ones too."""
        self._listeners.append(fn)

    def unconsumed(self) -> list[Turn]:
        """The scripted turns no request has reached yet, in order."""
        return list(self._turns[self._cursor :])

    def verify(self) -> None:
        """Raise :class:`UnconsumedTurnsError` if turns or injected errors were never reached.

        Does nothing with ``allow_unused=True``.
        """
        __tracebackhide__ = True
        if self._allow_unused:
            return
        pending = [(i + 1, t) for i, t in enumerate(self._turns) if i >= self._cursor]
        injected = sorted(self._injected.items())
        if pending or injected:
            message = _llm_errors.format_unconsumed(pending, injected, len(self._requests))
            raise UnconsumedTurnsError(message, turns=[t for _, t in pending])

    def _serve(
        self,
        messages: Messages,
        model: str | None,
        tools: Sequence[str | Mapping[str, Any]],
        max_tokens: int | None,
        params: dict[str, Any],
    ) -> Response | LLMError:
        """Everything but the raising and the yielding, shared by the sync and async calls."""
        __tracebackhide__ = True
        request = Request(
            model or self._model,
            _to_messages(messages),
            tuple(map(_tool_name, tools)) if tools else (),
            max_tokens,
            params,
        )
        self._requests.append(request)
        index = len(self._requests)
        last = request.last_user_message
        try:
            replay = self._replay
            if replay is not None and replay.covers(self.step):
                assert self.step is not None
                turn = replay.take(request, self.step)
                # The script is used up as in the recorded run, and its error messages name
                # the same source.
                used = self._shadow(request, index)
                source = f"replayed from step {self.step} of the recorded run"
                choice = _Choice(turn, source) if used is None else replace(used, turn=turn)
            else:
                choice = self._choose(request, index)
            turn = choice.turn
            cost = 0.0 if turn.error is not None else self._cost(request.model, turn)
        except MockLLMError as exc:
            self._script_errors.append(exc)
            raise
        if choice.turn_index is not None:
            self._cursor += 1
        if choice.rule_index is not None:
            left = self._uses_left[choice.rule_index]
            self._uses_left[choice.rule_index] = None if left is None else left - 1

        latency = self._latency_s if turn.latency_s is None else turn.latency_s
        if self._clock is not None and latency:
            self._clock.advance(latency)
        # A failed call used no tokens and got no reply.
        if turn.error is None:
            call = LLMCall(
                request.model,
                request.digest,
                turn.input_tokens,
                turn.output_tokens,
                cost,
                latency,
                last,
                turn.text,
                turn.tool_calls,
            )
        else:
            call = LLMCall(
                request.model, request.digest, 0, 0, cost, latency, last, "", (), turn.error.value
            )
        self._calls.append(call)
        for listener in self._listeners:
            listener(call)
        if turn.error is not None:
            message = (
                f"simulated {turn.error.value} on LLM request {index}"
                f" (model {request.model!r}), {choice.source}"
            )
            error_type = _ERROR_TYPES[turn.error]
            return error_type(message, kind=turn.error, call_index=index, request=request)
        return Response(
            text=turn.text,
            tool_calls=turn.tool_calls,
            model=request.model,
            input_tokens=turn.input_tokens,
            output_tokens=turn.output_tokens,
            cost_usd=cost,
            latency_s=latency,
        )

    def _choose(self, request: Request, index: int) -> _Choice:
        __tracebackhide__ = True
        if index in self._injected:
            kind = self._injected.pop(index)
            return _Choice(Turn(error=kind), f"injected by inject_error({index}, {kind.value!r})")
        matches, last = _llm_errors.matches, request.last_user_message
        if self._cursor < len(self._turns):
            turn = self._turns[self._cursor]
            if matches(turn.match, turn.model, request, last):
                return _Choice(turn, f"scripted by turn {self._cursor + 1}", self._cursor)
        for i, rule in enumerate(self._rules):
            if self._uses_left[i] != 0 and matches(rule.match, rule.reply.model, request, last):
                return _Choice(rule.reply, f"scripted by rule {i + 1}", rule_index=i)
        if not self._strict:
            return _Choice(Turn(cost_usd=0.0), "unmatched (strict=False)")
        message = _llm_errors.format_unmatched(
            request, index, self._turns, self._cursor, self._rules, self._uses_left
        )
        raise UnmatchedRequestError(message, request=request)

    def _shadow(self, request: Request, index: int) -> _Choice | None:
        """What the script would have answered a replayed request, to use it up."""
        try:
            return self._choose(request, index)
        except MockLLMError:
            return None

    def _cost(self, model: str, turn: Turn) -> float:
        __tracebackhide__ = True
        if turn.cost_usd is not None:
            return sum_usd(turn.cost_usd)
        price = self._pricing.get(model)
        if price is None:
            message = _llm_errors.format_pricing(model, self._pricing)
            raise PricingError(message, model=model)
        return sum_usd(
            turn.input_tokens * price.input / 1e6, turn.output_tokens * price.output / 1e6
        )


def _to_messages(messages: Messages) -> tuple[Message, ...]:
    if isinstance(messages, str):
        return (Message("user", messages),)
    if isinstance(messages, Message | Mapping):
        return (Message.of(messages),)
    return tuple(map(Message.of, messages))


def _tool_name(tool: str | Mapping[str, Any]) -> str:
    """A tool's name, from itself or an OpenAI/Anthropic-style schema dict."""
    if isinstance(tool, str):
        return tool
    if isinstance(tool, Mapping):
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
        if isinstance(name, str):
            return name
    raise TypeError(
        f"a tool must be a name or a schema dict with 'name' or 'function.name', got {tool!r}"
    )
