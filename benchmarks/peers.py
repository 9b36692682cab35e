"""What a user would write instead of symdiff: one gradient function per peer.

Every peer function has the signature ``peer(theta, data) -> (loss, grad)``,
``loss`` the mean per-sample loss (a float) and ``grad`` its gradient (a 1-D
NumPy array in ``workload.params`` order). ``data`` is the peer's own layout of
the workload's data (a feature matrix, device arrays, tensors, ...), built once
by the peer's ``prepare_*`` function: converting data is one-time setup, not
part of a call, exactly as a user would keep their data in the form their tool
likes.

``PEERS`` maps a row label to its ``prepare_*(workload) -> Contender``. A
peer that is not installed, or that does not apply to a workload, raises
:class:`PeerUnavailable` with the reason; the harness prints ``n/a``.

The hand-written NumPy peer is the reference every other gradient is checked
against. The Numba peers are the hand-written fused single-pass loops (the
practical limit for a scalar per-sample loop); the bandwidth floor is the time
to read the workload's data once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import sympy as sp

from workloads import Workload, unpack_mlp


class PeerUnavailable(Exception):
    """A peer cannot run here (library missing, workload not supported)."""


@dataclass
class Contender:
    """A ready-to-time peer: ``call(theta, data)`` plus a note for the table."""

    call: Callable[[np.ndarray, Any], tuple]
    data: Any
    note: str = ""
    checked: bool = True  # False for the bandwidth floor, which computes no gradient


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise PeerUnavailable(f"{module} not installed") from exc


# --------------------------------------------------------------------------- NumPy

def numpy_linear(theta, data):
    X, y = data
    r = X @ theta[:-1] + theta[-1] - y
    g = np.empty_like(theta)
    g[:-1] = (2.0 / len(y)) * (r @ X)
    g[-1] = 2.0 * r.mean()
    return float(np.mean(r * r)), g


def numpy_logistic(theta, data):
    X, y = data
    z = X @ theta[:-1] + theta[-1]
    loss = np.mean(np.logaddexp(0.0, z) - y * z)
    dz = 0.5 * np.tanh(0.5 * z) + 0.5 - y  # sigmoid(z) - y, without overflow
    g = np.empty_like(theta)
    g[:-1] = (dz @ X) / len(y)
    g[-1] = dz.mean()
    return float(loss), g


def numpy_curve(theta, data):
    x, y = data
    a, b, c, d, e = theta
    E = np.exp(-b * x)
    phase = d * x + e
    S, C = np.sin(phase), np.cos(phase)
    r = a * E + c * S - y
    r2 = (2.0 / len(y)) * r
    g = np.array([r2 @ E, -a * (r2 @ (x * E)), r2 @ S, c * (r2 @ (x * C)), c * (r2 @ C)],
                 dtype=theta.dtype)
    return float(np.mean(r * r)), g


def numpy_mlp(theta, data):
    X, y = data
    W1, b1, W2, b2, w3, b3 = unpack_mlp(theta)
    H1 = np.tanh(X @ W1.T + b1)
    H2 = np.tanh(H1 @ W2.T + b2)
    r = H2 @ w3 + b3 - y
    dout = (2.0 / len(y)) * r
    dA2 = np.outer(dout, w3) * (1.0 - H2 * H2)
    dA1 = (dA2 @ W2) * (1.0 - H1 * H1)
    g = np.concatenate([(dA1.T @ X).ravel(), dA1.sum(0), (dA2.T @ H1).ravel(), dA2.sum(0),
                        H2.T @ dout, [dout.sum()]]).astype(theta.dtype, copy=False)
    return float(np.mean(r * r)), g


NUMPY_BY_KIND = {"linear": numpy_linear, "logistic": numpy_logistic,
                 "curve": numpy_curve, "mlp": numpy_mlp}


def _matrix_data(w: Workload):
    if w.kind == "curve":
        return w.columns[0], w.columns[1]
    return w.features(), w.target()


def prepare_numpy(w: Workload) -> Contender:
    return Contender(NUMPY_BY_KIND[w.kind], _matrix_data(w))


# --------------------------------------------------------------------------- JAX

def _jax_losses(jnp, jax):
    def linear(theta, X, y):
        r = X @ theta[:-1] + theta[-1] - y
        return jnp.mean(r * r)

    def logistic(theta, X, y):
        z = X @ theta[:-1] + theta[-1]
        return jnp.mean(jax.nn.softplus(z) - y * z)

    def curve(theta, x, y):
        a, b, c, d, e = theta[0], theta[1], theta[2], theta[3], theta[4]
        r = a * jnp.exp(-b * x) + c * jnp.sin(d * x + e) - y
        return jnp.mean(r * r)

    def mlp(theta, X, y):
        W1, b1, W2, b2, w3, b3 = unpack_mlp(theta)
        H1 = jnp.tanh(X @ W1.T + b1)
        H2 = jnp.tanh(H1 @ W2.T + b2)
        r = H2 @ w3 + b3 - y
        return jnp.mean(r * r)

    return {"linear": linear, "logistic": logistic, "curve": curve, "mlp": mlp}


def prepare_jax(w: Workload) -> Contender:
    _require("jax")
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp
    value_and_grad = jax.jit(jax.value_and_grad(_jax_losses(jnp, jax)[w.kind]))
    data = tuple(jax.device_put(a) for a in _matrix_data(w))

    def jax_peer(theta, data):
        loss, g = value_and_grad(theta, *data)
        return float(loss), np.asarray(g)

    return Contender(jax_peer, data)


# --------------------------------------------------------------------------- PyTorch

def _torch_losses(torch):
    def linear(theta, X, y):
        r = X @ theta[:-1] + theta[-1] - y
        return torch.mean(r * r)

    def logistic(theta, X, y):
        z = X @ theta[:-1] + theta[-1]
        return torch.mean(torch.nn.functional.softplus(z) - y * z)

    def curve(theta, x, y):
        a, b, c, d, e = theta.unbind()
        r = a * torch.exp(-b * x) + c * torch.sin(d * x + e) - y
        return torch.mean(r * r)

    def mlp(theta, X, y):
        W1, b1, W2, b2, w3, b3 = unpack_mlp(theta)
        H1 = torch.tanh(X @ W1.T + b1)
        H2 = torch.tanh(H1 @ W2.T + b2)
        r = H2 @ w3 + b3 - y
        return torch.mean(r * r)

    return {"linear": linear, "logistic": logistic, "curve": curve, "mlp": mlp}


def prepare_torch(w: Workload) -> Contender:
    torch = _require("torch")
    torch.set_num_threads(os.cpu_count() or 1)
    loss_fn = _torch_losses(torch)[w.kind]
    data = tuple(torch.from_numpy(a) for a in _matrix_data(w))

    def torch_peer(theta, data):
        t = torch.from_numpy(theta).requires_grad_(True)
        loss = loss_fn(t, *data)
        loss.backward()
        return loss.item(), t.grad.numpy()

    return Contender(torch_peer, data, note=f"{torch.get_num_threads()} threads")


# --------------------------------------------------------------------------- SymPy / SymEngine

def elementary(expr: sp.Expr) -> sp.Expr:
    """``expr`` with symdiff's own functions (softplus, sigmoid) written with exp/log.

    The naive spelling is exact enough for the workloads' logits (|z| < 30) and is
    what a SymPy or SymEngine user would write.
    """
    return expr.replace(
        lambda e: isinstance(e, sp.Function) and type(e).__module__.startswith("symdiff"),
        lambda e: e.rewrite(sp.exp))


def prepare_sympy(w: Workload) -> Contender:
    if w.dtype != np.float64:
        raise PeerUnavailable("float64 only")
    loss = elementary(w.loss)
    grads = [sp.diff(loss, p) for p in w.params]
    f = sp.lambdify(w.params + w.data_symbols, [loss] + grads, modules="numpy", cse=True)
    nparams = len(w.params)

    def sympy_lambdify_peer(theta, columns):
        values = f(*theta, *columns)
        g = np.array([np.mean(v) for v in values[1:]])
        return float(np.mean(values[0])), g

    return Contender(sympy_lambdify_peer, w.columns, note=f"{nparams} diff() exprs, cse")


SYMENGINE_CHUNK = 8192


def prepare_symengine(w: Workload) -> Contender:
    """SymEngine ``Lambdify`` over (params, data) per sample, evaluated in chunks.

    Lambdify takes one row of arguments per sample, so each chunk buffer holds
    theta broadcast into its first columns and a copy of the chunk's data in the
    rest; per-sample values are averaged. Chunks keep the buffers cache-sized.
    """
    if w.dtype != np.float64:
        raise PeerUnavailable("float64 only")
    se = _require("symengine")
    args = [se.sympify(s) for s in w.params + w.data_symbols]
    loss = se.sympify(elementary(w.loss))
    exprs = [loss] + [loss.diff(p) for p in args[:len(w.params)]]
    note = "llvm backend, cse"
    try:
        f = se.Lambdify(args, exprs, backend="llvm", cse=True)
    except Exception as exc:  # wheel built without LLVM
        f = se.Lambdify(args, exprs, cse=True)
        note = f"default backend (llvm unavailable: {type(exc).__name__}), cse"
    P, n = len(w.params), w.n
    chunk = min(SYMENGINE_CHUNK, n)
    buf = np.empty((chunk, len(args)))
    out = np.empty((chunk, len(exprs)))
    data = np.ascontiguousarray(np.column_stack(w.columns))

    def symengine_peer(theta, data):
        buf[:, :P] = theta
        total = np.zeros(len(exprs))
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            buf[:m, P:] = data[lo:lo + m]
            f(buf[:m], out=out[:m])
            total += out[:m].sum(axis=0)
        total /= n
        return float(total[0]), total[1:]

    return Contender(symengine_peer, data, note=note)


# --------------------------------------------------------------------------- Numba

def _numba_kernels():
    """Compile-on-first-use fused loops; one ``*_block`` per model, shared by both drivers."""
    numba = _require("numba")
    from numba import njit, prange

    jit = njit(fastmath=True, nogil=True)

    @jit
    def affine(theta, X, lo, hi):
        """``z[i] = theta[:d]·x_i + theta[d]`` over a cache-sized block, SIMD over i."""
        d = X.shape[0]
        z = np.empty(hi - lo, dtype=X.dtype)
        z[:] = theta[d]
        for j in range(d):
            xj = X[j, lo:hi]
            wj = theta[j]
            for i in range(hi - lo):
                z[i] += wj * xj[i]
        return z

    @jit
    def add_weighted_columns(dz, X, lo, hi, g):
        """``g[j] += sum_i dz[i] * X[j, lo + i]``; ``g[d] += sum_i dz[i]``."""
        d = X.shape[0]
        for j in range(d):
            xj = X[j, lo:hi]
            s = dz[0] - dz[0]
            for i in range(hi - lo):
                s += dz[i] * xj[i]
            g[j] += s
        s = dz[0] - dz[0]
        for i in range(hi - lo):
            s += dz[i]
        g[d] += s

    @jit
    def linear_block(theta, X, y, lo, hi, acc):
        r = affine(theta, X, lo, hi)
        yb = y[lo:hi]
        loss = r[0] - r[0]
        for i in range(hi - lo):
            r[i] -= yb[i]
            loss += r[i] * r[i]
            r[i] += r[i]
        acc[0] += loss
        add_weighted_columns(r, X, lo, hi, acc[1:])

    @jit
    def logistic_block(theta, X, y, lo, hi, acc):
        z = affine(theta, X, lo, hi)
        yb = y[lo:hi]
        one = z[0] - z[0] + 1
        loss = z[0] - z[0]
        for i in range(hi - lo):
            zi = z[i]
            e = math.exp(-abs(zi))
            loss += max(zi, zi - zi) + math.log1p(e) - yb[i] * zi
            s = one / (one + e)
            z[i] = (s if zi >= 0 else e * s) - yb[i]
        acc[0] += loss
        add_weighted_columns(z, X, lo, hi, acc[1:])

    @jit
    def curve_block(theta, X, y, lo, hi, acc):
        a, b, c, d, e = theta[0], theta[1], theta[2], theta[3], theta[4]
        for i in range(lo, hi):
            x = X[0, i]
            E = math.exp(-b * x)
            phase = d * x + e
            S = math.sin(phase)
            C = math.cos(phase)
            r = a * E + c * S - y[i]
            acc[0] += r * r
            r2 = r + r
            acc[1] += r2 * E
            acc[2] -= r2 * a * x * E
            acc[3] += r2 * S
            acc[4] += r2 * c * x * C
            acc[5] += r2 * c * C

    @jit
    def mlp_block(theta, X, y, lo, hi, acc):
        n_in, n1, n2 = X.shape[0], 16, 16
        o_b1 = n1 * n_in
        o_W2 = o_b1 + n1
        o_b2 = o_W2 + n2 * n1
        o_w3 = o_b2 + n2
        o_b3 = o_w3 + n2
        h1 = np.empty(n1, dtype=theta.dtype)
        h2 = np.empty(n2, dtype=theta.dtype)
        d1 = np.empty(n1, dtype=theta.dtype)
        one = theta[0] - theta[0] + 1
        g = acc[1:]
        for i in range(lo, hi):
            for j in range(n1):
                s = theta[o_b1 + j]
                for k in range(n_in):
                    s += theta[j * n_in + k] * X[k, i]
                h1[j] = math.tanh(s)
            out = theta[o_b3]
            for k in range(n2):
                s = theta[o_b2 + k]
                for j in range(n1):
                    s += theta[o_W2 + k * n1 + j] * h1[j]
                h2[k] = math.tanh(s)
                out += theta[o_w3 + k] * h2[k]
            r = out - y[i]
            acc[0] += r * r
            dout = r + r
            g[o_b3] += dout
            for j in range(n1):
                d1[j] = 0
            for k in range(n2):
                g[o_w3 + k] += dout * h2[k]
                da2 = dout * theta[o_w3 + k] * (one - h2[k] * h2[k])
                g[o_b2 + k] += da2
                for j in range(n1):
                    g[o_W2 + k * n1 + j] += da2 * h1[j]
                    d1[j] += da2 * theta[o_W2 + k * n1 + j]
            for j in range(n1):
                da1 = d1[j] * (one - h1[j] * h1[j])
                g[o_b1 + j] += da1
                for k in range(n_in):
                    g[j * n_in + k] += da1 * X[k, i]

    blocks = {"linear": linear_block, "logistic": logistic_block,
              "curve": curve_block, "mlp": mlp_block}
    drivers = {}
    for kind, block in blocks.items():
        drivers[kind] = (_serial_driver(jit, block), _parallel_driver(numba, prange, block))
    return drivers


BLOCK = 4096  # samples summed in the data dtype before adding to the float64 total


def _serial_driver(jit, block):
    @jit
    def numba_serial(theta, data):
        X, y = data
        n = y.shape[0]
        total = np.zeros(theta.shape[0] + 1)
        acc = np.empty(theta.shape[0] + 1, dtype=y.dtype)
        for lo in range(0, n, BLOCK):
            acc[:] = 0
            block(theta, X, y, lo, min(lo + BLOCK, n), acc)
            total += acc
        return total[0] / n, total[1:] / n
    return numba_serial


def _parallel_driver(numba, prange, block):
    @numba.njit(fastmath=True, parallel=True)
    def numba_parallel(theta, data):
        X, y = data
        n = y.shape[0]
        nblocks = (n + BLOCK - 1) // BLOCK
        width = theta.shape[0] + 1
        parts = np.zeros((nblocks, width + 8), dtype=y.dtype)  # padded: no false sharing
        for c in prange(nblocks):
            block(theta, X, y, c * BLOCK, min((c + 1) * BLOCK, n), parts[c, :width])
        total = np.zeros(width)
        for c in range(nblocks):
            total += parts[c, :width]
        return total[0] / n, total[1:] / n
    return numba_parallel


_NUMBA_DRIVERS = None


def _numba_driver(kind: str, parallel: bool):
    global _NUMBA_DRIVERS
    if _NUMBA_DRIVERS is None:
        _NUMBA_DRIVERS = _numba_kernels()
    return _NUMBA_DRIVERS[kind][1 if parallel else 0]


def _soa(w: Workload):
    """Data columns but the target stacked as a (d, n) array, plus the target."""
    return np.ascontiguousarray(np.vstack(w.columns[:-1])), w.target()


def prepare_numba_serial(w: Workload) -> Contender:
    """The fused loop on one thread; the jitted function is the peer itself (no wrapper)."""
    return Contender(_numba_driver(w.kind, parallel=False), _soa(w), note="1 thread")


def prepare_numba_parallel(w: Workload) -> Contender:
    """The same loop split into blocks over ``prange``, one partial sum per block."""
    import numba
    return Contender(_numba_driver(w.kind, parallel=True), _soa(w),
                     note=f"{numba.get_num_threads()} threads")


# --------------------------------------------------------------------------- bandwidth floor

def _stream_kernel():
    numba = _require("numba")
    from numba import prange

    @numba.njit(fastmath=True)
    def row_sum(x):
        s = x[0] - x[0]
        for i in range(x.shape[0]):
            s += x[i]
        return s

    @numba.njit(fastmath=True, parallel=True)
    def stream_sum(X):
        d, n = X.shape
        nblocks = (n + BLOCK - 1) // BLOCK
        parts = np.zeros(nblocks)
        for c in prange(nblocks):
            s = 0.0
            for j in range(d):
                s += row_sum(X[j, c * BLOCK:min((c + 1) * BLOCK, n)])
            parts[c] = s
        return parts.sum()
    return stream_sum


_STREAM = None


def floor_numba(theta, data):
    """Read every data value once, all cores (parallel Numba sum)."""
    return float(_STREAM(data)), None


def floor_numpy(theta, data):
    """Read every data value once, one core (NumPy's SIMD pairwise sum)."""
    return float(data.sum()), None


def prepare_floor_numba(w: Workload) -> Contender:
    global _STREAM
    if _STREAM is None:
        _STREAM = _stream_kernel()
    return Contender(floor_numba, np.ascontiguousarray(np.vstack(w.columns)),
                     note=f"{w.nbytes / 1e6:.0f} MB", checked=False)


def prepare_floor_numpy(w: Workload) -> Contender:
    return Contender(floor_numpy, np.ascontiguousarray(np.vstack(w.columns)),
                     note=f"{w.nbytes / 1e6:.0f} MB", checked=False)


PEERS = {
    "numpy": prepare_numpy,
    "numba": prepare_numba_serial,
    "numba parallel": prepare_numba_parallel,
    "jax.jit": prepare_jax,
    "torch": prepare_torch,
    "sympy.lambdify": prepare_sympy,
    "symengine": prepare_symengine,
    "floor (numba)": prepare_floor_numba,
    "floor (numpy)": prepare_floor_numpy,
}
