"""A rollout watcher on loom-runner: poll with exponential backoff until healthy or too late.

Each step waits (``asyncio.sleep``, doubling from 30 s up to 10 min), reads the rollout log
through a journaled tool and asks a small model to classify it. The deadline is the agent's
own: loom-runner has none. It is fixed in the state on the first step, from
``datetime.now(UTC)``, so a resumed run keeps the original deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from loom_agent import AgentRunner, CheckpointStore, Complete, Continue, RunContext, ToolRegistry

MODEL = "gpt-4o-mini"
FIRST_BACKOFF_S = 30.0
MAX_BACKOFF_S = 600.0


class ChatModel(Protocol):
    async def acomplete(
        self, messages: Sequence[dict[str, str]], *, model: str, tools: Sequence[Any] = ()
    ) -> Any: ...


def rollout_log(deploy: str, check: int) -> str:
    ready = min(2 * check, 10)
    return f"{deploy}: {ready}/10 pods ready, 0 restarts"


def make_runner(
    llm: ChatModel, store: CheckpointStore, *, timeout_s: float = 1800.0
) -> AgentRunner[dict[str, Any], dict[str, Any]]:
    """The watcher over ``store``; it gives up ``timeout_s`` after its first step."""
    tools = ToolRegistry()
    tools.register("rollout_log", rollout_log)

    async def watch_step(
        state: dict[str, Any], ctx: RunContext
    ) -> Continue[dict[str, Any]] | Complete[dict[str, Any]]:
        checks = state["checks"]
        deadline = (
            state.get("deadline") or (datetime.now(UTC) + timedelta(seconds=timeout_s)).isoformat()
        )
        if checks:
            await asyncio.sleep(min(FIRST_BACKOFF_S * 2 ** (checks - 1), MAX_BACKOFF_S))
        if datetime.now(UTC) >= datetime.fromisoformat(deadline):
            return Complete({"deploy": state["deploy"], "outcome": "timed_out", "checks": checks})
        log = await ctx.call_tool("rollout_log", deploy=state["deploy"], check=checks + 1)
        reply = await llm.acomplete(
            [{"role": "user", "content": f"Classify this rollout: HEALTHY or WAITING.\n{log}"}],
            model=MODEL,
        )
        if reply.text.startswith("HEALTHY"):
            return Complete({"deploy": state["deploy"], "outcome": "healthy", "checks": checks + 1})
        return Continue({"deploy": state["deploy"], "checks": checks + 1, "deadline": deadline})

    return AgentRunner(
        step=watch_step,
        store=store,
        encode_state=dict,
        decode_state=dict,
        encode_result=dict,
        decode_result=dict,
        tools=tools,
    )
