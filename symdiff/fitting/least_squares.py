"""``sd.least_squares``: fit a formula to data by Levenberg–Marquardt, with uncertainties.

The residual ``(model − target)/σ`` becomes a :class:`~symdiff.models.residuals.Residuals`
whose compiled kernel returns ``Σr²``, ``Jᵀr`` and ``JᵀJ`` in one pass over the data;
:func:`~symdiff.fitting.levenberg_marquardt.levenberg_marquardt` drives it, falling back to the
kernel's streaming QR of the Jacobian (TSQR; memory O(p²)) at iterates where the normal
equations are ill-conditioned.
Weights enter as a data column ``1/σ``, so one kernel serves every ``sigma``.

Covariance is ``(JᵀJ)⁻¹·s²`` with ``s² = χ²/dof`` (or without ``s²`` when
``absolute_sigma``), as ``scipy.optimize.curve_fit`` and lmfit define it; singular
directions are dropped as in curve_fit's pseudo-inverse.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import numpy as np
import sympy as sp

from ..errors import DataError, FormulaError, SymdiffWarning
from ..lru import LRU
from .fit_result import LeastSquaresResult
from .levenberg_marquardt import _EPS, ILL_CONDITIONED, _eigh, levenberg_marquardt

#: the data column holding 1/σ in weighted residuals
WEIGHT = "_symdiff_weight"
ROBUST_LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
METHODS = ("lm", "trf", "dogbox")
_RESIDUALS = LRU(64)


def residuals_for(model, target, params, inputs, weighted):
    """The (cached) :class:`Residuals` of ``(model − target)·w``; at most 64 are kept."""
    from ..models.residuals import Residuals

    def make():
        expr = model - target
        data = list(inputs) + [target]
        if weighted:
            w = sp.Symbol(WEIGHT, real=True)
            expr, data = expr * w, data + [w]
        return Residuals(expr, list(params), data)
    return _RESIDUALS.get_or_make((model, target, tuple(params), tuple(inputs), weighted), make)


def _model_expr(model, target):
    from ..models.objective import _as_expr
    if isinstance(model, str):
        rhs, lhs = _parsed_model(model)
        if lhs is None:
            return rhs, target
        if target is not None and str(lhs) != str(target):
            raise FormulaError(f"the formula's response is {lhs}, but target is {target}")
        return rhs, lhs
    return _as_expr(model, "model"), target


@functools.lru_cache(maxsize=256)
def _parsed_model(model: str):
    """``(rhs, lhs)`` of a formula string (``lhs`` None without ``~``), parsed once: parsing
    costs more than a small fit (SymPy expressions are immutable, so sharing is safe)."""
    from ..models.objective import _as_expr
    if "~" in model:
        from ..models.parse import parse_model
        lhs, rhs = parse_model(model)
        return rhs, lhs
    return _as_expr(model, "model"), None


@functools.lru_cache(maxsize=256)
def _names_in(expr):
    """``{name: symbol}`` of ``expr``'s free symbols (cached: fits are called in loops)."""
    from ..models.objective import _free_symbols
    return {s.name: s for s in _free_symbols(expr)}


def _columns(data, names):
    """``{name: 1-D float64 array}`` for ``names`` from a mapping or an (n, k) array."""
    if hasattr(data, "keys"):
        given = {getattr(k, "name", k): k for k in data.keys()}
        missing = [n for n in names if n not in given]
        if missing:
            raise DataError(f"missing data column(s) {missing}; got {sorted(map(str, given))}")
        cols = {n: np.asarray(data[given[n]], dtype=float).ravel() for n in names}
    else:
        arr = np.asarray(data, dtype=float)
        if arr.ndim == 1 and len(names) == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise DataError(f"a data array must have shape (n, {len(names)}) with columns "
                            f"{', '.join(names)}; got shape {arr.shape}")
        cols = {n: np.ascontiguousarray(arr[:, j]) for j, n in enumerate(names)}
    lengths = {len(c) for c in cols.values()}
    if len(lengths) > 1:
        raise DataError(f"data columns have different lengths {sorted(lengths)}")
    return cols


