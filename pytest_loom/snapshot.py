"""Run-record snapshots through syrupy: one readable JSON file per scenario or test.

:class:`RunRecordExtension` is an ordinary syrupy single-file extension, so
``--snapshot-update``, the unused-snapshot report and xdist all behave as users know them. It
serialises a :class:`~pytest_loom.RunRecord` to canonical JSON (sorted keys, two-space indent)
with volatile values masked, explains a mismatch with the lab's per-step diff instead of a
text diff, and writes files atomically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import orjson
from syrupy.data import SnapshotCollection
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from ._atomic import write_atomic
from .diff import diff_records
from .record import RunRecord

if TYPE_CHECKING:
    from syrupy.location import PyTestLocation
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
        # syrupy's get_location asks get_snapshot_name for the file's name: answered from here.
        RunRecordExtension._named = (cls, test_location, index, name, "")
        location = super().get_location(test_location=test_location, index=index)
        RunRecordExtension._named = (cls, test_location, index, name, location)
        return name, location

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
