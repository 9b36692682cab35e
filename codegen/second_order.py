"""Kernels whose outputs are more than (loss, gradient): Gauss-Newton sums, Hessians.

Nothing here forks the pipeline. The symbolic side builds one :class:`~symdiff.core.ir.Program`
with as many outputs as it needs (a residual, its Jacobian row, the products ``r*J_j`` and
``J_j*J_k``; or a loss, its gradient and the Hessian's upper triangle), and
:func:`codegen.lower.lower_to_llvm` emits one ``reduce`` or ``map`` function per view of
it, each computing only its selected outputs, through the same loop. The classes below
reuse :class:`~codegen.kernel.Kernel`'s data validation and thread split and only shape
the outputs: symmetric matrices are stored as their upper triangle, row-major.
"""

from __future__ import annotations

import ctypes
import functools
import math
import threading

import numpy as np

from symdiff.errors import DataError

from . import _build
from .kernel import (_F64, _SIGNATURE, MIN_SAMPLES_PER_THREAD, BoundKernel, Kernel, _Runner, _Scratch,
                     _address, _diagnose, check_columns, check_theta, map_outputs, real_array)


def upper_to_symmetric(values, p: int) -> np.ndarray:
    """The symmetric p-by-p matrix whose upper triangle, row-major, is ``values``."""
    return np.asarray(values)[_symmetric_gather(p)]


