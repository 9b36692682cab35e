"""Hessians and Hessian-vector products against sympy.hessian (symbolic) and its lambdify (compiled)."""

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import sympy as sp

import symdiff as sd
from primitive_table import PRIMITIVE_CASES, u, v
from symdiff.errors import DataError

a, b, c, d = sp.symbols("a b c d", real=True)
x, z = sp.symbols("x z", real=True)
_MODULES = [{"erf": scipy.special.erf, "sigmoid": scipy.special.expit,
             "softplus": lambda t: np.logaddexp(0.0, t)}, "numpy"]


def _no_dirac(m):
    """sympy writes second derivatives at kinks with DiracDelta: zero off the kink."""
    return m.replace(sp.DiracDelta, lambda *args: 0)


def _num(e, point):
    return complex(sp.N(e.subs(point), 30))


@pytest.mark.parametrize("name,expr,dom_u,dom_v", PRIMITIVE_CASES, ids=[c[0] for c in PRIMITIVE_CASES])
def test_hessian_matches_sympy_hessian(name, expr, dom_u, dom_v):
    wrt = [u] if dom_v is None else [u, v]
    ours = sd.hessian(expr, wrt)
    assert isinstance(ours, sp.MatrixBase) and ours.shape == (len(wrt), len(wrt))
    assert ours == ours.T
    ref = _no_dirac(sp.hessian(expr, wrt))
    rng = np.random.default_rng(len(name))
    for _ in range(3):
        point = {u: rng.uniform(*dom_u)}
        if dom_v is not None:
            point[v] = rng.uniform(*dom_v)
        for j in range(len(wrt)):
            for k in range(len(wrt)):
                got, want = _num(ours[j, k], point), _num(ref[j, k], point)
                assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (name, j, k, point)


def _random_expr(rng, syms, depth):
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.8:
            return syms[rng.integers(len(syms))]
        return sp.Rational(int(rng.integers(1, 9)), int(rng.integers(1, 5)))
    kind = rng.integers(8)
    e = _random_expr(rng, syms, depth - 1)
    if kind == 0:
        return e + _random_expr(rng, syms, depth - 1)
    if kind == 1:
        return e * _random_expr(rng, syms, depth - 1)
    if kind == 2:
        return e / (2 + sp.cos(_random_expr(rng, syms, depth - 1)))
    if kind == 3:
        return sp.tanh(e)
    if kind == 4:
        return sp.exp(sp.sin(e))
    if kind == 5:
        return sp.log(1 + e ** 2)
    if kind == 6:
        return sd.sigmoid(e)
    return sp.sqrt(1 + e ** 2)


@pytest.mark.parametrize("seed", range(12))
def test_random_compositions(seed):
    rng = np.random.default_rng(100 + seed)
    syms = sp.symbols("p q r", real=True)
    expr = _random_expr(rng, syms, depth=4)
    ours = sd.hessian(expr, syms)
    assert ours == ours.T
    ref = sp.hessian(expr, syms)
    for _ in range(2):
        point = {s: rng.uniform(-2, 2) for s in syms}
        for j in range(3):
            for k in range(j, 3):
                want = _num(ref[j, k], point)
                assert abs(_num(ours[j, k], point) - want) <= 1e-10 * max(1.0, abs(want)), \
                    (expr, j, k)


def test_hessian_simplified_and_in_users_symbols():
    p, q = sp.symbols("p q", positive=True)
    H = sd.hessian(sp.exp(p * q) + p ** 3, [p, q])
    assert sp.simplify(H - sp.hessian(sp.exp(p * q) + p ** 3, [p, q])) == sp.zeros(2, 2)
    assert H[0, 0].free_symbols <= {p, q}
    assert H[1, 1] == p ** 2 * sp.exp(p * q)
    assert sd.hessian("w**2*y", ["w"]) == sp.Matrix([[2 * sp.Symbol("y", real=True)]])


def test_objective_hessian_is_the_per_sample_hessian():
    w = sd.vector("w", 3)
    xs = sd.vector("x", 3)
    y = sp.Symbol("y", real=True)
    zlin = sum(wi * xi for wi, xi in zip(w, xs))
    obj = sd.Objective(sd.softplus(zlin) - y * zlin, list(w))
    H = obj.hessian()
    ref = sp.hessian(sp.log(1 + sp.exp(zlin)) - y * zlin, list(w))
    point = {s: float(t) for s, t in zip(list(w) + list(xs) + [y],
                                          [0.3, -0.2, 0.5, 1.0, -2.0, 0.7, 1.0])}
    np.testing.assert_allclose(np.array(H.subs(point), dtype=float),
                               np.array(ref.subs(point), dtype=float), rtol=1e-12)
    assert H == H.T


