"""Compiled kernels against a NumPy evaluation (sympy.lambdify of sympy.diff) of the same formulas."""

import platform

import numpy as np
import pytest
import scipy.special
import sympy as sp

import symdiff as sd
from primitive_table import PRIMITIVE_CASES, u, v

a, b, c, d = sp.symbols("a b c d", real=True)
x, z = sp.symbols("x z", real=True)
SIZES = [1, 7, 1000, 10007]
_MODULES = [{"erf": scipy.special.erf, "sigmoid": scipy.special.expit,
             "softplus": lambda t: np.logaddexp(0.0, t)}, "numpy"]


def _case_objective(expr):
    """Each primitive applied to data through parameters: u = a*x + b, v = c*z + d."""
    loss = expr.subs({u: a * x + b, v: c * z + d}, simultaneous=True)
    params = [p for p in (a, b, c, d) if p in loss.free_symbols]
    data = [s for s in (x, z) if s in loss.free_symbols]
    return loss, params, data


def _reference(loss, params, data, theta, cols):
    # sympy.diff writes the derivative of sign/Heaviside with DiracDelta: zero off the kink
    grads = [sp.diff(loss, p).replace(sp.DiracDelta, lambda *args: 0) for p in params]
    fns = sp.lambdify(params + data, [loss] + grads, _MODULES)
    n = len(next(iter(cols.values())))
    with np.errstate(all="ignore"):
        vals = fns(*theta, *[cols[s] for s in data])
    vals = [np.broadcast_to(np.asarray(val, dtype=float), (n,)) for val in vals]
    return np.mean(vals[0]), np.array([np.mean(g) for g in vals[1:]])


def _data(dom_u, dom_v, n, rng, theta):
    # choose x so that u = a*x + b falls in u's domain, likewise z for v
    ua = rng.uniform(*dom_u, size=n)
    cols = {x: (ua - theta[1]) / theta[0]}
    if dom_v is not None:
        cols[z] = (rng.uniform(*dom_v, size=n) - theta[3]) / theta[2]
    return cols


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,expr,dom_u,dom_v", PRIMITIVE_CASES, ids=[c[0] for c in PRIMITIVE_CASES])
def test_kernel_matches_numpy(name, expr, dom_u, dom_v, dtype):
    loss, params, data = _case_objective(expr)
    obj = sd.Objective(loss, params, data)
    kernel = obj.compile(dtype=dtype)
    rng = np.random.default_rng(7)
    theta_full = np.array([1.1, 0.05, 0.9, -0.03])
    theta = np.array([theta_full[[a, b, c, d].index(p)] for p in params])
    # float64: libmvec is accurate to a few ulp, sums to ~n ulp. float32: inputs are rounded to
    # 24 bits before the kernel sees them, so compare against float32-rounded data with a tolerance
    # of the order of float32 epsilon times the condition of the formula.
    rtol, atol = (1e-9, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
    for n in SIZES:
        cols = _data(dom_u, dom_v, n, rng, theta_full)
        if dtype == np.float32:
            cols = {k: col.astype(np.float32).astype(np.float64) for k, col in cols.items()}
        want_loss, want_grad = _reference(loss, params, data, theta, cols)
        got_loss, got_grad = kernel(theta, cols)
        assert got_loss == pytest.approx(want_loss, rel=rtol, abs=atol), (name, n)
        np.testing.assert_allclose(got_grad, want_grad, rtol=rtol, atol=atol, err_msg=f"{name} n={n}")
        assert kernel.value(theta, cols) == pytest.approx(got_loss, rel=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_give_the_same_answer(threads):
    w0, w1 = sp.symbols("w0 w1", real=True)
    obj = sd.Objective((w0 * sp.sin(w1 * x) - z) ** 2, [w0, w1], [x, z])
    rng = np.random.default_rng(3)
    n = 200_003
    cols = {x: rng.normal(size=n), z: rng.normal(size=n)}
    theta = np.array([0.7, 1.3])
    want = _reference(obj.loss, [w0, w1], [x, z], theta, cols)
    got = obj.compile(threads=threads)(theta, cols)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10)


def test_model_predictions_match_numpy():
    w = sd.vector("w", 3)
    out = w[0] * sp.tanh(w[1] * x + w[2] * z) + sp.Max(0, x)
    model = sd.Model(out, params=w, inputs=[x, z])
    f = sp.lambdify(list(w) + [x, z], out, "numpy")
    rng = np.random.default_rng(5)
    theta = rng.normal(size=3)
    for dtype, rtol in [(np.float64, 1e-12), (np.float32, 1e-5)]:
        pred = model.compile(dtype=dtype)
        for n in SIZES:
            X = rng.normal(size=(n, 2))
            got = pred(theta, X)
            assert got.shape == (n,) and got.dtype == dtype
            np.testing.assert_allclose(got, f(*theta, X[:, 0], X[:, 1]), rtol=rtol, atol=rtol)


def test_data_as_2d_array_and_names():
    w0, w1 = sp.symbols("w0 w1", real=True)
    obj = sd.Objective((w0 * x + w1 - z) ** 2, [w0, w1], [x, z])
    k = obj.compile()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(101, 2))
    by_array = k([0.3, -0.2], X)
    by_names = k([0.3, -0.2], {"x": X[:, 0], "z": X[:, 1]})
    by_fortran = k([0.3, -0.2], np.asfortranarray(X))
    assert by_array[0] == by_names[0] == by_fortran[0]
    np.testing.assert_array_equal(by_array[1], by_names[1])


