"""Symbolic gradients against sympy.diff, on every primitive and on random compositions."""

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from primitive_table import PRIMITIVE_CASES, u, v

RNG = np.random.default_rng(1234)


def _points(dom_u, dom_v, k=6):
    pts = []
    for _ in range(k):
        p = {u: RNG.uniform(*dom_u)}
        if dom_v is not None:
            p[v] = RNG.uniform(*dom_v)
        pts.append(p)
    return pts


def _num(e, point):
    return complex(sp.N(e.subs(point), 30))


@pytest.mark.parametrize("name,expr,dom_u,dom_v", PRIMITIVE_CASES, ids=[c[0] for c in PRIMITIVE_CASES])
def test_gradient_matches_sympy_diff(name, expr, dom_u, dom_v):
    wrt = [u] if dom_v is None else [u, v]
    ours = sd.grad(expr, wrt)
    assert len(ours) == len(wrt)
    for point in _points(dom_u, dom_v):
        for s, g in zip(wrt, ours):
            ref = sp.diff(expr, s)
            got, want = _num(g, point), _num(ref, point)
            assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (name, s, point, g, ref)


@pytest.mark.parametrize("name,expr,dom_u,dom_v", PRIMITIVE_CASES, ids=[c[0] for c in PRIMITIVE_CASES])
def test_reference_interpreter_matches_sympy(name, expr, dom_u, dom_v):
    """The NumPy interpreter of the IR (the reference for the kernels) agrees with SymPy."""
    wrt = [u] if dom_v is None else [u, v]
    obj = sd.Objective(expr, params=wrt, data=[])
    prog = obj.program()
    for point in _points(dom_u, dom_v, k=3):
        vals = sd.evaluate(prog, [point[s] for s in wrt], {})
        assert vals[0] == pytest.approx(float(_num(expr, point).real), rel=1e-12, abs=1e-12)
        for s, val in zip(wrt, vals[1:]):
            want = float(_num(sp.diff(expr, s), point).real)
            assert val == pytest.approx(want, rel=1e-11, abs=1e-12)


def _random_expr(rng, syms, depth):
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.8:
            return syms[rng.integers(len(syms))]
        return sp.Rational(int(rng.integers(1, 9)), int(rng.integers(1, 5)))
    kind = rng.integers(9)
    a = _random_expr(rng, syms, depth - 1)
    if kind == 0:
        return a + _random_expr(rng, syms, depth - 1)
    if kind == 1:
        return a * _random_expr(rng, syms, depth - 1)
    if kind == 2:
        return a - _random_expr(rng, syms, depth - 1)
    if kind == 3:
        return a / (2 + sp.sin(_random_expr(rng, syms, depth - 1)))
    if kind == 4:
        return sp.tanh(a)
    if kind == 5:
        return sp.exp(sp.sin(a))
    if kind == 6:
        return sp.log(1 + a ** 2)
    if kind == 7:
        return sd.sigmoid(a)
    return sp.sqrt(1 + a ** 2)


@pytest.mark.parametrize("seed", range(25))
def test_random_compositions(seed):
    rng = np.random.default_rng(seed)
    syms = sp.symbols("p q r", real=True)
    expr = _random_expr(rng, syms, depth=5)
    ours = sd.grad(expr, syms)
    for _ in range(3):
        point = {s: rng.uniform(-2, 2) for s in syms}
        for s, g in zip(syms, ours):
            want = _num(sp.diff(expr, s), point)
            assert abs(_num(g, point) - want) <= 1e-10 * max(1.0, abs(want)), (expr, s)


def test_gradient_is_in_the_users_symbols():
    w = sp.Symbol("w")  # no real=True: symdiff treats it as real but hands back the user's symbol
    g = sd.grad(sp.Abs(w) ** 2 + w * 3, [w])[0]
    assert g.free_symbols == {w}
    assert g.subs(w, 2) == 7


def test_shared_subexpressions_are_reused():
    """exp(u)'s derivative is the forward exp(u) itself; tanh's is 1 - t**2 of the forward t."""
    a, x = sp.symbols("a x", real=True)
    prog = sd.Objective(sp.exp(a * x) + sp.tanh(a * x), [a], [x]).program()
    ops = [ins.op for ins in prog.body]
    assert ops.count("exp") == 1 and ops.count("tanh") == 1
    assert "cosh" not in ops


def test_softplus_rewrite_gives_sigmoid_derivative():
    z = sp.Symbol("z", real=True)
    prog = sd.Objective(sp.log(1 + sp.exp(z)), [z], []).program()
    ops = {ins.op for ins in prog.body}
    assert "softplus" in ops and "sigmoid" in ops and "exp" not in ops
    loss, d = sd.evaluate(prog, [1000.0], {})
    assert loss == pytest.approx(1000.0) and d == pytest.approx(1.0)
    loss, d = sd.evaluate(prog, [-1000.0], {})
    assert loss == 0.0 and d == 0.0


def test_unsupported_function_is_named():
    x = sp.Symbol("x", real=True)
    with pytest.raises(sd.UnsupportedError, match="gamma"):
        sd.grad(sp.gamma(x), [x])
    with pytest.raises(sd.UnsupportedError, match="zeta"):
        sd.Objective(sp.zeta(x) * x, [x], []).program()


def test_unknown_symbol_is_named():
    w, x, z = sp.symbols("w x z")
    with pytest.raises(sd.FormulaError, match="'z'"):
        sd.Objective(w * x + z, [w], [x])


def test_program_prints_and_verifies():
    w, b, x, y = sp.symbols("w b x y")
    prog = sd.Objective((w * x + b - y) ** 2, [w, b], [x, y]).program()
    text = str(prog)
    assert "loss = " in text and "dloss/dw = " in text and "dloss/db = " in text
    assert prog.verify() is prog
    # one line per instruction, plus headers and outputs
    assert len(text.splitlines()) == len(prog.body) + 2 + 3


def test_gradient_readable_and_latex():
    w, b, x, y = sp.symbols("w b x y")
    obj = sd.Objective((w * x + b - y) ** 2, [w, b], [x, y])
    gw, gb = obj.gradient()
    assert sp.simplify(gw - 2 * x * (w * x + b - y)) == 0
    assert sp.simplify(gb - 2 * (w * x + b - y)) == 0
    assert r"\frac{\partial L}{\partial w}" in obj.latex()
    assert obj._repr_latex_().startswith("$$")
