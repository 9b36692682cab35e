"""Kernels whose outputs are more than (loss, gradient): Gauss-Newton sums, Hessians.

Nothing here forks the pipeline. The symbolic side builds one :class:`~symdiff.ir.Program`
with as many outputs as it needs (a residual, its Jacobian row, the products ``r*J_j`` and
``J_j*J_k``; or a loss, its gradient and the Hessian's upper triangle), and
:func:`codegen.lower.lower_to_llvm` emits one ``reduce`` or ``map`` function per view of
it, each computing only its selected outputs, through the same loop. The classes below
reuse :class:`~codegen.kernel.Kernel`'s data validation and thread split and only shape
the outputs: symmetric matrices are stored as their upper triangle, row-major.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _build
from .kernel import (_SIGNATURE, Kernel, _address, _diagnose, check_columns,
                     check_theta, map_outputs)


def upper_to_symmetric(values, p: int) -> np.ndarray:
    """The symmetric p-by-p matrix whose upper triangle, row-major, is ``values``."""
    return np.asarray(values)[_symmetric_gather(p)]


@functools.lru_cache(maxsize=64)
def _symmetric_gather(p: int) -> np.ndarray:
    """Indices into the row-major upper triangle that fill a symmetric p-by-p matrix
    (np.triu_indices per call costs more than a small batch's kernel)."""
    index = np.empty((p, p), dtype=np.intp)
    iu = np.triu_indices(p)
    index[iu] = np.arange(len(iu[0]))
    index.T[iu] = index[iu]
    return index


def _triangle(p: int) -> int:
    return p * (p + 1) // 2


# -- Gauss-Newton -----------------------------------------------------------------

def compile_residuals(program, n_params, *, dtype=np.float64, threads=None, cache=True,
                      keys=None) -> "ResidualKernel":
    """A :class:`ResidualKernel` for a program laid out as ``Residuals.program`` documents:
    ``r``, the Jacobian row (p), ``r**2``, ``r*J`` (p), ``J_j*J_k`` for ``j <= k``."""
    p = n_params
    if len(program.outputs) != 2 + 2 * p + _triangle(p):
        raise ValueError(f"a residual program with {p} parameters has {2 + 2 * p + _triangle(p)} "
                         f"outputs, not {len(program.outputs)}")
    sums = tuple(range(1 + p, len(program.outputs)))
    functions = {"symdiff_gn": ("reduce", sums),
                 "symdiff_rss": ("reduce", (1 + p,)),
                 "symdiff_residual": ("map", (0,)),
                 "symdiff_jacobian": ("map", tuple(range(1, 1 + p)))}
    library, llvm_ir, opt_ir, times, lanes = _build(program, dtype, functions, cache)
    return ResidualKernel(params=program.params, data=program.data, dtype=dtype, threads=threads,
                          library=library, lanes=lanes, llvm_ir=llvm_ir, optimized_ir=opt_ir,
                          compile_times=times, keys=keys, n_out=len(sums))


class ResidualKernel(Kernel):
    """Compiled Gauss-Newton sums of residuals ``r_i(theta)`` over a batch.

    ``kernel(theta, data) -> (rss, jtr, jtj)``: ``sum r_i**2`` (float), ``sum r_i*J_i``
    (shape (p,)) and ``sum J_i^T J_i`` (shape (p, p), symmetric), in one pass, without
    forming the Jacobian. ``kernel.value(theta, data) -> rss``;
    ``kernel.residuals(theta, data) -> (n,)`` and ``kernel.jacobian(theta, data) -> (n, p)``
    per sample, in the kernel's dtype (for small problems, robust losses, covariances).
    ``kernel.bind(data)`` checks the data once and returns the same calls without ``data``.
    Data are validated as for every kernel (errors name the column); float32 data are
    summed in float64 across blocks, as the loss kernels do.
    """

    def __init__(self, **common):
        super().__init__(grad_name="symdiff_gn", value_name="symdiff_rss", **common)
        self.n_params = len(self.params)
        lib = self._library
        self._residual_fn = _SIGNATURE(lib.addresses["symdiff_residual"])
        self._jacobian_fn = _SIGNATURE(lib.addresses["symdiff_jacobian"])

    # shared by the kernel and its bound form: (columns, n, pointer array) in, results out
    def _gauss_newton(self, theta, cols, n, ptrs):
        t = check_theta(theta, self.params)
        s = self._grad.run(t, ptrs, n, self.threads, scale=1.0)
        rss = s.item(0)
        if not (rss == rss and abs(rss) != float("inf")):
            _diagnose(cols, self.data, "residual sum of squares")
        p = self.n_params
        return rss, s[1:1 + p].copy(), upper_to_symmetric(s[1 + p:], p)

    def _rss(self, theta, cols, n, ptrs):
        t = check_theta(theta, self.params)
        rss = self._value.run(t, ptrs, n, self.threads, scale=1.0).item(0)
        if not (rss == rss and abs(rss) != float("inf")):
            _diagnose(cols, self.data, "residual sum of squares")
        return rss

    def _map(self, fn, n_out, theta, n, ptrs):
        t = check_theta(theta, self.params)
        return map_outputs(fn, t, ptrs, n, n_out, self.dtype, self.threads, self.lanes)

    def __call__(self, theta, data=None):
        """``(rss, jtr, jtj)``: sums over the samples of ``data`` at ``theta``."""
        cols, n, ptrs, _ = self._prepare(data)
        return self._gauss_newton(theta, cols, n, ptrs)

    def value(self, theta, data=None) -> float:
        """The residual sum of squares alone (cheaper than the full call)."""
        cols, n, ptrs, _ = self._prepare(data)
        return self._rss(theta, cols, n, ptrs)

    def residuals(self, theta, data=None) -> np.ndarray:
        """The residual of every sample, shape (n,)."""
        cols, n, ptrs, _ = self._prepare(data)
        return self._map(self._residual_fn, 1, theta, n, ptrs)[0]

    def jacobian(self, theta, data=None) -> np.ndarray:
        """The Jacobian ``dr_i/dtheta_j``, shape (n, p), C-contiguous."""
        cols, n, ptrs, _ = self._prepare(data)
        return np.ascontiguousarray(self._map(self._jacobian_fn, self.n_params, theta, n, ptrs).T)

    def bind(self, data) -> "BoundResiduals":
        cols, n = check_columns(data, self.data, self.dtype)
        return BoundResiduals(self, cols, n)

    def __repr__(self):
        return (f"<symdiff ResidualKernel params={len(self.params)} data={len(self.data)} "
                f"dtype={self.dtype} lanes={self.lanes} threads={self.threads}>")


class _Bound:
    """Data checked once and pinned: the pointer table stays valid while we hold the arrays."""

    def __init__(self, kernel, cols, n):
        self.kernel = kernel
        self.n = n
        self._cols = cols
        self._ptrs = np.array([_address(c) for c in cols] or [0], dtype=np.uintp)


class BoundResiduals(_Bound):
    """A :class:`ResidualKernel` with its data bound: ``bound(theta) -> (rss, jtr, jtj)``;
    also ``.value(theta)``, ``.residuals(theta)``, ``.jacobian(theta)``."""

    def __call__(self, theta):
        return self.kernel._gauss_newton(theta, self._cols, self.n, self._ptrs)

    def value(self, theta) -> float:
        return self.kernel._rss(theta, self._cols, self.n, self._ptrs)

    def residuals(self, theta) -> np.ndarray:
        k = self.kernel
        return k._map(k._residual_fn, 1, theta, self.n, self._ptrs)[0]

    def jacobian(self, theta) -> np.ndarray:
        k = self.kernel
        return np.ascontiguousarray(k._map(k._jacobian_fn, k.n_params, theta, self.n, self._ptrs).T)
