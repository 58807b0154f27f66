"""The reference loop runtime: the lab's own small, correct implementation of the loop contract.

A step function ``state -> state`` (sync or async, optionally taking a :class:`StepContext`)
runs under a :class:`Budget` with convergence rules, stall detection, backtracking to the best
checkpoint, retries of provider errors, and a durable checkpoint after every step. Resume
continues from the last committed step with the budget intact: what was spent is read back
from the checkpoint and never granted again, and a step whose estimated cost exceeds what is
left is not started. It is the default runtime of scenarios and the executable spec the other
runtimes' adapters are compared with.

A plain state is checkpointed whole every step (O(state) per step). The growing part of a state
belongs in a :class:`~pytest_loom.transcript.Transcript`: a step then checkpoints only the items
it appended, the state row holds a marker in the transcript's place (its length and chained
digest, so the state digest still covers every item), and resume loads the items lazily.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FunctionType
from typing import TYPE_CHECKING, Any

import orjson

from .budget import Budget, Spend
from .context import BudgetStop, StepContext
from .llm import LLMError, MockLLM
from .record import (
    RECORD_VERSION,
    BudgetLimit,
    Event,
    LLMCall,
    RunRecord,
    RuntimeInfo,
    Step,
    Stop,
    StopReason,
    step_from_dict,
    stop_from_dict,
    sum_usd,
    totals_of,
)
from .store import CheckpointError, CheckpointStore, Items, StepRow
from .transcript import Transcript, restore

if TYPE_CHECKING:
    from .convergence import Convergence

RUNTIME_NAME = "reference"
RUNTIME_VERSION = "1"

StepFn = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Done:
    """Return ``Done(state)`` from a step to end the run as ``completed``."""

    state: Any


_PLAIN = frozenset({dict, list, tuple, str, bytes, int, float, bool, type(None), Done})
"""What steps return that is never awaitable: the check for a coroutine skips them."""


class Stalled(Exception):
    """Raise from a step to end the run as ``stalled`` (the loop knows it cannot progress)."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended, without loading its history; ``Loop.record(run_id)`` builds the record."""

    run_id: str
    stop: Stop
    state: Any
    spend: Spend
    steps: int


@dataclass(slots=True)
class _Carry:
    """What each checkpoint carries besides the state, so resume needs only the last row.

    :func:`_carry_record` is how a checkpoint stores it.
    """

    spend: Spend = field(default_factory=Spend)
    best: tuple[int, float] | None = None
    max_step_usd: float = 0.0
    max_step_tokens: int = 0
    unchanged: int = 0
    backtracks: int = 0
    scores: list[float] = field(default_factory=list)
    digest: str = ""

    def add_step(self, before: Spend, usd: float, tokens: int, end: float) -> None:
        """Account for a step that found ``before`` spent, cost ``usd`` and ``tokens`` and ended
        at ``end`` (seconds since the run began)."""
        self.spend = Spend(
            # sum_usd rounds; a step that cost nothing leaves the (rounded) total as it is.
            sum_usd(before.usd, usd) if usd else before.usd,
            before.iterations + 1,
            before.tokens + tokens,
            end,
        )
        if usd > self.max_step_usd:
            self.max_step_usd = usd
        if tokens > self.max_step_tokens:
            self.max_step_tokens = tokens


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def _dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise TypeError(f"loop state must be JSON-serialisable to be checkpointed: {exc}") from None


def _collector(found: list[Transcript]) -> Callable[[Any], Any]:
    """An orjson ``default`` that writes each transcript as its marker and notes it in ``found``."""

    def default(value: Any) -> Any:
        if type(value) is Transcript:
            found.append(value)
            return value._marker()
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")

    return default


