"""Bounded displays: small objectives print formulas as before, big ones a summary.

Speed is measured in benchmarks; here the structure: the size of what is printed,
that the summary is there, and that gradient entries stay exact (against sympy.diff
at random points) when they are too big to tidy.
"""

import math

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.display.bounded import readable, tree_sizes
from symdiff.core.from_sympy import to_graph
from symdiff.core.graph import Graph
from symdiff.core.reverse import reverse_gradient

y = sp.Symbol("y", real=True)


@pytest.fixture(scope="module")
def network():
    """The tutorials' 2-16-16-1 tanh network with a squared error: 337 parameters."""
    x = sd.vector("x", 2)
    out, params = sd.mlp(x, (16, 16))
    return sd.Objective((out - y) ** 2, params, list(x) + [y])


def test_small_objective_shows_formulas():
    w, b, x = sp.symbols("w b x", real=True)
    obj = sd.Objective((w * x + b - y) ** 2, [w, b], [x, y])
    assert [str(e) for e in obj.gradient()] == ["2*x*(b + w*x - y)", "2*(b + w*x - y)"]
    latex = obj.latex()
    assert latex.startswith(r"\begin{aligned}L &= ")
    assert r"\frac{\partial L}{\partial w} &= 2 x \left(b + w x - y\right)" in latex
    assert "parameters" not in latex and "parameters" not in obj.pretty()
    assert "dloss/db =" in obj.pretty()


def test_tree_size_counts_operations_written_out():
    a, b = sp.symbols("a b", real=True)
    g = Graph()
    shared = (a + b) ** 3
    node, = to_graph([sp.sin(shared) * sp.cos(shared)], g, ["a", "b"])
    # (a + b)**3 is 2 operations, used twice: sin, cos and the product make 3 more
    assert tree_sizes(g, [node]) == [2 + 2 + 3]


def test_big_network_latex_is_a_bounded_summary(network):
    latex = network.latex()
    assert len(latex) < 4000
    assert latex.startswith(r"\begin{aligned}") and latex.endswith(r"\end{aligned}")
    assert "337 parameters, 3 data columns" in latex
    assert "obj.program()" in latex and "more gradient entries" in latex
    assert network._repr_latex_() == "$$" + latex + "$$"


def test_big_network_pretty_is_a_bounded_summary(network):
    text = network.pretty()
    assert len(text) < 3000
    assert "337 parameters" in text
    program = network.program()
    assert f"{len(program.body):,} shared instructions" in text
    assert str(program.body[0]) in text and f"loss = {program.outputs[0]}" in text


_FUNCTIONS = {sp.tanh: math.tanh, sp.exp: math.exp}


def _value(expr, point):
    """``expr`` at ``point`` in floats, each shared subexpression evaluated once
    (evalf and lambdify would write the tree out: tens of thousands of operations)."""
    memo, stack = {}, [expr]
    while stack:
        e = stack[-1]
        if e in memo:
            stack.pop()
            continue
        todo = [a for a in e.args if a not in memo]
        if todo and not e.is_Symbol and not e.is_Number:
            stack.extend(todo)
            continue
        stack.pop()
        if e.is_Symbol:
            memo[e] = point[e]
        elif e.is_Number:
            memo[e] = float(e)
        elif e.is_Add:
            memo[e] = math.fsum(memo[a] for a in e.args)
        elif e.is_Mul:
            memo[e] = math.prod(memo[a] for a in e.args)
        elif e.is_Pow:
            memo[e] = memo[e.args[0]] ** memo[e.args[1]]
        else:
            memo[e] = _FUNCTIONS[e.func](*(memo[a] for a in e.args))
    return memo[expr]


def test_big_network_gradient_entries_equal_sympy_diff(network):
    grad = network.gradient()
    assert len(grad) == len(network.params) == 337
    rng = np.random.default_rng(4)
    symbols = list(network.params) + list(network.data)
    for _ in range(2):
        point = dict(zip(symbols, rng.normal(scale=0.7, size=len(symbols))))
        for k in rng.choice(len(network.params), size=8, replace=False):
            want = _value(sp.diff(network.loss, network.params[k]), point)
            got = _value(grad[k], point)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), network.params[k]


def test_mid_size_sd_grad_is_exact_past_the_tidy_budget():
    x = sd.vector("x", 3)
    out, params = sd.mlp(x, (6, 5))
    loss = (out - y) ** 2
    symbols = list(params) + list(x) + [y]
    g = Graph()
    node, = to_graph([loss], g, [s.name for s in symbols])
    wrt = [g.symbol(p.name) for p in params]
    assert not readable(g, reverse_gradient(g, node, wrt))
    grad = sd.grad(loss, params)
    rng = np.random.default_rng(9)
    point = dict(zip(symbols, rng.normal(size=len(symbols))))
    for p, entry in zip(params, grad):
        assert _value(entry, point) == pytest.approx(_value(sp.diff(loss, p), point), rel=1e-10, abs=1e-13)


def test_logistic_regression_on_30_features_still_prints_formulas():
    w, x = sd.vector("w", 30), sd.vector("x", 30)
    b = sp.Symbol("b", real=True)
    logit = sum(wi * xi for wi, xi in zip(w, x)) + b
    obj = sd.Objective(sd.softplus(logit) - y * logit, [*w, b], [*x, y])
    assert str(obj.gradient()[0]).startswith("x0*(-y + sigmoid(b + w0*x0 + w1*x1")
    assert "parameters" not in obj.pretty()
