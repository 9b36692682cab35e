"""Row loops of array kernels (codegen.lower_rows): tiny contractions unrolled, softmax
reductions per sample, bias and output-layer gradients accumulated per tile — against
NumPy written by hand and symdiff.core.evaluate (the NumPy reference of the array IR)."""

import numpy as np
import pytest

import codegen
from codegen.target import host_target
from symdiff.core.evaluate import evaluate
from symdiff.core.graph import Graph
from symdiff.core.ir import linearize
from symdiff.core.reverse import reverse_gradient

RNG = np.random.default_rng(12)


def _softmax_mlp(nin, nh, nout, act="tanh"):
    g = Graph()
    s = {n: g.symbol(n, sh) for n, sh in {"W1": (nh, nin), "b1": (nh, 1), "W2": (nout, nh),
                                          "b2": (nout, 1), "x": (nin, 1), "y": (nout, 1)}.items()}
    z1 = g.add(g.dot(s["W1"], s["x"]), s["b1"])
    h = g.node("max", z1, g.const(0.0)) if act == "relu" else g.node(act, z1)
    z = g.add(g.dot(s["W2"], h), s["b2"])
    m = g.node("detach", g.node("amax", z))
    e = g.node("exp", g.sub(z, g.node("broadcast", m, nout, 1)))
    loss = g.sub(g.add(m, g.node("log", g.node("sum", e))), g.node("sum", g.mul(s["y"], z)))
    params = [s[n] for n in ("W1", "b1", "W2", "b2")]
    grads = reverse_gradient(g, loss, params)
    return linearize(g, [loss] + grads, ["loss", "dW1", "db1", "dW2", "db2"],
                     ["W1", "b1", "W2", "b2"], ["x", "y"])


def _by_hand(theta, X, Y, dims, act="tanh"):
    nin, nh, nout = dims
    sizes = np.cumsum([nh * nin, nh, nout * nh])
    W1, b1 = theta[:sizes[0]].reshape(nh, nin), theta[sizes[0]:sizes[1]]
    W2, b2 = theta[sizes[1]:sizes[2]].reshape(nout, nh), theta[sizes[2]:]
    n = len(X)
    Z1 = X @ W1.T + b1
    H, dH = (np.tanh(Z1), 1 - np.tanh(Z1) ** 2) if act == "tanh" else \
        (np.maximum(Z1, 0), (Z1 > 0).astype(float))
    Z = H @ W2.T + b2
    Zs = Z - Z.max(1, keepdims=True)
    P = np.exp(Zs) / np.exp(Zs).sum(1, keepdims=True)
    loss = np.mean(np.log(np.exp(Zs).sum(1)) - (Zs * Y).sum(1))
    D2 = (P - Y) / n
    D1 = (D2 @ W2) * dH
    return loss, np.concatenate([(D1.T @ X).ravel(), D1.sum(0), (D2.T @ H).ravel(), D2.sum(0)])


def _problem(dims, n, seed=0):
    rng = np.random.default_rng(seed)
    nin, nh, nout = dims
    theta = rng.normal(size=nh * nin + nh + nout * nh + nout) * 0.4
    X = rng.normal(size=(n, nin))
    Y = np.eye(nout)[rng.integers(0, nout, n)]
    return theta, X, Y


def _check_against_hand(dims, n, act="tanh"):
    p = _softmax_mlp(*dims, act=act)
    theta, X, Y = _problem(dims, n, seed=n)
    loss, grad = _by_hand(theta, X, Y, dims, act)
    for dt, tol in ((np.float64, 1e-10), (np.float32, 3e-4)):
        k = codegen.compile_objective(p, dtype=dt, cache=False)
        got_loss, got_grad = k(theta, {"x": X, "y": Y})
        np.testing.assert_allclose(got_loss, loss, rtol=tol, atol=tol)
        np.testing.assert_allclose(got_grad, grad, rtol=tol, atol=tol * np.abs(grad).max())
    return k


def _row_steps(kernel):
    return [s for s in kernel.plan.regions if s[0] == "rows"]


