"""Matrix-formula MLPs (issue 12): symdiff's array kernels against their peers; one command.

    python benchmarks/matrix_mlp.py [--repeats 21] [--burst 5] [--quick]

Float32, full batch, mean softmax cross-entropy loss and its gradient, tanh hidden layer:

* MLP 784-128-10 on 10,000 samples (MNIST-sized random data): the GEMM floor is the
  time NumPy's own OpenBLAS (all cores) takes for the five matrix products the
  gradient needs (~4.1 GFLOP); goal: within 1.15x of it and faster than PyTorch;
* MLP 64-32-10 on 1,797 samples (scikit-learn's digits if installed, else random):
  goal at least 2x faster than PyTorch, jax.jit and NumPy;
* compile time (cold: no memory or disk cache) against width, 8-16-4 to 784-1024-10:
  goal < 1 s and flat within 2x.

symdiff's GEMMs are NumPy's OpenBLAS, so its speed is that library's kernels': the
header prints which ones OpenBLAS uses and ``OPENBLAS_CORETYPE``, which overrides its
choice (set before Python starts, it applies to every OpenBLAS user in the process,
NumPy included). On AVX-512 machines ``SkylakeX`` kernels are about 1.6x faster than
``Haswell`` ones.

Peers in the same run: NumPy written by hand, PyTorch (eager autograd), jax.jit of
``value_and_grad``; a peer that is not installed is reported as absent. NumPy and the
GEMM floor also run with OpenBLAS on one thread (its own thread pool suffers most when
the cores are shared); the one-thread floor divided by the cores is the ideal split. Every
gradient is checked against the NumPy one before timing. Contenders are timed
round-robin: per round, ``--burst`` back-to-back calls of each (5; a training loop calls
its kernel every step, so every contender's thread pool is awake, as in training),
each call timed on its own; the table gives medians. ``--burst 1`` times isolated calls,
where every thread pool (symdiff's, OpenBLAS's, PyTorch's) may have gone to sleep.

The symdiff objective is written with ``sympy.MatrixSymbol`` (``W2 * tanh(W1 x + b1) + b2``,
``sd.losses.softmax_cross_entropy``); its array program is compiled by
``codegen.compile_objective``. Compile times include the formula -> program steps.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BURST = 5
sys.path[:0] = [str(HERE.parent)]

import numpy as np

import codegen
from codegen import blas


def mlp_program(nin, nh, nout):
    """The array program of loss = softmax_ce(W2 tanh(W1 x + b1) + b2, y) and its gradient,
    from MatrixSymbol formulas through sd.Objective (theta order: W1, b1, W2, b2)."""
    import sympy as sp

    import symdiff as sd
    M = sp.MatrixSymbol
    x, y = M("x", nin, 1), M("y", nout, 1)
    W1, b1, W2, b2 = M("W1", nh, nin), M("b1", nh, 1), M("W2", nout, nh), M("b2", nout, 1)
    z = W2 * (W1 * x + b1).applyfunc(sp.tanh) + b2
    obj = sd.Objective(sd.losses.softmax_cross_entropy(z, y), params=[W1, b1, W2, b2], data=[x, y])
    return obj.program()


def unpack(theta, nin, nh, nout):
    sizes = [nh * nin, nh, nout * nh, nout]
    parts = np.split(theta, np.cumsum(sizes)[:-1])
    return parts[0].reshape(nh, nin), parts[1], parts[2].reshape(nout, nh), parts[3]


def numpy_by_hand(theta, X, Y, dims):
    W1, b1, W2, b2 = unpack(theta, *dims)
    n = len(X)
    H = np.tanh(X @ W1.T + b1)
    Z = H @ W2.T + b2
    Z -= Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    S = E.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(S[:, 0]) - (Z * Y).sum(axis=1)))
    D2 = (E / S - Y) * (1.0 / n)
    D1 = (D2 @ W2) * (1 - H * H)
    grad = np.concatenate([(D1.T @ X).ravel(), D1.sum(0), (D2.T @ H).ravel(), D2.sum(0)])
    return loss, grad


def gemm_floor(theta, X, Y, dims):
    """The five matrix products of the gradient, nothing else (NumPy's OpenBLAS, all cores)."""
    W1, _, W2, _ = unpack(theta, *dims)
    H = X @ W1.T
    Z = H @ W2.T
    D1 = Z @ W2
    return (D1.T @ X, Z.T @ H)


def torch_peer(theta, X, Y, dims):
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    def call(theta, _):
        params = [torch.from_numpy(p.copy()).requires_grad_() for p in unpack(theta.astype(np.float32), *dims)]
        W1, b1, W2, b2 = params
        z = torch.tanh(Xt @ W1.T + b1) @ W2.T + b2
        loss = torch.nn.functional.cross_entropy(z, Yt.argmax(1))
        grads = torch.autograd.grad(loss, params)
        return float(loss), np.concatenate([g.numpy().ravel() for g in grads])

    return call


def jax_peer(theta, X, Y, dims):
    import jax
    import jax.numpy as jnp
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    sizes = np.cumsum([dims[1] * dims[0], dims[1], dims[2] * dims[1]])

    def loss_fn(t):
        W1 = t[:sizes[0]].reshape(dims[1], dims[0])
        b1 = t[sizes[0]:sizes[1]]
        W2 = t[sizes[1]:sizes[2]].reshape(dims[2], dims[1])
        b2 = t[sizes[2]:]
        z = jnp.tanh(Xj @ W1.T + b1) @ W2.T + b2
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - (z * Yj).sum(1))

    f = jax.jit(jax.value_and_grad(loss_fn))

    def call(theta, _):
        loss, grad = f(jnp.asarray(theta, dtype=jnp.float32))
        return float(loss), np.asarray(grad)

    return call


