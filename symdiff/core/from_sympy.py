"""Translate a SymPy expression into the expression DAG (:class:`~symdiff.core.graph.Graph`).

The translation is table driven: each SymPy class maps to a handler, and a class
with no handler raises :class:`~symdiff.errors.UnsupportedError` naming it — never a
silent guess. Numerically stable forms are chosen here, before anything is
differentiated: ``log(1 + exp(z))`` becomes ``softplus(z)``, ``1/(1 + exp(-z))``
becomes ``sigmoid(z)``, ``log(1 + u)`` becomes ``log1p(u)``. Subtraction and
division are recovered from SymPy's ``Add``/``Mul``/``Pow`` canonical form so the
program reads as a person would write it.

The walk is iterative, so formulas tens of thousands of levels deep translate
without hitting Python's recursion limit.
"""

from __future__ import annotations

import math

import sympy as sp
from sympy.codegen import cfunctions

from . import from_matrix
from ..models import functions as F
from ..errors import FormulaError, UnsupportedError
from .graph import Graph

_UNARY = {
    sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tan: "tan",
    sp.sinh: "sinh", sp.cosh: "cosh", sp.tanh: "tanh", sp.asin: "asin", sp.acos: "acos",
    sp.atan: "atan", sp.erf: "erf", sp.Abs: "abs", sp.sign: "sign",
    F.sigmoid: "sigmoid", F.softplus: "softplus",
    cfunctions.log1p: "log1p", cfunctions.expm1: "expm1",
}
_RELATIONAL = {
    sp.StrictGreaterThan: "gt", sp.GreaterThan: "ge", sp.StrictLessThan: "lt",
    sp.LessThan: "le", sp.Equality: "eq", sp.Unequality: "ne",
}


def _sigmoid_arg(t):
    """z if ``t`` is sigmoid(z) or spelled 1/(1 + exp(-z)), else None."""
    if isinstance(t, F.sigmoid):
        return t.args[0]
    if isinstance(t, sp.Pow) and t.exp == -1 and isinstance(t.base, sp.Add) \
            and len(t.base.args) == 2 and sp.S.One in t.base.args:
        u = t.base.args[1] if t.base.args[0] == sp.S.One else t.base.args[0]
        if isinstance(u, sp.exp):
            return -u.args[0]
    return None


def _stable_rewrite(e):
    """Return a numerically safer equal expression for ``e``, or None."""
    if isinstance(e, sp.Add) and len(e.args) == 2 and sp.S.One in e.args:
        other = e.args[1] if e.args[0] == sp.S.One else e.args[0]
        coeff, rest = other.as_coeff_Mul()
        if coeff == -1 and _sigmoid_arg(rest) is not None:  # 1 - sigmoid(z) = sigmoid(-z)
            return F.sigmoid(-_sigmoid_arg(rest))
    if isinstance(e, sp.log):
        arg = e.args[0]
        if isinstance(arg, sp.Add) and len(arg.args) == 2 and sp.S.One in arg.args:
            u = arg.args[1] if arg.args[0] == sp.S.One else arg.args[0]
            if isinstance(u, sp.exp):
                return F.softplus(u.args[0])
            inner = _stable_rewrite(arg)
            if isinstance(inner, F.sigmoid):  # log(1 - sigmoid(z)) = -softplus(z)
                return -F.softplus(-inner.args[0])
            return cfunctions.log1p(u)
        if isinstance(arg, F.sigmoid):
            return -F.softplus(-arg.args[0])
        if isinstance(arg, sp.exp):
            return arg.args[0]
    if isinstance(e, sp.Pow) and e.exp == -1:
        base = e.base
        if isinstance(base, sp.Add) and len(base.args) == 2 and sp.S.One in base.args:
            u = base.args[1] if base.args[0] == sp.S.One else base.args[0]
            if isinstance(u, sp.exp):
                return F.sigmoid(-u.args[0])
    return None