@functools.lru_cache(maxsize=64)
def _symmetric_gather(p: int, offset: int = 0) -> np.ndarray:
    """Indices into the row-major upper triangle (starting at ``offset``) that fill a
    symmetric p-by-p matrix (np.triu_indices per call costs more than a small batch's kernel)."""
    index = np.empty((p, p), dtype=np.intp)
    iu = np.triu_indices(p)
    index[iu] = np.arange(offset, offset + len(iu[0]))
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
                 "symdiff_jacobian": ("map", tuple(range(1, 1 + p))),
                 "symdiff_rj": ("map", tuple(range(1 + p)))}
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
    per sample, in the kernel's dtype (for small problems, robust losses, covariances);
    ``kernel.qr(theta, data) -> (rss, R, qtr)`` for ill-conditioned problems.
    ``kernel.bind(data)`` checks the data once and returns the same calls without ``data``.
    Data are validated as for every kernel (errors name the column); float32 data are
    summed in float64 across blocks, as the loss kernels do.
    """

    def __init__(self, **common):
        super().__init__(grad_name="symdiff_gn", value_name="symdiff_rss", **common)
        self.n_params = len(self.params)
        self._gn_scratch = _Scratch(self.n_params, self._grad.n_out)
        lib = self._library
        self._residual_fn = _SIGNATURE(lib.addresses["symdiff_residual"])
        self._jacobian_fn = _SIGNATURE(lib.addresses["symdiff_jacobian"])
        self._rj_fn = _SIGNATURE(lib.addresses["symdiff_rj"])

    # shared by the kernel and its bound form: (columns, n, pointer array) in, results out
    def _gauss_newton(self, theta, cols, n, ptrs, ptrs_address=None):
        p = self.n_params
        if self.threads <= 1 or n // MIN_SAMPLES_PER_THREAD <= 1:
            # one part, as _Runner.run would do it, into this thread's buffers whose addresses
            # are known (looking addresses up costs more than a small batch's kernel); theta
            # checked in Python floats when it is a float64 vector (NumPy's isfinite and
            # reduction cost more than the kernel on a few samples)
            if type(theta) is np.ndarray and theta.dtype == _F64 and theta.shape == (p,):
                if not all(map(math.isfinite, theta.tolist())):
                    check_theta(theta, self.params)
                t = theta
            else:
                t = check_theta(theta, self.params)
            scratch = self._gn_scratch
            scratch.theta_view[:] = t
            self._grad.fn(scratch.theta_addr, _address(ptrs) if ptrs_address is None else ptrs_address,
                          0, n, scratch.out_addr, 1.0)
            s = scratch.out
        else:
            s = self._grad.run(check_theta(theta, self.params), ptrs, n, self.threads, scale=1.0)
        rss = s.item(0)
        if not (rss == rss and abs(rss) != float("inf")):
            _diagnose(cols, self.data, "residual sum of squares")
        return rss, s[1:1 + p].copy(), s[_symmetric_gather(p, 1 + p)]

    def _rss(self, theta, cols, n, ptrs):
        t = check_theta(theta, self.params)
        rss = self._value.run(t, ptrs, n, self.threads, scale=1.0).item(0)
        if not (rss == rss and abs(rss) != float("inf")):
            _diagnose(cols, self.data, "residual sum of squares")
        return rss

    def _map(self, fn, n_out, theta, n, ptrs):
        t = check_theta(theta, self.params)
        return map_outputs(fn, t, ptrs, n, n_out, self.dtype, self.threads, self.lanes)

    def _qr(self, theta, cols, n, ptrs, block_rows):
        t = check_theta(theta, self.params)
        if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) \
                or block_rows < 1:
            raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
        p = self.n_params
        top = np.zeros((0, p + 1))
        rss = 0.0
        for start in range(0, n, int(block_rows)):
            stop = min(n, start + int(block_rows))
            offset = ptrs + np.uintp(start * self.dtype.itemsize) if cols else ptrs
            rj = map_outputs(self._rj_fn, t, offset, stop - start, p + 1, self.dtype,
                             self.threads, self.lanes)
            block = np.empty((stop - start + top.shape[0], p + 1))
            block[:top.shape[0]] = top
            block[top.shape[0]:, :p] = rj[1:].T
            block[top.shape[0]:, p] = rj[0]
            rss += float(np.dot(block[top.shape[0]:, p], block[top.shape[0]:, p]))
            top = np.linalg.qr(block, mode="r")
        if not (rss == rss and abs(rss) != float("inf")):
            _diagnose(cols, self.data, "residual sum of squares")
        R = np.zeros((p + 1, p + 1))
        R[:top.shape[0]] = top
        return rss, np.triu(R[:p, :p]), R[:p, p].copy()

    def qr(self, theta, data=None, block_rows=65536):
        """``(rss, R, qtr)``: the Jacobian's QR factor ``R`` (p-by-p upper triangular,
        ``J = Q R``) and ``Q^T r`` (p,), by a streaming (TSQR) reduction over blocks of
        ``block_rows`` samples, with the residual sum of squares.

        For ill-conditioned problems: the Gauss-Newton step from ``R d = -qtr`` keeps the
        digits that forming ``J^T J`` (condition number squared) loses. Memory is one block
        of the Jacobian, not all of it; it costs more than the fused sums.
        """
        cols, n, ptrs, _ = self._prepare(data)
        return self._qr(theta, cols, n, ptrs, block_rows)

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
        cols = self._ready_columns(data)
        if cols is not None:
            return BoundResiduals(self, cols, cols[0].shape[0])
        cols, n = check_columns(data, self.data, self.dtype)
        return BoundResiduals(self, cols, n)

    def _ready_columns(self, data):
        """The columns of ``data`` when it is a dict keyed by name whose columns are all
        1-D, C-contiguous, of the kernel's dtype and of one non-zero length: nothing to
        check or copy (what curve_fit passes; check_columns costs more than a small fit's
        kernel). None otherwise."""
        if type(data) is not dict or not self.data or len(data) != len(self.data):
            return None
        try:
            cols = [data[name] for name in self.data]
        except KeyError:
            return None
        n = cols[0].shape[0] if type(cols[0]) is np.ndarray else 0
        for c in cols:
            if not (type(c) is np.ndarray and c.dtype == self.dtype and c.shape == (n,)
                    and c.flags.c_contiguous) or n == 0:
                return None
        return cols

    def __repr__(self):
        return (f"<symdiff ResidualKernel params={len(self.params)} data={len(self.data)} "
                f"dtype={self.dtype} lanes={self.lanes} threads={self.threads}>")


def _data_address(a) -> int:
    """The address of a C-contiguous array's data: through ctypes' buffer view when the
    array is writable (a third of ``__array_interface__``'s cost, which shows when a
    small fit binds its data), else through the interface."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return _address(a)


