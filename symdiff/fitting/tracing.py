"""Trace a NumPy-written Python function into a SymPy expression.

``trace(f, inputs, params)`` calls ``f`` once with :class:`Traced` stand-ins: objects that
hold a SymPy expression for one sample and implement NumPy's ufunc protocol
(``__array_ufunc__``) through one table (:data:`UFUNCS`) plus Python's arithmetic dunders.
Anything a per-sample formula cannot express fails loudly with :class:`TraceError`
naming the function and the reason: a Python ``if``/``while``/``bool()`` on a traced value
(control flow depending on a parameter's value), ``float()``/``int()``, indexing,
iteration, NumPy calls outside the table, reductions (``np.sum``), NumPy array constants.
Tracing never guesses, so it never returns a wrong formula.
"""

from __future__ import annotations

import numbers

import numpy as np
import sympy as sp

from ..errors import UnsupportedError


class TraceError(UnsupportedError):
    """A Python function could not be traced into a formula."""


def _max(a, b):
    return sp.Max(a, b)


def _min(a, b):
    return sp.Min(a, b)


#: NumPy ufunc -> SymPy builder, for every ufunc a traced function may call
UFUNCS = {
    np.add: lambda a, b: a + b,
    np.subtract: lambda a, b: a - b,
    np.multiply: lambda a, b: a * b,
    np.divide: lambda a, b: a / b,
    np.true_divide: lambda a, b: a / b,
    np.power: lambda a, b: a ** b,
    np.float_power: lambda a, b: a ** b,
    np.negative: lambda a: -a,
    np.positive: lambda a: a,
    np.exp: sp.exp,
    np.exp2: lambda a: 2 ** a,
    np.expm1: lambda a: sp.exp(a) - 1,
    np.log: sp.log,
    np.log2: lambda a: sp.log(a) / sp.log(2),
    np.log10: lambda a: sp.log(a) / sp.log(10),
    np.log1p: lambda a: sp.log(1 + a),
    np.sqrt: sp.sqrt,
    np.cbrt: sp.cbrt,
    np.square: lambda a: a ** 2,
    np.reciprocal: lambda a: 1 / a,
    np.sin: sp.sin,
    np.cos: sp.cos,
    np.tan: sp.tan,
    np.arcsin: sp.asin,
    np.arccos: sp.acos,
    np.arctan: sp.atan,
    np.arctan2: sp.atan2,
    np.sinh: sp.sinh,
    np.cosh: sp.cosh,
    np.tanh: sp.tanh,
    np.arcsinh: sp.asinh,
    np.arccosh: sp.acosh,
    np.arctanh: sp.atanh,
    np.absolute: sp.Abs,
    np.fabs: sp.Abs,
    np.sign: sp.sign,
    np.maximum: _max,
    np.minimum: _min,
    np.fmax: _max,
    np.fmin: _min,
    np.hypot: lambda a, b: sp.sqrt(a ** 2 + b ** 2),
    np.heaviside: lambda a, b: sp.Heaviside(a, b),
}


def _constant(value, where):
    if isinstance(value, Traced):
        return value.expr
    if isinstance(value, (bool, np.bool_)):
        raise TraceError(f"{where}: a boolean cannot enter a formula")
    if isinstance(value, numbers.Integral):
        return sp.Integer(int(value))
    if isinstance(value, numbers.Real):
        return sp.Float(float(value))
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _constant(value.item(), where)
    if isinstance(value, np.ndarray):
        raise TraceError(f"{where}: a NumPy array constant of shape {value.shape} enters the "
                         "formula; per-sample values must come in through xdata")
    raise TraceError(f"{where}: cannot use a {type(value).__name__} in a formula")


