"""This repository's own test configuration: which shipped scenarios this environment can run.

loom-runner (through loom-tailcalls) and loom-agent both install a top-level package ``loom``,
so no environment has both. In one with loom-runner, the loom-agent scenarios are
left out here; they run in their own environment (``.venv-loom-agent``, see the README and
``.ci/run``). Anywhere else, a scenario whose runtime is missing fails with "install
pytest-loom[x]", as it would in a user's project.
"""

from __future__ import annotations

from pytest_loom.runtimes import installed

collect_ignore: list[str] = []
if installed("loom-runner") and not installed("loom-agent"):
    collect_ignore.append("scenarios/loom-agent")
    collect_ignore.append("scenarios/findings/loom-agent")
