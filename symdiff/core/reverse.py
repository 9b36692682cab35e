"""Reverse-mode differentiation on the expression DAG.

One reverse topological walk from the output accumulates adjoints by addition;
nodes that no parameter reaches are never visited, and a zero adjoint is never
materialised, so a gradient costs a small constant times the forward pass no
matter how many parameters there are. (Per-parameter ``sympy.diff`` instead
rebuilds the shared forward structure once per parameter, which is what makes
naive symbolic gradients swell.)

Array nodes follow the same walk: each primitive's rule gives array adjoints (a
product's are products with transpose flags), and where an elementwise op broadcast
a scalar argument, its adjoint is summed back (``sum`` and ``broadcast`` are each
other's adjoints). A parameter the output does not reach gets a zero of its shape.
"""

from __future__ import annotations

from .graph import Graph
from .primitives import PRIMITIVES

_LEAVES = ("sym", "const", "bconst")


def reverse_gradient(g: Graph, output: int, wrt: list[int]) -> list[int]:
    """Node ids of d(output)/d(w) for each leaf id ``w`` in ``wrt``, built into ``g``."""
    adjoint = reverse_adjoints(g, output, wrt)
    zero = g.const(0.0)
    return [adjoint[w] if w in adjoint else _match_shape(g, zero, g.shape(w)) for w in wrt]


def reverse_adjoints(g: Graph, output: int, wrt: list[int], edges: dict | None = None) -> dict:
    """{node id: id of d(output)/d(node)} for every node on a path from a ``wrt`` leaf to ``output``.

    A node on such a path that receives no contribution (a ``sign`` or ``detach``
    input) is absent: its adjoint is zero. When ``edges`` is given, it is filled with
    ``{(node, argument position): contribution id}``, the adjoint each use of an
    argument sends back (``None`` for zero), which the computational-graph picture
    writes on the edges.
    """
    targets = set(wrt)
    reaches = bytearray(output + 1)  # does a node depend on any wrt leaf?
    for i in range(output + 1):
        if i in targets:
            reaches[i] = 1
        elif g.ops[i] not in _LEAVES:
            reaches[i] = any(reaches[a] for a in _float_args(g, i))
    adjoint = {output: g.const(1.0)}
    for i in range(output, -1, -1):
        a_i = adjoint.get(i)
        if a_i is None or not reaches[i] or g.ops[i] in _LEAVES:
            continue
        custom = g.custom_adjoints.get(i)
        if custom is not None:
            args = tuple(arg for arg, _ in custom)
            kinds = ("float",) * len(args)
            contributions = [rule(a_i) for _, rule in custom]
        else:
            prim = PRIMITIVES[g.ops[i]]
            if prim.derivative is None:
                continue
            args = g.args[i]
            kinds = prim.arg_kinds(len(args))
            contributions = prim.derivative(g, i, *args, a_i)
        for position, (arg, kind, c) in enumerate(zip(args, kinds, contributions)):
            if kind != "float" or not reaches[arg]:
                continue
            if edges is not None:
                edges[(i, position)] = c
            if c is None or g.is_const(c, 0.0):
                continue
            c = _match_shape(g, c, g.shape(arg))
            prev = adjoint.get(arg)
            adjoint[arg] = c if prev is None else g.add(prev, c)
    return adjoint


def _match_shape(g: Graph, c: int, shape: tuple) -> int:
    """The adjoint ``c`` brought to its argument's ``shape``: a scalar argument that an
    elementwise op broadcast receives the sum; an array receives a broadcast scalar."""
    have = g.shape(c)
    if have == shape:
        return c
    if not shape:
        return g.node("sum", c)
    if not have:
        return g.node("broadcast", c, *shape)
    raise AssertionError(f"adjoint of shape {have} for a value of shape {shape}")


def _float_args(g: Graph, i: int):
    prim = PRIMITIVES[g.ops[i]]
    return [a for a, k in zip(g.args[i], prim.arg_kinds(len(g.args[i]))) if k == "float"]
