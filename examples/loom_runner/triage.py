"""A support-ticket triage agent on loom-runner: plain loom-runner code, nothing lab-specific.

Each step reads the ticket thread through a journaled tool, asks the model what to do, and
either runs the tools the model asked for (``Continue``) or files the answer (``Complete``).
Provider errors the caller names as transient are retried by loom-runner's ``RetryPolicy``;
a tool that returns an error envelope fails the step as loom-runner classifies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from loom_agent import (
    AgentRunner,
    CheckpointStore,
    Complete,
    Continue,
    ErrorCategory,
    RetryPolicy,
    RunContext,
    StepExecutionError,
    ToolRegistry,
)

MODEL = "gpt-4o"
PRIORITIES = ("low", "normal", "high", "urgent")
TOOLS = [
    {"name": "search_kb", "description": "Search the knowledge base"},
    {"name": "set_priority", "description": "Set the ticket's priority: low|normal|high|urgent"},
]
THREADS = {
    "T-1042": "Customer: exports to CSV time out since Monday for files over 10k rows.",
    "T-2001": "Customer: the billing page shows last month's invoice twice.",
}
KNOWLEDGE_BASE = {
    "KB-7": "CSV exports over 10k rows run as background jobs; see Settings > Exports.",
    "KB-9": "Duplicate invoices are a display cache issue; clear it from Billing > Refresh.",
}


class ChatModel(Protocol):
    """The one method of a chat client the agent uses (an async SDK client fits)."""

    async def acomplete(
        self, messages: Sequence[dict[str, str]], *, model: str, tools: Sequence[Any]
    ) -> Any: ...


def fetch_thread(ticket: str) -> str:
    return THREADS[ticket]


def search_kb(query: str) -> list[str]:
    words = set(query.lower().split())
    return [key for key, text in KNOWLEDGE_BASE.items() if words & set(text.lower().split())]


def set_priority(ticket: str, priority: str) -> dict[str, Any]:
    if priority not in PRIORITIES:
        return {
            "success": False,
            "is_error": True,
            "error_category": "validation",
            "payload": {"ticket": ticket, "rejected": priority},
        }
    return {"ticket": ticket, "priority": priority}


def make_runner(
    llm: ChatModel,
    store: CheckpointStore,
    *,
    transient: tuple[type[Exception], ...] = (),
    max_attempts: int = 3,
) -> AgentRunner[dict[str, Any], dict[str, Any]]:
    """The triage agent over ``store``; ``transient`` are the client's retryable errors."""
    tools = ToolRegistry()
    tools.register("fetch_thread", fetch_thread)
    tools.register("search_kb", search_kb)
    tools.register("set_priority", set_priority)

    async def triage_step(
        state: dict[str, Any], ctx: RunContext
    ) -> Continue[dict[str, Any]] | Complete[dict[str, Any]]:
        thread = await ctx.call_tool("fetch_thread", ticket=state["ticket"])
        notes = list(state["notes"])
        try:
            reply = await llm.acomplete(
                [
                    {"role": "system", "content": "Triage the ticket. Use tools, then answer."},
                    {"role": "user", "content": f"{thread}\nNotes so far: {notes or 'none'}"},
                ],
                model=MODEL,
                tools=TOOLS,
            )
        except transient as exc:
            raise StepExecutionError(
                f"{type(exc).__name__}: {exc}", error_category=ErrorCategory.TRANSIENT
            ) from exc
        if reply.text.startswith("ANSWER:") and not reply.tool_calls:
            answer = reply.text.removeprefix("ANSWER:").strip()
            return Complete({"ticket": state["ticket"], "answer": answer, "notes": notes})
        for call in reply.tool_calls:
            result = await ctx.call_tool(call.name, **call.args)
            notes.append({"tool": call.name, "result": result})
        return Continue({"ticket": state["ticket"], "notes": notes})

    return AgentRunner(
        step=triage_step,
        store=store,
        encode_state=dict,
        decode_state=dict,
        encode_result=dict,
        decode_result=dict,
        tools=tools,
        retry_policy=RetryPolicy(max_attempts=max_attempts),
    )
