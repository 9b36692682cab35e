"""Translate SymPy matrix expressions into array nodes of the expression DAG.

The scalar translator (:mod:`symdiff.core.from_sympy`) hands every matrix-valued
expression, and every scalar made from matrices (``Trace``, ``A[i, j]``,
``sd.sum``, ``sd.dot``, ``sd.logsumexp``), to :func:`plan_matrix`, in the same
``(children, build)`` style, so scalar and matrix parts of one formula share one
memo and one graph. A product chain is associated by the matrix-chain rule (fewest
multiplications per sample: ``W2*W1*x`` is ``W2*(W1*x)``); transposed factors become
transpose flags of ``dot``; ``A.applyfunc(f)`` translates the scalar body of ``f``
with its variable bound to the array, so every scalar primitive is elementwise.

SymPy's own matrix calculus (``MatrixExpr.diff``) is never called.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct

from ..models import matrix_functions as MF
from ..errors import FormulaError, UnsupportedError

#: scalar-valued SymPy objects built from matrices, translated here too
SCALAR_OF_MATRICES = (sp.Trace, sp.matrices.expressions.matexpr.MatrixElement,
                      MF.sum, MF.dot, MF.logsumexp, MF.relu_scalar)


def handles(e) -> bool:
    return getattr(e, "is_Matrix", False) or isinstance(e, SCALAR_OF_MATRICES)


def shape_of(e) -> tuple:
    try:
        return tuple(int(d) for d in e.shape)
    except TypeError:
        raise FormulaError(f"{e} has a symbolic shape {e.shape}; symdiff needs integer shapes") from None


def scalar_loss(g, node):
    """The loss as a scalar node: a 1x1 matrix formula (``r.T*r``) is summed."""
    shape = g.shape(node)
    if shape == (1, 1):
        return g.node("sum", node)
    if shape:
        raise FormulaError(f"the loss must be a scalar or a 1x1 matrix, got shape {shape}")
    return node


def logsumexp_node(g, v):
    """``m + log(sum(exp(v - m)))`` with ``m = detach(amax(v))``; its adjoint is declared
    directly as ``adj * softmax(v)`` with ``softmax(v) = exp(v - lse)``, so reverse mode
    does not walk the shifted form and the gradient reads ``softmax(z) - y``."""
    m = g.node("detach", g.node("amax", v))
    lse = g.add(m, g.node("log", g.node("sum", g.node("exp", g.sub(v, m)))))
    g.custom_adjoints[lse] = ((v, lambda adj: g.mul(adj, softmax_node(g, v, lse))),)
    g.compound[lse] = ("logsumexp", v)
    return lse


def relu_node(g, z):
    """``max(0, z)`` with the adjoint ``select(z > 0, adj, 0)`` (derivative 0 at 0, as
    PyTorch's relu), not the tie-splitting rule of a general ``max``."""
    out = g.node("max", g.const(0.0), z)
    zero = g.const(0.0)
    g.custom_adjoints[out] = ((z, lambda adj: g.node("select", g.node("gt", z, zero), adj, zero)),)
    return out


def softmax_node(g, v, lse=None):
    lse = logsumexp_node(g, v) if lse is None else lse
    return g.node("exp", g.sub(v, lse))


def _chain_order(dims):
    """Optimal parenthesization of a product with factor shapes dims[k] x dims[k+1]
    (the classic matrix-chain dynamic program): split[i][j] for the range i..j."""
    n = len(dims) - 1
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(2, n + 1):
        for i in range(n - length + 1):
            j = i + length - 1
            cost[i][j] = None
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if cost[i][j] is None or c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k
    return split


def plan_matrix(tr, e):
    """(children, build) for a matrix expression or a scalar made of matrices."""
    g = tr.g
    if isinstance(e, sp.MatrixSymbol):
        name, shape = e.name, shape_of(e)
        if name not in tr.names:
            raise FormulaError(f"unknown symbol {name!r}: it is neither a parameter nor a data column")
        return (), lambda _: g.symbol(name, shape)
    if isinstance(e, sp.MatAdd):
        pos, neg = [], []
        for t in e.args:
            if isinstance(t, sp.MatMul) and t.args[0].is_Number and t.args[0] < 0:
                neg.append(-t)
            else:
                pos.append(t)
        npos = len(pos)
        return tuple(pos + neg), lambda ids: g.signed_sum(ids, npos)
    if isinstance(e, sp.MatMul):
        scalars = [a for a in e.args if not getattr(a, "is_Matrix", False)]
        factors = [a for a in e.args if getattr(a, "is_Matrix", False)]
        flags = [isinstance(f, sp.Transpose) for f in factors]
        inner = [f.arg if t else f for f, t in zip(factors, flags)]
        shapes = [shape_of(f) for f in factors]
        for a, b in zip(shapes, shapes[1:]):
            if a[1] != b[0]:
                raise FormulaError(f"matrix product: shapes {a} and {b} do not match")
        def build(ids, ns=len(scalars)):
            split = _chain_order([shapes[0][0]] + [s[1] for s in shapes])
            def product(i, j):
                if i == j:
                    return ids[ns + i], flags[i]
                k = split[i][j]
                (a, ta), (b, tb) = product(i, k), product(k + 1, j)
                return g.dot(a, b, ta, tb), False
            acc, t = product(0, len(factors) - 1)
            if t:
                acc = g.node("transpose", acc)
            for s in ids[:ns]:
                acc = g.mul(s, acc)
            return acc
        return tuple(scalars + inner), build
    if isinstance(e, sp.MatPow):
        base, n = e.args
        if not (n.is_Integer and n >= 0):
            raise UnsupportedError(f"matrix power {_short(e)}: only non-negative integer powers "
                                   f"are supported (no matrix inverse)")
        def build(ids, n=int(n), r=shape_of(base)[0]):
            acc = g.node("eye", r)
            for _ in range(n):
                acc = ids[0] if g.ops[acc] == "eye" else g.dot(acc, ids[0])
            return acc
        return (base,), build
    if isinstance(e, sp.Transpose):
        return (e.arg,), lambda ids: g.node("transpose", ids[0])
    if isinstance(e, HadamardProduct):
        shapes = [shape_of(a) for a in e.args]
        for s in shapes[1:]:
            if s != shapes[0]:
                raise FormulaError(f"Hadamard product: shapes {shapes[0]} and {s} do not match")
        return e.args, tr._fold_left("mul")
    if isinstance(e, HadamardPower):
        d = sp.Dummy("d", real=True)
        return (e.base,), lambda ids: _apply_scalar(tr, d ** e.exp, d, ids[0])
    if isinstance(e, ElementwiseApplyFunction):
        f = e.function
        if not isinstance(f, sp.Lambda):
            d = sp.Dummy("d", real=True)
            f = sp.Lambda(d, f(d))
        return (e.expr,), lambda ids: _apply_scalar(tr, f.expr, f.variables[0], ids[0])
    if isinstance(e, MF.softmax):
        return e.args, lambda ids: softmax_node(g, ids[0])
    if isinstance(e, sp.OneMatrix):
        r, c = shape_of(e)
        return (), lambda _: g.node("broadcast", g.const(1.0), r, c)
    if isinstance(e, sp.ZeroMatrix):
        r, c = shape_of(e)
        return (), lambda _: g.node("broadcast", g.const(0.0), r, c)
    if isinstance(e, sp.Identity):
        r, _ = shape_of(e)
        return (), lambda _: g.node("eye", r)
    if isinstance(e, sp.Trace):
        r, c = shape_of(e.arg)
        if r != c:
            raise FormulaError(f"the trace needs a square matrix, got shape {(r, c)}")
        return (e.arg,), lambda ids: g.node("sum", g.mul(ids[0], g.node("eye", r)))
    if isinstance(e, sp.matrices.expressions.matexpr.MatrixElement):
        parent, i, j = e.args
        if not (i.is_Integer and j.is_Integer):
            raise FormulaError(f"element {e}: the indices must be integers")
        return (parent,), lambda ids: g.node("index", ids[0], int(i), int(j))
    if isinstance(e, MF.sum):
        return e.args, lambda ids: g.node("sum", ids[0])
    if isinstance(e, MF.dot):
        return e.args, lambda ids: g.node("sum", g.mul(ids[0], ids[1]))
    if isinstance(e, MF.logsumexp):
        return e.args, lambda ids: logsumexp_node(g, ids[0])
    if isinstance(e, MF.relu_scalar):
        return e.args, lambda ids: relu_node(g, ids[0])
    if isinstance(e, sp.MatrixBase):
        raise UnsupportedError(f"explicit matrices such as {_short(e)} are not supported: "
                               f"use MatrixSymbol parameters and data")
    raise UnsupportedError(f"unsupported matrix expression {type(e).__name__!r} in {_short(e)}")


def _apply_scalar(tr, body, var, array_id):
    """Translate the scalar ``body`` with ``var`` bound to the array node ``array_id``
    (a fresh variable each time, so one Lambda applied to two matrices stays two maps)."""
    fresh = sp.Dummy("e", real=True)
    tr.memo[fresh] = array_id
    return tr(body.xreplace({var: fresh}))


def _short(e, limit=80):
    s = str(e)
    return s if len(s) <= limit else s[:limit - 3] + "..."
