"""The real openai and anthropic SDKs, served by the lab through their own HTTP transport."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from pytest_loom import (
    FakeClock,
    MockLLM,
    NetworkBlockedError,
    ToolCallRequest,
    Turn,
    block_network,
    serve_sdks,
)

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with FakeClock() as clock:
        yield clock


def served(*turns: Turn, clock: FakeClock | None = None) -> MockLLM:
    return MockLLM(turns, model="gpt-4o", clock=clock)


def test_openai_sync_returns_sdk_types_and_books_the_call(clock: FakeClock) -> None:
    llm = served(Turn(text="Hello.", input_tokens=10, output_tokens=2, latency_s=1.5), clock=clock)
    with serve_sdks(llm):
        reply = openai.OpenAI().chat.completions.create(model="gpt-4o", messages=USER)
    assert isinstance(reply, openai.types.chat.ChatCompletion)
    assert reply.choices[0].message.content == "Hello."
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 2)
    [call] = llm.calls
    assert (call.prompt, call.cost_usd, call.latency_s) == ("hi", 0.000045, 1.5)
    assert clock.elapsed == 1.5


def test_openai_tool_calls_async_and_streaming() -> None:
    search = ToolCallRequest("search", {"q": "loops"}, "call_7")
    llm = served(
        Turn(tool_calls=(search,), input_tokens=5, output_tokens=5),
        Turn(text="streamed answer here", input_tokens=4, output_tokens=3),
    )
    with serve_sdks(llm):
        client = openai.AsyncOpenAI()

        async def ask() -> object:
            return await client.chat.completions.create(model="gpt-4o", messages=USER, tools=[TOOL])

        reply = asyncio.run(ask())
        chunks = list(
            openai.OpenAI().chat.completions.create(
                model="gpt-4o",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    [tool_call] = reply.choices[0].message.tool_calls  # type: ignore[attr-defined]
    assert (tool_call.id, tool_call.function.name) == ("call_7", "search")
    assert tool_call.function.arguments == '{"q":"loops"}'
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed answer here"
    assert chunks[-1].usage.completion_tokens == 3
    assert llm.requests[0].tools == ("search",)


def test_anthropic_sync_async_and_stream() -> None:
    lookup = ToolCallRequest("lookup", {"id": 3}, "toolu_1")
    llm = MockLLM(
        [
            Turn(text="One.", input_tokens=7, output_tokens=1),
            Turn(text="Two.", input_tokens=7, output_tokens=1),
            Turn(text="Three, streamed.", tool_calls=(lookup,), input_tokens=7, output_tokens=4),
        ],
        model="claude-sonnet-4",
    )
    ask = {"model": "claude-sonnet-4", "max_tokens": 64, "messages": USER}
    with serve_sdks(llm):
        first = anthropic.Anthropic().messages.create(system="Be brief.", **ask)

        async def second() -> object:
            return await anthropic.AsyncAnthropic().messages.create(**ask)

        reply = asyncio.run(second())
        with anthropic.Anthropic().messages.stream(**ask) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert isinstance(first, anthropic.types.Message)
    assert first.content[0].text == "One." and first.usage.input_tokens == 7
    assert reply.content[0].text == "Two."  # type: ignore[attr-defined]
    assert streamed == "Three, streamed."
    assert final.stop_reason == "tool_use" and final.content[1].input == {"id": 3}
    assert [m.role for m in llm.requests[0].messages] == ["system", "user"]
    assert [c.text for c in llm.calls] == ["One.", "Two.", "Three, streamed."]


def test_a_simulated_rate_limit_is_retried_by_the_sdk_on_the_fake_clock(clock: FakeClock) -> None:
    llm = served(Turn(text="after the retry"), clock=clock)
    llm.inject_error(1, "rate_limit")
    with serve_sdks(llm):
        reply = openai.OpenAI().chat.completions.create(model="gpt-4o", messages=USER)
    assert reply.choices[0].message.content == "after the retry"
    assert [c.error for c in llm.calls] == ["rate_limit", None]
    assert clock.elapsed == 1.0  # the SDK slept the Retry-After second, in fake time


def test_an_unscripted_request_fails_once_with_the_mock_explanation() -> None:
    llm = served()
    with serve_sdks(llm), pytest.raises(openai.BadRequestError) as info:
        openai.OpenAI().chat.completions.create(model="gpt-4o", messages=USER)
    assert "no scripted turn or rule matches request 1" in str(info.value)
    assert len(llm.requests) == 1  # not retried
    assert len(llm.script_errors) == 1


def test_outside_serve_sdks_the_transport_is_untouched() -> None:
    with serve_sdks(served(Turn(text="x"))):
        pass
    client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=USER)


def test_network_guard_names_the_host_and_the_flag() -> None:
    with block_network() as log, pytest.raises(NetworkBlockedError) as info:
        socket.create_connection(("api.example.com", 443), timeout=1)
    assert "api.example.com:443" in str(info.value)
    assert "--loom-record=once" in str(info.value)
    assert log == [str(info.value)]


def test_network_guard_blocks_addresses_and_lets_loopback_through() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    with block_network():
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
        raw = socket.socket()
        with pytest.raises(NetworkBlockedError, match=r"192\.0\.2\.1:80"):
            raw.connect(("192.0.2.1", 80))
        raw.close()
        with block_network(enabled=False):  # the innermost guard decides
            assert socket.getaddrinfo("localhost", 80)
    server.close()
    assert "connect" not in vars(socket.socket)  # unpatched again
