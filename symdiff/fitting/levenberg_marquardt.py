"""Levenberg–Marquardt on a callable, in the manner of MINPACK's ``lmder`` (Moré 1978).

The solver sees the problem only through one callable, in one of two forms:

* ``form="normal"``: ``theta -> (rss, Jᵀr, JᵀJ)`` — what symdiff's fused Gauss–Newton
  kernel returns in one pass over the data, never forming the n×p Jacobian;
* ``form="jacobian"``: ``theta -> (r, J)`` — per-sample residuals and Jacobian, for small
  problems, where the SVD of the column-scaled ``J`` avoids squaring its condition number.

Each iteration reduces the linearized problem to the eigen-coordinates of the scaled
Gauss–Newton matrix ``D⁻¹JᵀJD⁻¹ = V diag(s²) Vᵀ`` and the scaled gradient
``a = VᵀD⁻¹Jᵀr``; the Levenberg–Marquardt step for damping λ is then
``D p = -V (a / (s² + λ))`` exactly, so the trust-region subproblem (find λ with
``‖D p‖ ≈ Δ``) is a one-dimensional secular equation solved by safeguarded Newton on
``1/‖D p‖`` as in Moré's ``lmpar``. The scaling ``D`` (column norms of ``J``, never
decreasing), the trust-radius updates, the acceptance ratio and the ``ftol``/``xtol``/
``gtol`` tests are those of ``lmder``, so the stopping behaviour matches MINPACK's
(scipy's ``method="lm"``).

Bounds are handled by MINUIT's change of variables (as lmfit does): the solver works on
unbounded internal variables ``u`` with ``x = lo + (hi - lo)(sin u + 1)/2`` for two-sided
bounds and ``x = lo - 1 + sqrt(u² + 1)`` (or ``hi + 1 - sqrt(u² + 1)``) for one-sided
ones; the Jacobian picks up the factor ``dx/du`` by the chain rule.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np

_EPS = np.finfo(float).eps

MESSAGES = {
    1: "both actual and predicted relative reductions in the sum of squares are at most ftol",
    2: "relative error between two consecutive iterates is at most xtol",
    3: "the sum of squares and the iterate both converged (ftol and xtol)",
    4: "the gradient is orthogonal to the residuals to within gtol",
    5: "the number of function evaluations reached max_nfev",
    6: "ftol is too small: no further reduction in the sum of squares is possible",
    7: "xtol is too small: no further improvement of the parameters is possible",
    8: "gtol is too small: the residuals are orthogonal to the Jacobian to machine precision",
    9: "the model is not finite at the starting point",
}


@dataclass
class LMResult:
    """Where Levenberg–Marquardt stopped and why.

    ``x`` the parameters (in the caller's, bounded, variables); ``rss`` the sum of squared
    residuals there; ``jtr`` and ``jtj`` Jᵀr and JᵀJ there (with respect to ``x``);
    ``status`` MINPACK's ``info`` code, with ``message`` its meaning; ``success`` is true
    for codes 1–4 and 6–8 (the last three: converged to machine precision).
    """

    x: np.ndarray
    rss: float
    jtr: np.ndarray
    jtj: np.ndarray
    nfev: int
    njev: int
    status: int
    message: str = ""
    success: bool = False
    history: list = field(default_factory=list, repr=False)


def _eigh(matrix):
    """``np.linalg.eigh`` (lower triangle) without its Python wrapper, whose checks cost
    three times the decomposition of a small matrix; the wrapper when unavailable."""
    try:
        return _EIGH_LO(matrix)
    except Exception:
        return np.linalg.eigh(matrix)


try:
    from numpy.linalg._umath_linalg import eigh_lo as _EIGH_LO
except ImportError:  # pragma: no cover - other numpy layouts
    _EIGH_LO = np.linalg.eigh

_OUTER, _DOT = np.multiply.outer, np.dot

def _dot(x, y) -> float:
    return sum(map(operator.mul, x, y))


class _Linearization:
    """The Gauss–Newton model at one point in eigen-coordinates of the scaled problem.

    ``s2`` eigenvalues of ``D⁻¹JᵀJD⁻¹`` (squared singular values of ``JD⁻¹``), ``V`` its
    eigenvectors (an array), ``a = VᵀD⁻¹Jᵀr``; ``rank`` marks components above the noise
    floor of how they were computed (used for the Gauss–Newton step, where λ = 0; None
    when all are). ``s2``, ``a`` and ``rank`` are lists of Python floats (bools): the
    solver's O(p) arithmetic runs on floats, which for the p of a curve fit costs a
    fraction of NumPy's per-call overhead (~0.5–1 µs); products with ``V`` stay with BLAS.
    """

    __slots__ = ("V", "a", "full_rank", "rank", "s2")

    def __init__(self, s2, V, a, rank):
        self.s2, self.V, self.a = s2, V, a
        self.full_rank = rank is None or all(rank)
        self.rank = rank

    @classmethod
    def from_normal(cls, jtr, jtj, d, dd):
        """From Jᵀr (list), JᵀJ and ``dd = outer(d, d)`` (arrays)."""
        # eigh reads one triangle: JᵀJ need not be symmetric to the last bit
        s2, V = _eigh(jtj / dd)
        s2 = s2.tolist()
        if not s2[0] > 0.0:
            s2 = [v if v > 0.0 else 0.0 for v in s2]
        a = _DOT([gj / dj for gj, dj in zip(jtr, d)], V).tolist()
        floor = _EPS * len(d) * s2[-1]
        return cls(s2, V, a, [v > floor for v in s2] if s2[0] <= floor else None)

    @classmethod
    def _from_svd(cls, U, s, Vt, r, shape):
        a = (s * (U.T @ r)).tolist()
        floor = _EPS * max(shape) * s.max(initial=0.0)
        return cls((s * s).tolist(), Vt.T, a, (s > floor).tolist())

    @classmethod
    def from_jacobian(cls, r, J, d):
        U, s, Vt = np.linalg.svd(J / np.array(d), full_matrices=False)
        return cls._from_svd(U, s, Vt, r, J.shape)

    @classmethod
    def from_qr(cls, R, qtr, d):
        """From ``J = QR`` and ``Qᵀr`` (a streaming QR of the Jacobian): ``J D⁻¹`` and
        ``R D⁻¹`` share singular values and right vectors, so nothing is squared."""
        U, s, Vt = np.linalg.svd(R / np.array(d), full_matrices=False)
        return cls._from_svd(U, s, Vt, qtr, R.shape)

    def rotate(self, c) -> list:
        """``V c``: the scaled step ``D p`` from its eigen-coordinates.

        Always by BLAS, as MINPACK's steps are: on a problem with an exact symmetry (MGH's
        Biggs EXP6 from its standard start) the iterates stay on a symmetric saddle unless
        rounding breaks the tie, and BLAS's blocked products break it where a plain
        sequential sum over the rows does not."""
        return _DOT(self.V, c).tolist()

    def step(self, lam):
        """Scaled step ``c = Vᵀ D p`` for damping ``lam`` (pseudo-inverse when 0)."""
        if lam == 0.0:
            if self.full_rank:
                return [-aj / sj for aj, sj in zip(self.a, self.s2)]
            return [-aj / sj if keep else 0.0 for aj, sj, keep in zip(self.a, self.s2, self.rank)]
        return [-aj / (sj + lam) for aj, sj in zip(self.a, self.s2)]

    def solve(self, delta, lam):
        """Moré's ``lmpar``: ``(lam, c)`` with ``‖c‖`` within 10 % of ``delta`` or ``lam = 0``."""
        c = self.step(0.0)
        if math.hypot(*c) <= 1.1 * delta:
            return 0.0, c
        anorm = math.hypot(*self.a)
        upper = anorm / delta
        lower = 0.0
        if lam <= 0.0 or not math.isfinite(lam):
            lam = max(upper * 1e-3, 1e-300)
        lam = min(max(lam, lower), upper)
        a2 = [v * v for v in self.a]
        s2 = self.s2
        for _ in range(60):
            if lam <= 0.0:
                lam = max(1e-3 * upper, 1e-300)
            cnorm2 = w2 = 0.0
            for ai2, si2 in zip(a2, s2):
                t = si2 + lam
                q = ai2 / (t * t)
                cnorm2 += q
                w2 += q / t
            cnorm = math.sqrt(cnorm2)
            phi = cnorm - delta
            if abs(phi) <= 0.1 * delta:
                break
            if phi > 0:
                lower = max(lower, lam)
            else:
                upper = min(upper, lam)
            # Newton on 1/‖c(λ)‖ − 1/Δ, nearly linear in λ
            new = lam + (cnorm - delta) * cnorm2 / (delta * w2) if w2 > 0 else 2 * lam
            if not (lower < new < upper):
                new = 0.5 * (lower + upper) if upper > lower else new
            lam = new
        c = self.step(lam)
        return lam, c


