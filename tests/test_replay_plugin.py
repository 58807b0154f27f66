"""Replay through the plugin: the shipped SDK examples, record modes, CI, markers, the guard."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from examples.sdk.fake_api import FAKE_KEY, record  # noqa: E402


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("CI", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeini("[pytest]\n")
    shutil.copytree(REPO / "scenarios" / "sdk", pytester.path / "sdk")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_examples_replay_offline_serially_and_under_xdist(project: pytest.Pytester) -> None:
    run(project, "--loom-scenarios", "-p", "no:xdist").assert_outcomes(passed=6)
    run(project, "--loom-scenarios", "-n", "2").assert_outcomes(passed=6)


def test_examples_record_against_the_fake_api_then_replay_identically(
    project: pytest.Pytester,
) -> None:
    root = project.path
    shutil.rmtree(root / "sdk" / "cassettes")
    shutil.rmtree(root / "sdk" / "__snapshots__")
    done = record(root, "--loom-scenarios", "-p", "no:xdist", "--snapshot-update", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    for path in sorted((root / "sdk" / "cassettes").iterdir()):
        text = path.read_text()
        assert FAKE_KEY not in text and "org-fake" not in text, path.name
        committed = (REPO / "scenarios" / "sdk" / "cassettes" / path.name).read_text()
        assert _without_latency(text) == _without_latency(committed), path.name
    snapshots = {p: p.read_bytes() for p in (root / "sdk" / "__snapshots__").rglob("*.json")}
    assert len(snapshots) == 6
    # Offline replays match the records of the recording run, byte for byte, every time.
    for args in (("-p", "no:xdist"), ("-n", "2")):
        run(project, "--loom-scenarios", *args).assert_outcomes(passed=6)
    assert {p: p.read_bytes() for p in snapshots} == snapshots


def _without_latency(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "latency:" not in line)


def test_a_changed_prompt_fails_with_the_step_and_the_diff(project: pytest.Pytester) -> None:
    path = project.path / "sdk" / "openai_sync.loom.yaml"
    path.write_text(path.read_text().replace("Loops retry things.", "Loops retry stuff."))
    result = run(project, "--loom-scenarios", "-p", "no:xdist", "sdk/openai_sync.loom.yaml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cassette sdk/cassettes/openai_sync.yaml: no recorded call matches request 1 (step 1)",
            "*-    Loops retry things.",
            "*+    Loops retry stuff.",
            "*re-record with pytest --loom-record=rewrite*",
            "*expect.stop: expected converged, got failed(BadRequestError)*",
        ]
    )


def test_a_corrupt_cassette_fails_with_the_file_and_no_re_record(project: pytest.Pytester) -> None:
    cassette = project.path / "sdk" / "cassettes" / "anthropic_sync.yaml"
    text = cassette.read_text()
    cassette.write_text(text[: len(text) // 3])
    result = run(
        project,
        "--loom-scenarios",
        "-p",
        "no:xdist",
        "--loom-record=once",
        "sdk/anthropic_sync.loom.yaml",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*cassette sdk/cassettes/anthropic_sync.yaml: truncated: it does not end with the `...`*"]
    )
    assert "pytest_loom/" not in result.stdout.str()
    assert cassette.read_text() == text[: len(text) // 3]


def test_on_ci_the_ini_key_alone_never_records(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project.path / "sdk" / "cassettes" / "openai_sync.yaml").unlink()
    project.makeini("[pytest]\nloom_record = once\n")
    monkeypatch.setenv("CI", "true")
    result = run(project, "--loom-scenarios", "-p", "no:xdist", "sdk/openai_sync.loom.yaml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*does not exist yet: record it with --loom-record=once*"])
    assert not (project.path / "sdk" / "cassettes" / "openai_sync.yaml").exists()


PY_TEST = """
import openai
import pytest

FIRST_REVISION = "Agent loops retry a step until a check passes."  # what examples.sdk.fake_api says


@pytest.mark.loom_cassette("cassettes/greeting.yaml")
def test_greeting(loom_cassette, loom_clock):
    client = openai.OpenAI()
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.choices[0].message.content == FIRST_REVISION
    assert loom_cassette.calls[0].input_tokens > 0


def test_default_cassette_path(loom_cassette):
    reply = openai.OpenAI().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "bye"}]
    )
    assert reply.choices[0].message.content == FIRST_REVISION
"""


def test_loom_cassette_marker_and_fixture_record_then_replay(project: pytest.Pytester) -> None:
    project.makepyfile(test_sdk=PY_TEST)
    done = record(project.path, "test_sdk.py", "-p", "no:xdist", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project.path / "cassettes" / "greeting.yaml").is_file()
    assert (project.path / "cassettes" / "test_sdk" / "test_default_cassette_path.yaml").is_file()
    run(project, "test_sdk.py", "-p", "no:xdist").assert_outcomes(passed=2)


GUARDED = """
import socket


def test_reaches_out(loom_llm):
    socket.create_connection(("192.0.2.7", 443), timeout=1)


def test_plain_tests_are_not_guarded():
    pass
"""


def test_loom_tests_run_offline(project: pytest.Pytester) -> None:
    project.makepyfile(test_net=GUARDED)
    result = run(project, "test_net.py", "-p", "no:xdist")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*NetworkBlockedError: pytest-loom blocked a network connection to 192.0.2.7:443*"]
    )
    assert "--loom-record=once" in result.stdout.str()


def test_unknown_record_mode_is_a_usage_error(project: pytest.Pytester) -> None:
    result = run(project, "--loom-record=sometimes")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--loom-record: invalid choice: 'sometimes'*"])
    assert os.environ.get("CI") is None
