"""The pytest entry point: options, ini keys, markers, scenario collection and ``loom_*`` fixtures.

It imports nothing heavy: the lab (YAML, SQLite, the clock patches, syrupy's extension) loads
only when a scenario is collected or a ``loom_*`` fixture is used, so having the plugin
installed costs a pytest run nothing measurable.
"""

from __future__ import annotations

import argparse
import atexit
import fnmatch
import gc
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from syrupy.assertion import SnapshotAssertion

    from .clock import FakeClock
    from .llm import MockLLM
    from .record import RunRecord
    from .recorded import RecordedLLM
    from .reference import Loop
    from .scenario import Scenario
    from .store import CheckpointStore

pytest_plugins = ("pytest_loom.gate",)  # the drift gate's options and hooks (docs/gate.md)

DEFAULT_GLOB = "*.loom.yaml"
RECORD_MODES = ("none", "once", "new_episodes", "all", "rewrite")
_LOOM_PROFILES = ("loom-dev", "loom-ci")
"""The Hypothesis profiles :mod:`pytest_loom.properties` registers (kept in step by a test)."""

_MARKERS = (
    "loom_scenario(runtime): a golden loop scenario collected from a *.loom.yaml file",
    "loom_clock(start=..., step=...): configure the loom_clock fixture (FakeClock arguments)",
    "loom_llm(turns=[...], rules=[...], **options): script the loom_llm fixture (MockLLM args)",
    "loom_store(golden=path, durability='normal'|'full'|'off', commit_every=1): configure the"
    " loom_store fixture",
    "loom_cassette(path, ignore=[IgnoreRule(...)]): replay this test's openai/anthropic SDK calls"
    " from a cassette (path relative to the test file); see --loom-record",
    "loom_property(runtime, prop): an item of the property suite (--loom-properties)",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loom", "pytest-loom: golden agent-loop scenarios")
    group.addoption(
        "--loom-scenarios",
        action="store_true",
        default=None,
        dest="loom_scenarios",
        help="collect loop scenario files (see the loom_scenario_glob ini key) as tests",
    )
    group.addoption(
        "--no-loom-scenarios",
        action="store_false",
        dest="loom_scenarios",
        help="do not collect loop scenario files, even if the loom_scenarios ini key says so",
    )
    group.addoption(
        "--loom-record",
        default=None,
        choices=RECORD_MODES,
        dest="loom_record",
        help="record mode of cassettes: none (default: replay only, offline), once, "
        "new_episodes, all, rewrite (these call the real provider API)",
    )
    group.addoption(
        "--loom-replay",
        action="store_true",
        default=False,
        dest="loom_replay",
        help="re-execute each scenario against its recorded run (its snapshot): every LLM "
        "request must be the recorded one, or the scenario fails with a divergence error",
    )
    group.addoption(
        "--loom-replay-from",
        type=_step_number,
        default=None,
        metavar="N",
        dest="loom_replay_from",
        help="with replay: answer steps before N from the recording, then run step N on "
        "against the mock LLM (or, in a record mode, the provider); implies --loom-replay",
    )
    group.addoption(
        "--loom-properties",
        action="store_true",
        default=False,
        dest="loom_properties",
        help="run the property suite: every budget and resume invariant, on generated runs of "
        "every selected runtime (see --loom-properties-runtime)",
    )
    group.addoption(
        "--loom-properties-runtime",
        default=None,
        metavar="NAME[,NAME]",
        dest="loom_properties_runtime",
        help="runtimes the property suite runs against (default: every installed one)",
    )
    parser.addini(
        "loom_findings",
        default="scenarios/findings",
        help="where committed findings of the property suite live, one folder per runtime "
        "(relative to the rootdir; default: scenarios/findings)",
    )
    parser.addini(
        "loom_keep_sessions",
        default="5",
        help="how many sessions' scenario runs to keep for the `loom` command (0: none)",
    )
    parser.addini(
        "loom_record",
        default="none",
        help="record mode when --loom-record is not given (ignored on CI=true unless 'none')",
    )
    parser.addini(
        "loom_scenarios",
        type="bool",
        default=False,
        help="collect loop scenario files without passing --loom-scenarios",
    )
    parser.addini(
        "loom_scenario_glob",
        default=DEFAULT_GLOB,
        help=f"file-name pattern of loop scenario files (default: {DEFAULT_GLOB})",
    )


def _step_number(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a step number >= 1, got {value!r}")
    return int(value)


@pytest.hookimpl(tryfirst=True)  # before Hypothesis' plugin loads --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    if config.getoption("hypothesis_profile", None) in _LOOM_PROFILES:
        from . import properties  # noqa: F401  (registers the profiles; imports Hypothesis)
    if _scenarios_enabled(config):
        # Registered before pytest's own clean-ups, so it runs after their garbage collection.
        config.add_cleanup(lambda: _thaw(config))


_FROZEN_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """A scenario session sets aside what collection left alive (the items, their scenarios,
    the modules) from the cyclic garbage collector until the session ends.

    Each scenario's run makes garbage, and each full collection it triggers would otherwise
    trace every collected item again: after a thousand scenarios that was a tenth of the
    session. The collection's own garbage is collected first; what the tests make is
    collected as usual, and pytest's end-of-session collection still sees all of it.
    """
    config = session.config
    if _scenarios_enabled(config) and not config.stash.get(_FROZEN_KEY, False):
        gc.collect()
        gc.freeze()
        config.stash[_FROZEN_KEY] = True


def _thaw(config: pytest.Config) -> None:
    """Hand what collection left alive back to the garbage collector (sessions run in-process
    must not leave their host's objects frozen)."""
    if config.stash.get(_FROZEN_KEY, False):
        gc.unfreeze()
        config.stash[_FROZEN_KEY] = False


@pytest.hookimpl(tryfirst=True)  # pytest's cache is configured; xdist starts no worker yet
def pytest_sessionstart(session: pytest.Session) -> None:
    if _scenarios_enabled(session.config):
        _start_saving_runs(session.config)


def _start_saving_runs(config: pytest.Config) -> None:
    """Save this session's scenario runs for the ``loom`` command (see ``runlog``)."""
    from . import runlog

    worker = getattr(config, "workerinput", None)
    if worker is not None:
        if worker.get("loom_session"):
            config.stash[runlog.SESSION_KEY] = runlog.open_session(Path(worker["loom_session"]))
        return
    raw = str(config.getini("loom_keep_sessions"))
    if not raw.isdigit():
        raise pytest.UsageError(f"ini key loom_keep_sessions: expected a number >= 0, got {raw!r}")
    cache = getattr(config, "cache", None)
    if int(raw) == 0 or cache is None:
        return
    config.stash[runlog.SESSION_KEY] = runlog.start_session(
        cache.mkdir(runlog.CACHE_KEY),
        keep=int(raw),
        rootdir=config.rootpath,
        pythonpath=[Path(p) for p in config.getini("pythonpath")],
    )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: workers save their runs into the controller's session."""
    if not _scenarios_enabled(node.config):
        return
    from .runlog import SESSION_KEY

    session = node.config.stash.get(SESSION_KEY, None)
    node.workerinput["loom_session"] = str(session.path) if session is not None else ""


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the scenario runs this process kept, once (see ``runlog``)."""
    if not _scenarios_enabled(session.config):
        return
    from .runlog import SESSION_KEY

    saved = session.config.stash.get(SESSION_KEY, None)
    if saved is not None:
        saved.flush()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _scenarios_enabled(config):
        return
    # Everything still alive goes with the process: its shutdown need not trace it for cycles.
    # After a thousand scenarios that took longer than running a hundred of them. Objects are
    # still freed by reference counting, and pytest collected the session's garbage already.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    if hasattr(config, "workerinput"):
        return
    from .runlog import SESSION_KEY

    session = config.stash.get(SESSION_KEY, None)
    if session is not None and not session.has_runs():
        shutil.rmtree(session.path, ignore_errors=True)  # no scenario ran: nothing to keep


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """``--loom-properties``: add the property suite's items (before ``-k``/``-m`` select)."""
    if session.config.getoption("loom_properties"):
        from ._property_items import property_items

        items.extend(property_items(session))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.getoption("loom_properties"):
        return
    from ._property_items import findings_summary

    lines = findings_summary(config)
    if lines:
        terminalreporter.section("loom properties: known findings (strict-xfail reproducers)")
        for line in lines:
            terminalreporter.line(line)


def _scenarios_enabled(config: pytest.Config) -> bool:
    flag = config.getoption("loom_scenarios")
    return bool(flag) if flag is not None else bool(config.getini("loom_scenarios"))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With scenarios on, pytest does not walk syrupy's snapshot directories: they hold no
    tests, and a scenario's snapshot has a directory of its own, which pytest would otherwise
    visit, one per scenario."""
    snapshots = getattr(config.option, "snapshot_dirname", None)
    if (
        isinstance(snapshots, str)
        and collection_path.name == snapshots
        and _scenarios_enabled(config)
        and collection_path.is_dir()
    ):
        return True
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    if not fnmatch.fnmatch(file_path.name, str(config.getini("loom_scenario_glob"))):
        return None
    if not _scenarios_enabled(config):
        return None
    from .collect import ScenarioFile

    return ScenarioFile.from_parent(parent, path=file_path)


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{name} takes keyword arguments only")
    return dict(marker.kwargs)


@pytest.fixture
def loom_clock(request: pytest.FixtureRequest) -> Iterator[FakeClock]:
    """A started :class:`~pytest_loom.FakeClock`, stopped at teardown.

    It moves ``time.time``/``monotonic``/``perf_counter``, ``datetime.now``, ``date.today``,
    ``time.sleep``, ``asyncio.sleep`` and loop time together. Control it with
    ``advance(seconds)``, ``tick()`` and ``move_to(when)``; configure it with
    ``@pytest.mark.loom_clock(start="2026-01-01T09:00:00Z", step=1.0)``.
    """
    from .clock import FakeClock

    with FakeClock(**_marker_kwargs(request, "loom_clock")) as clock:
        yield clock


@pytest.fixture
def loom_llm(request: pytest.FixtureRequest, loom_clock: FakeClock) -> Iterator[MockLLM]:
    """A strict :class:`~pytest_loom.MockLLM` whose latencies advance ``loom_clock``.

    Script it with ``@pytest.mark.loom_llm(turns=[Turn(...)], rules=[...], pricing=...)``
    or pass it a script in the test. Turns left unconsumed fail the test at teardown unless
    ``allow_unused=True``. ``loom_llm.requests`` keeps every request it served. Calls made
    through the openai and anthropic SDKs during the test are served by it too; with
    ``@pytest.mark.loom_cassette(path)`` (or the ``loom_cassette`` fixture) it is a
    :class:`~pytest_loom.RecordedLLM` replaying them from a cassette.
    """
    from .intercept import serve_sdks
    from .llm import MockLLM

    kwargs = _marker_kwargs(request, "loom_llm")
    marker = request.node.get_closest_marker("loom_cassette")
    if marker is None and "loom_cassette" not in request.fixturenames:
        llm = MockLLM(clock=loom_clock, **kwargs)
        with serve_sdks(llm):
            yield llm
    else:
        from .recorded import RecordedLLM
        from .recordmode import record_mode

        path, ignore = _cassette_args(request, marker)
        mode = record_mode(request.config)
        llm = recorded = RecordedLLM(path, mode=mode, ignore=ignore, clock=loom_clock, **kwargs)
        with serve_sdks(llm):
            yield llm
        recorded.save()
    __tracebackhide__ = True
    llm.verify()


def _cassette_args(
    request: pytest.FixtureRequest, marker: pytest.Mark | None
) -> tuple[Path, tuple[Any, ...]]:
    """The cassette path (relative to the test file) and ignore rules of ``loom_cassette``."""
    base = Path(request.node.path).parent
    args = marker.args if marker else ()
    kwargs = dict(marker.kwargs) if marker else {}
    path = kwargs.pop("path", args[0] if args else None)
    ignore = tuple(kwargs.pop("ignore", ()))
    if len(args) > 1 or kwargs:
        raise pytest.UsageError(
            "@pytest.mark.loom_cassette takes a path and ignore=[...] only, got "
            f"{', '.join([*map(repr, args[1:]), *kwargs])}"
        )
    if path is None:
        name = request.node.name.replace("/", "_")
        path = Path("cassettes") / Path(request.node.path).stem / f"{name}.yaml"
    return base / path, ignore


@pytest.fixture
def loom_cassette(loom_llm: MockLLM) -> RecordedLLM:
    """``loom_llm`` as a :class:`~pytest_loom.RecordedLLM` replaying this test's cassette.

    The cassette is ``@pytest.mark.loom_cassette(path)`` (relative to the test file), by
    default ``cassettes/<test file stem>/<test name>.yaml``. Its record mode is
    ``--loom-record`` (or the ``loom_record`` ini key); new calls are written at teardown, and
    recorded calls the test never used fail it (unless ``allow_unused=True``).
    """
    from .recorded import RecordedLLM

    assert isinstance(loom_llm, RecordedLLM)
    return loom_llm


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Scenarios and tests using ``loom_*`` fixtures run offline: only loopback is reachable."""
    names = getattr(item, "fixturenames", ())
    marked = item.get_closest_marker("loom_scenario") or item.get_closest_marker("loom_property")
    if marked is None and not any(name.startswith("loom_") for name in names):
        return (yield)
    from .netguard import block_network
    from .recordmode import RecordMode, record_mode

    with block_network(record_mode(item.config) is RecordMode.NONE):
        return (yield)


@pytest.fixture
def loom_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStore]:
    """This test's own SQLite checkpoint database (WAL) under ``tmp_path``.

    ``@pytest.mark.loom_store(golden="golden/run.db")`` starts from a private copy of a
    database kept in the repo (the path is relative to the test file); the golden file is never
    written. ``durability="full"`` fsyncs every commit; ``commit_every=K`` commits every K steps
    in one transaction (a crash loses at most the open batch).
    """
    from .store import CheckpointError, CheckpointStore

    kwargs = _marker_kwargs(request, "loom_store")
    unknown = sorted(set(kwargs) - {"golden", "durability", "commit_every"})
    if unknown:
        pytest.fail(
            f"@pytest.mark.loom_store got {', '.join(unknown)}: it takes golden=, durability= "
            "and commit_every= only",
            pytrace=False,
        )
    golden = kwargs.pop("golden", None)
    try:
        if golden is None:
            store = CheckpointStore(tmp_path / "loom_store.db", **kwargs)
        else:
            source = Path(request.node.path).parent / golden
            store = CheckpointStore.from_golden(source, tmp_path / "loom_store.db", **kwargs)
    except (CheckpointError, ValueError) as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:  # failed outside the except block: the report shows this line, no chain
        pytest.fail(f"@pytest.mark.loom_store: {problem}", pytrace=False)
    yield store
    store.close()


@pytest.fixture
def loom_snapshot(
    request: pytest.FixtureRequest, tmp_path: Path, snapshot: SnapshotAssertion
) -> Iterator[SnapshotAssertion]:
    """syrupy's ``snapshot``, comparing :class:`~pytest_loom.RunRecord` objects.

    ``assert loom_snapshot == record`` stores one readable JSON file per test and explains a
    mismatch with a per-step diff (stop reason first). ``--snapshot-update`` works as usual.
    Paths under this test's ``tmp_path``, the rootdir and the home directory are masked.
    """
    from .snapshot import RunRecordExtension, masking

    with masking(tmp_path, request.config.rootpath):
        yield snapshot.use_extension(RunRecordExtension)


@pytest.fixture
def loom_run(
    request: pytest.FixtureRequest, tmp_path: Path, loom_clock: FakeClock
) -> Callable[..., RunRecord]:
    """Run a scenario file or a :class:`~pytest_loom.Loop` and get its run record.

    ``loom_run("scenarios/refine.loom.yaml")`` (relative to the test file, then the rootdir)
    runs the scenario and fails the test if its expectations do not hold (``check=False``
    returns the record regardless). ``loom_run(loop, initial_state)`` runs a loop you built.
    """
    from .reference import Loop

    counter = iter(range(1, 1_000_000))

    def run(
        target: str | Path | Scenario | Loop, state: Any = None, *, check: bool = True
    ) -> RunRecord:
        if isinstance(target, Loop):
            outcome = target.run(state)
            return target.record(outcome.run_id)
        from ._isolation import isolated
        from .recordmode import record_mode
        from .runner import run_scenario
        from .scenario import Scenario, load_scenario

        scenario = target if isinstance(target, Scenario) else load_scenario(_find(request, target))
        loom_clock.move_to(scenario.clock.start)
        mode = record_mode(request.config)
        with isolated(tmp_path / f"loom-run-{next(counter)}") as workdir:
            result = run_scenario(scenario, clock=loom_clock, workdir=workdir, mode=mode)
        if check and result.problems:
            pytest.fail("\n".join(result.problems), pytrace=False)
        return result.record

    return run


def _find(request: pytest.FixtureRequest, target: str | Path) -> Path:
    path = Path(target)
    for base in (Path(request.node.path).parent, request.config.rootpath):
        if (base / path).is_file():
            return base / path
    return path
