"""The patching under :class:`~pytest_loom.clock.FakeClock`: which clock functions it replaces, how.

No single library moves every clock an agent loop reads (time-machine leaves ``time.monotonic``
and asyncio alone; freezegun hangs ``asyncio.sleep``), and runtimes bind clock functions at
import (``from time import monotonic``, ``field(default_factory=time.monotonic)``). So:

* the wall clock (``time.time``/``time_ns``, ``datetime.now``/``utcnow``, ``date.today``,
  ``gmtime``/``localtime``) is time-machine's, patched at C level and shifted in step;
* ``monotonic``/``perf_counter`` (and ``_ns``), ``time.sleep`` and ``asyncio.sleep`` are replaced
  by *dispatching fakes*: module-level functions that ask the active clock, or call the real
  function when none runs, so a fake left bound somewhere after ``stop()`` is harmless;
* a sweep of ``sys.modules`` rebinds module globals and dataclass ``default_factory``s (the
  :class:`~dataclasses.Field` and the generated ``__init__``'s closure cell) that are the real
  functions, and undoes exactly that on stop; what a module holds is cached, so a repeated
  start or a rebind only scans modules that are new or changed, and none when ``sys.modules``
  is as the last sweep left it;
* asyncio timers (``call_later``, ``wait_for``, ``asyncio.timeout``) fire because the select of
  a running event loop's selector, instead of blocking until the next timer, moves the fake
  clock to it.

One clock is active per process (xdist workers are processes, so each has its own).
"""

from __future__ import annotations

import asyncio
import math
import selectors
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import time_machine

_real_monotonic = time.monotonic
_real_monotonic_ns = time.monotonic_ns
_real_perf_counter = time.perf_counter
_real_perf_counter_ns = time.perf_counter_ns
_real_sleep = time.sleep
_real_async_sleep = asyncio.sleep

NS_PER_S = 1_000_000_000


