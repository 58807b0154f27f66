"""A tightloop agent that drafts release notes section by section, then asks to publish them.

Each iteration observes the notes file, plans one tool call with the LLM and runs it: write a
section, and once every section is there, publish (a human approves that first). The loop ends
when the notes are published, or when every section is written if publishing is off.

In production the team runs it with a real client::

    loop = Loop(goal, release_tools(root), AnthropicLLM(...), **release_settings(root),
                state_path="notes.state.json")
    result = loop.run()

``build(lab)`` wires the same tools and settings to the lab's mock LLM, budget and approvals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from loop import Exit, NoProgress, Policy, RequireApproval, State
from loop.policy import Decision, DecisionKind

from pytest_loom import Lab
from pytest_loom.adapters.tightloop import LabLoop, lab_loop

SECTIONS = ("Added", "Fixed")
Section = Literal["Added", "Fixed"]


def release_tools(root: Path) -> list[Callable[..., str]]:
    """The tools the agent may call; the notes live in ``root/notes.json``."""
    notes = root / "notes.json"

    def read() -> dict[str, Any]:
        return json.loads(notes.read_text()) if notes.exists() else {}

    def write_section(section: Section, text: str) -> str:
        """Write one section of the release notes (replaces what it said)."""
        if not text.strip():
            raise ValueError(f"section {section} needs some text")
        data = read()
        data[section] = text
        notes.write_text(json.dumps(data, indent=2))
        return f"{section} written ({len(text)} chars)"

    def publish(version: str) -> str:
        """Publish the release notes as ``version``."""
        data = read()
        data["published"] = version
        notes.write_text(json.dumps(data, indent=2))
        return f"published {version}"

    return [write_section, publish]


def observer(root: Path) -> Callable[[State], str]:
    """What the agent sees at the start of each iteration."""

    def observe(state: State) -> str:
        path = root / "notes.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        missing = [s for s in SECTIONS if s not in data]
        if missing:
            return f"Missing sections: {', '.join(missing)}"
        if "published" in data:
            return f"Published as {data['published']}"
        return "All sections written; not published yet"

    return observe


class StopOnToolErrors(Policy):  # type: ignore[misc]
    """Stop the loop once ``limit`` tool calls have failed (the team's guardrail)."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit

    def before_iteration(self, state: State) -> Decision:
        failed = sum(a.status == "error" for it in state.iterations for a in it.actions)
        if failed >= self.limit:
            return Decision(kind=DecisionKind.STOP, reason=f"{failed} tool calls failed")
        return Decision()


def release_settings(root: Path, *, publish: bool = True) -> dict[str, Any]:
    """The ``Loop`` arguments besides goal, tools and LLM: how the team runs this loop."""

    def done(state: State) -> bool:
        path = root / "notes.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        return "published" in data if publish else all(s in data for s in SECTIONS)

    return {
        "observe": observer(root),
        "exits": [Exit.success(done, "release notes done")],
        "policies": [NoProgress(3), StopOnToolErrors(2), RequireApproval(["publish"])],
        "max_tokens_per_call": 1024,
    }


def build(lab: Lab) -> LabLoop:
    publish = bool(lab.options.get("publish", True))
    return lab_loop(
        lab, release_tools(lab.workdir), **release_settings(lab.workdir, publish=publish)
    )
