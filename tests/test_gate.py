"""The drift gate as CI meets it: on the shipped fixer example, under xdist, across shards,
with trials, reports (JSON, markdown, HTML in a real browser, JUnit) and bad input."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from pytest_loom import SummaryFormatError, load_summary
from pytest_loom._html import NOW_COLOUR
from pytest_loom.policy import Transition
from pytest_loom.recordmode import on_ci
from pytest_loom.report_cli import add_report_parser

REPO = Path(__file__).resolve().parent.parent
FIXER = "scenarios/fixer/completed.loom.yaml"
FIXER_SNAPSHOT = "scenarios/fixer/__snapshots__/completed.loom/completed.run.json"
NODE = f"{FIXER}::completed"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def shipped(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project holding the shipped fixer example, its completed scenario and its snapshot,
    and the research example with its four budget scenarios and snapshots."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    for rel in (
        "examples/__init__.py",
        "examples/fixer/__init__.py",
        "examples/fixer/loop.py",
        "examples/research/__init__.py",
        "examples/research/loop.py",
        FIXER,
        FIXER_SNAPSHOT,
        *(
            str(p.relative_to(REPO))
            for p in (REPO / "scenarios/research").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ),
    ):
        target = pytester.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, target)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--loom-scenarios", *args)


def edit(pytester: pytest.Pytester, rel: str, old: str, new: str) -> None:
    path = pytester.path / rel
    text = path.read_text()
    assert old in text, (old, rel)
    path.write_text(text.replace(old, new, 1))


def ini(pytester: pytest.Pytester, *lines: str) -> None:
    pytester.makeini("[pytest]\npythonpath = .\n" + "".join(f"{line}\n" for line in lines))


# A tighter budget: the fixer's one LLM call costs $0.00327, so it stops before step 2.
TIGHT_BUDGET = (
    "entry: examples.fixer.loop:build\n",
    "entry: examples.fixer.loop:build\nbudget: {usd: 0.003}\n",
)
EXPECT_BUDGET = ("  stop: completed\n  steps: 2\n", "  stop: budget_exhausted(usd)\n  steps: 1\n")
# A price change of the output tokens: $0.00327 -> $0.00336 (+2.75%), nothing else changes.
PRICIER = (
    "  model: claude-sonnet-4\n",
    "  model: claude-sonnet-4\n  pricing: {claude-sonnet-4: {input: 3.0, output: 16.0}}\n",
)


def test_completed_to_budget_exhausted_fails_the_session(shipped: pytest.Pytester) -> None:
    run(shipped, FIXER).assert_outcomes(passed=1)
    edit(shipped, FIXER, *TIGHT_BUDGET)
    result = run(shipped, FIXER)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*drift from its snapshot that the gate does not allow:*",
            "*steps 2 -> 1 (-1, -50%); cost $0.00327; tokens 730*",
            "*stop: completed -> budget_exhausted(usd): the stop reason changed*",
            "*loom drift gate*",
            "stop reasons, baseline -> now (the committed snapshots):",
            "  completed -> budget_exhausted(usd): 1  (changed)",
            "drifted scenarios, most severe first:",
            f"  FAIL {NODE} [stop]",
            "loom gate FAILED: 1 of 1 scenarios drifted in a way the policy does not allow*",
        ]
    )


def test_an_allowed_transition_passes_with_a_warning(shipped: pytest.Pytester) -> None:
    edit(shipped, FIXER, *TIGHT_BUDGET)
    edit(shipped, FIXER, *EXPECT_BUDGET)  # the change is intended: the expectations say so
    ini(shipped, "loom_allow = completed -> budget_exhausted")
    result = run(shipped, FIXER)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "  completed -> budget_exhausted(usd): 1  (changed)",
            f"  warn {NODE} [stop]",
            "*stop: completed -> budget_exhausted(usd): warn, allowed by "
            "'completed -> budget_exhausted'",
            "loom gate passed with 1 warning: 1 scenarios, 1 drifted (--loom-drift=fail)",
        ]
    )
    # A forbid rule wins over the allow rule.
    ini(shipped, "loom_allow = completed -> budget_exhausted", "loom_forbid = completed -> *")
    forbidden = run(shipped, FIXER)
    assert forbidden.ret == pytest.ExitCode.TESTS_FAILED
    forbidden.stdout.fnmatch_lines(["*forbidden by 'completed -> [*]'*"])
    # --loom-drift=warn reports the same drift and passes.
    warned = run(shipped, FIXER, "--loom-drift=warn")
    assert warned.ret == pytest.ExitCode.OK
    warned.stdout.fnmatch_lines([f"  warn {NODE} [stop]", "loom gate passed with 1 warning*"])


def test_a_cost_change_inside_tolerance_is_reported_and_passes(shipped: pytest.Pytester) -> None:
    edit(shipped, FIXER, *PRICIER)
    ini(shipped, "loom_tolerance_cost = 5%")
    result = run(shipped, FIXER)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "  completed -> completed: 1",
            f"  ok   {NODE} [tolerated]",
            "*cost: $0.00327 -> $0.00336 (+$9e-05, +2.75%): allow, within the 5% tolerance",
            "loom gate passed: 1 scenarios, 1 drifted (--loom-drift=fail)",
        ]
    )
    # Beyond the tolerance it is a regression, and fails.
    ini(shipped, "loom_tolerance_cost = 2")
    beyond = run(shipped, FIXER)
    assert beyond.ret == pytest.ExitCode.TESTS_FAILED
    beyond.stdout.fnmatch_lines(
        [f"  FAIL {NODE} [regression]", "*cost: *: fail, beyond the 2% tolerance"]
    )


def test_drift_off_keeps_plain_snapshot_failures(shipped: pytest.Pytester) -> None:
    edit(shipped, FIXER, *PRICIER)
    ini(shipped, "loom_tolerance_cost = 5%")
    result = run(shipped, FIXER, "--loom-drift=off")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*run record differs from its snapshot:*", "loom gate off*"])
    assert "stop reasons" not in result.stdout.str()


def test_a_content_change_fails_unless_the_policy_allows_it(shipped: pytest.Pytester) -> None:
    edit(shipped, "examples/fixer/loop.py", "Failing: ", "Failing tests: ")
    result = run(shipped, FIXER)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*content: step 1 differs: its prompts, replies, tool calls, score or state changed",
            "*step 1: llm_calls[[]0[]].prompt*",
            f"  FAIL {NODE} [record]",
        ]
    )
    shipped.path.joinpath("policy.toml").write_text('[gate]\nrecord = "warn"\n')
    assert run(shipped, FIXER, "--loom-policy=policy.toml").ret == pytest.ExitCode.OK


def test_reports_junit_and_step_summary(
    shipped: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit(shipped, FIXER, *TIGHT_BUDGET)
    step_summary = shipped.path / "step-summary.md"
    step_summary.write_text("# earlier step output\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = run(shipped, "--loom-report=out", "--junitxml=junit.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = shipped.path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "summary.json", "summary.md"]
    md = (out / "summary.md").read_text()
    assert step_summary.read_text() == "# earlier step output\n" + md
    assert "## pytest-loom drift gate: failed" in md
    assert "| `completed` |  |  | **1** |  |" in md  # the matrix row of baseline completed
    assert f"| FAIL | `{NODE}` | completed -> budget_exhausted(usd) |" in md

    cases = {c.get("name"): c for c in ET.parse(shipped.path / "junit.xml").iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["completed"].iter("property")}
    assert props == {
        "loom_stop": "budget_exhausted(usd)",
        "loom_baseline_stop": "completed",
        "loom_steps": "1",
        "loom_llm_calls": "1",
        "loom_input_tokens": "640",
        "loom_output_tokens": "90",
        "loom_cost_usd": "0.00327",
        "loom_elapsed_s": "4",
        "loom_trials": "1",
        "loom_drift": "stop",
        "loom_drift_action": "fail",
    }
    research = {p.get("name"): p.get("value") for p in cases["budget_usd"].iter("property")}
    assert research["loom_stop"] == "budget_exhausted(usd)"
    assert research["loom_drift"] == "none"


def test_serial_and_xdist_reports_are_byte_identical_and_shards_merge_to_the_full_run(
    shipped: pytest.Pytester,
) -> None:
    for rel in (  # a resumed run: its steps carry events
        "examples/refine/__init__.py",
        "examples/refine/loop.py",
        "scenarios/refine/crash_resume.loom.yaml",
        "scenarios/refine/__snapshots__/crash_resume.loom/crash_resume.run.json",
    ):
        (shipped.path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, shipped.path / rel)
    edit(shipped, FIXER, *TIGHT_BUDGET)
    edit(shipped, "scenarios/research/budget_usd.loom.yaml", "input: 1000", "input: 1010")
    ini(shipped, "loom_tolerance_tokens = 5", "loom_tolerance_cost = 5")

    def files(name: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (shipped.path / name).iterdir()}

    assert run(shipped, "--loom-report=serial", "-p", "no:xdist").ret == 1
    assert run(shipped, "--loom-report=parallel", "-n", "2").ret == 1
    serial = files("serial")
    assert serial == files("parallel")
    assert b"tolerated" in serial["summary.json"] and b'"stop"' in serial["summary.json"]

    assert run(shipped, "--loom-report=shard1", "scenarios/fixer").ret == 1
    assert run(shipped, "--loom-report=shard2", "scenarios/research", "-n", "2").ret == 0
    assert run(shipped, "--loom-report=shard3", "scenarios/refine").ret == 0
    assert merge(shipped.path, "shard1", "shard2", "shard3", "-o", "merged") == 1
    assert files("merged") == serial


def merge(cwd: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="loom")
    add_report_parser(parser.add_subparsers())
    args = parser.parse_args(["report", "merge", *argv])
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return int(args.func(args))
    finally:
        os.chdir(old)


def test_merge_prints_the_gate_and_rejects_bad_input(
    shipped: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(shipped, FIXER, *PRICIER)
    assert run(shipped, "--loom-report=a", "-k", "fixer").ret == 1
    capsys.readouterr()
    assert merge(shipped.path, "a", "-o", "m", "--drift", "warn") == 0
    out = capsys.readouterr().out
    assert f"  warn {NODE} [regression]" in out and "loom gate passed with 1 warning" in out

    assert merge(shipped.path, "nowhere", "-o", "m") == 2
    assert "loom report merge: nowhere: cannot be read" in capsys.readouterr().err
    (shipped.path / "bad.json").write_text('{"format": "other"}')
    assert merge(shipped.path, "bad.json", "-o", "m") == 2
    assert "bad.json: not a pytest-loom summary" in capsys.readouterr().err
    # The same scenario with different results in two shards: not shards of one run.
    edit(shipped, FIXER, "output: 16.0", "output: 17.0")
    assert run(shipped, "--loom-report=b", "-k", "fixer").ret == 1
    assert merge(shipped.path, "a", "b", "-o", "m") == 2
    err = capsys.readouterr().err
    assert f"scenario {NODE} is in a/summary.json and in b/summary.json" in err


def test_a_baseline_summary_gates_a_branch_that_updated_its_snapshots(
    shipped: pytest.Pytester,
) -> None:
    assert run(shipped, FIXER, "--loom-report=main").ret == 0
    # The branch changes the budget and updates expectations and snapshots: no snapshot fails.
    edit(shipped, FIXER, *TIGHT_BUDGET)
    edit(shipped, FIXER, *EXPECT_BUDGET)
    run(shipped, FIXER, "--snapshot-update").stdout.fnmatch_lines(
        ["*stop: completed -> budget_exhausted(usd): warn, *accepted by --snapshot-update"]
    )
    assert run(shipped, FIXER).ret == pytest.ExitCode.OK
    against_main = run(shipped, FIXER, "--loom-baseline=main/summary.json")
    assert against_main.ret == pytest.ExitCode.TESTS_FAILED
    against_main.stdout.fnmatch_lines(
        [
            "*drift from the --loom-baseline summary that the gate does not allow*",
            "stop reasons, baseline -> now (a summary of another run (--loom-baseline)):",
            "  completed -> budget_exhausted(usd): 1  (changed)",
        ]
    )
    # A scenario the baseline does not know is new: a warning.
    new = run(shipped, "--loom-baseline=main/summary.json", "-k", "research and usd")
    assert new.ret == pytest.ExitCode.OK
    new.stdout.fnmatch_lines(
        ["*new scenario: budget_exhausted(usd): warn, no baseline for this scenario"]
    )


TOLERATE_ALL = [f"loom_tolerance_{k} = 50" for k in ("steps", "llm_calls", "tokens", "cost")]

FLAKY_LOOP = """
import os

