"""A refine-until-score loop: a writer drafts, a critic scores, repeat until good enough.

Each step makes two LLM calls (rewrite, then critique) and keeps the best draft so far.
``build`` wires it into the lab: the scenario picks the budget, the script and the rules.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_loom import Lab, Loop, StepContext, score_at_least, score_plateau
from pytest_loom.convergence import Convergence

WRITER_MODEL = "gpt-4o-mini"
CRITIC_MODEL = "gpt-4o"

WRITER_PROMPT = "Rewrite this draft so it is clearer and more concrete:\n\n{draft}"
CRITIC_PROMPT = "Score this draft from 0 to 1. Answer 'score: <n>' then one sentence.\n\n{draft}"

_SCORE = re.compile(r"score:\s*([01](?:\.\d+)?)")


def refine_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    draft = ctx.llm.complete(
        [
            {"role": "system", "content": "You are a careful technical writer."},
            {"role": "user", "content": WRITER_PROMPT.format(draft=state["draft"])},
        ],
        model=WRITER_MODEL,
    ).text
    verdict = ctx.llm.complete(CRITIC_PROMPT.format(draft=draft), model=CRITIC_MODEL).text
    match = _SCORE.search(verdict.lower())
    if match is None:
        raise ValueError(f"critic answered without a score: {verdict!r}")
    return {"draft": draft, "score": float(match.group(1))}


def build(lab: Lab) -> Loop:
    rules: list[Convergence] = [score_at_least(float(lab.options.get("target", 0.9)))]
    if lab.options.get("plateau", True):
        rules.append(score_plateau(window=3, min_delta=0.02))
    return lab.loop(
        refine_step,
        scorer=lambda state: state["score"],
        converge_on=rules,
        stall_after=lab.options.get("stall_after"),
        backtrack=bool(lab.options.get("backtrack", False)),
        retries=int(lab.options.get("retries", 0)),
    )
