"""``curve_fit(..., full_output=True)``: scipy's ``(infodict, mesg, ier)`` for our fits.

scipy returns two shapes. Unbounded ``method="lm"`` (MINPACK's ``lmder``/``lmdif`` through
``leastsq``): ``infodict`` holds ``fvec``, ``nfev``, ``fjac``, ``ipvt`` and ``qtf``, where
``fjac`` (p, n) is the transposed output of a QR factorization with column pivoting of
the final Jacobian (``R`` in the upper triangle of ``fjac.T[:p]``, Householder vectors
below), ``ipvt`` the pivot order and ``qtf`` the first p entries of ``Qᵀ fvec``; ``ier``
is MINPACK's ``info`` (1–4 success) with its message. With bounds, or ``method="trf"``/
``"dogbox"`` (``least_squares``): ``infodict`` holds ``nfev`` and ``fvec``; ``ier`` and
``mesg`` are ``least_squares``' ``status`` (1–4 success) and message.

Our Levenberg–Marquardt reports MINPACK's codes; its 6–8 (a tolerance below machine
precision: converged as far as doubles allow) are successes here, so they are reported as
the success they imply (6 → 1 ftol, 7 → 2 xtol, 8 → 4 gtol) to keep scipy's meaning of
``ier``. SciPy's C translation of MINPACK (1.15) numbers ``ipvt`` from 0, the Fortran
original from 1: we follow the installed scipy.
"""

from __future__ import annotations

import numpy as np

#: our MINPACK info codes 6-8 (converged to machine precision) as the success they imply
_AS_SUCCESS = {6: 1, 7: 2, 8: 4}
#: MINPACK info -> least_squares status (gtol 1, ftol 2, xtol 3, both 4, max_nfev 0)
_TO_LEAST_SQUARES = {1: 2, 2: 3, 3: 4, 4: 1, 5: 0}

LEAST_SQUARES_MESSAGES = {
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}


def leastsq_message(ier: int, ftol: float, xtol: float, gtol: float, maxfev) -> str:
    """scipy.optimize.leastsq's message for MINPACK's ``info`` (same text and format)."""
    return {
        1: "Both actual and predicted relative reductions in the sum of squares\n"
           f"  are at most {ftol:f}",
        2: f"The relative error between two consecutive iterates is at most {xtol:f}",
        3: "Both actual and predicted relative reductions in the sum of squares\n"
           f"  are at most {ftol:f} and the relative error between two consecutive "
           f"iterates is at \n  most {xtol:f}",
        4: "The cosine of the angle between func(x) and any column of the\n"
           f"  Jacobian is at most {gtol:f} in absolute value",
        5: f"Number of calls to function has reached maxfev = {maxfev}.",
    }[ier]


def pivot_base() -> int:
    """0 when the installed scipy numbers ``ipvt`` from 0 (its C MINPACK, 1.15 on), else 1."""
    import scipy
    major, minor = (int(v) for v in scipy.__version__.split(".")[:2])
    return 0 if (major, minor) >= (1, 15) else 1


def minpack_factorization(J, fvec):
    """``(fjac, ipvt, qtf)`` in leastsq's layout for the Jacobian ``J`` (n, p) and the
    residuals ``fvec`` (n,): ``J[:, perm] = Q R`` by LAPACK's pivoted QR (``geqp3``, the
    column-norm pivoting of MINPACK's ``qrfac``)."""
    from scipy.linalg import qr
    from scipy.linalg.lapack import dormqr
    J = np.asarray(J, dtype=float)
    n, p = J.shape
    (raw, tau), _, perm = qr(J, mode="raw", pivoting=True)
    k = tau.shape[0]
    if k:
        qtr, _, info = dormqr("L", "T", raw[:, :k], tau, np.asarray(fvec, float).reshape(n, 1),
                              lwork=max(1, 64))
        if info != 0:
            raise ValueError(f"LAPACK dormqr failed (info {info})")
        qtf = qtr[:p, 0].copy()
    else:
        qtf = np.zeros(0)
    if qtf.shape[0] < p:  # fewer samples than parameters
        qtf = np.concatenate([qtf, np.zeros(p - qtf.shape[0])])
    fjac = np.ascontiguousarray(raw.T)
    ipvt = (perm + pivot_base()).astype(np.int32)
    return fjac, ipvt, qtf


def full_output(fit, *, bounded, method, ftol, xtol, gtol, max_nfev):
    """``(infodict, mesg, ier)`` as scipy's ``curve_fit`` returns them for this fit
    (``fit``: the solver's :class:`~symdiff.fitting.least_squares.RawFit`)."""
    fvec = fit.bound.residuals(fit.x)
    if method != "lm":          # scipy's least_squares ran: its own status and message
        return {"nfev": fit.nfev, "fvec": fvec}, fit.message, fit.status
    info = _AS_SUCCESS.get(fit.status, fit.status)
    if bounded:                 # scipy would have run least_squares(method="trf")
        status = _TO_LEAST_SQUARES[info]
        return {"nfev": fit.nfev, "fvec": fvec}, LEAST_SQUARES_MESSAGES[status], status
    fjac, ipvt, qtf = minpack_factorization(fit.bound.jacobian(fit.x), fvec)
    maxfev = max_nfev if max_nfev is not None else 100 * (len(fit.x) + 1)
    infodict = {"fvec": fvec, "nfev": fit.nfev, "fjac": fjac, "ipvt": ipvt, "qtf": qtf}
    return infodict, leastsq_message(info, ftol, xtol, gtol, maxfev), info