def covariance_from(jtj, rss, dof, absolute_sigma, jacobian=None):
    """``pinv(JᵀJ)·s²`` computed on the column-scaled matrix (SVD of ``J``, or of its QR
    factor ``R``, when ``jacobian()`` gives one and ``JᵀJ`` is ill-conditioned); ``inf``
    everywhere when ``dof <= 0`` and not absolute."""
    p = jtj.shape[0]
    # the p-vector work in Python floats: NumPy's per-call cost dominates a small fit's covariance
    d = np.array([math.sqrt(v) if v > 0.0 else 1.0 for v in jtj.diagonal().tolist()])
    dd = np.multiply.outer(d, d)
    s2, V = _eigh(jtj / dd)     # reads the lower triangle: JᵀJ's are symmetric by construction
    smin, smax = s2.item(0), s2.item(-1)
    if jacobian is not None and smin < ILL_CONDITIONED * smax:
        J = jacobian() / d
        _, s, Vt = np.linalg.svd(J, full_matrices=False)
        V, s2 = Vt.T, s * s
        floor = _EPS * max(J.shape) * s.max()
        full_rank, kept = s.min() > floor, s
    else:
        floor = _EPS * p * smax
        full_rank, kept = smin > floor, s2
    if full_rank:  # the common case, without the masked copies
        cov = (V / s2) @ V.T
        cov /= dd
    else:
        keep = kept > floor
        inv = (V[:, keep] / s2[keep]) @ V[:, keep].T
        cov = inv / dd
        # a direction the data do not constrain (rank(J) < p) leaves every parameter it moves
        # undetermined: infinite variance, not the pseudo-inverse's finite (and meaningless) one
        moved = np.linalg.norm(V[:, ~keep], axis=1) > 1e-6
        cov[moved, :] = np.inf
        cov[:, moved] = np.inf
    if not absolute_sigma:
        if dof > 0:
            cov *= rss / dof
        else:
            cov = np.full((p, p), np.inf)
    return cov


def least_squares(model, data, target, p0, *, params=None, sigma=None, absolute_sigma=False,
                  bounds=None, loss="linear", method="lm", xtol=1e-8, ftol=1e-8, gtol=1e-8,
                  max_nfev=None) -> LeastSquaresResult:
    """Fit ``model`` to the data column ``target`` by (weighted) least squares.

    ``model``: a SymPy expression or a formula string (``"b1*(1-exp(-b2*x))"``, or
    ``"y ~ ..."`` naming the target); ``target``: the response symbol or name.
    ``data``: a mapping of columns, or an (n, k) array whose columns are the model's
    inputs in name order, then the target. ``p0``: a mapping ``{param: start}`` (which
    also names the parameters) or an array in ``params`` order; ``params`` defaults to
    the mapping's keys, else to the model's symbols that are not data, in name order.
    ``sigma``: per-sample standard deviations (array or column name); ``absolute_sigma``
    as in scipy. ``bounds``: ``(lower, upper)`` scalars or per-parameter sequences.
    ``loss``: ``"linear"`` (Levenberg–Marquardt) or one of scipy's robust losses
    (``soft_l1``, ``huber``, ``cauchy``, ``arctan``), solved by
    ``scipy.optimize.least_squares(method="trf")`` on our compiled residuals and Jacobian;
    ``method``: ``"lm"`` (ours) or scipy's ``"trf"``/``"dogbox"`` likewise.
    ``xtol``, ``ftol``, ``gtol``, ``max_nfev``: MINPACK's stopping rules.
    A fit that does not converge returns ``success=False`` and warns (SymdiffWarning).
    """
    result = fit_least_squares(model, data, target, p0, params=params, sigma=sigma,
                               absolute_sigma=absolute_sigma, bounds=bounds, loss=loss,
                               method=method, xtol=xtol, ftol=ftol, gtol=gtol, max_nfev=max_nfev)
    if not result.success:
        warnings.warn(f"least_squares did not converge: {result.message}", SymdiffWarning,
                      stacklevel=2)
    return result


