"""sd.curve_fit as a drop-in for scipy.optimize.curve_fit, and NumPy tracing."""

import numpy as np
import pytest
import sympy as sp
from scipy.optimize import curve_fit as scipy_curve_fit

import symdiff as sd
from symdiff.fitting.tracing import TraceError, trace

TIGHT = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15)
rng = np.random.default_rng(1)
X = np.linspace(0, 4, 40)
Y = 2.5 * np.exp(-1.3 * X) + 0.5 + rng.normal(0, 0.05, X.size)


def decay(x, a, b, c):
    return a * np.exp(-b * x) + c


def _close(ours, ref, rtol=1e-6):
    """Same optimum (ours is the better converged; see test_least_squares)."""
    np.testing.assert_allclose(ours[0], ref[0], rtol=rtol)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"p0": [2, 1, 0]}, {"sigma": 0.05 + 0.01 * X},
                                {"sigma": 0.05 + 0.01 * X, "absolute_sigma": True},
                                {"bounds": ([0, 0, 0], [10, 10, 0.4])},
                                {"bounds": (0, np.inf), "p0": [1, 1, 1]}],
                         ids=["default", "p0", "sigma", "absolute_sigma", "bounds", "scalar_bounds"])
def test_drop_in_for_scipy(kw):
    ours = sd.curve_fit(decay, X, Y, **kw, **TIGHT)
    ref = scipy_curve_fit(decay, X, Y, **kw, **TIGHT)
    assert isinstance(ours, tuple) and len(ours) == 2
    assert ours[0].shape == (3,) and ours[1].shape == (3, 3)
    _close(ours, ref)


def test_two_dimensional_xdata():
    xdata = np.vstack([X, np.cos(X)])
    y = 0.7 * xdata[0] + 1.9 * np.sin(xdata[1]) + rng.normal(0, 0.01, X.size)

    def plane(x, a, b):
        return a * x[0] + b * np.sin(x[1])
    _close(sd.curve_fit(plane, xdata, y, **TIGHT), scipy_curve_fit(plane, xdata, y, **TIGHT))
    _close(sd.curve_fit("a*x0 + b*sin(x1)", xdata, y, **TIGHT), scipy_curve_fit(plane, xdata, y, **TIGHT))


def test_full_output_has_scipys_shape():
    popt, pcov, info, mesg, ier = sd.curve_fit(decay, X, Y, full_output=True)
    ref = scipy_curve_fit(decay, X, Y, full_output=True)
    assert len(ref) == 5 and ier in (1, 2, 3, 4) and isinstance(mesg, str)
    assert info["nfev"] > 0
    np.testing.assert_allclose(info["fvec"], decay(X, *popt) - Y, atol=1e-12)
    np.testing.assert_allclose(popt, ref[0], rtol=1e-6)


def _decay_jacobian(x, a, b, c):
    """d(decay)/d(a, b, c) by hand, shape (n, 3)."""
    e = np.exp(-b * x)
    return np.column_stack([e, -a * x * e, np.ones_like(x)])


def _r_from_minpack(fjac, ipvt, base):
    """R with the pivoting undone (J = Q R), from leastsq's fjac and ipvt as scipy reads them."""
    p = len(ipvt)
    r = np.triu(fjac.T[:p])
    R = np.zeros_like(r)
    R[:, np.asarray(ipvt) - base] = r
    return r, R


def test_full_output_lm_is_minpacks_layout():
    """fjac/ipvt/qtf as leastsq lays them out: R from them squares to JᵀJ at scipy's optimum
    (J by hand), and scipy's own cov_x recipe on them gives scipy's pcov."""
    from scipy.linalg.lapack import dtrtri
    popt, pcov, info, mesg, ier = sd.curve_fit(decay, X, Y, full_output=True, **TIGHT)
    ref = scipy_curve_fit(decay, X, Y, full_output=True, **TIGHT)
    assert list(info) == list(ref[2])            # fvec, nfev, fjac, ipvt, qtf, in scipy's order
    for key in ("fjac", "ipvt", "qtf", "fvec"):
        assert info[key].shape == ref[2][key].shape and info[key].dtype == ref[2][key].dtype, key
    base = int(ref[2]["ipvt"].min())             # 0 for scipy's C MINPACK, 1 for Fortran's
    assert sorted(info["ipvt"] - base) == [0, 1, 2]
    r, R = _r_from_minpack(info["fjac"], info["ipvt"], base)
    J = _decay_jacobian(X, *ref[0])
    np.testing.assert_allclose(R.T @ R, J.T @ J, rtol=1e-7)
    assert np.all(np.abs(np.diag(r))[:-1] >= np.abs(np.diag(r))[1:])   # pivoted: non-increasing
    # scipy's leastsq: invR[perm] = invR; cov_x = invR invRᵀ; curve_fit scales by s²
    invR, status = dtrtri(r)
    assert status == 0
    invR[info["ipvt"] - base] = invR.copy()
    s2 = float(info["fvec"] @ info["fvec"]) / (X.size - 3)
    np.testing.assert_allclose(invR @ invR.T * s2, pcov, rtol=1e-9)
    np.testing.assert_allclose(pcov, ref[1], rtol=1e-6)
    assert ier in (1, 2, 3, 4) and isinstance(mesg, str)
    if ier == ref[4]:
        assert mesg == ref[3]


