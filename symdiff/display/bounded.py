"""Bounded displays: formulas while they are readable, a summary of the program past that.

A gradient written out as one formula per parameter repeats every shared
subexpression wherever it is used, so its printed size grows with the product of a
network's widths (31,656 operations in one entry of a 2-16-16-1 MLP), and SymPy's
printers and simplifiers take minutes on it. The DAG knows that size without
building anything: the *tree size* of a node (its operation count once every
shared subexpression is written out) is one pass over the graph. Past the sizes of
:func:`readable` the displays show counts and the first lines of the shared
program (:meth:`Objective.program`) instead, and gradient entries are returned as
built (equal to ``sympy.diff``, shared, unsimplified).
"""

from __future__ import annotations

import sympy as sp

from ..core.graph import LEAVES
from ..core.primitives import PRIMITIVES
from ..core.to_sympy import nice_number

#: formulas are shown (and gradient entries tidied) while each has at most ENTRY_MAX_OPS
#: operations and all of them together at most DISPLAY_MAX_OPS (printing and tidying cost
#: about 0.25 ms per operation)
ENTRY_MAX_OPS = 500
DISPLAY_MAX_OPS = 4000
#: a summary shows this many program instructions and this many gradient entries
SHOWN_INSTRUCTIONS = 8
SHOWN_ENTRIES = 3
_CAP = 10 ** 12


def tree_sizes(graph, nodes) -> list:
    """Operations in each of ``nodes`` written out as a tree (capped at 10**12)."""
    size = {}
    for i in graph.upstream(nodes):
        if graph.ops[i] in LEAVES:
            size[i] = 0
        else:
            size[i] = min(_CAP, 1 + sum(size[a] for a in graph.operands(i)))
    return [size[i] for i in nodes]


def readable(graph, nodes) -> bool:
    """Whether the formulas of ``nodes`` are small enough to print and tidy: each at most
    ``ENTRY_MAX_OPS`` operations, all together at most ``DISPLAY_MAX_OPS``."""
    return _small(tree_sizes(graph, nodes))


def _small(sizes) -> bool:
    return max(sizes, default=0) <= ENTRY_MAX_OPS and sum(sizes) <= DISPLAY_MAX_OPS


def objective_sizes(objective) -> list:
    """Tree sizes of an objective's loss and gradient entries, computed once per objective."""
    d = objective._derive()
    sizes = getattr(d, "tree_sizes", None)
    if sizes is None:
        sizes = d.tree_sizes = tree_sizes(d.graph, [d.nodes[0]] + d.grad_nodes)
    return sizes


def objective_readable(objective) -> bool:
    """Whether :meth:`Objective.latex` and :meth:`Objective.pretty` show formulas."""
    return _small(objective_sizes(objective))


def _instruction_expr(ins, symbols: dict):
    """The right-hand side of one program instruction as a SymPy expression."""
    prim = PRIMITIVES[ins.op]
    args = []
    for a, kind in zip(ins.args, prim.arg_kinds(len(ins.args))):
        if kind == "int" or isinstance(a, bool):
            args.append(a if kind == "int" else (sp.true if a else sp.false))
        elif isinstance(a, str):
            args.append(symbols[a] if a in symbols else sp.Symbol(a))
        else:
            args.append(nice_number(float(a)))
    with sp.evaluate(False):
        return prim.to_sympy(*args)


def _summary(objective):
    """The facts a summary shows: counts, the loss's size, and the program's first lines."""
    program = objective.program()
    loss_ops, *grad_ops = objective_sizes(objective)
    return program, loss_ops, max(grad_ops, default=0)


def _label(name):
    return sp.Symbol(name)


def latex_summary(objective) -> str:
    """A LaTeX ``aligned`` block: the loss if readable, counts, and the program's first lines."""
    program, loss_ops, grad_ops = _summary(objective)
    symbols = objective._symbol_map
    loss = (sp.latex(objective.loss) if loss_ops <= ENTRY_MAX_OPS
            else rf"\text{{a formula of {loss_ops:,} operations}}")
    lines = [rf"L &= {loss}", rf"&\text{{{_counts(objective, program, grad_ops)}}}"]
    for ins in program.body[:SHOWN_INSTRUCTIONS]:
        lines.append(f"{sp.latex(_label(ins.target))} &= {sp.latex(_instruction_expr(ins, symbols))}")
    more = len(program.body) - SHOWN_INSTRUCTIONS
    if more > 0:
        lines.append(rf"&\ldots \text{{ ({more:,} more instructions)}}")
    lines.append(f"L &= {_latex_arg(program.outputs[0], symbols)}")
    for p, out in list(zip(objective.params, program.outputs[1:]))[:SHOWN_ENTRIES]:
        lines.append(rf"\frac{{\partial L}}{{\partial {sp.latex(p)}}} &= {_latex_arg(out, symbols)}")
    more = len(objective.params) - SHOWN_ENTRIES
    if more > 0:
        lines.append(rf"&\ldots \text{{ ({more:,} more gradient entries)}}")
    return r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"


def pretty_summary(objective) -> str:
    """The text counterpart of :func:`latex_summary`."""
    program, loss_ops, grad_ops = _summary(objective)
    parts = ["loss =", sp.pretty(objective.loss) if loss_ops <= ENTRY_MAX_OPS
             else f"(a formula of {loss_ops:,} operations)", _counts(objective, program, grad_ops)]
    parts += [f"  {ins}" for ins in program.body[:SHOWN_INSTRUCTIONS]]
    if len(program.body) > SHOWN_INSTRUCTIONS:
        parts.append(f"  ... ({len(program.body) - SHOWN_INSTRUCTIONS:,} more instructions)")
    shown = min(len(program.outputs), SHOWN_ENTRIES + 1)
    parts += [f"  {label} = {_text_arg(out)}" for label, out in
              zip(program.labels[:shown], program.outputs[:shown])]
    if len(program.outputs) > shown:
        parts.append(f"  ... ({len(program.outputs) - shown:,} more gradient entries)")
    return "\n".join(parts)


def _counts(objective, program, grad_ops) -> str:
    n, m = len(objective.params), len(objective.data)
    return (f"{n:,} parameter{'s' * (n != 1)}, {m:,} data column{'s' * (m != 1)}: "
            f"the gradient written out has up to {grad_ops:,} operations per entry; "
            f"obj.program() computes loss and gradient in {len(program.body):,} shared instructions")


def _latex_arg(a, symbols):
    if isinstance(a, str):
        return sp.latex(symbols[a] if a in symbols else _label(a))
    return sp.latex(nice_number(float(a)))


def _text_arg(a):
    from ..core.ir import format_arg
    return format_arg(a)
