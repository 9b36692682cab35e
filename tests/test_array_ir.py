"""The array IR contract (symdiff.core.ir docstring): shapes, ops, adjoints, batch semantics."""

import itertools

import numpy as np
import pytest

from symdiff import FormulaError
from symdiff.core.evaluate import evaluate
from symdiff.core.graph import Graph
from symdiff.core.ir import Instr, Program, linearize
from symdiff.core.reverse import reverse_gradient


def _mlp_program():
    g = Graph()
    W, b, s = g.symbol("W", (3, 4)), g.symbol("b", (3, 1)), g.symbol("s")
    x, y = g.symbol("x", (4, 1)), g.symbol("y", (3, 1))
    h = g.node("tanh", g.add(g.dot(W, x), b))
    r = g.sub(g.mul(s, h), y)
    loss = g.node("sum", g.square(r))
    grads = reverse_gradient(g, loss, [W, b, s])
    return linearize(g, [loss] + grads, ["loss", "dW", "db", "ds"], ["W", "b", "s"], ["x", "y"])


def test_mlp_program_matches_numpy_by_hand():
    p = _mlp_program()
    rng = np.random.default_rng(0)
    W, b, s = rng.normal(size=(3, 4)), rng.normal(size=(3, 1)), 1.3
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    loss, dW, db, ds = evaluate(p, [W, b, s], {"x": X, "y": Y})
    H = np.tanh(X @ W.T + b.T)
    R = s * H - Y
    D = 2 * R * s * (1 - H ** 2)
    np.testing.assert_allclose(loss, (R ** 2).sum(1))
    np.testing.assert_allclose(dW, D[:, :, None] * X[:, None, :])
    np.testing.assert_allclose(db, D[:, :, None])
    np.testing.assert_allclose(ds, (2 * R * H).sum(1))
    theta = np.concatenate([W.ravel(), b.ravel(), [s]])
    for a, c in zip(evaluate(p, theta, {"x": X.reshape(5, 4, 1), "y": Y}), [loss, dW, db, ds]):
        np.testing.assert_array_equal(a, c)
    assert p.shape("W") == (3, 4) and p.shape("s") == () and p.shape("loss") == ()
    assert "dot(W, x, False, False)" in str(p) and "# (3, 4)" in str(p)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_dot_adjoints_match_finite_differences(ta, tb):
    g = Graph()
    A = g.symbol("A", (2, 3)[::-1] if ta else (2, 3))
    B = g.symbol("B", (3, 4)[::-1] if tb else (3, 4))
    C = g.symbol("C", (2, 4))
    loss = g.node("sum", g.mul(g.node("sin", g.dot(A, B, ta, tb)), C))
    grads = reverse_gradient(g, loss, [A, B])
    p = linearize(g, [loss] + grads, ["loss", "dA", "dB"], ["A", "B"], ["C"])
    rng = np.random.default_rng(1)
    vals = [rng.normal(size=p.shape("A")), rng.normal(size=p.shape("B"))]
    data = {"C": rng.normal(size=(1, 2, 4))}
    _, dA, dB = (o[0] for o in evaluate(p, vals, data))
    for k, analytic in enumerate([dA, dB]):
        num = np.zeros_like(vals[k])
        for idx in np.ndindex(*vals[k].shape):
            hi = [v.copy() for v in vals]
            lo = [v.copy() for v in vals]
            hi[k][idx] += 1e-6
            lo[k][idx] -= 1e-6
            num[idx] = (evaluate(p, hi, data)[0][0] - evaluate(p, lo, data)[0][0]) / 2e-6
        np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-8)


def test_index_onehot_broadcast_eye_amax():
    g = Graph()
    A = g.symbol("A", (2, 2))
    e = g.node("eye", 2)
    m = g.node("detach", g.node("amax", A))
    loss = g.add(g.node("index", g.mul(A, e), 1, 1), g.mul(m, g.node("sum", A)))
    grads = reverse_gradient(g, loss, [A])
    p = linearize(g, [loss] + grads, ["loss", "dA"], ["A"], [])
    Av = np.array([[1.0, 2.0], [3.0, 4.0]])
    loss_v, dA = evaluate(p, [Av], {})
    assert loss_v == 4.0 + 4.0 * 10.0
    np.testing.assert_array_equal(dA, [[4.0, 4.0], [4.0, 5.0]])


def test_shape_mismatch_names_both_shapes():
    g = Graph()
    A, B = g.symbol("A", (2, 3)), g.symbol("B", (3, 2))
    with pytest.raises(FormulaError, match=r"\(2, 3\) and \(3, 2\)"):
        g.add(A, B)
    with pytest.raises(FormulaError, match=r"matrix product: shapes \(2, 3\) and \(2, 3\)"):
        g.dot(A, A)


def test_verify_checks_shapes():
    body = (Instr("t0", "dot", ("A", "x", False, False)),)
    shapes = (("A", (2, 3)), ("x", (3, 1)), ("t0", (3, 1)))
    with pytest.raises(ValueError, match="t0"):
        Program(("A",), ("x",), body, ("t0",), ("out",), shapes).verify()
    ok = (("A", (2, 3)), ("x", (3, 1)), ("t0", (2, 1)))
    Program(("A",), ("x",), body, ("t0",), ("out",), ok).verify()


def test_scalar_program_repr_has_no_shapes():
    p = Program(("w",), ("x",), (Instr("t0", "mul", ("w", "x")),), ("t0",), ("loss",))
    assert repr(p) == ("Program(params=('w',), data=('x',), body=(Instr(target='t0', op='mul', "
                       "args=('w', 'x')),), outputs=('t0',), labels=('loss',))")
    assert p.shape("t0") == ()
