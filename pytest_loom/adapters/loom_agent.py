"""Drive loom-agent (PyPI ``loom-agent``, import name ``loom``) inside the lab.

loom-agent is a full agent framework: an ``Agent`` runs a REASON -> ACT -> OBSERVE -> DELTA loop
against an ``LLMProvider`` and keeps finished runs in a session store. It has no step
checkpoints, no per-step history and no spend accounting, so this adapter brings the pieces
together: the lab's mock LLM answers through loom-agent's provider seam (an ``LLMProvider``
returned by the private ``loom.agent._resolve_provider``, patched only while a phase runs),
loom-agent's own events (``after_llm``, ``before_tool``, ``tool_result``, ``run_error``) and
the provider's requests are appended to a trace file under ``lab.workdir`` as they happen (so
they survive a killed process), and the record is built from that trace, the session store
(``FileSessionStore``) and what the lab observed. One record step is one turn: one provider
request (with loom-agent's own retries of it) and the tools the reply asked for.

An entry point's ``build(lab)`` returns the user's ``Agent``, built with
``runtime=RuntimeConfig(limits=loom_agent_limits(lab))`` and
``session_store=loom_agent_store(lab)``. See docs/runtimes/loom-agent.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import loom.agent
from loom import Agent, FileSessionStore, RunContext, SessionConfig
from loom.config import RuntimeLimits
from loom.providers.base import CompletionRequest, CompletionResponse, LLMProvider, TokenUsage
from loom.runtime import RunResult
from loom.types import ToolCall as LoomToolCall

from .._toolresults import kept
from ..lab import Lab
from ..record import (
    BudgetLimit,
    Event,
    RunRecord,
    RuntimeInfo,
    Step,
    Stop,
    StopReason,
    ToolCall,
    digest,
    sum_usd,
    totals_of,
)
from ..runtimes import budget_error, build_entry, wrong_entry
from ..scenario import Scenario, ScenarioError

NAME = "loom-agent"
DIST = "loom-agent"

TRANSITIONS_PER_TURN = 4
"""loom-agent's ``max_iterations`` counts state transitions: a turn that runs tools takes four
(REASON, ACT, OBSERVE, DELTA), a final answer one."""

_UNENFORCEABLE = {
    "usd": "a spend limit",
    "tokens": "a token limit (max_context_tokens sizes the context window, it caps no spending)",
    "wall_clock": "a wall-clock limit",
}
_NON_EXCEPTION_FAILURES = ("provider_unavailable", "harness_failed")


def loom_agent_limits(lab: Lab) -> RuntimeLimits:
    """``RuntimeLimits`` for the scenario's budget: ``budget.iterations`` turns become
    ``max_iterations = 4 x turns`` transitions, so at most that many turns run, each in full."""
    turns = lab.budget.iterations
    return RuntimeLimits() if turns is None else RuntimeLimits(TRANSITIONS_PER_TURN * turns)


def loom_agent_store(lab: Lab) -> FileSessionStore:
    """The session store a scenario's agent keeps its sessions in, under ``lab.workdir``."""
    return FileSessionStore(lab.workdir / "loom-agent" / "sessions.json")


class LabProvider(LLMProvider):  # type: ignore[misc]  # loom-agent ships no types
    """loom-agent's provider seam answered by the lab's mock LLM.

    It keeps loom-agent's default retry and circuit-breaker settings (those of its own
    providers). Each turn's request first goes through ``on_turn`` (the step boundary); the
    health-check ``ping`` is answered here with an empty reply and never reaches the mock.
    """

    def __init__(self, lab: Lab, on_turn: Callable[[CompletionRequest], None]) -> None:
        super().__init__()
        self._lab = lab
        self._on_turn = on_turn

    async def complete_request(self, request: CompletionRequest) -> CompletionResponse:
        return await self._turn(request, super().complete_request)

    async def complete_request_streaming(
        self, request: CompletionRequest, on_token: Any | None = None
    ) -> CompletionResponse:
        return await self._turn(
            request, lambda r: super(LabProvider, self).complete_request_streaming(r, on_token)
        )

    async def _turn(
        self,
        request: CompletionRequest,
        complete: Callable[[CompletionRequest], Awaitable[CompletionResponse]],
    ) -> CompletionResponse:
        if "iteration" not in request.metadata:  # the provider health check
            return CompletionResponse()
        self._on_turn(request)
        return await complete(request)

    async def _complete_request(self, request: CompletionRequest) -> CompletionResponse:
        params = request.params
        reply = await self._lab.llm.acomplete(
            [{"role": m["role"], "content": _text(m.get("content"))} for m in request.messages],
            model=params.model,
            tools=[tool.name for tool in request.tools],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
        )
        return CompletionResponse(
            content=reply.text,
            tool_calls=[LoomToolCall(c.id, c.name, dict(c.args)) for c in reply.tool_calls],
            usage=TokenUsage(reply.input_tokens, reply.output_tokens),
        )


