"""Residuals and the Gauss-Newton kernel against NumPy (sympy.lambdify of sympy.diff)."""

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.errors import DataError, FormulaError
from symdiff.models.residuals import Residuals

a, b, c, d, e = sp.symbols("a b c d e", real=True)
x, y, s = sp.symbols("x y sigma", real=True)

# (name, residual, params, theta, x domain)
MODELS = [
    ("exp_rise", b * (1 - sp.exp(-c * x)) - y, [b, c], [2.0, 0.4], (0.0, 10.0)),
    ("michaelis_menten_weighted", (a * x / (b + x) - y) / s, [a, b], [11.0, 3.0], (0.1, 20.0)),
    ("exp_sin", a * sp.exp(-b * x) + c * sp.sin(d * x + e) - y, [a, b, c, d, e],
     [1.5, 0.3, 0.7, 2.1, 0.2], (0.0, 5.0)),
    ("rational", (a + b * x) / (1 + c * x + d * x ** 2) - y, [a, b, c, d], [1.0, 0.5, 0.2, 0.05],
     (0.0, 4.0)),
    ("linear_offset", a * x + b - y, [a, b], [0.7, -1.2], (-3.0, 3.0)),
]
SIZES = [1, 7, 1001, 40003]


def _data(dom, n, rng):
    cols = {x: rng.uniform(*dom, size=n), y: rng.normal(0.5, 1.0, size=n),
            s: rng.uniform(0.5, 2.0, size=n)}
    return cols