class _Bound:
    """Data checked once and pinned: the pointer table stays valid while we hold the arrays."""

    def __init__(self, kernel, cols, n):
        self.kernel = kernel
        self.n = n
        self._cols = cols
        self._ptrs = np.array([_data_address(c) for c in cols] or [0], dtype=np.uintp)
        self._ptrs_address = _data_address(self._ptrs)


class BoundResiduals(_Bound):
    """A :class:`ResidualKernel` with its data bound: ``bound(theta) -> (rss, jtr, jtj)``;
    also ``.value(theta)``, ``.residuals(theta)``, ``.jacobian(theta)``, ``.qr(theta)``."""

    def __init__(self, kernel, cols, n):
        super().__init__(kernel, cols, n)
        p = kernel.n_params
        # what one single-threaded call needs, looked up once (a solver calls this per step)
        self._single = kernel.threads <= 1 or n // MIN_SAMPLES_PER_THREAD <= 1
        self._fn = kernel._grad.fn
        self._p = p
        self._gather = _symmetric_gather(p, 1 + p)

    def __call__(self, theta):
        if not self._single:
            return self.kernel._gauss_newton(theta, self._cols, self.n, self._ptrs,
                                             self._ptrs_address)
        p = self._p
        if not (type(theta) is np.ndarray and theta.dtype == _F64 and theta.shape == (p,)
                and all(map(math.isfinite, theta.tolist()))):
            theta = check_theta(theta, self.kernel.params)
        scratch = self.kernel._gn_scratch
        scratch.theta_view[:] = theta
        self._fn(scratch.theta_addr, self._ptrs_address, 0, self.n, scratch.out_addr, 1.0)
        s = scratch.out
        rss = s.item(0)
        if not (rss == rss and abs(rss) != float("inf")):
            _diagnose(self._cols, self.kernel.data, "residual sum of squares")
        return rss, s[1:1 + p].copy(), s[self._gather]

    def value(self, theta) -> float:
        return self.kernel._rss(theta, self._cols, self.n, self._ptrs)

    def residuals(self, theta) -> np.ndarray:
        k = self.kernel
        return k._map(k._residual_fn, 1, theta, self.n, self._ptrs)[0]

    def jacobian(self, theta) -> np.ndarray:
        k = self.kernel
        return np.ascontiguousarray(k._map(k._jacobian_fn, k.n_params, theta, self.n, self._ptrs).T)

    def qr(self, theta, block_rows=65536):
        return self.kernel._qr(theta, self._cols, self.n, self._ptrs, block_rows)


# -- Hessians ---------------------------------------------------------------------

