"""The property loop on loom-runner: a durable step whose tool calls loom-runner journals."""

from __future__ import annotations

from typing import Any

from loom_agent import (
    AgentRunner,
    Complete,
    Continue,
    ErrorCategory,
    RetryPolicy,
    RunContext,
    StepExecutionError,
    ToolRegistry,
)

from ..adapters.loom_runner import lab_store
from ..lab import Lab
from ..llm import LLMError
from . import DONE, MODEL, TOOL, note, prompt


def build(lab: Lab) -> AgentRunner[dict[str, Any], dict[str, Any]]:
    """Provider errors are transient (retried once, ``RetryPolicy(max_attempts=2)``)."""
    tools = ToolRegistry()
    tools.register(TOOL, note)

    async def spend_step(
        state: dict[str, Any], ctx: RunContext
    ) -> Continue[dict[str, Any]] | Complete[dict[str, Any]]:
        n = state["step"] + 1
        try:
            reply = await lab.llm.acomplete(prompt(n), model=MODEL, tools=[TOOL])
        except LLMError as exc:
            raise StepExecutionError(
                f"{type(exc).__name__}: {exc}", error_category=ErrorCategory.TRANSIENT
            ) from exc
        notes = list(state["notes"])
        for call in reply.tool_calls:
            notes.append(await ctx.call_tool(call.name, **call.args))
        new = {"step": n, "notes": notes}
        return Complete(new) if reply.text == DONE else Continue(new)

    return AgentRunner(
        step=spend_step,
        store=lab_store(lab),
        encode_state=dict,
        decode_state=dict,
        encode_result=dict,
        decode_result=dict,
        tools=tools,
        retry_policy=RetryPolicy(max_attempts=2),
    )