class Target(Protocol):
    """What the fakes ask of the active clock (:class:`~pytest_loom.clock.FakeClock`)."""

    def monotonic_ns(self) -> int: ...

    def perf_counter_ns(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...

    def _advance_ns(self, ns: int) -> None: ...


_active: Target | None = None
_lock = threading.Lock()


def active() -> Target | None:
    """The running clock, if any."""
    return _active


# --- real time for the lab's own use (Python wrappers: the sweep never rebinds these) ---------


def real_monotonic() -> float:
    """``time.monotonic`` as it is without any fake clock."""
    return _real_monotonic()


def real_perf_counter() -> float:
    """``time.perf_counter`` as it is without any fake clock."""
    return _real_perf_counter()


def real_sleep(seconds: float) -> None:
    """``time.sleep`` as it is without any fake clock."""
    _real_sleep(seconds)


# --- the dispatching fakes ------------------------------------------------------------------


def monotonic() -> float:
    """Fake ``time.monotonic``."""
    clock = _active
    return _real_monotonic() if clock is None else clock.monotonic_ns() / NS_PER_S


def monotonic_ns() -> int:
    """Fake ``time.monotonic_ns``."""
    clock = _active
    return _real_monotonic_ns() if clock is None else clock.monotonic_ns()


def perf_counter() -> float:
    """Fake ``time.perf_counter``."""
    clock = _active
    return _real_perf_counter() if clock is None else clock.perf_counter_ns() / NS_PER_S


def perf_counter_ns() -> int:
    """Fake ``time.perf_counter_ns``."""
    clock = _active
    return _real_perf_counter_ns() if clock is None else clock.perf_counter_ns()


def sleep(seconds: float) -> None:
    """Fake ``time.sleep``: moves the clock and returns at once (after yielding the GIL)."""
    clock = _active
    if clock is None:
        _real_sleep(seconds)
        return
    clock.sleep(seconds)
    _real_sleep(0)


async def async_sleep(delay: float, result: Any = None) -> Any:
    """Fake ``asyncio.sleep``.

    On a selector event loop the real sleep is used: its timer fires when the loop goes idle
    and the patched select moves the clock to it, so concurrent sleeps and ``wait_for``
    timeouts keep their real ordering. On any other loop (uvloop, proactor) the clock is moved
    by ``delay`` and the task yields once, so it never really sleeps.
    """
    clock = _active
    if clock is not None and delay > 0 and not _loop_skips_idle_time():
        clock._advance_ns(to_ns(delay))
        delay = 0
    return await _real_async_sleep(delay, result)


_FAKE_OF: dict[int, Callable[..., Any]] = {
    id(_real_monotonic): monotonic,
    id(_real_monotonic_ns): monotonic_ns,
    id(_real_perf_counter): perf_counter,
    id(_real_perf_counter_ns): perf_counter_ns,
    id(_real_sleep): sleep,
    id(_real_async_sleep): async_sleep,
}
"""Real function (by identity; the reals above keep the ids alive) -> its fake."""


def to_ns(seconds: float) -> int:
    """Seconds as whole nanoseconds; rejects non-finite and non-numeric values."""
    if isinstance(seconds, int):
        return seconds * NS_PER_S
    if not isinstance(seconds, float):
        raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be finite, not {seconds!r}")
    return round(seconds * NS_PER_S)


# --- asyncio: skip idle time to the next timer ----------------------------------------------


def _skipping(real_select: Callable[..., Any]) -> Callable[..., Any]:
    def select(
        self: selectors.BaseSelector, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        clock = _active
        if clock is None or timeout is None or timeout <= 0 or not _is_loop_selector(self):
            ready: list[tuple[selectors.SelectorKey, int]] = real_select(self, timeout)
            return ready
        ready = real_select(self, 0)
        if not ready:
            # Round up: a timer must be due afterwards, or the loop would spin on a 0 ns step.
            clock._advance_ns(math.ceil(timeout * NS_PER_S))
        return ready

    return select


def _is_loop_selector(selector: selectors.BaseSelector) -> bool:
    """Whether ``selector`` is the one the event loop running in this thread waits on.

    Other users of selectors (``subprocess.communicate``, servers) wait on real I/O and keep
    their real timeouts.
    """
    loop = asyncio.events._get_running_loop()
    return loop is not None and getattr(loop, "_selector", None) is selector


_SELECTOR_CLASSES: tuple[type[selectors.BaseSelector], ...] = tuple(
    cls
    for name in (
        "SelectSelector",
        "PollSelector",
        "EpollSelector",
        "DevpollSelector",
        "KqueueSelector",
    )
    if isinstance(cls := getattr(selectors, name, None), type)
)
_OWN_SELECT: dict[type, object] = {cls: cls.__dict__.get("select") for cls in _SELECTOR_CLASSES}
_SKIPPING_SELECT: dict[type, Callable[..., Any]] = {
    cls: _skipping(cls.select) for cls in _SELECTOR_CLASSES
}

_SKIPPING_FNS = tuple(_SKIPPING_SELECT.values())


def _loop_skips_idle_time() -> bool:
    loop = asyncio.events._get_running_loop()
    selector = getattr(loop, "_selector", None)
    return selector is not None and getattr(type(selector), "select", None) in _SKIPPING_FNS


# --- the sweep: references bound before the clock started -----------------------------------

_SKIP_TOP_LEVEL = frozenset(
    {
        # Deliberately hold the real clock to time tests (pytest durations, hypothesis deadlines).
        "_pytest",
        "pytest",
        "pluggy",
        "hypothesis",
        "xdist",
        "execnet",
        "time_machine",
        "freezegun",
        # Their deadlines guard real blocking waits (locks, queues, processes): faked, a
        # ``queue.get(timeout=1)`` would never time out.
        "threading",
        "queue",
        "subprocess",
        "sched",
        "socketserver",
        "multiprocessing",
    }
)


@dataclass(frozen=True, slots=True)
class _Ref:
    """One place holding a real clock function: a module global, a Field, or a closure cell."""

    holder: Any
    key: str
    real: object

    def get(self) -> object:
        if isinstance(self.holder, dict):
            return self.holder.get(self.key)
        try:
            return getattr(self.holder, self.key)
        except ValueError:  # an empty closure cell
            return None

    def set(self, value: object) -> None:
        if isinstance(self.holder, dict):
            self.holder[self.key] = value
        else:
            setattr(self.holder, self.key, value)


@dataclass(frozen=True, slots=True)
class _Scan:
    """What one module held at its last scan; stale when the module or, if it is ``watched``
    (not one of :data:`_SKIP_TOP_LEVEL`, whose references are never replaced), its size
    changed."""

    module: ModuleType
    namespace: dict[str, Any]
    size: int
    refs: tuple[_Ref, ...]
    watched: bool = True


@dataclass(frozen=True, slots=True)
class _Swept:
    """``sys.modules`` as the last sweep saw it, with the sizes of the module namespaces it
    watches and the references it found."""

    names: list[str]
    modules: list[object]
    namespaces: list[dict[str, Any]]
    sizes: list[int]
    refs: list[_Ref]

    def current(self) -> bool:
        """No module imported, removed or replaced, no watched namespace grown or shrunk since.

        The entries are compared as lists, which compare items by identity first: a module
        (which has no ``__eq__`` of its own) equals only itself, so a replaced one shows. That
        costs a fraction of comparing their ids.
        """
        return (
            list(sys.modules.values()) == self.modules
            and list(sys.modules) == self.names
            and list(map(len, self.namespaces)) == self.sizes
        )


_scans: dict[str, _Scan] = {}
_swept: _Swept | None = None
_applied: list[_Ref] = []


def _scan(name: str, module: ModuleType) -> _Scan:
    namespace: dict[str, Any] = object.__getattribute__(module, "__dict__")
    if namespace is globals() or name.partition(".")[0] in _SKIP_TOP_LEVEL:
        return _Scan(module, namespace, len(namespace), (), watched=False)
    refs: list[_Ref] = []
    for key, value in list(namespace.items()):
        if id(value) in _FAKE_OF:
            refs.append(_Ref(namespace, key, value))
        elif issubclass(type(value), type):
            refs.extend(_dataclass_refs(value))
    return _Scan(module, namespace, len(namespace), tuple(refs))


def _dataclass_refs(cls: type) -> Iterable[_Ref]:
    """A dataclass's ``default_factory`` fields that are real clock functions, and the cells of
    its generated ``__init__`` that hold them (``_dflt_start_time``, ``__dataclass_dflt_...``)."""
    own = type.__getattribute__(cls, "__dict__")
    fields = own.get("__dataclass_fields__")
    if not isinstance(fields, dict):
        return
    found = False
    for field in fields.values():
        factory = getattr(field, "default_factory", None)
        if id(factory) in _FAKE_OF:
            found = True
            yield _Ref(field, "default_factory", factory)
    if not found:
        return
    for cell in getattr(own.get("__init__"), "__closure__", None) or ():
        try:
            content = cell.cell_contents
        except ValueError:
            continue
        if id(content) in _FAKE_OF:
            yield _Ref(cell, "cell_contents", content)


def _sweep() -> list[_Ref]:
    """References to real clock functions across ``sys.modules``; rescans only what changed.

    When nothing changed since the last sweep (the usual case: one start and a rebind or two
    per test), its result is reused after a check that costs a fifth of walking the modules.
    """
    global _scans, _swept
    if _swept is not None and _swept.current():
        return _swept.refs
    entries = list(sys.modules.items())
    scans: dict[str, _Scan] = {}
    refs: list[_Ref] = []
    for name, module in entries:
        if not isinstance(module, ModuleType):
            continue
        scan = _scans.get(name)
        if (
            scan is None
            or scan.module is not module
            or (scan.watched and len(scan.namespace) != scan.size)
        ):
            scan = _scan(name, module)
        scans[name] = scan
        if scan.refs:
            refs.extend(scan.refs)
    _scans = scans
    _swept = _Swept(
        names=[name for name, _ in entries],
        modules=[module for _, module in entries],
        namespaces=[scan.namespace for scan in scans.values() if scan.watched],
        sizes=[scan.size for scan in scans.values() if scan.watched],
        refs=refs,
    )
    return refs


def _rebind(refs: Iterable[_Ref]) -> None:
    seen: set[tuple[int, str]] = set()
    for ref in refs:
        slot = (id(ref.holder), ref.key)
        if slot not in seen and ref.get() is ref.real:
            seen.add(slot)
            ref.set(_FAKE_OF[id(ref.real)])
            _applied.append(ref)


def _unbind() -> None:
    while _applied:
        ref = _applied.pop()
        if ref.get() is _FAKE_OF[id(ref.real)]:  # unless someone rebound it meanwhile
            ref.set(ref.real)


def _patch_selectors() -> None:
    for cls, select in _SKIPPING_SELECT.items():
        setattr(cls, "select", select)  # noqa: B010


def _unpatch_selectors() -> None:
    for cls, select in _SKIPPING_SELECT.items():
        if cls.__dict__.get("select") is not select:
            continue
        own = _OWN_SELECT[cls]
        if own is None:
            delattr(cls, "select")
        else:
            setattr(cls, "select", own)  # noqa: B010


# --- the wall clock: time-machine, kept in step ---------------------------------------------

_travel: time_machine.travel | None = None
_traveller: time_machine.Traveller | None = None


def _shift_exact(traveller: time_machine.Traveller, delta_ns: int) -> None:
    # time-machine shifts by int seconds exactly, by float seconds to the nearest ns: split so
    # large jumps stay exact.
    whole, frac = divmod(delta_ns, NS_PER_S)
    if whole:
        traveller.shift(whole)
    if frac:
        traveller.shift(frac / NS_PER_S)


def shift_wall(delta_ns: int) -> None:
    """Move the patched wall clock; called by the active clock, under its lock."""
    if _traveller is not None and delta_ns:
        _shift_exact(_traveller, delta_ns)


# --- install / uninstall --------------------------------------------------------------------


def install(target: Target, wall_ns: int) -> bool:
    """Make ``target`` the active clock with the wall clock at ``wall_ns``; False if one is."""
    global _active, _travel, _traveller
    with _lock:
        if _active is not None:
            return False
        try:
            whole, frac = divmod(wall_ns, NS_PER_S)
            travel = time_machine.travel(whole, tick=False)
            _traveller = travel.start()
            _travel = travel
            _shift_exact(_traveller, frac)
            _rebind(_sweep())
            _patch_selectors()
        except BaseException:
            _teardown()
            raise
        _active = target
        return True


def refresh(target: Target) -> None:
    """Rebind what modules imported since :func:`install` hold, if ``target`` is active."""
    with _lock:
        if _active is target:
            _rebind(_sweep())


def uninstall(target: Target) -> None:
    """Undo :func:`install` if ``target`` is the active clock; otherwise do nothing."""
    global _active
    with _lock:
        if _active is target:
            _active = None
            _teardown()


def _teardown() -> None:
    global _travel, _traveller
    _unpatch_selectors()
    _unbind()
    if _travel is not None:
        travel, _travel, _traveller = _travel, None, None
        travel.stop()
