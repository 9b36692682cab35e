"""Huge loop bodies split into segment functions: same results as sympy.diff and NumPy.

The split path (codegen.lower._SplitFunctionEmitter) runs for bodies over
``SPLIT_ABOVE`` instructions; here the thresholds are lowered so small formulas,
whose reference is cheap, go through it with many segments.
"""

import numpy as np
import pytest
import sympy as sp

import codegen
import symdiff as sd
from codegen import lower
from symdiff.core.evaluate import evaluate

x, z, y = sp.symbols("x z y", real=True)
w = sd.vector("w", 5)
SIZES = [1, 7, 1000, 10007]


@pytest.fixture
def tiny_segments(monkeypatch):
    """Split every body into segments of three instructions (no cached code reused)."""
    monkeypatch.setattr(lower, "SPLIT_ABOVE", 5)
    monkeypatch.setattr(lower, "SEGMENT_INSTRUCTIONS", 3)
    codegen.clear_memory_cache()
    yield
    codegen.clear_memory_cache()


def _reference(loss, params, data, theta, cols):
    fns = sp.lambdify(list(params) + list(data), [loss] + [sp.diff(loss, p) for p in params], "numpy")
    n = len(next(iter(cols.values())))
    vals = [np.broadcast_to(np.asarray(v, dtype=float), (n,))
            for v in fns(*theta, *[cols[s] for s in data])]
    return np.mean(vals[0]), np.array([np.mean(g) for g in vals[1:]])


# a comparison and a Piecewise (boolean values cross segments), Max, a sample-invariant
# regularization term (added once at the end), a parameter with a constant derivative
LOSS = ((w[0] * sp.tanh(w[1] * x + w[2]) + sp.Max(0, w[3] * z) - y) ** 2
        + sp.Piecewise((w[0] * x, x > 0.3), (w[1] * z, True))
        + sp.Rational(1, 10) * (w[0] ** 2 + w[1] ** 2) + 3 * w[4])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_split_objective_matches_sympy_diff(tiny_segments, dtype, rtol, threads):
    obj = sd.Objective(LOSS, w, [x, z, y])
    assert len(obj.program().body) > lower.SPLIT_ABOVE
    kernel = obj.compile(dtype=dtype, threads=threads, cache=False)
    assert ".seg1" in str(kernel.llvm_ir)
    rng = np.random.default_rng(11)
    theta = np.array([0.8, -1.1, 0.3, 0.9, 0.5])
    for n in SIZES:
        cols = {s: rng.normal(size=n) for s in (x, z, y)}
        if dtype == np.float32:
            cols = {k: c.astype(np.float32).astype(np.float64) for k, c in cols.items()}
        want_loss, want_grad = _reference(LOSS, w, [x, z, y], theta, cols)
        got_loss, got_grad = kernel(theta, cols)
        assert got_loss == pytest.approx(want_loss, rel=rtol, abs=rtol), n
        np.testing.assert_allclose(got_grad, want_grad, rtol=rtol, atol=rtol, err_msg=f"n={n}")
        assert kernel.value(theta, cols) == pytest.approx(got_loss, rel=rtol)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_split_model_matches_numpy(tiny_segments, dtype, rtol):
    out = w[0] * sp.tanh(w[1] * x + w[2] * z) + sp.Max(0, x) + w[3] * sp.exp(-w[4] * z ** 2)
    model = sd.Model(out, params=w, inputs=[x, z])
    f = sp.lambdify(list(w) + [x, z], out, "numpy")
    pred = model.compile(dtype=dtype, cache=False)
    assert ".seg1" in str(pred.llvm_ir)
    rng = np.random.default_rng(5)
    theta = rng.normal(size=5)
    for n in SIZES:
        X = rng.normal(size=(n, 2))
        got = pred(theta, X)
        assert got.shape == (n,) and got.dtype == dtype
        np.testing.assert_allclose(got, f(*theta, X[:, 0], X[:, 1]), rtol=rtol, atol=rtol)


def test_a_large_network_is_split_and_matches_the_reference_interpreter():
    inputs = sd.vector("x", 3)
    out, params = sd.mlp(inputs, (28, 28))
    obj = sd.Objective((out - y) ** 2, params, list(inputs) + [y])
    program = obj.program()
    assert len(program.body) > lower.SPLIT_ABOVE
    kernel = obj.compile(cache=False)
    assert ".seg1" in str(kernel.llvm_ir)
    rng = np.random.default_rng(2)
    theta = rng.normal(scale=0.4, size=len(params))
    n = 1003
    cols = {s: rng.normal(size=n) for s in list(inputs) + [y]}
    want = [np.mean(v) for v in evaluate(program, theta, {s.name: c for s, c in cols.items()})]
    loss, grad = kernel(theta, cols)
    assert loss == pytest.approx(want[0], rel=1e-10)
    np.testing.assert_allclose(grad, want[1:], rtol=1e-9, atol=1e-12)
