"""The property suite as pytest items: what ``--loom-properties`` adds to a session.

One item per runtime, loop and property (``loom-properties[loomc:build:budget]``), for every
runtime selected by ``--loom-properties-runtime`` (default: every installed one). Violations of
invariants that a committed finding (``<loom_findings>/<runtime>/*.loom.yaml``) already shows
do not fail the item; the terminal summary lists those findings instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .invariants import InvariantViolation
from .properties import PROPERTIES, PropertyFailure, known_findings, profile_for, property_test
from .property_loops import TARGETS
from .runtimes import BUILTIN_ADAPTERS, installed

__all__ = ["PropertyItem", "findings_summary", "property_items", "selected_runtimes"]


class PropertyItem(pytest.Function):
    """One property of one runtime's loop; a failure reads as the shrunk reproducer."""

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"loom property: {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, PropertyFailure | InvariantViolation):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def selected_runtimes(config: pytest.Config) -> list[str]:
    """``--loom-properties-runtime`` checked, or every runtime installed here."""
    raw = config.getoption("loom_properties_runtime")
    known = list(TARGETS)
    if raw is None:
        return [name for name in known if name == "reference" or _usable(name)]
    names = [part.strip() for part in str(raw).split(",") if part.strip()]
    if not names:
        raise pytest.UsageError(
            f"--loom-properties-runtime={raw!r}: expected runtime names separated by commas, "
            f"from {', '.join(known)}"
        )
    for name in names:
        if name not in known:
            raise pytest.UsageError(
                f"--loom-properties-runtime: unknown runtime {name!r}; the suite runs "
                f"{', '.join(known)}"
            )
        if name != "reference" and not _usable(name):
            raise pytest.UsageError(
                f"--loom-properties-runtime: runtime {name!r} is not installed here: "
                f"pip install 'pytest-loom[{BUILTIN_ADAPTERS[name][1]}]'"
            )
    return list(dict.fromkeys(names))


def _usable(name: str) -> bool:
    """Installed, and its top-level package is its own (see the loom clash in the README)."""
    if not installed(name):
        return False
    clash = {"loom-runner": "loom-agent", "loom-agent": "loom-runner"}.get(name)
    return clash is None or not installed(clash)


def _findings_dir(config: pytest.Config) -> Path:
    return config.rootpath / str(config.getini("loom_findings"))


def property_items(session: pytest.Session) -> list[PropertyItem]:
    config = session.config
    profile = profile_for(config.getoption("hypothesis_profile", None))
    items = []
    for runtime in selected_runtimes(config):
        known = {
            name
            for names in known_findings(_findings_dir(config) / runtime).values()
            for name in names
        }
        for target in TARGETS[runtime]:
            loop = target.entry.rpartition(":")[2]
            for prop in PROPERTIES:
                test = property_test(
                    runtime,
                    target.entry,
                    input=target.input,
                    prop=prop,
                    known=known,
                    profile=profile,
                )
                item = PropertyItem.from_parent(
                    session, name=f"loom-properties[{runtime}:{loop}:{prop}]", callobj=test
                )
                item.add_marker(pytest.mark.loom_property(runtime=runtime, prop=prop))
                items.append(item)
    return items


def findings_summary(config: pytest.Config) -> list[str]:
    """One line per committed finding of the selected runtimes: file and invariants."""
    lines = []
    root = _findings_dir(config)
    for runtime in selected_runtimes(config):
        for name, invariants in known_findings(root / runtime).items():
            where = (root / runtime / name).relative_to(config.rootpath)
            lines.append(f"{runtime}: {', '.join(invariants)} ({where})")
    return lines
