"""The ``symdiff`` command line: ``main`` parses, ``checks`` validates inputs before any
work, ``solvers`` runs the full-batch fits (``--method lm``, ``lbfgs``, ``newton``)."""

from .commands import main

__all__ = ["main"]
