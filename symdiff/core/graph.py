"""The expression DAG that reverse mode walks: hash-consed, simplifying as it builds.

A :class:`Graph` stores nodes as ``(op, args)`` pairs, where ``args`` are ids of earlier
nodes (so ids are already a topological order) or, for leaves, a name or a value.
Building a node that exists returns the existing id: equal subexpressions are one
node, which is common-subexpression elimination for free, across the loss and every
gradient entry. Each build applies the local algebra that keeps adjoint chains short
and readable (``x*1``, ``x+0``, ``0*x``, constant folding, double negation); anything
cleverer is a separate pass.

Nodes may be array valued: :attr:`Graph.shapes` holds the per-sample shape of every
array node (a node absent from it is a scalar), computed by each primitive's shape
rule as the node is built, so a shape mismatch is a :class:`FormulaError` at once.
A simplification that yields a scalar where an array is due (``0*A -> 0``) is
broadcast back to the array's shape.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import FormulaError
from .primitives import PRIMITIVES

_COMMUTATIVE = {"add", "mul", "max", "min", "and", "or", "eq", "ne"}
#: ops whose args are a name or a value, not node ids
LEAVES = ("sym", "const", "bconst")


class Graph:
    """A growing DAG of primitive applications with structural sharing."""

    def __init__(self):
        self.ops: list[str] = []
        self.args: list[tuple] = []
        self._index: dict[tuple, int] = {}
        #: exact SymPy form of constants that came from the formula (pi, log(3), ...), for printing
        self.const_origin: dict[float, object] = {}
        #: per-sample shape (rows, cols) of every array-valued node; scalars are absent
        self.shapes: dict[int, tuple] = {}
        #: adjoints declared for a compound node instead of walking its inside:
        #: node -> ((arg, adj -> contribution), ...), e.g. log-sum-exp -> softmax
        self.custom_adjoints: dict[int, tuple] = {}
        #: compound nodes to print as one function, node -> (name, arg), e.g. logsumexp
        self.compound: dict[int, tuple] = {}

    def __len__(self):
        return len(self.ops)

    # -- leaves ---------------------------------------------------------------
    def symbol(self, name: str, shape: tuple | None = None) -> int:
        """The leaf ``name``; ``shape``: ``()`` for a scalar, ``(rows, cols)`` for a matrix,
        None to take the symbol as it was first declared (a scalar if it is new)."""
        i = self._intern("sym", (name,))
        if shape is None:
            return i
        shape = tuple(int(d) for d in shape)
        if shape:
            if self.shapes.setdefault(i, shape) != shape:
                raise FormulaError(f"{name!r} is used with shapes {self.shapes[i]} and {shape}")
        elif i in self.shapes:
            raise FormulaError(f"{name!r} is used both as a scalar and as a {self.shapes[i]} matrix")
        return i

    def shape(self, i: int) -> tuple:
        """The per-sample shape of node ``i``: ``()`` for a scalar, else ``(rows, cols)``."""
        return self.shapes.get(i, ())

    def const(self, value) -> int:
        value = float(value)
        if value == 0.0:
            value = 0.0  # one zero, not two (-0.0 hashes equal but prints differently)
        return self._intern("const", (value,))

    def boolean(self, value: bool) -> int:
        return self._intern("bconst", (bool(value),))

    def is_const(self, i: int, value=None) -> bool:
        if self.ops[i] != "const":
            return False
        return value is None or self.args[i][0] == value

    def value(self, i: int) -> float:
        return self.args[i][0]

    def operands(self, i: int) -> list:
        """The node ids among node ``i``'s args (not its integer attributes); none for a leaf."""
        op = self.ops[i]
        if op in LEAVES:
            return []
        args = self.args[i]
        return [a for a, k in zip(args, PRIMITIVES[op].arg_kinds(len(args))) if k != "int"]

    def upstream(self, nodes, inputs=None) -> list:
        """``nodes`` and every node they are computed from, in topological (id) order.
        ``inputs(i)`` (default :meth:`operands`) says what node ``i`` is read from, for
        readers that see a node through another or stop at it (a printed layer name)."""
        inputs = inputs or self.operands
        seen, stack = set(), list(nodes)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(inputs(i))
        return sorted(seen)

    def kind(self, i: int) -> str:
        op = self.ops[i]
        if op in ("sym", "const"):
            return "float"
        if op == "bconst":
            return "bool"
        return PRIMITIVES[op].kind

    # -- building -------------------------------------------------------------
    def _intern(self, op, args) -> int:
        key = (op, args)
        i = self._index.get(key)
        if i is None:
            i = len(self.ops)
            self.ops.append(op)
            self.args.append(args)
            self._index[key] = i
        return i

    def node(self, op: str, *args) -> int:
        """Build ``op(*args)``, simplified; returns the id of an equal node if there is one."""
        prim = PRIMITIVES[op]
        if prim.arity is not None and len(args) != prim.arity:
            raise ValueError(f"{op} takes {prim.arity} arguments, got {len(args)}")
        kinds = prim.arg_kinds(len(args))
        shape = () if not self.shapes and prim.shape is None else prim.result_shape(
            [a if k == "int" else self.shapes.get(a, ()) for a, k in zip(args, kinds)])
        if shape and prim.shape is None and any(
                k != "int" and self.ops[a] == "broadcast" for a, k in zip(args, kinds)):
            # an elementwise op broadcasts scalars itself: op(broadcast(s), A) -> op(s, A)
            args = tuple(self.args[a][0] if k != "int" and self.ops[a] == "broadcast" else a
                         for a, k in zip(args, kinds))
            if any(self.shapes.get(a) for a, k in zip(args, kinds) if k != "int"):
                return self.node(op, *args)
            return self.node("broadcast", self.node(op, *args), *shape)
        folded = self._fold(op, args)
        if folded is not None:
            return folded
        rule = _RULES.get(op)
        if rule is not None:
            r = rule(self, *args)
            if r is not None:
                if shape and not self.shapes.get(r):
                    return self.node("broadcast", r, *shape)
                return r
        if op in _COMMUTATIVE:
            args = tuple(sorted(args, key=lambda a: (self.ops[a] not in ("const", "bconst"), a)))
        i = self._intern(op, tuple(args))
        if shape:
            self.shapes[i] = shape
        return i

    def _fold(self, op, args):
        prim = PRIMITIVES[op]
        if prim.shape is not None:
            return None
        node_args = [a for a, k in zip(args, prim.arg_kinds(len(args))) if k != "int"]
        if not node_args or not all(self.ops[a] in ("const", "bconst") for a in node_args):
            return None
        values = [self.args[a][0] if k != "int" else a
                  for a, k in zip(args, prim.arg_kinds(len(args)))]
        with np.errstate(all="ignore"):
            result = prim.numpy(*[np.float64(v) if isinstance(v, float) else v for v in values])
        if prim.kind == "bool":
            return self.boolean(bool(result))
        result = float(result)
        if not math.isfinite(result):
            return None
        return self.const(result)

    # shorthands used by the derivative rules
    def signed_sum(self, ids, npos):
        """``ids[0] + … + ids[npos-1] − ids[npos] − …``: terms added, then subtracted (a
        leading negative term negated), so that ``a − b`` stays one ``sub``."""
        acc = None
        for i in ids[:npos]:
            acc = i if acc is None else self.add(acc, i)
        for i in ids[npos:]:
            acc = self.neg(i) if acc is None else self.sub(acc, i)
        return acc

    def add(self, a, b): return self.node("add", a, b)
    def sub(self, a, b): return self.node("sub", a, b)
    def mul(self, a, b): return self.node("mul", a, b)
    def div(self, a, b): return self.node("div", a, b)
    def neg(self, a): return self.node("neg", a)
    def square(self, a): return self.node("powi", a, 2)
    def c(self, v): return self.const(v)
    def dot(self, a, b, ta=False, tb=False): return self.node("dot", a, b, bool(ta), bool(tb))


