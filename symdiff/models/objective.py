"""Objectives and models: where formulas become gradients, programs and kernels.

An :class:`Objective` is a per-sample loss in parameter and data symbols; its value
on a batch is the mean of the loss over the samples. Everything else is derived
lazily and once: the expression DAG, the reverse-mode gradient on it, the
straight-line program (the IR), and compiled kernels per dtype and thread count.

All symbols are treated as real, whatever assumptions they carry; results are given
back in the user's own symbols so ``expr.subs(w, 1.0)`` works as expected.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import sympy as sp

from ..display.bounded import latex_summary, objective_readable, pretty_summary, readable
from ..errors import FormulaError
from . import array_objective
from ..core.from_matrix import scalar_loss
from ..core.from_sympy import to_graph
from ..core.graph import Graph
from ..core.ir import Program, linearize
from ..core.reverse import reverse_gradient
from ..core.to_sympy import to_sympy

#: gradient entries up to this many operations get a ``sympy.simplify`` pass for reading
SIMPLIFY_MAX_OPS = 24


def vector(name: str, n: int) -> tuple:
    """``n`` real symbols ``name0 .. name{n-1}``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"vector needs a positive integer count, got {n!r}")
    return tuple(sp.Symbol(f"{name}{i}", real=True) for i in range(int(n)))


def _as_expr(e, what="loss"):
    if isinstance(e, str):
        from .parse import parse_formula
        e = parse_formula(e)
    if isinstance(e, (int, float)):
        e = sp.Float(e) if isinstance(e, float) else sp.Integer(e)
    if isinstance(e, sp.MatrixExpr) and e.shape == (1, 1) and what in ("loss", "expression"):
        return e  # a 1x1 matrix formula such as r.T*r is a scalar loss
    if isinstance(e, sp.MatrixExpr) and what == "model output" and e.shape[1] == 1:
        return e  # a vector of k outputs per sample
    if isinstance(e, (sp.MatrixBase,)) or getattr(e, "is_Matrix", False):
        raise FormulaError(f"the {what} must be a scalar expression, got a matrix of shape {e.shape}")
    if not isinstance(e, sp.Expr):
        raise FormulaError(f"the {what} must be a SymPy expression, got {type(e).__name__}")
    return e


def _free_symbols(expr) -> set:
    """The symbols of ``expr``, found without recursion (deep formulas exceed Python's stack)."""
    cached = getattr(expr, "_symdiff_free", None)
    if cached is not None:
        return cached
    seen, out, bound, stack = set(), set(), set(), [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, (sp.Symbol, sp.MatrixSymbol)):
            out.add(e)
            continue
        if isinstance(e, sp.Lambda):  # the variable of f in A.applyfunc(f) is not free
            bound.update(e.variables)
        for a in getattr(e, "args", ()):
            if a not in seen:
                seen.add(a)
                stack.append(a)
    return out - bound


