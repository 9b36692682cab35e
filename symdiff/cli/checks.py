"""Checks ``symdiff fit`` makes before it spends time fitting, and its advice when a fit fails.

A typo in a formula (``exp(-b*t)`` for a file with column ``x``) silently turns the
misspelt variable into a fitted parameter; an output path in a missing directory
used to fail only after the fit. Both are found here first, and a diverging fit
gets advice in command-line terms (options, not keyword arguments).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import SymdiffError

__all__ = ["unused_column_warnings", "check_output_paths", "divergence_advice"]

#: single letters that name variables far more often than parameters
_VARIABLE_LETTERS = set("stuvxyz")


def unused_column_warnings(header, used, parameters) -> list[str]:
    """One message per column of ``header`` the model does not use (``used``: the names the
    model and the response use), naming the parameter it was probably meant to be."""
    messages = []
    suggested = set()
    for column in header:
        if not column or column in used:
            continue
        message = f"column {column!r} is unused"
        guess = _likely_typo(column, [p for p in parameters if p not in suggested])
        if guess is not None:
            suggested.add(guess)
            message += f"; did you mean {column} instead of parameter {guess}?"
        messages.append(message)
    return messages


def _likely_typo(column: str, parameters) -> str | None:
    close = difflib.get_close_matches(column, parameters, n=1, cutoff=0.6)
    if close:
        return close[0]
    if len(column) == 1:
        letters = [p for p in parameters if len(p) == 1 and p in _VARIABLE_LETTERS]
        if letters:
            return letters[0]
    return None


def check_output_paths(outputs: dict) -> None:
    """Raise :class:`SymdiffError` naming the option and path for an output file that cannot
    be written (``outputs``: {option: path or None})."""
    for option, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise SymdiffError(f"{option} {str(path)!r} is a directory; give a file name")
        if not parent.is_dir():
            raise SymdiffError(f"{option} {str(path)!r}: directory {str(parent)!r} does not exist")
        if not os.access(path if path.exists() else parent, os.W_OK):
            raise SymdiffError(f"{option} {str(path)!r} is not writable")


def divergence_advice(error, lr=None, suggest_lm: bool = True) -> str:
    """The divergence message with command-line advice in place of the Python API's."""
    where = []
    if getattr(error, "epoch", None) is not None:
        where.append(f"epoch {error.epoch}")
    if getattr(error, "step", None) is not None:
        where.append(f"step {error.step}")
    at = f" at {', '.join(where)}" if where else ""
    lr_now = f" (now {lr:g})" if lr is not None else ""
    lm = ", --method lm (Levenberg-Marquardt, no learning rate)" if suggest_lm else ""
    return (f"the fit diverged{at}: the loss or the parameters stopped being finite. Try a smaller "
            f"--lr{lr_now}{lm}, starting values closer to the answer with --init, or rescaled "
            f"data columns")
