"""Resolving a scenario's ``entry: module:callable`` with errors that point at the user's code.

An entry point that cannot be imported, is missing, or raises while importing is reported with
the scenario file and line, the user's own file and line where it broke, and a hint: never a
traceback through pytest-loom.
"""

from __future__ import annotations

import difflib
import importlib
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


class EntryPointError(Exception):
    """The scenario's entry point could not be loaded or called."""


def load_entry(entry: str, *, where: str) -> Callable[..., Any]:
    """Import ``module:callable``; ``where`` is the ``file:line`` of the ``entry`` key."""
    module_name, _, attr = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise EntryPointError(
                f"{where}: entry point {entry!r}: no module named {exc.name!r}\n"
                f"  hint: the module must be importable from the test run; put its folder on "
                f"the path with the `pythonpath` ini key (e.g. pythonpath = .) or install it"
            ) from None
        raise EntryPointError(_raised_at_import(where, entry, exc)) from None
    except Exception as exc:
        raise EntryPointError(_raised_at_import(where, entry, exc)) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
    if target is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"callables there: {', '.join(sorted(names)[:8]) or 'none'}"
        )
        raise EntryPointError(
            f"{where}: entry point {entry!r}: module {module_name!r} has no attribute {attr!r}\n"
            f"  hint: {hint}"
        )
    if not callable(target):
        raise EntryPointError(
            f"{where}: entry point {entry!r} is a {type(target).__name__}, not a callable\n"
            "  hint: point it at a function that takes the lab context and builds the loop"
        )
    return target  # type: ignore[no-any-return]


def call_entry(fn: Callable[..., Any], lab: Any, *, entry: str, where: str) -> Any:
    """Call the entry point, turning an exception in the user's builder into a located error."""
    try:
        return fn(lab)
    except Exception as exc:
        raise EntryPointError(
            f"{where}: entry point {entry!r} raised while building the loop: "
            f"{type(exc).__name__}: {exc}\n  at {_user_frame(exc)}"
        ) from None


def _raised_at_import(where: str, entry: str, exc: BaseException) -> str:
    return (
        f"{where}: entry point {entry!r} raised while importing: {type(exc).__name__}: {exc}\n"
        f"  at {_user_frame(exc)}\n"
        "  hint: fix the error in that module; it must import cleanly without network or keys"
    )


def _user_frame(exc: BaseException) -> str:
    """The innermost traceback frame in the user's code (not importlib, stdlib or ours)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    skip = (str(Path(__file__).parent), sysconfig.get_paths()["stdlib"], "<")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(skip)]
    if not frames:
        return "<unknown location>"
    frame = frames[-1]
    try:
        shown = str(Path(frame.filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        shown = frame.filename
    return f"{shown}:{frame.lineno} (in {frame.name})"