def _guard_depth(fn):
    """Turn SymPy's RecursionError on absurdly deep formulas into a FormulaError."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RecursionError:
            raise FormulaError("the formula is nested too deeply for SymPy to process "
                               "(Python's recursion limit); split it into smaller pieces") from None
    return wrapper


def _symbols(items, expr, what):
    """Resolve a list of symbols or names against the free symbols of ``expr``."""
    by_name = {}
    for s in _free_symbols(expr):
        by_name.setdefault(s.name, s)
    out = []
    for it in items:
        if isinstance(it, (sp.Symbol, sp.MatrixSymbol)):
            out.append(it)
        elif isinstance(it, str):
            out.append(by_name.get(it, sp.Symbol(it, real=True)))
        else:
            raise FormulaError(f"{what} must be SymPy symbols or names, got {it!r}")
    dup = {n for n, k in Counter(s.name for s in out).items() if k > 1}
    if dup:
        raise FormulaError(f"{what} lists {sorted(dup)} more than once")
    return tuple(out)


class _Derived:
    """The DAG and the node ids of a formula's outputs, built once."""

    def __init__(self, outputs, params, data, gradient_of=None):
        t0 = time.perf_counter()
        self.graph = Graph()
        names = [p.name for p in params] + [d.name for d in data]
        for s in list(params) + list(data):  # declared shapes hold even where a symbol is unused
            if isinstance(s, sp.MatrixSymbol):
                self.graph.symbol(s.name, s.shape)
        self.nodes = to_graph(outputs, self.graph, names)
        if gradient_of is not None:
            self.nodes[gradient_of] = scalar_loss(self.graph, self.nodes[gradient_of])
        self.times = {"to_graph": time.perf_counter() - t0}
        self.grad_nodes = None
        if gradient_of is not None:
            t1 = time.perf_counter()
            wrt = [self.graph.symbol(p.name) for p in params]
            self.grad_nodes = [self.graph.node("broadcast", n, *self.graph.shape(w))
                               if self.graph.shape(w) and not self.graph.shape(n) else n
                               for w, n in zip(wrt, reverse_gradient(self.graph,
                                                                     self.nodes[gradient_of], wrt))]
            self.times["differentiate"] = time.perf_counter() - t1


@_guard_depth
def grad(expr, wrt) -> list:
    """Reverse-mode symbolic gradient of a scalar expression w.r.t. the symbols ``wrt``.

    Mathematically equal to ``[sympy.diff(expr, s) for s in wrt]``, but computed in one
    reverse sweep over the shared expression DAG, then tidied for reading.
    """
    expr = _as_expr(expr, "expression")
    if isinstance(wrt, (sp.Symbol, sp.MatrixSymbol, str)):
        wrt = [wrt]
    wrt = _symbols(wrt, expr, "wrt")
    others = tuple(sorted((s for s in _free_symbols(expr) if s.name not in {w.name for w in wrt}),
                          key=lambda s: s.name))
    d = _Derived([expr], wrt, others, gradient_of=0)
    symbols = {s.name: s for s in list(wrt) + list(others)}
    if any(isinstance(s, sp.MatrixSymbol) for s in symbols.values()):
        from ..core.to_matrix import MatrixPrinter
        printer = MatrixPrinter(d.graph, symbols)
        return [printer(n) for n in d.grad_nodes]
    return _readable_gradient(d, symbols)


def _readable_gradient(d, symbols) -> list:
    """The gradient entries as SymPy expressions, tidied while they are small enough to read.

    Past the sizes of :func:`symdiff.display.bounded.readable` they are built unevaluated,
    as the reverse sweep made them: exact (equal to ``sympy.diff``), sharing every common
    subexpression, and built in time linear in the DAG; SymPy's automatic canonical
    ordering of their terms alone takes seconds on a mid-size network.
    """
    if readable(d.graph, d.grad_nodes):
        return [_tidy(e) for e in to_sympy(d.graph, d.grad_nodes, symbols)]
    with sp.evaluate(False):
        return to_sympy(d.graph, d.grad_nodes, symbols)


def _tidy(e):
    """A shorter equal form of ``e`` when one is cheap to find (fewest operations wins).

    ``factor_terms`` is cheap and undoes SymPy's automatic distribution of numeric
    factors (``2*(b + w*x - y)`` instead of ``2*b + 2*w*x - 2*y``); ``simplify`` is
    tried only on small expressions, where it is fast.
    """
    best, best_ops = e, sp.count_ops(e)
    candidates = [lambda: sp.factor_terms(e)]
    if best_ops <= SIMPLIFY_MAX_OPS and not e.has(sp.Piecewise):
        candidates.append(lambda: sp.factor_terms(sp.simplify(e)))
    for make in candidates:
        try:
            c = make()
        except Exception:  # tidying is best effort; the untidied form is exact
            continue
        ops = sp.count_ops(c)
        if ops < best_ops:
            best, best_ops = c, ops
    return best


