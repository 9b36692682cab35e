"""Native array kernels (codegen.lower_array, codegen.array_kernel) against symdiff.core.evaluate,
the NumPy reference of the array IR, and against NumPy written by hand."""

import itertools

import numpy as np
import pytest

import codegen
from symdiff.errors import DataError, DataTypeError
from symdiff.core.evaluate import evaluate
from symdiff.core.graph import Graph
from symdiff.core.ir import Instr, Program, linearize
from symdiff.core.reverse import reverse_gradient

RNG = np.random.default_rng(0)


def _program(build, params, data):
    """Program of loss = build(g, symbols) and its gradient, params/data: {name: shape}."""
    g = Graph()
    sym = {n: g.symbol(n, s) for n, s in {**params, **data}.items()}
    loss = build(g, sym)
    grads = reverse_gradient(g, loss, [sym[p] for p in params])
    return linearize(g, [loss] + grads, ["loss"] + [f"d{p}" for p in params], list(params), list(data))


def _reference(p, theta, data):
    outs = evaluate(p, theta, data)
    if not p.data:
        return float(outs[0]), np.concatenate([np.ravel(o) for o in outs[1:]])
    return outs[0].mean(), np.concatenate([o.reshape(len(o), -1).mean(0) for o in outs[1:]])


def _theta(p, scale=0.5):
    n = sum(int(np.prod(p.shape(q))) if p.shape(q) else 1 for q in p.params)
    return RNG.normal(size=n) * scale


def _data(p, n):
    return {d: RNG.normal(size=(n,) + ((p.shape(d)[0] * p.shape(d)[1],) if p.shape(d) else ()))
            for d in p.data}


def _check(p, n=37, dtypes=(np.float64, np.float32), theta=None, data=None, threads=None):
    theta = _theta(p) if theta is None else theta
    data = _data(p, n) if data is None else data
    ref_loss, ref_grad = _reference(p, theta, data)
    for dt in dtypes:
        k = codegen.compile_objective(p, dtype=dt, cache=False, threads=threads)
        loss, grad = k(theta, data)
        rtol = 2e-4 if dt == np.float32 else 1e-11
        scale = 1 + np.abs(ref_grad).max()
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=rtol * (1 + abs(ref_loss)))
        np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol * scale)
    return k


def _mlp_tanh(g, s):
    h = g.node("tanh", g.add(g.dot(s["W"], s["x"]), s["b"]))
    r = g.sub(g.mul(s["s"], h), s["y"])
    return g.node("sum", g.square(r))


def _softmax_ce(g, z, y):
    m = g.node("detach", g.node("amax", z))
    r, c = g.shape(z)
    e = g.node("exp", g.sub(z, g.node("broadcast", m, r, c)))
    lse = g.add(m, g.node("log", g.node("sum", e)))
    return g.sub(lse, g.node("sum", g.mul(y, z)))


def _mlp_softmax(nin, nh, nout, act="tanh"):
    def build(g, s):
        z1 = g.add(g.dot(s["W1"], s["x"]), s["b1"])
        h = g.node("max", z1, g.const(0.0)) if act == "relu" else g.node(act, z1)
        z2 = g.add(g.dot(s["W2"], h), s["b2"])
        return _softmax_ce(g, z2, s["y"])
    return _program(build, {"W1": (nh, nin), "b1": (nh, 1), "W2": (nout, nh), "b2": (nout, 1)},
                    {"x": (nin, 1), "y": (nout, 1)})


