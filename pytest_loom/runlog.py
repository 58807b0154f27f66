"""The runs of the latest sessions, kept for the ``loom`` command.

Every pytest session that runs scenarios gets a numbered folder in pytest's cache
(``.pytest_cache/d/loom-runs/<n>/``). Each process (the session, or each xdist worker) keeps
its scenario runs in memory, each with its run record, the scenario file and the directory that
kept the files the run left, and writes them at its end as one JSON file,
``runs-<worker>-<k>.json`` (a new ``k`` every :data:`BATCH` runs, so memory stays bounded):
a file per run cost more than running a small scenario. Reading a session reads all of its
files. Only the newest ``loom_keep_sessions`` folders are kept. ``loom runs``, ``show``,
``diff``, ``export`` and ``replay`` read them back.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from ._atomic import write_atomic
from .record import RecordError, RunRecord

FORMAT = 2
"""Version of the run and session files; other versions are refused with a clear error."""

BATCH = 500
"""Runs a process keeps in memory before it writes them out."""

CACHE_KEY = "loom-runs"
"""The folder under pytest's cache (``<cache_dir>/d/``) that holds the sessions."""

_SESSION_FILE = "session.json"
_RUNS_GLOB = "runs-*.json"

SESSION_KEY = pytest.StashKey["Session"]()
"""Where a pytest session (or xdist worker) keeps the session its scenario runs are saved in."""


class RunLogError(Exception):
    """A saved run or session cannot be found or read."""