def fit_least_squares(model, data, target, p0, *, params=None, sigma=None, absolute_sigma=False,
                      bounds=None, loss="linear", method="lm", xtol=1e-8, ftol=1e-8, gtol=1e-8,
                      max_nfev=None, report=True):
    """:func:`least_squares` without the non-convergence warning (callers decide).

    ``report=False`` skips the :class:`LeastSquaresResult` and returns a :class:`RawFit`
    (what ``curve_fit`` needs, at less cost per call)."""
    expr, target = _model_expr(model, target)
    if target is None:
        raise FormulaError("least_squares needs the target (response) column")
    target = target if isinstance(target, sp.Symbol) else sp.Symbol(str(target), real=True)
    symbols = _names_in(expr)
    if params is None:
        if hasattr(p0, "keys"):
            params = [getattr(k, "name", k) for k in p0.keys()]
        elif hasattr(data, "keys"):
            columns = {getattr(k, "name", k) for k in data.keys()}
            params = sorted(n for n in symbols if n not in columns and n != target.name)
        else:
            raise FormulaError("with array data and array p0, give params= (their order)")
    params = [p if isinstance(p, sp.Symbol) else symbols[str(p)] if str(p) in symbols
              else sp.Symbol(str(p), real=True) for p in params]
    pnames = [p.name for p in params]
    inputs = sorted((s for n, s in symbols.items() if n not in pnames and n != target.name),
                    key=lambda s: s.name)
    if target.name in pnames:
        raise FormulaError(f"{target.name} cannot be both the target and a parameter")
    theta0 = _start(p0, pnames)
    from ..distributed import is_dask
    if is_dask(data):  # Gauss-Newton sums computed where the partitions are
        from .distributed_lsq import least_squares_on_dask
        return least_squares_on_dask(expr, target, params, inputs, data, theta0, sigma=sigma,
                                     absolute_sigma=absolute_sigma, bounds=bounds, loss=loss,
                                     method=method, xtol=xtol, ftol=ftol, gtol=gtol,
                                     max_nfev=max_nfev)

    cols = _columns(data, [s.name for s in inputs] + [target.name])
    n = len(cols[target.name])
    if sigma is not None:
        sig = (np.asarray(data[sigma], float).ravel() if isinstance(sigma, str)
                            else np.asarray(sigma, float))
        if sig.ndim != 1 or len(sig) != n:
            raise DataError(f"sigma must be one standard deviation per sample ({n}); got shape {sig.shape}")
        if not np.all(np.isfinite(sig)) or np.any(sig <= 0):
            raise DataError("sigma must be positive and finite")
        cols[WEIGHT] = 1.0 / sig
    return solve_least_squares(expr, target, params, inputs, cols, theta0,
                               weighted=sigma is not None, absolute_sigma=absolute_sigma,
                               bounds=bounds, loss=loss, method=method, xtol=xtol, ftol=ftol,
                               gtol=gtol, max_nfev=max_nfev, report=report)