@pytest.mark.parametrize("n", [1, 7, 1000, 2500])
def test_tanh_layer_matches_reference(n):
    p = _program(_mlp_tanh, {"W": (3, 4), "b": (3, 1), "s": ()}, {"x": (4, 1), "y": (3, 1)})
    _check(p, n=n)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_softmax_mlp_matches_numpy_by_hand(act):
    p = _mlp_softmax(20, 17, 5, act)
    n = 1299
    X = RNG.normal(size=(n, 20))
    labels = RNG.integers(0, 5, size=n)
    Y = np.eye(5)[labels]
    W1, b1, W2, b2 = RNG.normal(size=(17, 20)) * 0.3, RNG.normal(size=17), RNG.normal(size=(5, 17)) * 0.3, \
        RNG.normal(size=5)
    theta = np.concatenate([W1.ravel(), b1, W2.ravel(), b2])
    # by hand: forward, softmax cross-entropy, backward
    Z1 = X @ W1.T + b1
    H = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0)}[act](Z1)
    dH = {"tanh": 1 - H ** 2, "sigmoid": H * (1 - H), "relu": (Z1 > 0).astype(float)}[act]
    Z2 = H @ W2.T + b2
    Zs = Z2 - Z2.max(1, keepdims=True)
    lse = np.log(np.exp(Zs).sum(1))
    loss = np.mean(lse - (Zs * Y).sum(1))
    D2 = (np.exp(Zs) / np.exp(Zs).sum(1, keepdims=True) - Y) / n
    D1 = (D2 @ W2) * dH
    grad = np.concatenate([(D1.T @ X).ravel(), D1.sum(0), (D2.T @ H).ravel(), D2.sum(0)])
    for dt, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
        k = codegen.compile_objective(p, dtype=dt, cache=False)
        got_loss, got_grad = k(theta, {"x": X, "y": Y})
        np.testing.assert_allclose(got_loss, loss, rtol=tol)
        np.testing.assert_allclose(got_grad, grad, rtol=tol, atol=tol * np.abs(grad).max())
    _check(p, n=50)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_dot_shared_times_varying_with_transposes(ta, tb):
    # W (5, 3) or its transpose, x a column or (transposed) row per sample
    def build(g, s):
        v = g.dot(s["W"], s["x"], ta, tb)
        return g.node("sum", g.node("sin", g.mul(v, s["c"])))
    p = _program(build, {"W": (3, 5) if ta else (5, 3), "c": (5, 1)}, {"x": (1, 3) if tb else (3, 1)})
    _check(p, n=33)


@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_dot_varying_times_shared_with_transposes(ta, tb):
    # a row per sample (or a transposed column) times W
    def build(g, s):
        v = g.dot(s["x"], s["W"], ta, tb)
        return g.node("sum", g.node("cos", v))
    p = _program(build, {"W": (4, 3) if tb else (3, 4)}, {"x": (3, 1) if ta else (1, 3)})
    _check(p, n=29)


def test_dot_of_per_sample_matrices_and_inner_products():
    # data matrix per sample (3, 2), both operands varying, x^T x
    def build(g, s):
        M = g.dot(s["W"], s["A"])                    # (4, 2): shared x varying matrix
        q = g.dot(s["x"], s["x"], True, False)       # (1, 1): inner product of two varying
        P = g.dot(s["A"], s["A"], True, False)       # (2, 2): varying x varying
        t = g.node("sum", g.mul(M, M))
        return g.add(g.add(t, g.node("sum", q)), g.node("sum", g.mul(P, s["V"])))
    p = _program(build, {"W": (4, 3), "V": (2, 2)}, {"A": (3, 2), "x": (3, 1)})
    _check(p, n=21)


def test_transpose_index_onehot_eye_and_hoisted_values():
    def build(g, s):
        At = g.node("transpose", s["A"])                         # varying (3, 2) -> (2, 3)
        Wt = g.node("transpose", s["W"])                         # shared
        reg = g.node("sum", g.mul(g.dot(s["W"], Wt), g.node("eye", 2)))  # trace(W W^T), hoisted
        e = g.node("index", g.dot(At, g.node("broadcast", s["c"], 3, 1)), 1, 0)
        f = g.node("sum", g.mul(g.node("tanh", At), s["W"]))
        return g.add(g.add(g.mul(reg, g.const(0.1)), g.square(e)), f)
    p = _program(build, {"W": (2, 3), "c": ()}, {"A": (3, 2)})
    assert any(i.op == "onehot" for i in p.body) and any(i.op == "eye" for i in p.body)
    _check(p, n=45)


def test_outputs_that_are_data_params_or_constants():
    # loss = sum(w * x) + 3: dloss/dw = x (a data name); an extra output that is a param
    body = (Instr("t0", "mul", ("w", "x")), Instr("t1", "sum", ("t0",)), Instr("t2", "add", ("t1", 3.0)))
    shapes = (("w", (2, 1)), ("x", (2, 1)), ("t0", (2, 1)))
    p = Program(("w", "s"), ("x",), body, ("t2", "x", 0.5), ("loss", "dw", "ds"), shapes).verify()
    _check(p, n=11)


def test_scalar_data_and_varying_scalar_broadcast_into_arrays():
    # per-sample scalar data u scales an array; softmax-style subtraction of a per-sample scalar
    def build(g, s):
        z = g.mul(s["u"], g.dot(s["W"], s["x"]))
        m = g.node("sum", z)
        return g.node("sum", g.node("exp", g.sub(z, g.node("broadcast", m, 3, 1))))
    p = _program(build, {"W": (3, 2)}, {"x": (2, 1), "u": ()})
    _check(p, n=40)


