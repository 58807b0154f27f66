"""The benchmark gate CI runs (``benchmarks/run.py --check``): a ratio fails it only when its
median over the rounds is past its target by more than the noise band measured for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
MEASUREMENTS = (
    "measure_steps",
    "measure_resume",
    "measure_checkpoints",
    "measure_seed_runtimes",
    "measure_throughput",
    "measure_startup",
)


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, list[float]]]:
    """``benchmarks/run.py`` with its measurements replaced by one row, and the ratios that row
    gets in successive rounds (for the test to fill in)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import run

    ratios: list[float] = []

    def measure(*_: object) -> tuple[list[object], list[object]]:
        ratio = ratios.pop(0)
        return [run.Row("a row", f"{ratio}", "its yardstick", ratio, 1.5)], []

    monkeypatch.setattr(run, "measure_steps", measure)
    for name in MEASUREMENTS[1:]:
        monkeypatch.setattr(run, name, lambda *_: ([], []))
    yield run, ratios
    sys.modules.pop("run", None)


@pytest.mark.parametrize(
    ("rounds", "exit_code"),
    [
        ([1.40, 1.45, 1.49], 0),  # within the target
        ([1.40, 1.52, 1.70], 0),  # median 1.52: past 1.5 by less than its band (±10%)
        ([1.54, 1.55, 1.56], 1),  # median 1.55: past 1.5 by more than its band (±1%)
        ([1.60, 1.60, 1.60, 1.60, 1.40], 1),  # five rounds: median 1.60, band ±6%
    ],
)
def test_check_fails_only_past_the_target_plus_the_noise_band(
    bench: tuple[ModuleType, list[float]],
    rounds: list[float],
    exit_code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, ratios = bench
    ratios[:] = rounds
    argv = ["--quick", "--check", "--no-write", "--rounds", str(len(rounds))]
    assert run.main(argv) == exit_code
    out, err = capsys.readouterr()
    verdict = "REGRESSED" if exit_code else "ok"
    assert f"| a row | {', '.join(f'{r:.2f}x' for r in rounds)} |" in out
    assert out.rstrip().endswith(f"| <= 1.5x | {verdict} |")
    assert ("targets missed: a row" in err) == bool(exit_code)


def test_without_check_a_missed_target_is_printed_not_failed(
    bench: tuple[ModuleType, list[float]], capsys: pytest.CaptureFixture[str]
) -> None:
    run, ratios = bench
    ratios[:] = [1.9]
    assert run.main(["--quick", "--no-write"]) == 0
    assert "| a row | 1.9 | its yardstick | 1.90x | <= 1.5x | MISS (27% over) |" in (
        capsys.readouterr().out
    )