def _log_sum_exp_terms(e):
    """The exponents u_i if ``e`` is ``log(sum_i c_i*exp(u_i))`` with two or more exp terms
    (positive constants c_i fold into the exponents), else None."""
    if not isinstance(e, sp.log) or not isinstance(e.args[0], sp.Add):
        return None
    exponents, n_exp = [], 0
    for t in e.args[0].args:
        coeff, rest = t.as_coeff_Mul()
        if isinstance(rest, sp.exp) and coeff.is_positive:
            exponents.append(rest.args[0] + sp.log(coeff) if coeff != 1 else rest.args[0])
            n_exp += 1
        elif t.is_number and t.is_positive:
            exponents.append(sp.log(t))
        else:
            return None
    return exponents if n_exp >= 2 else None


def _is_negative_term(t):
    coeff, _ = t.as_coeff_Mul()
    return coeff.is_Number and coeff.is_negative


def _number(e):
    try:
        value = complex(sp.N(e, 17))
    except (TypeError, ValueError) as exc:
        raise FormulaError(f"cannot evaluate the constant {e} to a number") from exc
    if value.imag != 0.0:
        raise FormulaError(f"the constant {e} is not real")
    if not math.isfinite(value.real):
        raise FormulaError(f"the constant {e} is not finite")
    return value.real