# -- compiled ------------------------------------------------------------------------

def _case_objective(expr):
    loss = expr.subs({u: a * x + b, v: c * z + d}, simultaneous=True)
    params = [p for p in (a, b, c, d) if p in loss.free_symbols]
    data = [s for s in (x, z) if s in loss.free_symbols]
    return loss, params, data


def _reference(loss, params, data, theta, cols):
    """Per-sample loss, gradient (n, p) and Hessian (n, p, p) from sympy.diff / sympy.hessian."""
    grads = [_no_dirac(sp.diff(loss, p)) for p in params]
    H = _no_dirac(sp.hessian(loss, params))
    fn = sp.lambdify(params + data, [loss] + grads + list(H), _MODULES)
    n = len(next(iter(cols.values())))
    with np.errstate(all="ignore"):
        vals = fn(*theta, *[cols[s] for s in data])
    vals = [np.broadcast_to(np.asarray(val, dtype=float), (n,)) for val in vals]
    p = len(params)
    return vals[0], np.stack(vals[1:1 + p], 1), np.stack(vals[1 + p:], 1).reshape(n, p, p)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,expr,dom_u,dom_v", PRIMITIVE_CASES, ids=[c[0] for c in PRIMITIVE_CASES])
def test_compiled_hessian_and_hvp_match_numpy(name, expr, dom_u, dom_v, dtype):
    loss, params, data = _case_objective(expr)
    obj = sd.Objective(loss, params, data)
    k = obj.compile(dtype=dtype, hessian=True)
    theta_full = np.array([1.1, 0.05, 0.9, -0.03])
    theta = np.array([theta_full[[a, b, c, d].index(p)] for p in params])
    rng = np.random.default_rng(11)
    rtol = 1e-9 if dtype == np.float64 else 3e-4
    for n in (1, 7, 1001):
        cols = {x: (rng.uniform(*dom_u, size=n) - theta_full[1]) / theta_full[0]}
        if dom_v is not None:
            cols[z] = (rng.uniform(*dom_v, size=n) - theta_full[3]) / theta_full[2]
        if dtype == np.float32:
            cols = {s: col.astype(np.float32) for s, col in cols.items()}
        cols = {s: col for s, col in cols.items() if s in data}
        L, G, H = _reference(loss, params, data, theta, {s: col.astype(float) for s, col in cols.items()})
        loss_k, grad_k, hess_k = k(theta, cols)
        assert hess_k.shape == (len(params),) * 2 and np.array_equal(hess_k, hess_k.T)
        scale = np.abs(H).mean(axis=0) + 1e-12
        assert loss_k == pytest.approx(L.mean(), rel=rtol, abs=rtol * np.abs(L).mean() + 1e-12)
        np.testing.assert_array_less(np.abs(grad_k - G.mean(0)), rtol * (np.abs(G).mean(0) + 1e-12))
        np.testing.assert_array_less(np.abs(hess_k - H.mean(0)), rtol * scale, err_msg=f"{name} n={n}")
        direction = rng.normal(size=len(params))
        want = np.einsum("ijk,k->ij", H, direction)
        got = k.hvp(theta, cols, direction)
        bound = rtol * (np.abs(H) @ np.abs(direction)).mean(0) + 1e-12
        np.testing.assert_array_less(np.abs(got - want.mean(0)), bound, err_msg=f"hvp {name} n={n}")


def _logistic_problem(n=2001, seed=0):
    rng = np.random.default_rng(seed)
    w = sd.vector("w", 4)
    xs = sd.vector("x", 3)
    y = sp.Symbol("y", real=True)
    zlin = w[0] + sum(wi * xi for wi, xi in zip(w[1:], xs))
    obj = sd.Objective(sd.softplus(zlin) - y * zlin + sp.Rational(1, 200) * sum(wi ** 2 for wi in w),
                       list(w))
    X = rng.normal(size=(n, 3))
    logits = 0.5 + X @ np.array([1.0, -2.0, 0.5])
    Y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(float)
    data = {**{s: X[:, i] for i, s in enumerate(xs)}, y: Y}
    return obj, data, X, Y


