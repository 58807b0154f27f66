"""What a step function sees: :class:`StepContext`, with the LLM, tools and the budget.

The reference runtime hands one to every step. Everything the step spends goes through it (LLM
calls, tool calls, extra cost), so the run record accounts for it and the budget is checked
before each LLM call, not only between steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ._toolresults import kept, kept_error, serve
from .budget import Budget, Spend
from .record import BudgetLimit, LLMCall, ToolCall, digest, sum_usd

if TYPE_CHECKING:
    from .llm import MockLLM, Response


class BudgetStop(BaseException):
    """Raised inside a step when the budget ran out before an LLM call could be made.

    A ``BaseException``, like ``asyncio.CancelledError``: a step's ``except Exception`` must
    not swallow the budget check.
    """

    def __init__(self, limit: BudgetLimit) -> None:
        super().__init__(f"budget exhausted ({limit}) before the next LLM call")
        self.limit = limit


class StepContext:
    """Per-step handle: ``ctx.llm``, ``ctx.tool(...)``, ``ctx.add_cost(...)``, ``ctx.spent``."""

    __slots__ = (
        "_cost_usd",
        "_elapsed",
        "_extra_usd",
        "_input_tokens",
        "_llm",
        "_output_tokens",
        "_spent_before",
        "budget",
        "index",
        "llm_calls",
        "options",
        "run_id",
        "tool_calls",
    )

    def __init__(
        self,
        index: int,
        run_id: str,
        budget: Budget,
        spent_before: Spend,
        llm: MockLLM | None,
        elapsed: Callable[[], float],
        options: Mapping[str, Any],
    ) -> None:
        self.index = index
        self.run_id = run_id
        self.budget = budget
        self.options = options
        self.llm_calls: list[LLMCall] = []
        self.tool_calls: list[ToolCall] = []
        self._llm = llm
        self._spent_before = spent_before
        self._elapsed = elapsed
        # This step's spend, kept current as calls and costs arrive (read far more often).
        self._extra_usd = 0.0
        self._cost_usd = 0.0
        self._input_tokens = 0
        self._output_tokens = 0

    @property
    def llm(self) -> StepLLM:
        """The lab's LLM for this step (the mock, or a recording)."""
        if self._llm is None:
            raise RuntimeError(
                "this loop has no LLM: pass llm= to Loop, or build it with lab.loop(...)"
            )
        return StepLLM(self)

    @property
    def cost_usd(self) -> float:
        return self._cost_usd

    @property
    def input_tokens(self) -> int:
        return self._input_tokens

    @property
    def output_tokens(self) -> int:
        return self._output_tokens

    @property
    def spent(self) -> Spend:
        """What the run has used, including this step so far."""
        before = self._spent_before
        return Spend(
            usd=sum_usd(before.usd, self._cost_usd),
            iterations=before.iterations,
            tokens=before.tokens + self._input_tokens + self._output_tokens,
            wall_clock=self._elapsed(),
        )

    def add_cost(self, usd: float = 0.0, *, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """Account for spend the lab cannot see (an embedding call, a paid API)."""
        self._extra_usd = sum_usd(self._extra_usd, usd)
        self._input_tokens += input_tokens
        self._output_tokens += output_tokens
        self._update_cost()

    def record_llm_call(self, call: LLMCall) -> None:
        """Account for an LLM call the lab served during this step (called by the runtime)."""
        self.llm_calls.append(call)
        self._input_tokens += call.input_tokens
        self._output_tokens += call.output_tokens
        self._update_cost()

    def _update_cost(self) -> None:
        # Always the same sum in the same order (extra cost first, then the calls), so the
        # figure does not depend on when add_cost was called.
        self._cost_usd = sum_usd(self._extra_usd, *[c.cost_usd for c in self.llm_calls])

    def tool(self, name: str, fn: Callable[..., Any], /, **args: Any) -> Any:
        """Run ``fn(**args)`` as the tool ``name`` and record the call (and its failure).

        In the replayed steps of a replay, the recorded result is given back (or the recorded
        error raised) without calling ``fn``, when the recording holds it."""
        recorded = _copy(args)  # as called: the step may mutate the arguments afterwards
        if self._llm is not None and (replayed := self._llm.replayed_tool(name, recorded)):
            self.tool_calls.append(replayed)
            return serve(replayed)
        try:
            result = fn(**args)
        except Exception as exc:
            self.tool_calls.append(
                ToolCall(name, recorded, "error", digest(repr(exc)), kept_error(exc))
            )
            raise
        self.tool_calls.append(ToolCall(name, recorded, "ok", digest(result), kept(result)))
        return result

    def check_budget(self) -> None:
        """Raise :class:`BudgetStop` if a limit is already reached (called before each LLM call)."""
        budget = self.budget
        if budget.usd is None and budget.tokens is None and budget.wall_clock is None:
            return  # the step already counts against iterations: nothing else to run out of
        limit = self.spent.exhausted(budget)
        if limit is not None and limit is not BudgetLimit.ITERATIONS:
            raise BudgetStop(limit)


class StepLLM:
    """The step's view of the LLM: checks the budget, then forwards to the lab's LLM."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: StepContext) -> None:
        self._ctx = ctx

    def complete(
        self,
        messages: str | Sequence[Any],
        *,
        model: str | None = None,
        tools: Sequence[Any] = (),
        max_tokens: int | None = None,
        **params: Any,
    ) -> Response:
        ctx = self._ctx
        ctx.check_budget()
        assert ctx._llm is not None
        return ctx._llm.complete(
            messages, model=model, tools=tools, max_tokens=max_tokens, **params
        )

    async def acomplete(
        self,
        messages: str | Sequence[Any],
        *,
        model: str | None = None,
        tools: Sequence[Any] = (),
        max_tokens: int | None = None,
        **params: Any,
    ) -> Response:
        ctx = self._ctx
        ctx.check_budget()
        assert ctx._llm is not None
        return await ctx._llm.acomplete(
            messages, model=model, tools=tools, max_tokens=max_tokens, **params
        )


def _copy(args: Mapping[str, Any]) -> Mapping[str, Any]:
    """A deep, JSON-shaped copy of tool arguments (values JSON cannot hold become their repr)."""
    copied: Mapping[str, Any] = orjson.loads(
        orjson.dumps(args, default=repr, option=orjson.OPT_NON_STR_KEYS)
    )
    return copied