def solve_least_squares(expr, target, params, inputs, cols, theta0, *, weighted, absolute_sigma,
                        bounds, loss, method, xtol, ftol, gtol, max_nfev, report, kernel=None):
    """The solve behind :func:`fit_least_squares`, for callers that already hold the model's
    ``expr``, ``target``, ``params`` and ``inputs`` (symbols) and the data as
    ``{name: 1-D float64 array}`` (with the ``WEIGHT`` column ``1/σ`` when ``weighted``):
    ``curve_fit`` calls it directly, skipping the parsing that costs more than a small fit.
    ``kernel``: the compiled residual kernel of exactly this problem, if the caller keeps it
    (else looked up by :func:`residuals_for`)."""
    if loss not in ROBUST_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose from {list(ROBUST_LOSSES)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    if loss != "linear" and method == "lm":
        method = "trf"

    if kernel is None:
        kernel = residuals_for(expr, target, params, inputs, weighted).compile()
    bound = kernel.bind(cols)

    if method == "lm":
        out = levenberg_marquardt(bound, theta0, qr=bound.qr, bounds=bounds, xtol=xtol, ftol=ftol,
                                  gtol=gtol, max_nfev=max_nfev)
        x, nfev, success, message, status = out.x, out.nfev, out.success, out.message, out.status
        sums = (out.rss, out.jtr, out.jtj)
    else:
        from scipy.optimize import least_squares as scipy_least_squares
        kw = {} if max_nfev is None else {"max_nfev": max_nfev}
        lower, upper = (-np.inf, np.inf) if bounds is None else bounds
        with np.errstate(all="ignore"):
            sol = scipy_least_squares(bound.residuals, theta0, jac=bound.jacobian, bounds=(lower, upper),
                                      method=method, loss=loss, xtol=xtol, ftol=ftol, gtol=gtol, **kw)
        x, nfev, success, message, status = sol.x, sol.nfev, bool(sol.success), sol.message, sol.status
        sums = None
    if not report:
        return RawFit(x, sums if sums is not None else bound(x), nfev, success, str(message),
                      int(status), bound, len(params))
    return _result(expr, target, params, inputs, bound, cols, x, nfev, success, message, status,
                   absolute_sigma, method, loss, weighted, sums)


class RawFit(NamedTuple):
    """A solved fit without its report: estimates, ``(χ², Jᵀr, JᵀJ)`` there, the solver's
    verdict and the bound kernel."""

    x: np.ndarray
    sums: tuple
    nfev: int
    success: bool
    message: str
    status: int
    bound: object
    n_params: int

    def covariance(self, absolute_sigma):
        chisqr, _, jtj = self.sums
        return covariance_from(jtj, chisqr, self.bound.n - self.n_params, absolute_sigma,
                               jacobian=lambda: self.bound.qr(self.x)[1])


def _start(p0, pnames):
    if hasattr(p0, "keys"):
        given = {getattr(k, "name", k): v for k, v in p0.items()}
        missing = [n for n in pnames if n not in given]
        if missing:
            raise FormulaError(f"p0 gives no start for {missing}")
        theta = np.array([given[n] for n in pnames], dtype=float)
    else:
        theta = np.array(p0, dtype=float).ravel()
        if theta.size != len(pnames):
            raise ValueError(f"p0 has {theta.size} values for {len(pnames)} parameters {pnames}")
    if not np.isfinite(theta).all():
        raise ValueError("p0 must be finite")
    return theta


def _result(expr, target, params, inputs, bound, cols, x, nfev, success, message, status,
            absolute_sigma, method, loss, weighted, sums=None):
    n, p = bound.n, len(params)
    chisqr, _, jtj = sums if sums is not None else bound(x)
    y = cols[target.name]
    w = cols.get(WEIGHT)
    if weighted:
        r = bound.residuals(x)
        unweighted = r / w
        rss = float(unweighted @ unweighted)
    else:
        rss = float(chisqr)
    cov = covariance_from(jtj, chisqr, n - p, absolute_sigma, jacobian=lambda: bound.qr(x)[1])

    def total_sum_of_squares():
        if weighted:
            ww = w * w
            ybar = float(ww @ y) / float(ww.sum())
            return float(ww @ (y - ybar) ** 2)
        centred = y - y.mean()
        return float(centred @ centred)
    result = LeastSquaresResult.of_fit(
        params=params, x=x, covariance=cov, chisqr=chisqr, rss=rss, ndata=n,
        model=expr, target=target, inputs=tuple(inputs), total_sum_of_squares=total_sum_of_squares,
        nfev=int(nfev), success=bool(success), message=str(message), status=int(status),
        method=method, loss=loss, weighted=weighted, absolute_sigma=absolute_sigma)
    result._residuals = lambda: bound.residuals(x)
    return result
