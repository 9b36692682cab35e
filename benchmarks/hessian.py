"""Second derivatives: symdiff's Hessian and Hessian-vector kernels against JAX and PyTorch.

    python benchmarks/hessian.py [--repeats 7] [--w4-hessian-n 2000]

Rows, per workload of ``workloads.py`` (float64, the mean loss over the batch):

* ``hvp``: the mean Hessian times a direction ``v``. symdiff: ``k.bind(data).hvp(theta, v)``
  (one native pass of a program with ``v`` as input, reverse mode over ``grad . v``);
  JAX: ``jax.jit`` of ``jax.jvp(jax.grad(loss))`` (forward over reverse); PyTorch:
  ``torch.func.jvp(torch.func.grad(loss))``.
* ``hessian``: loss, gradient and Hessian. symdiff: ``k.bind(data)(theta)`` (one pass,
  upper triangle accumulated); JAX: ``jax.jit(jax.hessian(loss))``; PyTorch:
  ``torch.func.hessian(loss)``.

W3 (the 5-parameter curve fit, N = 1,000,000) gets both rows. W4 (the 369-parameter
MLP, N = 100,000) gets ``hvp``; its ``hessian`` row runs on a W4 data set of
``--w4-hessian-n`` samples (default 2,000; 0 skips it), because JAX and PyTorch build
the Hessian as 369 batched Jacobian-vector products whose intermediates hold
369 x N x 16 values. symdiff's one-pass Hessian program for W4 has 127,563
instructions and 68,635 outputs, which LLVM did not compile within 7 minutes (3.5 GB),
so above ``FUSED_HESSIAN_MAX_PARAMS`` (64) parameters its kernel assembles the Hessian
from one gradient pass and 369 Hessian-vector passes; that is what the W4 row times.

Every result is checked against JAX's (or, without JAX, PyTorch's) before it is timed;
a peer that is not installed is reported as such and skipped. Times are medians of
``--repeats`` round-robin rounds (one call of each contender per round).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np
import peers
import workloads
from codegen.second_order import FUSED_HESSIAN_MAX_PARAMS


def _symdiff(w, which):
    import symdiff as sd

    t0 = time.perf_counter()
    objective = sd.Objective(w.loss, w.params, w.data_symbols)
    kernel = objective.compile(hessian=True)
    if which == "hessian" and len(w.params) <= FUSED_HESSIAN_MAX_PARAMS:
        kernel.compile_hessian()  # the one-pass Hessian program, compiled in the setup time
    bound = kernel.bind(w.data)
    setup = time.perf_counter() - t0
    if which == "hvp":
        return (lambda theta, v: bound.hvp(theta, v)), setup
    return (lambda theta, v: bound(theta)[2]), setup


def _jax(w, which):
    try:
        import jax
    except ImportError:
        return None, "jax not installed"
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp

    t0 = time.perf_counter()
    loss = peers._jax_losses(jnp, jax)[w.kind]
    data = tuple(jax.device_put(a) for a in peers._matrix_data(w))
    if which == "hvp":
        fn = jax.jit(lambda t, v, *d: jax.jvp(lambda s: jax.grad(loss)(s, *d), (t,), (v,))[1])
    else:
        fn = jax.jit(jax.hessian(loss))

    def call(theta, v):
        out = fn(theta, v, *data) if which == "hvp" else fn(theta, *data)
        return np.asarray(out)

    call(w.theta, np.ones_like(w.theta))
    return call, time.perf_counter() - t0


def _torch(w, which):
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    loss = peers._torch_losses(torch)[w.kind]
    data = tuple(torch.from_numpy(a) for a in peers._matrix_data(w))

    def f(t):
        return loss(t, *data)

    def call(theta, v):
        t = torch.from_numpy(theta)
        with torch.no_grad():
            if which == "hvp":
                out = torch.func.jvp(torch.func.grad(f), (t,), (torch.from_numpy(v),))[1]
            else:
                out = torch.func.hessian(f)(t)
        return out.numpy()

    call(w.theta, np.ones_like(w.theta))
    return call, time.perf_counter() - t0


PEERS = {"symdiff": _symdiff, "jax.jit": _jax, "torch.func": _torch}


def run(w, which, repeats):
    rng = np.random.default_rng(0)
    v = rng.normal(size=len(w.params))
    rows = {}
    for name, prepare in PEERS.items():
        try:
            call, setup = prepare(w, which)
        except MemoryError:
            call, setup = None, "out of memory"
        if call is None:
            rows[name] = {"note": setup}
            continue
        rows[name] = {"call": call, "setup": setup, "times": []}
    live = {k: r for k, r in rows.items() if "call" in r}
    reference_name = next((k for k in ("jax.jit", "torch.func") if k in live), None)
    if reference_name is not None:
        want = live[reference_name]["call"](w.theta, v)
        for name, r in live.items():
            got = r["call"](w.theta, v)
            err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300)
            r["error"] = err
            if not err < 1e-8:
                r["note"] = f"WRONG: max relative error {err:.1e} against {reference_name}"
    for k in range(repeats):
        order = list(live)[k % len(live):] + list(live)[:k % len(live)]
        for name in order:
            r = live[name]
            if "WRONG" in r.get("note", ""):
                continue
            t0 = time.perf_counter()
            r["call"](w.theta, v)
            r["times"].append(time.perf_counter() - t0)
    return rows, reference_name


def report(title, rows, reference_name):
    print(f"\n{title}")
    print(f"{'contender':<12}{'median ms':>12}{'vs symdiff':>12}{'setup s':>10}  note")
    base = rows.get("symdiff", {}).get("times")
    base = statistics.median(base) if base else None
    for name, r in rows.items():
        if not r.get("times"):
            print(f"{name:<12}{'n/a':>12}{'':>12}{'':>10}  {r.get('note', '')}")
            continue
        m = statistics.median(r["times"])
        ratio = f"{m / base:.1f}x" if base else ""
        note = r.get("note", "")
        if "error" in r and name != reference_name:
            note = (note + "; " if note else "") + f"max rel. diff. {r['error']:.1e} vs {reference_name}"
        print(f"{name:<12}{m * 1e3:>12.3f}{ratio:>12}{r['setup']:>10.2f}  {note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--w4-hessian-n", type=int, default=2000,
                        help="samples of W4 for the full-Hessian row (0 skips it)")
    args = parser.parse_args()
    import codegen
    print(f"cores: {codegen.available_cores()}; float64; medians of {args.repeats} rounds")
    w3, w4 = workloads.build("W3"), workloads.build("W4")
    report(f"W3 hvp — {w3.description}", *run(w3, "hvp", args.repeats))
    report(f"W3 hessian — {w3.description}", *run(w3, "hessian", args.repeats))
    report(f"W4 hvp — {w4.description}", *run(w4, "hvp", args.repeats))
    if args.w4_hessian_n:
        small = workloads.mlp(n=args.w4_hessian_n)
        report(f"W4 hessian — {small.description}", *run(small, "hessian", max(3, args.repeats // 2)))


if __name__ == "__main__":
    main()