needs_simd = pytest.mark.skipif(host_target().lanes(32) < 2, reason="row loops need SIMD lanes")


@needs_simd
@pytest.mark.parametrize("n", [1, 7, 1023, 1025, 1797])
def test_digits_sized_mlp_matches_numpy_by_hand(n):
    k = _check_against_hand((64, 32, 10), n)
    # the path under test: the 10-wide layer and its gradient are unrolled in row loops
    dots = [i for s in _row_steps(k) for i in s[1] if i.op == "dot"]
    assert len(dots) == 2
    kinds = {kind for terms in k.plan.terms for kind, _, _ in terms}
    assert {"rsum", "gemm"} <= kinds  # bias sums in the loops, the 64-wide input's GEMM
    if host_target().lanes(32) >= 16:  # AVX-512: the 10 x 32 output-layer gradient too
        assert "rgemm" in kinds


@needs_simd
@pytest.mark.parametrize("dims", [(4, 16, 3), (5, 8, 1), (9, 17, 16), (9, 16, 17), (3, 33, 8),
                                  (3, 7, 9), (20, 40, 2)])
def test_tiny_and_odd_widths_match_numpy_by_hand(dims):
    """A 4-wide input, a 1-wide output, widths at and past a vector of float32 or float64 lanes."""
    _check_against_hand(dims, 1030)


@needs_simd
def test_relu_comparisons_inside_row_loops():
    _check_against_hand((6, 12, 5), 301, act="relu")


@needs_simd
@pytest.mark.parametrize("dims", [(64, 32, 10), (8, 16, 4)])
def test_row_loops_match_the_reference_evaluator(dims):
    p = _softmax_mlp(*dims)
    theta, X, Y = _problem(dims, 517, seed=3)
    outs = evaluate(p, theta, {"x": X, "y": Y})
    ref = np.concatenate([o.reshape(len(o), -1).mean(0) for o in outs[1:]])
    for dt, tol in ((np.float64, 1e-10), (np.float32, 3e-4)):
        loss, grad = codegen.compile_objective(p, dtype=dt, cache=False)(theta, {"x": X, "y": Y})
        np.testing.assert_allclose(loss, outs[0].mean(), rtol=tol)
        np.testing.assert_allclose(grad, ref, rtol=tol, atol=tol * np.abs(ref).max())


@needs_simd
@pytest.mark.parametrize("n", [1797, 5001])
def test_row_loops_threads_one_and_two_give_identical_bits(n):
    p = _softmax_mlp(64, 32, 10)
    theta, X, Y = _problem((64, 32, 10), n, seed=1)
    data = {"x": X, "y": Y}
    for dt in (np.float64, np.float32):
        one = codegen.compile_objective(p, dtype=dt, threads=1, cache=False)(theta, data)
        two = codegen.compile_objective(p, dtype=dt, threads=2, cache=False)(theta, data)
        assert one[0] == two[0]
        np.testing.assert_array_equal(one[1], two[1])


@needs_simd
def test_row_loop_values_in_a_model_kernel():
    """Map mode: the softmax probabilities of each sample, computed by row loops."""
    g = Graph()
    W, b, x = g.symbol("W", (5, 7)), g.symbol("b", (5, 1)), g.symbol("x", (7, 1))
    z = g.add(g.dot(W, x), b)
    m = g.node("detach", g.node("amax", z))
    e = g.node("exp", g.sub(z, g.node("broadcast", m, 5, 1)))
    prob = g.mul(e, g.node("broadcast", g.div(g.const(1.0), g.node("sum", e)), 5, 1))
    p = linearize(g, [prob], ["p"], ["W", "b"], ["x"])
    theta = RNG.normal(size=40)
    X = RNG.normal(size=(333, 7))
    Z = X @ theta[:35].reshape(5, 7).T + theta[35:]
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        got = codegen.compile_model(p, dtype=dt, cache=False)(theta, {"x": X})
        np.testing.assert_allclose(got, P, rtol=tol, atol=tol)


