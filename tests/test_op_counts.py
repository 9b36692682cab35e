"""Reverse mode on the DAG costs fewer operations than per-parameter sympy.diff + sympy.cse.

Prints the table (run with ``-s``); benchmarks/op_counts.py adds the 4-16-16-1 MLP, whose
naive differentiation alone takes ~15 s.
"""

import sympy as sp

import symdiff as sd
from symdiff.nets import mlp
from symdiff.display.opcount import naive_ops, program_ops


def models():
    xs = sd.vector("x", 8)
    w = sd.vector("w", 8)
    b, y = sp.symbols("b y", real=True)
    lin = sum(wi * xi for wi, xi in zip(w, xs)) + b
    yield "linear (8 features)", (lin - y) ** 2, list(w) + [b]
    yield "logistic (8 features)", sd.losses.logistic(lin, y), list(w) + [b]
    a, bb, c, d, e, x = sp.symbols("a bb c d e x", real=True)
    yield "curve fit a*exp(-b*x)+c*sin(d*x+e)", (a * sp.exp(-bb * x) + c * sp.sin(d * x + e) - y) ** 2, [a, bb, c, d, e]
    out, params = mlp(sd.vector("u", 2), (4, 4))
    yield "MLP 2-4-4-1 tanh", (out - y) ** 2, list(params)


def test_reverse_mode_needs_fewer_ops_than_naive_diff(capsys):
    rows = []
    for name, loss, params in models():
        ours = program_ops(sd.Objective(loss, params).program())
        naive, _ = naive_ops(loss, params)
        rows.append((name, len(params), ours, naive))
        assert ours <= naive, (name, ours, naive)
    with capsys.disabled():
        print("\nmodel | params | symdiff ops | sympy.diff+cse ops")
        for r in rows:
            print(" | ".join(map(str, r)))