class Traced:
    """One sample's value as a SymPy expression, standing in for an array while tracing."""

    __array_priority__ = 1000

    def __init__(self, expr, function):
        self.expr = expr
        self._function = function

    def _fail(self, reason):
        raise TraceError(f"cannot trace {self._function}: {reason}. Write the model as a "
                         "formula string or SymPy expression instead (e.g. "
                         "curve_fit('a*exp(-b*x) + c', xdata, ydata))")

    def _wrap(self, expr):
        return Traced(expr, self._function)

    def _binary(self, other, op, reverse=False):
        try:
            o = _constant(other, f"cannot trace {self._function}")
        except TraceError as e:
            self._fail(str(e).split(": ", 1)[1])
        a, b = (o, self.expr) if reverse else (self.expr, o)
        return self._wrap(op(a, b))

    def __add__(self, o): return self._binary(o, lambda a, b: a + b)
    def __radd__(self, o): return self._binary(o, lambda a, b: a + b, True)
    def __sub__(self, o): return self._binary(o, lambda a, b: a - b)
    def __rsub__(self, o): return self._binary(o, lambda a, b: a - b, True)
    def __mul__(self, o): return self._binary(o, lambda a, b: a * b)
    def __rmul__(self, o): return self._binary(o, lambda a, b: a * b, True)
    def __truediv__(self, o): return self._binary(o, lambda a, b: a / b)
    def __rtruediv__(self, o): return self._binary(o, lambda a, b: a / b, True)
    def __pow__(self, o): return self._binary(o, lambda a, b: a ** b)
    def __rpow__(self, o): return self._binary(o, lambda a, b: a ** b, True)
    def __neg__(self): return self._wrap(-self.expr)
    def __pos__(self): return self
    def __abs__(self): return self._wrap(sp.Abs(self.expr))

    def __bool__(self):
        self._fail("its result depends on a Python `if`, `while`, `and`/`or` or comparison of "
                   "a traced value (a parameter or x), which a formula cannot express")

    def __lt__(self, o): self._fail("it compares a traced value (use np.maximum/np.minimum or np.heaviside)")
    __le__ = __gt__ = __ge__ = __lt__

    def __float__(self):
        self._fail("it converts a traced value to a Python number (float())")

    def __int__(self):
        self._fail("it converts a traced value to a Python integer")

    __index__ = __int__

    def __len__(self):
        self._fail("it takes len() of x; a traced model sees one sample at a time")

    def __iter__(self):
        self._fail("it iterates over x; a traced model sees one sample at a time")

    def __getitem__(self, key):
        self._fail("it indexes x (x[i]); a traced model sees one sample at a time")

    def __floordiv__(self, o): self._fail("it uses floor division //, which has no derivative")
    __rfloordiv__ = __mod__ = __rmod__ = __floordiv__

    def __array__(self, dtype=None, copy=None):
        self._fail("it converts a traced value to a NumPy array (np.asarray, np.array, ...)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            self._fail(f"it calls np.{ufunc.__name__}.{method}, a reduction over samples")
        if kwargs.get("out") is not None:
            self._fail(f"it calls np.{ufunc.__name__} with out=")
        build = UFUNCS.get(ufunc)
        if build is None:
            self._fail(f"np.{ufunc.__name__} is not in symdiff's table of traceable NumPy functions")
        try:
            args = [_constant(v, "") for v in inputs]
        except TraceError as e:
            self._fail(f"np.{ufunc.__name__} gets {str(e).split(': ', 1)[1]}")
        return self._wrap(build(*args))

    def __array_function__(self, func, types, args, kwargs):
        self._fail(f"np.{func.__name__} is not a traceable elementwise NumPy function")

    def __repr__(self):
        return f"Traced({self.expr})"


def function_name(f) -> str:
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def trace(f, inputs, params):
    """``f(x, *params)`` traced to a SymPy expression; ``inputs`` one symbol (1-D xdata) or a
    list of symbols (one per row of (k, n) xdata, passed to ``f`` as a sequence)."""
    name = function_name(f)
    if isinstance(inputs, sp.Symbol):
        x = Traced(inputs, name)
    else:
        x = _Rows([Traced(s, name) for s in inputs], name)
    args = [Traced(p, name) for p in params]
    try:
        with np.errstate(all="ignore"):
            out = f(x, *args)
    except TraceError:
        raise
    except Exception as e:  # numpy/python refusing a stand-in: not a formula
        raise TraceError(f"cannot trace {name}: calling it with symbolic arguments raised "
                         f"{type(e).__name__}: {e}. Write the model as a formula string or SymPy "
                         "expression instead") from e
    if isinstance(out, Traced):
        return out.expr
    try:
        return _constant(out, "")
    except TraceError as e:
        raise TraceError(f"cannot trace {name}: it returns {str(e).split(': ', 1)[1]}") from None


class _Rows:
    """(k, n) xdata while tracing: ``x[i]`` is row i's symbol; nothing else is allowed."""

    def __init__(self, rows, name):
        self._rows, self._name = rows, name

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)) and -len(self._rows) <= i < len(self._rows):
            return self._rows[i]
        raise TraceError(f"cannot trace {self._name}: xdata has {len(self._rows)} rows and the "
                         f"function indexes it with {i!r}; use x[0] .. x[{len(self._rows) - 1}]")

    def __len__(self):
        return len(self._rows)

    def __iter__(self):
        return iter(self._rows)

    @property
    def shape(self):
        raise TraceError(f"cannot trace {self._name}: it reads xdata.shape")