class _FlatParams:
    """Parameters of any shape as one flat theta, the vector kernels and optimizers take."""

    @property
    def param_shapes(self) -> dict:
        """{param: shape}: ``(rows, cols)`` for a matrix parameter, ``()`` for a scalar."""
        return array_objective.param_shapes(self)

    def pack(self, values) -> np.ndarray:
        """The flat theta kernels take: {param: value} in params order, each raveled C-order."""
        return array_objective.pack(self, values)

    def unpack(self, flat) -> dict:
        """{param: array of its shape} from a flat theta or gradient (inverse of :meth:`pack`)."""
        return array_objective.unpack(self, flat)


class Objective(_FlatParams):
    """The mean over a batch of a per-sample ``loss`` in ``params`` and ``data`` symbols.

    ``data`` defaults to every free symbol of ``loss`` that is not a parameter.
    """

    @_guard_depth
    def __init__(self, loss, params, data=None):
        self.loss = _as_expr(loss)
        if isinstance(params, (sp.Symbol, sp.MatrixSymbol, str)):
            params = [params]
        self.params = _symbols(list(params), self.loss, "params")
        if not self.params:
            raise FormulaError("an objective needs at least one parameter")
        pnames = {p.name for p in self.params}
        if data is None:
            data = sorted((s for s in _free_symbols(self.loss) if s.name not in pnames),
                          key=lambda s: s.name)
        elif isinstance(data, (sp.Symbol, sp.MatrixSymbol, str)):
            data = [data]
        self.data = _symbols(list(data), self.loss, "data")
        clash = pnames & {d.name for d in self.data}
        if clash:
            raise FormulaError(f"{sorted(clash)} cannot be both a parameter and a data column")
        known = pnames | {d.name for d in self.data}
        unknown = sorted({s.name for s in _free_symbols(self.loss)} - known)
        if unknown:
            raise FormulaError(f"the loss uses {unknown}, which are neither params nor data")
        self._derived = None
        self._program = None
        self._gradient = None
        self._display = None
        self._kernels = {}
        self._array = array_objective.is_array(self)

    # -- matrices -------------------------------------------------------------------
    def init(self, seed=0) -> np.ndarray:
        """A flat initial theta: Glorot/He weights, zero biases (see :mod:`symdiff.models.array_objective`)."""
        return array_objective.initial_values(self, seed)

    @property
    def layers(self) -> dict:
        """{h1: tanh.(W1*x + b1), ...}: the named forward layers :meth:`gradient` refers to."""
        return dict(array_objective.display(self).layers) if self._array else {}

    # -- symbolic -----------------------------------------------------------------
    def _derive(self):
        if self._derived is None:
            self._derived = _Derived([self.loss], self.params, self.data, gradient_of=0)
        return self._derived

    @property
    def _symbol_map(self):
        return {s.name: s for s in self.params + self.data}

    @_guard_depth
    def gradient(self, expand=False) -> list:
        """The per-sample gradient in ``params`` order, as readable SymPy expressions.

        With matrix parameters, each entry is a matrix expression of its parameter's shape,
        written with the named layers of :attr:`layers`; ``expand=True`` substitutes them.
        """
        if self._array:
            return array_objective.gradient(self, expand)
        if self._gradient is None:
            self._gradient = _readable_gradient(self._derive(), self._symbol_map)
        return list(self._gradient)

    @_guard_depth
    def program(self) -> Program:
        """The straight-line program computing the loss and every gradient entry (the IR)."""
        if self._program is None:
            d = self._derive()
            t0 = time.perf_counter()
            labels = ["loss"] + [f"dloss/d{p.name}" for p in self.params]
            self._program = linearize(d.graph, [d.nodes[0]] + d.grad_nodes, labels,
                                      [p.name for p in self.params], [x.name for x in self.data])
            d.times["linearize"] = time.perf_counter() - t0
        return self._program

    @_guard_depth
    def hessian(self) -> sp.Matrix:
        """The per-sample Hessian in ``params`` order, a symmetric :class:`sympy.Matrix`."""
        if getattr(self, "_hessian", None) is None:
            from ..core.second_derivatives import objective_hessian
            self._hessian = objective_hessian(self)
        return self._hessian.copy()

    def latex(self) -> str:
        """The loss and its gradient as a LaTeX ``aligned`` block (``coat_price`` stays one word;
        past a readable size, the counts and the first lines of :meth:`program` instead)."""
        if self._array:
            return array_objective.latex(self)
        if not objective_readable(self):
            return latex_summary(self)
        from ..display.names import latex
        symbols = self.params + self.data
        lines = [r"L &= " + latex(self.loss, symbols)]
        for p, g in zip(self.params, self.gradient()):
            lines.append(r"\frac{\partial L}{\partial %s} &= %s" % (latex(p, symbols), latex(g, symbols)))
        return r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"

    def _repr_latex_(self):
        return "$$" + self.latex() + "$$"

    def pretty(self) -> str:
        """The loss and its gradient as SymPy's pretty (Unicode) text (past a readable size,
        the counts and the first lines of :meth:`program` instead)."""
        if self._array:
            return array_objective.pretty(self)
        if not objective_readable(self):
            return pretty_summary(self)
        parts = ["loss =", sp.pretty(self.loss)]
        for p, g in zip(self.params, self.gradient()):
            parts += [f"dloss/d{p.name} =", sp.pretty(g)]
        return "\n".join(parts)

    def computational_graph(self, theta, sample):
        """The loss's computational graph for one sample, with forward values and adjoints.

        ``theta``: parameter values in ``params`` order (or a mapping by symbol or name);
        ``sample``: one value per data symbol (a mapping, or a sequence in ``data``
        order). The adjoints are d loss/d node; see :func:`symdiff.computational_graph`.
        """
        from ..display.compgraph import computational_graph
        used = {s.name for s in _free_symbols(self.loss)}
        at = {}
        for symbols, values, what in ((self.params, theta, "theta"), (self.data, sample, "sample")):
            if isinstance(values, dict):
                given = {(k.name if isinstance(k, sp.Symbol) else k): v for k, v in values.items()}
                missing = [s.name for s in symbols if s.name not in given and s.name in used]
                if missing:
                    raise FormulaError(f"{what} gives no value for {', '.join(map(repr, missing))}")
            else:
                values = list(np.ravel(np.asarray(values, dtype=np.float64)))
                if len(values) != len(symbols):
                    raise FormulaError(f"{what} has {len(values)} values for {len(symbols)} symbols "
                                       f"({', '.join(s.name for s in symbols)})")
                given = {s.name: v for s, v in zip(symbols, values)}
            at.update({s: given[s.name] for s in symbols if s.name in used})
        return computational_graph(self.loss, wrt=self.params, at=at, output_name="loss")

    def __repr__(self):
        loss = array_objective.readable_loss(self.loss) if self._array else self.loss
        return (f"Objective(loss={loss}, params=[{', '.join(p.name for p in self.params)}], "
                f"data=[{', '.join(d.name for d in self.data)}])")

    def regularized(self, l2=0.0, l1=0.0, params=None) -> "Objective":
        """This objective plus symbolic L2/L1 penalties (see :func:`symdiff.regularized`)."""
        from .regularization import regularized
        return regularized(self, l2=l2, l1=l1, params=params)

    def __add__(self, penalty):
        """``objective + penalty``: the same objective with ``penalty`` added to the loss."""
        return Objective(self.loss + penalty, self.params, self.data)

    # -- native ---------------------------------------------------------------------
    def compile(self, dtype=np.float64, threads=None, cache=True, hessian=False):
        """A compiled kernel: ``kernel(theta, data) -> (mean loss, mean gradient)``.

        ``hessian=True``: a :class:`codegen.second_order.HessianKernel`,
        ``kernel(theta, data) -> (loss, gradient, Hessian)`` (means, one pass) with
        ``kernel.hvp(theta, data, v)``, the mean Hessian times ``v`` without forming it.
        """
        import codegen

        if hessian:
            from ..core.second_derivatives import compile_hessian
            return compile_hessian(self, dtype=dtype, threads=threads, cache=cache)
        key = (np.dtype(dtype).str, threads)
        k = self._kernels.get(key)
        if k is None and self._array:
            k = array_objective.compile_kernel(self, self.program(), dtype, threads, cache)
            self._kernels[key] = k
        if k is None:
            program = self.program()
            k = codegen.compile_objective(program, dtype=dtype, threads=threads, cache=cache,
                                          keys=self.data)
            k.compile_times = {**self._derive().times, **k.compile_times}
            self._kernels[key] = k
        return k


