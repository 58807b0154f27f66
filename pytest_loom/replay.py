"""Replay: re-execute the current code against a recorded run, and say where it diverges.

A recorded run is a :class:`~pytest_loom.RunRecord`: a scenario's committed snapshot, or a run
the lab saved (``loom replay``). Its steps before ``from_step`` are answered from the recording,
call by call: the recorded reply, usage, cost and latency, without asking the mock LLM or the
provider. The code must ask for the same things in the same order (the same request digests);
the first request that differs fails the run with a :class:`DivergenceError` naming the step,
the call and the prompt diff. From ``from_step`` on, the loop runs against the lab's LLM as
usual: the mock, a cassette, or (in a record mode) the provider. This is the semantics of
Temporal's replayer (the prefix must be deterministic) and of forking a recorded run at a step.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._toolresults import servable
from .llm import MockLLMError, Request
from .record import LLMCall, RunRecord, StopReason, ToolCall
from .script import LLMErrorKind, Turn


class DivergenceError(MockLLMError):
    """The code asked for something other than what the recorded run holds at this point."""

    def __init__(
        self, message: str, *, step: int, call: int | None = None, tool: int | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.call = call
        """The LLM call of the step that diverged (``None``: a tool call or the step's end)."""
        self.tool = tool
        """The tool call of the step that diverged, if it was one."""


@dataclass(slots=True)
class Replay:
    """A recorded run being replayed, with how far (``from_step``: the first step run anew).

    Without ``from_step`` every recorded step is replayed; a loop that goes on past them (the
    recording stopped at a crash) runs the rest against the lab's LLM.
    """

    recording: RunRecord
    source: str
    """Where the recording came from, as error messages show it."""
    from_step: int | None = None
    hint: str = "update the recording, or replay only the steps before this one"
    """What to do about a divergence, in the caller's terms (an option, a command)."""
    _calls: dict[int, tuple[LLMCall, ...]] = field(init=False)
    _tools: dict[int, tuple[ToolCall, ...]] = field(init=False)
    _taken: dict[int, int] = field(init=False, default_factory=dict)
    _tools_taken: dict[int, int] = field(init=False, default_factory=dict)
    diverged: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.from_step is not None and self.from_step < 1:
            raise ValueError(f"replay from step {self.from_step}: steps are numbered from 1")
        self._calls = {step.index: step.llm_calls for step in self.recording.steps}
        self._tools = {step.index: step.tool_calls for step in self.recording.steps}

    @property
    def until(self) -> int:
        """The last step answered from the recording (0: none)."""
        last = max(self._calls, default=0)
        return last if self.from_step is None else min(last, self.from_step - 1)

    def covers(self, step: int | None) -> bool:
        return step is not None and 0 < step <= self.until

    def take(self, request: Request, step: int) -> Turn:
        """The recorded reply to ``request``, the next LLM call of ``step``; or diverge."""
        recorded = self._calls.get(step, ())
        n = self._taken.get(step, 0) + 1
        if n > len(recorded):
            self._diverge(
                step,
                f"step {step} asks for LLM call {n}, but the recorded run made "
                f"{_calls(len(recorded))} in that step\n  the request: model {request.model!r}, "
                f"prompt {_clip(request.last_user_message)!r}",
                call=n,
            )
        call = recorded[n - 1]
        if call.request_digest != request.digest:
            self._diverge(step, _request_diff(call, request), call=n)
        self._taken[step] = n
        return Turn(
            text=call.text,
            tool_calls=call.tool_calls,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            latency_s=call.latency_s,
            cost_usd=call.cost_usd,
            error=LLMErrorKind(call.error) if call.error else None,
        )

    def take_tool(self, name: str, args: Mapping[str, Any], step: int) -> ToolCall | None:
        """The recorded call that the next tool call of ``step`` gives back, or ``None`` when
        the recording does not hold its result (the tool runs again); or diverge."""
        recorded = self._tools.get(step, ())
        n = self._tools_taken.get(step, 0) + 1
        if n > len(recorded):
            self._diverge(
                step,
                f"step {step} calls {name}({_args(args)}) as tool call {n}, but the recorded "
                f"run made {_tool_calls(len(recorded))} in that step",
                tool=n,
            )
        call = recorded[n - 1]
        if (call.name, _plain(call.args)) != (name, _plain(args)):
            self._diverge(
                step,
                f"the recorded run called {call.name}({_args(call.args)}), "
                f"this run {name}({_args(args)})",
                tool=n,
            )
        self._tools_taken[step] = n
        return call if servable(call) else None

    def carry(self, other: Replay) -> None:
        """Take over how far ``other`` got (the same replay, run on in another process)."""
        self._taken = dict(other._taken)
        self._tools_taken = dict(other._tools_taken)
        self.diverged = other.diverged

    def problems(self, record: RunRecord) -> list[str]:
        """How the finished run departs from the replayed part of the recording (tool calls,
        missing steps, calls left unasked), beyond a divergence already raised."""
        if self.diverged:
            return []
        steps = {step.index: step for step in record.steps}
        for old in self.recording.steps:
            if old.index > self.until:
                break
            new = steps.get(old.index)
            if new is None:
                return [
                    self._message(
                        f"the run ended after {_steps(record.totals.steps)} "
                        f"({record.stop.label}) without step {old.index}, but the recorded run "
                        f"went on to step {self.until} ({self.recording.stop.label})",
                        step=old.index,
                    )
                ]
            asked = self._taken.get(old.index, 0)
            if asked < len(old.llm_calls):
                return [
                    self._message(
                        f"step {old.index} made {_calls(asked)}, but the recorded run made "
                        f"{_calls(len(old.llm_calls))} in that step; the next recorded call "
                        f"asked {_clip(old.llm_calls[asked].prompt)!r}",
                        step=old.index,
                    )
                ]
            if (difference := _tool_difference(old.tool_calls, new.tool_calls)) is not None:
                return [self._message(f"step {old.index}: {difference}", step=old.index)]
        return []

    def _diverge(
        self, step: int, detail: str, *, call: int | None = None, tool: int | None = None
    ) -> None:
        self.diverged = True
        message = self._message(detail, step=step, call=call, tool=tool)
        raise DivergenceError(message, step=step, call=call, tool=tool)

    def _message(
        self, detail: str, *, step: int, call: int | None = None, tool: int | None = None
    ) -> str:
        where = f"at step {step}"
        if call is not None:
            where += f", LLM call {call}"
        if tool is not None:
            where += f", tool call {tool}"
        return (
            f"replay diverged {where} from the recorded run {self.source}:\n  {detail}\n"
            f"  hint: {self.hint.format(step=step)}"
        )


def resume_point(recording: RunRecord) -> int | None:
    """The step a crashed recorded run stopped at (it is paused there), else ``None``."""
    if recording.stop.reason is not StopReason.PAUSED:
        return None
    return max((step.index for step in recording.steps), default=0) + 1


def _request_diff(call: LLMCall, request: Request) -> str:
    lines = []
    if call.model != request.model:
        lines.append(f"model: {call.model!r} -> {request.model!r}")
    prompt = request.last_user_message
    if call.prompt != prompt:
        lines.append("prompt (the last user message), recorded -> now:")
        diff = difflib.unified_diff(
            call.prompt.splitlines(), prompt.splitlines(), "recorded", "now", lineterm="", n=2
        )
        lines += ["  " + line for line in diff]
    elif call.model == request.model:
        lines.append(
            "the prompt (the last user message) and the model are unchanged: an earlier "
            "message or the tools offered differ"
        )
    lines.append(f"request digest: {call.request_digest} -> {request.digest}")
    return "the request differs from the recorded one\n" + "\n".join("  " + x for x in lines)


def _tool_difference(old: tuple[ToolCall, ...], new: tuple[ToolCall, ...]) -> str | None:
    for i, (a, b) in enumerate(zip(old, new, strict=False), start=1):
        if (a.name, _plain(a.args)) != (b.name, _plain(b.args)):
            return (
                f"tool call {i} differs: the recorded run called {a.name}({_args(a.args)}), "
                f"this run {b.name}({_args(b.args)})"
            )
        if (a.status, a.result_digest) != (b.status, b.result_digest):
            return (
                f"tool call {i}, {a.name}({_args(a.args)}), returned something else: "
                f"{a.status} {a.result_digest} recorded, {b.status} {b.result_digest} now"
            )
    if len(old) != len(new):
        return f"the recorded run made {len(old)} tool calls in that step, this run {len(new)}"
    return None


def _plain(args: Mapping[str, Any]) -> Any:
    return {key: args[key] for key in sorted(args)}


def _args(args: Mapping[str, Any]) -> str:
    return _clip(", ".join(f"{key}={value!r}" for key, value in sorted(args.items())), 60)


def _tool_calls(n: int) -> str:
    return f"{n} tool call" + ("" if n == 1 else "s")


def _calls(n: int) -> str:
    return f"{n} LLM call" + ("" if n == 1 else "s")


def _steps(n: int) -> str:
    return f"{n} step" + ("" if n == 1 else "s")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
