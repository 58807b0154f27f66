"""A refine loop written against the real ``openai`` SDK: a writer drafts, a critic scores.

Nothing here knows about pytest-loom beyond ``build``: the steps call
``client.chat.completions.create(...)`` as production code would. Under the lab the SDK's HTTP
transport is served from the scenario's cassette (``scenarios/sdk/cassettes/``), offline. The
critic answers through a tool call (``record_score``), so tool calls cross the SDK too. The
scenario's ``options.mode`` picks the flavour: ``sync``, ``async`` or ``stream``.
"""

from __future__ import annotations

import json
from typing import Any

import openai

from pytest_loom import Lab, Loop, StepContext, score_at_least

WRITER_MODEL = "gpt-4o-mini"
CRITIC_MODEL = "gpt-4o"
SYSTEM = "You are a careful technical writer."
WRITER_PROMPT = "Rewrite this draft so it is clearer and more concrete:\n\n{draft}"
CRITIC_PROMPT = "Score this draft from 0 to 1 with the record_score tool.\n\n{draft}"
SCORE_TOOL = {
    "type": "function",
    "function": {
        "name": "record_score",
        "description": "Record the draft's score.",
        "parameters": {
            "type": "object",
            "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}},
            "required": ["score"],
        },
    },
}


def _writer_messages(draft: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": WRITER_PROMPT.format(draft=draft)},
    ]


def _critic_request(draft: str) -> dict[str, Any]:
    return {
        "model": CRITIC_MODEL,
        "messages": [{"role": "user", "content": CRITIC_PROMPT.format(draft=draft)}],
        "tools": [SCORE_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "record_score"}},
    }


def _score(arguments: str) -> float:
    return float(json.loads(arguments)["score"])


def sync_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    client = openai.OpenAI()
    reply = client.chat.completions.create(
        model=WRITER_MODEL, messages=_writer_messages(state["draft"]), temperature=0.2
    )
    draft = reply.choices[0].message.content or ""
    verdict = client.chat.completions.create(**_critic_request(draft))
    calls = verdict.choices[0].message.tool_calls or []
    return {"draft": draft, "score": _score(calls[0].function.arguments)}


async def async_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    client = openai.AsyncOpenAI()
    reply = await client.chat.completions.create(
        model=WRITER_MODEL, messages=_writer_messages(state["draft"]), temperature=0.2
    )
    draft = reply.choices[0].message.content or ""
    verdict = await client.chat.completions.create(**_critic_request(draft))
    calls = verdict.choices[0].message.tool_calls or []
    return {"draft": draft, "score": _score(calls[0].function.arguments)}


def stream_step(state: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    client = openai.OpenAI()
    parts = []
    stream = client.chat.completions.create(
        model=WRITER_MODEL,
        messages=_writer_messages(state["draft"]),
        temperature=0.2,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
    draft = "".join(parts)
    arguments = []
    critic = client.chat.completions.create(
        **_critic_request(draft), stream=True, stream_options={"include_usage": True}
    )
    for chunk in critic:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments.append(call.function.arguments or "" if call.function else "")
    return {"draft": draft, "score": _score("".join(arguments))}


STEPS = {"sync": sync_step, "async": async_step, "stream": stream_step}


def build(lab: Lab) -> Loop:
    return lab.loop(
        STEPS[str(lab.options.get("mode", "sync"))],
        scorer=lambda state: state["score"],
        converge_on=score_at_least(float(lab.options.get("target", 0.9))),
    )