class Model(_FlatParams):
    """A per-sample prediction ``output`` of ``inputs`` with parameters ``params``."""

    @_guard_depth
    def __init__(self, output, params, inputs=None):
        self.output = _as_expr(output, "model output")
        if isinstance(params, (sp.Symbol, str)):
            params = [params]
        self.params = _symbols(list(params), self.output, "params")
        pnames = {p.name for p in self.params}
        if inputs is None:
            inputs = sorted((s for s in _free_symbols(self.output) if s.name not in pnames),
                            key=lambda s: s.name)
        elif isinstance(inputs, (sp.Symbol, str)):
            inputs = [inputs]
        self.inputs = _symbols(list(inputs), self.output, "inputs")
        unknown = sorted({s.name for s in _free_symbols(self.output)} - pnames
                         - {d.name for d in self.inputs})
        if unknown:
            raise FormulaError(f"the model uses {unknown}, which are neither params nor inputs")
        self._program = None
        self._kernels = {}
        self._array = array_objective.is_array(self)

    @_guard_depth
    def program(self) -> Program:
        if self._program is None:
            d = _Derived([self.output], self.params, self.inputs)
            self._program = linearize(d.graph, d.nodes, ["output"],
                                      [p.name for p in self.params], [x.name for x in self.inputs])
        return self._program

    def objective(self, target, loss="mse", **kwargs) -> Objective:
        """The objective fitting this model to data column ``target`` with a named loss."""
        from ..losses import MODEL_LOSSES as LOSSES
        if isinstance(target, str):
            target = sp.MatrixSymbol(target, *self.output.shape) \
                if isinstance(self.output, sp.MatrixExpr) else sp.Symbol(target, real=True)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {sorted(LOSSES)}")
        return Objective(LOSSES[loss](self.output, target, **kwargs), self.params,
                         list(self.inputs) + [target])

    def compile(self, dtype=np.float64, threads=None, cache=True):
        """A compiled predictor: ``predict(theta, data) -> per-sample outputs``.

        ``(n,)`` for a scalar output; for a matrix model, ``(n, k)`` for a ``(k, 1)``
        vector output and ``(n, r, c)`` otherwise; data as for the objective's kernel
        (keyed by the input symbols or their names)."""
        import codegen

        key = (np.dtype(dtype).str, threads)
        k = self._kernels.get(key)
        if k is None and self._array:
            k = array_objective.compile_model_kernel(self, dtype, threads, cache)
            self._kernels[key] = k
        if k is None:
            k = codegen.compile_model(self.program(), dtype=dtype, threads=threads, cache=cache)
            self._kernels[key] = k
        return k

    def __repr__(self):
        output = array_objective.readable_loss(self.output) if self._array else self.output
        return (f"Model({output}, params=[{', '.join(p.name for p in self.params)}], "
                f"inputs=[{', '.join(d.name for d in self.inputs)}])")
