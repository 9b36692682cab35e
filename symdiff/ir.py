"""The IR: one straight-line, single-assignment program per objective.

A :class:`Program` is what every later stage consumes — the printer, the NumPy
reference interpreter (:func:`evaluate`), and the LLVM lowering in ``codegen``. It
is the per-sample body: ``params`` are scalars shared by all samples, ``data`` are
the per-sample inputs, ``body`` computes temporaries in order, and ``outputs`` name
the results (the loss first, then each gradient entry, for an objective). The
kernel maps or sums this body over the samples of a batch; later extensions
(array-valued parameters, Hessians) add loop nests around the same body.

Instruction arguments are variable names (``str``), float constants, ``int``
exponents (``powi``) or boolean constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from .primitives import PRIMITIVES


@dataclass(frozen=True)
class Instr:
    target: str
    op: str
    args: tuple

    def __str__(self):
        return f"{self.target} = {format_call(self.op, self.args)}"


@dataclass(frozen=True)
class Program:
    params: tuple
    data: tuple
    body: tuple
    outputs: tuple          # variable names or float constants
    labels: tuple           # one readable label per output, e.g. "loss", "dloss/dw"

    def __str__(self):
        lines = [f"# params: {', '.join(map(format_name, self.params)) or '-'}",
                 f"# data:   {', '.join(map(format_name, self.data)) or '-'}"]
        lines += [str(ins) for ins in self.body]
        lines += [f"{label} = {format_arg(out)}" for label, out in zip(self.labels, self.outputs)]
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))

    @property
    def op_count(self) -> int:
        """Number of arithmetic instructions (a cost measure; ``powi`` counts its multiplies)."""
        n = 0
        for ins in self.body:
            n += max(1, _powi_cost(ins.args[1])) if ins.op == "powi" else 1
        return n

    def varying(self) -> frozenset:
        """Names whose value differs from sample to sample (depend on a data column)."""
        vary = set(self.data)
        for ins in self.body:
            if any(isinstance(a, str) and a in vary for a in ins.args):
                vary.add(ins.target)
        return frozenset(vary)

    def verify(self) -> "Program":
        """Check single assignment, defined-before-use, known ops and arities; return self."""
        defined = set(self.params) | set(self.data)
        if len(defined) != len(self.params) + len(self.data):
            raise ValueError("params and data names must be distinct")
        for ins in self.body:
            prim = PRIMITIVES.get(ins.op)
            if prim is None:
                raise ValueError(f"unknown op {ins.op!r} in {ins}")
            if prim.arity is not None and len(ins.args) != prim.arity:
                raise ValueError(f"{ins.op} takes {prim.arity} arguments: {ins}")
            for a in ins.args:
                if isinstance(a, str) and a not in defined:
                    raise ValueError(f"{a!r} used before it is defined: {ins}")
            if ins.target in defined:
                raise ValueError(f"{ins.target!r} assigned twice: {ins}")
            defined.add(ins.target)
        for out in self.outputs:
            if isinstance(out, str) and out not in defined:
                raise ValueError(f"output {out!r} is not defined")
        if len(self.labels) != len(self.outputs):
            raise ValueError("one label per output")
        return self

    def select(self, outputs: list[int]) -> "Program":
        """The program computing only the chosen outputs (dead instructions dropped)."""
        outs = tuple(self.outputs[i] for i in outputs)
        live = {o for o in outs if isinstance(o, str)}
        kept = []
        for ins in reversed(self.body):
            if ins.target in live:
                kept.append(ins)
                live.update(a for a in ins.args if isinstance(a, str))
        return Program(self.params, self.data, tuple(reversed(kept)), outs,
                       tuple(self.labels[i] for i in outputs))


def _powi_cost(n):
    n = abs(int(n))
    return max(0, n.bit_length() - 1 + bin(n).count("1") - 1)


def format_arg(a) -> str:
    if isinstance(a, bool):
        return "True" if a else "False"
    if isinstance(a, float):
        if a.is_integer() and abs(a) < 1e15:
            return str(int(a))
        return repr(a)
    if isinstance(a, int):
        return str(a)
    return format_name(a)


def format_name(name: str) -> str:
    """A variable name as printed: quoted with backticks unless it is a plain identifier,
    so a symbol named ``2`` or ``a+b`` cannot be read as a constant or an expression."""
    return name if name.isidentifier() else "`" + name.replace("`", "``") + "`"


def format_call(op: str, args) -> str:
    prim = PRIMITIVES[op]
    parts = [format_arg(a) for a in args]
    if prim.infix and len(args) == 2:
        return f"{parts[0]} {prim.infix} {parts[1]}" if op != "powi" else f"{parts[0]}**{parts[1]}"
    if op == "neg":
        return f"-{parts[0]}"
    return f"{op}({', '.join(parts)})"


def linearize(graph, outputs, labels, params, data) -> Program:
    """The straight-line program computing ``outputs`` (graph node ids), in topological order."""
    needed = set()
    stack = [o for o in outputs]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        op = graph.ops[i]
        if op in ("sym", "const", "bconst"):
            continue
        prim = PRIMITIVES[op]
        stack.extend(a for a, k in zip(graph.args[i], prim.arg_kinds(len(graph.args[i])))
                     if k != "int")
    taken = set(params) | set(data)
    prefix = "t"
    while any(n.startswith(prefix) and n[len(prefix):].isdigit() for n in taken):
        prefix = "_" + prefix
    names: dict[int, object] = {}
    body = []
    for i in sorted(needed):
        op = graph.ops[i]
        if op in ("sym", "const", "bconst"):
            names[i] = graph.args[i][0]
            continue
        prim = PRIMITIVES[op]
        args = tuple(a if k == "int" else names[a]
                     for a, k in zip(graph.args[i], prim.arg_kinds(len(graph.args[i]))))
        target = f"{prefix}{len(body)}"
        names[i] = target
        body.append(Instr(target, op, args))
    outs = tuple(names[o] for o in outputs)
    return Program(tuple(params), tuple(data), tuple(body), outs, tuple(labels)).verify()
