"""A note-taking research agent, written the way loom-agent users write one.

``make_agent`` is the user's code and knows nothing of the lab: tools are plain decorated
functions over a notebook, the model and policies come from loom-agent's config classes.
``build(lab)`` is the only lab-aware part: it passes the scenario's budget and a session store
under the test's directory, and reads the tool rate limit from the scenario's options.
"""

from pathlib import Path

from loom import Agent, FileSessionStore, Model, tool
from loom.config import (
    PolicyConfig,
    RuntimeConfig,
    RuntimeLimits,
    ToolPolicy,
    ToolRateLimitPolicy,
)

from pytest_loom import Lab
from pytest_loom.adapters.loom_agent import loom_agent_limits, loom_agent_store

INSTRUCTIONS = "You research a topic. Keep findings with write_note; answer when you are done."


def make_agent(
    store: FileSessionStore,
    *,
    limits: RuntimeLimits | None = None,
    calls_per_minute: int = 60,
) -> Agent:
    notebook: list[str] = []

    @tool
    def write_note(text: str) -> str:
        """Append a finding to the notebook."""
        notebook.append(text)
        return f"note {len(notebook)} saved"

    @tool
    def read_notes() -> str:
        """Read every finding so far."""
        return "\n".join(f"{i}. {note}" for i, note in enumerate(notebook, 1)) or "(empty)"

    return Agent(
        model=Model.openai("gpt-4o-mini"),
        instructions=INSTRUCTIONS,
        tools=[write_note, read_notes],
        policy=PolicyConfig(
            tools=ToolPolicy(rate_limits=ToolRateLimitPolicy(calls_per_minute)),
        ),
        runtime=RuntimeConfig(limits=limits or RuntimeLimits()),
        session_store=store,
    )


def main() -> None:  # how the agent runs outside the lab
    import asyncio

    from loom import SessionConfig

    agent = make_agent(FileSessionStore(Path(".sessions.json")))
    result = asyncio.run(agent.session(SessionConfig(id="notes")).run("Research agent loops"))
    print(result.state.value, result.output)


def build(lab: Lab) -> Agent:
    return make_agent(
        loom_agent_store(lab),
        limits=loom_agent_limits(lab),
        calls_per_minute=lab.options.get("calls_per_minute", 60),
    )
