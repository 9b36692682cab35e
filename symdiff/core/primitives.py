"""The primitive operations of the IR, each defined once.

Every primitive carries, in one record: its arity and result kind, a NumPy reference
implementation (the semantics every pass and the native kernel are tested against),
how it prints, how it turns back into SymPy, and its reverse-mode derivative rule.
The LLVM lowering lives in ``codegen.lower`` (the native side never imports the
symbolic one); a test checks that both tables name the same primitives.

Derivative rules receive the graph, the node's id, its argument ids and the incoming
adjoint, and return one adjoint contribution per argument (``None`` for zero). They
reuse forward values where the mathematics allows: ``exp``'s derivative is the node
itself, ``tanh``'s is ``1 - out**2``, ``sigmoid``'s is ``out*(1 - out)``.

Array values (see the contract in :mod:`symdiff.core.ir`): every scalar primitive is also
elementwise on arrays (array arguments of one shape, scalars broadcast); the array
primitives at the end (``dot``, ``transpose``, ``sum``, ``broadcast``, ``amax``,
``index``, ``onehot``, ``eye``) carry a ``shape`` rule. Their NumPy references work on
per-sample values with optional leading batch axes: an array is ``(..., r, c)``, a
scalar is ``()`` or ``(..., 1, 1)``.

Conventions at kinks (subgradients): ``Abs'(0) = 0`` (via ``sign(0) = 0``);
``Max``/``Min`` split the adjoint equally between tied arguments (as
``torch.maximum`` does); ``Piecewise`` takes the derivative of the branch selected
at the point; ``sign``, ``Heaviside`` and comparisons have derivative 0 everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import sympy as sp

from ..models import functions as F
from ..errors import FormulaError


@dataclass(frozen=True)
class Primitive:
    name: str
    arity: Optional[int]
    numpy: Callable
    to_sympy: Callable
    derivative: Optional[Callable]
    kind: str = "float"           # result kind: "float" or "bool"
    infix: Optional[str] = None   # operator symbol when printed infix
    int_args: tuple = ()          # positions holding Python ints, not node ids
    bool_args: tuple = ()         # positions holding boolean nodes
    shape: Optional[Callable] = None  # array ops: (arg shapes, ints in int positions) -> shape

    def arg_kinds(self, n):
        return tuple("int" if i in self.int_args else "bool" if i in self.bool_args else "float"
                     for i in range(n))

    def result_shape(self, args) -> tuple:
        """The per-sample shape of ``op(*args)``; ``args`` hold shapes (``()`` for a scalar)
        at value positions and the ints themselves at int positions. Elementwise by default."""
        if self.shape is not None:
            return self.shape(*args)
        return elementwise_shape(self.name, [a for a, k in zip(args, self.arg_kinds(len(args)))
                                             if k != "int"])


def elementwise_shape(op, shapes) -> tuple:
    """All array arguments of an elementwise op share one shape; scalars broadcast."""
    out = ()
    for s in shapes:
        if s:
            if out and s != out:
                raise FormulaError(f"{op}: shapes {out} and {s} do not match")
            out = s
    return out


PRIMITIVES: dict[str, Primitive] = {}


def primitive(name, arity, numpy, to_sympy, derivative=None, **kw):
    PRIMITIVES[name] = Primitive(name, arity, numpy, to_sympy, derivative, **kw)


def _sigmoid_np(x):
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


_erf_np = np.vectorize(math.erf, otypes=[float])
_zero = None  # a derivative contribution of zero


def _heaviside_np(x, h0):
    return np.heaviside(x, h0)


# -- arithmetic ---------------------------------------------------------------
primitive("add", 2, np.add, lambda a, b: a + b,
          lambda g, out, a, b, adj: (adj, adj), infix="+")
primitive("sub", 2, np.subtract, lambda a, b: a - b,
          lambda g, out, a, b, adj: (adj, g.neg(adj)), infix="-")
primitive("mul", 2, np.multiply, lambda a, b: a * b,
          lambda g, out, a, b, adj: (g.mul(adj, b), g.mul(adj, a)), infix="*")


def _d_div(g, out, a, b, adj):
    t = g.div(adj, b)
    return t, g.neg(g.mul(t, out))


primitive("div", 2, np.divide, lambda a, b: a / b, _d_div, infix="/")
primitive("neg", 1, np.negative, lambda a: -a, lambda g, out, a, adj: (g.neg(adj),), infix="-")


def _d_powi(g, out, a, n, adj):
    return (g.mul(adj, g.mul(g.c(float(n)), g.node("powi", a, n - 1))), None)


primitive("powi", 2, lambda a, n: np.power(a, n), lambda a, n: a ** n, _d_powi,
          infix="**", int_args=(1,))


def _d_pow(g, out, a, b, adj):
    da = g.mul(adj, g.mul(b, g.node("pow", a, g.sub(b, g.c(1.0)))))
    db = None if g.ops[b] == "const" else g.mul(adj, g.mul(g.node("log", a), out))
    return da, db


primitive("pow", 2, np.power, lambda a, b: a ** b, _d_pow)

# -- elementary functions -----------------------------------------------------
primitive("sqrt", 1, np.sqrt, sp.sqrt,
          lambda g, out, a, adj: (g.div(adj, g.mul(g.c(2.0), out)),))
primitive("exp", 1, np.exp, sp.exp, lambda g, out, a, adj: (g.mul(adj, out),))
primitive("log", 1, np.log, sp.log, lambda g, out, a, adj: (g.div(adj, a),))
primitive("expm1", 1, np.expm1, lambda a: sp.exp(a) - 1,
          lambda g, out, a, adj: (g.mul(adj, g.add(out, g.c(1.0))),))
primitive("log1p", 1, np.log1p, lambda a: sp.log(1 + a),
          lambda g, out, a, adj: (g.div(adj, g.add(g.c(1.0), a)),))
primitive("sin", 1, np.sin, sp.sin, lambda g, out, a, adj: (g.mul(adj, g.node("cos", a)),))
primitive("cos", 1, np.cos, sp.cos,
          lambda g, out, a, adj: (g.neg(g.mul(adj, g.node("sin", a))),))
primitive("tan", 1, np.tan, sp.tan,
          lambda g, out, a, adj: (g.mul(adj, g.add(g.c(1.0), g.square(out))),))
primitive("sinh", 1, np.sinh, sp.sinh, lambda g, out, a, adj: (g.mul(adj, g.node("cosh", a)),))
primitive("cosh", 1, np.cosh, sp.cosh, lambda g, out, a, adj: (g.mul(adj, g.node("sinh", a)),))
primitive("tanh", 1, np.tanh, sp.tanh,
          lambda g, out, a, adj: (g.mul(adj, g.sub(g.c(1.0), g.square(out))),))


def _inv_sqrt_one_minus_sq(g, a):
    return g.node("sqrt", g.sub(g.c(1.0), g.square(a)))


primitive("asin", 1, np.arcsin, sp.asin,
          lambda g, out, a, adj: (g.div(adj, _inv_sqrt_one_minus_sq(g, a)),))
primitive("acos", 1, np.arccos, sp.acos,
          lambda g, out, a, adj: (g.neg(g.div(adj, _inv_sqrt_one_minus_sq(g, a))),))
primitive("atan", 1, np.arctan, sp.atan,
          lambda g, out, a, adj: (g.div(adj, g.add(g.c(1.0), g.square(a))),))


def _d_atan2(g, out, y, x, adj):
    t = g.div(adj, g.add(g.square(x), g.square(y)))
    return g.mul(t, x), g.neg(g.mul(t, y))


primitive("atan2", 2, np.arctan2, sp.atan2, _d_atan2)
primitive("erf", 1, _erf_np, sp.erf,
          lambda g, out, a, adj: (g.mul(adj, g.mul(g.c(2.0 / math.sqrt(math.pi)),
                                                   g.node("exp", g.neg(g.square(a))))),))
# sigmoid' = s*(1 - s), written s*sigmoid(-z): 1 - s cancels catastrophically for large z
primitive("sigmoid", 1, _sigmoid_np, F.sigmoid,
          lambda g, out, a, adj: (g.mul(adj, g.mul(out, g.node("sigmoid", g.neg(a)))),))
primitive("softplus", 1, lambda x: np.logaddexp(0.0, x), F.softplus,
          lambda g, out, a, adj: (g.mul(adj, g.node("sigmoid", a)),))

# ``detach(x)`` is x with derivative zero: the shift m of a stable log-sum-exp,
# m + log(sum exp(u_i - m)), cancels out of the gradient, so it is not differentiated
primitive("detach", 1, lambda a: a, lambda a: a, lambda g, out, a, adj: (None,))

# -- kinks --------------------------------------------------------------------
primitive("abs", 1, np.abs, sp.Abs, lambda g, out, a, adj: (g.mul(adj, g.node("sign", a)),))
primitive("sign", 1, np.sign, sp.sign, lambda g, out, a, adj: (None,))
primitive("heaviside", 2, _heaviside_np, sp.Heaviside, lambda g, out, a, h0, adj: (None, None))


def _d_extremum(cmp):
    def rule(g, out, a, b, adj):
        share = g.node("select", g.node(cmp, a, b), g.c(1.0),
                       g.node("select", g.node("eq", a, b), g.c(0.5), g.c(0.0)))
        da = g.mul(adj, share)
        return da, g.sub(adj, da)
    return rule


primitive("max", 2, np.maximum, sp.Max, _d_extremum("gt"))
primitive("min", 2, np.minimum, sp.Min, _d_extremum("lt"))


def _d_select(g, out, c, a, b, adj):
    zero = g.c(0.0)
    return None, g.node("select", c, adj, zero), g.node("select", c, zero, adj)


primitive("select", 3, lambda c, a, b: np.where(c, a, b),
          lambda c, a, b: sp.Piecewise((a, c), (b, True)), _d_select, bool_args=(0,))

# -- comparisons and logic (boolean results, no derivative) -------------------
for _name, _np, _sp, _sym in [("gt", np.greater, sp.StrictGreaterThan, ">"),
                              ("ge", np.greater_equal, sp.GreaterThan, ">="),
                              ("lt", np.less, sp.StrictLessThan, "<"),
                              ("le", np.less_equal, sp.LessThan, "<="),
                              ("eq", np.equal, sp.Eq, "=="),
                              ("ne", np.not_equal, sp.Ne, "!=")]:
    primitive(_name, 2, _np, _sp, None, kind="bool", infix=_sym)
primitive("and", 2, np.logical_and, sp.And, None, kind="bool", infix="&", bool_args=(0, 1))
primitive("or", 2, np.logical_or, sp.Or, None, kind="bool", infix="|", bool_args=(0, 1))
primitive("not", 1, np.logical_not, sp.Not, None, kind="bool", bool_args=(0,))


# -- arrays -------------------------------------------------------------------
# Per-sample values are 2-D (column vectors are (r, 1)); the NumPy references accept
# leading batch axes, so the reference interpreter runs them on a whole batch at once.

def _need_array(op, s):
    if not s:
        raise FormulaError(f"{op} needs a matrix argument, got a scalar")
    return s


def _need_scalar(op, s):
    if s:
        raise FormulaError(f"{op} needs a scalar argument, got shape {s}")


def _dot_shape(sa, sb, ta, tb):
    _need_array("matrix product", sa)
    _need_array("matrix product", sb)
    a = sa[::-1] if ta else sa
    b = sb[::-1] if tb else sb
    if a[1] != b[0]:
        raise FormulaError(f"matrix product: shapes {a} and {b} do not match")
    return (a[0], b[1])


def _dot_np(a, b, ta, tb):
    a = np.swapaxes(a, -1, -2) if ta else a
    b = np.swapaxes(b, -1, -2) if tb else b
    return np.matmul(a, b)


def _d_dot(g, out, a, b, ta, tb, adj):
    # C = op(A) op(B): dA = adj op(B)^T, dB = op(A)^T adj, transposed back when flagged
    da = g.dot(b, adj, tb, True) if ta else g.dot(adj, b, False, not tb)
    db = g.dot(adj, a, True, ta) if tb else g.dot(a, adj, not ta, False)
    return da, db, None, None


def _reduce_np(fn):
    def reduce(a):
        r = fn(np.asarray(a), axis=(-2, -1))
        return r[..., None, None] if np.ndim(r) else r
    return reduce


def _broadcast_np(s, r, c):
    s = np.asarray(s)
    return np.broadcast_to(s, s.shape[:-2] + (r, c)).copy()


def _index_np(a, i, j):
    r = np.asarray(a)[..., i, j]
    return r[..., None, None] if np.ndim(r) else r


def _onehot_np(s, i, j, r, c):
    s = np.asarray(s, dtype=float)
    out = np.zeros(s.shape[:-2] + (r, c))
    out[..., i, j] = s[..., 0, 0] if s.ndim else s
    return out


def _index_shape(sa, i, j):
    _need_array("index", sa)
    if not (0 <= i < sa[0] and 0 <= j < sa[1]):
        raise FormulaError(f"index ({i}, {j}) is outside a matrix of shape {sa}")
    return ()


def _scalar_to(op):
    def rule(s, *ints):
        _need_scalar(op, s)
        return tuple(ints[-2:])
    return rule


primitive("dot", 4, _dot_np, lambda a, b, ta, tb: (a.T if ta else a) * (b.T if tb else b),
          _d_dot, int_args=(2, 3), shape=_dot_shape)
primitive("transpose", 1, lambda a: np.swapaxes(a, -1, -2), lambda a: a.T,
          lambda g, out, a, adj: (g.node("transpose", adj),),
          shape=lambda s: _need_array("transpose", s)[::-1])
primitive("sum", 1, _reduce_np(np.sum), lambda a: _matrix_helper("sum")(a),
          lambda g, out, a, adj: (g.node("broadcast", adj, *g.shape(a)),),
          shape=lambda s: _need_array("sum", s) and ())
primitive("broadcast", 3, _broadcast_np, lambda s, r, c: s * sp.OneMatrix(r, c),
          lambda g, out, s, r, c, adj: (g.node("sum", adj), None, None),
          int_args=(1, 2), shape=_scalar_to("broadcast"))
primitive("amax", 1, _reduce_np(np.max), lambda a: _matrix_helper("amax")(a), None,
          shape=lambda s: _need_array("amax", s) and ())
primitive("index", 3, _index_np, lambda a, i, j: a[i, j],
          lambda g, out, a, i, j, adj: (g.node("onehot", adj, i, j, *g.shape(a)), None, None),
          int_args=(1, 2), shape=_index_shape)
primitive("onehot", 5, _onehot_np,
          lambda s, i, j, r, c: sp.ImmutableSparseMatrix(r, c, {(i, j): s}),
          lambda g, out, s, i, j, r, c, adj: (g.node("index", adj, i, j), None, None, None, None),
          int_args=(1, 2, 3, 4), shape=_scalar_to("onehot"))
primitive("eye", 1, lambda r: np.eye(r), sp.Identity, None, int_args=(0,),
          shape=lambda r: (r, r))


def _matrix_helper(name):
    from ..models import matrix_functions
    return getattr(matrix_functions, name)


#: the array-valued primitives (every other primitive is elementwise)
ARRAY_OPS = frozenset(n for n, p in PRIMITIVES.items() if p.shape is not None)