def _transcript_rows(
    store: CheckpointStore, found: list[Transcript]
) -> tuple[list[int], list[Items]]:
    """The store keys of the state's transcripts (in marker order) and their unsaved items.

    A transcript continues its key when the store holds exactly the items it has saved;
    one restored from an older state of the store (backtracking, or a resume after one) that
    has grown since gets a new key continuing the old one's prefix; any other is new.
    """
    keys: list[int] = []
    items: list[Items] = []
    seen: set[int] = set()
    for transcript in found:
        if id(transcript) not in seen:
            seen.add(id(transcript))
            saved = transcript._saved
            if transcript._owner is not store:
                key, start = store.new_transcript(), 0
            elif store.transcript_length(transcript._key) != saved:
                key, start = store.new_transcript(transcript._key, saved), saved
            else:
                key, start = transcript._key, saved
            if start < len(transcript):
                items.append((key, start, transcript._unsaved(start)))
            transcript._saved_as(store, key)
        keys.append(transcript._key)
    return keys, items


class Loop:
    """A refine-until-done loop with durable per-step checkpoints.

    ``step(state)`` or ``step(state, ctx)`` returns the next state, or ``Done(state)``. Pass
    ``scorer`` to score states, ``converge_on`` rules (see :mod:`pytest_loom.convergence`),
    ``stall_after=N`` to stop after N steps that left the state unchanged, ``backtrack=True``
    to return to the best-scoring checkpoint when a step fails or scores worse, ``retries=N``
    to retry a step whose LLM call failed, and ``estimate`` to override the default cost
    estimate of the next step (the most expensive step so far).
    """

    def __init__(
        self,
        step: StepFn,
        *,
        budget: Budget | None = None,
        store: CheckpointStore,
        llm: MockLLM | None = None,
        clock: Any = None,
        scorer: Callable[[Any], float] | None = None,
        converge_on: Convergence | Sequence[Convergence] = (),
        stall_after: int | None = None,
        backtrack: bool = False,
        max_backtracks: int = 3,
        retries: int = 0,
        estimate: Callable[[Any], tuple[float, int]] | None = None,
        step_seconds: float = 0.0,
        scenario: str = "",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.step = step
        self.budget = budget or Budget()
        self.store = store
        self.llm = llm
        self.clock = clock
        self.scorer = scorer
        self.converge_on: tuple[Convergence, ...] = (
            tuple(converge_on) if isinstance(converge_on, Sequence) else (converge_on,)
        )
        self.stall_after = stall_after
        self.backtrack = backtrack
        self.max_backtracks = max_backtracks
        self.retries = retries
        self.estimate = estimate
        self.step_seconds = step_seconds
        self.scenario = scenario
        self.options = options or {}
        self._window = max((r.window for r in self.converge_on), default=0)
        self._takes_ctx = _takes_context(step)
        self._ctx: StepContext | None = None
        self._live: list[Transcript] = []
        """The transcripts of the last checkpointed state: a failed step's appends are undone."""
        self.before_step: Callable[[int], None] | None = None
        """Called with the step number as each step starts (the lab injects faults here)."""
        if llm is not None:
            llm.add_listener(_call_recorder(weakref.ref(self)))

    # -- entry points -------------------------------------------------------------------------

    def run(self, state: Any, *, run_id: str | None = None) -> RunOutcome:
        """Start a new run from ``state``; sync and async steps alike."""
        return self._execute(self._drive(*self._begin(run_id, state), resumed=False))

    def resume(self, run_id: str) -> RunOutcome:
        """Continue ``run_id`` from its last committed step, with the budget already spent."""
        return self._execute(self._resume(run_id))

    async def arun(self, state: Any, *, run_id: str | None = None) -> RunOutcome:
        return await self._drive(*self._begin(run_id, state), resumed=False)

    async def aresume(self, run_id: str) -> RunOutcome:
        return await self._resume(run_id)

    def _begin(self, run_id: str | None, state: Any) -> tuple[str, Any, _Carry, int]:
        """Register the run and checkpoint its initial state as step 0.

        So a run that dies before its first step commits can still be resumed.
        """
        run_id = run_id or f"run-{len(self.store.runs()) + 1}"
        self.store.begin_run(
            run_id, scenario=self.scenario, runtime=RUNTIME_NAME, budget=orjson.dumps(self.budget)
        )
        found: list[Transcript] = []
        state_bytes = _dumps(state, _collector(found))
        carry = _Carry(digest=_digest(state_bytes))
        keys, items = _transcript_rows(self.store, found)
        record = {"step": {"state_digest": carry.digest}, "carry": _carry_record(carry, keys)}
        self.store.commit_step(run_id, 0, state_bytes, orjson.dumps(record), items=items)
        return run_id, state, carry, 0

    def _execute(self, coro: Awaitable[RunOutcome]) -> RunOutcome:
        if _is_async(self.step):
            return asyncio.run(_as_coroutine(coro))
        # A sync step never suspends: drive the coroutine by hand, no event loop needed.
        gen = coro.__await__()
        try:
            gen.send(None)
        except StopIteration as stop:
            result: RunOutcome = stop.value
            return result
        gen.close()
        raise RuntimeError("a sync step awaited something: make the step function async")

    async def _resume(self, run_id: str) -> RunOutcome:
        state, carry, n = self._restore(run_id)
        return await self._drive(run_id, state, carry, n, resumed=True)

    def _restore(self, run_id: str) -> tuple[Any, _Carry, int]:
        """What a resume continues from: the last state, its carry and its step number.

        One read of the run and its last step, whatever the length of the history.
        """
        row, last = self.store.run_and_last_step(run_id)
        if row.stop is not None:
            stop = _decode_stop(row.stop)
            if stop.reason is not StopReason.PAUSED:
                raise CheckpointError(
                    f"{self.store.path}: run {run_id!r} already ended ({stop.label}); "
                    "only a paused or crashed run can be resumed"
                )
        if last is None:
            raise CheckpointError(
                f"{self.store.path}: run {run_id!r} has no committed step to resume from; "
                "start it again with run()"
            )
        data = _decode_json(self.store.path, run_id, last.n, last.record)
        carry = _decode_carry(self.store.path, run_id, last.n, data)
        return self._state_of(run_id, last, data), carry, last.n

    def _state_of(self, run_id: str, row: StepRow, data: Mapping[str, Any]) -> Any:
        """The state a step row holds, its transcripts bound to the store (loaded on access)."""
        state = orjson.loads(row.state)
        try:
            keys = data["carry"].get("transcripts")
            if keys is None:
                return state
            return restore(state, keys, self._item_reader, self.store)
        except (AttributeError, KeyError, StopIteration, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{self.store.path}: run {run_id!r} step {row.n}: the state's transcript markers "
                f"do not match its record ({exc!r}); the database is damaged"
            ) from None

    def _item_reader(self, key: int) -> Callable[[int, int], list[bytes]]:
        return functools.partial(self.store.items, key)

    # -- the loop -----------------------------------------------------------------------------

    async def _drive(
        self, run_id: str, state: Any, carry: _Carry, n: int, *, resumed: bool
    ) -> RunOutcome:
        offset = carry.spend.wall_clock
        t0 = time.monotonic()

        def elapsed() -> float:
            return round(offset + time.monotonic() - t0, 9)

        scores: deque[float] = deque(carry.scores, maxlen=max(self._window, 1))
        found: list[Transcript] = []
        default = _collector(found)
        _dumps(state, default)
        self._live = found.copy()
        events: list[str] = [Event.RESUMED] if resumed else []
        stop: Stop | None = None
        finished = False
        while stop is None:
            spend = carry.spend
            if self.budget.wall_clock is not None:
                # Only a wall-clock limit reads the time here; skipping it saves a round() a step.
                spend = Spend(spend.usd, spend.iterations, spend.tokens, elapsed())
            stop = self._budget_stop(spend, carry, state)
            if stop is not None:
                break
            n += 1
            # Positional: keyword arguments would make this call take twice as long.
            ctx = StepContext(n, run_id, self.budget, spend, self.llm, elapsed, self.options)
            start = elapsed()
            new_state, done, error, stop = await self._attempt(ctx, state, events)
            if self.clock is not None and self.step_seconds:
                self.clock.advance(self.step_seconds)
            score = None
            if error is None:
                score = float(self.scorer(new_state)) if self.scorer is not None else None
            else:
                new_state = state
            next_state = new_state
            if self.backtrack and carry.best is not None and carry.backtracks < self.max_backtracks:
                step_failed = stop is not None and stop.reason is StopReason.FAILED
                if step_failed or (score is not None and score < carry.best[1]):
                    best = self.store.step(run_id, carry.best[0])
                    data = _decode_json(self.store.path, run_id, best.n, best.record)
                    next_state = self._state_of(run_id, best, data)
                    events.append(Event.BACKTRACKED)
                    carry.backtracks += 1
                    stop = None
            found.clear()
            new_bytes = _dumps(new_state, default)
            if next_state is new_state:
                state_bytes = new_bytes
            else:
                found.clear()
                state_bytes = _dumps(next_state, default)
            state_digest = _digest(new_bytes)
            carry.unchanged = carry.unchanged + 1 if state_digest == carry.digest else 0
            carry.digest = state_digest
            end = elapsed()
            carry.add_step(spend, ctx.cost_usd, ctx.input_tokens + ctx.output_tokens, end)
            if score is not None:
                scores.append(score)
                carry.scores = list(scores)
                if carry.best is None or score > carry.best[1]:
                    carry.best = (n, score)
            duration = round(end - start, 9)
            usd = carry.spend.usd
            record = _step_record(ctx, start, duration, usd, score, error, state_digest, events)
            events = []
            state = next_state
            if stop is None and (done or self.converge_on or self.stall_after is not None):
                stop = self._after_step(n, state, done, scores, carry.unchanged)
            if stop is None and self._last_iteration(carry.spend):
                # What the next budget check would say (it checks iterations first): saying it
                # now commits it with this step instead of in a transaction of its own.
                stop = Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit.ITERATIONS)
            self._checkpoint(run_id, n, state_bytes, found, record, carry, stop)
            finished = stop is not None
        if not finished:
            self.store.finish_run(run_id, str(stop.reason), orjson.dumps(stop))
        final = Spend(carry.spend.usd, carry.spend.iterations, carry.spend.tokens, elapsed())
        return RunOutcome(run_id, stop, state, final, n)

    def _checkpoint(
        self,
        run_id: str,
        n: int,
        state_bytes: bytes,
        found: list[Transcript],
        record: dict[str, Any],
        carry: _Carry,
        stop: Stop | None,
    ) -> None:
        """Commit step ``n``: its state's JSON, the transcripts ``found`` in it, its record
        and carry, and, with ``stop``, how the run ended.

        The last step and how the run ended commit together: a crash in between cannot leave
        a finished run looking resumable.
        """
        keys: list[int] | None = None
        items: Sequence[Items] = ()
        if found:
            keys, items = _transcript_rows(self.store, found)
            self._live = found.copy()
        elif self._live:
            self._live = []
        data = orjson.dumps({"step": record, "carry": _carry_record(carry, keys)})
        end = None if stop is None else (str(stop.reason), orjson.dumps(stop))
        self.store.commit_step(run_id, n, state_bytes, data, items=items, stop=end)

    async def _attempt(
        self, ctx: StepContext, state: Any, events: list[str]
    ) -> tuple[Any, bool, str | None, Stop | None]:
        """Run one step (with retries): ``(new_state, done, error, stop)``."""
        attempt = 0
        while True:
            self._ctx = ctx
            try:
                if self.before_step is not None:
                    self.before_step(ctx.index)
                result = self.step(state, ctx) if self._takes_ctx else self.step(state)
                if type(result) not in _PLAIN and inspect.isawaitable(result):
                    result = await result
            except BudgetStop as exc:
                self._undo_appends()
                return state, False, str(exc), Stop(StopReason.BUDGET_EXHAUSTED, limit=exc.limit)
            except Stalled as exc:
                self._undo_appends()
                return state, False, None, Stop(StopReason.STALLED, detail=str(exc) or None)
            except LLMError as exc:
                self._undo_appends()
                if attempt < self.retries:
                    attempt += 1
                    events.append(Event.RETRIED)
                    continue
                return state, False, _describe(exc), _failed(exc)
            except Exception as exc:
                self._undo_appends()
                return state, False, _describe(exc), _failed(exc)
            finally:
                self._ctx = None
            if isinstance(result, Done):
                return result.state, True, None, None
            return result, False, None, None

    def _undo_appends(self) -> None:
        """Take back what a step that failed appended to the transcripts of its input state."""
        for transcript in self._live:
            transcript._rollback()

    def _budget_stop(self, spend: Spend, carry: _Carry, state: Any) -> Stop | None:
        limit = spend.exhausted(self.budget)
        if limit is None:
            if self.budget.usd is None and self.budget.tokens is None:
                return None  # no limit an estimate could cross
            usd, tokens = (
                self.estimate(state)
                if self.estimate is not None
                else (carry.max_step_usd, carry.max_step_tokens)
            )
            limit = spend.would_exceed(self.budget, usd=usd, tokens=tokens)
            if limit is not None:
                return Stop(
                    StopReason.BUDGET_EXHAUSTED,
                    limit=limit,
                    detail=f"next step estimated at ${usd:g} / {tokens} tokens exceeds the rest",
                )
            return None
        return Stop(StopReason.BUDGET_EXHAUSTED, limit=limit)

    def _last_iteration(self, spend: Spend) -> bool:
        limit = self.budget.iterations
        return limit is not None and spend.iterations >= limit

    def _after_step(
        self, n: int, state: Any, done: bool, scores: deque[float], unchanged: int
    ) -> Stop | None:
        if done:
            return Stop(StopReason.COMPLETED)
        if self.converge_on:
            from .convergence import Progress  # loaded by whoever made the rules

            progress = Progress(state=state, step=n, scores=tuple(scores))
            for rule in self.converge_on:
                if rule(progress):
                    return Stop(StopReason.CONVERGED, detail=repr(rule))
        if self.stall_after is not None and unchanged >= self.stall_after:
            return Stop(StopReason.STALLED, detail=f"state unchanged for {unchanged} steps")
        return None

    # -- reading runs back --------------------------------------------------------------------

    def record(self, run_id: str) -> RunRecord:
        """The run's canonical record, streamed from the checkpoint store."""
        return build_record(self.store, run_id)


