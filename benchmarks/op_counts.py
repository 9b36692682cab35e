"""Operation counts of symdiff's program against per-parameter sympy.diff + sympy.cse.

    python benchmarks/op_counts.py

Same models as tests/test_op_counts.py plus the 4-16-16-1 tanh MLP of workload W4.
"""

import time

import sympy as sp

import symdiff as sd
from symdiff.nets import mlp
from symdiff.display.opcount import naive_ops, program_ops


def main():
    xs, w = sd.vector("x", 8), sd.vector("w", 8)
    b, y = sp.symbols("b y", real=True)
    lin = sum(wi * xi for wi, xi in zip(w, xs)) + b
    a, bb, c, d, e, x = sp.symbols("a bb c d e x", real=True)
    out, params = mlp(sd.vector("u", 4), (16, 16))
    models = [
        ("linear regression, 8 features", (lin - y) ** 2, list(w) + [b]),
        ("logistic regression, 8 features", sd.losses.logistic(lin, y), list(w) + [b]),
        ("curve fit a*exp(-b*x) + c*sin(d*x + e)", (a * sp.exp(-bb * x) + c * sp.sin(d * x + e) - y) ** 2,
         [a, bb, c, d, e]),
        ("MLP 4-16-16-1 tanh", (out - y) ** 2, list(params)),
    ]
    print("| model | params | symdiff ops | symdiff time (s) | sympy.diff + cse ops | sympy time (s) |")
    print("|---|---|---|---|---|---|")
    for name, loss, ps in models:
        t0 = time.perf_counter()
        prog = sd.Objective(loss, ps).program()
        t_ours = time.perf_counter() - t0
        naive, t_naive = naive_ops(loss, ps)
        print(f"| {name} | {len(ps)} | {program_ops(prog)} | {t_ours:.3f} | {naive} | {t_naive:.2f} |")


if __name__ == "__main__":
    main()