def test_bound_kernel_matches_checked_call():
    w0, w1 = sp.symbols("w0 w1", real=True)
    obj = sd.Objective(sd.softplus(w0 * x + w1) - z * (w0 * x + w1), [w0, w1], [x, z])
    k = obj.compile()
    rng = np.random.default_rng(2)
    cols = {x: rng.normal(size=32), z: (rng.random(32) > 0.5).astype(float)}
    bound = k.bind(cols)
    for theta in rng.normal(size=(5, 2)):
        l1, g1 = bound(theta)
        l2, g2 = k(theta, cols)
        assert l1 == l2
        np.testing.assert_array_equal(g1, g2)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 vector registers")
def test_kernel_is_vectorized():
    w0, w1 = sp.symbols("w0 w1", real=True)
    k = sd.Objective((w0 * sp.exp(-w1 * x) - z) ** 2, [w0, w1], [x, z]).compile()
    asm = k.asm
    assert k.lanes >= 2
    # packed double arithmetic on xmm/ymm/zmm registers, and no scalar exp call in the loop
    assert any(op in asm for op in ("vfmadd", "vmulpd", "mulpd")), "no packed arithmetic"
    assert any(r in asm for r in ("%zmm", "%ymm", "%xmm"))
    if k.lanes > 1 and "_ZGV" in k.llvm_ir:
        assert "_ZGV" in asm  # vector exp from libmvec


def test_overflow_prone_inputs_stay_finite():
    w = sp.Symbol("w", real=True)
    obj = sd.Objective(sp.log(1 + sp.exp(w * x)) - z * w * x, [w], [x, z])
    k = obj.compile()
    for xv, want_loss, want_grad in [(1000.0, 1000.0, 1000.0), (-1000.0, 0.0, 0.0)]:
        loss, g = k([1.0], {x: np.array([xv]), z: np.array([0.0])})
        assert loss == pytest.approx(want_loss) and g[0] == pytest.approx(want_grad)
    sig = sd.Objective(1 / (1 + sp.exp(-w * x)), [w], [x]).compile()
    loss, g = sig([1.0], {x: np.array([1000.0, -1000.0])})
    assert loss == pytest.approx(0.5) and np.isfinite(g).all()