def test_no_data_program():
    p = _program(lambda g, s: g.node("sum", g.node("tanh", g.dot(s["A"], s["B"]))),
                 {"A": (3, 4), "B": (4, 2)}, {})
    theta = _theta(p)
    ref_loss, ref_grad = _reference(p, theta, {})
    loss, grad = codegen.compile_objective(p, cache=False)(theta)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-14)


def test_threads_one_and_two_give_identical_bits():
    p = _mlp_softmax(30, 24, 7)
    theta, data = _theta(p, 0.3), _data(p, 5001)
    for dt in (np.float64, np.float32):
        one = codegen.compile_objective(p, dtype=dt, threads=1, cache=False)(theta, data)
        two = codegen.compile_objective(p, dtype=dt, threads=2, cache=False)(theta, data)
        again = codegen.compile_objective(p, dtype=dt, threads=2, cache=False)(theta, data)
        assert one[0] == two[0] == again[0]
        np.testing.assert_array_equal(one[1], two[1])
        np.testing.assert_array_equal(two[1], again[1])
    _check(p, n=5001, theta=theta, data=data, dtypes=(np.float64,), threads=2)


def test_data_shapes_accepted_and_errors_name_the_symbol():
    p = _mlp_softmax(6, 5, 3)
    k = codegen.compile_objective(p, cache=False)
    theta, data = _theta(p), _data(p, 9)
    ref = k(theta, data)
    same = k(theta, {"x": data["x"].reshape(9, 6, 1), "y": np.asfortranarray(data["y"])})
    np.testing.assert_array_equal(same[1], ref[1])
    with pytest.raises(DataError, match=r"'x'.*\(6, 1\).*\(n, 6, 1\) or \(n, 6\).*\(9, 5\)"):
        k(theta, {"x": data["x"][:, :5], "y": data["y"]})
    with pytest.raises(DataError, match="missing data 'y'"):
        k(theta, {"x": data["x"]})
    with pytest.raises(DataError, match="'y' has 8 samples"):
        k(theta, {"x": data["x"], "y": data["y"][:8]})
    with pytest.raises(DataTypeError, match="'x'"):
        k(theta, {"x": data["x"].astype(complex), "y": data["y"]})
    with pytest.raises(DataError, match="theta must be a 1-D array of 53 values"):
        k(theta[:-1], data)
    bad = theta.copy()
    bad[36] = np.nan
    with pytest.raises(DataError, match=r"theta\[36\] \(parameter 'W2' entry \(0, 1\)\)"):
        k(bad, data)
    nan_data = dict(data, x=data["x"].copy())
    nan_data["x"][4, 2] = np.inf
    with pytest.raises(DataError, match="'x' contains inf in sample 4"):
        k(theta, nan_data)
    with pytest.raises(DataError, match="empty batch"):
        k(theta, {"x": data["x"][:0], "y": data["y"][:0]})


def test_bound_kernel_matches_and_disk_cache_relinks(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(tmp_path))
    p = _mlp_softmax(8, 6, 3)
    theta, data = _theta(p), _data(p, 100)
    k = codegen.compile_objective(p, dtype=np.float32)
    codegen.clear_memory_cache()
    k2 = codegen.compile_objective(p, dtype=np.float32)
    assert k2.compile_times.get("cached") == "disk"
    a, b = k(theta, data), k2.bind(data)(theta)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    ref_loss, _ = _reference(p, theta, data)
    np.testing.assert_allclose([k.value(theta, data), k2.bind(data).value(theta)], ref_loss, rtol=1e-5)


def test_repeated_calls_see_data_changed_in_place():
    p = _mlp_softmax(4, 3, 2)
    for dt in (np.float64, np.float32):  # float64 data: views for float64, copies for float32
        k = codegen.compile_objective(p, dtype=dt, cache=False)
        theta, data = _theta(p), _data(p, 20)
        first = k(theta, data)
        data["x"] *= 2.0
        second = k(theta, data)
        ref_loss, ref_grad = _reference(p, theta, data)
        assert first[0] != second[0]
        np.testing.assert_allclose(second[0], ref_loss, rtol=2e-4)
        np.testing.assert_allclose(second[1], ref_grad, rtol=2e-4, atol=2e-4 * np.abs(ref_grad).max())


