"""Hand-written Numba loops: the fused single-pass gradient of each workload model.

Each ``*_block`` adds one block's loss and gradient sums into ``acc`` (``[loss,
grad...]``, unscaled). Blocks of :data:`BLOCK` samples are summed in the data's
dtype and then added into a float64 total, so float32 runs stay accurate. The
linear models work a block at a time with SIMD loops over samples (data read
once from memory, re-read from cache); the curve fit and the MLP are plain
per-sample loops calling scalar libm, which is what Numba gives for them.
``driver(kind, parallel)`` returns ``f(theta, (X, y)) -> (loss, grad)`` with ``X``
the non-target columns stacked as a (d, n) array; the parallel driver splits the
blocks over ``prange`` with one padded partial-sum row per block.

``stream_sum`` is the bandwidth floor: it reads every value of a (d, n) array once.
"""

import math

import numpy as np
from numba import njit, prange

BLOCK = 4096
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


BLOCKS = {"linear": linear_block, "logistic": logistic_block, "curve": curve_block,
          "mlp": mlp_block}


def _serial(block):
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


def _parallel(block):
    @njit(fastmath=True, parallel=True)
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


_DRIVERS = {}


def driver(kind: str, parallel: bool):
    """The jitted ``f(theta, (X, y)) -> (loss, grad)`` for a workload kind (compiles on first call)."""
    key = (kind, parallel)
    if key not in _DRIVERS:
        _DRIVERS[key] = (_parallel if parallel else _serial)(BLOCKS[kind])
    return _DRIVERS[key]


@njit(fastmath=True)
def row_sum(x):
    s = x[0] - x[0]
    for i in range(x.shape[0]):
        s += x[i]
    return s


@njit(fastmath=True, parallel=True)
def stream_sum(X):
    """Sum of every value of a (d, n) array, blocks of samples spread over threads."""
    d, n = X.shape
    nblocks = (n + BLOCK - 1) // BLOCK
    parts = np.zeros(nblocks)
    for c in prange(nblocks):
        s = 0.0
        for j in range(d):
            s += row_sum(X[j, c * BLOCK:min((c + 1) * BLOCK, n)])
        parts[c] = s
    return parts.sum()