def compile_hessian(program, hvp_program, hessian_program, *, dtype=np.float64, threads=None,
                    cache=True, keys=None) -> "HessianKernel":
    """A :class:`HessianKernel` from three programs over the same data:

    ``program``, the objective's own (outputs: loss, gradient); ``hvp_program`` (params:
    theta then v; outputs: H v); and ``hessian_program``, a callable returning the program
    whose outputs are loss, gradient (p) and the Hessian's upper triangle (p(p+1)/2).
    The first two are compiled now; the Hessian program, which grows as p², is built and
    compiled on the first call that needs the matrix (an MLP with a few hundred
    parameters has a Hessian program a hundred times its gradient's, while the methods
    that use H v never need it).
    """
    p = len(program.params)
    if len(program.outputs) != 1 + p:
        raise ValueError(f"the objective program must give the loss and {p} gradient entries")
    if len(hvp_program.params) != 2 * p or len(hvp_program.outputs) != p \
            or hvp_program.data != program.data:
        raise ValueError("the Hessian-vector program must take theta and v and give p outputs")
    functions = {"symdiff_grad": ("reduce", tuple(range(1 + p))),
                 "symdiff_value": ("reduce", (0,))}
    library, llvm_ir, opt_ir, times, lanes = _build(program, dtype, functions, cache)
    hvp_library, _, _, hvp_times, _ = _build(hvp_program, dtype,
                                             {"symdiff_hvp": ("reduce", tuple(range(p)))}, cache)
    times = {**times, **{f"hvp_{k}": v for k, v in hvp_times.items()}}
    return HessianKernel(params=program.params, data=program.data, dtype=dtype, threads=threads,
                         library=library, lanes=lanes, llvm_ir=llvm_ir, optimized_ir=opt_ir,
                         compile_times=times, keys=keys, hvp_library=hvp_library,
                         hessian_source=(hessian_program, cache))


def _direction(v, p) -> np.ndarray:
    """The direction of a Hessian-vector product: p real numbers (NaN in gives NaN out,
    as for ``H @ v``; scipy's trust-krylov probes with such vectors)."""
    d = real_array(v, "the direction v")
    if d.shape != (p,):
        raise DataError(f"the direction v must have shape ({p},), one entry per parameter, "
                        f"got shape {d.shape}")
    return d.astype(np.float64)


#: above this many parameters the Hessian program (p(p+1)/2 outputs; 2,080 at 64, compiled
#: in ~20 s) is not compiled unless asked for by ``compile_hessian()``: the matrix is then
#: assembled from p Hessian-vector passes instead of one fused pass
FUSED_HESSIAN_MAX_PARAMS = 64


