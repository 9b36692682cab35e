"""sd.least_squares against scipy.optimize.curve_fit and NIST's certified values."""

import json
import warnings

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from nls_problems import read_nist

TIGHT = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15)

# (formula, numpy function, true params, x range)
MODELS = [
    ("a*exp(-b*x) + c", lambda x, a, b, c: a * np.exp(-b * x) + c, [2.5, 1.3, 0.5], (0, 4)),
    ("Vmax*S/(Km + S)", lambda S, Vmax, Km: Vmax * S / (Km + S), [12.0, 3.5], (0.2, 30)),
    ("a*exp(-b*x) + c*sin(d*x + g)", lambda x, a, b, c, d, g: a * np.exp(-b * x) + c * np.sin(d * x + g),
     [1.5, 0.3, 0.7, 2.1, 0.2], (0, 5)),
    ("(a + b*x)/(1 + c*x + d*x**2)", lambda x, a, b, c, d: (a + b * x) / (1 + c * x + d * x ** 2),
     [1.0, 0.5, 0.2, 0.05], (0, 4)),
]


def _data(model, n=60, seed=0, noise=0.05):
    formula, f, truth, (lo, hi) = model
    rng = np.random.default_rng(seed)
    x = np.linspace(lo, hi, n)
    y = f(x, *truth) + rng.normal(0, noise, n)
    return x, y


def _curve_fit_pcov(formula, xname, params, theta, x, y, sigma, absolute):
    """curve_fit's pcov formula in NumPy at ``theta``: J by lambdify of sympy.diff, then
    V·S⁻²·Vᵀ from its SVD, times χ²/dof unless absolute_sigma."""
    expr = sd.parse_formula(formula)
    syms = [sp.Symbol(p, real=True) for p in params]
    xs = sp.Symbol(xname, real=True)
    f = sp.lambdify([syms, xs], expr)
    jac = [sp.lambdify([syms, xs], sp.diff(expr, s)) for s in syms]
    w = 1.0 / sigma if sigma is not None else np.ones_like(x)
    r = (f(theta, x) - y) * w
    J = np.column_stack([np.broadcast_to(g(theta, x), x.shape) * w for g in jac])
    _, s, Vt = np.linalg.svd(J, full_matrices=False)
    pcov = (Vt.T / s ** 2) @ Vt
    return pcov if absolute else pcov * (r @ r) / (len(x) - len(params))


