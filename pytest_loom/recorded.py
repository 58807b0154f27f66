"""The recorded LLM: a :class:`~pytest_loom.MockLLM` that answers SDK calls from a cassette.

Calls that reach it through the provider SDKs (see :mod:`pytest_loom.intercept`) are matched
against the cassette and replayed; in a record mode, calls it cannot replay go to the real
provider and are recorded. Either way it books each call like the mock does (tokens, cost from
the pricing table, latency on the fake clock, listeners), so run records, budgets and every
runtime adapter see a replayed call exactly as they see a scripted one. Calls made directly
(``ctx.llm.complete``) are served by its script (turns and rules), as on a plain mock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .cassette import (
    Cassette,
    RecordedCall,
    RecordedRequest,
    RecordedResponse,
    content_text,
    load_cassette,
    shown_path,
    write_cassette,
)
from .llm import (
    LLMError,
    MockLLM,
    Request,
    Response,
    UnconsumedTurnsError,
    UnmatchedRequestError,
    _Choice,
)
from .matching import IgnoreRule, describe_unused, explain_miss, match_key
from .recordmode import RECORD_FLAG, RecordMode
from .script import Turn

__all__ = ["CassetteMismatchError", "LiveCall", "RecordedLLM", "UnusedRecordingsError"]

LiveCall = Callable[[], RecordedResponse]
"""Sends the request to the real provider and returns its answer (record modes only)."""

_SECRET_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID")


class CassetteMismatchError(UnmatchedRequestError):
    """An SDK request that no recorded call matches, in a mode that may not record it."""

    def __init__(self, message: str, *, request: Request, stale: str | None = None) -> None:
        super().__init__(message, request=request)
        self.stale = stale


class UnusedRecordingsError(UnconsumedTurnsError):
    """Recorded calls that no request used (or scripted turns, as on the mock)."""


class RecordedLLM(MockLLM):
    """A mock LLM whose SDK calls are replayed from (and, recording, written to) a cassette.

    ``mode`` is a :class:`~pytest_loom.RecordMode`; ``ignore`` lists
    :class:`~pytest_loom.IgnoreRule` objects applied when matching. Other keyword arguments
    are :class:`MockLLM`'s (pricing, model, latency_s, strict, allow_unused, clock). A corrupt
    cassette raises :class:`~pytest_loom.CassetteError` here, in every mode but ``rewrite``.
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str],
        *,
        mode: RecordMode | str = RecordMode.NONE,
        ignore: Iterable[IgnoreRule] = (),
        turns: Sequence[Turn] = (),
        rules: Sequence[Any] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(turns, rules, **kwargs)
        self.path = Path(cassette)
        self.mode = RecordMode.parse(mode, source="RecordedLLM(mode=...)")
        self.ignore = tuple(ignore)
        self.existed = self.path.is_file()
        recorded: tuple[RecordedCall, ...] = ()
        if self.mode is not RecordMode.REWRITE and self.existed:
            recorded = load_cassette(self.path).calls
        self._recorded = list(recorded)
        self._used = [False] * len(recorded)
        self._fresh: list[RecordedCall] = []
        self._replaced: dict[int, RecordedCall] = {}
        self._stale: list[str] = []
        self._secrets: set[str] = set()
        self._pending: tuple[RecordedRequest, LiveCall | None] | None = None
        self.last_recorded: RecordedResponse | None = None
        """The recorded response the last SDK call was served from (for rendering it)."""

    def __repr__(self) -> str:
        return (
            f"<RecordedLLM {self.path.name} mode={self.mode.value}"
            f" recorded={len(self._recorded)} new={len(self._fresh)}>"
        )

    @property
    def recorded_calls(self) -> list[RecordedCall]:
        """The calls the cassette held when it was opened, in order (a copy)."""
        return list(self._recorded)

    @property
    def new_calls(self) -> list[RecordedCall]:
        """The calls recorded from the real provider during this run (a copy)."""
        return list(self._fresh)

    @property
    def records(self) -> bool:
        """Whether a request may go to the real provider in this mode."""
        if self.mode is RecordMode.NONE:
            return False
        return not (self.mode is RecordMode.ONCE and self.existed)

    @property
    def replays(self) -> bool:
        """Whether requests are answered from the recorded calls in this mode."""
        return self.mode in (RecordMode.NONE, RecordMode.ONCE, RecordMode.NEW_EPISODES)

    def add_secret(self, value: str) -> None:
        """Never write ``value`` (an API key, a header) into the cassette."""
        if value:
            self._secrets.add(value)

    def serve(self, request: RecordedRequest, live: LiveCall | None = None) -> Response:
        """Answer an SDK request: replay it, or (recording) ask ``live`` and record the answer.

        Raises :class:`LLMError` for a simulated provider error (an ``llm_error`` fault) and
        :class:`CassetteMismatchError` when the request can be neither replayed nor recorded.
        """
        __tracebackhide__ = True
        self._pending = (request, live)
        self.last_recorded = None
        params = dict(request.params)
        max_tokens = params.pop("max_tokens", None) or params.pop("max_completion_tokens", None)
        messages = [
            {"role": str(m.get("role", "user")), "content": content_text(m.get("content"))}
            for m in request.messages
        ]
        try:
            outcome = self._serve(messages, request.model, list(request.tools), max_tokens, params)
        finally:
            self._pending = None
        if isinstance(outcome, LLMError):
            raise outcome
        return outcome

    def _choose(self, request: Request, index: int) -> _Choice:
        __tracebackhide__ = True
        if self._pending is None or index in self._injected:
            return super()._choose(request, index)
        call, live = self._pending
        if self.replays:
            found = self._find(call)
            if found is not None:
                self._used[found] = True
                self.last_recorded = self._recorded[found].response
                return _Choice(_turn(self.last_recorded), f"replayed recorded call {found + 1}")
        if self.records and live is not None:
            response = live()
            fresh = RecordedCall(call, response, step=self.step)
            if (
                self.mode is RecordMode.ALL
                and (old := self._find(call, replaced=False)) is not None
            ):
                self._replaced[old] = fresh
                self._used[old] = True
            else:
                self._fresh.append(fresh)
            self.last_recorded = response
            return _Choice(_turn(response), "recorded from the provider")
        if self.replay is not None and self.replay.from_step is not None and self.scripted:
            # Replaying from step N: what the cassette does not hold, the mock script answers.
            return super()._choose(request, index)
        message, stale = explain_miss(
            where=shown_path(self.path),
            index=index,
            step=self.step,
            request=call,
            calls=self._recorded,
            used=self._used,
            ignore=self.ignore,
            hint=self._hint(),
        )
        if stale is not None:
            self._stale.append(stale)
        raise CassetteMismatchError(message, request=request, stale=stale)

    def _shadow(self, request: Request, index: int) -> _Choice | None:
        if self._pending is None or index in self._injected:
            return super()._shadow(request, index)
        found = self._find(self._pending[0])  # never the provider: a replayed call costs nothing
        if found is not None:
            self._used[found] = True
        return None

    def _find(self, call: RecordedRequest, *, replaced: bool = True) -> int | None:
        key = match_key(call, self.ignore)
        for i, recorded in enumerate(self._recorded):
            if self._used[i] or (not replaced and i in self._replaced):
                continue
            if match_key(recorded.request, self.ignore) == key:
                return i
        return None

    def _hint(self) -> str:
        if not self.existed and self.mode is RecordMode.NONE:
            return (
                f"the cassette does not exist yet: record it with {RECORD_FLAG}=once"
                " (replay is offline: a real call needs a record mode)"
            )
        return (
            f"if the change is intended, re-record with pytest {RECORD_FLAG}=rewrite (or"
            f" {RECORD_FLAG}=new_episodes to record only the new calls); if part of the prompt"
            " varies between runs (a date, an id), add an ignore rule"
        )

    def verify(self) -> None:
        """Fail on unused scripted turns (as the mock does), then on unused recorded calls.

        Recorded calls only count as unused in the modes that replay. ``allow_unused=True``
        allows both.
        """
        __tracebackhide__ = True
        super().verify()
        if self._allow_unused or not self.replays:
            return
        unused = describe_unused(self._recorded, self._used)
        if not unused:
            return
        count = len(unused)
        lines = [
            f"cassette {shown_path(self.path)}: {count} recorded call{'s' * (count != 1)}"
            f" never used after {len(self.requests)} request{'s' * (len(self.requests) != 1)}:",
            *unused,
        ]
        if self._stale:
            lines.append("the recording is stale: " + "; ".join(dict.fromkeys(self._stale)))
        lines += [
            "the loop asked for less than was recorded, or for something else",
            f"to fix: re-record with {RECORD_FLAG}=rewrite, or use allow_unused if stopping"
            " early is expected",
        ]
        raise UnusedRecordingsError("\n".join(lines), turns=())

    def save(self) -> bool:
        """Write the cassette if this run recorded anything; returns whether it wrote."""
        if not self.records:
            return False
        if not self._fresh and not self._replaced and self.mode is not RecordMode.REWRITE:
            return False
        calls = [self._replaced.get(i, old) for i, old in enumerate(self._recorded)]
        calls += self._fresh
        secrets = self._secrets | {os.environ.get(name, "") for name in _SECRET_ENV}
        write_cassette(self.path, Cassette(tuple(calls)), secrets=secrets)
        return True


def _turn(response: RecordedResponse) -> Turn:
    return Turn(
        text=response.text,
        tool_calls=response.tool_calls,
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        latency_s=response.latency_s,
    )


def secrets_in_headers(headers: Mapping[str, str]) -> list[str]:
    """Header values that must never be written: keys, tokens, organisation and project ids."""
    found = []
    for name in ("authorization", "x-api-key", "openai-organization", "openai-project", "api-key"):
        value = headers.get(name)
        if value:
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic"):
                found.append(token)
    return found
