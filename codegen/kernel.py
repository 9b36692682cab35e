"""The call layer: NumPy arrays in, native kernel calls out, nothing unchecked in between.

Every argument is validated in Python before native code sees it — dtype, shape,
lengths, every data column present, theta's length and finiteness — and a bad call
raises a ``TypeError``/``ValueError`` subclass that names the argument or column.
Contiguous columns of the kernel's dtype are passed without copying; anything else
is converted once. Native calls run with the GIL released (ctypes releases it), so
large batches are split across threads, each summing its own contiguous chunk; the
chunk sums are added in a fixed order, so a given thread count gives bit-identical
results run to run.

:meth:`Kernel.bind` validates the data once and returns a :class:`BoundKernel` whose
calls only check theta: the path a mini-batch training step takes.
"""

from __future__ import annotations

import ctypes
import itertools
import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from symdiff.errors import DataError, DataTypeError

_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                              ctypes.c_int64, ctypes.c_void_p, ctypes.c_double)
#: batches smaller than this per thread run on one thread (thread hand-off costs ~20 µs)
MIN_SAMPLES_PER_THREAD = 16384
_pool = None
_pool_lock = threading.Lock()


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, available_cores() - 1) or 1,
                                       thread_name_prefix="symdiff")
        return _pool


def check_threads(threads) -> int:
    """``threads``: None (all cores) or a positive integer."""
    if threads is None:
        return available_cores()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be None (all cores) or a positive integer, got {threads!r}")
    return int(threads)


def _name(key) -> str:
    return key.name if hasattr(key, "name") and not isinstance(key, str) else str(key)


_ALL = np.logical_and.reduce


def as_float64(theta) -> np.ndarray:
    """theta as a contiguous float64 array (no copy when it already is one), or DataTypeError."""
    if type(theta) is np.ndarray and theta.dtype == np.float64 and theta.flags.c_contiguous:
        return theta
    return np.ascontiguousarray(real_array(theta, "theta"), dtype=np.float64)


def check_theta(theta, names) -> np.ndarray:
    """theta as a contiguous float64 vector of the right length with finite entries."""
    t = as_float64(theta)
    if t.ndim != 1 or t.shape[0] != len(names):
        raise DataError(f"theta must be a 1-D array of {len(names)} parameters "
                        f"({', '.join(names)}), got shape {t.shape}")
    if not _ALL(np.isfinite(t)):  # the ufunc reduction without ndarray.all's Python wrapper
        k = int(np.flatnonzero(~np.isfinite(t))[0])
        raise DataError(f"theta[{k}] (parameter {names[k]!r}) is {t[k]}")
    return t


def check_columns(data, names, dtype) -> tuple[list, int]:
    """The data columns, in ``names`` order, as contiguous arrays of ``dtype``; and n."""
    dtype = np.dtype(dtype)
    if data is None:
        if names:
            raise DataError(f"missing data: this kernel needs columns {', '.join(names)}")
        return [], 1
    if isinstance(data, np.ndarray) or (hasattr(data, "shape") and hasattr(data, "dtype")
                                         and not hasattr(data, "keys")):
        arr = np.asarray(data)
        _check_kind(arr.dtype, "data")
        if arr.ndim == 1 and len(names) == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise DataError(f"a data array must have shape (n, {len(names)}) with columns "
                            f"{', '.join(names)}; got shape {arr.shape}")
        if arr.dtype == dtype and arr.flags.f_contiguous:
            cols = [arr[:, j] for j in range(arr.shape[1])]
        else:
            _check_copy_fits("data", arr.size, dtype)
            with np.errstate(over="ignore"):  # out-of-range values become inf, diagnosed later
                t = np.ascontiguousarray(arr.T, dtype=dtype)
            cols = [t[j] for j in range(t.shape[0])]
        n = arr.shape[0]
    elif hasattr(data, "keys"):
        given = {}
        for key in data.keys():
            name = _name(key)
            if name in given and name in names:
                raise DataError(f"data column {name!r} is given twice (by name and by symbol)")
            given[name] = key
        cols, n = [], None
        for name in names:
            if name not in given:
                raise DataError(f"missing data column {name!r}; got columns "
                                f"{sorted(given) if given else 'none'}")
            col = _column(name, data[given[name]], dtype)
            if n is None:
                n = col.shape[0]
            elif col.shape[0] != n:
                raise DataError(f"data column {name!r} has {col.shape[0]} samples, but "
                                f"{names[0]!r} has {n}")
            cols.append(col)
        if n is None:
            n = 1  # no data columns: the loss depends on the parameters alone
    else:
        raise DataTypeError("data must be a mapping {symbol or name: 1-D array} or a 2-D array, "
                            f"got {type(data).__name__}")
    if n == 0:
        raise DataError("empty batch: data has 0 samples")
    return cols, n