def test_bound_hessian_threads_and_first_order_calls():
    obj, data, X, Y = _logistic_problem(n=70001)
    theta = np.array([0.1, 0.2, -0.3, 0.4])
    one = obj.compile(hessian=True, threads=1)
    two = obj.compile(hessian=True, threads=2)
    bound = two.bind(data)
    L1, G1, H1 = one(theta, data)
    L2, G2, H2 = bound(theta)
    np.testing.assert_allclose(H1, H2, rtol=1e-11)
    Xa = np.column_stack([np.ones(len(Y)), X])
    pr = 1 / (1 + np.exp(-Xa @ theta))
    np.testing.assert_allclose(H2, (Xa.T * (pr * (1 - pr))) @ Xa / len(Y) + np.eye(4) / 100, rtol=1e-10)
    l, g = bound.loss_grad(theta)
    assert l == pytest.approx(L2, rel=1e-12) and bound.value(theta) == pytest.approx(l, rel=1e-12)
    np.testing.assert_allclose(g, G2, rtol=1e-11)
    direction = np.array([1.0, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(bound.hvp(theta, direction), H2 @ direction, rtol=1e-10)
    with pytest.raises(DataError, match="direction v"):
        bound.hvp(theta, direction[:3])
    with pytest.raises(DataError, match="'x1'"):
        one(theta, {**data, sd.vector("x", 3)[1]: np.full(70001, np.nan)})


def test_scipy_interop_lbfgsb_and_newton_cg():
    obj, data, X, Y = _logistic_problem()
    x0 = np.zeros(4)
    lb = scipy.optimize.minimize(obj.compile().bind(data), x0, jac=True, method="L-BFGS-B",
                                 options={"gtol": 1e-10, "ftol": 1e-15})
    bound = obj.compile(hessian=True).bind(data)
    ncg = scipy.optimize.minimize(obj.compile().bind(data), x0, jac=True, method="Newton-CG",
                                  hessp=bound.hvp, options={"xtol": 1e-12})
    # reference: the same penalized likelihood written in NumPy, solved by scipy's BFGS
    Xa = np.column_stack([np.ones(len(Y)), X])

    def f(t):
        zz = Xa @ t
        return np.mean(np.logaddexp(0, zz) - Y * zz) + t @ t / 200

    def g(t):
        return Xa.T @ (scipy.special.expit(Xa @ t) - Y) / len(Y) + t / 100

    ref = scipy.optimize.minimize(f, x0, jac=g, method="BFGS", options={"gtol": 1e-12})
    assert lb.success and ncg.success
    np.testing.assert_allclose(lb.x, ref.x, atol=1e-6)
    np.testing.assert_allclose(ncg.x, ref.x, atol=1e-7)
    assert ncg.nit < 20


def test_hessian_matrix_code_is_built_only_when_needed():
    obj, data, X, Y = _logistic_problem(n=101, seed=4)
    obj = sd.Objective(obj.loss, obj.params, obj.data)  # a fresh objective: nothing compiled yet
    k = obj.compile(hessian=True)
    theta, direction = np.array([0.1, -0.2, 0.3, 0.0]), np.array([1.0, 0.0, -1.0, 2.0])
    hv = k.hvp(theta, data, direction)
    assert not any(key.startswith("hessian_") for key in k.compile_times)
    H = k.hessian(theta, data)
    assert any(key.startswith("hessian_") for key in k.compile_times)
    np.testing.assert_allclose(hv, H @ direction, rtol=1e-12, atol=1e-15)


def test_many_parameters_assemble_the_hessian_from_hvp_columns():
    import codegen.second_order as so

    p = so.FUSED_HESSIAN_MAX_PARAMS + 2
    w, xs = sd.vector("w", p), sd.vector("x", 3)
    y = sp.Symbol("y", real=True)
    # a sum of p tanh units: every pair of weights interacts through the output
    out = sum(w[i] * sp.tanh(w[(i + 1) % p] * xs[i % 3]) for i in range(p))
    obj = sd.Objective((out - y) ** 2, list(w))
    rng = np.random.default_rng(5)
    n = 37
    X, Y = rng.normal(size=(n, 3)), rng.normal(size=n)
    data = {**{s: X[:, i] for i, s in enumerate(xs)}, y: Y}
    theta = rng.normal(scale=0.5, size=p)
    k = obj.compile(hessian=True)
    loss, grad, H = k(theta, data)
    assert not any(key.startswith("hessian_") for key in k.compile_times)  # no fused program
    assert np.array_equal(H, H.T)
    # reference: lambdify of the symbolic gradient, differentiated by central differences
    g = sp.lambdify([list(w), *xs, y], [sp.diff(obj.loss, wi) for wi in w], "numpy")

    def mean_grad(t):
        return np.array([np.mean(np.broadcast_to(v, (n,))) for v in g(t, X[:, 0], X[:, 1], X[:, 2], Y)])

    np.testing.assert_allclose(grad, mean_grad(theta), rtol=1e-10, atol=1e-12)
    h = 1e-5
    fd = np.column_stack([(mean_grad(theta + h * e) - mean_grad(theta - h * e)) / (2 * h)
                          for e in np.eye(p)])
    np.testing.assert_allclose(H, fd, atol=1e-6 * np.abs(fd).max())
