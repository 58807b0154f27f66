"""An editing loop written against the real ``anthropic`` SDK, with a tool round trip.

Each step asks Claude to improve the draft, offering a ``count_words`` tool. Claude calls it,
the loop runs it (through ``ctx.tool``, so the run record has it) and sends the result back;
Claude answers with the new draft and a last line ``score: <n>``. Under the lab the SDK is
served from the scenario's cassette, offline. ``options.mode`` picks ``sync``, ``async`` or
``stream`` (``client.messages.stream``).
"""

from __future__ import annotations

import re
from typing import Any

import anthropic

from pytest_loom import Lab, Loop, StepContext, score_at_least

MODEL = "claude-sonnet-4"
SYSTEM = "You are a concise editor. Check the length with count_words before you answer."
PROMPT = "Improve this draft, then end with a line 'score: <0..1>':\n\n{draft}"
TOOLS = [
    {
        "name": "count_words",
        "description": "Count the words of a text.",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    }
]
_SCORE = re.compile(r"score:\s*([01](?:\.\d+)?)\s*$")


def count_words(text: str) -> int:
    return len(text.split())


def _first(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": PROMPT.format(draft=state["draft"])}]


def _follow_up(
    messages: list[dict[str, Any]], message: Any, ctx: StepContext
) -> list[dict[str, Any]]:
    """The conversation after Claude's tool request, with the tool results appended."""
    results = []
    for block in message.content:
        if block.type == "tool_use":
            count = ctx.tool("count_words", count_words, **block.input)
            results.append({"type": "tool_result", "tool_use_id": block.id, "content": str(count)})
    assistant = {
        "role": "assistant",
        "content": [b.model_dump(exclude_none=True) for b in message.content],
    }
    return [*messages, assistant, {"role": "user", "content": results}]


def _parse(text: str) -> dict[str, Any]:
    draft, _, last = text.strip().rpartition("\n")
    match = _SCORE.search(last)
    if match is None:
        raise ValueError(f"the editor answered without a score: {text!r}")
    return {"draft": draft.strip(), "score": float(match.group(1))}


def _text(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def sync_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    client = anthropic.Anthropic()
    messages = _first(state)
    first = client.messages.create(
        model=MODEL, max_tokens=512, system=SYSTEM, tools=TOOLS, messages=messages
    )
    final = client.messages.create(
        model=MODEL,
        max_tokens=512,
        system=SYSTEM,
        tools=TOOLS,
        messages=_follow_up(messages, first, ctx),
    )
    return _parse(_text(final))


async def async_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    client = anthropic.AsyncAnthropic()
    messages = _first(state)
    first = await client.messages.create(
        model=MODEL, max_tokens=512, system=SYSTEM, tools=TOOLS, messages=messages
    )
    final = await client.messages.create(
        model=MODEL,
        max_tokens=512,
        system=SYSTEM,
        tools=TOOLS,
        messages=_follow_up(messages, first, ctx),
    )
    return _parse(_text(final))


def stream_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    client = anthropic.Anthropic()
    messages = _first(state)
    with client.messages.stream(
        model=MODEL, max_tokens=512, system=SYSTEM, tools=TOOLS, messages=messages
    ) as stream:
        first = stream.get_final_message()
    with client.messages.stream(
        model=MODEL,
        max_tokens=512,
        system=SYSTEM,
        tools=TOOLS,
        messages=_follow_up(messages, first, ctx),
    ) as stream:
        text = "".join(stream.text_stream)
    return _parse(text)


STEPS = {"sync": sync_step, "async": async_step, "stream": stream_step}


def build(lab: Lab) -> Loop:
    return lab.loop(
        STEPS[str(lab.options.get("mode", "sync"))],
        scorer=lambda state: state["score"],
        converge_on=score_at_least(float(lab.options.get("target", 0.9))),
    )