class LoomAgentRuntime:
    """Runs a scenario's loom-agent ``Agent`` in session ``scenario.id`` (see the module doc)."""

    name = NAME

    def __init__(self) -> None:
        self._step = 0
        self._result: RunResult | None = None
        self._tool_args: dict[str, Any] = {}

    def version(self) -> str:
        return version(DIST)

    def run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None:
        # loom-agent keeps its memory in ./.loom/memory: the CWD must be the test's directory.
        with contextlib.chdir(lab.workdir):
            self._run(scenario, lab, resume=resume)

    def _run(self, scenario: Scenario, lab: Lab, *, resume: bool) -> None:
        _check_budget(scenario)
        prompt, context = _task(scenario)
        agent = build_entry(scenario, lab)
        if not isinstance(agent, Agent):
            raise wrong_entry(scenario, agent, "a loom.Agent")
        store = _check_agent(scenario, lab, agent)
        trace = _Trace(lab, scenario)
        trace.write({"t": "phase", "resume": resume, "store": str(store.relative_to(lab.workdir))})
        self._result = None
        self._step = max((n for n, _, _ in lab.marks), default=1) - 1 if resume else 0
        first = self._step + 1

        def on_turn(request: CompletionRequest) -> None:
            if self._step >= first and lab.step_seconds:
                lab.clock.advance(lab.step_seconds)
            self._step += 1
            line = {
                "t": "request",
                "step": self._step,
                "iteration": request.metadata["iteration"],
                "messages": digest(_plain(request.messages)),
                "resumed": resume and self._step == first,
            }
            try:
                lab.begin_step(self._step)
            except Exception:  # a `raise` fault: the turn started and its request failed
                trace.write(line)
                raise
            trace.write(line)

        self._listen(agent, trace)
        provider = LabProvider(lab, on_turn)
        session = agent.session(SessionConfig(id=scenario.id))
        with _provider_seam(provider):
            self._result = asyncio.run(session.run(prompt, context=context))
        if self._step >= first and lab.step_seconds:
            lab.clock.advance(lab.step_seconds)

    def _listen(self, agent: Agent, trace: _Trace) -> None:
        """Append loom-agent's own events for the current step to the trace."""

        def after_llm(**event: Any) -> None:
            error, response = event.get("error"), event.get("response")
            if error is not None:
                trace.write({"t": "llm_error", "step": self._step, "error": _describe(error)})
            elif response is not None:
                calls = [
                    {"id": c.id, "name": c.name, "args": c.arguments} for c in response.tool_calls
                ]
                trace.write(
                    {"t": "reply", "step": self._step, "text": response.content, "calls": calls}
                )

        def before_tool(**event: Any) -> None:
            self._tool_args[event["tool_call_id"]] = event["arguments"]

        def tool_result(**event: Any) -> None:
            trace.write(
                {
                    "t": "tool",
                    "step": self._step,
                    "name": event["tool_name"],
                    "args": _plain(self._tool_args.pop(event["tool_call_id"], {})),
                    "ok": bool(event["success"]),
                    "result": _plain(event["result"]),
                }
            )

        def run_error(**event: Any) -> None:
            trace.write({"t": "run_error", "step": self._step, "error": _describe(event["error"])})

        agent.on("after_llm", after_llm)
        agent.on("before_tool", before_tool)
        agent.on("tool_result", tool_result)
        agent.on("run_error", run_error)

    def record(self, scenario: Scenario, lab: Lab) -> RunRecord:
        lines = _Trace(lab, scenario).read()
        requests = {line["step"]: line for line in lines if line["t"] == "request"}
        by_step: dict[int, list[dict[str, Any]]] = {}
        for line in lines:
            by_step.setdefault(line.get("step", 0), []).append(line)
        observed = lab.observed()
        steps: list[Step] = []
        spent = 0.0
        for n in sorted(n for n in observed if n in requests):
            seen, own = observed[n], by_step.get(n, [])
            usd = sum_usd(*(c.cost_usd for c in seen.llm_calls))
            spent = sum_usd(spent, usd)
            errors = [line["error"] for line in own if line["t"] in ("llm_error", "run_error")]
            events = [Event.RESUMED] if requests[n]["resumed"] else []
            events += [Event.RETRIED] * max(len(seen.llm_calls) - 1, 0)
            steps.append(
                Step(
                    index=n,
                    start_s=seen.start_s,
                    duration_s=seen.duration_s,
                    llm_calls=seen.llm_calls,
                    tool_calls=tuple(_tool_call(line) for line in own if line["t"] == "tool"),
                    input_tokens=sum(c.input_tokens for c in seen.llm_calls),
                    output_tokens=sum(c.output_tokens for c in seen.llm_calls),
                    cost_usd=usd,
                    cumulative_cost_usd=spent,
                    error=errors[-1] if errors else None,
                    state_digest=_state_digest(requests[n], own),
                    events=tuple(events),
                )
            )
        elapsed = max((o.end_s for o in observed.values()), default=0.0)
        return RunRecord(
            scenario=scenario.id,
            runtime=RuntimeInfo(NAME, self.version()),
            stop=self._stop(scenario, lab, lines),
            totals=totals_of(steps, elapsed),
            steps=tuple(steps),
            run_id=scenario.id,
        )

    def _stop(self, scenario: Scenario, lab: Lab, lines: list[dict[str, Any]]) -> Stop:
        """The stop from the run loom-agent stored last, with the caller's view beside it."""
        phases = [line for line in lines if line["t"] == "phase"]
        stored = None
        if phases:
            store = FileSessionStore(lab.workdir / phases[-1]["store"], create_dirs=False)
            runs = sorted(store.list_runs(scenario.id), key=lambda r: r.created_at)
            stored = runs[-1] if runs else None
        if stored is None:
            return Stop(
                StopReason.PAUSED,
                detail=f"loom-agent stored no finished run in session {scenario.id!r}: the "
                f"process stopped during step {max((n for n, _, _ in lab.marks), default=0)} "
                "(a run is saved only when it ends)",
            )
        state, message = stored.state, (stored.error or {}).get("message")
        caller = self._caller_view(state, message)
        raised = [line["error"] for line in lines if line["t"] in ("llm_error", "run_error")]
        if state == "completed" and message is None:
            return Stop(StopReason.COMPLETED, detail=caller)
        if message == "max_iterations":
            return Stop(
                StopReason.BUDGET_EXHAUSTED,
                limit=BudgetLimit.ITERATIONS,
                detail=caller or message,
                raw_status=state,
            )
        if message == "provider_error" and not raised:
            return Stop(
                StopReason.FAILED,
                error_type=message,
                detail=caller
                or "the reply began with 'Error:', which loom-agent takes for a "
                "provider error although no provider call failed",
                raw_status=state,
            )
        if message in _NON_EXCEPTION_FAILURES or not raised:
            return Stop(StopReason.FAILED, error_type=str(message), detail=caller, raw_status=state)
        return Stop(
            StopReason.FAILED,
            error_type=raised[-1].partition(":")[0],
            detail=caller or (message if message == "provider_error" else None),
            raw_status=state,
            raw_exception=raised[-1],
        )

    def _caller_view(self, state: str, message: str | None) -> str | None:
        """What ``session.run`` returned, when this instance ran and it says otherwise."""
        result = self._result
        if result is None:
            return None
        said = (result.error or {}).get("message")
        if result.state.value == state and said == message:
            return None
        return f"session.run returned state {result.state.value!r}, error {said!r}"