def _call_recorder(loop: weakref.ref[Loop]) -> Callable[[LLMCall], None]:
    """The LLM listener that adds each call to the step in progress.

    It holds the loop weakly: the loop holds the LLM, and a listener holding the loop would
    make a reference cycle, which left every run's objects (its LLM's requests and calls, its
    store) to the cyclic garbage collector instead of freeing them when the run is dropped.
    """

    def record(call: LLMCall) -> None:
        live = loop()
        if live is not None and live._ctx is not None:
            live._ctx.record_llm_call(call)

    return record


def build_record(store: CheckpointStore, run_id: str) -> RunRecord:
    """Rebuild a reference run's :class:`RunRecord` from its checkpoints."""
    row = store.run(run_id)
    steps: list[Step] = []
    last: tuple[int, Any] | None = None
    for n, raw in store.records(run_id):
        data = _decode_json(store.path, run_id, n, raw)
        steps.append(_decode_step(store.path, run_id, n, data))
        last = n, data
    # Only the last step's carry says anything about the record: the run's elapsed time.
    carry = _Carry() if last is None else _decode_carry(store.path, run_id, *last)
    if row.stop is None:
        stop = Stop(
            StopReason.PAUSED,
            detail=f"the run stopped after step {len(steps)} without finishing (crashed?)",
            raw_status=row.status,
        )
    else:
        stop = _decode_stop(row.stop)
    return RunRecord(
        scenario=row.scenario,
        runtime=RuntimeInfo(RUNTIME_NAME, RUNTIME_VERSION),
        steps=tuple(steps),
        totals=totals_of(steps, carry.spend.wall_clock),
        stop=stop,
        run_id=run_id,
        version=RECORD_VERSION,
    )