from pytest_loom import Done, Lab, Loop


def step(state, ctx):
    # Seeded by the trial: the first FLAKY trials of every ten need three more rounds.
    trial = int(os.environ["LOOM_TRIAL"])
    rounds = 4 if (trial - 1) % 10 < int(os.environ.get("FLAKY", "0")) else 1
    ctx.llm.complete("work", model="gpt-4o")
    if state["n"] + 1 >= rounds:
        return Done({"n": state["n"] + 1})
    return {"n": state["n"] + 1}


def build(lab: Lab) -> Loop:
    return lab.loop(step)
"""

FLAKY_SCENARIO = """\
version: 1
entry: flaky:build
input: {n: 0}
budget: {usd: 0.02}
snapshot: false
llm:
  rules:
    - match: {contains: work}
      reply: {text: ok, usage: {input: 1000, output: 500}}
"""


def test_trials_gate_on_the_stop_distribution(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(flaky=FLAKY_LOOP)
    pytester.makefile(".loom.yaml", flaky=FLAKY_SCENARIO)
    ini(pytester)
    monkeypatch.setenv("FLAKY", "1")
    base = run(pytester, "--loom-trials=10", "--loom-report=main")
    assert base.ret == pytest.ExitCode.OK
    monkeypatch.setenv("FLAKY", "4")
    ini(pytester, *TOLERATE_ALL)
    now = run(pytester, "--loom-trials=10", "--loom-baseline=main/summary.json")
    assert now.ret == pytest.ExitCode.TESTS_FAILED
    now.stdout.fnmatch_lines(
        [
            "*stop: completed 9/10, budget_exhausted(usd) 1/10 -> completed 6/10, "
            "budget_exhausted(usd) 4/10: the stop reason changed*",
            "  completed -> completed: 1",
            "  FAIL flaky.loom.yaml::flaky [distribution]",
        ]
    )
    # Within the threshold (30 points fell, 40 tolerated) and the tolerances it passes.
    ini(pytester, "loom_trials_threshold = 40", *TOLERATE_ALL)
    calm = run(pytester, "--loom-trials=10", "--loom-baseline=main/summary.json")
    assert calm.ret == pytest.ExitCode.OK, calm.stdout.str()


@pytest.mark.parametrize(
    ("args", "ini_lines", "message"),
    [
        (("--loom-trials=0",), (), "--loom-trials: expected a whole number >= 1, got '0'"),
        ((), ("loom_drift = strict",), "ini key loom_drift: expected one of fail, warn, off*"),
        (
            (),
            ("loom_tolerance_cost = ten",),
            "ini key loom_tolerance_cost: expected a percentage >= 0 such as 10 or 10%*",
        ),
        (
            (),
            ("loom_forbid = complete -> *",),
            "ini key loom_forbid: unknown stop reason 'complete' in 'complete -> [*]'*",
        ),
        ((), ("loom_allow = completed",), "ini key loom_allow: 'completed' is not a transition*"),
        (
            ("--loom-baseline=missing.json",),
            (),
            "*missing.json: cannot be read (No such file or directory)*--loom-report*",
        ),
        (("--loom-policy=missing.toml",), (), "policy file *missing.toml: cannot be read*"),
    ],
)
def test_bad_settings_are_usage_errors(
    shipped: pytest.Pytester, args: tuple[str, ...], ini_lines: tuple[str, ...], message: str
) -> None:
    ini(shipped, *ini_lines)
    result = run(shipped, FIXER, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("[gate\n", "policy file *policy.toml: not valid TOML: *"),
        (
            '[gate]\nstop = "explode"\n',
            "*policy.toml: gate.stop: expected one of fail, warn, allow*",
        ),
        ("[tolerance]\ncots = 5\n", "*policy.toml: tolerance.cots: unknown tolerance; known: *"),
        (
            "[transitions]\nallow = 'a -> b'\n",
            "*transitions.allow: expected a list of transitions*",
        ),
        ("[[scenario]]\nallow = []\n", "*scenario[[]0[]]: each [[][[]scenario[]][]] needs match*"),
        ("[tolerances]\n", "*policy.toml: tolerances: unknown key; expected one of gate, *"),
    ],
)
def test_bad_policy_files_name_the_key(shipped: pytest.Pytester, policy: str, message: str) -> None:
    shipped.path.joinpath("policy.toml").write_text(policy)
    ini(shipped, "loom_policy = policy.toml")
    result = run(shipped, FIXER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_per_scenario_overrides(shipped: pytest.Pytester) -> None:
    edit(shipped, FIXER, *PRICIER)
    shipped.path.joinpath("policy.toml").write_text(
        "[tolerance]\ncost = 1\n\n"
        '[[scenario]]\nmatch = "scenarios/fixer/*"\ntolerance = {cost = 3}\n'
    )
    result = run(shipped, "--loom-policy=policy.toml")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"  ok   {NODE} [tolerated]"])


def test_the_html_report_renders_its_plots_offline_in_chromium(
    shipped: pytest.Pytester, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        if on_ci():  # .ci/run installs it: on CI this test must run
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    edit(shipped, FIXER, *TIGHT_BUDGET)
    run(shipped, FIXER, "--loom-report=out")
    html = (shipped.path / "out/report.html").read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html
    png = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                "--window-size=1100,1000",
                (shipped.path / "out/report.html").as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    width, height, pixels = read_png(png.read_bytes())
    assert (width, height) == (1100, 1000)
    colour = tuple(int(NOW_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    plotted = sum(1 for p in pixels if all(abs(a - b) <= 8 for a, b in zip(p, colour, strict=True)))
    # The step bars, the plot lines and their points: well over a few hundred pixels.
    assert plotted > 1500, plotted
    red = sum(1 for p in pixels if p[0] > 190 and p[1] < 70 and p[2] < 80)
    assert red > 50  # the failing verdict and the matrix's changed cell


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, int, int]]]:
    """The pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6) and header[12] == 0
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    pixels = [(row[x], row[x + 1], row[x + 2]) for row in rows for x in range(0, stride, bpp)]
    return width, height, pixels


