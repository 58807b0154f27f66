"""The fake provider the example cassettes were recorded against, and how to re-record them.

``python -m examples.sdk.fake_api`` starts :class:`~pytest_loom.testing_server.FakeLLMServer`
on loopback with :func:`reply` below, points both SDKs at it with a fake API key, and runs
``pytest --loom-scenarios scenarios/sdk --loom-record=rewrite --snapshot-update``: the same
steps as recording against the real APIs, without the internet. ``tests/test_sdk_examples.py``
records the same way and checks that the result equals the committed cassettes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pytest_loom.cassette import RecordedRequest, RecordedResponse
from pytest_loom.record import ToolCallRequest
from pytest_loom.testing_server import FakeLLMServer

FAKE_KEY = "sk-loom-FAKE-do-not-record-0123456789"
"""A distinctive key: tests check it never lands in a cassette."""

REVISIONS = {
    1: "Agent loops retry a step until a check passes.",
    2: "An agent loop retries a step until its check passes or its budget ends.",
    3: "An agent loop repeats a step until a check passes, or stops when its budget runs out.",
}
SCORES = {1: 0.6, 2: 0.8, 3: 0.95}


def _revision(text: str) -> int:
    """Which revision ``text`` quotes (0 for the original draft)."""
    return max((n for n, draft in REVISIONS.items() if draft in text), default=0)


def _tokens(request: RecordedRequest, text: str) -> tuple[int, int]:
    return sum(len(json.dumps(m)) for m in request.messages) // 4, len(text) // 4 + 1


def reply(request: RecordedRequest) -> RecordedResponse:
    """A deterministic editor: each rewrite is the next revision, each score a bit higher."""
    first_user = next(m for m in request.messages if m.get("role") == "user")
    prompt = json.dumps(first_user.get("content"))
    n = _revision(prompt)
    if request.provider == "openai" and request.tools:  # the critic scores the draft it was given
        args = {"score": SCORES.get(n, 0.1)}
        tokens = _tokens(request, json.dumps(args))
        call = ToolCallRequest("record_score", args, f"call_score_r{n}")
        return RecordedResponse(
            tool_calls=(call,), finish="tool_calls", input_tokens=tokens[0], output_tokens=tokens[1]
        )
    if request.provider == "openai":
        text = REVISIONS.get(n + 1, REVISIONS[3])
        return RecordedResponse(
            text=text,
            input_tokens=_tokens(request, text)[0],
            output_tokens=_tokens(request, text)[1],
        )
    last = request.messages[-1].get("content")
    if isinstance(last, list) and any(p.get("type") == "tool_result" for p in last):
        text = f"{REVISIONS.get(n + 1, REVISIONS[3])}\nscore: {SCORES.get(n + 1, 0.95)}"
        return RecordedResponse(
            text=text,
            input_tokens=_tokens(request, text)[0],
            output_tokens=_tokens(request, text)[1],
        )
    draft = prompt.split("\\n\\n", 1)[-1].rstrip('"')
    call = ToolCallRequest("count_words", {"text": draft}, f"toolu_count_r{n}")
    tokens = _tokens(request, draft)
    return RecordedResponse(tool_calls=(call,), input_tokens=tokens[0], output_tokens=tokens[1])


def record(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``root`` with ``--loom-record=rewrite`` against the fake provider."""
    with FakeLLMServer(reply, api_key=FAKE_KEY) as server:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.openai_base_url,
            "ANTHROPIC_BASE_URL": server.anthropic_base_url,
            "OPENAI_API_KEY": FAKE_KEY,
            "ANTHROPIC_API_KEY": FAKE_KEY,
        }
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--loom-record=rewrite",
                "-p",
                "no:cacheprovider",
                *args,
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )


if __name__ == "__main__":
    repo = Path(__file__).resolve().parents[2]
    done = record(
        repo, "--loom-scenarios", "scenarios/sdk", "-p", "no:xdist", "--snapshot-update", "-q"
    )
    print(done.stdout[-3000:], done.stderr[-3000:])
    sys.exit(done.returncode)
