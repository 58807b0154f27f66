"""Tests of the fake clock: every clock moves together, patches bound at import, asyncio, undo.

Real time is only read through ``_clockpatch.real_*``, to check that little of it passed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import selectors
import statistics
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pytest_loom import _clockpatch as cp
from pytest_loom.clock import MONOTONIC_START, ClockError, FakeClock

# Kept in a dict, not as module globals: the sweep would rebind globals that are these.
REAL = {
    "monotonic": time.monotonic,
    "monotonic_ns": time.monotonic_ns,
    "perf_counter": time.perf_counter,
    "perf_counter_ns": time.perf_counter_ns,
    "sleep": time.sleep,
    "asyncio.sleep": asyncio.sleep,
    "time": time.time,
}
START = datetime(2026, 1, 1, tzinfo=UTC)
START_TS = 1_767_225_600


@dataclasses.dataclass
class Stamped:
    """Defined at import, before any clock starts: its factory is the real monotonic."""

    label: str = "x"
    at: float = dataclasses.field(default_factory=time.monotonic)


@dataclasses.dataclass
class StampedChild(Stamped):
    extra: int = 0


@pytest.fixture
def real_timer() -> Iterator[None]:
    """Asserts on teardown that little real time passed in the test."""
    began = cp.real_perf_counter()
    yield
    assert cp.real_perf_counter() - began < 2.0


@pytest.fixture(autouse=True)
def _no_clock_left_running() -> Iterator[None]:
    yield
    assert cp.active() is None, "a test left a FakeClock running"
    assert time.monotonic is REAL["monotonic"]


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    (tmp_path / f"{name}.py").write_text(
        "import dataclasses, time\n"
        "from asyncio import sleep as asleep\n"
        "from time import monotonic, monotonic_ns, perf_counter, perf_counter_ns, sleep\n"
        "from time import time as wall\n"
        "\n"
        "@dataclasses.dataclass\n"
        "class Ledger:\n"
        "    start: float = dataclasses.field(default_factory=monotonic)\n"
        "    perf: float = dataclasses.field(default_factory=time.perf_counter)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


# --- everything moves together -------------------------------------------------------------


def test_starting_values_are_fixed() -> None:
    with FakeClock() as clock:
        assert time.time() == START_TS
        assert time.time_ns() == START_TS * 1_000_000_000
        assert time.monotonic() == MONOTONIC_START == 1000.0
        assert time.perf_counter() == MONOTONIC_START
        assert datetime.now(UTC) == START == clock.now()
        assert clock.elapsed == 0.0


def test_every_clock_moves_together_on_advance() -> None:
    loop = asyncio.new_event_loop()

    def read() -> list[float]:
        return [
            time.time(),
            time.time_ns() / 1e9,
            time.monotonic(),
            time.monotonic_ns() / 1e9,
            time.perf_counter(),
            time.perf_counter_ns() / 1e9,
            datetime.now(UTC).timestamp(),
            loop.time(),
        ]

    try:
        with FakeClock() as clock:
            before = read()
            clock.advance(90)
            after = read()
            assert [b - a for a, b in zip(before, after, strict=True)] == [90.0] * len(before)
            assert clock.elapsed == 90.0
            assert clock.time() == time.time()
            assert clock.monotonic() == time.monotonic()
            assert clock.now() == datetime.now(UTC)
    finally:
        loop.close()


def test_wall_clock_functions() -> None:
    with FakeClock("2031-02-03T04:05:06.5Z") as clock:
        assert datetime.now(UTC) == datetime(2031, 2, 3, 4, 5, 6, 500_000, tzinfo=UTC)
        with warnings.catch_warnings():  # deprecated since 3.12, still called by runtimes
            warnings.simplefilter("ignore", DeprecationWarning)
            assert datetime.utcnow() == datetime(2031, 2, 3, 4, 5, 6, 500_000)
        assert datetime.now() == datetime.today() == datetime.fromtimestamp(clock.time())
        assert date.today() == datetime.fromtimestamp(clock.time()).date()  # local date
        base_ns = 1_927_857_906 * 10**9
        assert time.time_ns() == base_ns + 500_000_000
        assert time.gmtime()[:6] == (2031, 2, 3, 4, 5, 6)
        clock.advance(timedelta(days=1, microseconds=7))
        assert datetime.now(UTC) == datetime(2031, 2, 4, 4, 5, 6, 500_007, tzinfo=UTC)
        assert time.time_ns() == base_ns + 86_400 * 10**9 + 500_007_000
        clock.advance(1e-9)  # below datetime's resolution, still exact in time_ns
        assert time.time_ns() == clock.time_ns() == base_ns + 86_400 * 10**9 + 500_007_001


def test_date_today_follows() -> None:
    # date.today() is the local date: compare with the fake timestamp seen from this TZ.
    with FakeClock("2020-06-15T12:00:00Z") as clock:
        assert date.today() == datetime.fromtimestamp(clock.time()).date()
        assert abs(date.today() - date(2020, 6, 15)) <= timedelta(days=1)
        clock.advance(timedelta(days=40))
        assert date.today() == datetime.fromtimestamp(clock.time()).date()
        assert abs(date.today() - date(2020, 7, 25)) <= timedelta(days=1)


def test_move_to_sets_wall_only_and_may_go_back() -> None:
    with FakeClock() as clock:
        clock.advance(10)
        clock.move_to("2025-06-01T00:00:00+02:00")
        assert datetime.now(UTC) == datetime(2025, 5, 31, 22, tzinfo=UTC) == clock.now()
        assert time.monotonic() == 1010.0
        assert clock.elapsed == 10.0
        clock.move_to(datetime(2027, 1, 1))  # naive means UTC
        assert time.time() == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
        assert time.monotonic() == 1010.0


def test_tick_and_step() -> None:
    clock = FakeClock(step=2.5)
    assert clock.step == 2.5
    with clock:
        clock.tick()
        clock.tick()
        assert time.monotonic() == 1005.0
        assert datetime.now(UTC) == START + timedelta(seconds=5)
    with pytest.raises(ValueError):
        FakeClock(step=-1)


def test_bad_durations_are_rejected() -> None:
    clock = FakeClock()
    for bad in (-1, -0.5, timedelta(seconds=-1)):
        with pytest.raises(ValueError):
            clock.advance(bad)
    with pytest.raises(ValueError, match="non-negative"):
        clock.sleep(-1)
    with pytest.raises(ValueError):
        clock.advance(float("nan"))
    with pytest.raises(TypeError):
        clock.advance("1")  # type: ignore[arg-type]
    with FakeClock(), pytest.raises(ValueError):
        time.sleep(-1)
    assert clock.elapsed == 0


def test_start_parsing() -> None:
    assert FakeClock("2030-05-06T07:08:09").now() == datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert FakeClock("2030-05-06T09:08:09+02:00").now() == datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    tz = timezone(timedelta(hours=-5))
    assert (
        FakeClock(datetime(2030, 1, 1, tzinfo=tz)).time()
        == datetime(2030, 1, 1, 5, tzinfo=UTC).timestamp()
    )


def test_methods_work_on_a_stopped_clock() -> None:
    clock = FakeClock("2001-01-01T00:00:00Z")
    clock.advance(5)
    clock.sleep(5)
    clock.tick()
    assert not clock.running
    assert clock.monotonic() == 1011.0
    assert clock.now() == datetime(2001, 1, 1, 0, 0, 11, tzinfo=UTC)
    assert time.time() > 1_700_000_000  # the real one
    with clock:  # starts where it stands
        assert time.monotonic() == 1011.0
        assert time.time() == clock.time()
    clock.advance(1)
    assert clock.elapsed == 12.0
    with clock:  # and can start again
        assert time.monotonic() == 1012.0


# --- lifecycle ------------------------------------------------------------------------------


def test_everything_restored_after_stop() -> None:
    with FakeClock("2001-01-01T00:00:00Z") as clock:
        assert clock.running
        assert time.monotonic is cp.monotonic
        assert asyncio.sleep is cp.async_sleep
        assert "select" in selectors.DefaultSelector.__dict__
    assert not clock.running
    assert cp.active() is None
    for name in ("monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep"):
        assert getattr(time, name) is REAL[name]
    assert time.time is REAL["time"]
    assert asyncio.sleep is REAL["asyncio.sleep"]
    assert asyncio.tasks.sleep is REAL["asyncio.sleep"]
    for cls in cp._SELECTOR_CLASSES:
        assert cls.__dict__.get("select") is cp._OWN_SELECT[cls]
    assert time.time() > 1_700_000_000
    assert abs(time.monotonic() - cp.real_monotonic()) < 1
    assert dataclasses.fields(Stamped)[1].default_factory is REAL["monotonic"]
    clock.stop()  # idempotent
    clock.stop()


def test_exception_inside_still_restores() -> None:
    clock = FakeClock()
    with pytest.raises(KeyError), clock:
        time.sleep(5)
        raise KeyError("boom")
    assert not clock.running
    assert time.sleep is REAL["sleep"]
    assert asyncio.sleep is REAL["asyncio.sleep"]


def test_only_one_clock_runs() -> None:
    first = FakeClock()
    second = FakeClock("2030-01-01")
    with first:
        with pytest.raises(ClockError, match="a FakeClock is already running: stop it first"):
            second.start()
        with pytest.raises(ClockError):
            first.start()
        assert first.running
        assert not second.running
        second.stop()  # a clock that is not running stops nothing
        assert first.running
        assert datetime.now(UTC) == START
    with second:
        assert datetime.now(UTC) == datetime(2030, 1, 1, tzinfo=UTC)


# --- sleeping -------------------------------------------------------------------------------


def test_time_sleep_returns_at_once(real_timer: None) -> None:
    with FakeClock() as clock:
        time.sleep(3600)
        time.sleep(0.25)
        assert clock.elapsed == 3600.25
        assert time.monotonic() == 4600.25


def test_threads_share_one_clock(real_timer: None) -> None:
    with FakeClock() as clock:

        def work() -> None:
            for _ in range(200):
                time.sleep(0.5)
                clock.advance(0.001)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert clock.monotonic_ns() == 1000 * 10**9 + 8 * 200 * 501_000_000
        assert time.time_ns() == clock.time_ns() == START_TS * 10**9 + 8 * 200 * 501_000_000


# --- references bound before the clock ------------------------------------------------------


def test_import_bound_functions_are_faked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_timer: None
) -> None:
    _write_module(tmp_path, monkeypatch, "loom_bound_mod")
    mod = importlib.import_module("loom_bound_mod")
    assert mod.monotonic is REAL["monotonic"]
    with FakeClock() as clock:
        assert mod.monotonic() == mod.perf_counter() == 1000.0
        assert mod.wall() == START_TS  # time-machine patches it at C level
        assert mod.monotonic_ns() == mod.perf_counter_ns() == 1000 * 10**9
        mod.sleep(3600)
        asyncio.run(mod.asleep(60))
        assert mod.monotonic() == 4660.0
        ledger = mod.Ledger()
        assert (ledger.start, ledger.perf) == (4660.0, 4660.0)
        assert clock.elapsed == 3660
    assert mod.monotonic is REAL["monotonic"]
    assert mod.sleep is REAL["sleep"]
    assert mod.asleep is REAL["asyncio.sleep"]
    assert abs(mod.Ledger().start - cp.real_monotonic()) < 1


def test_types_module_in_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("loom_synthetic_mod")
    mod.now = time.perf_counter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    with FakeClock():
        assert mod.now() == 1000.0
    assert mod.now is REAL["perf_counter"]


def test_module_imported_during_clock_gives_real_time_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(tmp_path, monkeypatch, "loom_late_mod")
    with FakeClock() as clock:
        mod = importlib.import_module("loom_late_mod")
        assert mod.monotonic is cp.monotonic  # it bound the fake
        clock.advance(7)
        assert mod.monotonic() == mod.Ledger().start == 1007.0
    # The fake it still holds now dispatches to the real clock.
    assert abs(mod.monotonic() - cp.real_monotonic()) < 1
    assert abs(mod.Ledger().start - cp.real_monotonic()) < 1
    mod.sleep(0)


def test_dataclass_default_factory_defined_before_start() -> None:
    assert abs(Stamped().at - cp.real_monotonic()) < 1
    with FakeClock() as clock:
        assert Stamped().at == 1000.0
        clock.advance(3)
        assert StampedChild().at == 1003.0  # a subclass has its own __init__
        assert Stamped(at=5.0).at == 5.0
    assert abs(Stamped().at - cp.real_monotonic()) < 1
    assert abs(StampedChild().at - cp.real_monotonic()) < 1
    cells = [c.cell_contents for c in Stamped.__init__.__closure__ or ()]
    assert REAL["monotonic"] in cells
    assert cp.monotonic not in cells


def test_repeated_start_rescans_only_new_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeClock():
        pass
    scans = dict(cp._scans)
    fresh = types.ModuleType("loom_fresh_mod")
    fresh.clock = time.monotonic_ns  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, fresh.__name__, fresh)
    with FakeClock():
        assert fresh.clock() == 1000 * 10**9
    unchanged = [n for n, s in scans.items() if n in cp._scans and len(s.namespace) == s.size]
    assert len(unchanged) > 100
    assert all(cp._scans[name] is scans[name] for name in unchanged)
    assert cp._scans[fresh.__name__] is not scans.get(fresh.__name__)


def test_sweep_reuses_its_result_until_the_modules_change(monkeypatch: pytest.MonkeyPatch) -> None:
    cp._sweep()
    unchanged = cp._sweep()
    assert cp._sweep() is unchanged
    late = types.ModuleType("loom_late_global_mod")
    monkeypatch.setitem(sys.modules, late.__name__, late)
    assert cp._sweep() is not unchanged  # a new module is scanned
    with FakeClock() as clock:
        late.tick = REAL["perf_counter"]  # type: ignore[attr-defined]  # bound after the start
        clock.rebind()
        assert late.tick() == 1000.0  # type: ignore[attr-defined]
    assert late.tick is REAL["perf_counter"]  # type: ignore[attr-defined]


def test_only_the_namespaces_the_sweep_rebinds_in_can_make_it_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skipped = types.ModuleType("hypothesis.loom_probe")  # keeps the real clock (deadlines)
    watched = types.ModuleType("loom_watched_mod")
    monkeypatch.setitem(sys.modules, skipped.__name__, skipped)
    monkeypatch.setitem(sys.modules, watched.__name__, watched)
    swept = cp._sweep()
    skipped.tick = REAL["perf_counter"]  # type: ignore[attr-defined]
    assert cp._sweep() is swept
    watched.tick = REAL["perf_counter"]  # type: ignore[attr-defined]
    assert cp._sweep() is not swept
    with FakeClock():
        assert watched.tick() == 1000.0  # type: ignore[attr-defined]
        assert skipped.tick is REAL["perf_counter"]  # type: ignore[attr-defined]


def test_a_module_replaced_under_the_same_name_is_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    first = types.ModuleType("loom_replaced_mod")
    monkeypatch.setitem(sys.modules, first.__name__, first)
    with FakeClock():
        pass
    second = types.ModuleType(first.__name__)  # same name, same place in sys.modules
    second.now = time.monotonic  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, first.__name__, second)
    with FakeClock():
        assert second.now() == 1000.0  # type: ignore[attr-defined]
    assert second.now is REAL["monotonic"]  # type: ignore[attr-defined]


def test_repeated_start_is_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(max(0, 1000 - len(sys.modules))):
        pad = types.ModuleType(f"loom_pad_{i}")
        pad.__dict__.update({f"attr{j}": j for j in range(20)})
        monkeypatch.setitem(sys.modules, pad.__name__, pad)
    clock = FakeClock()
    clock.start()
    clock.stop()
    starts = []
    for _ in range(30):
        began = cp.real_perf_counter()
        clock.start()
        starts.append(cp.real_perf_counter() - began)
        clock.stop()
    assert statistics.median(starts) < 0.001  # typically ~0.15 ms with 1000 modules


# --- asyncio --------------------------------------------------------------------------------


def test_asyncio_sleep_a_day_takes_milliseconds(real_timer: None) -> None:
    async def main() -> tuple[float, float, str]:
        loop = asyncio.get_running_loop()
        before = (time.monotonic(), loop.time())
        result = await asyncio.sleep(86400, result="done")
        return time.monotonic() - before[0], loop.time() - before[1], result

    with FakeClock() as clock:
        assert asyncio.run(main()) == (86400.0, 86400.0, "done")
        assert datetime.now(UTC) == START + timedelta(days=1)
        assert clock.elapsed == 86400


def test_wait_for_times_out_in_fake_time(real_timer: None) -> None:
    with FakeClock() as clock:
        with pytest.raises(TimeoutError):
            asyncio.run(asyncio.wait_for(asyncio.sleep(3600), timeout=60))
        assert clock.elapsed == 60.0


def test_call_later_fires() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        done = asyncio.Event()
        loop.call_later(30, lambda: (fired.append(loop.time()), done.set()))
        loop.call_later(10, lambda: fired.append(loop.time()))
        await done.wait()
        return fired

    with FakeClock():
        assert asyncio.run(main()) == [1010.0, 1030.0]


def test_concurrent_sleeps_keep_real_ordering(real_timer: None) -> None:
    async def nap(seconds: float, woke: list[float]) -> None:
        await asyncio.sleep(seconds)
        woke.append(seconds)

    async def main() -> list[float]:
        woke: list[float] = []
        async with asyncio.timeout(100):
            await asyncio.gather(nap(10, woke), nap(5, woke), nap(7.5, woke))
        return woke

    with FakeClock() as clock:
        assert asyncio.run(main()) == [5, 7.5, 10]
        assert clock.elapsed == 10.0


def test_asyncio_sleep_on_a_loop_that_cannot_skip(real_timer: None) -> None:
    class PlainSelector(selectors.SelectSelector):
        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            return super().select(timeout)

    async def main() -> bool:
        skips = cp._loop_skips_idle_time()
        await asyncio.sleep(3600)
        return skips

    with FakeClock() as clock:
        loop = asyncio.SelectorEventLoop(PlainSelector())
        try:
            assert loop.run_until_complete(main()) is False
        finally:
            loop.close()
        assert clock.elapsed == 3600.0


def test_asyncio_sleep_is_real_without_a_clock() -> None:
    began = cp.real_perf_counter()
    assert asyncio.run(cp.async_sleep(0.01, "r")) == "r"
    assert cp.real_perf_counter() - began >= 0.009


def test_select_outside_an_event_loop_is_untouched() -> None:
    with FakeClock() as clock, selectors.DefaultSelector() as selector:
        began = cp.real_perf_counter()
        assert selector.select(0.02) == []
        assert cp.real_perf_counter() - began >= 0.015
        assert clock.elapsed == 0


# --- a runtime that binds its clock at import -----------------------------------------------


def test_loomc_budget_ledger_uses_the_fake_clock(tmp_path: Path, real_timer: None) -> None:
    pytest.importorskip("loomc")
    from loomc import Budget, BudgetExhausted, loop
    from loomc.budget import BudgetLedger

    @loop(checkpoint=str(tmp_path / "ckpt.db"), budget=Budget(wall_clock="10m"))
    def step(state: dict[str, int]) -> dict[str, int]:
        time.sleep(60)
        return {"n": state["n"] + 1}

    with FakeClock() as clock:
        assert BudgetLedger().start_time == 1000.0
        with pytest.raises(BudgetExhausted) as info:
            step({"n": 0})
        assert info.value.limit == "wall_clock"
        assert info.value.used == 600.0
        assert clock.elapsed == 600.0
    assert abs(BudgetLedger().start_time - cp.real_monotonic()) < 1
