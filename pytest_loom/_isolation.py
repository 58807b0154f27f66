"""Running a loop where it cannot touch the checkout or the user's home directory.

Loops and the runtimes under them write where they stand (a default checkpoint file in the
working directory, a cache in ``~``). While a scenario runs, both point into the test's
temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def isolated(root: Path) -> Iterator[Path]:
    """Work in ``root/work`` with ``HOME`` at ``root/home``; yields the working directory."""
    workdir, home = root / "work", root / "home"
    workdir.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("HOME", str(home))
        yield workdir
