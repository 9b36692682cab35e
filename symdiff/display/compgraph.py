"""The computational graph of a formula at a point: every node's forward value and adjoint.

:func:`computational_graph` shows the DAG symdiff itself differentiates, not a
drawing made on the side: the formula goes through :func:`~symdiff.core.from_sympy.to_graph`
(so shared subexpressions are one node and the stable rewrites apply), reverse mode
(:func:`~symdiff.core.reverse.reverse_adjoints`) builds each node's adjoint
d(output)/d(node) and the adjoint each edge carries back, and one straight-line
program of all those nodes runs through the reference interpreter
(:func:`~symdiff.core.evaluate.evaluate`) at the given point.

The result prints as a node-by-node table, turns into Graphviz DOT, and renders to
SVG or PNG (see :mod:`symdiff.display.drawing`); in Jupyter it shows the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import sympy as sp

from ..errors import FormulaError, SymdiffError
from ..core.evaluate import evaluate
from ..core.from_sympy import to_graph
from ..core.graph import LEAVES, Graph
from ..core.ir import linearize
from ..core.primitives import PRIMITIVES
from ..core.reverse import reverse_adjoints

__all__ = ["computational_graph", "ComputationalGraph", "GraphNode", "GraphEdge", "MAX_DRAWN_NODES",
           "MAX_INLINE_NODES"]

#: beyond this many nodes a picture is unreadable: draw a part (:meth:`ComputationalGraph.subgraph`)
MAX_DRAWN_NODES = 300
#: Jupyter shows larger graphs as the table (a picture that size takes seconds to draw)
MAX_INLINE_NODES = 100
#: rows ``print(g)`` shows of a larger graph (the first and last half)
TABLE_ROWS = 60

@dataclass(frozen=True)
class GraphNode:
    """One node: a named input, a constant, or one operation on earlier nodes.

    ``adjoint`` is d(output)/d(node) at the point, ``None`` when no ``wrt`` symbol
    lies below the node (nothing to differentiate there). ``layer`` is the node's
    column in the left-to-right picture: inputs at 0, each operation one right of its
    deepest input.
    """

    name: str
    op: str                 # "input", "constant", or a primitive's name ("add", "exp", ...)
    inputs: tuple           # names of the argument nodes, in order
    value: object           # float, or bool for a comparison
    adjoint: Optional[float]
    layer: int
    exponent: Optional[int] = None  # the integer power of a ``powi`` node

    @property
    def is_leaf(self) -> bool:
        return self.op in ("input", "constant")

    @property
    def operation(self) -> str:
        """The operation as the table prints it (``powi`` with its exponent)."""
        return f"powi {self.exponent}" if self.op == "powi" else self.op


@dataclass(frozen=True)
class GraphEdge:
    """``source`` feeds argument ``position`` of ``target``: it carries ``value`` forward,
    and ``adjoint`` back, the part of d(output)/d(source) that flows through this use."""

    source: str
    target: str
    position: int
    value: object
    adjoint: Optional[float]


class ComputationalGraph:
    """Nodes in topological order (the output last), the edges between them, and the point.

    ``print(g)`` gives the table, :meth:`dot` the Graphviz source, :meth:`render`
    the picture; ``g["coat"]`` is the node named ``coat``.
    """

    def __init__(self, nodes, edges, output: str, point: dict, output_label: str = "output"):
        self.nodes: tuple = tuple(nodes)
        self.edges: tuple = tuple(edges)
        self.output = output
        self.output_label = output_label
        self.point = dict(point)
        self._by_name = {n.name: n for n in self.nodes}

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, name: str) -> GraphNode:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}; nodes: {', '.join(self._names_preview())}") from None

    def __iter__(self):
        return iter(self.nodes)

    def _names_preview(self, n=12):
        names = [node.name for node in self.nodes]
        return names if len(names) <= n else names[:n] + ["..."]

    @property
    def adjoint_label(self) -> str:
        return f"d {self.output_label}/d node"

    # -- the table ----------------------------------------------------------------
    def table(self, limit: Optional[int] = TABLE_ROWS) -> str:
        """One row per node: name, operation, inputs, forward value, adjoint.

        With more than ``limit`` nodes only the first and last ``limit/2`` rows are
        shown (``limit=None`` shows all).
        """
        header = ("node", "operation", "inputs", "value", self.adjoint_label)
        rows = [(n.name + (f"  ({self.output_label})" if n.name == self.output else ""),
                 n.operation, ", ".join(n.inputs), format_value(n.value), format_value(n.adjoint))
                for n in self.nodes]
        omitted = 0
        if limit is not None and len(rows) > limit:
            half = max(limit // 2, 1)
            omitted = len(rows) - 2 * half
            rows = rows[:half] + [None] + rows[-half:]
        shown = [r for r in rows if r is not None]
        widths = [max(len(header[k]), *(len(r[k]) for r in shown)) for k in range(5)]
        numeric = (False, False, False, True, True)

        def line(cells):
            return "  ".join(c.rjust(w) if right else c.ljust(w)
                             for c, w, right in zip(cells, widths, numeric)).rstrip()

        lines = [line(header), line(tuple("-" * w for w in widths))]
        for r in rows:
            lines.append(f"... {omitted} nodes not shown; g.table(limit=None) prints all"
                         if r is None else line(r))
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return (f"<ComputationalGraph: {len(self.nodes)} nodes, {self.output_label} "
                f"{format_value(self._by_name[self.output].value)}; print() it for the table>")

    def _repr_pretty_(self, p, cycle):
        p.text(self.table())

    # -- parts ----------------------------------------------------------------------
    def subgraph(self, name: str, depth: Optional[int] = None) -> "ComputationalGraph":
        """The part of the graph that computes node ``name``: its inputs, theirs, and so on,
        at most ``depth`` edges back. Values and adjoints stay those of the whole graph
        (the adjoints are still derivatives of the whole output)."""
        self[name]
        level = {name: 0}
        stack = [name]
        while stack:
            current = stack.pop()
            if depth is not None and level[current] >= depth:
                continue
            for source in self._by_name[current].inputs:
                if source not in level or level[source] > level[current] + 1:
                    level[source] = level[current] + 1
                    stack.append(source)
        nodes = [n for n in self.nodes if n.name in level]
        edges = [e for e in self.edges if e.source in level and e.target in level]
        return ComputationalGraph(_relayer(nodes), edges, name, self.point, self.output_label)

    # -- pictures (symdiff.drawing) -----------------------------------------------------
    def dot(self) -> str:
        """Graphviz DOT source: one node per operation, labelled with its operation, forward
        value (blue) and adjoint (red); each edge with the value it carries forward and
        the adjoint it carries back."""
        from .drawing import to_dot
        self._check_drawable()
        return to_dot(self)

    def render(self, path, engine: str = "auto"):
        """Save the picture to ``path`` (``.svg``, ``.png`` or ``.pdf``); returns the path.

        ``engine``: ``"graphviz"`` (its ``dot`` program), ``"matplotlib"`` (a
        left-to-right layered drawing; the ``plot`` extra), ``"svg"`` (the same drawing
        written as SVG with no dependency), or ``"auto"``: Graphviz when ``dot`` is on the
        PATH, else matplotlib, else (for ``.svg``) the plain SVG writer.
        """
        from .drawing import render
        self._check_drawable()
        return render(self, path, engine)

    def _repr_html_(self):
        """Jupyter: the picture as inline SVG, or the table when it cannot be drawn."""
        import html
        from .drawing import svg_text
        if len(self.nodes) <= MAX_INLINE_NODES:
            try:
                return svg_text(self)
            except SymdiffError:
                pass
        note = ("" if len(self.nodes) <= MAX_INLINE_NODES else
                f"<p>{len(self.nodes)} nodes: g.render('graph.svg') draws the picture "
                f"(up to {MAX_DRAWN_NODES} nodes), g.subgraph(name) a part.</p>")
        return note + "<pre>" + html.escape(self.table()) + "</pre>"

    def _check_drawable(self):
        if len(self.nodes) > MAX_DRAWN_NODES:
            raise SymdiffError(
                f"the graph has {len(self.nodes)} nodes, more than the {MAX_DRAWN_NODES} a picture "
                f"shows readably; draw a part: g.subgraph({self.output!r}, depth=3) is the last three "
                f"steps before the {self.output_label}, g.subgraph(NODE) everything that computes NODE "
                f"(a name from print(g), which shows the table)")


def format_value(value, digits: int = 6) -> str:
    """A value as the table (6 significant digits) and the picture (4) print it; '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    value = float(value)
    if value == 0.0:
        return "0"
    return f"{value:.{digits}g}"


