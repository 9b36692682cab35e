"""Turn array nodes of the DAG back into SymPy matrix notation a person can read.

The inverse of :mod:`symdiff.core.from_matrix`: ``dot`` becomes a product with
transposes, elementwise ops on arrays become ``MatAdd``, scalar multiples,
``HadamardProduct``, ``HadamardPower`` and ``f.(A)`` (:class:`~symdiff.models.matrix_functions.Elementwise`);
``exp(z - logsumexp(z))`` reads ``softmax(z)``. Named intermediates (``h1 = tanh.(W1*x + b1)``)
stand for their nodes wherever they appear, which keeps backpropagation formulas
short: ``dL/dW1 = ((W2.T*(softmax(z) - y)) o (1 - h1 o h1))*x.T``.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct

from ..models import matrix_functions as MF
from .primitives import PRIMITIVES
from .to_sympy import nice_number

_LEAVES = ("sym", "const", "bconst")
#: elementwise functions whose array results are named as layers (h1, h2, ...)
ACTIVATIONS = frozenset({"tanh", "sigmoid", "exp", "log", "sin", "cos", "softplus", "erf",
                         "abs", "sqrt", "max", "atan", "sinh", "cosh", "expm1", "log1p"})


class MatrixPrinter:
    """SymPy expressions for graph nodes; ``symbols`` maps leaf names to SymPy symbols,
    ``named`` maps node ids to the symbols that stand for them."""

    def __init__(self, graph, symbols: dict, named: dict | None = None):
        self.g = graph
        self.symbols = symbols
        self.named = dict(named or {})
        self.memo: dict = {}

    def __call__(self, node, expand_self=False):
        order = self._needed(node, expand_self)
        for i in order:
            if i in self.memo:
                continue
            if i in self.named and not (expand_self and i == node):
                self.memo[i] = self.named[i]
                continue
            self.memo[i] = self._build(i)
        result = self.memo[node]
        if expand_self and node in self.named:
            del self.memo[node]
        return result

    def memo_or_build(self, i):
        if i not in self.memo:
            self.memo[i] = self(i)
        return self.memo[i]

    def _needed(self, node, expand_self):
        g = self.g

        def inputs(i):  # as printed: a compound through its argument, a named layer by name
            if i in self.memo or (i in self.named and not (expand_self and i == node)):
                return []
            return _printed_from(g, i)
        return g.upstream([node], inputs)

    def _build(self, i):
        g, op, args = self.g, self.g.ops[i], self.g.args[i]
        if op == "sym":
            return self.symbols[args[0]]
        if op == "const":
            origin = g.const_origin.get(args[0])
            return origin if origin is not None else nice_number(args[0])
        if op == "bconst":
            return sp.true if args[0] else sp.false
        if i in g.compound:
            name, arg = g.compound[i]
            return getattr(MF, name)(self.memo[arg])
        if is_softmax(g, i):
            return MF.softmax(self.memo[g.args[g.args[i][0]][0]])
        shape = g.shape(i)
        prim = PRIMITIVES[op]
        kinds = prim.arg_kinds(len(args))
        vals = [a if k == "int" else self.memo[a] for a, k in zip(args, kinds)]
        if prim.shape is not None or not shape:
            if op == "dot":
                a, b, ta, tb = vals
                return sp.MatMul(a.T if ta else a, b.T if tb else b).doit(deep=False)
            if op == "transpose":
                return vals[0].T
            if op == "broadcast":
                return _filled(vals[0], *shape)
            if op == "sum":
                return MF.sum(vals[0])
            if op == "index":
                return sp.matrices.expressions.matexpr.MatrixElement(*vals)
            return prim.to_sympy(*vals)
        arrays = [k != "int" and bool(g.shape(a)) for a, k in zip(args, kinds)]
        return self._elementwise(i, op, vals, arrays, shape)

    def _elementwise(self, i, op, vals, arrays, shape):
        g = self.g
        if op == "select" and g.ops[g.args[i][0]] == "gt" and g.is_const(g.args[i][2], 0.0) \
                and g.is_const(g.args[g.args[i][0]][1], 0.0):  # select(z > 0, a, 0) = a o step(z)
            z = self.memo_or_build(g.args[g.args[i][0]][0])
            step = MF.elementwise(sp.Lambda(_STEP_VAR, sp.Heaviside(_STEP_VAR, 0)), z) \
                if MF.is_matrix(z) else sp.Heaviside(z, 0)
            a = vals[1]
            return HadamardProduct(a, step) if MF.is_matrix(a) else sp.MatMul(a, step).doit(deep=False)
        if op == "max" and arrays.count(True) == 1 and any(v == 0 for v in vals):
            return MF.relu(vals[arrays.index(True)])
        lift = [v if is_arr else _filled(v, *shape) for v, is_arr in zip(vals, arrays)]
        if op in ("add", "sub"):
            a, b = lift
            return a + b if op == "add" else a - b
        if op == "neg":
            return -vals[0]
        if op == "mul":
            if all(arrays):
                return HadamardProduct(*vals)
            s, m = (vals[1], vals[0]) if arrays[0] else (vals[0], vals[1])
            return sp.MatMul(s, m).doit(deep=False) if s != 1 else m
        if op == "div":
            a, b = vals
            if not arrays[1]:
                return sp.MatMul(1 / b, a).doit(deep=False)
            inv = HadamardPower(b, -1)
            return HadamardProduct(a, inv) if arrays[0] else sp.MatMul(a, inv).doit(deep=False)
        if op == "powi":
            return HadamardPower(vals[0], vals[1])
        if sum(arrays) == 1:
            d = sp.Dummy("d", real=True)
            pos = arrays.index(True)
            scalar_vals = [d if k == pos else v for k, v in enumerate(vals)]
            return MF.Elementwise(sp.Lambda(d, PRIMITIVES[op].to_sympy(*scalar_vals)), vals[pos])
        return MF.ElementwiseOp(op, *lift)


_STEP_VAR = sp.Dummy("d", real=True)


def _filled(s, r, c):
    if s == 0:
        return sp.ZeroMatrix(r, c)
    if s == 1:
        return MF.Ones(r, c)
    return sp.MatMul(s, MF.Ones(r, c))


def _printed_from(g, i) -> list:
    """The nodes a printed node ``i`` is written in terms of: a compound (log-sum-exp) and
    a softmax through their argument, every other node through its operands."""
    if i in g.compound:
        return [g.compound[i][1]]
    if is_softmax(g, i):
        return [g.args[g.args[i][0]][0]]
    return g.operands(i)


def layer_names(graph, loss_node, taken) -> dict:
    """Nodes of the forward pass worth a name: activations' outputs (``h1``, ``h2``, ...)
    and the argument of a log-sum-exp (``z``, the logits), in evaluation order."""
    g = graph
    forward = [i for i in g.upstream([loss_node], lambda i: [g.compound[i][1]] if i in g.compound
                                      else g.operands(i))
               if g.ops[i] not in _LEAVES]
    acts = [i for i in forward if g.shape(i) and g.ops[i] in ACTIVATIONS
            and not is_softmax(g, i)]
    logits = sorted({arg for (name, arg) in (g.compound[i] for i in forward if i in g.compound)
                     if name == "logsumexp" and g.ops[arg] not in _LEAVES})
    names = {}
    for base, nodes in (("h", acts), ("z", logits)):
        for k, i in enumerate(nodes, start=1):
            name = base if len(nodes) == 1 else f"{base}{k}"
            while name in taken:
                name += "_"
            taken.add(name)
            names[i] = sp.MatrixSymbol(name, *g.shape(i))
    return names


def is_softmax(g, i) -> bool:
    """Is node ``i`` ``exp(v - logsumexp(v))``?"""
    if g.ops[i] != "exp":
        return False
    arg = g.args[i][0]
    return g.ops[arg] == "sub" and g.compound.get(g.args[arg][1]) == ("logsumexp", g.args[arg][0])
