"""The property loop on tightloop: one planning call per iteration, ``note`` as its tool."""

from __future__ import annotations

from loop import Exit, State

from ..adapters.tightloop import LabLoop, lab_loop
from ..lab import Lab
from . import DONE, MODEL, note, prompt


def _done(state: State) -> bool:
    return bool(state.iterations) and state.iterations[-1].plan_text == DONE


def build(lab: Lab) -> LabLoop:
    """It succeeds once the model's plan says ``DONE``; tightloop's default policies apply."""
    return lab_loop(
        lab,
        [note],
        model=MODEL,
        observe=lambda state: prompt(len(state.iterations) + 1),
        exits=[Exit.success(_done, "the model said DONE")],
    )
