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
against. The Numba peers are hand-written fused single-pass loops (see
``numba_loops.py``), the practical limit of what a user writes by hand; the
bandwidth floor is the time to read the workload's data once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    except Exception as exc:  # noqa: BLE001 - wheel built without LLVM: any error
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

def _numba_loops():
    _require("numba")
    import numba_loops
    return numba_loops


def _soa(w: Workload):
    """Data columns but the target stacked as a (d, n) array, plus the target."""
    return np.ascontiguousarray(np.vstack(w.columns[:-1])), w.target()


def prepare_numba_serial(w: Workload) -> Contender:
    """The fused loop on one thread; the jitted function is the peer itself (no wrapper)."""
    return Contender(_numba_loops().driver(w.kind, parallel=False), _soa(w), note="1 thread")


def prepare_numba_parallel(w: Workload) -> Contender:
    """The same loop split into blocks over ``prange``, one partial sum per block."""
    import numba
    return Contender(_numba_loops().driver(w.kind, parallel=True), _soa(w),
                     note=f"{numba.get_num_threads()} threads")


# --------------------------------------------------------------------------- bandwidth floor

def floor_numba(theta, data):
    """Read every data value once, all cores (parallel Numba sum)."""
    return float(_numba_loops().stream_sum(data)), None


def floor_numpy(theta, data):
    """Read every data value once, one core (NumPy's SIMD pairwise sum)."""
    return float(data.sum()), None


def prepare_floor_numba(w: Workload) -> Contender:
    _numba_loops()
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