def test_sigmoid_of_the_negated_input_joins_the_forward_loop():
    """A relu-sigmoid-softmax network: the backward pass's sigmoid(-z) is computed in the
    forward loop of sigmoid(z) (one pass less); gradients against NumPy by hand."""
    import sympy as sp

    import symdiff as sd
    M = sp.MatrixSymbol
    x, y = M("x", 6, 1), M("y", 3, 1)
    W1, b1, W2, b2 = M("W1", 20, 6), M("b1", 20, 1), M("W2", 20, 20), M("b2", 20, 1)
    W3, b3 = M("W3", 3, 20), M("b3", 3, 1)
    z = W3 * sd.sigmoid(W2 * sd.relu(W1 * x + b1) + b2) + b3
    obj = sd.Objective(sd.losses.softmax_cross_entropy(z, y), params=[W1, b1, W2, b2, W3, b3],
                       data=[x, y])
    rng = np.random.default_rng(5)
    n = 1025
    V = {W1: rng.normal(size=(20, 6)) * 0.5, b1: rng.normal(size=(20, 1)) * 0.1,
         W2: rng.normal(size=(20, 20)) * 0.3, b2: rng.normal(size=(20, 1)) * 0.1,
         W3: rng.normal(size=(3, 20)) * 0.5, b3: rng.normal(size=(3, 1)) * 0.1}
    X, Y = rng.normal(size=(n, 6)), np.eye(3)[rng.integers(0, 3, n)]
    A1 = X @ V[W1].T + V[b1].T
    H1 = np.maximum(A1, 0)
    H2 = 1 / (1 + np.exp(-(H1 @ V[W2].T + V[b2].T)))
    Z = H2 @ V[W3].T + V[b3].T
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    loss = np.mean(-np.log((P * Y).sum(1)))
    D3 = (P - Y) / n
    D2 = (D3 @ V[W3]) * H2 * (1 - H2)
    D1 = (D2 @ V[W2]) * (A1 > 0)
    expected = {W1: D1.T @ X, b1: D1.sum(0)[:, None], W2: D2.T @ H1, b2: D2.sum(0)[:, None],
                W3: D3.T @ H2, b3: D3.sum(0)[:, None]}
    program = obj.program()
    for dt, tol in ((np.float64, 1e-10), (np.float32, 3e-4)):
        k = codegen.compile_objective(program, dtype=dt, cache=False)
        got_loss, got_grad = k(obj.pack(V), {"x": X, "y": Y})
        np.testing.assert_allclose(got_loss, loss, rtol=tol)
        for p, g in obj.unpack(got_grad).items():
            np.testing.assert_allclose(g, expected[p], rtol=tol, atol=tol * np.abs(expected[p]).max())
    sigmoid_steps = [s for s in k.plan.regions if s[0] == "ew" and any(i.op == "sigmoid" for i in s[1])]
    assert len(sigmoid_steps) == 1 and sum(i.op == "sigmoid" for i in sigmoid_steps[0][1]) == 2


def test_repeated_calls_alternating_one_and_two_threads_give_identical_bits():
    """A small batch's kernel picks one thread or two by timing both (the first calls
    alternate); every call returns the same bits."""
    p = _softmax_mlp(64, 32, 10)
    theta, X, Y = _problem((64, 32, 10), 1797, seed=2)
    for dt in (np.float32, np.float64):
        bound = codegen.compile_objective(p, dtype=dt, threads=2, cache=False).bind({"x": X, "y": Y})
        first = bound(theta)
        for _ in range(12):
            again = bound(theta)
            assert again[0] == first[0]
            np.testing.assert_array_equal(again[1], first[1])
        if codegen.available_cores() > 1:  # else one slot: always one thread, nothing timed
            state = bound.kernel._timing._by_n[1797]
            assert state.calls == 13 and all(state.times)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_widths_and_batch_sizes_match_numpy_by_hand(seed):
    rng = np.random.default_rng(seed)
    dims = (int(rng.integers(1, 40)), int(rng.integers(1, 40)), int(rng.integers(1, 20)))
    n = int(rng.choice([1, 2, 7, 63, 1023, 1025, 2049]))
    _check_against_hand(dims, n, ["tanh", "relu"][seed % 2])