class _Trace:
    """loom-agent's events of one scenario, one JSON line each, appended as they happen."""

    def __init__(self, lab: Lab, scenario: Scenario) -> None:
        self.path = lab.workdir / "loom-agent" / f"{scenario.id}.trace.jsonl"

    def write(self, line: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]


@contextmanager
def _provider_seam(provider: LLMProvider) -> Iterator[None]:
    """Make loom-agent resolve every model to ``provider`` (only while a phase runs)."""
    saved = loom.agent._resolve_provider
    loom.agent._resolve_provider = lambda model: provider
    try:
        yield
    finally:
        loom.agent._resolve_provider = saved


def _check_budget(scenario: Scenario) -> None:
    for key, what in _UNENFORCEABLE.items():
        if getattr(scenario.budget, key) is not None:
            raise budget_error(
                scenario,
                key,
                f"loom-agent cannot enforce {what}: its RuntimeLimits bound only max_iterations",
                hint=f"remove budget.{key}; budget.iterations (turns) is what loom-agent enforces",
            )


def _check_agent(scenario: Scenario, lab: Lab, agent: Agent) -> Path:
    """The agent's session store path (under ``lab.workdir``); the budget must be applied."""
    store = agent._session_store
    if not isinstance(store, FileSessionStore) or not store.path.is_relative_to(lab.workdir):
        raise ScenarioError(
            scenario.path,
            scenario.entry_line,
            "entry",
            f"entry point {scenario.entry!r} built an Agent without a FileSessionStore under "
            "lab.workdir, so its sessions cannot be read back or restored",
            hint="pass session_store=loom_agent_store(lab) (from pytest_loom.adapters.loom_agent)",
        )
    wanted = loom_agent_limits(lab).max_iterations
    runtime = agent.config.runtime
    got = runtime.limits.max_iterations if runtime is not None else RuntimeLimits().max_iterations
    if lab.budget.iterations is not None and got != wanted:
        raise ScenarioError(
            scenario.path,
            scenario.lines.get("budget.iterations"),
            "budget.iterations",
            f"entry point {scenario.entry!r} built an Agent with "
            f"RuntimeLimits.max_iterations={got}, not the {wanted} transitions "
            f"({TRANSITIONS_PER_TURN} per turn) that {lab.budget.iterations} turns take",
            hint="build it with runtime=RuntimeConfig(limits=loom_agent_limits(lab))",
        )
    return Path(store.path)