class _Bounds:
    """MINUIT's change of variables between bounded ``x`` and unbounded internal ``u``."""

    def __init__(self, lower, upper, p):
        lo = np.broadcast_to(np.asarray(lower, float), (p,)).copy()
        hi = np.broadcast_to(np.asarray(upper, float), (p,)).copy()
        if np.any(lo >= hi):
            bad = np.flatnonzero(lo >= hi)
            raise ValueError(f"lower bound must be below upper bound (parameter index {bad.tolist()})")
        self.lo, self.hi = lo, hi
        self.both = np.isfinite(lo) & np.isfinite(hi)
        self.low_only = np.isfinite(lo) & ~np.isfinite(hi)
        self.high_only = ~np.isfinite(lo) & np.isfinite(hi)
        self.active = bool(np.any(np.isfinite(lo) | np.isfinite(hi)))

    def to_internal(self, x):
        x = np.array(x, float)
        if np.any(x < self.lo) or np.any(x > self.hi):
            raise ValueError("the starting point lies outside the bounds")
        u = x.copy()
        b = self.both
        u[b] = np.arcsin(np.clip(2 * (x[b] - self.lo[b]) / (self.hi[b] - self.lo[b]) - 1, -1, 1))
        lo = self.low_only
        u[lo] = np.sqrt((x[lo] - self.lo[lo] + 1) ** 2 - 1)
        hi = self.high_only
        u[hi] = np.sqrt((self.hi[hi] - x[hi] + 1) ** 2 - 1)
        return u

    def to_external(self, u):
        x = np.array(u, float)
        b = self.both
        x[b] = self.lo[b] + (self.hi[b] - self.lo[b]) * (np.sin(u[b]) + 1) / 2
        lo = self.low_only
        x[lo] = self.lo[lo] - 1 + np.sqrt(u[lo] ** 2 + 1)
        hi = self.high_only
        x[hi] = self.hi[hi] + 1 - np.sqrt(u[hi] ** 2 + 1)
        return np.clip(x, self.lo, self.hi)

    def derivative(self, u):
        """``dx/du`` per parameter."""
        d = np.ones_like(u)
        b = self.both
        d[b] = (self.hi[b] - self.lo[b]) * np.cos(u[b]) / 2
        lo = self.low_only
        d[lo] = u[lo] / np.sqrt(u[lo] ** 2 + 1)
        hi = self.high_only
        d[hi] = -u[hi] / np.sqrt(u[hi] ** 2 + 1)
        return d


