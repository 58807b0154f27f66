"""The lab's wiring for the loom-runner examples: the scenarios' ``entry:`` points.

Each ``build`` hands the unchanged agent the lab's mock LLM and a store in the test's
directory. The adapter drives ``start``/``resume`` and maps ``budget.iterations`` to
``max_steps``; knobs of the agent itself come from the scenario's ``options:``.
"""

from __future__ import annotations

from typing import Any

from loom_agent import AgentRunner

from pytest_loom import Lab, LLMTimeoutError, RateLimitError, ServerError
from pytest_loom.adapters.loom_runner import lab_store

from . import triage, watcher

Runner = AgentRunner[dict[str, Any], dict[str, Any]]


def triage_agent(lab: Lab) -> Runner:
    return triage.make_runner(
        lab.llm,
        lab_store(lab),
        transient=(RateLimitError, LLMTimeoutError, ServerError),
        max_attempts=int(lab.options.get("max_attempts", 3)),
    )


def rollout_watcher(lab: Lab) -> Runner:
    return watcher.make_runner(
        lab.llm, lab_store(lab), timeout_s=float(lab.options.get("timeout_s", 1800))
    )
