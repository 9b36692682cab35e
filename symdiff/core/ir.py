"""The IR: one straight-line, single-assignment program per objective.

A :class:`Program` is what every later stage consumes — the printer, the NumPy
reference interpreter (:func:`evaluate`), and the LLVM lowering in ``codegen``. It
is the per-sample body: ``params`` are shared by all samples, ``data`` are the
per-sample inputs, ``body`` computes temporaries in order, and ``outputs`` name
the results (the loss first, then each gradient entry, for an objective). The
kernel maps or sums this body over the samples of a batch.

Instruction arguments are variable names (``str``), float constants, ``int``
exponents (``powi``), ints and bool flags of the array ops, or boolean constants.

Array programs (the contract between the symbolic front end and ``codegen``)
---------------------------------------------------------------------------
``Program.shapes`` is a tuple of ``(name, (rows, cols))`` pairs giving the
**per-sample** shape of every array-valued name (params, data, temporaries); a name
not in ``shapes`` is a scalar. Arrays are 2-D; column vectors are ``(r, 1)``. Scalar
programs have ``shapes == ()`` and print, evaluate, lower and hash (``repr``) exactly
as before. ``Program.shape(name)`` is ``()`` for a scalar; :meth:`Program.verify`
re-derives every shape from the ops' shape rules. The printer shows each array
temporary's shape: ``t3 = dot(W1, x, False, False)    # (32, 1)``.

Ops (:mod:`symdiff.core.primitives`: NumPy reference, SymPy form, derivative, shape rule):

- every scalar primitive is **elementwise** on arrays: all array arguments have one
  shape, scalar arguments broadcast, the result has that shape;
- ``dot(a, b, ta, tb)`` = ``op(a) @ op(b)``, ``op`` transposes when the bool flag is
  true. Adjoints (JAX's ``dot_general`` transpose rules in 2-D):
  ``dA = dot(adj, b, False, not tb)`` (``dot(b, adj, tb, True)`` if ta),
  ``dB = dot(a, adj, not ta, False)`` (``dot(adj, a, True, ta)`` if tb);
- ``transpose(a)``: ``(r, c) -> (c, r)``;
- ``sum(a)``: all elements -> scalar; adjoint ``broadcast(adj, r, c)``;
- ``broadcast(s, r, c)``: scalar -> ``(r, c)`` filled with ``s``; adjoint ``sum(adj)``;
- ``amax(a)``: largest element -> scalar; only ever used under ``detach``
  (the shift of a stable log-sum-exp), so it has no derivative;
- ``index(a, i, j)``: element ``(i, j)`` -> scalar; adjoint ``onehot(adj, i, j, r, c)``;
- ``onehot(s, i, j, r, c)``: ``(r, c)`` zeros with ``s`` at ``(i, j)``; adjoint ``index``;
- ``eye(r)``: the ``(r, r)`` identity.

Batch semantics (what a kernel computes; :func:`symdiff.evaluate` is the reference):

- params are shared by all samples, data vary per sample; a value varies iff it
  depends on data (:meth:`Program.varying`);
- theta is 1-D: params in order, each raveled C-order (a scalar param is one slot);
- a data symbol of per-sample shape ``(r, c)`` arrives as an ``(n, r, c)`` array or
  ``(n, r*c)`` (C-order per sample); ``(n, r)`` for an ``(r, 1)`` vector; ``(n,)``
  for a scalar;
- outputs are the loss (a scalar) then one gradient per param, of that param's shape;
  a kernel returns the mean loss over the samples and the flat mean gradient (params
  order, raveled C-order): the call signature of scalar kernels,
  ``loss, grad = kernel(theta, data)``;
- batching is ``vmap``'s: over a tile of B samples a varying ``(r, 1)`` value is a
  ``(B, r)`` matrix, ``dot(W, x)`` with W a param is ``X @ W.T``, and a gradient
  ``dot(delta, x, False, True)`` of two varying values, summed over the samples, is
  ``Delta.T @ X``. Sums over samples are combined in a fixed order (bit-identical
  results run to run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import LEAVES
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
    shapes: tuple = field(default=(), repr=False)  # ((name, (rows, cols)), ...) of array names

    def __repr__(self):
        # the dataclass form; ``shapes`` only when there are arrays, so a scalar program's
        # repr (the compile-cache key) is what it was before arrays existed
        text = (f"Program(params={self.params!r}, data={self.data!r}, body={self.body!r}, "
                f"outputs={self.outputs!r}, labels={self.labels!r}")
        return text + (f", shapes={self.shapes!r})" if self.shapes else ")")

    def shape(self, name) -> tuple:
        """The per-sample shape of ``name``: ``()`` for a scalar, else ``(rows, cols)``."""
        if not self.shapes or not isinstance(name, str):
            return ()
        return self._shape_map().get(name, ())

    def _shape_map(self) -> dict:
        cached = self.__dict__.get("_shapes_dict")
        if cached is None:
            cached = dict(self.shapes)
            object.__setattr__(self, "_shapes_dict", cached)
        return cached

    def __str__(self):
        if not self.shapes:
            lines = [f"# params: {', '.join(map(format_name, self.params)) or '-'}",
                     f"# data:   {', '.join(map(format_name, self.data)) or '-'}"]
            lines += [str(ins) for ins in self.body]
            lines += [f"{label} = {format_arg(out)}" for label, out in zip(self.labels, self.outputs)]
            return "\n".join(lines)
        shaped = lambda n: format_name(n) + (f" {self.shape(n)}" if self.shape(n) else "")
        lines = [f"# params: {', '.join(map(shaped, self.params)) or '-'}",
                 f"# data:   {', '.join(map(shaped, self.data)) or '-'}"]
        width = max((len(str(ins)) for ins in self.body), default=0)
        for ins in self.body:
            text = str(ins)
            shape = self.shape(ins.target)
            lines.append(f"{text:<{width}}    # {shape}" if shape else text)
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
        """Check single assignment, defined-before-use, known ops, arities and shapes; return self."""
        defined = set(self.params) | set(self.data)
        if len(defined) != len(self.params) + len(self.data):
            raise ValueError("params and data names must be distinct")
        if self.shapes:
            self._verify_shapes()
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

    def _verify_shapes(self):
        from ..errors import FormulaError
        names = [n for n, _ in self.shapes]
        if len(set(names)) != len(names):
            raise ValueError("a name appears twice in shapes")
        for name, shape in self.shapes:
            if not (isinstance(shape, tuple) and len(shape) == 2
                    and all(isinstance(d, int) and d > 0 for d in shape)):
                raise ValueError(f"shape of {name!r} must be (rows, cols) of positive ints: {shape!r}")
        for ins in self.body:
            prim = PRIMITIVES.get(ins.op)
            if prim is None:
                continue  # reported by verify
            kinds = prim.arg_kinds(len(ins.args))
            try:
                shape = prim.result_shape([a if k == "int" else self.shape(a)
                                           for a, k in zip(ins.args, kinds)])
            except FormulaError as exc:
                raise ValueError(f"{exc}: {ins}") from None
            if shape != self.shape(ins.target):
                raise ValueError(f"{ins.target!r} has shape {shape} but shapes says "
                                 f"{self.shape(ins.target)}: {ins}")

    def select(self, outputs: list[int]) -> "Program":
        """The program computing only the chosen outputs (dead instructions dropped)."""
        outs = tuple(self.outputs[i] for i in outputs)
        live = {o for o in outs if isinstance(o, str)}
        kept = []
        for ins in reversed(self.body):
            if ins.target in live:
                kept.append(ins)
                live.update(a for a in ins.args if isinstance(a, str))
        names = set(self.params) | set(self.data) | {ins.target for ins in kept}
        return Program(self.params, self.data, tuple(reversed(kept)), outs,
                       tuple(self.labels[i] for i in outputs),
                       tuple((n, s) for n, s in self.shapes if n in names))


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
    taken = set(params) | set(data)
    prefix = "t"
    while any(n.startswith(prefix) and n[len(prefix):].isdigit() for n in taken):
        prefix = "_" + prefix
    names: dict[int, object] = {}
    body = []
    order = graph.upstream(outputs)
    for i in order:
        op = graph.ops[i]
        if op in LEAVES:
            names[i] = graph.args[i][0]
            continue
        prim = PRIMITIVES[op]
        args = tuple(a if k == "int" else names[a]
                     for a, k in zip(graph.args[i], prim.arg_kinds(len(graph.args[i]))))
        target = f"{prefix}{len(body)}"
        names[i] = target
        body.append(Instr(target, op, args))
    outs = tuple(names[o] for o in outputs)
    shapes = []
    if graph.shapes:
        leaf_shape = {graph.args[i][0]: s for i, s in graph.shapes.items() if graph.ops[i] == "sym"}
        shapes = [(n, leaf_shape[n]) for n in list(params) + list(data) if n in leaf_shape]
        shapes += [(names[i], graph.shapes[i]) for i in order
                   if i in graph.shapes and graph.ops[i] != "sym"]
    return Program(tuple(params), tuple(data), tuple(body), outs, tuple(labels),
                   tuple(shapes)).verify()
