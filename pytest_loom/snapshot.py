"""Run-record snapshots through syrupy: one readable JSON file per scenario or test.

:class:`RunRecordExtension` is an ordinary syrupy single-file extension, so
``--snapshot-update``, the unused-snapshot report and xdist all behave as users know them. It
serialises a :class:`~pytest_loom.RunRecord` to canonical JSON (sorted keys, two-space indent)
with volatile values masked, explains a mismatch with the lab's per-step diff instead of a
text diff, and writes files atomically.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.data import Snapshot, SnapshotCollection, SnapshotCollections
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from syrupy.location import PyTestLocation

from ._atomic import write_atomic
from .diff import diff_records
from .record import RunRecord

if TYPE_CHECKING:
    from syrupy.types import (
        PropertyFilter,
        PropertyMatcher,
        SerializableData,
        SerializedData,
        SnapshotIndex,
    )

MASKED_RUN_ID = "<run-id>"

_volatile_paths: list[tuple[str, str]] = []


@contextmanager
def masking(tmp_path: Path, rootdir: Path) -> Iterator[None]:
    """Mask the test's tmp dir, the rootdir and the home directory in snapshots taken inside."""
    pairs = [(str(tmp_path), "<tmp>"), (str(rootdir), "<root>"), (str(Path.home()), "<home>")]
    _volatile_paths[:] = sorted(
        (p for p in pairs if p[0] not in ("", "/")), key=lambda p: -len(p[0])
    )
    try:
        yield
    finally:
        _volatile_paths.clear()


def serialize_record(record: RunRecord) -> str:
    """The snapshot text of a record: canonical JSON, run id and absolute paths masked."""
    text = dataclasses.replace(record, run_id=MASKED_RUN_ID).to_json().decode()
    for path, label in _volatile_paths:
        text = text.replace(path, label)
    return text + "\n"


def record_assertion(item: pytest.Item) -> SnapshotAssertion:
    """A syrupy assertion of ``item`` that compares run records, made as syrupy's ``snapshot``
    fixture makes its own, registered with the session syrupy keeps on the config.

    A scenario item asks for it directly: the ``snapshot`` fixture followed by
    ``use_extension`` would make and register two assertions per item, the first one, with
    syrupy's default extension, only to be thrown away.
    """
    config = item.config
    session: Any = getattr(config, "_syrupy", None)
    if session is None:
        pytest.fail(
            "loom scenario snapshots need syrupy's pytest plugin, which this session disabled "
            "(-p no:syrupy)\n  hint: enable it, or set `snapshot: false` in the scenario",
            pytrace=False,
        )
    option = config.option
    return SnapshotAssertion(
        update_snapshots=option.update_snapshots,
        update_new_snapshots_only=option.update_new_snapshots_only,
        extension_class=RunRecordExtension,
        test_location=PyTestLocation(item),
        session=session,
    )


