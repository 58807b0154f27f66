"""The lab's fake clock: one per test, moving every clock an agent loop reads, together.

Budgets, timeouts, retry backoff and timestamps in a run record must not depend on how fast
the machine is, and a scenario that waits an hour must finish in milliseconds. A started
:class:`FakeClock` owns the wall clock (``time.time``, ``datetime.now``, ``date.today``), the
monotonic clocks (``time.monotonic``, ``perf_counter``, and so asyncio's ``loop.time()``),
``time.sleep``, ``asyncio.sleep`` and asyncio timers; they only move when the clock is
advanced, slept on, or when an event loop would otherwise wait for a timer. Values start at
fixed points, so the same run gives the same numbers, byte for byte. How it is patched is in
:mod:`pytest_loom._clockpatch`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import TracebackType

from . import _clockpatch
from ._clockpatch import NS_PER_S

__all__ = ["MONOTONIC_START", "ClockError", "FakeClock"]

MONOTONIC_START = 1_000.0
"""Where fake ``time.monotonic()`` and ``time.perf_counter()`` start (seconds)."""

_MONOTONIC_START_NS = round(MONOTONIC_START * NS_PER_S)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class ClockError(RuntimeError):
    """A fake clock was used in a way that cannot work (two running at once)."""


def _parse_when(when: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text; naive means UTC."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    elif not isinstance(when, datetime):
        raise TypeError(f"expected a datetime or ISO 8601 text, not {type(when).__name__}")
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _wall_ns(when: datetime | str) -> int:
    return (_parse_when(when) - _EPOCH) // _US * 1_000


def _duration_ns(seconds: float | timedelta) -> int:
    ns = seconds // _US * 1_000 if isinstance(seconds, timedelta) else _clockpatch.to_ns(seconds)
    if ns < 0:
        raise ValueError(f"a clock only moves forward: got {seconds!r}")
    return ns


class FakeClock:
    """A fake clock for one test: wall, monotonic, perf_counter, sleeps and asyncio timers.

    ``start`` is the wall-clock time it shows first (an aware datetime or ISO text; naive means
    UTC); ``step`` is how many seconds :meth:`tick` moves it. ``time.monotonic()`` and
    ``time.perf_counter()`` start at :data:`MONOTONIC_START`. Reading or moving the clock works
    whether or not it is started; only a started clock is what the patched functions show.
    """

    def __init__(
        self, start: datetime | str = "2026-01-01T00:00:00Z", *, step: float = 1.0
    ) -> None:
        self._step_ns = _duration_ns(step)
        self._step = step
        self._wall = _wall_ns(start)
        self._elapsed = 0
        self._lock = threading.Lock()

    # --- lifecycle ---

    def start(self) -> FakeClock:
        """Install the patches; raises :class:`ClockError` if a clock already runs."""
        with self._lock:
            if not _clockpatch.install(self, self._wall):
                raise ClockError(
                    "a FakeClock is already running: stop it first, or use the loom_clock fixture"
                )
        return self

    def rebind(self) -> None:
        """Fake the clock functions that modules imported since :meth:`start` bound at import
        (``from time import monotonic``, a dataclass ``default_factory=time.monotonic``).

        The lab calls it after loading a scenario's entry point, which may import a runtime.
        """
        _clockpatch.refresh(self)

    def stop(self) -> None:
        """Undo every patch (idempotent). The clock keeps its values and can start again."""
        with self._lock:
            _clockpatch.uninstall(self)

    def __enter__(self) -> FakeClock:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether this clock is the one the patched functions show."""
        return _clockpatch.active() is self

    # --- reading ---

    @property
    def step(self) -> float:
        """Seconds one :meth:`tick` advances."""
        return self._step

    def now(self) -> datetime:
        """The fake wall clock, as an aware UTC datetime (microsecond precision)."""
        return _EPOCH + timedelta(microseconds=self._wall // 1_000)

    def time(self) -> float:
        """Fake ``time.time()``."""
        return self._wall / NS_PER_S

    def time_ns(self) -> int:
        """Fake ``time.time_ns()``."""
        return self._wall

    def monotonic(self) -> float:
        """Fake ``time.monotonic()``."""
        return self.monotonic_ns() / NS_PER_S

    def monotonic_ns(self) -> int:
        """Fake ``time.monotonic_ns()``."""
        return _MONOTONIC_START_NS + self._elapsed

    def perf_counter(self) -> float:
        """Fake ``time.perf_counter()``."""
        return self.perf_counter_ns() / NS_PER_S

    def perf_counter_ns(self) -> int:
        """Fake ``time.perf_counter_ns()`` (moves with monotonic)."""
        return _MONOTONIC_START_NS + self._elapsed

    @property
    def elapsed(self) -> float:
        """Seconds advanced (by advance, tick, sleep or asyncio timers) since construction."""
        return self._elapsed / NS_PER_S

    # --- moving ---

    def advance(self, seconds: float | timedelta) -> None:
        """Move wall, monotonic, perf_counter and loop time forward; negative is a ValueError."""
        self._advance_ns(_duration_ns(seconds))

    def tick(self) -> None:
        """``advance(self.step)``."""
        self._advance_ns(self._step_ns)

    def sleep(self, seconds: float) -> None:
        """What fake ``time.sleep`` does: advance, without waiting."""
        if isinstance(seconds, int | float) and seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self._advance_ns(_duration_ns(seconds))

    def move_to(self, when: datetime | str) -> None:
        """Set the wall clock only (it may go backwards, like an NTP jump); monotonic stays."""
        target = _wall_ns(when)
        with self._lock:
            delta, self._wall = target - self._wall, target
            if self.running:
                _clockpatch.shift_wall(delta)

    def _advance_ns(self, ns: int) -> None:
        with self._lock:
            self._wall += ns
            self._elapsed += ns
            if self.running:
                _clockpatch.shift_wall(ns)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<FakeClock {self.now().isoformat()} monotonic={self.monotonic()} {state}>"