def digits_or_random(n, nin, nout, rng):
    if (nin, nout, n) == (64, 10, 1797):
        try:
            from sklearn.datasets import load_digits
            d = load_digits()
            return (d.data / 16.0).astype(np.float32), np.eye(10, dtype=np.float32)[d.target], "digits"
        except ImportError:
            pass
    X = rng.random((n, nin), dtype=np.float32)
    Y = np.eye(nout, dtype=np.float32)[rng.integers(0, nout, n)]
    return X, Y, "random"


def time_round_robin(contenders, theta, repeats, burst=BURST):
    """Median seconds per call of each contender: per round, ``burst`` back-to-back calls
    of each (as a training loop makes them, so thread pools are awake for every
    contender alike), contenders in a rotating order; each call timed on its own."""
    times = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            call = contenders[name]
            for _ in range(burst):
                t0 = time.perf_counter()
                call(theta)
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run_mlp(dims, n, repeats, rng, burst=BURST):
    nin, nh, nout = dims
    X, Y, source = digits_or_random(n, nin, nout, rng)
    theta = (rng.standard_normal(nh * nin + nh + nout * nh + nout) * 0.1).astype(np.float64)
    ref_loss, ref_grad = numpy_by_hand(theta.astype(np.float32), X, Y, dims)
    t0 = time.perf_counter()
    kernel = codegen.compile_objective(mlp_program(*dims), dtype=np.float32, cache=False)
    codegen.clear_memory_cache()
    compile_s = time.perf_counter() - t0
    bound = kernel.bind({"x": X, "y": Y})
    contenders = {"symdiff": bound,
                  "numpy by hand": lambda t: numpy_by_hand(t.astype(np.float32), X, Y, dims)}
    notes = []
    for label, make in (("pytorch", torch_peer), ("jax.jit", jax_peer)):
        try:
            fn = make(theta, X, Y, dims)
            contenders[label] = lambda t, fn=fn: fn(t, None)
        except ImportError as exc:
            notes.append(f"{label}: absent ({exc.name} not installed)")
    for name, call in contenders.items():
        loss, grad = call(theta)
        ok = np.isclose(loss, ref_loss, rtol=1e-4) and np.allclose(grad, ref_grad, rtol=1e-3,
                                                                     atol=1e-4 * np.abs(ref_grad).max())
        if not ok:
            raise SystemExit(f"{name}: gradient disagrees with NumPy by hand (max abs diff "
                             f"{np.abs(grad - ref_grad).max():.3g})")
    contenders["GEMM floor (numpy)"] = lambda t: gemm_floor(t.astype(np.float32), X, Y, dims)
    one = blas.single_threaded()

    def one_thread(fn):
        def call(t):
            with one:
                return fn(t.astype(np.float32), X, Y, dims)
        return call

    contenders["GEMM floor, BLAS 1 thread"] = one_thread(gemm_floor)
    contenders["numpy, BLAS 1 thread"] = one_thread(numpy_by_hand)
    for call in contenders.values():  # warm-up
        call(theta)
    medians = time_round_robin(contenders, theta, repeats, burst)
    flops = 2 * n * (2 * nin * nh + 3 * nh * nout)
    return medians, compile_s, source, notes, flops