class _Translator:
    def __init__(self, graph: Graph, names: set[str]):
        self.g = graph
        self.names = names
        self.memo: dict = {}

    def __call__(self, expr) -> int:
        memo = self.memo
        stack = [expr]
        while stack:
            e = stack[-1]
            if e in memo:
                stack.pop()
                continue
            plan = self._plan(e)
            pending = [c for c in plan[0] if c not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            memo[e] = plan[1]([memo[c] for c in plan[0]])
        return memo[expr]

    def _fold_left(self, op):
        """A builder combining n arguments with a binary op: op(op(a, b), c)..."""
        def build(ids):
            acc = ids[0]
            for i in ids[1:]:
                acc = self.g.node(op, acc, i)
            return acc
        return build

    def _plan(self, e):
        """(children, build): the sub-expressions to translate first, and how to combine them."""
        g = self.g
        if from_matrix.handles(e):
            return from_matrix.plan_matrix(self, e)
        if isinstance(e, sp.Symbol):
            if e.name not in self.names:
                raise FormulaError(f"unknown symbol {e.name!r}: it is neither a parameter nor a data column")
            return (), lambda _: g.symbol(e.name, ())
        if e is sp.true or e is sp.false:
            return (), lambda _: g.boolean(bool(e))
        if isinstance(e, sp.Basic) and not isinstance(e, sp.logic.boolalg.Boolean) and e.is_number:
            if isinstance(e, (sp.Number, sp.NumberSymbol)) or not e.free_symbols:
                def build(_):
                    value = _number(e)
                    if not isinstance(e, sp.Float):
                        g.const_origin.setdefault(value, e)
                    return g.const(value)
                return (), build
        exponents = _log_sum_exp_terms(e)
        if exponents is not None:
            def build(ids):
                # log(sum exp(u_i)) = m + log(sum exp(u_i - m)), m = max u_i: no term overflows
                m = ids[0]
                for i in ids[1:]:
                    m = g.node("max", m, i)
                m = g.node("detach", m)
                total = None
                for i in ids:
                    t = g.node("exp", g.sub(i, m))
                    total = t if total is None else g.add(total, t)
                return g.add(m, g.node("log", total))
            return tuple(exponents), build
        rewritten = _stable_rewrite(e)
        if rewritten is not None:
            return (rewritten,), lambda ids: ids[0]
        if isinstance(e, sp.Add):
            terms = list(e.args)
            pos = [t for t in terms if not _is_negative_term(t)]
            neg = [-t for t in terms if _is_negative_term(t)]
            npos = len(pos)
            return tuple(pos + neg), lambda ids: g.signed_sum(ids, npos)
        if isinstance(e, sp.Mul):
            coeff, factors = e.as_coeff_mul()
            num = [f for f in factors if not (isinstance(f, sp.Pow) and f.exp.is_Number and f.exp.is_negative)]
            den = [f.base ** (-f.exp) for f in factors if f not in num]
            c = _number(coeff)
            def build(ids, nnum=len(num), c=c):
                acc = None
                for i in ids[:nnum]:
                    acc = i if acc is None else g.mul(acc, i)
                d = None
                for i in ids[nnum:]:
                    d = i if d is None else g.mul(d, i)
                if acc is None:
                    acc = g.const(abs(c)) if d is not None else g.const(c)
                    c = 1.0 if d is None else math.copysign(1.0, c)
                if d is not None:
                    acc = g.div(acc, d)
                return g.mul(g.const(c), acc)
            return tuple(num + den), build
        if isinstance(e, sp.Pow):
            base, ex = e.args
            if ex.is_Integer:
                n = int(ex)
                if n >= 0:
                    return (base,), lambda ids: g.node("powi", ids[0], n)
                if n == -1:
                    return (base,), lambda ids: g.div(g.const(1.0), ids[0])
                return (base,), lambda ids: g.div(g.const(1.0), g.node("powi", ids[0], -n))
            if ex == sp.S.Half:
                return (base,), lambda ids: g.node("sqrt", ids[0])
            if ex == -sp.S.Half:
                return (base,), lambda ids: g.div(g.const(1.0), g.node("sqrt", ids[0]))
            return (base, ex), lambda ids: g.node("pow", ids[0], ids[1])
        if isinstance(e, sp.exp):  # exp is not a plain Function subclass in every SymPy
            return (e.args[0],), lambda ids: g.node("exp", ids[0])
        for cls, op in _UNARY.items():
            if isinstance(e, cls):
                return (e.args[0],), lambda ids, op=op: g.node(op, ids[0])
        if isinstance(e, sp.atan2):
            return e.args, lambda ids: g.node("atan2", ids[0], ids[1])
        if isinstance(e, sp.Heaviside):
            x = e.args[0]
            h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
            return (x, h0), lambda ids: g.node("heaviside", ids[0], ids[1])
        if isinstance(e, (sp.Max, sp.Min)):
            return e.args, self._fold_left("max" if isinstance(e, sp.Max) else "min")
        if isinstance(e, sp.Piecewise):
            pairs = [(p.expr, p.cond) for p in e.args]
            children = []
            for ex_, cond in pairs:
                children.append(ex_)
                children.append(cond)
            def build(ids):
                acc = None
                for k in range(len(pairs) - 1, -1, -1):
                    val, cond = ids[2 * k], ids[2 * k + 1]
                    if acc is None:
                        acc = val if g.ops[cond] == "bconst" and g.args[cond][0] else \
                            g.node("select", cond, val, g.const(float("nan")))
                    else:
                        acc = g.node("select", cond, val, acc)
                return acc
            return tuple(children), build
        for cls, op in _RELATIONAL.items():
            if type(e) is cls:
                return e.args, lambda ids, op=op: g.node(op, ids[0], ids[1])
        if isinstance(e, (sp.And, sp.Or)):
            return e.args, self._fold_left("and" if isinstance(e, sp.And) else "or")
        if isinstance(e, sp.Not):
            return e.args, lambda ids: g.node("not", ids[0])
        name = type(e).__name__
        if isinstance(e, sp.MatrixBase) or getattr(e, "is_Matrix", False):
            raise FormulaError(f"expected a scalar expression, got a matrix {e.shape}")
        if isinstance(e, sp.Basic) and e.is_number and not e.free_symbols:
            raise FormulaError(f"the constant {e} is not a finite real number")
        raise UnsupportedError(f"unsupported function {name!r} in {_short(e)}: symdiff cannot "
                               f"differentiate or compile it")


def _short(e, limit=80):
    s = str(e)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def to_graph(exprs, graph: Graph, names) -> list[int]:
    """Translate each SymPy expression into ``graph``; returns one node id per expression.

    ``names`` are the symbol names allowed as leaves; any other free symbol is a
    :class:`FormulaError` naming it.
    """
    tr = _Translator(graph, set(names))
    out = []
    for e in exprs:
        e = sp.sympify(e) if not isinstance(e, sp.Basic) else e
        out.append(tr(e))
    return out

