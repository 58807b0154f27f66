"""Record modes, matching and reports, against a fake provider on loopback (never the internet)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_loom import (
    CassetteError,
    CassetteMismatchError,
    IgnoreRule,
    RecordedLLM,
    UnusedRecordingsError,
    load_cassette,
    serve_sdks,
)
from pytest_loom.testing_server import FakeLLMServer

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

KEY = "sk-loom-DISTINCTIVE-9f8e7d6c5b4a"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(api_key=KEY, organization="org-DISTINCTIVE-31337") as server:
        yield server


def ask(server: FakeLLMServer, prompt: str, *, system: str = "Be brief.") -> str:
    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=2)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    reply = client.chat.completions.create(model="gpt-4o", messages=messages)
    return reply.choices[0].message.content or ""


def claude(server: FakeLLMServer, prompt: str) -> str:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.anthropic_base_url)

    async def go() -> str:
        async with client.messages.stream(
            model="claude-sonnet-4", max_tokens=50, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            return "".join([text async for text in stream.text_stream])

    return asyncio.run(go())


def run(
    path: Path, mode: str, server: FakeLLMServer, *prompts: str, **kwargs: object
) -> RecordedLLM:
    llm = RecordedLLM(path, mode=mode, **kwargs)  # type: ignore[arg-type]
    with serve_sdks(llm):
        for prompt in prompts:
            assert ask(server, prompt) == f"echo: {prompt}"
    llm.save()
    return llm


def test_record_once_then_replay_offline_identically(tmp_path: Path, server: FakeLLMServer) -> None:
    path = tmp_path / "c.yaml"
    recorded = RecordedLLM(path, mode="once")
    with serve_sdks(recorded):
        assert ask(server, "one") == "echo: one"
        assert claude(server, "two") == "echo: two"
    assert recorded.save()
    assert len(server.received) == 2
    text = path.read_text()
    assert KEY not in text and "DISTINCTIVE" not in text
    assert "Authorization" not in text and "authorization" not in text

    replayed = RecordedLLM(path, mode="none")
    with serve_sdks(replayed):
        assert ask(server, "one") == "echo: one"
        assert claude(server, "two") == "echo: two"
    replayed.verify()
    assert not replayed.save()
    assert len(server.received) == 2  # nothing reached the provider
    assert replayed.calls == recorded.calls
    assert [c.step for c in load_cassette(path).calls] == [None, None]


def test_replay_without_a_cassette_says_how_to_record(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    llm = RecordedLLM(tmp_path / "missing.yaml")
    with serve_sdks(llm), pytest.raises(openai.BadRequestError) as info:
        ask(server, "hello")
    assert "does not exist yet: record it with --loom-record=once" in str(info.value)
    assert isinstance(llm.script_errors[0], CassetteMismatchError)
    assert not server.received


def test_a_changed_prompt_shows_the_closest_call_and_a_diff(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    path = tmp_path / "c.yaml"
    run(path, "once", server, "Summarise the report", "Score it")
    llm = RecordedLLM(path)
    with serve_sdks(llm), pytest.raises(openai.BadRequestError):
        ask(server, "Summarise the report in one line")
    message = str(llm.script_errors[0])
    assert "no recorded call matches request 1" in message
    assert "closest recorded calls:\n  call 1 (unused):" in message
    assert "      -  content: Summarise the report\n" in message
    assert "      +  content: Summarise the report in one line\n" in message
    assert "--loom-record=rewrite" in message
    with pytest.raises(UnusedRecordingsError) as unused:
        llm.verify()
    assert "2 recorded calls never used" in str(unused.value)
    assert "call 1: gpt-4o 'Summarise the report'" in str(unused.value)


def test_a_changed_system_prompt_is_reported_as_stale(
    tmp_path: Path, server: FakeLLMServer
) -> None:
    path = tmp_path / "c.yaml"
    run(path, "once", server, "Summarise")
    llm = RecordedLLM(path)
    with serve_sdks(llm), pytest.raises(openai.BadRequestError):
        ask(server, "Summarise", system="Be very brief.")
    error = llm.script_errors[0]
    assert isinstance(error, CassetteMismatchError)
    assert error.stale == "call 1: the system prompt changed since it was recorded"
    with pytest.raises(UnusedRecordingsError, match="the recording is stale: call 1: the system"):
        llm.verify()


def test_ignore_rules_blank_volatile_text(tmp_path: Path, server: FakeLLMServer) -> None:
    path = tmp_path / "c.yaml"
    client_args = {"system": "Today is 2026-01-01."}
    llm = RecordedLLM(path, mode="once")
    with serve_sdks(llm):
        ask(server, "Plan", **client_args)
    llm.save()
    rule = IgnoreRule(regex=r"\d{4}-\d{2}-\d{2}", role="system")
    replay = RecordedLLM(path, ignore=[rule])
    with serve_sdks(replay):
        assert ask(server, "Plan", system="Today is 2031-07-19.") == "echo: Plan"
    replay.verify()


def test_new_episodes_all_and_rewrite(tmp_path: Path, server: FakeLLMServer) -> None:
    path = tmp_path / "c.yaml"
    run(path, "once", server, "a", "b")
    run(path, "once", server, "a", "b")  # an existing cassette: once only replays
    assert len(server.received) == 2
    run(path, "new_episodes", server, "a", "c")  # a replays, c is recorded and appended
    assert len(server.received) == 3
    assert [c.request.last_user_message for c in load_cassette(path).calls] == ["a", "b", "c"]
    run(path, "all", server, "b")  # b goes to the provider and replaces its recording
    assert len(server.received) == 4
    assert [c.request.last_user_message for c in load_cassette(path).calls] == ["a", "b", "c"]
    run(path, "rewrite", server, "z")
    assert [c.request.last_user_message for c in load_cassette(path).calls] == ["z"]


def test_provider_errors_pass_through_unrecorded(tmp_path: Path, server: FakeLLMServer) -> None:
    server.fail_next.append((500, "overloaded"))
    llm = run(tmp_path / "c.yaml", "once", server, "retry me")
    assert len(server.received) == 2  # the SDK retried the 500 itself
    assert [c.request.last_user_message for c in load_cassette(llm.path).calls] == ["retry me"]


def test_a_corrupt_cassette_is_never_silently_re_recorded(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("version: 1\ncalls:\n- step: 1\n")
    for mode in ("none", "once", "new_episodes", "all"):
        with pytest.raises(CassetteError, match=r"c\.yaml: truncated"):
            RecordedLLM(path, mode=mode)
    assert path.read_text() == "version: 1\ncalls:\n- step: 1\n"
