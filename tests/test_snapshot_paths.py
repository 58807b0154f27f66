"""Where scenario snapshots live: the run-record extension's string shortcut for syrupy's
snapshot paths gives syrupy's own answer, and custom ``--snapshot-dirname`` values work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from syrupy.extensions.base import SnapshotCollectionStorage
from syrupy.extensions.single_file import SingleFileSnapshotExtension

from pytest_loom.snapshot import RunRecordExtension


class _Location:
    """The two fields of syrupy's ``PyTestLocation`` its directory methods read."""

    def __init__(self, filepath: str) -> None:
        self.filepath = filepath

    @property
    def basename(self) -> str:
        return Path(self.filepath).stem


_part = st.text(st.sampled_from("ab.-_ "), min_size=1, max_size=6)


@given(
    parts=st.lists(_part | st.sampled_from(["", ".", ".."]), min_size=1, max_size=4),
    snapshots=_part | st.sampled_from(["__snapshots__", "", ".", "..", "a/b", "/abs"]),
    leading=st.sampled_from(["/", "//", "rel/"]),
)
def test_the_string_shortcut_gives_syrupy_s_directories(
    parts: list[str], snapshots: str, leading: str
) -> None:
    filepath = leading + "/".join(parts)
    location: Any = _Location(filepath)
    for which, syrupy_answer in (
        ("dirname", SingleFileSnapshotExtension.dirname),
        ("discovery", SingleFileSnapshotExtension.discovery_dirname),
    ):
        mine = RunRecordExtension._plain_dir(which, snapshots, filepath)
        if mine is not None:
            saved = SnapshotCollectionStorage.snapshot_dirname  # what --snapshot-dirname sets
            SnapshotCollectionStorage.snapshot_dirname = snapshots
            try:
                assert mine == syrupy_answer(test_location=location)
            finally:
                SnapshotCollectionStorage.snapshot_dirname = saved


def test_the_shortcut_answers_the_usual_layout() -> None:
    assert RunRecordExtension._plain_dir("dirname", "__snapshots__", "/p/s1.loom.yaml") == (
        "/p/__snapshots__/s1.loom"
    )
    assert RunRecordExtension._plain_dir("discovery", "__snapshots__", "/p/s1.loom.yaml") == (
        "/p/__snapshots__"
    )
    assert RunRecordExtension._plain_dir("dirname", "a/b", "/p/s1.loom.yaml") is None
    assert RunRecordExtension._plain_dir("dirname", "__snapshots__", "/p/./s.yaml") is None


SCENARIO = """\
version: 1
entry: loops:build
input: {n: 0}
budget: {iterations: 2}
llm:
  rules:
    - match: {contains: "next source"}
      reply: {text: "a source", usage: {input: 10, output: 5}}
"""


@pytest.mark.parametrize("dirname", ["golden", os.path.join("golden", "runs")])
def test_scenario_snapshots_follow_snapshot_dirname(
    research_project: pytest.Pytester, dirname: str
) -> None:
    pytester = research_project
    (pytester.path / "s1.loom.yaml").write_text(SCENARIO)
    (pytester.path / "s2.loom.yaml").write_text(SCENARIO)
    args = ("--loom-scenarios", f"--snapshot-dirname={dirname}", "-p", "no:cacheprovider")

    pytester.runpytest_subprocess(*args, "--snapshot-update").assert_outcomes(passed=2)
    folder = pytester.path / dirname
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.json")) == [
        "s1.loom/s1.run.json",
        "s2.loom/s2.run.json",
    ]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*2 snapshots passed*"])

    (pytester.path / "s2.loom.yaml").unlink()  # its snapshot is now unused, and found
    result = pytester.runpytest_subprocess(*args, "--snapshot-update")
    result.stdout.fnmatch_lines(["*1 unused snapshot deleted*"])
    assert not (folder / "s2.loom" / "s2.run.json").exists()
    assert (folder / "s1.loom" / "s1.run.json").exists()


def _found(collections: Any) -> dict[str, list[str]]:
    return {c.location: sorted(s.name for s in c) for c in collections}


@pytest.mark.parametrize("ignore", [None, ["ambr"], ["json"]])
def test_discovery_finds_what_syrupy_s_own_walk_finds(tmp_path: Path, ignore: Any) -> None:
    shared = tmp_path / "__snapshots__"
    files = [
        "s1.loom/s1.run.json",
        "s2.loom/s2.run.json",
        "s2.loom/other.run.json",
        ".hidden/h.run.json",  # a dot folder is entered, as pathlib's walk does
        "s1.loom/.s1.run.json",  # dot files are not snapshots
        "s1.loom/s1.run.json.lock",  # syrupy's write sidecars
        "s1.loom/s1.run.json.tmp",
        "s1.loom/s1.json",  # another single-file extension's
        "test_x.ambr",  # syrupy's default extension's
        "top.run.json",  # not inside a test file's folder
        "s1.loom/deeper/d.run.json",
    ]
    for name in files:
        (shared / name).parent.mkdir(parents=True, exist_ok=True)
        (shared / name).write_text("{}\n")
    (shared / "s3.loom").mkdir()
    (shared / "s3.loom" / "dir.run.json").mkdir()  # a folder, not a snapshot
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.run.json").write_text("{}\n")
    (shared / "linked.loom").symlink_to(tmp_path / "elsewhere")  # not entered
    (shared / "s2.loom" / "l.run.json").symlink_to(shared / "s1.loom" / "s1.run.json")
    location: Any = _Location(str(tmp_path / "s1.loom.yaml"))

    mine = RunRecordExtension().discover_snapshots(test_location=location, ignore_extensions=ignore)
    theirs = SingleFileSnapshotExtension.discover_snapshots(
        RunRecordExtension(), test_location=location, ignore_extensions=ignore
    )

    assert _found(mine) == _found(theirs)
    if ignore != ["json"]:
        assert sorted(Path(p).relative_to(shared).as_posix() for p in _found(mine)) == [
            ".hidden/h.run.json",
            "s1.loom/s1.run.json",
            "s2.loom/l.run.json",
            "s2.loom/other.run.json",
            "s2.loom/s2.run.json",
        ]


def test_discovery_without_a_snapshot_directory_finds_nothing(tmp_path: Path) -> None:
    location: Any = _Location(str(tmp_path / "s1.loom.yaml"))
    assert _found(RunRecordExtension().discover_snapshots(test_location=location)) == {}
