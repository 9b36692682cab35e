"""Turn DAG nodes back into SymPy expressions a person can read."""

from __future__ import annotations

import sympy as sp

from .primitives import PRIMITIVES


def nice_number(value: float):
    """A SymPy number equal to ``value``: an integer or a short fraction when exact."""
    if value.is_integer() and abs(value) < 2.0 ** 53:  # beyond, a float is not that integer
        return sp.Integer(int(value))
    r = sp.Rational(value).limit_denominator(1000)
    if float(r) == value:
        return r
    return sp.Float(value)


def to_sympy(graph, nodes, symbols: dict) -> list:
    """SymPy expressions for graph ``nodes``; ``symbols`` maps leaf names to SymPy symbols."""
    expr = {}
    for i in graph.upstream(nodes):
        op, args = graph.ops[i], graph.args[i]
        if op == "sym":
            expr[i] = symbols[args[0]]
        elif op == "const":
            origin = getattr(graph, "const_origin", {}).get(args[0])
            expr[i] = origin if origin is not None else nice_number(args[0])
        elif op == "bconst":
            expr[i] = sp.true if args[0] else sp.false
        else:
            prim = PRIMITIVES[op]
            vals = [a if k == "int" else expr[a] for a, k in zip(args, prim.arg_kinds(len(args)))]
            expr[i] = prim.to_sympy(*vals)
    return [expr[i] for i in nodes]