def _is_async(step: StepFn) -> bool:
    return inspect.iscoroutinefunction(step) or inspect.iscoroutinefunction(
        vars(type(step)).get("__call__")
    )


def _takes_context(step: StepFn) -> bool:
    """Whether ``step`` takes a second positional argument: the :class:`StepContext`."""
    if type(step) is FunctionType and not step.__dict__:
        # A plain function (nothing such as functools.wraps' __wrapped__ set on it): its code
        # object answers the same as inspect.signature, which costs up to 80 µs when cold.
        code = step.__code__
        return code.co_argcount >= 2 or bool(code.co_flags & inspect.CO_VARARGS)
    try:
        params = inspect.signature(step).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failed(exc: Exception) -> Stop:
    return Stop(StopReason.FAILED, error_type=type(exc).__name__, raw_exception=_describe(exc))


async def _as_coroutine(awaitable: Awaitable[RunOutcome]) -> RunOutcome:
    return await awaitable


def _decode_stop(raw: bytes) -> Stop:
    return stop_from_dict(orjson.loads(raw))


# -- checkpoint records ---------------------------------------------------------------------------
#
# A step's row holds its state and the JSON record {"step": {...}, "carry": {...}}. Both parts
# leave out every field at its default, and the carry leaves out what the row already says:
# the step number is the iteration count, and the step's cumulative cost and state digest are
# the carry's. Most fields are empty in most steps, and a smaller row is a cheaper commit (a
# 600-byte row costs about 15% more to commit than a 300-byte one). Both are built as plain
# dicts because orjson serialises frozen, slotted dataclasses such as Step several times slower.