def _reference(expr, params, theta, cols):
    """r (n,), J (n, p) by lambdify of the residual and of sympy.diff."""
    data = sorted(expr.free_symbols - set(params), key=lambda t: t.name)
    fn = sp.lambdify(params + data, [expr] + [sp.diff(expr, p) for p in params], "numpy")
    n = len(cols[x])
    vals = [np.broadcast_to(np.asarray(v, dtype=float), (n,))
            for v in fn(*theta, *[np.asarray(cols[t], dtype=float) for t in data])]
    return vals[0], np.stack(vals[1:], axis=1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name,expr,params,theta,dom", MODELS, ids=[m[0] for m in MODELS])
def test_gauss_newton_sums_match_numpy(name, expr, params, theta, dom, n, dtype):
    rng = np.random.default_rng(n)
    cols = _data(dom, n, rng)
    R = Residuals(expr, params)
    cols = {k: v for k, v in cols.items() if k in R.data}
    if dtype == np.float32:  # the kernel sees float32-rounded data; so does the reference
        cols = {k: v.astype(np.float32) for k, v in cols.items()}
    r, J = _reference(expr, params, theta, cols)
    k = R.compile(dtype=dtype, threads=2)
    rss, jtr, jtj = k(np.array(theta), cols)
    rtol = 1e-10 if dtype == np.float64 else 3e-5
    assert isinstance(rss, float)
    assert jtr.shape == (len(params),) and jtj.shape == (len(params),) * 2
    np.testing.assert_allclose(rss, r @ r, rtol=rtol)
    scale_r = np.sqrt(r @ r) * np.sqrt((J * J).sum(axis=0))  # Cauchy-Schwarz bound of |J^T r|
    np.testing.assert_array_less(np.abs(jtr - J.T @ r), rtol * scale_r + 1e-300)
    np.testing.assert_allclose(jtj, J.T @ J, rtol=rtol, atol=rtol * np.abs(J.T @ J).max())
    assert np.array_equal(jtj, jtj.T)
    # per-sample views, and the bound form gives the same numbers
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(k.residuals(theta, cols), r, **tol)
    Jk = k.jacobian(theta, cols)
    assert Jk.shape == (n, len(params))
    np.testing.assert_allclose(Jk, J, **tol)
    bound = k.bind(cols)
    b_rss, b_jtr, b_jtj = bound(theta)
    assert b_rss == rss and np.array_equal(b_jtr, jtr) and np.array_equal(b_jtj, jtj)
    # value() is a separately compiled function: float32 rounding may differ by an ulp or so
    vtol = 1e-12 if dtype == np.float64 else 1e-6
    assert bound.value(theta) == pytest.approx(rss, rel=vtol)
    assert k.value(theta, cols) == pytest.approx(rss, rel=vtol)
    np.testing.assert_array_equal(bound.residuals(theta), k.residuals(theta, cols))
    np.testing.assert_array_equal(bound.jacobian(theta), Jk)


def test_sums_not_means_and_threads_agree():
    rng = np.random.default_rng(3)
    cols = {x: rng.uniform(0, 4, 70001), y: rng.normal(size=70001)}
    R = Residuals(a * sp.exp(-b * x) - y, [a, b])
    one = R.compile(threads=1)(np.array([1.0, 0.5]), cols)
    two = R.compile(threads=2)(np.array([1.0, 0.5]), cols)
    r = np.exp(-0.5 * cols[x]) - cols[y]
    assert one[0] == pytest.approx(r @ r, rel=1e-11)   # a sum over 70001 samples, not a mean
    for u, v in zip(one, two):
        np.testing.assert_allclose(u, v, rtol=1e-11)


def test_jacobian_is_readable_and_equals_sympy_diff():
    expr = (a * x / (b + x) - y) / s
    R = Residuals(expr, [a, b])
    J = R.jacobian()
    assert len(J) == 2
    for p, j in zip([a, b], J):
        assert sp.simplify(j - sp.diff(expr, p)) == 0
    assert sp.count_ops(J[0]) <= sp.count_ops(sp.diff(expr, a))


def test_reexported_and_defaults():
    R = sd.Residuals("a*x + b - y", ["a", "b"])
    assert [p.name for p in R.params] == ["a", "b"]
    assert [d.name for d in R.data] == ["x", "y"]
    k = R.compile()
    rss, jtr, jtj = k([1.0, 0.0], {"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 4.0]})
    assert rss == 1.0
    np.testing.assert_allclose(jtr, [-3.0, -1.0])
    np.testing.assert_allclose(jtj, [[14.0, 6.0], [6.0, 3.0]])
    assert R.compile() is k  # compiled once per dtype and thread count


def test_bad_input_names_the_problem():
    R = Residuals(a * x - y, [a])
    k = R.compile()
    with pytest.raises(DataError, match="'y'"):
        k([1.0], {"x": [1.0, 2.0]})
    with pytest.raises(DataError, match="'y'"):
        k([1.0], {"x": [1.0, 2.0], "y": [1.0]})
    with pytest.raises(DataError, match="'x'"):
        k([1.0], {"x": [1.0, np.nan], "y": [1.0, 2.0]})
    with pytest.raises(DataError, match="theta"):
        k([1.0, 2.0], {"x": [1.0], "y": [1.0]})
    with pytest.raises(DataError, match="'x'"):
        k.bind({"x": [1.0, np.inf], "y": [1.0, 2.0]}).value([1.0])
    with pytest.raises(FormulaError, match="neither"):
        Residuals(a * x - y, [a], [x])
    with pytest.raises(FormulaError, match="at least one"):
        Residuals(x - y, [])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("block_rows", [1, 7, 1000, 65536])
def test_streaming_qr_factors_the_jacobian(block_rows, dtype):
    expr, params, theta = MODELS[2][1], MODELS[2][2], np.array(MODELS[2][3])
    rng = np.random.default_rng(9)
    cols = {k: v.astype(dtype) for k, v in _data((0.0, 5.0), 1001, rng).items() if k in (x, y)}
    r, J = _reference(expr, params, theta, cols)
    k = Residuals(expr, params).compile(dtype=dtype)
    rss, R, qtr = k.qr(theta, cols, block_rows=block_rows)
    assert R.shape == (5, 5) and qtr.shape == (5,) and np.array_equal(R, np.triu(R))
    rtol = 1e-11 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(R.T @ R, J.T @ J, rtol=rtol, atol=rtol * np.abs(J.T @ J).max())
    np.testing.assert_allclose(R.T @ qtr, J.T @ r, rtol=rtol, atol=rtol * np.abs(J).sum(0).max() * np.abs(r).max())
    assert rss == pytest.approx(r @ r, rel=rtol)
    # the Gauss-Newton step from R equals lstsq's
    np.testing.assert_allclose(np.linalg.solve(R, -qtr), np.linalg.lstsq(J, -r, rcond=None)[0],
                               rtol=1e-6 if dtype == np.float64 else 1e-2, atol=1e-8)
    b_rss, b_R, b_qtr = k.bind(cols).qr(theta, block_rows=block_rows)
    assert b_rss == rss and np.array_equal(b_R, R) and np.array_equal(b_qtr, qtr)


def test_streaming_qr_keeps_the_digits_normal_equations_lose():
    """A degree-6 polynomial on [1, 2]: cond(J) ~ 1e7, so J^T J has cond ~ 1e14. One
    Gauss-Newton step from zero solves this linear problem; compare both ways of taking it
    with the solution in 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    coeffs = sp.symbols("a0:7", real=True)
    R = Residuals(sum(c * x ** k for k, c in enumerate(coeffs)) - y, list(coeffs))
    kernel = R.compile()
    rng = np.random.default_rng(0)
    X = np.linspace(1.0, 2.0, 1001)
    Y = np.polyval(rng.normal(size=7)[::-1], X) + rng.normal(scale=1e-3, size=X.size)
    data = {x: X, y: Y}
    zero = np.zeros(7)
    _, jtr, jtj = kernel(zero, data)
    _, Rm, qtr = kernel.qr(zero, data, block_rows=97)
    normal = -np.linalg.solve(jtj, jtr)
    streamed = -np.linalg.solve(Rm, qtr)
    with mpmath.workdps(50):  # mpmath's precision is global: other tests' references rely on theirs
        A = mpmath.matrix([[mpmath.mpf(float(t)) ** j for j in range(7)] for t in X])
        b = mpmath.matrix([mpmath.mpf(float(t)) for t in Y])
        exact = np.array(mpmath.lu_solve(A.T * A, A.T * b), dtype=float)

    def error(z):
        return np.abs(z - exact).max() / np.abs(exact).max()

    assert error(streamed) < 1e-8            # measured 1.8e-10 (lstsq: 1.1e-11)
    assert error(normal) > 100 * error(streamed)  # measured 2.0e-4
