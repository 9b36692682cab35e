"""Matrix formulas: array gradients against NumPy by hand, finite differences and the
scalarized formula through today's scalar pipeline; shapes, packing, errors, display."""

import numpy as np
import pytest
import sympy as sp
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct, hadamard_power

import symdiff as sd
from symdiff.models import matrix_functions as MF
from symdiff.core.evaluate import evaluate

M = sp.MatrixSymbol
rng = np.random.default_rng(12)


def _mlp(n_in=4, n_hidden=5, n_out=3):
    x, y = M("x", n_in, 1), M("y", n_out, 1)
    W1, b1, W2, b2 = M("W1", n_hidden, n_in), M("b1", n_hidden, 1), M("W2", n_out, n_hidden), M("b2", n_out, 1)
    z = W2 * (W1 * x + b1).applyfunc(sp.tanh) + b2
    obj = sd.Objective(sd.losses.softmax_cross_entropy(z, y), params=[W1, b1, W2, b2], data=[x, y])
    return obj, (W1, b1, W2, b2), (x, y)


def _values(params):
    return {p: rng.normal(size=p.shape) for p in params}


def _mean_outputs(obj, theta, data):
    outs = evaluate(obj.program(), theta, data)
    return outs[0].mean(), np.concatenate([o.mean(axis=0).ravel() for o in outs[1:]])


def test_mlp_softmax_cross_entropy_matches_numpy_by_hand():
    obj, (W1, b1, W2, b2), (x, y) = _mlp()
    v = _values(obj.params)
    X = rng.normal(size=(7, 4))
    Y = np.eye(3)[rng.integers(0, 3, size=7)]
    loss, grad = _mean_outputs(obj, obj.pack(v), {x: X, y: Y})
    H = np.tanh(X @ v[W1].T + v[b1].T)
    Z = H @ v[W2].T + v[b2].T
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    ref_loss = -(Y * np.log(P)).sum(1).mean()
    D2 = (P - Y) / len(X)
    D1 = (D2 @ v[W2]) * (1 - H ** 2)
    ref = obj.pack({W1: D1.T @ X, b1: D1.sum(0)[:, None], W2: D2.T @ H, b2: D2.sum(0)[:, None]})
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-14)


def test_mlp_gradient_reads_as_backpropagation():
    obj, (W1, b1, W2, b2), (x, y) = _mlp()
    h, z = M("h", 5, 1), M("z", 3, 1)
    assert obj.layers == {h: MF.elementwise(sp.tanh, W1 * x + b1), z: W2 * h + b2} or \
        [str(k) for k in obj.layers] == ["h", "z"]
    dW1, db1, dW2, db2 = obj.gradient()
    delta2 = MF.softmax(z) - y
    assert db2 == delta2
    assert dW2 == delta2 * h.T
    assert db1 == HadamardProduct(W2.T * delta2, MF.Ones(5, 1) - HadamardPower(h, 2))
    assert dW1 == db1 * x.T
    assert [g.shape for g in obj.gradient()] == [p.shape for p in obj.params]
    text = obj.latex()
    assert r"\operatorname{softmax}" in text and r"\circ" in text and len(text) < 2000
    assert "dloss/dW1" in obj.pretty()
    assert "dot(W1, x, False, False)" in str(obj.program()) and "# (5, 4)" in str(obj.program())



def test_loss_line_uses_the_layer_names_and_repr_reads_as_julia_dots():
    obj, (W1, b1, W2, b2), (x, y) = _mlp()
    loss_line = next(line for line in obj.latex().split(r" \\ ") if line.startswith("L &="))
    assert loss_line == r"L &= - \left\langle y, z\right\rangle + \operatorname{logsumexp}\left(z\right)"
    assert "loss =\n-dot(y, z) + logsumexp(z)" in obj.pretty()
    assert repr(obj) == ("Objective(loss=-dot(y, W2*tanh.(W1*x + b1) + b2) + logsumexp(W2*tanh.(W1*x + b1) "
                         "+ b2), params=[W1, b1, W2, b2], data=[x, y])")


