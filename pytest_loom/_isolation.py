"""Running a loop where it cannot touch the checkout or the user's home directory.

Loops and the runtimes under them write where they stand (a default checkpoint file in the
working directory, a cache in ``~``). While a scenario runs, both point into a scratch
directory: ``isolated`` for one given directory, :class:`Sandbox` for the scenario items of a
process, which share one scratch directory as long as their runs leave it empty.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

_WORK, _HOME = "work", "home"


@contextmanager
def isolated(root: Path, env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """Work in ``root/work`` with ``HOME`` at ``root/home`` (and the variables ``env`` set);
    yields the working directory."""
    workdir = root / _WORK
    workdir.mkdir(parents=True, exist_ok=True)
    (root / _HOME).mkdir(exist_ok=True)
    with _inside(workdir, {**(env or {}), "HOME": str(root / _HOME)}):
        yield workdir


@contextmanager
def _inside(workdir: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Work in ``workdir`` with the variables ``env`` set; everything restored afterwards."""
    cwd = os.getcwd()
    saved = {name: os.environ.get(name) for name in env}
    try:
        os.environ.update(env)
        os.chdir(workdir)
        yield
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
        self._empty = False
        """Whether the last run left ``work`` and ``home`` empty and nothing else in the root."""
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
    def run(self, keep: Callable[[], Path], env: Mapping[str, str] | None = None) -> Iterator[Path]:
        """Isolate one run, as :func:`isolated` does in :attr:`root`; yields its working directory.

        Afterwards :attr:`kept` is where the run's files went: the directory ``keep()`` gives,
        called only if the run left files; ``None`` if it left none.
        """
        root = self.root
        workdir, home = root / _WORK, os.path.join(root, _HOME)
        self.kept = None
        if not self._empty:  # else the last run left both, empty
            os.makedirs(workdir, exist_ok=True)
            os.makedirs(home, exist_ok=True)
        self._empty = False
        try:
            with _inside(workdir, {**(env or {}), "HOME": home}):
                yield workdir
        finally:
            entries = os.listdir(root)
            left = [e for e in entries if e not in (_WORK, _HOME) or _filled(root, e)]
            if left:
                self.kept = keep()
                self.kept.mkdir(parents=True, exist_ok=True)
                for entry in left:
                    os.rename(root / entry, self.kept / entry)
            else:
                self._empty = len(entries) == 2


def _filled(root: Path, name: str) -> bool:
    try:
        return bool(os.listdir(os.path.join(root, name)))
    except NotADirectoryError:  # the run replaced the directory with a file
        return True