#: below this ratio of smallest to largest eigenvalue of the scaled JᵀJ, the normal
#: equations have lost more than 10 of 16 digits: refactor from the Jacobian when possible
ILL_CONDITIONED = 1e-10


def levenberg_marquardt(fun, x0, *, form="normal", jacobian=None, qr=None, bounds=None,
                        xtol=1e-8, ftol=1e-8, gtol=1e-8, max_nfev=None, factor=100.0,
                        callback=None) -> LMResult:
    """Minimize a sum of squares by Levenberg–Marquardt with MINPACK's rules.

    ``fun``: ``theta -> (rss, Jᵀr, JᵀJ)`` (``form="normal"``) or ``theta -> (r, J)``
    (``form="jacobian"``). ``bounds``: ``(lower, upper)`` scalars or per-parameter arrays
    (±inf for none), enforced by a change of variables. ``xtol``, ``ftol``, ``gtol``:
    MINPACK's relative tolerances; ``max_nfev`` defaults to ``100·(p + 1)``; ``factor``
    sets the initial trust radius ``factor·‖D x0‖``. ``callback(x, rss)`` after each
    accepted step. Never raises on non-convergence: read ``status``/``success``.
    """
    if form not in ("normal", "jacobian"):
        raise ValueError(f"form must be 'normal' or 'jacobian', got {form!r}")
    x0 = np.array(x0, dtype=float).ravel()
    p = x0.size
    if max_nfev is None:
        max_nfev = 100 * (p + 1)
    box = _Bounds(*bounds, p) if bounds is not None else None
    if box is not None and not box.active:
        box = None
    with np.errstate(all="ignore"):
        return _iterate(fun, x0, p, form, jacobian, qr, box, xtol, ftol, gtol, max_nfev, factor,
                        callback)