@pytest.mark.parametrize("n", [1, 33, 2049])
def test_matrix_symbol_softmax_mlp_against_numpy_by_hand(n):
    import sympy as sp

    import symdiff as sd
    M = sp.MatrixSymbol
    x, y = M("x", 12, 1), M("y", 4, 1)
    W1, b1, W2, b2 = M("W1", 9, 12), M("b1", 9, 1), M("W2", 4, 9), M("b2", 4, 1)
    z = W2 * (W1 * x + b1).applyfunc(sp.tanh) + b2
    obj = sd.Objective(sd.losses.softmax_cross_entropy(z, y), params=[W1, b1, W2, b2], data=[x, y])
    rng = np.random.default_rng(n)
    V = {W1: rng.normal(size=(9, 12)) * 0.4, b1: rng.normal(size=(9, 1)),
         W2: rng.normal(size=(4, 9)) * 0.4, b2: rng.normal(size=(4, 1))}
    X, Y = rng.normal(size=(n, 12)), np.eye(4)[rng.integers(0, 4, n)]
    H = np.tanh(X @ V[W1].T + V[b1].T)
    Z = H @ V[W2].T + V[b2].T
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    loss = np.mean(-np.log((P * Y).sum(1)))
    D2 = (P - Y) / n
    D1 = (D2 @ V[W2]) * (1 - H ** 2)
    expected = {W1: D1.T @ X, b1: D1.sum(0)[:, None], W2: D2.T @ H, b2: D2.sum(0)[:, None]}
    for dt, tol in ((np.float64, 1e-10), (np.float32, 3e-4)):
        got_loss, got_grad = obj.compile(dtype=dt, cache=False)(obj.pack(V), {x: X, y: Y})
        np.testing.assert_allclose(got_loss, loss, rtol=tol)
        for p, g in obj.unpack(got_grad).items():
            np.testing.assert_allclose(g, expected[p], rtol=tol, atol=tol * np.abs(expected[p]).max())


@pytest.mark.parametrize("n", [1, 37, 2500])
def test_array_model_kernel_predicts_per_sample_outputs(n):
    p = _mlp_softmax(7, 6, 3)
    # output 0 of a model program: the logits z (3, 1) per sample
    z = next(i.target for i in p.body if i.op == "add" and p.shape(i.target) == (3, 1))
    model = Program(p.params, p.data, p.body, (z,), ("z",), p.shapes).select([0])
    theta, data = _theta(p), _data(p, n)
    ref = evaluate(model, theta, data)[0][:, :, 0]
    for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        k = codegen.compile_model(model, dtype=dt, cache=False)
        got = k(theta, data)
        assert got.shape == (n, 3) and got.dtype == dt
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    # a sample-invariant output and a scalar one
    shared = Program(p.params, p.data, p.body, ("W2",), ("W2",), p.shapes).select([0])
    np.testing.assert_array_equal(codegen.compile_model(shared, cache=False)(theta, data),
                                  np.broadcast_to(evaluate(shared, theta, data)[0], (n, 3, 6)))
    loss = Program(p.params, p.data, p.body, (p.outputs[0],), ("loss",), p.shapes).select([0])
    np.testing.assert_allclose(codegen.compile_model(loss, cache=False)(theta, data),
                               evaluate(loss, theta, data)[0], rtol=1e-12)