def compile_times(widths):
    rows = []
    for dims in widths:
        codegen.clear_memory_cache()
        gc.collect()  # not the peers' garbage: a collection of torch/jax objects takes ~0.2 s
        t0 = time.perf_counter()
        program = mlp_program(*dims)
        k = codegen.compile_objective(program, dtype=np.float32, cache=False)
        rows.append((dims, time.perf_counter() - t0, len(program.body), k.compile_times))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--burst", type=int, default=BURST,
                    help="back-to-back calls of each contender per round (default 5)")
    ap.add_argument("--quick", action="store_true", help="7 repeats, fewer compile widths")
    args = ap.parse_args(argv)
    repeats = 7 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    binding = blas.bind()
    print(f"BLAS: {binding.source} ({os.path.basename(binding.library)}, kernels "
          f"{binding.corename or '?'}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}); "
          f"cores: {codegen.available_cores()}; float32; medians of {repeats} round-robin rounds "
          f"of {args.burst} calls each\n")
    for dims, n in (((784, 128, 10), 10_000), ((64, 32, 10), 1797)):
        medians, compile_s, source, notes, flops = run_mlp(dims, n, repeats, rng, args.burst)
        sd_t = medians["symdiff"]
        print(f"MLP {'-'.join(map(str, dims))}, {n} samples ({source} data), "
              f"{flops / 1e9:.2f} GFLOP per call; symdiff compile {compile_s:.2f} s")
        print(f"  {'contender':<28} {'median ms':>10} {'vs symdiff':>11}")
        for name, t in sorted(medians.items(), key=lambda kv: kv[1]):
            print(f"  {name:<28} {t * 1e3:>10.3f} {t / sd_t:>10.2f}x")
        floor = medians["GEMM floor (numpy)"]
        split = medians["GEMM floor, BLAS 1 thread"] / codegen.available_cores()
        print(f"  symdiff / GEMM floor = {sd_t / floor:.2f}; symdiff / (1-thread floor / cores) = "
              f"{sd_t / split:.2f}; symdiff {flops / sd_t / 1e9:.0f} GFLOP/s")
        print("  " + "; ".join(f"{k} / symdiff = {medians[k] / sd_t:.2f}" for k in medians
                               if k in ("pytorch", "jax.jit", "numpy by hand")))
        for note in notes:
            print(f"  {note}")
        print()
    widths = [(8, 16, 4), (64, 32, 10), (784, 128, 10), (784, 1024, 10)]
    if args.quick:
        widths = widths[::3]
    print("compile time (cold, float32):")
    rows = compile_times(widths)
    for dims, t, body, times in rows:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in times.items() if isinstance(v, float))
        print(f"  {'-'.join(map(str, dims)):<14} {t:6.2f} s   ({body} IR instructions; {stages})")
    ts = [t for _, t, _, _ in rows]
    print(f"  max / min = {max(ts) / min(ts):.2f}")


if __name__ == "__main__":
    main()
