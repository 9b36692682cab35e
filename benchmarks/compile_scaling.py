"""How compile time grows with the size of a scalar program; one command.

    python benchmarks/compile_scaling.py [--sizes 10,30,60,100] [--inputs 8] [--dtype float64]

For each hidden width h it builds the scalar MLP ``inputs-h-h-1`` (``sd.mlp``, tanh) with
a squared-error objective, compiles it from scratch (no memory or disk cache, LLVM in
this process) and prints the time of every stage: the SymPy formula, ``to_graph``,
``differentiate`` (reverse mode), ``linearize`` (the IR), ``lower_to_llvm``, LLVM parse
and verify, ``llvm_optimize``, ``machine_code`` and ``load``, then ``total`` (formula to
callable kernel, wall clock) and ``total cpu`` (this process's CPU time: on a shared
machine, the figure other processes disturb least). The last row is the fitted exponent k of ``time ~ params**k`` per
stage (least squares on log-log over the sizes whose stage time is above 5 ms); issue 12
asks k <= 1.2 for the total.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SYMDIFF_COMPILE_WORKER", "0")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import symdiff as sd  # noqa: E402

STAGES = ["formula", "to_graph", "differentiate", "linearize", "lower_to_llvm",
          "llvm_parse_verify", "llvm_optimize", "machine_code", "load", "total", "total cpu"]


def measure(inputs: int, width: int, dtype) -> tuple[int, int, dict]:
    """(params, IR instructions, seconds per stage) for one from-scratch compile."""
    t0, c0 = time.perf_counter(), time.process_time()
    x = sd.vector("x", inputs)
    y = sp.Symbol("y", real=True)
    out, params = sd.mlp(x, (width, width))
    obj = sd.Objective((out - y) ** 2, params, list(x) + [y])
    t1 = time.perf_counter()
    kernel = obj.compile(dtype=dtype, threads=1, cache=False)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    times = {k: v for k, v in kernel.compile_times.items() if isinstance(v, float)}
    times["formula"] = t1 - t0
    times["total"] = total
    times["total cpu"] = cpu
    rng = np.random.default_rng(0)
    theta = rng.normal(scale=0.3, size=len(params))
    data = {s: rng.normal(size=64) for s in list(x) + [y]}
    loss, grad = kernel(theta, data)
    if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
        raise SystemExit(f"width {width}: the kernel returned a non-finite result")
    return len(params), len(obj.program().body), times


def exponent(sizes, values) -> float:
    pts = [(math.log(s), math.log(v)) for s, v in zip(sizes, values) if v > 5e-3]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,30,60,100", help="hidden widths h of inputs-h-h-1")
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = ap.parse_args(argv)
    widths = [int(w) for w in args.sizes.split(",")]
    rows = []
    for w in widths:
        n, instrs, times = measure(args.inputs, w, np.dtype(args.dtype))
        rows.append((f"{args.inputs}-{w}-{w}-1", n, instrs, times))
        print(f"# {rows[-1][0]}: {n} params, {instrs} IR instructions, "
              f"total {times['total']:.2f} s", file=sys.stderr, flush=True)
    head = ["network", "params", "IR instrs"] + STAGES
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, n, instrs, times in rows:
        cells = [name, f"{n:,}", f"{instrs:,}"] + [f"{times.get(s, 0.0):.3f}" for s in STAGES]
        print("| " + " | ".join(cells) + " |")
    sizes = [r[1] for r in rows]
    fits = [exponent(sizes, [r[3].get(s, 0.0) for r in rows]) for s in STAGES]
    print("| exponent k (time ~ params^k) | | | " + " | ".join(f"{k:.2f}" for k in fits) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
