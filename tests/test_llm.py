"""Tests of the mock LLM: serving order, errors, pricing, latency and what it records."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_loom import _llm_errors
from pytest_loom.llm import (
    LLMError,
    LLMTimeoutError,
    MalformedToolCallError,
    Message,
    MockLLM,
    MockLLMError,
    PricingError,
    RateLimitError,
    Request,
    ServerError,
    UnconsumedTurnsError,
    UnmatchedRequestError,
)
from pytest_loom.record import LLMCall, ToolCallRequest, digest
from pytest_loom.script import LLMErrorKind, Match, Price, Rule, Turn


class StubClock:
    """The smallest thing with ``advance``: remembers every step it was moved."""

    def __init__(self) -> None:
        self.steps: list[float] = []

    def advance(self, seconds: float) -> None:
        self.steps.append(seconds)

    @property
    def now(self) -> float:
        return sum(self.steps)


# --- serving order ---------------------------------------------------------------------------


def test_turns_are_served_in_order() -> None:
    call = ToolCallRequest("read_file", {"path": "a.py"}, id="c1")
    llm = MockLLM([Turn(text="first"), Turn(tool_calls=(call,)), Turn(text="third")])

    replies = [llm.complete(f"ask {i}") for i in range(3)]

    assert [r.text for r in replies] == ["first", "", "third"]
    assert replies[1].tool_calls == (call,)
    assert [r.last_user_message for r in llm.requests] == ["ask 0", "ask 1", "ask 2"]
    assert llm.unconsumed() == []
    llm.verify()


def test_turns_are_never_skipped() -> None:
    llm = MockLLM([Turn(text="a", match=Match(contains="alpha")), Turn(text="b")])

    with pytest.raises(UnmatchedRequestError):
        llm.complete("beta")  # turn 2 would accept it, but turn 1 comes first

    assert llm.complete("alpha").text == "a"
    assert llm.complete("beta").text == "b"


def test_rules_answer_what_the_next_turn_does_not() -> None:
    rules = [
        Rule(Match(contains="status"), Turn(text="all green"), times=2),
        Rule(Match(contains="status"), Turn(text="second rule")),
    ]
    llm = MockLLM([Turn(text="plan", match=Match(contains="plan"))], rules)

    assert llm.complete("status?").text == "all green"
    assert llm.complete("plan it").text == "plan"  # the turn still waits its turn
    assert llm.complete("status?").text == "all green"
    assert llm.complete("status?").text == "second rule"  # rule 1 is used up
    assert llm.complete("status?").text == "second rule"  # no times: unlimited


def test_next_turn_wins_over_a_matching_rule() -> None:
    llm = MockLLM([Turn(text="turn")], [Rule(Match(), Turn(text="rule"))])
    assert [llm.complete("x").text for _ in range(2)] == ["turn", "rule"]


@pytest.mark.parametrize(
    ("turn", "accepted", "refused"),
    [
        (Turn(model="gpt-4o-mini"), {"model": "gpt-4o-mini"}, {"model": "gpt-4o"}),
        (Turn(match=Match(model="gpt-4.1")), {"model": "gpt-4.1"}, {}),
        (Turn(match=Match(regex=r"fix \w+\.py")), {"messages": "fix a.py"}, {"messages": "fix"}),
        (
            Turn(match=Match(tools=("read", "write"))),
            {"tools": ["read", "write", "run"]},
            {"tools": ["read"]},
        ),
    ],
)
def test_turn_match_constraints(
    turn: Turn, accepted: dict[str, object], refused: dict[str, object]
) -> None:
    def ask(llm: MockLLM, kwargs: dict[str, object]) -> None:
        llm.complete(kwargs.pop("messages", "go"), **kwargs)  # type: ignore[arg-type]

    ask(MockLLM([turn]), dict(accepted))
    with pytest.raises(UnmatchedRequestError):
        ask(MockLLM([turn]), dict(refused))


# --- unmatched requests ------------------------------------------------------------------------


def test_unmatched_error_shows_the_request_and_the_nearest_script_entries() -> None:
    rules = [
        Rule(Match(contains="deploy to production"), Turn(text="deployed")),
        Rule(Match(contains="please fix the tests"), Turn(text="fixed")),
        Rule(Match(regex=r"^summari[sz]e"), Turn(text="summary")),
        Rule(Match(contains="zzz"), Turn(text="never")),
        Rule(Match(contains="run"), Turn(text="ran"), times=1),
    ]
    llm = MockLLM(
        [Turn(text="hello"), Turn(text="done", match=Match(contains="fix the test"))], rules
    )
    llm.complete("hi")
    llm.complete("run it")  # uses up rule 5

    with pytest.raises(UnmatchedRequestError) as info:
        llm.complete(
            [
                {"role": "system", "content": "You are a coder."},
                {"role": "user", "content": "Please Fix The Tests, then run them"},
            ],
            tools=["read_file", {"type": "function", "function": {"name": "run_tests"}}],
        )

    text = str(info.value)
    assert text.startswith("MockLLM: no scripted turn or rule matches request 3")
    assert "model: 'gpt-4o'" in text
    assert "last user message: 'Please Fix The Tests, then run them'" in text
    assert "tools offered: read_file, run_tests" in text
    assert "messages: 2 (system, user)" in text
    assert "turn 2 (next in order) -> text 'done'" in text
    assert "contains 'fix the test' not in last user message (it is, ignoring case)" in text
    # The used-up rule that would otherwise match comes first, then the most similar ones.
    rule_lines = [line for line in text.splitlines() if line.startswith("  rule ")]
    assert [line.split(" (")[0] for line in rule_lines] == ["  rule 5", "  rule 2", "  rule 1"]
    assert "matches, but used up (times=1)" in text
    assert "... and 2 more rule(s)" in text
    assert "strict=False" in text

    assert info.value.request is llm.requests[-1]
    assert len(llm.requests) == 3 and len(llm.calls) == 2  # kept, but not a served call
    assert isinstance(info.value, AssertionError) and isinstance(info.value, MockLLMError)
    assert not isinstance(info.value, LLMError)


def test_unmatched_error_truncates_long_messages_and_says_when_the_script_ran_out() -> None:
    llm = MockLLM([Turn(text="only")])
    llm.complete("x")
    with pytest.raises(UnmatchedRequestError) as info:
        llm.complete("word " * 100)
    text = str(info.value)
    assert "word ...' (500 chars)" in text
    assert "no turns left: all 1 scripted turns were served" in text
    assert "no rules" in text


def test_unmatched_error_names_missing_tools_models_and_absent_user_message() -> None:
    turn = Turn(model="gpt-4o-mini", match=Match(contains="go", tools=("search",)))
    with pytest.raises(UnmatchedRequestError) as info:
        MockLLM([turn]).complete([Message("system", "sys")])
    text = str(info.value)
    assert "model 'gpt-4o-mini' wanted, request is for 'gpt-4o'" in text
    assert "contains 'go' not in last user message (none sent)" in text
    assert "tool search not offered" in text
    assert "last user message: (none)" in text


_MODELS = st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude"])
_WORDS = st.sampled_from(["go", "Go", "stop", "a.b", "x+"])


@settings(max_examples=300, deadline=None)
@given(
    turn_model=st.none() | _MODELS,
    match=st.none()
    | st.builds(
        Match,
        model=st.none() | _MODELS,
        contains=st.none() | _WORDS,
        regex=st.none() | st.sampled_from(["^go", "o$", "a.b", r"x\+"]),
        tools=st.lists(st.sampled_from(["search", "read"]), max_size=2).map(tuple),
    ),
    model=_MODELS,
    messages=st.lists(
        st.builds(Message, st.sampled_from(["user", "system", "assistant"]), _WORDS),
        max_size=3,
    ),
    tools=st.lists(st.sampled_from(["search", "read"]), max_size=2).map(tuple),
)
def test_matching_is_exactly_having_no_mismatch_to_explain(
    turn_model: str | None,
    match: Match | None,
    model: str,
    messages: list[Message],
    tools: tuple[str, ...],
) -> None:
    # The mock matches with a check that formats nothing; the error explains with one that
    # words every failed check. Both must agree on every request.
    request = Request(model, tuple(messages), tools)
    reasons = _llm_errors.mismatches(match, turn_model, request)
    last = request.last_user_message
    assert _llm_errors.matches(match, turn_model, request, last) is (not reasons)
    turn = Turn(text="yes", cost_usd=0.0, model=turn_model, match=match)
    llm = MockLLM([turn], strict=False, allow_unused=True, model=model)
    assert (llm.complete(messages, tools=tools).text == "yes") is (not reasons)


def test_non_strict_answers_unmatched_requests_with_an_empty_reply() -> None:
    llm = MockLLM(strict=False, latency_s=0.5, model="unknown-model")
    reply = llm.complete("anything")
    assert (reply.text, reply.tool_calls, reply.input_tokens, reply.output_tokens) == ("", (), 0, 0)
    assert (reply.cost_usd, reply.latency_s, reply.model) == (0.0, 0.5, "unknown-model")
    assert len(llm.calls) == 1


# --- unconsumed turns ------------------------------------------------------------------------


def test_verify_lists_unconsumed_turns() -> None:
    tool = ToolCallRequest("write_file", {"path": "b.py"})
    turns = [Turn(text="a"), Turn(text="b"), Turn(tool_calls=(tool,))]
    llm = MockLLM(turns)
    llm.complete("go")

    assert llm.unconsumed() == turns[1:]
    with pytest.raises(UnconsumedTurnsError) as info:
        llm.verify()
    text = str(info.value)
    assert "2 scripted turns never used after 1 request" in text
    assert "turn 2: text 'b'" in text
    assert "turn 3: tool calls write_file(path='b.py')" in text
    assert "allow_unused=True" in text
    assert info.value.turns == tuple(turns[1:])

    MockLLM(turns, allow_unused=True).verify()


def test_verify_reports_injected_errors_never_reached() -> None:
    llm = MockLLM()
    llm.inject_error(4, "timeout")
    with pytest.raises(UnconsumedTurnsError, match=r"inject_error\(4, 'timeout'\)"):
        llm.verify()


# --- pricing ---------------------------------------------------------------------------------


def test_cost_from_default_pricing_per_million_tokens() -> None:
    reply = MockLLM([Turn(input_tokens=1000, output_tokens=500)]).complete("x")
    assert reply.cost_usd == 0.0075  # 1000 * 2.50 / 1e6 + 500 * 10.00 / 1e6


def test_pricing_overrides_and_extends_the_defaults() -> None:
    pricing = {"gpt-4o": Price(1.0, 2.0), "local-llama": Price(0.1, 0.1)}
    turns = [Turn(input_tokens=1_000_000, output_tokens=1_000_000)] * 2
    llm = MockLLM(turns, pricing=pricing)
    assert llm.complete("x").cost_usd == 3.0
    assert llm.complete("x", model="local-llama").cost_usd == 0.2


def test_explicit_turn_cost_wins_even_for_unknown_models() -> None:
    llm = MockLLM([Turn(input_tokens=10, cost_usd=0.25)], model="mystery")
    assert llm.complete("x").cost_usd == 0.25


def test_unknown_model_without_cost_is_a_pricing_error() -> None:
    llm = MockLLM([Turn(input_tokens=10)])
    with pytest.raises(PricingError) as info:
        llm.complete("x", model="gpt-4o-2024-08-06")
    text = str(info.value)
    assert "'gpt-4o-2024-08-06'" in text
    assert "add it under llm.pricing in the scenario, or give the turn an explicit cost" in text
    assert "did you mean 'gpt-4o'" in text
    assert info.value.model == "gpt-4o-2024-08-06"
    assert llm.unconsumed() == [Turn(input_tokens=10)]  # not consumed by a failed pricing


# --- latency ---------------------------------------------------------------------------------


def test_latency_advances_the_clock() -> None:
    clock = StubClock()
    turns = [Turn(latency_s=2.5), Turn(), Turn(error=LLMErrorKind.TIMEOUT, latency_s=30)]
    llm = MockLLM(turns, latency_s=1.0, clock=clock)

    assert llm.complete("a").latency_s == 2.5
    assert llm.complete("b").latency_s == 1.0
    with pytest.raises(LLMTimeoutError):
        llm.complete("c")

    assert clock.steps == [2.5, 1.0, 30]
    assert [c.latency_s for c in llm.calls] == [2.5, 1.0, 30]


def test_async_complete_advances_the_clock_and_yields_once() -> None:
    clock = StubClock()
    llm = MockLLM([Turn(text="a", latency_s=3), Turn(text="b")], clock=clock, latency_s=1)
    order: list[str] = []

    async def other() -> None:
        order.append("other ran")

    async def main() -> list[str]:
        task = asyncio.create_task(other())
        first = await llm.acomplete("one")
        order.append("first reply")
        second = await llm.acomplete("two")
        await task
        return [first.text, second.text]

    assert asyncio.run(main()) == ["a", "b"]
    assert order == ["other ran", "first reply"]
    assert clock.now == 4


def test_async_errors_are_raised_too() -> None:
    llm = MockLLM([Turn(error=LLMErrorKind.SERVER_ERROR)])
    with pytest.raises(ServerError):
        asyncio.run(llm.acomplete("x"))


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        (LLMErrorKind.RATE_LIMIT, RateLimitError),
        (LLMErrorKind.TIMEOUT, LLMTimeoutError),
        (LLMErrorKind.SERVER_ERROR, ServerError),
        (LLMErrorKind.MALFORMED_TOOL_CALL, MalformedToolCallError),
    ],
)
def test_scripted_errors(kind: LLMErrorKind, error_type: type[LLMError]) -> None:
    llm = MockLLM([Turn(error=kind, input_tokens=50), Turn(text="recovered", input_tokens=10)])

    with pytest.raises(error_type) as info:
        llm.complete("try")

    error = info.value
    assert (error.kind, error.call_index, error.request) == (kind, 1, llm.requests[0])
    assert f"simulated {kind.value} on LLM request 1" in str(error)
    assert "scripted by turn 1" in str(error)
    assert not isinstance(error, AssertionError)
    assert llm.calls[0].error == kind.value
    assert (llm.calls[0].input_tokens, llm.calls[0].cost_usd) == (0, 0.0)
    assert llm.complete("retry").text == "recovered"  # the error turn was consumed


def test_injected_error_replaces_serving_without_consuming_the_script() -> None:
    clock = StubClock()
    llm = MockLLM([Turn(text="one"), Turn(text="two")], clock=clock, latency_s=0.1)
    llm.inject_error(2, "rate_limit")

    assert llm.complete("a").text == "one"
    with pytest.raises(RateLimitError) as info:
        llm.complete("b")
    assert info.value.call_index == 2
    assert "inject_error(2, 'rate_limit')" in str(info.value)
    assert llm.complete("b again").text == "two"
    assert [c.error for c in llm.calls] == [None, "rate_limit", None]
    assert clock.steps == [0.1, 0.1, 0.1]
    llm.verify()


def test_inject_error_validates_its_arguments() -> None:
    llm = MockLLM([Turn()])
    with pytest.raises(ValueError, match="expected one of 'rate_limit'"):
        llm.inject_error(1, "explode")
    with pytest.raises(ValueError, match=">= 1"):
        llm.inject_error(0, "timeout")
    llm.complete("x")
    with pytest.raises(ValueError, match="request 1 was already served"):
        llm.inject_error(1, LLMErrorKind.TIMEOUT)


# --- records and listeners -------------------------------------------------------------------


def test_listeners_receive_every_llm_call() -> None:
    seen: list[LLMCall] = []
    call = ToolCallRequest("search", {"q": "x"})
    llm = MockLLM(
        [
            Turn(text="t", tool_calls=(call,), input_tokens=100, output_tokens=20, latency_s=2),
            Turn(error=LLMErrorKind.RATE_LIMIT),
        ]
    )
    llm.add_listener(seen.append)

    llm.complete("hello", model="gpt-4o-mini")
    with pytest.raises(RateLimitError):
        llm.complete("again")

    expected = LLMCall(
        model="gpt-4o-mini",
        request_digest=llm.requests[0].digest,
        input_tokens=100,
        output_tokens=20,
        cost_usd=0.000027,
        latency_s=2,
        prompt="hello",
        text="t",
        tool_calls=(call,),
    )
    assert seen == [expected, llm.calls[1]]
    assert seen == llm.calls
    assert llm.calls[1].error == "rate_limit"


def test_requests_and_calls_are_copies() -> None:
    llm = MockLLM([Turn()])
    llm.complete("x")
    llm.requests.clear()
    llm.calls.clear()
    assert len(llm.requests) == len(llm.calls) == 1


def test_digest_is_stable_and_ignores_sampling_parameters() -> None:
    llm = MockLLM(rules=[Rule(Match(), Turn())])
    llm.complete("hi", tools=["t"])
    llm.complete([{"role": "user", "content": "hi"}], tools=[{"name": "t"}], max_tokens=9, seed=1)
    llm.complete("hi", tools=["t"], model="gpt-4.1")
    llm.complete("hi!", tools=["t"])

    first, second, other_model, other_text = (r.digest for r in llm.requests)
    assert first == second
    assert first != other_model and first != other_text
    assert first == digest(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": ["t"]}
    )
    assert llm.requests[1].max_tokens == 9 and llm.requests[1].params == {"seed": 1}
    assert [c.request_digest for c in llm.calls] == [r.digest for r in llm.requests]


# --- request shapes --------------------------------------------------------------------------


def test_tool_names_come_from_names_or_schema_dicts() -> None:
    llm = MockLLM(strict=False)
    openai = {"type": "function", "function": {"name": "run_tests", "parameters": {}}}
    anthropic = {"name": "read_file", "input_schema": {}}
    llm.complete("x", tools=["search", openai, anthropic])
    assert llm.requests[0].tools == ("search", "run_tests", "read_file")
    with pytest.raises(TypeError, match=r"'name' or 'function\.name'"):
        llm.complete("x", tools=[{"type": "function"}])


def test_messages_as_text_dicts_or_message_objects() -> None:
    llm = MockLLM(strict=False)
    llm.complete("just text")
    llm.complete(
        [
            Message("system", "be brief"),
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": None},
            {"role": "user", "content": [{"type": "text", "text": "sec"}, "ond"]},
        ]
    )
    llm.complete({"role": "user", "content": "single dict"})
    llm.complete([{"role": "system", "content": "no user"}])

    texts, many, single, no_user = llm.requests
    assert texts.messages == (Message("user", "just text"),)
    assert many.messages[2] == Message("assistant", "")
    assert many.last_user_message == "second"
    assert single.last_user_message == "single dict"
    assert no_user.last_user_message == ""
    with pytest.raises(TypeError, match="'role'"):
        llm.complete([{"content": "no role"}])


def test_request_defaults() -> None:
    request = Request(model="m", messages=())
    assert (request.tools, request.max_tokens, request.params) == ((), None, {})


def test_constructor_rejects_misplaced_script_items() -> None:
    with pytest.raises(TypeError, match=r"turns\[0\]"):
        MockLLM([Rule(Match(), Turn())])  # type: ignore[list-item]


def test_script_appends_turns_and_rules_after_construction() -> None:
    llm = MockLLM(model="gpt-4o")
    llm.script(Turn(text="first")).script(Rule(Match(contains="again"), Turn(text="rule"), times=1))
    assert llm.complete("hello").text == "first"
    assert llm.complete("again please").text == "rule"
    with pytest.raises(UnmatchedRequestError):
        llm.complete("again please")
    with pytest.raises(TypeError, match="expected a Turn or a Rule"):
        llm.script("not a turn")  # type: ignore[arg-type]


def test_turn_error_may_be_given_as_text() -> None:
    llm = MockLLM([Turn(error="rate_limit")])  # type: ignore[arg-type]
    with pytest.raises(RateLimitError):
        llm.complete("hi")
    with pytest.raises(ValueError, match="expected one of"):
        Turn(error="rate_limt")  # type: ignore[arg-type]