class RunRecordExtension(SingleFileSnapshotExtension):
    """Snapshot a :class:`RunRecord` as ``__snapshots__/<file>/<test>.run.json``."""

    file_extension = "run.json"
    _write_mode = WriteMode.TEXT
    _named: ClassVar[tuple[object, object, object, str, str] | None] = None
    """The last (class, test location, index) named and its (snapshot name, file path)."""

    @classmethod
    def _names(cls, test_location: PyTestLocation, index: SnapshotIndex) -> tuple[str, str]:
        """The snapshot name and file of an assertion, worked out once per assertion.

        syrupy asks for them five times per ``==``, and each time sanitises the test name
        character by character and builds the path through ``pathlib``: over half of what an
        assertion costs besides reading the file. Only the last answer is kept.
        """
        named = cls._named
        if named is not None and (named[0], named[1], named[2]) == (cls, test_location, index):
            return named[3], named[4]
        name = super().get_snapshot_name(test_location=test_location, index=index)
        file = f"{name}.{cls.file_extension}"
        if os.sep in file or (os.altsep is not None and os.altsep in file):
            # syrupy's get_location asks get_snapshot_name for the file's name: answered here.
            RunRecordExtension._named = (cls, test_location, index, name, "")
            location = super().get_location(test_location=test_location, index=index)
        else:  # syrupy's answer: its directory names are normalised already
            location = os.path.join(cls.dirname(test_location=test_location), file)
        RunRecordExtension._named = (cls, test_location, index, name, location)
        return name, location

    _dirnames: ClassVar[dict[tuple[str, str | Path, str], str]] = {}
    """(which, snapshot directory name, test file) -> that test file's snapshot directory
    (``dirname``) or the directory syrupy scans for unused snapshots (``discovery``)."""

    @classmethod
    def _dir(cls, which: str, test_location: PyTestLocation, compute: Callable[..., str]) -> str:
        key = (which, cls.snapshot_dirname, test_location.filepath)
        found = cls._dirnames.get(key)
        if found is None:
            found = cls._dirnames[key] = cls._plain_dir(which, key[1], key[2]) or compute(
                test_location=test_location
            )
        return found

    @staticmethod
    def _plain_dir(which: str, snapshots: str | Path, filepath: str) -> str | None:
        """syrupy's answer with string operations, for a plain directory name such as
        ``__snapshots__`` next to a normalised absolute test file: ``<dir>/__snapshots__/<stem>``
        for ``dirname``, ``<dir>/__snapshots__`` for ``discovery``. Anything else is syrupy's
        (``pathlib`` costs 30 µs a scenario file here)."""
        if (
            not isinstance(snapshots, str)
            or snapshots in ("", ".", "..")
            or os.sep in snapshots
            or (os.altsep is not None and os.altsep in snapshots)
            or not os.path.isabs(filepath)
            or os.path.normpath(filepath) != filepath
        ):
            return None
        folder, name = os.path.split(filepath)
        dot = name.rfind(".")
        stem = name[:dot] if 0 < dot < len(name) - 1 else name
        if not stem:
            return None
        base = os.path.join(folder, snapshots)
        return base if which == "discovery" else os.path.join(base, stem)

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return cls._dir("dirname", test_location, super().dirname)

    @classmethod
    def discovery_dirname(cls, *, test_location: PyTestLocation) -> str:
        """Worked out once per test file: syrupy asks for it at every assertion, for every
        snapshot file it finds and again in its report, each time through ``pathlib``."""
        return cls._dir("discovery", test_location, super().discovery_dirname)

    def discover_snapshots(
        self, *, test_location: PyTestLocation, ignore_extensions: list[str] | None = None
    ) -> SnapshotCollections:
        """syrupy's discovery with two ``os.scandir`` levels instead of ``Path.rglob``.

        syrupy walks the whole snapshot directory in every process at the session's end, and
        with ``pathlib`` that took 33 ms per 1,000 scenario snapshots (7 ms this way). In the
        shared directory this extension owns only ``<dir>/<test file>/<name>.run.json``, and
        syrupy ignores what it does not own there, so nothing deeper needs listing. The same
        rules apply: files whose names start with a dot are skipped (folders are entered either
        way), symlinked folders are not entered, ``--snapshot-ignore-file-extensions json``
        hides them all.
        """
        discovery = self.discovery_dirname(test_location=test_location)
        if Path(discovery) == Path(self.dirname(test_location=test_location)):
            return super().discover_snapshots(
                test_location=test_location, ignore_extensions=ignore_extensions
            )
        found = SnapshotCollections()
        if self.file_extension.rpartition(".")[2] in (ignore_extensions or ()):
            return found  # syrupy checks the last part of ``run.json``
        suffix = f".{self.file_extension}"
        try:
            folders = [e.path for e in os.scandir(discovery) if e.is_dir(follow_symlinks=False)]
        except OSError:  # no snapshot directory (yet)
            return found
        for folder in folders:
            try:
                files = [
                    (e.path, e.name)
                    for e in os.scandir(folder)
                    if e.name.endswith(suffix) and e.name[0] != "." and e.is_file()
                ]
            except OSError:
                continue
            for path, name in files:
                collection = SnapshotCollection(location=path)
                collection.add(Snapshot(name=name[: -len(suffix)]))
                found.add(collection)
        return found

    @classmethod
    def get_snapshot_name(cls, *, test_location: PyTestLocation, index: SnapshotIndex = 0) -> str:
        return cls._names(test_location, index)[0]

    @classmethod
    def get_location(cls, *, test_location: PyTestLocation, index: SnapshotIndex) -> str:
        return cls._names(test_location, index)[1]

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        if isinstance(data, RunRecord):
            return serialize_record(data)
        if isinstance(data, str):
            return data
        raise TypeError(
            f"loom_snapshot compares run records, got {type(data).__name__}; "
            "pass the RunRecord returned by loom_run(...)"
        )

    def diff_lines(
        self, serialized_data: SerializedData, snapshot_data: SerializedData
    ) -> Iterator[str]:
        try:
            new = orjson.loads(serialized_data)
        except orjson.JSONDecodeError:
            yield from super().diff_lines(serialized_data, snapshot_data)
            return
        if not snapshot_data:
            return
        try:
            old = orjson.loads(snapshot_data)
        except orjson.JSONDecodeError as exc:
            yield (
                f"the stored snapshot is not valid JSON ({exc}); "
                "regenerate it with --snapshot-update"
            )
            return
        yield from diff_records(old, new) or ["(records differ only in formatting)"]

    @classmethod
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, name_order: dict[str, int] | None = None
    ) -> None:
        """Write atomically: a crash leaves the old snapshot or the new one, never half of one."""
        target = Path(snapshot_collection.location)
        data = next(iter(snapshot_collection)).data
        if not isinstance(data, str):
            raise TypeError(f"cannot write a {type(data).__name__} snapshot to {target}")
        write_atomic(target, data.encode())