def _step_record(
    ctx: StepContext,
    start: float,
    duration: float,
    cumulative_usd: float,
    score: float | None,
    error: str | None,
    state_digest: str,
    events: list[str],
) -> dict[str, Any]:
    """Step ``ctx.index`` as its checkpoint stores it (:func:`_decode_step` reads it back)."""
    record: dict[str, Any] = {
        "start_s": start,
        "duration_s": duration,
        "state_digest": state_digest,
    }
    if ctx.llm_calls:
        record["llm_calls"] = ctx.llm_calls
    if ctx.tool_calls:
        record["tool_calls"] = ctx.tool_calls
    if ctx.input_tokens:
        record["input_tokens"] = ctx.input_tokens
    if ctx.output_tokens:
        record["output_tokens"] = ctx.output_tokens
    if ctx.cost_usd:
        record["cost_usd"] = ctx.cost_usd
    if cumulative_usd:
        record["cumulative_cost_usd"] = cumulative_usd
    if score is not None:
        record["score"] = score
    if error is not None:
        record["error"] = error
    if events:
        record["events"] = events
    return record


def _carry_record(carry: _Carry, transcripts: list[int] | None) -> dict[str, Any]:
    """The carry as a checkpoint stores it (:func:`_decode_carry` reads it back), with the store
    keys of the state's transcripts, if it has any."""
    spend = carry.spend
    record: dict[str, Any] = {"wall_clock": spend.wall_clock}
    if transcripts is not None:
        record["transcripts"] = transcripts
    if spend.tokens:
        record["tokens"] = spend.tokens
    if carry.best is not None:
        record["best"] = carry.best
    if carry.max_step_usd:
        record["max_step_usd"] = carry.max_step_usd
    if carry.max_step_tokens:
        record["max_step_tokens"] = carry.max_step_tokens
    if carry.unchanged:
        record["unchanged"] = carry.unchanged
    if carry.backtracks:
        record["backtracks"] = carry.backtracks
    if carry.scores:
        record["scores"] = carry.scores
    return record


def _decode_step(path: Any, run_id: str, n: int, data: Mapping[str, Any]) -> Step:
    try:
        return step_from_dict({**data["step"], "index": n})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: run {run_id!r} step {n}: malformed step record ({exc!r})"
        ) from None


def _decode_json(path: Any, run_id: str, n: int, raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _malformed(path, run_id, n, exc) from None


def _malformed(path: Any, run_id: str, n: int, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path}: run {run_id!r} step {n}: malformed checkpoint ({exc!r}); "
        "the database was not written by this pytest-loom or is damaged"
    )


def _decode_carry(path: Any, run_id: str, n: int, data: Any) -> _Carry:
    try:
        step, carry = data["step"], dict(data["carry"])
        carry.pop("transcripts", None)
        spend = Spend(
            usd=step.get("cumulative_cost_usd", 0.0),
            iterations=n,
            tokens=carry.pop("tokens", 0),
            wall_clock=carry.pop("wall_clock"),
        )
        if carry.get("best") is not None:
            carry["best"] = tuple(carry["best"])
        return _Carry(spend, digest=step["state_digest"], **carry)
    except (KeyError, TypeError, ValueError) as exc:
        raise _malformed(path, run_id, n, exc) from None
