"""The result of a least-squares fit and its report, in the spirit of lmfit's ``fit_report``."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

#: correlations at least this large (in magnitude) are listed in the report
REPORT_CORRELATION = 0.1


class ParamDict(dict):
    """``{symbol: value}`` that is also indexable by the symbol's name."""

    def __getitem__(self, key):
        if isinstance(key, str):
            for k in self:
                if k.name == key:
                    return dict.__getitem__(self, k)
            raise KeyError(key)
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        if isinstance(key, str):
            return any(k.name == key for k in self)
        return dict.__contains__(self, key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def by_name(self) -> dict:
        """``{name: value}``, e.g. for JSON."""
        return {k.name: v for k, v in self.items()}


@dataclass
class LeastSquaresResult:
    """A least-squares fit: estimates, uncertainties, statistics and the solver's verdict.

    ``params``/``stderr``: ``{symbol: value}`` (also indexable by name); ``x``: the
    estimates in params order; ``covariance`` (p×p) and ``correlation``; ``rss``: the
    unweighted ``Σ(y − ŷ)²``; ``chisqr``: ``Σ((y − ŷ)/σ)²`` (equal to ``rss`` without
    sigma); ``redchi = chisqr/dof``; ``r2``: the (weighted) coefficient of determination;
    ``aic``/``bic`` as lmfit defines them (``n·ln(χ²/n) + 2p`` and ``+ ln(n)·p``);
    ``nfev``, ``success``, ``message``, ``status`` (MINPACK's ``info`` for ``method="lm"``).
    """

    model: sp.Expr
    target: sp.Symbol
    inputs: tuple
    params: ParamDict
    x: np.ndarray
    stderr: ParamDict
    covariance: np.ndarray
    correlation: np.ndarray
    rss: float
    chisqr: float
    redchi: float
    dof: int
    ndata: int
    total_sum_of_squares: object = field(repr=False, compare=False)
    aic: float = float("nan")
    bic: float = float("nan")
    nfev: int = 0
    success: bool = False
    message: str = ""
    status: int = 0
    method: str = "lm"
    loss: str = "linear"
    weighted: bool = False
    absolute_sigma: bool = False
    _predictor: object = field(default=None, repr=False, compare=False)

    @classmethod
    def of_fit(cls, *, params, x, covariance, chisqr, rss, ndata, **fields) -> "LeastSquaresResult":
        """The result of a fit from its estimates, covariance and sums: standard errors,
        correlations, reduced χ², AIC and BIC derived here, one way for every caller
        (local data and Dask). ``fields``: the remaining dataclass fields."""
        p, n = len(params), ndata
        dof = n - p
        stderr = np.sqrt(np.maximum(np.diag(covariance), 0.0))
        with np.errstate(all="ignore"):
            correlation = covariance / np.outer(stderr, stderr)
        with np.errstate(divide="ignore"):
            loglike = n * np.log(chisqr / n) if chisqr > 0 else -np.inf
        return cls(params=ParamDict(zip(params, map(float, x))), x=np.asarray(x, float),
                   stderr=ParamDict(zip(params, map(float, stderr))), covariance=covariance,
                   correlation=correlation, rss=float(rss), chisqr=float(chisqr),
                   redchi=float(chisqr / dof) if dof > 0 else float("inf"), dof=dof, ndata=n,
                   aic=float(loglike + 2 * p), bic=float(loglike + np.log(n) * p), **fields)

    @functools.cached_property
    def r2(self) -> float:
        """``1 − χ²/TSS`` (TSS weighted by 1/σ² about the weighted mean), computed on first
        use: it is one more pass over the data."""
        tss = self.total_sum_of_squares()
        return 1.0 - self.chisqr / tss if tss > 0 else float("nan")

    @property
    def nvarys(self) -> int:
        return len(self.x)

    def predict(self, data) -> np.ndarray:
        """The fitted model on ``data`` (a mapping of input columns, or an (n, k) array of
        the inputs in name order)."""
        from ..models.objective import Model
        if self._predictor is None:
            self._predictor = Model(self.model, list(self.params), list(self.inputs)).compile()
        return self._predictor(self.x, data if self.inputs else None)

    def report(self) -> str:
        """The fit report: statistics, value ± stderr (relative error), correlations."""
        lines = ["[[Fit Statistics]]",
                 f"    method             = {self.method}" + ("" if self.loss == "linear" else f" (loss {self.loss})"),
                 f"    converged          = {self.success}: {self.message}",
                 f"    function evals     = {self.nfev}",
                 f"    data points        = {self.ndata}",
                 f"    variables          = {self.nvarys}",
                 f"    rss                = {self.rss:.6g}"]
        if self.weighted:
            lines.append(f"    chi-square         = {self.chisqr:.6g}")
        lines += [f"    reduced chi-square = {self.redchi:.6g}",
                  f"    R-squared          = {self.r2:.6g}",
                  f"    Akaike info crit   = {self.aic:.6g}",
                  f"    Bayesian info crit = {self.bic:.6g}",
                  "[[Variables]]"]
        width = max(len(p.name) for p in self.params)
        for p, v in self.params.items():
            e = self.stderr[p]
            rel = f" ({abs(e / v) * 100:.2f}%)" if v != 0 and np.isfinite(e) else ""
            lines.append(f"    {p.name:<{width}} = {v: .8g} +/- {e:.6g}{rel}")
        pairs = []
        names = [p.name for p in self.params]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                c = self.correlation[i, j]
                if np.isfinite(c) and abs(c) >= REPORT_CORRELATION:
                    pairs.append((abs(c), names[i], names[j], c))
        if pairs:
            lines.append(f"[[Correlations]] (unreported correlations are < {REPORT_CORRELATION})")
            labels = [f"C({a}, {b})" for _, a, b, _ in sorted(pairs, reverse=True)]
            width = max(map(len, labels))
            for label, (_, _, _, c) in zip(labels, sorted(pairs, reverse=True)):
                lines.append(f"    {label:<{width}} = {c:+.4f}")
        return "\n".join(lines)

    def __str__(self):
        return self.report()

    def to_dict(self) -> dict:
        """The result as JSON-ready Python values (names for keys)."""
        return {"params": self.params.by_name(), "stderr": self.stderr.by_name(),
                "covariance": self.covariance.tolist(), "rss": self.rss, "chisqr": self.chisqr,
                "redchi": self.redchi, "dof": self.dof, "r2": self.r2, "aic": self.aic,
                "bic": self.bic, "nfev": self.nfev, "method": self.method,
                "success": self.success, "message": self.message}