# -- local simplification rules, one per op; return an existing id or None -----

def _add(g: Graph, a, b):
    if g.is_const(a, 0.0):
        return b
    if g.is_const(b, 0.0):
        return a
    if g.ops[b] == "neg":
        return g.sub(a, g.args[b][0])
    if g.ops[a] == "neg":
        return g.sub(b, g.args[a][0])
    if a == b:
        return g.mul(g.c(2.0), a)
    return None


def _sub(g: Graph, a, b):
    if g.is_const(b, 0.0):
        return a
    if g.is_const(a, 0.0):
        return g.neg(b)
    if a == b:
        return g.c(0.0)
    if g.ops[b] == "neg":
        return g.add(a, g.args[b][0])
    return None


def _mul(g: Graph, a, b):
    if g.ops[b] == "const":
        a, b = b, a
    if g.ops[a] == "const":
        v = g.value(a)
        if v == 0.0:
            return a
        if v == 1.0:
            return b
        if v == -1.0:
            return g.neg(b)
        if g.ops[b] == "mul" and g.ops[g.args[b][0]] == "const":  # c1*(c2*x) -> (c1*c2)*x
            c2, x = g.args[b]
            return g.mul(g.c(v * g.value(c2)), x)
        if g.ops[b] == "neg":
            return g.mul(g.c(-v), g.args[b][0])
    if g.ops[a] == "neg" and g.ops[b] == "neg":
        return g.mul(g.args[a][0], g.args[b][0])
    if g.ops[a] == "neg":
        return g.neg(g.mul(g.args[a][0], b))
    if g.ops[b] == "neg":
        return g.neg(g.mul(a, g.args[b][0]))
    if a == b:
        return g.node("powi", a, 2)
    # reassociate (r*s)*q as (q*r)*s when q*r already exists: reverse mode builds
    # adjoint*(a*out) next to a forward a*out, e.g. d/d(exp) of a*exp(u)
    # (interned directly, without re-running the rules, so it cannot cycle)
    for p, q in ((a, b), (b, a)):
        if g.ops[p] == "mul" and g.ops[q] != "const":
            r, s = g.args[p]
            for first, second in ((r, s), (s, r)):
                if g.ops[first] == "const" or g.ops[second] == "const":
                    continue
                existing = g._index.get(("mul", tuple(sorted((q, first)))))
                if existing is not None and existing != p:
                    i = g._intern("mul", tuple(sorted((existing, second))))
                    shape = g.shape(existing) or g.shape(second)
                    if shape:
                        g.shapes[i] = shape
                    return i
    return None


