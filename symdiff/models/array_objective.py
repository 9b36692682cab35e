"""What an :class:`~symdiff.Objective` with matrix parameters or data adds.

The formula goes through the one pipeline (SymPy -> DAG with shaped nodes ->
reverse mode -> IR with ``shapes``); this module holds what is particular to
matrices: the flat parameter vector (``pack``/``unpack``: params in order, each
raveled C-order, as kernels take theta), the gradient in matrix notation with the
forward layers named (``h1 = tanh.(W1*x + b1)``), its LaTeX, and the default
initialization (Glorot for weights, He when the network uses ReLU, zeros for biases).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import DataError, FormulaError, UnsupportedError

#: above this many operations a displayed formula is replaced by its layer names
DISPLAY_MAX_OPS = 400


def is_array(objective) -> bool:
    data = getattr(objective, "data", None) or getattr(objective, "inputs", ())
    return any(isinstance(s, sp.MatrixSymbol) for s in tuple(objective.params) + tuple(data))


def shape_of(symbol) -> tuple:
    return tuple(int(d) for d in symbol.shape) if isinstance(symbol, sp.MatrixSymbol) else ()


def param_shapes(objective) -> dict:
    """{param: per-sample shape}, ``()`` for a scalar, in params order."""
    return {p: shape_of(p) for p in objective.params}


def _size(shape):
    return int(np.prod(shape)) if shape else 1


def pack(objective, values) -> np.ndarray:
    """The flat theta (float64) of ``values``: {param or name: array of its shape (a vector
    ``(r, 1)`` may be given as ``(r,)``) or float}; every parameter must be given."""
    by_name = {getattr(k, "name", k): v for k, v in dict(values).items()}
    names = [p.name for p in objective.params]
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise FormulaError(f"pack: {unknown} are not parameters (parameters: {', '.join(names)})")
    parts = []
    for p in objective.params:
        if p.name not in by_name:
            raise DataError(f"pack: no value for parameter {p.name!r}")
        v = np.asarray(by_name[p.name])
        if v.dtype.kind not in "biuf":
            raise DataError(f"pack: {p.name!r} must be real numbers, got dtype {v.dtype}")
        shape = shape_of(p)
        ok = v.shape == shape or (not shape and v.size == 1) or \
            (shape and shape[1] == 1 and v.shape == (shape[0],))
        if not ok:
            raise DataError(f"pack: parameter {p.name!r} has shape {shape or '() (a scalar)'}, "
                            f"got an array of shape {v.shape}")
        parts.append(v.astype(np.float64).ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def unpack(objective, flat) -> dict:
    """{param: array of its shape (a float for a scalar)} from a flat theta or gradient."""
    flat = np.asarray(flat, dtype=np.float64).ravel()
    shapes = param_shapes(objective)
    total = sum(_size(s) for s in shapes.values())
    if flat.size != total:
        raise DataError(f"unpack: expected {total} values for "
                        f"{', '.join(f'{p.name} {s}' for p, s in shapes.items())}, got {flat.size}")
    out, at = {}, 0
    for p, s in shapes.items():
        k = _size(s)
        out[p] = flat[at:at + k].reshape(s).copy() if s else float(flat[at])
        at += k
    return out


def initial_values(objective, seed=0) -> np.ndarray:
    """A flat theta: Glorot-uniform weights (He-normal when the formula uses ReLU), zero
    biases (parameters never multiplied by a matrix), small normal scalars; seeded."""
    rng = np.random.default_rng(seed)
    d = objective._derive()
    g = d.graph
    fan = {}
    for i, op in enumerate(g.ops):
        if op == "dot":
            a, b, ta, tb = g.args[i]
            for node, t, left in ((a, ta, True), (b, tb, False)):
                if g.ops[node] == "sym":
                    rows, cols = g.shape(node)[::-1] if t else g.shape(node)
                    fan[g.args[node][0]] = (cols, rows) if left else (rows, cols)
    relu = any(op == "max" for op in g.ops) or any(op == "heaviside" for op in g.ops)
    parts = []
    for p in objective.params:
        s = shape_of(p)
        if p.name in fan:
            fan_in, fan_out = fan[p.name]
            if relu:
                parts.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=s).ravel())
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                parts.append(rng.uniform(-limit, limit, size=s).ravel())
        elif s:
            parts.append(np.zeros(_size(s)))
        else:
            parts.append(0.01 * rng.standard_normal(1))
    return np.concatenate(parts)


def init_from(objective, init, rng) -> np.ndarray:
    """sd.fit's ``init`` for an array objective: None (the default above, seeded from
    ``rng``), "zeros", a flat array, or {param or name: array} (others keep the default)."""
    default = initial_values(objective, seed=int(rng.integers(2 ** 31)))
    if init is None:
        return default
    if isinstance(init, str):
        if init != "zeros":
            raise ValueError(f"init must be None, 'zeros', an array or a mapping, not {init!r}")
        return np.zeros_like(default)
    if hasattr(init, "items"):
        values = unpack(objective, default)
        by_name = {p.name: p for p in objective.params}
        for key, v in init.items():
            name = getattr(key, "name", key)
            if name not in by_name:
                raise FormulaError(f"init names {name!r}, which is not a parameter "
                                   f"(parameters: {', '.join(by_name)})")
            values[by_name[name]] = v
        return pack(objective, values)
    theta = np.array(init, dtype=np.float64).reshape(-1)
    if theta.shape != default.shape:
        raise DataError(f"init has {theta.size} values but the parameters "
                        f"{', '.join(f'{p.name} {shape_of(p)}' for p in objective.params)} "
                        f"need {default.size}")
    return theta


# -- reading ------------------------------------------------------------------------

class Display:
    """The gradient of an array objective in matrix notation, with named layers."""

    def __init__(self, objective):
        from ..core.to_matrix import MatrixPrinter, layer_names
        d = objective._derive()
        g = d.graph
        taken = {s.name for s in objective.params + objective.data}
        names = layer_names(g, d.nodes[0], taken)
        symbols = {s.name: s for s in objective.params + objective.data}
        printer = MatrixPrinter(g, symbols, names)
        #: {h1: tanh.(W1*x + b1), z: W2*h1 + b2, ...}: each layer in terms of the earlier ones
        self.layers = {sym: printer(i, expand_self=True) for i, sym in sorted(names.items())}
        self.gradient = [printer(i) for i in d.grad_nodes]

    def expand(self, e):
        """``e`` with every layer name replaced by its definition (self-contained)."""
        for sym, value in reversed(list(self.layers.items())):
            e = e.xreplace({sym: value})
        return e


def display(objective) -> Display:
    if getattr(objective, "_display", None) is None:
        objective._display = Display(objective)
    return objective._display


def gradient(objective, expand=False) -> list:
    shown = display(objective)
    return [shown.expand(e) if expand else e for e in shown.gradient]


def _bounded(text, e):
    return text if sp.count_ops(e) <= DISPLAY_MAX_OPS else None


def latex(objective) -> str:
    """Layers, loss and gradient as a LaTeX ``aligned`` block, one line each."""
    shown = display(objective)
    lines = []
    for sym, value in shown.layers.items():
        lines.append(r"%s &= %s" % (sp.latex(sym), _latex_or_summary(value)))
    lines.append(r"L &= " + _latex_or_summary(objective.loss, shown))
    for p, g in zip(objective.params, shown.gradient):
        lines.append(r"\frac{\partial L}{\partial %s} &= %s" % (sp.latex(p), _latex_or_summary(g)))
    return r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"


def _latex_or_summary(e, shown=None):
    if shown is not None:
        e = _fold_layers(e, shown)
    if sp.count_ops(e) > DISPLAY_MAX_OPS:
        return r"\text{(%d operations; see program())}" % sp.count_ops(e)
    return sp.latex(e)


def _fold_layers(e, shown):
    """The user's loss with the named layers' definitions replaced by their names."""
    e = readable_loss(e)
    for sym, value in reversed(list(shown.layers.items())):    # outermost layer first
        e = e.xreplace({readable_loss(shown.expand(value)): sym})
    return e


_ELEMENT = sp.Dummy("d", real=True)


def readable_loss(e):
    """``e`` with every ``A.applyfunc(f)`` as :class:`Elementwise` (printed ``tanh.(A)``)
    over one shared dummy, so equal layers written twice compare equal."""
    from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
    from .matrix_functions import Elementwise

    def canonical(t):
        f = t.function
        if not isinstance(f, sp.Lambda):
            f = sp.Lambda(_ELEMENT, f(_ELEMENT))
        elif f.variables != (_ELEMENT,):
            f = sp.Lambda(_ELEMENT, f.expr.xreplace({f.variables[0]: _ELEMENT}))
        return Elementwise(f, t.expr)
    return e.replace(lambda t: isinstance(t, ElementwiseApplyFunction), canonical)


def pretty(objective) -> str:
    shown = display(objective)
    parts = []
    for sym, value in shown.layers.items():
        parts += [f"{sym.name} =", sp.pretty(value)]
    parts += ["loss =", sp.pretty(_fold_layers(objective.loss, shown))]
    for p, g in zip(objective.params, shown.gradient):
        parts += [f"dloss/d{p.name} =", sp.pretty(g)]
    return "\n".join(parts)


def compile_kernel(objective, program, dtype, threads, cache):
    """The native kernel of an array program (GEMMs and fused loops, ``codegen``)."""
    import codegen
    try:
        return codegen.compile_objective(program, dtype=dtype, threads=threads, cache=cache,
                                         keys=objective.data)
    except codegen.LoweringError as exc:
        raise UnsupportedError(f"this matrix formula cannot be compiled yet: {exc}; "
                               f"symdiff.evaluate(obj.program(), theta, data) computes it in NumPy") from exc


def compile_model_kernel(model, dtype, threads, cache):
    """The native predictor of a matrix model: its output per sample, ``(n, k)`` for a
    ``(k, 1)`` vector (GEMMs over batch tiles, ``codegen``)."""
    import codegen
    try:
        return codegen.compile_array_model(model.program(), dtype=dtype, threads=threads,
                                           cache=cache, keys=model.inputs)
    except codegen.LoweringError as exc:
        raise UnsupportedError(f"this matrix model cannot be compiled yet: {exc}; "
                               f"symdiff.evaluate(model.program(), theta, data)[0] computes it "
                               f"in NumPy") from exc