def test_all_ones_factor_prints_with_its_shape():
    W, x = M("W", 10, 3), M("x", 3, 1)
    obj = sd.Objective(3 * sd.sum(W * x), params=[W], data=[x])
    (dW,) = obj.gradient()
    assert str(dW) == "3*ones(10, 1)*x.T" and r"3 \mathbf{1} x^{T}" in obj.latex()
    explicit = dW.as_explicit().subs(dict(zip(x.as_explicit(), [1, 2, 3])))
    assert np.array_equal(np.array(explicit, dtype=float), np.tile([3.0, 6.0, 9.0], (10, 1)))

def _numpy_of(e, env):
    """A SymPy matrix expression evaluated in NumPy (the reference for displays)."""
    if e in env:
        return env[e]
    if isinstance(e, (sp.Number, sp.NumberSymbol)):
        return float(e)
    if isinstance(e, sp.MatAdd) or isinstance(e, sp.Add):
        return sum(_numpy_of(a, env) for a in e.args)
    if isinstance(e, sp.MatMul):
        out = 1.0
        for a in e.args:
            v = _numpy_of(a, env)
            out = out @ v if np.ndim(out) == 2 and np.ndim(v) == 2 else out * v
        return out
    if isinstance(e, sp.Transpose):
        return _numpy_of(e.arg, env).T
    if isinstance(e, HadamardProduct):
        return np.prod([_numpy_of(a, env) for a in e.args], axis=0)
    if isinstance(e, HadamardPower):
        return _numpy_of(e.base, env) ** float(e.exp)
    if isinstance(e, sp.OneMatrix):
        return np.ones(e.shape)
    if isinstance(e, MF.softmax):
        v = _numpy_of(e.args[0], env)
        return np.exp(v - v.max()) / np.exp(v - v.max()).sum()
    if isinstance(e, MF.Elementwise):
        f = sp.lambdify(e.function.variables, e.function.expr, "numpy")
        return f(_numpy_of(e.expr, env))
    raise NotImplementedError(type(e))


def test_displayed_gradient_equals_evaluated_gradient():
    obj, params, (x, y) = _mlp()
    v = _values(params)
    X, Y = rng.normal(size=(1, 4)), np.eye(3)[[2]]
    _, grad = _mean_outputs(obj, obj.pack(v), {x: X, y: Y})
    env = {**v, x: X.T, y: Y.T}
    shown = obj.pack({p: _numpy_of(g, env) for p, g in zip(params, obj.gradient(expand=True))})
    np.testing.assert_allclose(shown, grad, rtol=1e-12)


def _scalarize(obj):
    """The formula on explicit matrices of scalar symbols, and those symbols in theta order."""
    sub, params, data = {}, [], []
    for s in obj.params + obj.data:
        if not isinstance(s, sp.MatrixSymbol):
            (params if s in obj.params else data).append([s])
            continue
        r, c = s.shape
        entries = [[sp.Symbol(f"{s.name}_{i}_{j}", real=True) for j in range(c)] for i in range(r)]
        sub[s] = sp.ImmutableMatrix(entries)
        (params if s in obj.params else data).append([e for row in entries for e in row])
    loss = _explicit(obj.loss, sub)
    if isinstance(loss, sp.MatrixBase):
        loss = loss[0, 0]
    return loss, [e for p in params for e in p], data


def _explicit(e, sub):
    """``e`` with matrix symbols replaced by explicit matrices, every matrix expression
    made explicit bottom-up (SymPy's doit leaves Hadamard powers and OneMatrix products)."""
    if e in sub:
        return sub[e]
    if isinstance(e, sp.Lambda) or not e.args:
        return e
    new = e.func(*[_explicit(a, sub) for a in e.args])
    if isinstance(new, (MF.softmax, sp.Trace)):
        new = new.doit()
    if getattr(new, "is_Matrix", False) and not isinstance(new, sp.MatrixBase):
        new = new.as_explicit()
    return new


def _check_against_scalar_pipeline(obj, n=6):
    loss, scalar_params, data_syms = _scalarize(obj)
    scalar = sd.Objective(loss, scalar_params, [e for d in data_syms for e in d])
    theta = rng.normal(size=len(scalar_params))
    arrays = {d: rng.normal(size=(n,) + tuple(getattr(d, "shape", ()))) for d in obj.data}
    columns = {e.name: arrays[d].reshape(n, -1)[:, k]
               for d, entries in zip(obj.data, data_syms) for k, e in enumerate(entries)}
    ref = evaluate(scalar.program(), theta, columns)
    got = evaluate(obj.program(), theta, arrays)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-11, atol=1e-12)
    flat = np.concatenate([g.reshape(n, -1) for g in got[1:]], axis=1)
    np.testing.assert_allclose(flat, np.stack(ref[1:], axis=1), rtol=1e-10, atol=1e-12)
    return theta, arrays