def computational_graph(expr, wrt=None, at=None, output_name: str = "output") -> ComputationalGraph:
    """The computational graph of ``expr`` at the point ``at``, with forward values and adjoints.

    ``wrt``: the symbols (or names) to differentiate by (default: every free symbol);
    nodes no ``wrt`` symbol reaches get no adjoint. ``at``: a value for every free
    symbol of ``expr``, keyed by symbol or name. Returns a :class:`ComputationalGraph`:
    ``print`` it for the node-by-node table, ``.dot()``, ``.render("graph.svg")``.

    Example (the tutorials' shopping bill)::

        g = sd.computational_graph((coat + trouser*count)*pay, wrt=[coat, trouser, count, pay],
                                   at={coat: 400, trouser: 300, count: 2, pay: 0.7})
        g["coat"].adjoint   # 0.7
    """
    from ..models.objective import _as_expr, _free_symbols, _symbols

    expr = _as_expr(expr, "expression")
    free = sorted(_free_symbols(expr), key=lambda s: s.name)
    free_names = {s.name for s in free}
    if wrt is None:
        wrt = free
    elif isinstance(wrt, (sp.Symbol, str)):
        wrt = [wrt]
    wrt_names = [s.name for s in _symbols(list(wrt), expr, "wrt")]
    point = _point(at, free_names)

    graph = Graph()
    names = sorted(free_names)
    (output,) = to_graph([expr], graph, names)
    forward = graph.upstream([output])
    edge_ids: dict = {}
    wrt_ids = [graph.symbol(n) for n in wrt_names if n in free_names]
    adjoint_ids = reverse_adjoints(graph, output, wrt_ids, edge_ids)
    reaches = _reaches(graph, forward, set(wrt_ids))

    evaluated = [i for i in forward] + list(adjoint_ids.values()) + \
        [c for c in edge_ids.values() if c is not None]
    program = linearize(graph, evaluated, [f"n{k}" for k in range(len(evaluated))], names, [])
    values = evaluate(program, [point[n] for n in names], {})
    value_of = {}
    for node_id, v in zip(evaluated, values):
        value_of.setdefault(node_id, v[()] if np.ndim(v) == 0 else v)

    return _assemble(graph, forward, output, value_of, adjoint_ids, edge_ids, reaches, point,
                     output_name)


