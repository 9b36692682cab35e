"""Second derivatives on the expression DAG: Hessians and Hessian-vector products.

Both are reverse mode applied to the gradient, which is itself a part of the same
hash-consed DAG, so the second sweep shares every forward value and every first-order
adjoint with the loss and gradient:

* Hessian: one reverse sweep per gradient entry ``g_j``, taken only with respect to
  ``p_k`` for ``k >= j`` (the upper triangle); the lower triangle is its mirror, so the
  matrix is exactly symmetric.
* Hessian times a direction ``v``: a single reverse sweep over ``s = sum_j g_j*v_j``,
  with ``v`` as extra scalar inputs, so ``d s / d p = H v`` costs a small multiple of
  the gradient and the Hessian is never formed.
"""

from __future__ import annotations

import sympy as sp

from .graph import Graph
from .ir import Program, linearize
from ..models.objective import _as_expr, _Derived, _free_symbols, _guard_depth, _symbols, _tidy
from .reverse import reverse_gradient
from .to_sympy import to_sympy


def hessian_upper(g: Graph, grad_nodes: list, wrt: list) -> list:
    """Node ids of ``d g_j / d w_k`` for ``j <= k``, row-major (the upper triangle)."""
    out = []
    for j, gj in enumerate(grad_nodes):
        out.extend(reverse_gradient(g, gj, wrt[j:]))
    return out


def hvp_nodes(g: Graph, grad_nodes: list, wrt: list, direction: list) -> list:
    """Node ids of ``(H v)_k = d(sum_j g_j*v_j)/d w_k``; ``direction`` are the ids of ``v``."""
    s = g.const(0.0)
    for gj, vj in zip(grad_nodes, direction):
        s = g.add(s, g.mul(gj, vj))
    return reverse_gradient(g, s, wrt)


def symmetric_matrix(upper: list, p: int) -> sp.Matrix:
    """The symmetric p-by-p SymPy matrix with upper triangle ``upper`` (row-major)."""
    m = sp.zeros(p, p)
    it = iter(upper)
    for j in range(p):
        for k in range(j, p):
            m[j, k] = m[k, j] = next(it)
    return m


@_guard_depth
def hessian(expr, wrt) -> sp.Matrix:
    """The Hessian of a scalar expression w.r.t. the symbols ``wrt``, as a symmetric
    :class:`sympy.Matrix` equal to ``sympy.hessian(expr, wrt)``.

    Derived by reverse mode over the reverse-mode gradient on the shared DAG (not by
    differentiating each entry with ``sympy.diff``), then each entry tidied for reading.
    """
    expr = _as_expr(expr, "expression")
    if isinstance(wrt, (sp.Symbol, str)):
        wrt = [wrt]
    wrt = _symbols(list(wrt), expr, "wrt")
    names = {w.name for w in wrt}
    others = tuple(sorted((s for s in _free_symbols(expr) if s.name not in names),
                          key=lambda s: s.name))
    d = _Derived([expr], wrt, others, gradient_of=0)
    leaves = [d.graph.symbol(w.name) for w in wrt]
    upper = hessian_upper(d.graph, d.grad_nodes, leaves)
    symbols = {s.name: s for s in list(wrt) + list(others)}
    return symmetric_matrix([_tidy(e) for e in to_sympy(d.graph, upper, symbols)], len(wrt))


def objective_hessian(objective) -> sp.Matrix:
    """The per-sample Hessian of an :class:`~symdiff.Objective`'s loss (params order)."""
    d = objective._derive()
    leaves = [d.graph.symbol(p.name) for p in objective.params]
    upper = hessian_upper(d.graph, d.grad_nodes, leaves)
    entries = [_tidy(e) for e in to_sympy(d.graph, upper, objective._symbol_map)]
    return symmetric_matrix(entries, len(objective.params))


def hessian_program(objective) -> Program:
    """Loss, gradient and the Hessian's upper triangle (row-major) as one program."""
    d = objective._derive()
    names = [p.name for p in objective.params]
    leaves = [d.graph.symbol(n) for n in names]
    upper = hessian_upper(d.graph, d.grad_nodes, leaves)
    labels = ["loss"] + [f"dloss/d{n}" for n in names]
    labels += [f"d2loss/d{names[j]}d{names[k]}" for j in range(len(names))
               for k in range(j, len(names))]
    return linearize(d.graph, [d.nodes[0]] + d.grad_nodes + upper, labels, names,
                     [x.name for x in objective.data])


def hvp_program(objective) -> Program:
    """``H v`` as a program whose params are the objective's params, then the direction ``v``.

    The direction's names are ``v_<param>`` (prefixed with underscores until no parameter
    or data column has that name).
    """
    d = objective._derive()
    names = [p.name for p in objective.params]
    taken = set(names) | {x.name for x in objective.data}
    prefix = "v_"
    while any(prefix + n in taken for n in names):
        prefix = "_" + prefix
    vnames = [prefix + n for n in names]
    g = d.graph
    leaves = [g.symbol(n) for n in names]
    hv = hvp_nodes(g, d.grad_nodes, leaves, [g.symbol(v) for v in vnames])
    return linearize(g, hv, [f"(Hv)_{n}" for n in names], names + vnames,
                     [x.name for x in objective.data])


def compile_hessian(objective, dtype, threads, cache):
    """The objective's :class:`codegen.second_order.HessianKernel` (compiled once per dtype
    and thread count, kept with the objective's other kernels)."""
    import numpy as np

    import codegen.second_order as so

    key = ("hessian", np.dtype(dtype).str, threads)
    k = objective._kernels.get(key)
    if k is None:
        k = so.compile_hessian(objective.program(), hvp_program(objective),
                               lambda: hessian_program(objective), dtype=dtype,
                               threads=threads, cache=cache, keys=objective.data)
        k.compile_times = {**objective._derive().times, **k.compile_times}
        objective._kernels[key] = k
    return k
