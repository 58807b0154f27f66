"""Running a loop where it cannot touch the checkout or the user's home directory.

Loops and the runtimes under them write where they stand (a default checkpoint file in the
working directory, a cache in ``~``). While a scenario runs, both point into a scratch
directory: ``isolated`` for one given directory, :class:`Sandbox` for the scenario items of a
process, which share one scratch directory as long as their runs leave it empty.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pytest

_WORK, _HOME = "work", "home"


@contextmanager
def isolated(root: Path) -> Iterator[Path]:
    """Work in ``root/work`` with ``HOME`` at ``root/home``; yields the working directory."""
    workdir, home = root / _WORK, root / _HOME
    workdir.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("HOME", str(home))
        yield workdir


class TempDirs(Protocol):
    """Where a sandbox makes its directories: pytest's ``tmp_path_factory`` is one."""

    def mktemp(self, basename: str, numbered: bool = True) -> Path: ...


class Sandbox:
    """A process's scratch directory for scenario items, reused while runs leave it empty.

    Each run works in ``<root>/work`` with ``HOME`` at ``<root>/home``, as in a ``tmp_path`` of
    its own: ``root`` is what the run's snapshot masks as ``<tmp>``. Most runs write no file
    (the reference runtime keeps a scenario's checkpoints in memory), and then nothing is made
    or deleted for them. A run that leaves files has them moved into a directory of its own
    under pytest's base temporary directory, named as pytest names a ``tmp_path``, and the next
    run starts from empty directories again. Creating and deleting a directory per test is
    most of what a ``tmp_path`` costs.
    """

    def __init__(self, factory: TempDirs) -> None:
        self._factory = factory
        self._root: Path | None = None
        self.kept: Path | None = None
        """Where the last run's files went (see :meth:`run`)."""

    def directory(self, name: str) -> Path:
        """A new directory for a test named ``name``, named as pytest names its ``tmp_path``."""
        return self._factory.mktemp(re.sub(r"[\W]", "_", name)[:30], numbered=True)

    @property
    def root(self) -> Path:
        """The sandbox directory: what a run's snapshot masks as ``<tmp>``."""
        if self._root is None:
            self._root = self._factory.mktemp("loom-sandbox", numbered=True)
        return self._root

    @contextmanager
    def run(self, keep: Callable[[], Path]) -> Iterator[Path]:
        """Isolate one run, as :func:`isolated` does in :attr:`root`; yields its working directory.

        Afterwards :attr:`kept` is where the run's files went: the directory ``keep()`` gives,
        called only if the run left files; ``None`` if it left none.
        """
        root = self.root
        self.kept = None
        try:
            with isolated(root) as workdir:
                yield workdir
        finally:
            left = [e for e in os.listdir(root) if e not in (_WORK, _HOME) or _filled(root / e)]
            if left:
                self.kept = keep()
                self.kept.mkdir(parents=True, exist_ok=True)
                for entry in left:
                    os.rename(root / entry, self.kept / entry)


def _filled(folder: Path) -> bool:
    try:
        return bool(os.listdir(folder))
    except NotADirectoryError:  # the run replaced the directory with a file
        return True
