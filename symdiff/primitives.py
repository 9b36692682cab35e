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

from . import functions as F


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

    def arg_kinds(self, n):
        return tuple("int" if i in self.int_args else "bool" if i in self.bool_args else "float"
                     for i in range(n))


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
