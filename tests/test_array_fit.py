"""sd.fit on matrix formulas: flat theta, dict init, mini-batches of (n, k) data."""

import numpy as np
import pytest
import sympy as sp

import symdiff as sd

M = sp.MatrixSymbol


def _blobs(n=300, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(k, d))
    labels = rng.integers(0, k, size=n)
    return centers[labels] + rng.normal(size=(n, d)), np.eye(k)[labels], labels


def _classifier(d=6, hidden=8, k=3):
    x, y = M("x", d, 1), M("y", k, 1)
    W1, b1, W2, b2 = M("W1", hidden, d), M("b1", hidden, 1), M("W2", k, hidden), M("b2", k, 1)
    z = W2 * sd.relu(W1 * x + b1) + b2
    obj = sd.Objective(sd.losses.softmax_cross_entropy(z, y), [W1, b1, W2, b2], [x, y])
    return obj, x, y


@pytest.mark.parametrize("batch_size", [None, 32])
def test_fit_trains_a_softmax_classifier(batch_size):
    obj, x, y = _classifier()
    X, Y, labels = _blobs()
    result = sd.fit(obj, {x: X, y: Y}, optimizer="adam", lr=0.05, epochs=60 if batch_size else 150,
                    batch_size=batch_size, progress=False, seed=1)
    loss = result.history.train_loss
    assert loss[-1] < 0.2 * loss[0]
    v = obj.unpack(result.params)
    H = np.maximum(0, X @ v[obj.params[0]].T + v[obj.params[1]].T)
    Z = H @ v[obj.params[2]].T + v[obj.params[3]].T
    assert (Z.argmax(1) == labels).mean() > 0.95


def test_fit_accepts_a_dict_of_arrays_as_init_and_validation():
    obj, x, y = _classifier()
    X, Y, _ = _blobs()
    W1 = obj.params[0]
    start = np.full((8, 6), 0.1)
    result = sd.fit(obj, {x: X, y: Y}, epochs=0, init={W1: start}, progress=False)
    np.testing.assert_array_equal(obj.unpack(result.params)[W1], start)
    assert not obj.unpack(result.params)[obj.params[1]].any()  # biases start at zero
    result = sd.fit(obj, {x: X, y: Y}, epochs=3, validation=0.2, progress=False)
    assert len(result.history.val_loss) == 3 and np.isfinite(result.history.val_loss).all()
    with pytest.raises(sd.DataError, match="'W1' has shape"):
        sd.fit(obj, {x: X, y: Y}, epochs=1, init={W1: np.zeros((6, 8))}, progress=False)
    with pytest.raises(sd.DataError, match=r"'x' has per-sample shape \(6, 1\)"):
        sd.fit(obj, {x: X[:, :5], y: Y}, epochs=1, progress=False)


def test_matrix_mlp_model_has_vector_outputs_and_trains():
    x = M("x", 6, 1)
    logits, params = sd.mlp(x, (8,), activation=sd.relu, outputs=3)
    assert [p.shape for p in params] == [(8, 6), (8, 1), (3, 8), (3, 1)]
    model = sd.Model(logits, params, [x])
    obj = model.objective("y", loss="softmax_cross_entropy")
    y = obj.data[1]
    assert y.shape == (3, 1)
    X, Y, labels = _blobs()
    result = sd.fit(obj, {x: X, "y": Y}, lr=0.05, epochs=100, progress=False)
    probs_model = sd.Model(sd.softmax(logits), params, [x])
    from symdiff.core.evaluate import evaluate
    P = evaluate(probs_model.program(), result.params, {x: X})[0][:, :, 0]
    assert P.shape == (300, 3) and np.allclose(P.sum(1), 1)
    assert (P.argmax(1) == labels).mean() > 0.95
    assert str(obj.gradient()[1]) == "HadamardProduct(W2.T*(-y + softmax(z)), step.(W1*x + b1))"
    np.testing.assert_allclose(probs_model.compile()(result.params, {x: X}), P, rtol=1e-12)


def test_scalar_mlp_unchanged():
    u, v = sp.symbols("u v", real=True)
    out, params = sd.mlp([u, v], (3,))
    assert len(params) == 3 * 2 + 3 + 3 + 1 and isinstance(out, sp.Expr)
    with pytest.raises(ValueError, match="MatrixSymbol"):
        sd.mlp([u, v], (3,), outputs=2)
