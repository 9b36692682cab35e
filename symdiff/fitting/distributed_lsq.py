"""``sd.least_squares`` on Dask data: Levenberg–Marquardt on Gauss–Newton sums from the workers.

The local solver needs, per iteration, only ``Σr²``, ``Jᵀr`` and ``JᵀJ``, sums over the
samples; :func:`symdiff.fitting.distributed.bind` computes them where the partitions are. What
needs per-sample residuals is not offered on Dask data: robust losses and scipy's
``trf``/``dogbox`` (they take the residual vector), and ``result._residuals``. Where
JᵀJ loses digits (ill-conditioned iterates, the covariance), the solver uses the
Jacobian's R factor instead, from a streaming QR on each partition combined by one more
QR on the client (TSQR), as it does locally. R² is one more pass of Dask reductions, made on first use.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError


def _column(data, name):
    if hasattr(data, "columns"):
        return data[name]
    for key in data.keys():
        if (key.name if hasattr(key, "name") and not isinstance(key, str) else str(key)) == name:
            return data[key]
    return None


def _with_weights(data, sigma, weight):
    """``data`` plus the column ``weight`` = 1/σ (σ: a column name or a Dask series/array)."""
    from ..distributed import is_dask

    sig = _column(data, sigma) if isinstance(sigma, str) else sigma
    if sig is None or not is_dask(sig):
        raise UnsupportedError("with Dask data, sigma must be the name of a data column or a Dask "
                               "series/array partitioned like the data")
    if hasattr(data, "columns"):
        return data.assign(**{weight: 1.0 / sig})
    return {**data, weight: 1.0 / sig}


def least_squares_on_dask(expr, target, params, inputs, data, theta0, *, sigma, absolute_sigma,
                          bounds, loss, method, xtol, ftol, gtol, max_nfev):
    """:func:`symdiff.least_squares` for Dask ``data`` (Levenberg–Marquardt, linear loss)."""
    from ..distributed import bind
    from .fit_result import LeastSquaresResult
    from .least_squares import WEIGHT, covariance_from, residuals_for
    from .levenberg_marquardt import levenberg_marquardt

    if loss != "linear" or method != "lm":
        raise UnsupportedError(f"on Dask data least_squares runs method='lm' with loss='linear' "
                               f"(got method={method!r}, loss={loss!r}): robust losses and "
                               f"scipy's methods need every residual on the client")
    weighted = sigma is not None
    if weighted:
        data = _with_weights(data, sigma, WEIGHT)
    bound = bind(residuals_for(expr, target, params, inputs, weighted), data)
    p = len(params)
    try:
        lower, upper = (-np.inf, np.inf) if bounds is None else bounds
        out = levenberg_marquardt(bound, theta0, qr=bound.qr, bounds=(lower, upper), xtol=xtol,
                                  ftol=ftol, gtol=gtol, max_nfev=max_nfev)
        n, x, chisqr, jtj = bound.n, out.x, float(out.rss), out.jtj
        cov = covariance_from(jtj, chisqr, n - p, absolute_sigma, jacobian=lambda: bound.qr(x)[1])
    finally:
        bound.close()
    if weighted:
        plain = bind(residuals_for(expr, target, params, inputs, False), data)
        try:
            rss = plain.value(x)
        finally:
            plain.close()
    else:
        rss = chisqr

    def total_sum_of_squares():
        import dask
        y = _column(data, target.name)
        if weighted:
            ww = _column(data, WEIGHT) ** 2
            swy, sw = dask.compute((ww * y).sum(), ww.sum())
            return float(dask.compute((ww * (y - swy / sw) ** 2).sum())[0])
        mean = float(dask.compute(y.mean())[0])
        return float(dask.compute(((y - mean) ** 2).sum())[0])

    result = LeastSquaresResult.of_fit(
        params=params, x=x, covariance=cov, chisqr=chisqr, rss=rss, ndata=n,
        model=expr, target=target, inputs=tuple(inputs), total_sum_of_squares=total_sum_of_squares,
        nfev=int(out.nfev), success=bool(out.success), message=str(out.message),
        status=int(out.status), method=method, loss=loss, weighted=weighted,
        absolute_sigma=absolute_sigma)

    def residuals():
        raise UnsupportedError("the residuals of a fit on Dask data stay on the cluster; "
                               "compute them there (e.g. ddf[target] - model on each partition)")
    result._residuals = residuals
    return result