def test_array_kernel_without_blas_uses_plain_loops(tmp_path):
    """No BLAS bindable (forced): the same results through the loop fallback, with a warning."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, warnings; sys.path.insert(0, 'tests'); warnings.simplefilter('error'); "
            "import test_array_kernel as t; from codegen import blas; "
            "t.test_tanh_layer_matches_reference(1000); t.test_dot_of_per_sample_matrices_and_inner_products(); "
            "print(blas.bind().source)")
    env = dict(os.environ, SYMDIFF_BLAS="loop", SYMDIFF_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "loop"


def test_float32_gradient_accurate_on_a_long_batch():
    """Many tiles per slot: GEMM sums are flushed to double, so float32 stays close to float64."""
    p = _mlp_softmax(5, 4, 3)
    theta, data = _theta(p), _data(p, 40_000)
    data = {k: v.astype(np.float32) for k, v in data.items()}
    ref = codegen.compile_objective(p, dtype=np.float64, cache=False)(theta, data)
    got = codegen.compile_objective(p, dtype=np.float32, cache=False)(theta, data)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-4, atol=1e-5 * np.abs(ref[1]).max())
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5)


def _random_program(seed):
    """A random composition of the array ops over a shared matrix, a data vector and scalars."""
    rng = np.random.default_rng(seed)
    g = Graph()
    W, c = g.symbol("W", (4, 3)), g.symbol("c")
    x, u = g.symbol("x", (3, 1)), g.symbol("u")
    pool = {(4, 1): [g.dot(W, x)], (3, 1): [x, g.dot(W, g.dot(W, x), True, False)],
            (): [c, u, g.mul(c, u)]}
    for _ in range(8):
        shape = [(4, 1), (3, 1), ()][rng.integers(3)]
        a = pool[shape][rng.integers(len(pool[shape]))]
        s = pool[()][rng.integers(len(pool[()]))]
        choice = rng.integers(7)
        if choice == 0:
            v = g.node(["tanh", "sin", "sigmoid"][rng.integers(3)], a)
        elif choice == 1:
            v = g.mul(a, s) if shape else g.add(a, s)
        elif choice == 2 and shape:
            v = g.sub(a, g.node("broadcast", g.node("sum", a), *shape))
        elif choice == 3 and shape:
            v = g.node("index", a, int(rng.integers(shape[0])), 0)
            shape = ()
        elif choice == 4 and shape == (4, 1):
            v = g.dot(W, a, True, False)
            shape = (3, 1)
        elif choice == 5 and shape:
            v = g.node("transpose", g.node("transpose", g.node("exp", g.mul(a, g.const(0.3)))))
        else:
            v = g.mul(a, a)
        pool[shape].append(v)
    loss = g.const(0.0)
    for shape, vals in pool.items():
        for v in vals[-3:]:
            loss = g.add(loss, g.node("sum", v) if shape else v)
    grads = reverse_gradient(g, loss, [W, c])
    return linearize(g, [loss] + grads, ["loss", "dW", "dc"], ["W", "c"], ["x", "u"])


@pytest.mark.parametrize("seed", range(12))
def test_random_array_programs_match_reference(seed):
    p = _random_program(seed)
    _check(p, n=3 if seed % 2 else 1100)


def _random_matrix_program(seed):
    """Per-sample data matrices, transposes, comparisons and selects, relu, stable shifts."""
    rng = np.random.default_rng(seed)
    g = Graph()
    W, c = g.symbol("W", (2, 3)), g.symbol("c")
    A, u = g.symbol("A", (3, 2)), g.symbol("u")
    pool = {(3, 2): [A, g.node("transpose", W)], (2, 3): [W, g.node("transpose", A)],
            (2, 2): [g.dot(W, A)], (3, 3): [g.dot(A, W)], (): [c, u]}
    for _ in range(10):
        shape = list(pool)[rng.integers(len(pool))]
        a = pool[shape][rng.integers(len(pool[shape]))]
        s = pool[()][rng.integers(len(pool[()]))]
        k = rng.integers(8)
        if not shape:
            v = g.node(["tanh", "sin"][rng.integers(2)], g.mul(a, s))
            pool[()].append(v)
            continue
        if k == 0:
            v = g.node("max", a, g.const(0.0))
        elif k == 1:
            v = g.node("select", g.node("gt", a, s), a, g.mul(a, s))
        elif k == 2:
            m = g.node("detach", g.node("amax", a))
            v = g.node("exp", g.sub(a, g.node("broadcast", m, *shape)))
        elif k == 3:
            v = g.node("transpose", g.node("tanh", a))
            shape = shape[::-1]
        elif k == 4 and shape[1] in (2, 3):
            other = [x for sh, xs in pool.items() if sh and sh[0] == shape[1] for x in xs]
            o = other[rng.integers(len(other))]
            v = g.dot(a, o)
            shape = (shape[0], g.shape(o)[1])
        elif k == 5:
            v = g.node("index", a, int(rng.integers(shape[0])), int(rng.integers(shape[1])))
            shape = ()
        elif k == 6:
            v = g.mul(g.node("sigmoid", a), s)
        else:
            v = g.mul(a, a)
        pool.setdefault(shape, []).append(v)
    loss = g.const(0.0)
    for shape, vals in pool.items():
        for v in vals[-2:]:
            loss = g.add(loss, g.node("sum", v) if shape else v)
    grads = reverse_gradient(g, loss, [W, c])
    return linearize(g, [loss] + grads, ["loss", "dW", "dc"], ["W", "c"], ["A", "u"])


@pytest.mark.parametrize("seed", range(8))
def test_random_matrix_programs_match_reference(seed):
    _check(_random_matrix_program(seed), n=[1, 7, 1030][seed % 3])