def _check_kind(dt, what):
    if dt.kind not in "biuf":
        raise DataTypeError(f"{what} must hold real numbers, got dtype {dt}")


def real_array(value, what: str) -> np.ndarray:
    """``value`` as a NumPy array of real numbers (no copy when it is one), else a
    DataTypeError naming ``what`` (theta, a data column, a direction)."""
    try:
        a = np.asarray(value)
    except Exception as exc:
        raise DataTypeError(f"{what} is not an array of numbers: {exc}") from None
    _check_kind(a.dtype, what)
    return a


def _column(name, value, dtype):
    if isinstance(value, np.ndarray) and value.dtype == dtype and value.ndim == 1 \
            and value.flags.c_contiguous:
        return value
    a = real_array(value, f"data column {name!r}")
    if a.ndim != 1:
        raise DataError(f"data column {name!r} must be 1-D, got shape {a.shape}")
    if not (a.dtype == dtype and a.flags.c_contiguous):
        _check_copy_fits(f"data column {name!r}", a.shape[0], dtype)
    with np.errstate(over="ignore"):  # out-of-range values become inf, diagnosed later
        return np.ascontiguousarray(a, dtype=dtype)


def _check_copy_fits(what, n_values, dtype):
    """Refuse to copy strided or broadcast data larger than half the free memory."""
    need = int(n_values) * np.dtype(dtype).itemsize
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > free // 2:
        raise DataError(f"{what} would need a contiguous {np.dtype(dtype)} copy of "
                        f"{need / 2**30:.1f} GiB ({n_values} values), more than half the free "
                        f"memory; pass a contiguous {np.dtype(dtype)} array")


def _diagnose(cols, names, what):
    """Raise a DataError naming the first column holding NaN or infinity, if any."""
    for name, c in zip(names, cols):
        bad = ~np.isfinite(c)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"data column {name!r} contains {c[row]} at row {row}; the {what} "
                            f"is not finite")


