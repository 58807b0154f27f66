"""The property loop on loomc: a ``@loomc.loop`` iteration that reports each reply's cost."""

from __future__ import annotations

from typing import Any

from loomc import loop, predicate
from loomc.loop import LoopRunner

from ..adapters.loomc import loomc_budget
from ..lab import Lab
from . import DONE, MODEL, TOOL, note, prompt

_TOOLS = {TOOL: note}


def build(lab: Lab) -> LoopRunner:
    """Decorated here, so it runs under the scenario's budget; converges when the model is done."""

    @loop(  # type: ignore[untyped-decorator]  # loomc ships no types
        budget=loomc_budget(lab),
        converge_on=predicate(lambda history: bool(history[-1].state["done"])),
        cost_fn=lambda state: state["cost"],
    )
    def spend(state: dict[str, Any]) -> dict[str, Any]:
        n = state["step"] + 1
        reply = lab.llm.complete(prompt(n), model=MODEL, tools=[TOOL])
        notes = list(state["notes"])
        for call in reply.tool_calls:
            notes.append(_TOOLS[call.name](**call.args))
        return {"step": n, "notes": notes, "cost": reply.cost_usd, "done": reply.text == DONE}

    return spend