class TestBadInput:
    @pytest.fixture(scope="class")
    @classmethod
    def kernel(cls):  # a classmethod: pytest 9.1 deprecates class-scoped fixtures on instances
        w0, w1 = sp.symbols("w0 w1", real=True)
        return sd.Objective((w0 * x + w1 - z) ** 2, [w0, w1], [x, z]).compile()

    def test_missing_column(self, kernel):
        with pytest.raises(sd.DataError, match="'z'"):
            kernel([1.0, 2.0], {x: np.ones(3)})

    def test_length_mismatch(self, kernel):
        with pytest.raises(sd.DataError, match="'z'"):
            kernel([1.0, 2.0], {x: np.ones(3), z: np.ones(4)})

    def test_wrong_theta_length(self, kernel):
        with pytest.raises(ValueError, match="2 parameters"):
            kernel([1.0], {x: np.ones(3), z: np.ones(3)})

    @pytest.mark.parametrize("bad", [np.ones(3, dtype=complex), np.array(["a", "b", "c"]),
                                     np.array([object()] * 3)])
    def test_bad_dtype(self, kernel, bad):
        with pytest.raises(TypeError, match="'x'"):
            kernel([1.0, 2.0], {x: bad, z: np.ones(3)})

    def test_two_dimensional_column(self, kernel):
        with pytest.raises(sd.DataError, match="1-D"):
            kernel([1.0, 2.0], {x: np.ones((3, 2)), z: np.ones(3)})

    def test_empty_batch(self, kernel):
        with pytest.raises(sd.DataError, match="empty"):
            kernel([1.0, 2.0], {x: np.ones(0), z: np.ones(0)})

    def test_nan_in_data_is_named(self, kernel):
        col = np.ones(50)
        col[17] = np.nan
        with pytest.raises(sd.DataError, match="'x'.*row 17"):
            kernel([1.0, 2.0], {x: col, z: np.ones(50)})

    def test_nan_theta(self, kernel):
        with pytest.raises(sd.DataError, match="w1"):
            kernel([1.0, np.nan], {x: np.ones(3), z: np.ones(3)})

    def test_wrong_2d_shape(self, kernel):
        with pytest.raises(sd.DataError, match=r"\(n, 2\)"):
            kernel([1.0, 2.0], np.ones((5, 3)))

    def test_integer_and_noncontiguous_data_are_converted(self, kernel):
        X = np.arange(20, dtype=np.int64)
        Z = np.arange(40, dtype=np.float64)[::2]
        got = kernel([1.0, 2.0], {x: X, z: Z})
        want = np.mean((X + 2.0 - Z) ** 2)
        assert got[0] == pytest.approx(want)

    def test_unsupported_dtype_for_compile(self):
        w = sp.Symbol("w", real=True)
        with pytest.raises(TypeError, match="float32 or float64"):
            sd.Objective(w * x, [w], [x]).compile(dtype=np.int32)


def test_llvm_ir_is_exposed():
    w = sp.Symbol("w", real=True)
    k = sd.Objective((w * x) ** 2, [w], [x]).compile()
    assert "define void @" in k.llvm_ir and "fmul" in k.llvm_ir
    assert set(k.compile_times) >= {"differentiate", "lower_to_llvm"}


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_sample_invariant_terms_are_added_once(dtype, rtol):
    """A penalty on the parameters is summed as n*penalty outside the loop; same result."""
    w = sd.vector("w", 3)
    loss = (w[0] * x + w[1] * z + w[2] - 1) ** 2 + sd.l2(w, 0.1) - sd.l1(w[:2], 0.05) + 0.5
    obj = sd.Objective(loss, w, [x, z])
    rng = np.random.default_rng(11)
    cols = {x: rng.normal(size=1001), z: rng.normal(size=1001)}
    if dtype == np.float32:
        cols = {k: c.astype(np.float32).astype(np.float64) for k, c in cols.items()}
    theta = rng.normal(size=3)
    want = _reference(loss, list(w), [x, z], theta, cols)
    got = obj.compile(dtype=dtype)(theta, cols)
    assert got[0] == pytest.approx(want[0], rel=rtol)
    np.testing.assert_allclose(got[1], want[1], rtol=rtol, atol=rtol)
