"""sd.Model with matrix outputs compiled natively: (n, k) predictions per sample,
checked against NumPy written by hand and against symdiff.core.evaluate."""

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.core.evaluate import evaluate

M = sp.MatrixSymbol


def _mlp_by_hand(theta, X, act, softmax):
    W1, b1, W2, b2 = np.split(theta, np.cumsum([5 * 4, 5, 3 * 5]))
    H = act(X @ W1.reshape(5, 4).T + b1)
    Z = H @ W2.reshape(3, 5).T + b2
    if not softmax:
        return Z
    E = np.exp(Z - Z.max(1, keepdims=True))
    return E / E.sum(1, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 7, 1001, 5003])
@pytest.mark.parametrize("act,by_hand,softmax", [
    (sp.tanh, np.tanh, False),
    (sd.relu, lambda z: np.maximum(z, 0), True),
])
def test_vector_model_predicts_n_by_k(dtype, n, act, by_hand, softmax):
    x = M("x", 4, 1)
    out, params = sd.nets.mlp(x, (5,), activation=act, outputs=3,
                              output="softmax" if softmax else "linear")
    model = sd.Model(out, params, [x])
    rng = np.random.default_rng(n)
    theta = rng.normal(size=5 * 4 + 5 + 3 * 5 + 3)
    X = rng.normal(size=(n, 4))
    predict = model.compile(dtype=dtype)
    got = predict(theta, {x: X.astype(dtype)})
    assert got.shape == (n, 3) and got.dtype == dtype
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(got, _mlp_by_hand(theta, X, by_hand, softmax), rtol=rtol,
                               atol=rtol)
    ref = evaluate(model.program(), theta, {x: X})[0][:, :, 0]
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)
    assert predict is model.compile(dtype=dtype)
    np.testing.assert_array_equal(predict(theta, {"x": X.astype(dtype)}), got)
    if softmax:
        np.testing.assert_allclose(got.sum(1), 1, rtol=rtol)


def test_scalar_output_of_a_matrix_model():
    x, w = M("x", 3, 1), M("w", 3, 1)
    rng = np.random.default_rng(0)
    X, wv = rng.normal(size=(9, 3)), rng.normal(size=3)
    score = sd.Model(sd.dot(w, x), [w], [x]).compile()(wv, {x: X})
    assert score.shape == (9,)
    np.testing.assert_allclose(score, X @ wv, rtol=1e-12)


def test_model_predictor_names_bad_data():
    x = M("x", 4, 1)
    out, params = sd.nets.mlp(x, (5,), outputs=3)
    predict = sd.Model(out, params, [x]).compile()
    theta = np.zeros(5 * 4 + 5 + 3 * 5 + 3)
    with pytest.raises(sd.DataError, match="'x'"):
        predict(theta, {x: np.zeros((6, 5))})
    with pytest.raises(sd.DataError, match="theta"):
        predict(theta[:-1], {x: np.zeros((6, 4))})



def test_a_bare_array_is_the_data_symbols_entries_in_order():
    x, y = M("x", 4, 1), M("y", 3, 1)
    W, b = M("W", 3, 4), M("b", 3, 1)
    rng = np.random.default_rng(1)
    X, Y, theta = rng.normal(size=(6, 4)), rng.normal(size=(6, 3)), rng.normal(size=15)
    predict = sd.Model(W * x + b, [W, b], [x]).compile()
    by_hand = X @ theta[:12].reshape(3, 4).T + theta[12:]
    np.testing.assert_allclose(predict(theta, X), by_hand, rtol=1e-12)
    kernel = sd.Objective(sd.losses.mse(W * x + b, y), [W, b], [x, y]).compile()
    loss, grad = kernel(theta, np.hstack([X, Y]))
    assert loss == kernel(theta, {x: X, y: Y})[0]
    np.testing.assert_allclose(loss, np.mean((by_hand - Y) ** 2), rtol=1e-12)
    with pytest.raises(sd.DataError, match=r"shape \(n, 7\): the entries of x \(4, 1\), y \(3, 1\)"):
        kernel(theta, X)

def test_minimize_matrix_objective_from_default_and_mapping_starts():
    rng = np.random.default_rng(3)
    x, y = M("x", 3, 1), M("y", 1, 1)
    A, c = M("A", 1, 3), sp.Symbol("c", real=True)
    r = A * x + c * sp.OneMatrix(1, 1) - y
    obj = sd.Objective(sd.dot(r, r), params=[A, c], data=[x, y])
    X = rng.normal(size=(200, 3))
    Y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.01 * rng.normal(size=200)
    reference = np.linalg.lstsq(np.column_stack([X, np.ones(200)]), Y, rcond=None)[0]
    for x0 in (None, {A: np.ones((1, 3))}, {"c": 2.0}):
        res = sd.minimize(obj, {x: X, y: Y[:, None]}, x0=x0, tol=1e-10)
        assert res.success
        np.testing.assert_allclose(res.x, reference, rtol=1e-6, atol=1e-8)
        assert res.params[A].shape == (1, 3) and res.params[c] == pytest.approx(reference[3])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reduction_right_after_a_gemm(dtype):
    # sum(A x) and amax(A x) start with a GEMM and need a stack slot: the LLVM IR stays valid
    x, A = M("x", 3, 1), M("A", 2, 3)
    rng = np.random.default_rng(4)
    X, Av = rng.normal(size=(7, 3)), rng.normal(size=(2, 3))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for loss in (sd.sum(A * x), sd.dot(sp.OneMatrix(2, 1), A * x)):
        loss_value, grad = sd.Objective(loss, params=[A], data=[x]).compile(dtype=dtype, cache=False)(
            Av.ravel(), {x: X.astype(dtype)})
        assert loss_value == pytest.approx((X @ Av.T).sum(1).mean(), rel=rtol)
        np.testing.assert_allclose(grad, np.tile(X.mean(0), 2), rtol=rtol)
    peak = sd.Model(sd.logsumexp(A * x), [A], [x]).compile(dtype=dtype, cache=False)(Av.ravel(), {x: X})
    Z = X @ Av.T
    np.testing.assert_allclose(peak, np.log(np.exp(Z).sum(1)), rtol=rtol)


def test_declared_but_unused_matrix_symbols_keep_their_shapes():
    # theta holds B's 4 values (as pack says) and its gradient is a 2x2 zero; unused data y
    # is still validated as (n, 2)
    x, y, A, B = M("x", 3, 1), M("y", 2, 1), M("A", 2, 3), M("B", 2, 2)
    obj = sd.Objective(sd.sum(A * x), params=[A, B], data=[x, y])
    theta = obj.pack({A: np.ones((2, 3)), B: np.ones((2, 2))})
    X = np.random.default_rng(5).normal(size=(6, 3))
    assert obj.gradient()[1] == sp.ZeroMatrix(2, 2)
    for dtype in (np.float64, np.float32):
        loss, grad = obj.compile(dtype=dtype, cache=False)(theta, {x: X, y: np.ones((6, 2))})
        assert loss == pytest.approx(2 * X.sum(1).mean(), rel=1e-5)
        np.testing.assert_allclose(obj.unpack(grad)[A], np.tile(X.mean(0), (2, 1)), rtol=1e-5)
        np.testing.assert_array_equal(obj.unpack(grad)[B], np.zeros((2, 2)))
    with pytest.raises(sd.DataError, match="'y'"):
        obj.compile()(theta, {x: X, y: np.ones((6, 3))})
