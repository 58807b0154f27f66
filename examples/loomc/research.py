"""An async research loop decorated at import, the way loomc's README writes loops.

Each iteration asks the model for one more source, backs off and retries when the provider
fails, and waits between searches (the search API allows one query a minute). loomc bounds the
whole run to ten minutes and twelve iterations, and stops once enough sources are noted.

The function is decorated when this module is imported, so its budget is fixed then, and loomc
creates its default store (``./.loomc/checkpoints.db``) in whatever directory that happens; the
lab moves the store under the scenario's work directory. The app sets ``model`` at start-up;
``build(lab)`` sets the lab's mock LLM.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from loomc import Budget, loop, predicate
from loomc.loop import LoopRunner

from pytest_loom import Lab

SOURCES_WANTED = 5
SEARCH_INTERVAL_S = 60
ATTEMPTS = 3
BACKOFF_S = 30


class Reply(Protocol):
    text: str
    cost_usd: float


class AsyncChatModel(Protocol):
    async def acomplete(self, messages: Any, *, model: str) -> Reply: ...


model: AsyncChatModel | None = None
"""The chat model the loop asks; set it before running the loop."""


async def ask(prompt: str) -> Reply:
    """One model call, retried with exponential backoff when the provider fails."""
    if model is None:
        raise RuntimeError("set research.model before running the loop")
    for attempt in range(ATTEMPTS - 1):
        try:
            return await model.acomplete(prompt, model="gpt-4o")
        except Exception:
            await asyncio.sleep(BACKOFF_S * 2**attempt)
    return await model.acomplete(prompt, model="gpt-4o")


@loop(
    budget=Budget(iterations=12, wall_clock="10m"),
    converge_on=predicate(lambda history: len(history[-1].state["sources"]) >= SOURCES_WANTED),
    cost_fn=lambda state: state["cost"],
)
async def research(state: dict[str, Any]) -> dict[str, Any]:
    reply = await ask(
        f"Find one more source on {state['topic']!r}; "
        f"already noted: {', '.join(state['sources']) or 'none'}."
    )
    await asyncio.sleep(SEARCH_INTERVAL_S)
    return {
        "topic": state["topic"],
        "sources": [*state["sources"], reply.text],
        "cost": reply.cost_usd,
    }


def build(lab: Lab) -> LoopRunner:
    """The research loop, asking the lab's mock LLM."""
    global model
    model = lab.llm
    return research
