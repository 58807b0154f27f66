"""Cassette files: the format, atomic writes, secrets, and loud failures on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_loom import (
    Cassette,
    CassetteError,
    RecordedCall,
    RecordedRequest,
    RecordedResponse,
    ToolCallRequest,
    load_cassette,
)
from pytest_loom.cassette import dump_cassette, write_cassette

KEY = "sk-loom-DISTINCTIVE-test-key-42"


def call(prompt: str = "Summarise:\nthe report", *, step: int | None = 1) -> RecordedCall:
    return RecordedCall(
        RecordedRequest(
            provider="openai",
            model="gpt-4o",
            messages=(
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": prompt},
            ),
            tools=({"type": "function", "function": {"name": "search"}},),
            params={"temperature": 0.2},
        ),
        RecordedResponse(
            text="Short.",
            tool_calls=(ToolCallRequest("search", {"q": "x"}, "call_1"),),
            model="gpt-4o-2024-08-06",
            finish="tool_calls",
            input_tokens=12,
            output_tokens=3,
            latency_s=1.25,
        ),
        step=step,
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    cassette = Cassette((call(), call("again", step=None)))
    path = tmp_path / "c.yaml"
    write_cassette(path, cassette)
    assert load_cassette(path) == cassette
    assert path.read_text() == dump_cassette(cassette)


def test_readable_yaml_with_block_prompts_and_an_end_line() -> None:
    text = dump_cassette(Cassette((call(),)))
    assert text.startswith("# pytest-loom cassette")
    assert "version: 1\n" in text
    assert "      content: |-\n        Summarise:\n        the report\n" in text
    assert "    latency: 1.25\n" in text and "- step: 1\n" in text
    assert text.endswith("\n...\n")


def test_secrets_are_redacted_wherever_they_appear() -> None:
    leaky = call(f"my key is {KEY}")
    text = dump_cassette(Cassette((leaky,)), secrets=[KEY, "short"])
    assert KEY not in text
    assert "my key is <redacted>" in text


def test_write_is_atomic_and_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    write_cassette(path, Cassette((call(),)))
    before = path.read_text()

    def explode(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(OSError, match="disk full"):
        write_cassette(path, Cassette(()))
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]


def broken(tmp_path: Path, text: str) -> CassetteError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CassetteError) as info:
        load_cassette(path)
    assert "bad.yaml" in str(info.value)
    return info.value


def test_truncated_file_is_named_as_truncated(tmp_path: Path) -> None:
    good = dump_cassette(Cassette((call(), call())))
    err = broken(tmp_path, good[: len(good) // 2])
    assert "truncated" in err.problem
    assert err.hint is not None and "--loom-record=rewrite" in err.hint


def test_corrupt_yaml_names_the_line(tmp_path: Path) -> None:
    err = broken(tmp_path, "version: 1\ncalls: [\n  {step: 1\n...\n")
    assert err.problem.startswith("line ") and "not valid YAML" in err.problem


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("version: 1", "version: 2"), "reads cassette version 1, the file says 2"),
        (("input: 12", "input: -1"), "calls[0].response.usage.input: expected an integer >= 0"),
        (("provider: openai", "provider: acme"), "calls[0].request.provider: expected openai or"),
        (("- step: 1", "- step: 0"), "calls[0].step: expected null or a step number >= 1"),
        (("finish: tool_calls", "finnish: tool_calls"), "unknown key 'finnish'"),
        (("    text: Short.\n", ""), "calls[0].response.text: missing"),
    ],
)
def test_bad_fields_name_the_key(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    text = dump_cassette(Cassette((call(),)))
    assert edit[0] in text
    err = broken(tmp_path, text.replace(edit[0], edit[1], 1))
    assert expected in str(err)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    assert broken(tmp_path, "").problem == "the file is empty"
    with pytest.raises(CassetteError, match="no such file") as info:
        load_cassette(tmp_path / "nope.yaml")
    assert "--loom-record=once" in str(info.value)
