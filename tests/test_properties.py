"""The property suite: strategies, invariants, reproducers and ``pytest --loom-properties``."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis.errors import InvalidArgument

from pytest_loom import Budget, FakeClock, load_scenario, run_scenario
from pytest_loom.invariants import (
    InvariantViolation,
    budget_holds,
    check_run,
    contract_for,
    resume_matches_uninterrupted,
    stop_agrees_with_totals,
    totals_consistent,
)
from pytest_loom.record import BudgetLimit, RunRecord, Stop, StopReason
from pytest_loom.reproducer import scenario_yaml
from pytest_loom.scenario import CrashFault, LLMErrorFault, ScenarioError, scenario_from_text
from pytest_loom.strategies import (
    budgets,
    clock_schedules,
    fault_plans,
    llm_scripts,
    llm_turns,
    scenarios,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=15, deadline=None, database=None, derandomize=True)

# --- strategies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: budgets(limits=("usd", "money")), "budgets(limits=('usd', 'money'))"),
        (lambda: budgets(limits=()), "budgets(limits=())"),
        (lambda: budgets(min_limits=3, limits=("usd",)), "budgets(min_limits=3)"),
        (lambda: budgets(max_usd=-1), "budgets(max_usd=-1): expected a number > 0"),
        (lambda: budgets(max_iterations=2.5), "budgets(max_iterations=2.5)"),
        (lambda: llm_turns(tools=[]), "llm_turns(tools=[])"),
        (lambda: llm_turns(max_tokens=-3), "llm_turns(max_tokens=-3)"),
        (lambda: llm_turns(errors="yes"), "llm_turns(errors='yes'): expected True or False"),
        (lambda: llm_scripts(min_turns=4, max_turns=2), "llm_scripts(max_turns=2)"),
        (lambda: fault_plans(kinds=("explode",)), "fault_plans(kinds=('explode',))"),
        (lambda: fault_plans(max_step=0), "fault_plans(max_step=0): expected an integer > 0"),
        (lambda: fault_plans(min_faults=3, max_faults=1), "fault_plans(max_faults=1)"),
        (lambda: clock_schedules(max_step=-1), "clock_schedules(max_step=-1)"),
        (lambda: scenarios("my-runtime"), "scenarios(entry=None)"),
        (lambda: scenarios("reference", "no colon"), "scenarios(entry='no colon')"),
        (lambda: scenarios(budget=Budget(usd=1.0)), "scenarios(budget=Budget("),  # type: ignore[arg-type]
    ],
)
def test_strategies_reject_bad_arguments_naming_argument_and_value(make, message) -> None:
    with pytest.raises(InvalidArgument) as info:
        make()
    assert str(info.value).startswith(message), str(info.value)


@FAST
@given(budgets(limits=("usd", "tokens"), min_limits=2))
def test_budgets_set_the_limits_asked_for(budget: Budget) -> None:
    assert budget.usd is not None and budget.tokens is not None
    assert budget.iterations is None and budget.wall_clock is None
    assert 0 < budget.usd <= 0.02 and budget.tokens % 100 == 0


@FAST
@given(llm_scripts(min_turns=2, tool_turns_only=True, errors=False, done=False))
def test_scripts_number_tool_calls_and_honour_tool_turns_only(turns) -> None:
    calls = [call for turn in turns for call in turn.tool_calls]
    assert all(turn.tool_calls for turn in turns)
    assert [c.id for c in calls] == [f"call_{k}" for k in range(1, len(calls) + 1)]
    named = [c.args["text"] for c in calls if c.args]
    assert len(set(named)) == len(named)


@FAST
@given(fault_plans(kinds=("crash", "llm_error"), min_faults=1, max_faults=3))
def test_fault_plans_put_step_faults_on_distinct_steps(faults) -> None:
    assert 1 <= len(faults) <= 3
    steps = [f.step for f in faults if isinstance(f, CrashFault)]
    assert len(set(steps)) == len(steps)
    assert all(isinstance(f, CrashFault | LLMErrorFault) for f in faults)


@FAST
@given(scenarios("reference"))
def test_generated_scenarios_print_as_files_the_loader_reads_back(scenario) -> None:
    text = scenario_yaml(scenario)
    again = scenario_from_text(text, Path("again.loom.yaml"))
    assert replace(again, path=scenario.path, lines=scenario.lines) == scenario


# --- invariants -------------------------------------------------------------------------------


def _record(path: str, tmp_path: Path) -> RunRecord:
    scenario = load_scenario(ROOT / path)
    with FakeClock(start=scenario.clock.start) as clock:
        return run_scenario(scenario, clock=clock, workdir=tmp_path).record


def test_the_shipped_reference_runs_break_no_invariant(tmp_path: Path) -> None:
    for i, name in enumerate(("budget_usd", "budget_tokens", "budget_wall_clock")):
        where = tmp_path / str(i)
        where.mkdir()
        scenario = load_scenario(ROOT / f"scenarios/research/{name}.loom.yaml")
        record = _record(f"scenarios/research/{name}.loom.yaml", where)
        assert check_run(record, scenario.budget) == [], name


def test_budget_holds_names_the_step_and_the_numbers(tmp_path: Path) -> None:
    record = _record("scenarios/research/budget_usd.loom.yaml", tmp_path)
    with pytest.raises(InvariantViolation) as info:
        budget_holds(record, Budget(usd=0.01), contract_for("reference"))
    assert str(info.value) == (
        "budget_holds: step 3: LLM call 1 started with $0.015 already spent of its usd budget "
        "of $0.01, and spent $0.0075 more (allowance for reference: each call starts below the "
        "limit, docs/python-api.md#budget-semantics)"
    )
    assert (info.value.invariant, info.value.step) == ("budget_holds", 3)


def test_budget_holds_names_spending_outside_the_llm_calls(tmp_path: Path) -> None:
    record = _record("scenarios/research/budget_usd.loom.yaml", tmp_path)
    first = record.steps[0]
    calls = first.llm_calls[0].cost_usd
    # Step 1 also spent $0.01 outside its one LLM call, which used the whole budget.
    steps = (replace(first, cost_usd=calls + 0.01), *record.steps[1:])
    with pytest.raises(InvariantViolation) as info:
        budget_holds(replace(record, steps=steps), Budget(usd=calls), contract_for("reference"))
    assert str(info.value).startswith(
        f"budget_holds: step 1: its other spending started with ${calls:.10g} already spent of "
        f"its usd budget of ${calls:.10g}, and spent $0.01 more"
    )
    assert info.value.step == 1


def test_stop_and_totals_must_agree(tmp_path: Path) -> None:
    record = _record("scenarios/research/budget_usd.loom.yaml", tmp_path)
    stop_agrees_with_totals(record, Budget(usd=0.05), contract_for("reference"))
    wrong = replace(record, stop=Stop(StopReason.BUDGET_EXHAUSTED, limit=BudgetLimit.TOKENS))
    with pytest.raises(InvariantViolation, match="no tokens limit was set"):
        stop_agrees_with_totals(wrong, Budget(usd=0.05), contract_for("reference"))
    tampered = replace(record, totals=replace(record.totals, cost_usd=1.0))
    with pytest.raises(InvariantViolation, match=r"totals\.cost_usd is \$1"):
        totals_consistent(tampered)


def test_resume_is_compared_with_the_uninterrupted_run(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    resumed = _record("scenarios/refine/crash_resume.loom.yaml", tmp_path / "a")
    uninterrupted = _record("scenarios/refine/converged.loom.yaml", tmp_path / "b")
    resume_matches_uninterrupted(resumed, uninterrupted, contract_for("reference"))
    shorter = replace(uninterrupted, steps=uninterrupted.steps[:-1])
    with pytest.raises(InvariantViolation, match="resume_matches_uninterrupted"):
        resume_matches_uninterrupted(resumed, shorter, contract_for("reference"))


def test_expect_invariants_names_are_checked_by_the_loader(tmp_path: Path) -> None:
    text = "version: 1\nentry: a.b:c\nexpect:\n  invariants: [budget_hold]\n"
    with pytest.raises(ScenarioError) as info:
        scenario_from_text(text, tmp_path / "x.loom.yaml")
    message = str(info.value)
    assert "x.loom.yaml:4: expect.invariants[0]: unknown invariant 'budget_hold'" in message
    assert "did you mean 'budget_holds'?" in message


# --- the suite, through pytest ----------------------------------------------------------------

BROKEN = '''
from pytest_loom import Loop
from pytest_loom.budget import Spend
from pytest_loom.property_loops.reference import spend_step


class RegrantingLoop(Loop):
    """Resume forgets what the run spent: the bug the suite must catch."""

    def _restore(self, run_id):
        state, carry, n = super()._restore(run_id)
        carry.spend = Spend()
        return state, carry, n


def build(lab):
    return RegrantingLoop(
        spend_step, budget=lab.budget, store=lab.store, llm=lab.llm, clock=lab.clock,
        step_seconds=lab.step_seconds, scenario=lab.scenario, retries=1,
    )
'''

TEST_BROKEN = """
from hypothesis import settings
from pytest_loom.properties import profile_for, property_test

