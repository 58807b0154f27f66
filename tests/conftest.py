"""Fixtures the suite's plugin tests share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

RESEARCH_LOOP = """
def research(state, ctx):
    ctx.llm.complete(f"next source {state['n']}", model="gpt-4o")
    return {"n": state["n"] + 1}


def build(lab):
    return lab.loop(research)
"""


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, whose inner runs must not believe they are xdist workers when this suite runs
    under ``-n``."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    return pytester


@pytest.fixture
def project_files(pytester: pytest.Pytester) -> Callable[[], set[Path]]:
    """The files of the pytester project, without pytester's own run artefacts."""

    def files() -> set[Path]:
        own = ("runpytest", "stdout", "stderr", "__pycache__")
        return {
            rel
            for rel in (p.relative_to(pytester.path) for p in pytester.path.rglob("*"))
            if not any(part.startswith(own) for part in rel.parts)
        }

    return files


@pytest.fixture
def research_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project whose ``loops:build`` loop asks the LLM for the ``next source <n>`` each step."""
    pytester.makepyfile(loops=RESEARCH_LOOP)
    pytester.makeini("[pytest]\npythonpath = .\n")
    return pytester
