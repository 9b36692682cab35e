"""The core pipeline: formula -> DAG -> derivatives -> IR, and the IR's reference semantics.

``from_sympy``/``from_matrix`` translate SymPy formulas into the hash-consed DAG of
``graph`` (one node per distinct subexpression, ops from ``primitives``); ``reverse``
(and ``second_derivatives``) differentiate on it; ``ir`` linearizes it into the one
straight-line :class:`~symdiff.core.ir.Program` every later stage consumes;
``evaluate`` is that program's NumPy reference semantics; ``to_sympy``/``to_matrix``
turn DAG nodes back into formulas a person reads. Everything above this package
(objectives, solvers, training, the CLI) and ``codegen`` below it work from these.
"""