@dataclass(frozen=True, slots=True)
class Session:
    """One pytest session's folder of runs."""

    number: int
    path: Path
    created: str
    """When the session started (UTC, ISO 8601, seconds)."""
    rootdir: Path
    pythonpath: tuple[Path, ...]
    """The session's ``pythonpath`` ini entries: where entry points are imported from."""
    _pending: dict[str, dict[str, Any]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )
    _batches: Iterator[int] = field(
        default_factory=lambda: itertools.count(1), init=False, compare=False, repr=False
    )

    def runs(self) -> list[SavedRun]:
        """The session's runs, by id."""
        runs = [
            _saved_run(self, path, data)
            for path in sorted(self.path.glob(_RUNS_GLOB))
            for data in _runs_of(path)
        ]
        return sorted(runs, key=lambda run: run.id)

    def has_runs(self) -> bool:
        return any(self.path.glob(_RUNS_GLOB))

    def save(
        self, run_id: str, scenario_path: Path, workdir: Path | None, record: RunRecord
    ) -> None:
        """Keep a run of this process, to be written with the next :meth:`flush`.

        ``workdir`` is the directory that kept the files the run left, if it left any.
        """
        self._pending[run_id] = {
            "id": run_id,
            "path": str(scenario_path),
            "workdir": None if workdir is None else str(workdir),
            # Its canonical JSON, as it will be written: no dict of it is ever made.
            "record": orjson.Fragment(record.to_json(indent=False)),
        }
        if len(self._pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the runs kept since the last flush as one file of this process."""
        if not self._pending:
            return
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        data = {"format": FORMAT, "runs": sorted(self._pending.values(), key=lambda r: r["id"])}
        _write_json(self.path / f"runs-{worker}-{next(self._batches)}.json", data)
        self._pending.clear()


@dataclass(frozen=True, slots=True)
class SavedRun:
    """One scenario run of a session."""

    session: Session
    id: str
    path: Path
    """The scenario file."""
    workdir: Path | None
    """The directory that kept the files the run left (such as its checkpoints), while pytest
    keeps it; ``None`` if the run left no file."""
    record: RunRecord

    @property
    def ref(self) -> str:
        """How the ``loom`` command names this run: ``<session>:<id>``."""
        return f"{self.session.number}:{self.id}"


def start_session(root: Path, *, keep: int, rootdir: Path, pythonpath: list[Path]) -> Session:
    """A new numbered session folder under ``root``; older ones beyond ``keep`` are removed,
    and so are those another version of pytest-loom saved (it could not read them)."""
    root.mkdir(parents=True, exist_ok=True)
    existing = _numbers(root)
    for number in existing[: max(0, len(existing) - keep + 1)]:
        shutil.rmtree(root / str(number), ignore_errors=True)
    for number in existing[max(0, len(existing) - keep + 1) :]:
        if not _current(root / str(number)):
            shutil.rmtree(root / str(number), ignore_errors=True)
    number = (existing[-1] if existing else 0) + 1
    while True:
        try:
            (root / str(number)).mkdir()
            break
        except FileExistsError:  # another session started at the same moment
            number += 1
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    meta = {
        "format": FORMAT,
        "created": created,
        "rootdir": str(rootdir),
        "pythonpath": [str(p) for p in pythonpath],
    }
    _write_json(root / str(number) / _SESSION_FILE, meta)
    return open_session(root / str(number))


def open_session(path: Path) -> Session:
    """The session whose folder is ``path``."""
    meta = _read_json(path / _SESSION_FILE)
    try:
        return Session(
            number=int(path.name),
            path=path,
            created=str(meta["created"]),
            rootdir=Path(meta["rootdir"]),
            pythonpath=tuple(Path(p) for p in meta["pythonpath"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RunLogError(
            f"{path / _SESSION_FILE}: not a pytest-loom session file ({exc!r} is missing or "
            "wrong)\n  hint: delete the folder; the next `pytest --loom-scenarios` makes a new one"
        ) from None


def sessions(root: Path) -> list[Session]:
    """The kept sessions under ``root``, oldest first."""
    return [open_session(root / str(n)) for n in _numbers(root)]


def find_runs_dir(start: Path) -> Path | None:
    """The ``loom-runs`` folder of pytest's default cache in ``start`` or a parent."""
    for folder in (start, *start.parents):
        candidate = folder / ".pytest_cache" / "d" / CACHE_KEY
        if candidate.is_dir():
            return candidate
    return None


def find_run(root: Path, ref: str) -> SavedRun:
    """The run ``ref`` names: ``[<session>:]<id>``; an id may be shortened to a unique part.

    Without a session number, the newest session that has a matching run is searched.
    """
    number, _, name = ref.rpartition(":")
    kept = sessions(root)
    if number:
        if not number.isdigit():
            raise RunLogError(f"run {ref!r}: {number!r} is not a session number")
        chosen = [s for s in kept if s.number == int(number)]
        if not chosen:
            raise RunLogError(
                f"run {ref!r}: there is no session {number} in {root}; kept sessions: "
                f"{', '.join(str(s.number) for s in kept) or 'none'}"
            )
        kept = chosen
    if not kept:
        raise RunLogError(
            f"no saved runs in {root}\n  hint: run `pytest --loom-scenarios` first "
            "(with pytest's cache enabled)"
        )
    for session in reversed(kept):
        runs = session.runs()
        matches = _matching(runs, name)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = "\n".join(f"  {run.ref}" for run in matches[:10])
            raise RunLogError(f"run {ref!r} is ambiguous in session {session.number}:\n{shown}")
    searched = ", ".join(str(s.number) for s in kept)
    raise RunLogError(
        f"no run matches {ref!r} in session{'s' if len(kept) > 1 else ''} {searched}\n"
        "  hint: `loom runs` lists the runs of the latest session, `loom runs --all` all of them"
    )


def _matching(runs: list[SavedRun], name: str) -> list[SavedRun]:
    """Exact id, else ids ending in ``/name``, else ids containing ``name``."""
    for test in (
        lambda run: run.id == name,
        lambda run: run.id.endswith("/" + name),
        lambda run: name in run.id,
    ):
        found = [run for run in runs if test(run)]
        if found:
            return found
    return []


def _current(folder: Path) -> bool:
    """Whether the session in ``folder`` was saved in this version's format (or is being
    started by another session right now: it has no session file yet)."""
    try:
        meta = orjson.loads((folder / _SESSION_FILE).read_bytes())
    except FileNotFoundError:
        return True
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def _numbers(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir())


def _runs_of(path: Path) -> list[Any]:
    runs = _read_json(path).get("runs")
    if not isinstance(runs, list):
        raise RunLogError(f"{path}: not a pytest-loom runs file ('runs' is missing)")
    return runs


def _saved_run(session: Session, path: Path, data: Any) -> SavedRun:
    try:
        record = RunRecord.from_dict(data["record"])
        workdir = None if data["workdir"] is None else Path(data["workdir"])
        return SavedRun(session, str(data["id"]), Path(data["path"]), workdir, record)
    except (KeyError, TypeError) as exc:
        raise RunLogError(f"{path}: not a saved pytest-loom run ({exc!r} is missing)") from None
    except RecordError as exc:
        raise RunLogError(f"{path}: {exc}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise RunLogError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise RunLogError(
            f"{path}: not valid JSON ({exc})\n  hint: delete it; it is rewritten by the next run"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise RunLogError(
            f"{path}: format {found!r}, this pytest-loom reads format {FORMAT}\n"
            "  hint: re-run the scenarios with this version to save them again"
        )
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
