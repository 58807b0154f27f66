"""The adapter conformance suite, run against the reference runtime and every installed adapter."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

import pytest

from pytest_loom.runtimes import BUILTIN_ADAPTERS
from pytest_loom.testing import AdapterConformance


def _needs(runtime: str) -> pytest.MarkDecorator:
    dist = BUILTIN_ADAPTERS[runtime][1]
    try:
        distribution(dist)
    except PackageNotFoundError:
        return pytest.mark.skip(
            reason=f"{dist} is not installed (pip install 'pytest-loom[{dist}]')"
        )
    return pytest.mark.usefixtures()


class TestReference(AdapterConformance):
    runtime = "reference"
    scenario = "scenarios/refine/converged.loom.yaml"
    resume_scenario = "scenarios/refine/crash_resume.loom.yaml"


class TestReferenceKilled(TestReference):
    resume_scenario = "scenarios/refine/kill_resume.loom.yaml"