def _task(scenario: Scenario) -> tuple[str, RunContext | None]:
    """The task from ``input``: a prompt, or ``{prompt: ..., context: {...}}``."""
    value = scenario.input
    if isinstance(value, str):
        return value, None
    if (
        isinstance(value, dict)
        and isinstance(value.get("prompt"), str)
        and set(value) <= {"prompt", "context"}
        and isinstance(value.get("context", {}), dict)
    ):
        context = value.get("context")
        return value["prompt"], None if context is None else RunContext(inputs=dict(context))
    raise ScenarioError(
        scenario.path,
        scenario.lines.get("input"),
        "input",
        f"a loom-agent scenario's input is the task for session.run(), got {value!r}",
        expected='a string, or {prompt: "...", context: {...}} (context becomes RunContext.inputs)',
    )


def _state_digest(request: Mapping[str, Any], lines: list[dict[str, Any]]) -> str:
    """loom-agent's conversation after the turn: the messages it sent (as their digest), the
    reply it appended and the tool results it appended."""
    reply = [{k: line[k] for k in ("text", "calls")} for line in lines if line["t"] == "reply"]
    tools = [line["result"] for line in lines if line["t"] == "tool"]
    return digest({"messages": request["messages"], "reply": reply, "tools": tools})


def _tool_call(line: Mapping[str, Any]) -> ToolCall:
    status = "ok" if line["ok"] else "error"
    return ToolCall(
        line["name"], line["args"], status, digest(line["result"]), kept(line["result"])
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(_plain(content), sort_keys=True)


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (what a tool returned may be any object)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))