class HessianKernel(Kernel):
    """Compiled mean loss, gradient and Hessian of an objective over a batch.

    ``kernel(theta, data) -> (loss, grad, hess)``: means over the samples, in one pass
    (``hess`` symmetric, shape (p, p); its code is compiled on the first such call, or by
    :meth:`compile_hessian`; beyond ``FUSED_HESSIAN_MAX_PARAMS`` parameters the matrix is
    assembled from p Hessian-vector passes unless :meth:`compile_hessian` was called). ``kernel.hvp(theta, data, v) -> (p,)``: the mean
    Hessian times ``v``, from a separate program that never forms the Hessian.
    ``kernel.loss_grad(theta, data)`` and ``kernel.value(theta, data)`` are the first-order
    calls. ``kernel.bind(data)`` returns the same calls without ``data``; its ``.hvp``
    has scipy's ``hessp(x, p)`` signature.
    """

    def __init__(self, *, hvp_library, hessian_source, **common):
        p = len(common["params"])
        super().__init__(grad_name="symdiff_grad", value_name="symdiff_value", n_out=1 + p,
                         **common)
        self._hvp_library = hvp_library  # keeps the H v code alive
        self._hvp = _Runner(hvp_library.addresses["symdiff_hvp"], p, self.lanes)
        self._hessian_source = hessian_source
        self._hessian_library = None
        self._hess = None
        self._hess_lock = threading.Lock()
        self.n_params = p

    def compile_hessian(self) -> "HessianKernel":
        """Build and compile the Hessian program now (otherwise done on first use); self."""
        with self._hess_lock:
            if self._hess is None:
                make_program, cache = self._hessian_source
                program = make_program()
                if len(program.outputs) != 1 + self.n_params + _triangle(self.n_params) \
                        or program.data != self.data:
                    raise ValueError("the Hessian program must give the loss, the gradient and "
                                     "the Hessian's upper triangle over the same data")
                library, _, _, times, _ = _build(
                    program, self.dtype, {"symdiff_hessian": ("reduce", tuple(range(len(program.outputs))))},
                    cache)
                self.compile_times.update({f"hessian_{k}": v for k, v in times.items()})
                self._hessian_library = library
                self._hess = _Runner(library.addresses["symdiff_hessian"], len(program.outputs),
                                     self.lanes)
        return self

    def _full(self, theta, cols, n, ptrs):
        t = check_theta(theta, self.params)
        if self._hess is None:
            if self.n_params > FUSED_HESSIAN_MAX_PARAMS:
                return self._by_columns(t, cols, n, ptrs)
            self.compile_hessian()
        s = self._hess.run(t, ptrs, n, self.threads)
        loss = s.item(0)
        if not (loss == loss and abs(loss) != float("inf")):
            _diagnose(cols, self.data, "loss")
        p = self.n_params
        return loss, s[1:1 + p].copy(), upper_to_symmetric(s[1 + p:], p)

    def _by_columns(self, t, cols, n, ptrs):
        """Loss, gradient and Hessian as one gradient pass and p Hessian-vector passes,
        column j the product with the j-th unit vector (symmetrized: exact symmetry)."""
        first = self._grad.run(t, ptrs, n, self.threads)
        loss = first.item(0)
        if not (loss == loss and abs(loss) != float("inf")):
            _diagnose(cols, self.data, "loss")
        p = self.n_params
        buf = np.zeros(2 * p)
        buf[:p] = t
        H = np.empty((p, p))
        for j in range(p):
            buf[p + j] = 1.0
            H[:, j] = self._hvp.run(buf, ptrs, n, self.threads)
            buf[p + j] = 0.0
        return loss, first[1:].copy(), 0.5 * (H + H.T)

    def _hv(self, theta, v, cols, n, ptrs):
        t = check_theta(theta, self.params)
        return self._hvp.run(np.concatenate([t, _direction(v, self.n_params)]), ptrs, n,
                             self.threads)

    def __call__(self, theta, data=None):
        """``(loss, grad, hess)``: means over the samples of ``data`` at ``theta``."""
        cols, n, ptrs, _ = self._prepare(data)
        return self._full(theta, cols, n, ptrs)

    def loss_grad(self, theta, data=None):
        """``(loss, grad)`` as an ordinary kernel returns them."""
        return Kernel.__call__(self, theta, data)

    def hessian(self, theta, data=None) -> np.ndarray:
        """The mean Hessian alone, shape (p, p)."""
        return self(theta, data)[2]

    def hvp(self, theta, data, v) -> np.ndarray:
        """The mean Hessian at ``theta`` times the direction ``v``, shape (p,)."""
        cols, n, ptrs, _ = self._prepare(data)
        return self._hv(theta, v, cols, n, ptrs)

    def bind(self, data) -> "BoundHessian":
        cols, n = check_columns(data, self.data, self.dtype)
        return BoundHessian(self, cols, n)

    def __repr__(self):
        return (f"<symdiff HessianKernel params={len(self.params)} data={len(self.data)} "
                f"dtype={self.dtype} lanes={self.lanes} threads={self.threads}>")


class BoundHessian(_Bound):
    """A :class:`HessianKernel` with its data bound: ``bound(theta) -> (loss, grad, hess)``;
    also ``.loss_grad(theta)``, ``.value(theta)``, ``.hessian(theta)`` and ``.hvp(theta, v)``
    (scipy's ``hessp``)."""

    def __init__(self, kernel, cols, n):
        super().__init__(kernel, cols, n)
        self._first = BoundKernel(kernel, cols, n)

    def __call__(self, theta):
        return self.kernel._full(theta, self._cols, self.n, self._ptrs)

    def loss_grad(self, theta):
        return self._first(theta)

    def value(self, theta) -> float:
        return self._first.value(theta)

    def hessian(self, theta) -> np.ndarray:
        return self(theta)[2]

    def hvp(self, theta, v) -> np.ndarray:
        return self.kernel._hv(theta, v, self._cols, self.n, self._ptrs)
