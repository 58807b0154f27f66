"""A refine-until-good loop written with loomc: a writer drafts, a critic scores, repeat.

One iteration makes two model calls (rewrite, then critique) and returns the new state with
what it cost; loomc runs the loop, checkpoints every step, enforces the budget and stops it on
convergence, or escalates a stall. The app builds it with its own chat model::

    refine = refine_loop(my_model)            # anything with .complete(messages, model=...)
    final = refine({"draft": text, "score": 0.0, "cost": 0.0})

``build(lab)`` builds the same loop with the lab's mock LLM and the scenario's budget; the
scenario's ``options`` pick the convergence rule, backtracking and stall escalation.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from loomc import BestScore, Budget, Escalate, LastGood, loop, predicate, score_plateau
from loomc.loop import LoopRunner

from pytest_loom import Lab
from pytest_loom.adapters.loomc import loomc_budget

WRITER_MODEL = "gpt-4o-mini"
CRITIC_MODEL = "gpt-4o"

WRITER_PROMPT = "Rewrite this draft so it is clearer and more concrete:\n\n{draft}"
CRITIC_PROMPT = "Score this draft from 0 to 1. Answer 'score: <n>' then one sentence.\n\n{draft}"

BUDGET = Budget(usd=2.0, iterations=15, wall_clock="10m")
"""What a production run may spend."""

_SCORE = re.compile(r"score:\s*([01](?:\.\d+)?)")


class Reply(Protocol):
    text: str
    cost_usd: float


class ChatModel(Protocol):
    def complete(self, messages: Any, *, model: str) -> Reply: ...


def reached(target: float) -> Any:
    """Converge once the last step scored at least ``target``."""
    return predicate(lambda history: (history[-1].score or 0.0) >= target)


def refine_loop(
    model: ChatModel,
    *,
    budget: Budget | None = BUDGET,
    converge_on: Any = None,
    backtrack: Any = None,
    on_stall: Escalate | None = None,
) -> LoopRunner:
    """The refine loop over ``model``; it converges at a score of 0.9 unless told otherwise."""

    @loop(
        budget=budget,
        converge_on=converge_on or reached(0.9),
        backtrack=backtrack,
        on_stall=on_stall,
        cost_fn=lambda state: state["cost"],
        scorer=lambda state: state["score"],
    )
    def refine(state: dict[str, Any]) -> dict[str, Any]:
        draft = model.complete(
            [
                {"role": "system", "content": "You are a careful technical writer."},
                {"role": "user", "content": WRITER_PROMPT.format(draft=state["draft"])},
            ],
            model=WRITER_MODEL,
        )
        verdict = model.complete(CRITIC_PROMPT.format(draft=draft.text), model=CRITIC_MODEL)
        match = _SCORE.search(verdict.text.lower())
        if match is None:
            raise ValueError(f"critic answered without a score: {verdict.text!r}")
        return {
            "draft": draft.text,
            "score": float(match.group(1)),
            "cost": round(draft.cost_usd + verdict.cost_usd, 12),
        }

    return refine


_BACKTRACK = {None: None, "best_score": BestScore, "last_good": LastGood}


def build(lab: Lab) -> LoopRunner:
    """The refine loop on the lab's LLM and budget; ``options`` configure it.

    ``converge``: ``target`` (default; ``target: 0.9``) or ``plateau`` (``patience``,
    ``min_delta``); ``backtrack``: ``best_score`` or ``last_good``; ``stall_after``: escalate
    after that many steps without a better score.
    """
    options = lab.options
    if options.get("converge", "target") == "plateau":
        converge_on = score_plateau(
            patience=int(options.get("patience", 3)),
            min_delta=float(options.get("min_delta", 0.01)),
        )
    else:
        converge_on = reached(float(options.get("target", 0.9)))
    strategy = _BACKTRACK[options.get("backtrack")]
    stall_after = options.get("stall_after")
    return refine_loop(
        lab.llm,
        budget=loomc_budget(lab),
        converge_on=converge_on,
        backtrack=strategy() if strategy else None,
        on_stall=Escalate(after=int(stall_after)) if stall_after else None,
    )
