"""The property loop on loom-agent: an agent whose only tool is ``note``."""

from __future__ import annotations

from loom import Agent, Model, tool
from loom.config import RuntimeConfig

from ..adapters.loom_agent import loom_agent_limits, loom_agent_store
from ..lab import Lab
from . import MODEL, note


def build(lab: Lab) -> Agent:
    """A reply without tool calls is loom-agent's final answer: it ends the run."""
    return Agent(
        model=Model.openai(MODEL),
        instructions="Work through the task; keep notes with the note tool.",
        tools=[tool(note)],
        runtime=RuntimeConfig(limits=loom_agent_limits(lab)),
        session_store=loom_agent_store(lab),
    )