test_regranting_loop = property_test(
    "reference", "brokenloop:build", input={"step": 0, "notes": []}, prop="stepwise",
    profile=settings(profile_for("loom-ci"), max_examples=80),
)
"""


def test_a_resume_that_regrants_the_budget_is_caught_with_a_reproducer(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\npythonpath = .\n")
    pytester.makepyfile(brokenloop=BROKEN, test_broken=TEST_BROKEN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "property 'stepwise' on reference (brokenloop:build) broke" in out
    assert "running this file breaks the same invariants (checked)" in out
    # The printed reproducer, saved as a scenario file, fails under --loom-scenarios.
    written = Path(re.search(r"written to (\S+?\.loom\.yaml)\)", out).group(1))
    assert "invariants: [" in out and "invariants: [" in written.read_text()
    (pytester.path / "found.loom.yaml").write_text(written.read_text())
    run = pytester.runpytest_subprocess(
        "--loom-scenarios", "found.loom.yaml", "-p", "no:cacheprovider", "-p", "no:xdist"
    )
    run.assert_outcomes(failed=1)
    assert "expect.invariants: " in run.stdout.str()


def test_loom_properties_runs_green_on_the_reference_runtime(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--loom-properties",
        "--loom-properties-runtime=reference",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-v",
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*loom-properties?reference:build_async:stepwise? PASSED*"])


def test_under_ci_two_runs_give_the_same_findings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime whose resume re-grants the budget, run twice under the CI profile."""
    monkeypatch.setenv("CI", "true")
    pytester.makeini("[pytest]\npythonpath = .\n")
    pytester.makepyfile(
        brokenloop=BROKEN,
        test_broken=TEST_BROKEN.replace(
            'profile_for("loom-ci")',
            "profile_for()",  # CI=true picks loom-ci
        ),
    )
    outputs = []
    for _ in range(2):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
        out = result.stdout.str().split("short test summary")[0]
        outputs.append(re.sub(r"\d+\.\d+s|runpytest-\d", "", out))
    assert "broke" in outputs[0]
    assert outputs[0] == outputs[1]


def test_runtime_selector_errors_name_the_runtime(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--loom-properties", "--loom-properties-runtime=reference,nope", "-p", "no:cacheprovider"
    )
    result.stderr.fnmatch_lines(
        ["*--loom-properties-runtime: unknown runtime 'nope'; the suite runs reference*"]
    )
    assert result.ret != 0


def test_committed_findings_are_listed_and_silence_their_invariants(
    pytester: pytest.Pytester,
) -> None:
    finding = (ROOT / "scenarios/findings/loomc/crash_before_first_step.loom.yaml").read_text()
    folder = pytester.path / "scenarios/findings/reference"
    folder.mkdir(parents=True)
    (folder / "known.loom.yaml").write_text(finding.replace("runtime: loomc\n", ""))
    result = pytester.runpytest_subprocess(
        "--loom-properties",
        "--loom-properties-runtime=reference",
        "-k",
        "build:budget",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*loom properties: known findings*",
            "reference: resume_matches_uninterrupted (scenarios/findings/reference/known.loom*",
        ]
    )
