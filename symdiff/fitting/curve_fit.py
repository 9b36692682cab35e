"""``sd.curve_fit``: a drop-in for ``scipy.optimize.curve_fit`` on compiled kernels.

Same signature, same return values (``popt, pcov``, or scipy's five-tuple with
``full_output``), same definition of ``pcov``. ``f`` is a NumPy-written Python function
``f(x, *params)`` — traced once into a formula by :mod:`symdiff.fitting.tracing` — or a formula
string or SymPy expression in ``x`` (1-D ``xdata``) or ``x0 .. x{k-1}`` ((k, n) ``xdata``).
A traced function is remembered (by the function, its code and the plain numbers it reads
from globals and closures), so fitting it again neither traces nor compiles.
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np
import sympy as sp

from ..errors import DataError, FormulaError, SymdiffError, SymdiffWarning, UnsupportedError
from ..lru import LRU
from .least_squares import WEIGHT, residuals_for, solve_least_squares
from .tracing import TraceError, function_name, trace

_TRACES = LRU(64)
_TARGET = sp.Symbol("_symdiff_y", real=True)
_OPTIONS = {"xtol", "ftol", "gtol", "max_nfev", "maxfev", "loss", "check_finite", "nan_policy", "jac"}


class OptimalParametersNotFound(SymdiffError, RuntimeError):
    """curve_fit did not converge (scipy raises RuntimeError in the same case)."""


def _input_symbols(k, avoid):
    if k is None:
        name = "x"
        while name in avoid:
            name = "_" + name
        return sp.Symbol(name, real=True)
    return [sp.Symbol(f"x{i}", real=True) for i in range(k)]


def _numbers_read_by(f):
    """The plain numbers ``f`` reads from its globals and closure (part of the trace key)."""
    code = getattr(f, "__code__", None)
    if code is None:
        return ()
    out = []
    g = getattr(f, "__globals__", {})
    for name in code.co_names:
        v = g.get(name)
        if isinstance(v, numbers.Number):
            out.append((name, v))
    for name, cell in zip(code.co_freevars, getattr(f, "__closure__", None) or ()):
        try:
            v = cell.cell_contents
        except ValueError:
            continue
        if isinstance(v, numbers.Number):
            out.append((name, v))
        elif isinstance(v, np.ndarray):
            out.append((name, v.tobytes(), v.shape))
    return tuple(out)


def _traced_model(f, k, n_params_hint):
    """``(expr, params, inputs, kernels)`` for a Python function, traced once and
    remembered; ``kernels`` ({weighted: compiled residual kernel}) is filled by the fits
    (looking the kernel up by the SymPy formula costs more than a small fit's solve)."""
    try:
        key = (f, getattr(f, "__code__", None), getattr(f, "__defaults__", None),
               _numbers_read_by(f), k, n_params_hint)
        hash(key)
    except TypeError:
        key = None
    if key is None:
        return _trace_model(f, k, n_params_hint)
    return _TRACES.get_or_make(key, lambda: _trace_model(f, k, n_params_hint))


def _trace_model(f, k, n_params_hint):
    name = function_name(f)
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        raise TraceError(f"cannot trace {name}: its signature is not inspectable; write the model "
                         "as a formula string instead") from None
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        if n_params_hint is None:
            raise ValueError(f"{name} takes *args: give p0 so the number of parameters is known")
        names = [f"p{i}" for i in range(n_params_hint)]
    else:
        if len(positional) < 2:
            raise ValueError(f"{name} must take the independent variable and at least one parameter")
        names = [p.name for p in positional[1:]]
    params = [sp.Symbol(nm, real=True) for nm in names]
    inputs = _input_symbols(k, set(names))
    expr = trace(f, inputs, params)
    inputs = [inputs] if isinstance(inputs, sp.Symbol) else inputs
    return expr, params, inputs, {}


def _formula_model(f, k):
    """``(expr, params, inputs)`` for a formula string or SymPy expression."""
    from ..models.objective import _as_expr, _free_symbols
    expr = _as_expr(f, "model")
    names = {s.name: s for s in _free_symbols(expr)}
    wanted = ["x"] if k is None else [f"x{i}" for i in range(k)]
    inputs = [names.get(w, sp.Symbol(w, real=True)) for w in wanted]
    if k is None and "x" not in names:
        raise FormulaError(f"the model {expr} does not use x, the independent variable")
    if isinstance(f, str):
        from ..models.parse import names_in_order
        order = [n for n in names_in_order(f) if n in names and n not in wanted]
    else:
        order = sorted(n for n in names if n not in wanted)
    if not order:
        raise FormulaError(f"the model {expr} has no parameters")
    return expr, [names[n] for n in order], inputs


def _feasible_start(lower, upper):
    """scipy's default p0: 1, or the middle of two finite bounds, or 1 inside one bound."""
    p0 = np.ones(lower.shape)
    both = np.isfinite(lower) & np.isfinite(upper)
    p0[both] = 0.5 * (lower[both] + upper[both])
    lo = np.isfinite(lower) & ~np.isfinite(upper)
    p0[lo] = lower[lo] + 1
    hi = ~np.isfinite(lower) & np.isfinite(upper)
    p0[hi] = upper[hi] - 1
    return p0


def curve_fit(f, xdata, ydata, p0=None, sigma=None, absolute_sigma=False, bounds=(-np.inf, np.inf),
              method=None, full_output=False, **kwargs):
    """Use non-linear least squares to fit a function ``f`` to data (scipy's contract).

    Returns ``popt, pcov`` (or ``popt, pcov, infodict, mesg, ier`` with ``full_output``,
    as scipy gives them: unbounded ``"lm"`` fits carry ``fvec``, ``nfev`` and MINPACK's
    ``fjac``, ``ipvt``, ``qtf`` with ``leastsq``'s ``ier``/``mesg``; bounded or
    ``"trf"``/``"dogbox"`` fits carry ``nfev`` and ``fvec`` with ``least_squares``'
    ``status``/``message``; see :mod:`symdiff.curve_fit_output`). ``f``: a Python
    function ``f(x, *params)`` written with NumPy (traced once), or a formula string /
    SymPy expression in ``x`` or ``x0 .. x{k-1}``, parameters in order of first
    appearance (strings) or by name (SymPy). ``method``: ``None``/``"lm"`` for symdiff's
    Levenberg–Marquardt (bounds by a change of variables), ``"trf"``/``"dogbox"`` for
    scipy's solvers on symdiff's kernels. ``sigma``: 1-D standard deviations (a 2-D
    covariance is not supported). Keywords: ``xtol``, ``ftol``, ``gtol``, ``max_nfev``
    (or ``maxfev``), ``loss``; ``jac`` is accepted and not needed (the Jacobian is derived
    exactly from ``f``); NaN in the data raise a DataError (scipy's
    ``check_finite``; ``nan_policy`` other than ``"raise"`` is refused). Raises :class:`OptimalParametersNotFound` (a
    ``RuntimeError``) when the fit does not converge, as scipy does.
    """
    unknown = set(kwargs) - _OPTIONS
    if unknown:
        raise TypeError(f"curve_fit got unexpected keyword argument(s) {sorted(unknown)}")
    if kwargs.get("nan_policy") not in (None, "raise"):
        raise UnsupportedError(f"nan_policy={kwargs['nan_policy']!r} is not supported: drop the NaN "
                               "rows before fitting (symdiff raises on NaN, as nan_policy='raise')")
    x = np.asarray(xdata, dtype=float)
    y = np.asarray(ydata, dtype=float).ravel()
    if x.ndim == 1:
        k = None
        if len(x) != len(y):
            raise DataError(f"xdata has {len(x)} samples but ydata has {len(y)}")
    elif x.ndim == 2:
        k = x.shape[0]
        if x.shape[1] != len(y):
            raise DataError(f"xdata of shape {x.shape} must be (k, n) with n = len(ydata) = {len(y)}")
    else:
        raise DataError(f"xdata must be 1-D or (k, n); got shape {x.shape}")
    if y.size == 0:
        raise DataError("ydata is empty")
    if p0 is not None:
        p0 = np.asarray(p0, dtype=float).ravel()
    n_hint = None if p0 is None else p0.size
    if isinstance(f, (str, sp.Expr)):
        expr, params, inputs = _formula_model(f, k)
        kernels = {}
    elif callable(f):
        expr, params, inputs, kernels = _traced_model(f, k, n_hint)
    else:
        raise TypeError(f"f must be a function, a formula string or a SymPy expression; got {type(f).__name__}")
    p = len(params)
    lower, upper = bounds
    # the default (-inf, inf) needs no arrays (their cost shows on fits of a few points)
    no_bounds = type(lower) is float and type(upper) is float and -lower == upper == np.inf
    if not no_bounds:
        lower, upper = (np.broadcast_to(np.asarray(b, dtype=float), (p,)) for b in bounds)
        no_bounds = bool(np.all(np.isneginf(lower)) and np.all(np.isposinf(upper)))
    if p0 is None:
        theta0 = _feasible_start(*(np.broadcast_to(np.asarray(b, dtype=float), (p,)) for b in bounds))
    else:
        theta0 = p0
    if theta0.size != p:
        raise ValueError(f"p0 has {theta0.size} values, but the model has {p} parameters "
                         f"({', '.join(s.name for s in params)})")
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=float)
        if sigma.ndim != 1:
            raise DataError("curve_fit takes sigma as one standard deviation per sample; a 2-D "
                            "covariance matrix is not supported")
    if method is None:
        method = "lm"
    data = {s.name: (x if k is None else x[i]) for i, s in enumerate(inputs)}
    data[_TARGET.name] = y
    if sigma is not None:
        if len(sigma) != len(y):
            raise DataError(f"sigma must be one standard deviation per sample ({len(y)}); got "
                            f"shape {sigma.shape}")
        if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
            raise DataError("sigma must be positive and finite")
        data[WEIGHT] = 1.0 / sigma
    tol = {t: kwargs.get(t, 1e-8) for t in ("xtol", "ftol", "gtol")}
    max_nfev = kwargs.get("max_nfev", kwargs.get("maxfev"))
    weighted = sigma is not None
    kernel = kernels.get(weighted)
    if kernel is None:
        kernel = kernels[weighted] = residuals_for(expr, _TARGET, params, inputs, weighted).compile()
    res = solve_least_squares(expr, _TARGET, params, inputs, data, theta0, kernel=kernel,
                              weighted=weighted, absolute_sigma=absolute_sigma,
                              bounds=None if no_bounds else (lower, upper),
                              loss=kwargs.get("loss", "linear"), method=method,
                              max_nfev=max_nfev, report=False, **tol)
    if not res.success:
        raise OptimalParametersNotFound(f"Optimal parameters not found: {res.message}")
    pcov = res.covariance(absolute_sigma)
    # a finite diagonal bounds a covariance's every entry (|c_jk|² <= c_jj·c_kk)
    if not all(map(math.isfinite, pcov.diagonal().tolist())):
        import warnings
        warnings.warn("Covariance of the parameters could not be estimated", SymdiffWarning,
                      stacklevel=2)
    if full_output:
        from .curve_fit_output import full_output as scipy_full_output
        robust = kwargs.get("loss", "linear") != "linear"
        method_run = "trf" if method == "lm" and robust else method   # as least_squares ran it
        infodict, mesg, ier = scipy_full_output(res, bounded=not no_bounds, method=method_run,
                                                max_nfev=max_nfev, **tol)
        return res.x, pcov, infodict, mesg, ier
    return res.x, pcov