def _div(g: Graph, a, b):
    if g.is_const(b, 1.0):
        return a
    if g.is_const(a, 0.0):
        return a
    if g.ops[b] == "const" and g.value(b) != 0.0:
        inv = 1.0 / g.value(b)
        if math.frexp(g.value(b))[0] == 0.5:  # power of two: the reciprocal is exact
            return g.mul(g.c(inv), a)
    if a == b:
        return g.c(1.0)
    if g.ops[b] == "neg":
        return g.neg(g.div(a, g.args[b][0]))
    if g.ops[a] == "neg":
        return g.neg(g.div(g.args[a][0], b))
    return None


def _neg(g: Graph, a):
    if g.ops[a] == "neg":
        return g.args[a][0]
    if g.ops[a] == "sub":
        x, y = g.args[a]
        return g.sub(y, x)
    return None


def _powi(g: Graph, a, n):
    if n == 1:
        return a
    if n == 0:
        return g.c(1.0)
    if g.ops[a] == "neg" and n % 2 == 0:
        return g.node("powi", g.args[a][0], n)
    return None


def _select(g: Graph, c, a, b):
    if g.ops[c] == "bconst":
        return a if g.args[c][0] else b
    if a == b:
        return a
    return None


def _transpose(g: Graph, a):
    if g.ops[a] == "transpose":
        return g.args[a][0]
    if g.ops[a] == "dot":  # (op(A) op(B))^T = op(B)^T op(A)^T
        x, y, tx, ty = g.args[a]
        return g.dot(y, x, not ty, not tx)
    return None


def _dot(g: Graph, a, b, ta, tb):
    if g.ops[a] == "eye":  # I op(B) = op(B)
        return g.node("transpose", b) if tb else b
    if g.ops[b] == "eye":
        return g.node("transpose", a) if ta else a
    return None


_RULES = {"add": _add, "sub": _sub, "mul": _mul, "div": _div, "neg": _neg,
          "powi": _powi, "select": _select, "transpose": _transpose,
          "dot": _dot}