class _State:
    """The problem at one point: ``u`` internal (list of floats), ``x`` external (array)
    variables; rss, Jᵀr (list) and JᵀJ (array) in internal (``g``, ``A``) and external
    (``gx``, ``Ax``) variables; r and J if known."""

    __slots__ = ("A", "Ax", "J", "diag", "finite", "g", "gx", "r", "rss", "u", "x")


def _iterate(fun, x0, p, form, jacobian, qr, box, xtol, ftol, gtol, max_nfev, factor, callback):
    nfev = njev_extra = 0
    bounded = box is not None
    sqrt, isfinite, hypot = math.sqrt, math.isfinite, math.hypot

    def evaluate(u):
        nonlocal nfev
        nfev += 1
        st = _State()
        st.u = u
        uarr = np.array(u)
        st.x = x = box.to_external(uarr) if bounded else uarr
        out = fun(x)
        if form == "normal":
            rss, g, A = out
            rss = float(rss)
            if type(g) is not np.ndarray or type(A) is not np.ndarray:
                g, A = np.asarray(g, float), np.asarray(A, float)
            st.r = st.J = None
        else:
            r, J = np.asarray(out[0], float).ravel(), np.asarray(out[1], float).reshape(-1, p)
            rss = float(r @ r)
            g, A = J.T @ r, J.T @ J
            st.r, st.J = r, J
        st.rss, st.gx, st.Ax = rss, g, A
        if bounded:
            dxdu = box.derivative(uarr)
            g = g * dxdu
            A = A * dxdu * dxdu[:, None]
            if st.J is not None:
                st.J = st.J * dxdu
        st.g, st.A = g.tolist(), A
        # a finite diagonal bounds every entry of JᵀJ (|A_jk|² <= A_jj·A_kk)
        st.diag = A.diagonal().tolist()
        st.finite = isfinite(rss) and isfinite(sum(st.g)) and isfinite(sum(st.diag))
        return st

    def result(st, status):
        return LMResult(x=st.x, rss=st.rss, jtr=st.gx, jtj=st.Ax, nfev=nfev, njev=nfev + njev_extra,
                        status=status, message=MESSAGES[status],
                        success=status in (1, 2, 3, 4, 6, 7, 8))

    u = (box.to_internal(x0) if bounded else x0).tolist()
    state = evaluate(u)
    if not state.finite:
        return result(state, 9)
    d = dd = None
    delta = lam = 0.0
    first = True
    while True:
        A, g, rss = state.A, state.g, state.rss
        # column norms of J (scaling d, never decreasing) and the scaled gradient's largest
        # cosine with the residuals, in one pass
        fnorm = sqrt(rss)
        gnorm = 0.0
        if d is None:
            d = [sqrt(v) if v > 0.0 else 1.0 for v in state.diag]
        for j, v in enumerate(state.diag):
            if v > 0.0:
                cj = sqrt(v)
                if cj > d[j]:
                    d[j] = cj
                    dd = None
                if fnorm > 0:
                    den = cj * fnorm
                    q = abs(g[j]) / den if den > 0 else math.inf
                    if q > gnorm:
                        gnorm = q
        xnorm = hypot(*map(operator.mul, d, u))
        if first:
            delta = factor * xnorm if xnorm > 0 else factor
        if gnorm <= gtol:
            return result(state, 4)
        if state.J is not None:
            lin = _Linearization.from_jacobian(state.r, state.J, d)
        else:
            if dd is None:
                darr = np.array(d)
                dd = _OUTER(darr, darr)
            lin = _Linearization.from_normal(g, A, d, dd)
            ill = lin.s2[0] < ILL_CONDITIONED * lin.s2[-1]
            if ill and qr is not None:
                _, R, qtr = qr(state.x)
                R = np.asarray(R, float)
                if bounded:
                    R = R * box.derivative(np.array(u))
                njev_extra += 1
                lin = _Linearization.from_qr(R, np.asarray(qtr, float), d)
            elif ill and jacobian is not None:
                r, J = jacobian(state.x)
                J = np.asarray(J, float).reshape(-1, p)
                if bounded:
                    J = J * box.derivative(np.array(u))
                njev_extra += 1
                lin = _Linearization.from_jacobian(np.asarray(r, float).ravel(), J, d)
        while True:
            lam, c = lin.solve(delta, lam)
            dp = lin.rotate(c)
            pnorm = hypot(*dp)
            if first:
                delta = min(delta, pnorm)
            trial = evaluate([uj + dpj / dj for uj, dpj, dj in zip(u, dp, d)])
            fnorm1 = sqrt(trial.rss) if trial.finite else math.inf
            actred = 1 - (fnorm1 / fnorm) ** 2 if 0.1 * fnorm1 < fnorm else -1.0
            if fnorm > 0:
                temp1 = _dot(map(operator.mul, lin.s2, c), c) / rss
                temp2 = lam * pnorm * pnorm / rss
            else:
                temp1 = temp2 = 0.0
            prered = temp1 + 2.0 * temp2
            dirder = -(temp1 + temp2)
            ratio = actred / prered if prered != 0 else 0.0
            if ratio <= 0.25:
                temp = 0.5 if actred >= 0 else 0.5 * dirder / (dirder + 0.5 * actred)
                if 0.1 * fnorm1 >= fnorm or temp < 0.1:
                    temp = 0.1
                delta = temp * min(delta, pnorm / 0.1)
                lam = lam / temp
            elif lam == 0.0 or ratio >= 0.75:
                delta = pnorm / 0.5
                lam = 0.5 * lam
            accepted = ratio >= 1e-4
            if accepted:
                u = trial.u
                state = trial
                xnorm = hypot(*map(operator.mul, d, u))
                first = False
                if callback is not None:
                    callback(state.x.copy(), state.rss)
            status = 0
            if abs(actred) <= ftol and prered <= ftol and 0.5 * ratio <= 1:
                status = 1
            if delta <= xtol * xnorm:
                status = 3 if status == 1 else 2
            if status:
                return result(state, status)
            if nfev >= max_nfev:
                return result(state, 5)
            if abs(actred) <= _EPS and prered <= _EPS and 0.5 * ratio <= 1:
                return result(state, 6)
            if delta <= _EPS * xnorm:
                return result(state, 7)
            if accepted:
                break
        first = False