@pytest.mark.parametrize(
    ("rule", "transition", "matches"),
    [
        ("completed -> *", "completed -> budget_exhausted(usd)", True),
        ("budget_exhausted -> completed", "budget_exhausted(tokens) -> completed", True),
        ("budget_exhausted(usd) -> completed", "budget_exhausted(tokens) -> completed", False),
        ("failed(*) -> *", "failed(ValueError) -> converged", True),
        ("* -> converged", "stalled -> completed", False),
    ],
)
def test_transition_rules(rule: str, transition: str, matches: bool) -> None:
    assert Transition.parse(rule, "test").matches(transition) is matches


def test_summary_files_from_elsewhere_are_read_strictly(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    for text, message in [
        ("not json", "not valid JSON"),
        ('{"format": "pytest-loom-summary", "version": 2}', "summary version 2 is not supported"),
        (
            '{"format": "pytest-loom-summary", "version": 1, "gate": {"mode": "fail"}, '
            '"scenarios": [{"nodeid": "a", "scenario": "a", "runtime": "r", '
            '"drift": {"changes": []}, "now": {"stops": {}}}], "baseline_only": []}',
            "scenarios[0].now.stops: expected stop labels counting runs",
        ),
    ]:
        path.write_text(text)
        with pytest.raises(SummaryFormatError, match=re.escape(message)):
            load_summary(path)