def test_minpack_factorization_against_numpy_qr():
    """Away from the optimum (Qᵀf is not ~0 there): R and Qᵀf against NumPy's QR of the
    pivoted Jacobian, up to the sign of each row of R."""
    from symdiff.fitting.curve_fit_output import minpack_factorization, pivot_base
    J = _decay_jacobian(X, 1.0, 0.5, 0.2)
    f = decay(X, 1.0, 0.5, 0.2) - Y
    fjac, ipvt, qtf = minpack_factorization(J, f)
    assert fjac.shape == (3, X.size) and ipvt.dtype == np.int32
    r, R = _r_from_minpack(fjac, ipvt, pivot_base())
    np.testing.assert_allclose(R.T @ R, J.T @ J, rtol=1e-12)
    np.testing.assert_allclose(R.T @ qtf, J.T @ f, rtol=1e-10, atol=1e-12)
    Q, R_np = np.linalg.qr(J[:, ipvt - pivot_base()])
    signs = np.sign(np.diag(r)) * np.sign(np.diag(R_np))
    np.testing.assert_allclose(qtf * signs, Q.T @ f, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [{"bounds": ([0, 0, 0], [10, 10, 0.4])},
                                {"bounds": (0, np.inf), "p0": [1, 1, 1]},
                                {"method": "trf"}, {"method": "dogbox"}],
                         ids=["bounds", "scalar_bounds", "trf", "dogbox"])
def test_full_output_with_bounds_is_least_squares_layout(kw):
    """scipy runs least_squares when bounds are given (or trf/dogbox asked for): nfev and
    fvec only, and least_squares' status and message (1-4 success)."""
    from scipy.optimize._lsq.least_squares import TERMINATION_MESSAGES
    popt, _, info, mesg, ier = sd.curve_fit(decay, X, Y, full_output=True, **kw)
    ref = scipy_curve_fit(decay, X, Y, full_output=True, **kw)
    assert list(info) == list(ref[2]) == ["nfev", "fvec"]
    assert ier in (1, 2, 3, 4) and mesg == TERMINATION_MESSAGES[ier]
    np.testing.assert_allclose(info["fvec"], decay(X, *popt) - Y, atol=1e-12)


def test_full_output_reports_machine_precision_stops_as_success():
    """Our LM's codes 6-8 (a tolerance below machine precision: converged) keep scipy's
    meaning of ier: 6 -> 1 (ftol), 7 -> 2 (xtol), 8 -> 4 (gtol), with leastsq's messages."""
    import importlib
    cfm = importlib.import_module("symdiff.fitting.curve_fit")
    from symdiff.fitting.curve_fit_output import full_output, leastsq_message
    from symdiff.fitting.least_squares import solve_least_squares
    expr, params, inputs, _ = cfm._traced_model(decay, None, 3)
    fit = solve_least_squares(expr, cfm._TARGET, params, inputs, {"x": X, cfm._TARGET.name: Y},
                              np.array([1.0, 1.0, 0.0]), weighted=False, absolute_sigma=False,
                              bounds=None, loss="linear", method="lm", xtol=1e-8, ftol=1e-8,
                              gtol=1e-8, max_nfev=None, report=False)
    for status, ier in ((6, 1), (7, 2), (8, 4)):
        _, mesg, got = full_output(fit._replace(status=status), bounded=False, method="lm",
                                   ftol=1e-8, xtol=1e-8, gtol=1e-8, max_nfev=None)
        assert got == ier and mesg == leastsq_message(ier, 1e-8, 1e-8, 1e-8, None)


