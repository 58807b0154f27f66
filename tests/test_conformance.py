"""The adapter conformance suite, run against the reference runtime and every installed adapter.

An adapter whose runtime is not installed here is skipped with the extra to install; CI
installs all four (loom-agent in its own environment).
"""

from __future__ import annotations

import pytest

from pytest_loom.runtimes import installed
from pytest_loom.testing import AdapterConformance


def _installed(runtime: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not installed(runtime),
        reason=f"{runtime} not installed: pip install 'pytest-loom[{runtime}]'",
    )


class TestReference(AdapterConformance):
    runtime = "reference"
    scenario = "scenarios/refine/converged.loom.yaml"
    resume_scenario = "scenarios/refine/crash_resume.loom.yaml"
    kill_scenario = "scenarios/refine/kill_resume.loom.yaml"


@_installed("loomc")
class TestLoomc(AdapterConformance):
    runtime = "loomc"
    scenario = "scenarios/loomc/converged_predicate.loom.yaml"
    resume_scenario = "scenarios/loomc/crash_resume.loom.yaml"
    kill_scenario = "scenarios/loomc/kill_resume.loom.yaml"


@_installed("loom-runner")
class TestLoomRunner(AdapterConformance):
    runtime = "loom-runner"
    scenario = "scenarios/loom-runner/completed.loom.yaml"
    resume_scenario = "scenarios/loom-runner/crash_resume.loom.yaml"
    kill_scenario = "scenarios/loom-runner/kill_resume.loom.yaml"


@_installed("tightloop")
class TestTightloop(AdapterConformance):
    runtime = "tightloop"
    scenario = "scenarios/tightloop/completed.loom.yaml"
    resume_scenario = "scenarios/tightloop/crash_resume.loom.yaml"
    kill_scenario = "scenarios/tightloop/kill_resume.loom.yaml"


@_installed("loom-agent")
class TestLoomAgent(AdapterConformance):
    runtime = "loom-agent"
    scenario = "scenarios/loom-agent/completed.loom.yaml"
    resume_scenario = "scenarios/loom-agent/crash_resume.loom.yaml"
    kill_scenario = "scenarios/loom-agent/kill_resume.loom.yaml"
