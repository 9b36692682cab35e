"""Operation counts: our straight-line program against per-parameter ``sympy.diff`` + ``sympy.cse``.

Both sides are counted with the same ruler, ``sympy.count_ops`` (one per arithmetic
operation or function call), so the comparison measures what reverse mode on the DAG
saves, not a difference in bookkeeping.
"""

from __future__ import annotations

import time

import sympy as sp

from ..core.primitives import PRIMITIVES


def program_ops(program) -> int:
    """count_ops of every instruction of a :class:`~symdiff.core.ir.Program`."""
    total = 0
    for ins in program.body:
        prim = PRIMITIVES[ins.op]
        kinds = prim.arg_kinds(len(ins.args))
        args = [a if k == "int" else sp.Symbol(f"a{i}") for i, (a, k) in enumerate(zip(ins.args, kinds))]
        if ins.op in ("select", "and", "or", "not"):
            total += 1
            continue
        total += max(1, sp.count_ops(prim.to_sympy(*args)))
    return total


def naive_ops(loss, params) -> tuple[int, float]:
    """(count_ops after per-parameter diff + cse of loss and gradient, seconds it took)."""
    t0 = time.perf_counter()
    grads = [sp.diff(loss, p) for p in params]
    replacements, reduced = sp.cse([loss] + grads)
    ops = sum(sp.count_ops(e) for _, e in replacements) + sum(sp.count_ops(e) for e in reduced)
    return ops, time.perf_counter() - t0