def _point(at, free_names) -> dict:
    """{name: float} from ``at``, checked: every free symbol given, nothing unknown, finite."""
    point = {}
    for key, value in (at or {}).items():
        name = key.name if isinstance(key, sp.Symbol) else key
        if not isinstance(name, str):
            raise FormulaError(f"at= keys must be symbols or names, got {key!r}")
        if name not in free_names:
            raise FormulaError(f"at= gives a value for {name!r}, which the expression does not use")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FormulaError(f"at= value of {name!r} must be a real number, got {value!r}") from None
        if not math.isfinite(number):
            raise FormulaError(f"at= value of {name!r} must be finite, got {value!r}")
        point[name] = number
    missing = sorted(free_names - set(point))
    if missing:
        raise FormulaError(f"at= gives no value for {', '.join(map(repr, missing))}")
    return point


def _node_args(graph: Graph, i: int):
    """(argument id, position) of node ``i``'s node arguments (integer exponents skipped)."""
    prim = PRIMITIVES[graph.ops[i]]
    return [(a, k) for k, (a, kind) in enumerate(zip(graph.args[i], prim.arg_kinds(len(graph.args[i]))))
            if kind != "int"]


def _reaches(graph: Graph, forward, targets) -> set:
    reached = set()
    for i in forward:
        if i in targets or any(a in reached for a in graph.operands(i)):
            reached.add(i)
    return reached


def _assemble(graph, forward, output, value_of, adjoint_ids, edge_ids, reaches, point,
              output_name) -> ComputationalGraph:
    taken = set(point)
    prefix = "t"
    while any(n.startswith(prefix) and n[len(prefix):].isdigit() for n in taken):
        prefix = "_" + prefix
    name_of, count = {}, 0
    for i in forward:
        op = graph.ops[i]
        if op == "sym":
            name_of[i] = graph.args[i][0]
        elif op in ("const", "bconst"):
            name = format_value(graph.args[i][0])
            while name in taken:  # two constants equal to 6 digits, or a symbol named like one
                name += "'"
            name_of[i] = name
        else:
            count += 1
            name_of[i] = f"{prefix}{count}"
        taken.add(name_of[i])

    def adjoint(i):
        if graph.kind(i) == "bool" or (i not in reaches and i != output):
            return None
        a = adjoint_ids.get(i)
        return 0.0 if a is None else float(value_of[a])

    def kind_value(i, v):
        return bool(v) if graph.kind(i) == "bool" else float(v)

    nodes, edges = [], []
    for i in forward:
        op = graph.ops[i]
        args = _node_args(graph, i) if op not in LEAVES else []
        nodes.append(GraphNode(
            name=name_of[i],
            op="input" if op == "sym" else "constant" if op in ("const", "bconst") else op,
            inputs=tuple(name_of[a] for a, _ in args),
            value=kind_value(i, value_of[i]),
            adjoint=adjoint(i),
            layer=0,
            exponent=graph.args[i][1] if op == "powi" else None))
        for a, position in args:
            if (i, position) in edge_ids:
                c = edge_ids[(i, position)]
                back = 0.0 if c is None else float(value_of[c])
            else:
                back = None
            edges.append(GraphEdge(name_of[a], name_of[i], position,
                                   kind_value(a, value_of[a]), back))
    return ComputationalGraph(_relayer(nodes), edges, name_of[output], point, output_name)


def _relayer(nodes) -> list:
    """``nodes`` with their layers: an operation one right of its deepest input, an input
    or a constant one left of its first consumer (so it sits next to where it is used,
    and no edge of a small graph crosses a column)."""
    layer = {}
    for n in nodes:
        layer[n.name] = 0 if n.is_leaf else 1 + max((layer[a] for a in n.inputs if a in layer), default=-1)
    first_use = {}
    for n in nodes:
        for a in n.inputs:
            first_use[a] = min(first_use.get(a, layer[n.name]), layer[n.name])
    out = []
    for n in nodes:
        k = layer[n.name]
        if n.is_leaf and n.name in first_use:
            k = max(first_use[n.name] - 1, 0)
        out.append(GraphNode(n.name, n.op, n.inputs, n.value, n.adjoint, k, n.exponent))
    return out
