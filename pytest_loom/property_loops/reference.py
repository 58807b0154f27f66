"""The property loop on the reference runtime, as a sync and as an async step function."""

from __future__ import annotations

from typing import Any

from ..context import StepContext
from ..lab import Lab
from ..reference import Done, Loop
from . import DONE, MODEL, TOOL, note, prompt

_TOOLS = {TOOL: note}


def _next(state: dict[str, Any], ctx: StepContext, reply: Any) -> Any:
    notes = list(state["notes"])
    for call in reply.tool_calls:
        notes.append(ctx.tool(call.name, _TOOLS[call.name], **call.args))
    new = {"step": ctx.index, "notes": notes}
    return Done(new) if reply.text == DONE else new


def spend_step(state: dict[str, Any], ctx: StepContext) -> Any:
    reply = ctx.llm.complete(prompt(state["step"] + 1), model=MODEL, tools=[TOOL])
    return _next(state, ctx, reply)


async def aspend_step(state: dict[str, Any], ctx: StepContext) -> Any:
    reply = await ctx.llm.acomplete(prompt(state["step"] + 1), model=MODEL, tools=[TOOL])
    return _next(state, ctx, reply)


def build(lab: Lab) -> Loop:
    """A sync loop; ``options.retries`` (default 1) retries a step whose LLM call failed."""
    return lab.loop(spend_step, retries=int(lab.options.get("retries", 1)))


def build_async(lab: Lab) -> Loop:
    """The same loop with an ``async def`` step, run on an event loop."""
    return lab.loop(aspend_step, retries=int(lab.options.get("retries", 1)))
