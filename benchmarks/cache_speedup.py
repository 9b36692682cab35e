"""How much the on-disk kernel cache saves a second process compiling the same objective.

For each workload, a fresh cache directory, then two processes one after the
other, each building the objective and compiling it: the first finds the cache
empty and fills it, the second loads the object code back. Each child times
``objective.compile()`` after a warm-up of what every process pays once whether
or not anything is cached (importing codegen/llvmlite, initializing LLVM's
target, loading libmvec), which is reported in its own column and in the
end-to-end figures. The two kernels must agree bit for bit. Repeated
``--repeats`` times; medians reported.

    python benchmarks/cache_speedup.py            # all workloads, 5 repeats
    python benchmarks/cache_speedup.py W4 --repeats 3

Workloads follow benchmarks of issue 3: W1 linear regression (8 features + bias),
W3 the curve fit a*exp(-b*x) + c*sin(d*x + e), W4 an MLP 4-16-16-1 with tanh
written as scalar formulas; all MSE, float64.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("W1", "W3", "W4")


def build_objective(name):
    import sympy as sp
    import symdiff as sd

    if name == "W1":
        w = sd.vector("w", 8)
        b, y = sp.symbols("b y", real=True)
        x = sd.vector("x", 8)
        prediction = sum(wi * xi for wi, xi in zip(w, x)) + b
        return sd.Objective((prediction - y) ** 2, params=[*w, b], data=[*x, y])
    if name == "W3":
        a, b, c, d, e, x, y = sp.symbols("a b c d e x y", real=True)
        prediction = a * sp.exp(-b * x) + c * sp.sin(d * x + e)
        return sd.Objective((prediction - y) ** 2, params=[a, b, c, d, e], data=[x, y])
    if name == "W4":
        inputs = sd.vector("x", 4)
        y = sp.Symbol("y", real=True)
        params = []

        def dense(values, width, layer, activation):
            out = []
            for j in range(width):
                weights = sd.vector(f"W{layer}_{j}_", len(values))
                bias = sp.Symbol(f"b{layer}_{j}", real=True)
                params.extend([*weights, bias])
                out.append(activation(sum(wi * vi for wi, vi in zip(weights, values)) + bias))
            return out

        hidden = dense(dense(inputs, 16, 1, sp.tanh), 16, 2, sp.tanh)
        (prediction,) = dense(hidden, 1, 3, lambda u: u)
        return sd.Objective((prediction - y) ** 2, params=params, data=[*inputs, y])
    raise ValueError(f"unknown workload {name!r}; choose from {WORKLOADS}")


def child(name):
    """Build and compile one workload in this process; print its timings as JSON."""
    start = time.perf_counter()
    import numpy as np
    import symdiff  # noqa: F401

    imported = time.perf_counter()
    objective = build_objective(name)
    built = time.perf_counter()
    import codegen  # noqa: F401  (llvmlite and the target machine: a one-time cost of any process)
    import codegen.cache  # noqa: F401
    import codegen.jit  # noqa: F401
    from codegen.target import host_target, target_machine

    host_target(), target_machine()
    initialized = time.perf_counter()
    kernel = objective.compile(dtype=np.float64)
    compiled = time.perf_counter()
    rng = np.random.default_rng(0)
    theta = rng.normal(size=len(objective.params)) * 0.3
    data = rng.normal(size=(257, len(objective.data)))
    loss, grad = kernel(theta, data)
    called = time.perf_counter()
    print(json.dumps({
        "import_s": imported - start,
        "objective_s": built - imported,
        "llvm_init_s": initialized - built,
        "compile_s": compiled - initialized,
        "first_call_s": called - compiled,
        "params": len(objective.params),
        "stages": {k: v for k, v in kernel.compile_times.items() if isinstance(v, float)},
        "result": [float(loss).hex(), *[float(g).hex() for g in np.asarray(grad)]],
    }))


def run_child(name, cache_dir):
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(cache_dir), SYMDIFF_CACHE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    completed = subprocess.run([sys.executable, __file__, "--child", name], env=env,
                               capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{name} child failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def cache_entries(directory):
    return sum(1 for path in Path(directory).iterdir() if path.suffix == ".kernel")


def measure(name, repeats):
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="symdiff-cache-bench-") as directory:
            first = run_child(name, directory)
            entries = cache_entries(directory)
            second = run_child(name, directory)
        if first["result"] != second["result"]:
            raise AssertionError(f"{name}: the cached kernel gives a different result than the fresh one")
        if entries == 0:
            raise AssertionError(f"{name}: the first process stored nothing in the cache")
        cold.append(first)
        warm.append(second)

    def median(runs, field):
        return statistics.median(run[field] for run in runs)

    return {
        "workload": name,
        "params": cold[0]["params"],
        "objective_s": median(cold, "objective_s"),
        "compile_cold_s": median(cold, "compile_s"),
        "compile_warm_s": median(warm, "compile_s"),
        "llvm_init_s": median(cold + warm, "llvm_init_s"),
        "total_cold_s": statistics.median(r["objective_s"] + r["llvm_init_s"] + r["compile_s"] for r in cold),
        "total_warm_s": statistics.median(r["objective_s"] + r["llvm_init_s"] + r["compile_s"] for r in warm),
        "import_s": median(cold, "import_s"),
    }


def table(rows):
    lines = [
        "| workload | params | `compile()` 1st process s | 2nd process s | speed-up "
        "| + `Objective()` + LLVM init, 1st s | 2nd s | speed-up | (LLVM init s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['workload']} | {row['params']} | {row['compile_cold_s']:.3f} "
            f"| {row['compile_warm_s']:.4f} | {row['compile_cold_s'] / row['compile_warm_s']:.1f}x "
            f"| {row['total_cold_s']:.3f} | {row['total_warm_s']:.3f} "
            f"| {row['total_cold_s'] / row['total_warm_s']:.1f}x | {row['llvm_init_s']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    rows = [measure(name, args.repeats) for name in args.workloads]
    print(table(rows))
    print(f"\nmedians of {args.repeats} process pairs; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; import symdiff takes {statistics.median(r['import_s'] for r in rows):.2f} s "
          f"in each process and is not counted above")


if __name__ == "__main__":
    main()
