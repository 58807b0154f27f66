"""A research loop bounded only by its budget: it keeps gathering notes until money, tokens,
iterations or time run out. It never decides it is done, so every run ends with
``budget_exhausted`` naming the limit that hit first.
"""

from __future__ import annotations

from typing import Any

from pytest_loom import Lab, Loop, StepContext

MODEL = "gpt-4o"


def research_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    notes = list(state["notes"])
    reply = ctx.llm.complete(
        [
            {"role": "system", "content": f"You research: {state['question']}"},
            {"role": "user", "content": f"Find the next source. Notes so far: {len(notes)}"},
        ],
        model=MODEL,
    )
    notes.append(reply.text)
    return {"question": state["question"], "notes": notes}


def build(lab: Lab) -> Loop:
    return lab.loop(research_step)