@pytest.mark.parametrize("model", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("weighting", ["none", "sigma", "absolute_sigma"])
def test_estimates_and_covariance_match_scipy_curve_fit(model, weighting):
    """Same optimum as curve_fit from the same start (ours at least as low: scipy stops a
    little earlier on the 4- and 5-parameter models), and the same pcov as curve_fit
    computes at our optimum (restarted there, so both use the Jacobian at one point)."""
    from scipy.optimize import curve_fit
    formula, f, truth, _ = model
    x, y = _data(model)
    xname = "S" if "S" in formula else "x"
    p0 = np.array(truth) * 1.2
    sigma = 0.05 + 0.02 * np.abs(np.sin(x)) if weighting != "none" else None
    absolute = weighting == "absolute_sigma"
    params = [p for p in sd.models.parse.names_in_order(formula) if p != xname]
    res = sd.least_squares(formula, {xname: x, "y": y}, "y", dict(zip(params, p0)),
                           sigma=sigma, absolute_sigma=absolute, **TIGHT)
    assert res.success
    popt, _ = curve_fit(f, x, y, p0=p0, sigma=sigma, absolute_sigma=absolute, **TIGHT)
    w = 1.0 / sigma if sigma is not None else 1.0

    def chisqr(t):
        r = (f(x, *t) - y) * w
        return float(r @ r)
    assert chisqr(res.x) <= chisqr(popt) * (1 + 1e-12)
    np.testing.assert_allclose(res.x, popt, rtol=1e-5)
    # curve_fit's pcov comes from MINPACK's last Jacobian, one iterate before its answer
    _, scipy_pcov = curve_fit(f, x, y, p0=res.x, sigma=sigma, absolute_sigma=absolute, **TIGHT)
    np.testing.assert_allclose(res.covariance, scipy_pcov, rtol=1e-4)
    pcov = _curve_fit_pcov(formula, xname, params, res.x, x, y, sigma, absolute)
    np.testing.assert_allclose(res.covariance, pcov, rtol=1e-9)
    np.testing.assert_allclose([res.stderr[p] for p in params], np.sqrt(np.diag(pcov)), rtol=1e-9)
    assert res.chisqr == pytest.approx(chisqr(res.x), rel=1e-9)
    assert res.dof == len(x) - len(params)
    assert res.redchi == pytest.approx(res.chisqr / res.dof)


def test_misra1a_from_the_published_start_reaches_certified_values_and_stderrs():
    d = read_nist("Misra1a")
    res = sd.least_squares("b1*(1-exp(-b2*x))", {"x": d.x, "y": d.y}, "y", {"b1": 500, "b2": 1e-4},
                           **TIGHT)
    np.testing.assert_allclose(res.x, d.certified, rtol=1e-8)
    np.testing.assert_allclose([res.stderr["b1"], res.stderr["b2"]], d.certified_stderr, rtol=1e-6)
    assert res.rss == pytest.approx(d.rss, rel=1e-8)


def test_result_attributes_and_statistics():
    x, y = _data(MODELS[0])
    res = sd.least_squares("y ~ a*exp(-b*x) + c", {"x": x, "y": y}, None, {"a": 1, "b": 1, "c": 0})
    a = sp.Symbol("a", real=True)
    assert res.params["a"] == res.params[a] == res.x[0]
    assert list(res.stderr) == list(res.params)
    n, p = len(x), 3
    yhat = res.predict({"x": x})
    rss = float(((y - yhat) ** 2).sum())
    assert res.rss == pytest.approx(rss, rel=1e-9) and res.chisqr == pytest.approx(rss, rel=1e-9)
    assert res.r2 == pytest.approx(1 - rss / ((y - y.mean()) ** 2).sum(), rel=1e-12)
    assert res.aic == pytest.approx(n * np.log(rss / n) + 2 * p, rel=1e-12)
    assert res.bic == pytest.approx(n * np.log(rss / n) + np.log(n) * p, rel=1e-12)
    np.testing.assert_allclose(np.diag(res.correlation), 1.0)
    assert res.nfev > 0 and res.method == "lm"
    json.dumps(res.to_dict())


def test_report_lists_values_errors_correlations_and_statistics():
    x, y = _data(MODELS[0])
    res = sd.least_squares("a*exp(-b*x) + c", {"x": x, "y": y}, "y", {"a": 1, "b": 1, "c": 0})
    text = str(res)
    for p in "abc":
        v, e = res.params[p], res.stderr[p]
        assert f"{p} = {v: .8g} +/- {e:.6g} ({abs(e / v) * 100:.2f}%)" in text
    assert "reduced chi-square" in text and "R-squared" in text and "Akaike" in text
    big = [(i, j) for i in range(3) for j in range(i + 1, 3) if abs(res.correlation[i, j]) >= 0.1]
    assert text.count("C(") == len(big) > 0


def test_array_data_and_array_p0():
    x, y = _data(MODELS[1])
    by_dict = sd.least_squares("Vmax*S/(Km + S)", {"S": x, "v": y}, "v", {"Vmax": 10, "Km": 1})
    by_array = sd.least_squares("Vmax*S/(Km + S)", np.column_stack([x, y]), "v", [10, 1],
                                params=["Vmax", "Km"])
    np.testing.assert_allclose(by_array.x, by_dict.x, rtol=1e-12)


def test_bounds_match_scipy():
    from scipy.optimize import curve_fit
    formula, f, truth, _ = MODELS[0]
    x, y = _data(MODELS[0])
    lower, upper = [0, 0, 0], [10, 10, 0.4]
    popt, pcov = curve_fit(f, x, y, p0=[1, 1, 0.1], bounds=(lower, upper), **TIGHT)
    res = sd.least_squares(formula, {"x": x, "y": y}, "y", {"a": 1, "b": 1, "c": 0.1},
                           bounds=(lower, upper), **TIGHT)
    assert res.params["c"] == pytest.approx(0.4, abs=1e-7)
    np.testing.assert_allclose(res.x, popt, rtol=1e-6)


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_robust_losses_match_scipy_least_squares(loss):
    from scipy.optimize import least_squares
    formula, f, truth, _ = MODELS[0]
    x, y = _data(MODELS[0])
    y[::10] += 3.0   # outliers
    ref = least_squares(lambda t: f(x, *t) - y, [1, 1, 0], loss=loss, **TIGHT)
    res = sd.least_squares(formula, {"x": x, "y": y}, "y", [1, 1, 0], params=["a", "b", "c"],
                           loss=loss, **TIGHT)
    assert res.method == "trf" and res.loss == loss
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-6)


def test_non_convergence_is_reported_and_warned():
    d = read_nist("MGH10")
    with pytest.warns(sd.SymdiffWarning, match="did not converge"):
        res = sd.least_squares("b1 * exp(b2/(x+b3))", {"x": d.x, "y": d.y}, "y",
                               {"b1": 2, "b2": 4e5, "b3": 2.5e4}, max_nfev=5)
    assert not res.success and "max_nfev" in res.message
    assert "converged          = False" in str(res)


def test_bad_input_is_a_clear_error():
    x, y = _data(MODELS[0])
    with pytest.raises(sd.DataError, match="missing data column"):
        sd.least_squares("a*exp(-b*x) + c", {"t": x, "y": y}, "y", {"a": 1, "b": 1, "c": 0})
    with pytest.raises(sd.FormulaError, match="no start"):
        sd.least_squares("a*exp(-b*x) + c", {"x": x, "y": y}, "y", {"a": 1, "b": 1},
                         params=["a", "b", "c"])
    with pytest.raises(sd.DataError, match="sigma"):
        sd.least_squares("a*exp(-b*x) + c", {"x": x, "y": y}, "y", {"a": 1, "b": 1, "c": 0},
                         sigma=-np.ones_like(x))
    with pytest.raises(ValueError, match="unknown loss"):
        sd.least_squares("a*x", {"x": x, "y": y}, "y", {"a": 1}, loss="l1")


@pytest.mark.parametrize("name,start", [("MGH09", 0), ("MGH17", 0), ("Thurber", 0), ("Eckerle4", 0)])
def test_hard_nist_problems_through_the_compiled_kernel(name, start):
    """The ill-conditioned iterates go through the kernel's streaming QR of the Jacobian;
    MINPACK stops far from the optimum on MGH09 and MGH17 from NIST's first start."""
    from nls_problems import NIST_MODELS
    d = read_nist(name)
    res = sd.least_squares(NIST_MODELS[name].replace("**", "^"), {"x": d.x, "y": d.y}, "y",
                           dict(zip(d.params, d.starts[start])), **TIGHT)
    assert res.success, res.message
    assert res.rss == pytest.approx(d.rss, rel=1e-8)
    np.testing.assert_allclose(res.x, d.certified, rtol=1e-6)
    np.testing.assert_allclose([res.stderr[p] for p in d.params], d.certified_stderr, rtol=1e-4)