def test_formula_string_and_sympy_expression():
    ref = scipy_curve_fit(decay, X, Y, **TIGHT)
    _close(sd.curve_fit("a*exp(-b*x) + c", X, Y, **TIGHT), ref)
    a, b, c, x = sp.symbols("a b c x", real=True)
    _close(sd.curve_fit(a * sp.exp(-b * x) + c, X, Y, **TIGHT), ref)


def test_trf_and_dogbox_run_on_our_kernels():
    for method in ("trf", "dogbox"):
        _close(sd.curve_fit(decay, X, Y, method=method, **TIGHT),
               scipy_curve_fit(decay, X, Y, method=method, **TIGHT))


def test_numpy_functions_trace_through_the_table():
    x, a, b = sp.symbols("x a b", real=True)

    def f(x, a, b):
        return (np.sqrt(np.abs(x)) + np.tanh(a * x) + np.arctan(b) + np.power(x, 2) + np.log(b)
                + np.maximum(x, a) + np.cos(x) - np.sin(a) / 2.0 + 3 ** x)
    expr = trace(f, x, [a, b])
    want = (sp.sqrt(sp.Abs(x)) + sp.tanh(a * x) + sp.atan(b) + x ** 2 + sp.log(b) + sp.Max(x, a)
            + sp.cos(x) - sp.sin(a) / 2 + 3 ** x)
    assert sp.simplify(expr - want) == 0


def test_second_call_neither_traces_nor_compiles(monkeypatch):
    import sys
    import symdiff.models.residuals as residuals
    cf = sys.modules["symdiff.fitting.curve_fit"]

    def g(x, p, q):
        return p * np.exp(-q * x)
    sd.curve_fit(g, X, Y)
    calls = []
    monkeypatch.setattr(cf, "trace", lambda *a: calls.append("trace"))
    original_program = residuals.Residuals.program
    monkeypatch.setattr(residuals.Residuals, "program",
                        lambda self: (calls.append("program"), original_program(self))[1])
    sd.curve_fit(g, X, Y)
    assert "trace" not in calls and "program" not in calls


def test_changed_global_constant_is_traced_again():
    global SCALE
    SCALE = 1.0

    def h(x, a):
        return a * np.exp(-SCALE * x)
    first = sd.curve_fit(h, X, Y)[0]
    SCALE = 2.0
    second = sd.curve_fit(h, X, Y)[0]
    assert first[0] != second[0]
    np.testing.assert_allclose(second, scipy_curve_fit(h, X, Y)[0], rtol=1e-6)


def branchy(x, a, b):
    if a > 0:
        return a * x
    return b * x


def summing(x, a):
    return a * x / np.sum(x)


def flooring(x, a):
    return a * np.floor(x)


def converting(x, a):
    return a * float(x)


def looping(x, a):
    return sum(a * xi for xi in x)


@pytest.mark.parametrize("f,reason", [(branchy, "compares a traced value"),
                                      (summing, "np.sum"), (flooring, "np.floor"),
                                      (converting, "float"), (looping, "iterates")])
def test_untraceable_functions_are_refused_by_name(f, reason):
    with pytest.raises(TraceError) as err:
        sd.curve_fit(f, X, Y)
    msg = str(err.value)
    assert f.__name__ in msg and reason in msg and "formula" in msg
    assert isinstance(err.value, sd.UnsupportedError)


def test_bad_arguments():
    with pytest.raises(sd.DataError, match="samples"):
        sd.curve_fit(decay, X, Y[:-1])
    with pytest.raises(ValueError, match="p0 has 2 values"):
        sd.curve_fit(decay, X, Y, p0=[1, 1])
    with pytest.raises(TypeError, match="unexpected keyword"):
        sd.curve_fit(decay, X, Y, epsilon=3)
    with pytest.raises(sd.UnsupportedError, match="nan_policy"):
        sd.curve_fit(decay, X, Y, nan_policy="omit")
    with pytest.raises(sd.DataError):
        sd.curve_fit(decay, X, np.where(X > 2, np.nan, Y))
    with pytest.raises(sd.DataError, match="2-D covariance"):
        sd.curve_fit(decay, X, Y, sigma=np.eye(X.size))


def test_non_convergence_raises_runtime_error_like_scipy():
    with pytest.raises(RuntimeError, match="Optimal parameters not found"):
        sd.curve_fit(decay, X, Y, maxfev=3)
    with pytest.raises(RuntimeError):
        scipy_curve_fit(decay, X, Y, maxfev=3)
