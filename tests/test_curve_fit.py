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
