"""sd.minimize against closed-form optima and independent NumPy/scipy references."""

import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import sympy as sp

import symdiff as sd
from symdiff.errors import FormulaError, SymdiffWarning

METHODS = ["lbfgs", "bfgs", "cg", "newton", "trust-exact", "trust-krylov", "newton-cg"]
#: how close each method's default stopping rule gets to the optimum on these
#: well-conditioned problems (first-order methods stop on a gradient tolerance)
ATOL = {"lbfgs": 1e-6, "bfgs": 1e-5, "cg": 1e-5, "newton": 1e-9, "trust-exact": 1e-8,
        "trust-krylov": 1e-5, "newton-cg": 1e-7}


def _linear_problem(n=503, seed=0):
    rng = np.random.default_rng(seed)
    w = sd.vector("w", 4)
    xs = sd.vector("x", 3)
    y = sp.Symbol("y", real=True)
    model = w[0] + sum(wi * xi for wi, xi in zip(w[1:], xs))
    obj = sd.Objective((model - y) ** 2, list(w))
    X = rng.normal(size=(n, 3))
    Y = 1.5 + X @ np.array([2.0, -1.0, 0.25]) + rng.normal(scale=0.3, size=n)
    data = {**{s: X[:, i] for i, s in enumerate(xs)}, y: Y}
    return obj, data, np.column_stack([np.ones(n), X]), Y


def _logistic_problem(n=801, seed=1):
    rng = np.random.default_rng(seed)
    w = sd.vector("w", 3)
    xs = sd.vector("x", 2)
    y = sp.Symbol("y", real=True)
    z = w[0] + w[1] * xs[0] + w[2] * xs[1]
    obj = sd.Objective(sd.softplus(z) - y * z, list(w))
    X = rng.normal(size=(n, 2))
    Y = (rng.random(n) < scipy.special.expit(-0.3 + X @ np.array([1.2, -0.8]))).astype(float)
    data = {xs[0]: X[:, 0], xs[1]: X[:, 1], y: Y}
    return obj, data, np.column_stack([np.ones(n), X]), Y


@pytest.mark.parametrize("method", METHODS)
def test_linear_least_squares_reaches_lstsq(method):
    obj, data, A, Y = _linear_problem()
    want = np.linalg.lstsq(A, Y, rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SymdiffWarning)
        res = sd.minimize(obj, data, method=method)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, want, atol=ATOL[method])
    assert res.fun == pytest.approx(np.mean((A @ want - Y) ** 2), rel=1e-9)
    assert res.jac.shape == (4,) and res.nit >= 1
    assert res.params == dict(zip(obj.params, res.x)) and res.method == method
    assert "params" in repr(res) and "w0" in repr(res)


@pytest.mark.parametrize("method", METHODS)
def test_logistic_regression_reaches_maximum_likelihood(method):
    obj, data, A, Y = _logistic_problem()

    def nll(t):
        z = A @ t
        return np.mean(np.logaddexp(0, z) - Y * z)

    def grad(t):
        return A.T @ (scipy.special.expit(A @ t) - Y) / len(Y)

    def hess(t):
        p = scipy.special.expit(A @ t)
        return (A.T * (p * (1 - p))) @ A / len(Y)

    ref = np.zeros(3)  # iteratively reweighted least squares (Newton) in NumPy
    for _ in range(30):
        ref = ref - np.linalg.solve(hess(ref), grad(ref))
    assert np.max(np.abs(grad(ref))) < 1e-14
    ref = scipy.optimize.OptimizeResult(x=ref, fun=nll(ref))
    res = sd.minimize(obj, data, x0=np.zeros(3), method=method)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, ref.x, atol=ATOL[method])
    assert res.fun == pytest.approx(ref.fun, rel=1e-10)


def test_newton_converges_quadratically():
    obj, data, A, Y = _logistic_problem()
    res = sd.minimize(obj, data, method="newton", x0=np.zeros(3))
    assert res.success and res.nit <= 8
    assert np.max(np.abs(res.jac)) <= 1e-9


def test_non_convergence_warns_and_says_so():
    obj, data, A, Y = _logistic_problem()
    for method in ("lbfgs", "newton", "trust-exact"):
        with pytest.warns(SymdiffWarning, match=f"method='{method}'.*did not converge"):
            res = sd.minimize(obj, data, method=method, maxiter=1)
        assert not res.success


def test_x0_mapping_callback_and_progress():
    obj, data, A, Y = _linear_problem()
    w0 = obj.params[0]
    seen = []
    res = sd.minimize(obj, data, x0={w0: 1.5, "w1": 2.0}, callback=lambda r: seen.append(r.fun),
                      progress=True)
    assert res.success and len(seen) == res.nit
    assert seen == sorted(seen, reverse=True)  # L-BFGS-B decreases the loss every iteration
    with pytest.raises(FormulaError, match="not parameters"):
        sd.minimize(obj, data, x0={"q": 1.0})
    with pytest.raises(FormulaError, match="one value per parameter"):
        sd.minimize(obj, data, x0=[1.0, 2.0])
    with pytest.raises(ValueError, match="unknown method"):
        sd.minimize(obj, data, method="adam")
    with pytest.raises(FormulaError, match="sd.Objective"):
        sd.minimize("w*x", data)


def test_callback_stop_iteration_stops_newton():
    obj, data, A, Y = _logistic_problem()

    def stop(r):
        raise StopIteration

    with pytest.warns(SymdiffWarning, match="did not converge"):
        res = sd.minimize(obj, data, method="newton", callback=stop)
    assert res.nit == 1 and not res.success