def _check_finite_differences(obj, theta, arrays):
    def loss_at(t):
        return evaluate(obj.program(), t, arrays)[0].mean()
    _, grad = _mean_outputs(obj, theta, arrays)
    num = np.array([(loss_at(theta + e) - loss_at(theta - e)) / 2e-6
                    for e in np.eye(len(theta)) * 1e-6])
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7)


A, B, C = M("A", 3, 3), M("B", 3, 2), M("C", 2, 3)
u, v = M("u", 3, 1), M("v", 3, 1)
s = sp.Symbol("s", real=True)
x3, t3 = M("x", 3, 1), M("t", 3, 1)
CASES = {
    "linear_regression": (lambda: ((A * x3 - t3).T * (A * x3 - t3)), [A], [x3, t3]),
    "trace": (lambda: sp.Trace(A * B * C + A.T) + s * sp.Trace(A * x3 * x3.T) + sp.Trace(A ** 3),
              [A, B, C, s], [x3]),
    "hadamard": (lambda: MF.sum(HadamardProduct(A * x3, u) + hadamard_power(A * x3 - t3, 3)),
                 [A, u], [x3, t3]),
    "element_and_scalar": (lambda: A[0, 1] * s ** 2 + sp.sin(A[2, 2]) * MF.dot(A * x3, u),
                           [A, s, u], [x3]),
    "special_matrices": (lambda: MF.dot(sp.OneMatrix(3, 1), (A + sp.Identity(3)) * x3 + sp.ZeroMatrix(3, 1))
                         + MF.logsumexp(s * A * x3), [A, s], [x3]),
    "lambda_relu_sigmoid": (lambda: MF.sum(MF.relu(A * x3) + sd.sigmoid(A.T * u)
                                            + (A * x3).applyfunc(lambda q: q ** 2 / (1 + q ** 2))),
                            [A, u], [x3]),
    "mse_vector": (lambda: sd.losses.mse(sd.softmax(A * x3), t3) + sd.losses.mae(A * x3, t3),
                   [A], [x3, t3]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_array_pipeline_agrees_with_scalarized_formula_and_finite_differences(name):
    make, params, data = CASES[name]
    obj = sd.Objective(make(), params=params, data=data)
    theta, arrays = _check_against_scalar_pipeline(obj)
    _check_finite_differences(obj, theta, arrays)
    assert [g.shape if hasattr(g, "shape") else () for g in obj.gradient()] == \
        [p.shape if isinstance(p, sp.MatrixSymbol) else () for p in params]


def test_linear_regression_gradient_matches_numpy():
    obj = sd.Objective((A * x3 - t3).T * (A * x3 - t3), params=[A], data=[x3, t3])
    Av, X, T = rng.normal(size=(3, 3)), rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    loss, grad = _mean_outputs(obj, Av.ravel(), {x3: X, t3: T})
    R = X @ Av.T - T
    np.testing.assert_allclose(loss, (R ** 2).sum(1).mean())
    np.testing.assert_allclose(grad, (2 * R.T @ X / len(X)).ravel())
    assert obj.gradient()[0] == 2 * (A * x3 - t3) * x3.T or obj.gradient()[0].shape == (3, 3)


def test_shape_errors_name_both_shapes():
    with pytest.raises(sd.FormulaError, match=r"\(3, 1\) and \(2, 1\)"):
        sd.dot(u, M("w", 2, 1))
    with pytest.raises(sd.FormulaError, match=r"\(3, 1\) and \(2, 1\)"):
        sd.losses.softmax_cross_entropy(u, M("w", 2, 1))
    with pytest.raises(sd.FormulaError, match=r"\(3, 1\) and \(2, 1\)"):
        sd.losses.mse(u, M("w", 2, 1))
    with pytest.raises(sd.FormulaError, match=r"shape \(3, 1\)"):
        sd.Objective(A * x3, params=[A], data=[x3])


def test_data_shape_and_dtype_errors_name_the_symbol():
    obj, _, (x, y) = _mlp()
    theta = obj.init()
    with pytest.raises(sd.DataError, match=r"'x'.*\(4, 1\)"):
        evaluate(obj.program(), theta, {x: np.zeros((5, 3)), y: np.zeros((5, 3))})
    with pytest.raises(sd.DataTypeError, match=r"'y'"):
        evaluate(obj.program(), theta, {x: np.zeros((5, 4)), y: np.zeros((5, 3), dtype=complex)})
    with pytest.raises(sd.DataError, match=r"'y' has 4 samples"):
        evaluate(obj.program(), theta, {x: np.zeros((5, 4)), y: np.zeros((4, 3))})
    out = evaluate(obj.program(), theta, {x: np.zeros((5, 4, 1)), y: np.zeros((5, 3)).astype(np.float32)})
    assert out[0].shape == (5,) and out[1].shape == (5, 5, 4)


def test_pack_unpack_and_param_shapes():
    obj, (W1, b1, W2, b2), _ = _mlp()
    assert obj.param_shapes == {W1: (5, 4), b1: (5, 1), W2: (3, 5), b2: (3, 1)}
    v = _values(obj.params)
    theta = obj.pack({**v, "b2": v[b2].ravel()})
    assert theta.shape == (5 * 4 + 5 + 3 * 5 + 3,)
    np.testing.assert_array_equal(theta[:20], v[W1].ravel())
    back = obj.unpack(theta)
    assert all(np.array_equal(back[p], v[p]) for p in obj.params)
    with pytest.raises(sd.DataError, match=r"'W1' has shape \(5, 4\)"):
        obj.pack({**v, W1: np.zeros((4, 5))})
    with pytest.raises(sd.DataError, match="b1"):
        obj.pack({W1: v[W1]})
    with pytest.raises(sd.DataError, match="43"):
        obj.unpack(np.zeros(3))


def test_default_init_is_glorot_with_zero_biases_and_seeded():
    obj, (W1, b1, W2, b2), _ = _mlp(n_in=64, n_hidden=32, n_out=10)
    v = obj.unpack(obj.init(seed=3))
    assert np.abs(v[W1]).max() <= np.sqrt(6 / (64 + 32)) and v[W1].std() > 0.05
    assert not v[b1].any() and not v[b2].any()
    np.testing.assert_array_equal(obj.init(seed=3), obj.init(seed=3))


def test_compile_says_what_is_missing_or_matches_evaluate():
    obj, params, (x, y) = _mlp()
    theta = obj.init()
    X, Y = rng.normal(size=(11, 4)), np.eye(3)[rng.integers(0, 3, size=11)]
    try:
        kernel = obj.compile()
    except sd.UnsupportedError as exc:
        assert "array" in str(exc)
        return
    loss, grad = kernel(theta, {x: X, y: Y})
    ref_loss, ref_grad = _mean_outputs(obj, theta, {x: X, y: Y})
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)
    loss32, grad32 = obj.compile(dtype=np.float32)(theta, {x: X, y: Y})
    np.testing.assert_allclose(grad32, ref_grad, rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_kernel_matches_evaluate(name):
    make, params, data = CASES[name]
    obj = sd.Objective(make(), params=params, data=data)
    theta = rng.normal(size=sum(int(np.prod(getattr(p, "shape", ()))) for p in params))
    arrays = {d: rng.normal(size=(40,) + tuple(getattr(d, "shape", ()))) for d in data}
    ref_loss, ref_grad = _mean_outputs(obj, theta, arrays)
    loss, grad = obj.compile()(theta, arrays)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-13)
    loss32, grad32 = obj.compile(dtype=np.float32)(theta, arrays)
    np.testing.assert_allclose(loss32, ref_loss, rtol=1e-4)
    np.testing.assert_allclose(grad32, ref_grad, rtol=1e-3, atol=1e-4 * np.abs(ref_grad).max())


def test_sd_grad_of_matrix_formulas():
    assert sd.grad((A * x3).T * (A * x3), A) == [2 * A * x3 * x3.T]
    dA, ds = sd.grad(sd.sum(A) * s + sp.Trace(A * A), [A, s])
    assert ds == sd.sum(A) and dA.shape == (3, 3)