def _split(n, parts, lanes):
    """Chunk boundaries of [0, n): ``parts`` contiguous chunks, aligned to the SIMD width."""
    bounds = [0]
    for k in range(1, parts):
        b = (n * k // parts) // lanes * lanes
        bounds.append(max(b, bounds[-1]))
    bounds.append(n)
    return bounds


class _Runner:
    """Runs one native reduce function over [0, n) on one or more threads.

    The batch is cut into ``CHUNKS_PER_THREAD`` times more chunks than threads, and
    threads take the next chunk as they finish one, so a thread that the operating
    system delays does not hold the others up. Each chunk writes its own row of
    partial means, which are added in chunk order: the result depends on the thread
    count (through the chunking) but not on which thread ran which chunk.
    """

    CHUNKS_PER_THREAD = 4

    def __init__(self, address, n_out, lanes):
        self.fn = _SIGNATURE(address)
        self.n_out = n_out
        self.lanes = lanes

    def run(self, theta, ptrs, n, threads, scale=None):
        """Means over the batch (the kernel scales by ``scale``, default 1/n), as a new array."""
        scale = 1.0 / n if scale is None else scale
        parts = 1 if threads <= 1 else max(1, min(threads, n // MIN_SAMPLES_PER_THREAD))
        t_addr, p_addr = _address(theta), _address(ptrs)
        if parts == 1:
            out = np.empty(self.n_out, dtype=np.float64)
            self.fn(t_addr, p_addr, 0, n, _address(out), scale)
            return out
        chunks = parts * self.CHUNKS_PER_THREAD
        bounds = _split(n, chunks, self.lanes)
        out = np.empty((chunks, self.n_out), dtype=np.float64)
        row, base, fn = out.strides[0], _address(out), self.fn
        counter = itertools.count()

        def work():
            for k in iter(counter.__next__, None):
                if k >= chunks:
                    return
                fn(t_addr, p_addr, bounds[k], bounds[k + 1], base + k * row, scale)

        futures = [_executor().submit(work) for _ in range(parts - 1)]
        work()
        for f in futures:
            f.result()
        return out.sum(axis=0)


class _Scratch(threading.local):
    """Per-thread argument and result buffers with their addresses looked up once.

    (``ndarray.ctypes.data`` costs about a microsecond, as much as a small batch.)
    """

    def __init__(self, n_params, n_out):
        self.theta = np.zeros(max(1, n_params))
        self.theta_addr = self.theta.ctypes.data
        self.out = np.zeros(n_out)
        self.out_addr = self.out.ctypes.data
        self.grad = self.out[1:]
        self.theta_view = self.theta[:n_params]


_F64 = np.dtype(np.float64)


def _address(a) -> int:
    return a.__array_interface__["data"][0]


class _Compiled:
    """What every compiled callable carries: its signature, its code and how it was made."""

    def __init__(self, *, params, data, dtype, threads, library, lanes, llvm_ir,
                 optimized_ir, compile_times):
        self.params = tuple(params)
        self.data = tuple(data)
        self.dtype = np.dtype(dtype)
        self.threads = check_threads(threads)
        self.lanes = lanes
        self._llvm_ir = llvm_ir
        self.optimized_llvm_ir = optimized_ir
        self.compile_times = dict(compile_times)
        self._library = library  # keeps the machine code alive as long as the callable
        self._asm = None

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR symdiff generated, before LLVM's optimizer (regenerated after a cache hit)."""
        if callable(self._llvm_ir):
            self._llvm_ir = self._llvm_ir()
        return self._llvm_ir

    @property
    def asm(self) -> str:
        """The generated machine code, as assembly text (produced on first access)."""
        if self._asm is None:
            from .jit import assembly
            self._asm = assembly(self.optimized_llvm_ir)
        return self._asm


class Kernel(_Compiled):
    """Compiled mean loss and gradient of an objective over a batch.

    ``kernel(theta, data) -> (loss, grad)``; ``kernel.value(theta, data) -> loss``.
    ``data`` is a mapping from data symbols (or their names) to 1-D arrays, or a 2-D
    array whose columns follow the objective's data symbols.
    """

    def __init__(self, *, grad_name, value_name, n_out, keys=None, **common):
        super().__init__(**common)
        library = self._library
        self._grad = _Runner(library.addresses[grad_name], n_out, self.lanes)
        self._value = _Runner(library.addresses[value_name], 1, self.lanes)
        self._scratch = _Scratch(len(self.params), n_out)
        self._vscratch = _Scratch(len(self.params), 1)
        self.keys = tuple(keys) if keys is not None else self.data
        self._last = (None, None)  # (columns, pointer table) of the previous call
        self._memo = None          # the previous call's dict, see _prepare
        self._theta_shape = (len(self.params),)

    def _columns(self, data):
        """Columns and n; the fast path for a dict keyed by our symbols or names."""
        if type(data) is dict:
            cols = []
            for key, name in zip(self.keys, self.data):
                c = data.get(key)
                if c is None:
                    c = data.get(name)
                elif key is not name and name in data:
                    return check_columns(data, self.data, self.dtype)  # raises: given twice
                if not (type(c) is np.ndarray and c.dtype == self.dtype and c.ndim == 1
                        and c.flags.c_contiguous):
                    return check_columns(data, self.data, self.dtype)
                cols.append(c)
            if cols:
                n = cols[0].shape[0]
                if n and all(c.shape[0] == n for c in cols):
                    return cols, n
        return check_columns(data, self.data, self.dtype)

    def _prepare(self, data):
        """Columns, n and the pointer table for ``data``.

        A dict holding the very key and array objects of the previous call skips every
        check: they passed then, and an array object cannot move or shrink its memory.
        This is what keeps repeated calls on the same batch cheap (~2 µs of Python).
        """
        if type(data) is dict:
            memo = self._memo
            if memo is not None:
                keys, values, cols, n, ptrs, addr = memo
                try:
                    if tuple(data) == keys and all(map(operator.is_, data.values(), values)):
                        return cols, n, ptrs, addr
                except Exception:
                    pass
        cols, n = self._columns(data)
        ptrs, addr = self._pointers(cols)
        if type(data) is dict:
            given = {id(v) for v in data.values()}
            if all(id(c) in given for c in cols):  # the caller's own arrays, not converted copies
                self._memo = (tuple(data), tuple(data.values()), tuple(cols), n, ptrs, addr)
        return cols, n, ptrs, addr

    def _pointers(self, cols):
        last_cols, last_ptrs = self._last
        if last_cols is not None and len(last_cols) == len(cols) and \
                all(a is b for a, b in zip(cols, last_cols)):
            return last_ptrs
        ptrs = np.array([_address(c) for c in cols] or [0], dtype=np.uintp)
        # holding the arrays keeps their memory (and so these addresses) valid
        self._last = (tuple(cols), (ptrs, _address(ptrs)))
        return ptrs, _address(ptrs)

    def _theta(self, theta, scratch):
        if not (type(theta) is np.ndarray and theta.dtype is _F64 and theta.shape == self._theta_shape):
            theta = check_theta(theta, self.params)
        scratch.theta_view[:] = theta
        return scratch.theta

    def _check_result(self, value, cols, theta, what):
        if not (value == value and abs(value) != float("inf")):
            check_theta(theta, self.params)
            _diagnose(cols, self.data, what)


    def __call__(self, theta, data=None):
        """Mean loss and mean gradient over the batch ``data`` at parameters ``theta``.

        A non-finite loss is diagnosed: NaN or infinity in theta or in a data column raises
        :class:`~symdiff.errors.DataError` naming it; otherwise (the formula itself overflowed
        at these parameters) the non-finite values are returned for the caller to handle.
        """
        cols, n, ptrs, ptrs_addr = self._prepare(data)
        sc = self._scratch
        t = self._theta(theta, sc)
        if self.threads > 1 and n >= 2 * MIN_SAMPLES_PER_THREAD:
            means = self._grad.run(t, ptrs, n, self.threads)
            loss, grad = means.item(0), means[1:]
        else:
            self._grad.fn(sc.theta_addr, ptrs_addr, 0, n, sc.out_addr, 1.0 / n)
            loss, grad = sc.out.item(0), sc.grad.copy()
        if not (loss == loss and abs(loss) != float("inf")):
            check_theta(theta, self.params)
            _diagnose(cols, self.data, "loss")
        return loss, grad

    def value(self, theta, data=None) -> float:
        cols, n, ptrs, ptrs_addr = self._prepare(data)
        sc = self._vscratch
        t = self._theta(theta, sc)
        if self.threads > 1 and n >= 2 * MIN_SAMPLES_PER_THREAD:
            loss = self._value.run(t, ptrs, n, self.threads).item(0)
        else:
            self._value.fn(sc.theta_addr, ptrs_addr, 0, n, sc.out_addr, 1.0 / n)
            loss = sc.out.item(0)
        self._check_result(loss, cols, theta, "loss")
        return loss

    def bind(self, data) -> "BoundKernel":
        """Validate ``data`` once; the returned callable takes only theta."""
        cols, n = check_columns(data, self.data, self.dtype)
        return BoundKernel(self, cols, n)

    def __repr__(self):
        return (f"<symdiff Kernel params={len(self.params)} data={len(self.data)} "
                f"dtype={self.dtype} lanes={self.lanes} threads={self.threads}>")


class BoundKernel:
    """A kernel with its data checked and pinned: ``bound(theta) -> (loss, grad)``.

    Calls check only theta; safe to call from several threads at once.
    """

    def __init__(self, kernel: Kernel, cols, n):
        self.kernel = kernel
        self.n = n
        self._cols = cols  # keep the arrays alive: the pointer table refers to them
        self._ptrs = np.array([_address(c) for c in cols] or [0], dtype=np.uintp)
        self._ptrs_addr = _address(self._ptrs)
        self._fn = kernel._grad.fn
        self._parallel = kernel.threads > 1 and n >= 2 * MIN_SAMPLES_PER_THREAD
        self._scratch = _Scratch(len(kernel.params), kernel._grad.n_out)
        self._vscratch = _Scratch(len(kernel.params), 1)
        self._inv_n = 1.0 / n

    def __call__(self, theta):
        k = self.kernel
        if self._parallel:
            t = k._theta(theta, self._scratch)
            means = k._grad.run(t, self._ptrs, self.n, k.threads)
            loss, grad = means.item(0), means[1:]
        else:
            sc = self._scratch
            k._theta(theta, sc)
            self._fn(sc.theta_addr, self._ptrs_addr, 0, self.n, sc.out_addr, self._inv_n)
            loss, grad = sc.out.item(0), sc.grad.copy()
        if not (loss == loss and abs(loss) != float("inf")):
            check_theta(theta, k.params)
            _diagnose(self._cols, k.data, "loss")
        return loss, grad

    def value(self, theta) -> float:
        k = self.kernel
        sc = self._vscratch
        t = k._theta(theta, sc)
        if self._parallel:
            loss = k._value.run(t, self._ptrs, self.n, k.threads).item(0)
        else:
            k._value.fn(sc.theta_addr, self._ptrs_addr, 0, self.n, sc.out_addr, self._inv_n)
            loss = sc.out.item(0)
        k._check_result(loss, self._cols, theta, "loss")
        return loss


class ModelKernel(_Compiled):
    """Compiled per-sample predictions of a model: ``model_kernel(theta, data) -> array``."""

    def __init__(self, *, map_name, **common):
        super().__init__(**common)
        self._fn = _SIGNATURE(self._library.addresses[map_name])

    def __call__(self, theta, data):
        theta = check_theta(theta, self.params)
        cols, n = check_columns(data, self.data, self.dtype)
        ptrs = np.array([c.ctypes.data for c in cols] or [0], dtype=np.uintp)
        return map_outputs(self._fn, theta, ptrs, n, 1, self.dtype, self.threads, self.lanes)[0]


def map_outputs(fn, theta, ptrs, n, n_out, dtype, threads, lanes) -> np.ndarray:
    """Run a native ``map`` function over [0, n): an (n_out, n) array, one row per output."""
    out = np.empty((n_out, n), dtype=dtype)
    table = np.array([_address(row) for row in out] or [0], dtype=np.uintp)
    t_addr, p_addr, o_addr = _address(theta), _address(ptrs), _address(table)
    parts = 1 if threads <= 1 else max(1, min(threads, n // MIN_SAMPLES_PER_THREAD))
    if parts == 1:
        fn(t_addr, p_addr, 0, n, o_addr, 1.0)
        return out
    bounds = _split(n, parts, lanes)
    futures = [_executor().submit(fn, t_addr, p_addr, bounds[k], bounds[k + 1], o_addr, 1.0)
               for k in range(1, parts)]
    fn(t_addr, p_addr, bounds[0], bounds[1], o_addr, 1.0)
    for f in futures:
        f.result()
    return out
