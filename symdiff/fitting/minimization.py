"""``sd.minimize``: full-batch minimization of an objective with its compiled derivatives.

scipy.optimize does the optimizing wherever it has the method (L-BFGS-B, BFGS, CG,
trust-exact, trust-krylov, Newton-CG); symdiff supplies what it is best at: the mean
loss and gradient in one native pass, the exact Hessian in one more, and Hessian-vector
products that never form the Hessian. ``"newton"`` is written here, because scipy has no
plain Newton with a line search: a Cholesky-solved Newton step, shifted towards gradient
descent while the Hessian is not positive definite, with Armijo backtracking.

scipy is imported when this runs, never by ``import symdiff``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import FormulaError, SymdiffWarning

#: method -> (scipy's name or None for our own, which derivative it uses beyond the gradient)
METHODS = {"lbfgs": ("L-BFGS-B", None), "bfgs": ("BFGS", None), "cg": ("CG", None),
           "newton": (None, "hess"), "trust-exact": ("trust-exact", "hess"),
           "trust-krylov": ("trust-krylov", "hessp"), "newton-cg": ("Newton-CG", "hessp")}

#: default tolerances when ``tol`` is None, on the gradient of the *mean* loss: tighter than
#: scipy's where the method stays reliable (scipy's L-BFGS-B stops at a relative decrease of
#: 2e-9, often several digits short of the optimum), looser where tighter ones end in
#: rounding-level "precision loss" failures on badly scaled data (BFGS, CG)
DEFAULT_OPTIONS = {"lbfgs": {"ftol": 1e-12, "gtol": 1e-8}, "bfgs": {"gtol": 1e-6},
                   "cg": {"gtol": 1e-6}, "newton": {"gtol": 1e-9},
                   "trust-exact": {"gtol": 1e-8}, "trust-krylov": {"gtol": 1e-8},
                   "newton-cg": {"xtol": 1e-10}}
#: options always passed: trust-krylov's default inexact subproblem solves stop it with
#: "a bad approximation" near the optimum, on problems where the exact solve converges
ALWAYS_OPTIONS = {"trust-krylov": {"inexact": False}}


def tolerance_options(method, tol) -> dict:
    """scipy options making ``tol`` a bound on the largest entry of the mean loss's gradient
    (Newton-CG has no gradient test: there it bounds the mean step). L-BFGS-B's test on the
    relative decrease is set to 64 machine epsilons, as scikit-learn does, so it cannot stop
    the run long before the gradient test does."""
    tol = float(tol)
    if not tol > 0:
        raise ValueError(f"tol must be a positive number or None, got {tol!r}")
    if method == "lbfgs":
        return {"gtol": tol, "ftol": 64 * np.finfo(float).eps}
    if method == "newton-cg":
        return {"xtol": tol}
    return {"gtol": tol}


def initial_point(objective, x0) -> np.ndarray:
    """``x0`` as a vector in ``objective.params`` order.

    None starts every parameter at 1 (0 is a saddle of every product of parameters, such
    as ``b*exp(-c*x)``); a mapping {symbol or name: value} starts the parameters it names
    there and the others at 1; anything else must be a vector of length p.
    """
    if getattr(objective, "_array", False):
        from ..models.array_objective import initial_values, pack, unpack
        if x0 is None:  # matrix parameters: Glorot/He weights, zero biases (not all ones)
            return initial_values(objective)
        if hasattr(x0, "keys"):
            values = unpack(objective, initial_values(objective))
            values.update({getattr(k, "name", k): v for k, v in x0.items()})
            return pack(objective, {getattr(k, "name", k): v for k, v in values.items()})
        p = sum(int(np.prod(s)) if s else 1 for s in objective.param_shapes.values())
    else:
        p = len(objective.params)
    if x0 is None:
        return np.ones(p)
    if hasattr(x0, "keys"):
        by_name = {(k.name if hasattr(k, "name") else str(k)): float(v) for k, v in x0.items()}
        names = {q.name for q in objective.params}
        unknown = sorted(set(by_name) - names)
        if unknown:
            raise FormulaError(f"x0 names {unknown}, which are not parameters of the objective "
                               f"({', '.join(sorted(names))})")
        return np.array([by_name.get(q.name, 1.0) for q in objective.params])
    x = np.array(x0, dtype=np.float64).ravel()
    if x.shape != (p,):
        raise FormulaError(f"x0 must have one value per parameter ({p}), got shape {np.shape(x0)}")
    return x


def minimize(objective, data, x0=None, method="lbfgs", tol=None, maxiter=None, callback=None,
             progress=False):
    """Minimize the mean loss of ``objective`` over all of ``data``.

    Returns scipy's :class:`~scipy.optimize.OptimizeResult` (``.x``, ``.fun``, ``.jac``,
    ``.nit``, ``.success``, ``.message``, ...) plus ``.params``, {symbol: value}, and
    ``.method``. ``method``: ``"lbfgs"`` (default), ``"newton"`` (exact Hessian, line
    search), ``"trust-exact"`` (exact Hessian), ``"trust-krylov"`` and ``"newton-cg"``
    (Hessian-vector products), ``"bfgs"``, ``"cg"``. ``tol``: stop when the largest entry
    of the gradient of the mean loss is at most ``tol`` (see :func:`tolerance_options`;
    None: the defaults of ``DEFAULT_OPTIONS``); ``maxiter`` caps iterations. ``x0``: see
    :func:`initial_point` (None starts every parameter at 1).
    ``callback(intermediate_result)`` is called after each iteration with an
    ``OptimizeResult`` holding ``x`` and ``fun``; raising ``StopIteration`` stops.
    ``progress=True`` shows a tqdm bar. A run that does not converge returns
    ``success=False`` and emits a :class:`~symdiff.SymdiffWarning` naming the method and
    scipy's reason.
    """
    res = minimize_quietly(objective, data, x0, method, tol, maxiter, callback, progress)
    if not res.success:
        warnings.warn(f"sd.minimize (method={method!r}) did not converge: {res.message}",
                      SymdiffWarning, stacklevel=2)
    return res


def minimize_quietly(objective, data, x0=None, method="lbfgs", tol=None, maxiter=None,
                     callback=None, progress=False):
    """:func:`minimize` without the warning (callers that warn in their own terms, such as
    the estimators' ConvergenceWarning)."""
    from ..models.objective import Objective

    if not isinstance(objective, Objective):
        raise FormulaError(f"minimize needs an sd.Objective, got {type(objective).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer))
                                or maxiter < 1):
        raise ValueError(f"maxiter must be a positive integer or None, got {maxiter!r}")
    x = initial_point(objective, x0)
    scipy_name, second = METHODS[method]
    from ..distributed import bind_any  # Dask data: kernels run where the partitions are

    bound = bind_any(objective, data, hessian={None: False, "hess": True, "hessp": "hvp"}[second])
    fun = _guarded(bound if second is None else bound.loss_grad, len(x))

    bar = _progress_bar(method, maxiter) if progress else None
    step_callback = _callback(callback, bar, fun)
    try:
        if scipy_name is None:
            res = _newton(bound, x, tol=tol, maxiter=maxiter, callback=step_callback)
        else:
            import scipy.optimize

            options = dict(DEFAULT_OPTIONS[method]) if tol is None else tolerance_options(method, tol)
            options.update(ALWAYS_OPTIONS.get(method, {}))
            if maxiter is not None:
                options["maxiter"] = int(maxiter)
            kwargs = {}
            if second == "hess":
                kwargs["hess"] = bound.hessian
            elif second == "hessp":
                kwargs["hessp"] = bound.hvp
            with np.errstate(all="ignore"):
                res = scipy.optimize.minimize(fun, x, jac=True, method=scipy_name, options=options,
                                              callback=step_callback, **kwargs)
        if "jac" not in res:
            res.jac = fun(res.x)[1]
    finally:
        if bar is not None:
            bar.close()
        if hasattr(bound, "close"):
            bound.close()
    res = MinimizeResult(res)
    res.params = objective.unpack(res.x) if getattr(objective, "_array", False) else \
        dict(zip(objective.params, (float(v) for v in res.x)))
    res.method = method
    return res


def _result_class():
    from scipy.optimize import OptimizeResult

    class MinimizeResult(OptimizeResult):
        """scipy's OptimizeResult plus ``params`` ({symbol: value}) and ``method``."""

        def __repr__(self):
            shown = OptimizeResult(self)
            if "params" in shown:  # scipy's printer needs string keys
                shown["params"] = {str(k): v for k, v in shown["params"].items()}
            return repr(shown)

    return MinimizeResult


def MinimizeResult(res):
    """``res`` as a :class:`MinimizeResult` (the class is made on first use: scipy is lazy)."""
    global _MINIMIZE_RESULT
    if _MINIMIZE_RESULT is None:
        _MINIMIZE_RESULT = _result_class()
    return _MINIMIZE_RESULT(res)


_MINIMIZE_RESULT = None


def _guarded(loss_grad, p):
    """``loss_grad`` that answers a non-finite trial point (scipy's trust-region
    subproblem solvers can propose one) with an infinite loss instead of an error."""
    def call(x):
        if not np.all(np.isfinite(x)):
            return np.inf, np.full(p, np.nan)
        return loss_grad(x)
    return call


def _progress_bar(method, maxiter):
    from tqdm.auto import tqdm
    return tqdm(total=maxiter, desc=f"minimize ({method})", unit="it", leave=False)


def _callback(user, bar, fun):
    """scipy's per-iteration callback, feeding the user's callback and the progress bar."""
    if user is None and bar is None:
        return None

    def step(intermediate_result):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{intermediate_result.fun:.6g}", refresh=False)
        if user is not None:
            user(intermediate_result)
    return step


def _newton(bound, x, *, tol, maxiter, callback):
    """Newton's method with an exact Hessian and Armijo backtracking.

    Converged when the largest gradient entry is at most ``gtol`` (``tol``, default 1e-9), or
    when no step can decrease the loss any more while the Newton decrement is at the
    level of rounding in the loss.
    """
    from scipy.optimize import OptimizeResult

    gtol = DEFAULT_OPTIONS["newton"]["gtol"] if tol is None else float(tol)
    maxiter = 200 if maxiter is None else int(maxiter)
    nfev = nhev = 0
    eye = np.eye(len(x))
    message, success = "maximum number of iterations reached", False
    f, g, H = bound(x)
    nfev += 1
    nhev += 1
    nit = 0
    while True:
        if not np.all(np.isfinite(g)) or not np.isfinite(f):
            message = "the loss or gradient is not finite"
            break
        if np.max(np.abs(g)) <= gtol:
            message, success = "gradient below tolerance", True
            break
        if nit >= maxiter:
            break
        d = _newton_direction(H, g, eye)
        slope = float(g @ d)
        t, f_new = 1.0, None
        while t > 1e-12:
            f_try = bound.value(x + t * d)
            nfev += 1
            if f_try <= f + 1e-4 * t * slope:
                f_new = f_try
                break
            t *= 0.5
        if f_new is None:
            # no decrease at all: converged if the predicted decrease is rounding in the loss
            if -slope <= 1e-12 * max(1.0, abs(f)):
                message, success = "no further decrease possible: the loss is at rounding level", True
            else:
                message = "line search could not decrease the loss"
            break
        x = x + t * d
        f, g, H = bound(x)
        nfev += 1
        nhev += 1
        nit += 1
        if callback is not None:
            try:
                callback(OptimizeResult(x=x.copy(), fun=f))
            except StopIteration:
                message = "stopped by the callback"
                break
    return OptimizeResult(x=x, fun=f, jac=g, hess=H, nit=nit, nfev=nfev, njev=nfev, nhev=nhev,
                          success=success, status=0 if success else 1, message=message)


def _newton_direction(H, g, eye):
    """Solve (H + mu*I) d = -g with the smallest mu >= 0 (from 0, then growing) that makes
    the matrix positive definite: the Newton step when H is, a step towards steepest
    descent otherwise."""
    mu = 0.0
    scale = max(1e-12, float(np.max(np.abs(np.diag(H)))) if H.size else 1.0)
    for _ in range(60):
        try:
            L = np.linalg.cholesky(H + mu * eye)
        except np.linalg.LinAlgError:
            mu = max(2.0 * mu, 1e-10 * scale)
            continue
        y = np.linalg.solve(L, -g)
        return np.linalg.solve(L.T, y)
    return -g


def fit_full_batch(objective, data, *, method, x0, tol, maxiter):
    """:func:`minimize_quietly` that also records a :class:`symdiff.History`, one entry per
    iteration (``train_loss`` the loss after it, ``steps`` the iteration count), for the
    estimators' ``history_``. Returns ``(result, history)``."""
    import math
    import time

    from ..training.driver import History

    history = History()
    start = time.perf_counter()

    def record(r):
        k = len(history) + 1
        history._record(k, float(r.fun), math.nan, math.nan, math.nan,
                        time.perf_counter() - start, k)
        history.step_loss.append(float(r.fun))

    res = minimize_quietly(objective, data, x0=x0, method=method, tol=tol, maxiter=maxiter,
                           callback=record)
    return res, history
