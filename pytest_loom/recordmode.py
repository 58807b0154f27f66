"""Record modes: when a cassette may call the real provider, and how the mode is chosen.

The mode comes from ``--loom-record=MODE``, else the ``loom_record`` ini key, else ``none``.
Under ``CI=true`` the ini key alone never records: recording on CI takes the explicit flag.
This module is imported by the pytest plugin, so it imports nothing heavy.
"""

from __future__ import annotations

import enum
import os
import sys
from typing import Protocol

__all__ = ["RECORD_FLAG", "RecordMode", "record_mode"]

RECORD_FLAG = "--loom-record"


class RecordMode(enum.StrEnum):
    """What a cassette does with a request (the names and meanings of vcrpy and pytest-recording).

    ``none`` replays only: a request the cassette does not hold fails. ``once`` records a
    missing cassette and replays an existing one. ``new_episodes`` replays what matches and
    records the rest. ``all`` sends every request to the provider and refreshes the recorded
    calls it matches. ``rewrite`` discards the cassette and records every request anew.
    """

    NONE = "none"
    ONCE = "once"
    NEW_EPISODES = "new_episodes"
    ALL = "all"
    REWRITE = "rewrite"

    @classmethod
    def parse(cls, value: str | RecordMode, *, source: str) -> RecordMode:
        """The mode named ``value``; a wrong name says which source gave it and what would do."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise ValueError(
                f"{source}: unknown record mode {value!r}; expected one of {known}"
            ) from None


class _Config(Protocol):
    def getoption(self, name: str) -> object: ...

    def getini(self, name: str) -> object: ...


def is_recording(llm: object) -> bool:
    """Whether ``llm`` is a :class:`~pytest_loom.RecordedLLM` that may call the real provider.

    Asked without importing ``pytest_loom.recorded``: only a cassette loads it, so while it is
    not loaded no LLM can be a recorded one, and sessions without cassettes never pay for it.
    """
    module = sys.modules.get("pytest_loom.recorded")
    return module is not None and isinstance(llm, module.RecordedLLM) and bool(llm.records)


def on_ci() -> bool:
    """Whether this run is on CI (``CI`` set to ``true`` or ``1``, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def record_mode(config: _Config) -> RecordMode:
    """The session's record mode: the flag, else the ini key (never a recording one on CI)."""
    flag = config.getoption("loom_record")
    if flag is not None:
        return RecordMode.parse(str(flag), source=RECORD_FLAG)
    mode = RecordMode.parse(str(config.getini("loom_record") or "none"), source="ini loom_record")
    if mode is not RecordMode.NONE and on_ci():
        return RecordMode.NONE
    return mode
