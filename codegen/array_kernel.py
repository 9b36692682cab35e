"""The call layer of array kernels: ``loss, grad = kernel(theta, data)`` over batch tiles.

Same contract as :class:`codegen.kernel.Kernel`: theta is the flat parameter vector
(params in order, each raveled C-order), ``data`` maps each data symbol (or its name)
to its batch — ``(n, r, c)`` or ``(n, r*c)`` for a per-sample ``(r, c)`` array, also
``(n, r)`` for an ``(r, 1)`` vector, ``(n,)`` for a scalar. Everything is validated in
Python before native code runs; errors name the symbol and the shape expected.

A call runs ``symdiff_prepare`` once (sample-invariant values), then ``symdiff_tile``
on tiles of at most ``plan.tile_rows`` samples, grouped in one slot per core (see
``ArrayKernel._schedule``): results are bit-identical run to run and whatever the
thread count. Small calls run on one thread or several, whichever is faster on the
machine as it is (``_ThreadChoice``). BLAS runs single-threaded inside (symdiff's
threads share the slots; see :mod:`codegen.blas`).
"""

from __future__ import annotations

import ctypes
import math
import operator
import statistics
import time

import numpy as np

from symdiff.errors import DataError, DataTypeError

from . import blas
from . import handoff
from .kernel import _Compiled, as_float64, available_cores, real_array
from .lower_array import FLUSH_ACC, FRESH_ACC, ZERO_SUMS

_PREPARE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_TILE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                         ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_MAP_TILE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                             ctypes.c_void_p, ctypes.c_void_p)


#: batches with fewer flops than this per thread run on one thread (hand-off costs ~30 us)
MIN_FLOPS_PER_THREAD = 4e6
#: GEMM-accumulated (``T``) gradients are added into the double sums every this many tiles
FLUSH_TILES = 8
#: batches of fewer flops than this (a few ms) run on one thread or several, whichever the
#: timings of the last calls say is faster (see ``_ThreadChoice``)
ADAPTIVE_FLOPS = 2e8


def _name(key) -> str:
    return key.name if hasattr(key, "name") and not isinstance(key, str) else str(key)


class _ArrayCompiled(_Compiled):
    """What array kernels share: the plan, the prepare function and argument validation."""

    def __init__(self, *, plan, keys=None, **common):
        super().__init__(**common)
        self.plan = plan
        P = plan.program
        self.shapes = {n: P.shape(n) for n in list(P.params) + list(P.data)}
        self.param_sizes = [plan.size(p) for p in P.params]
        self.n_theta = sum(self.param_sizes)
        self.keys = tuple(keys) if keys is not None else self.data
        self._prepare = _PREPARE(self._library.addresses["symdiff_prepare"])
        self._memo = None
        self._blas_threads = blas.SingleThreaded()
        self.slots = max(1, available_cores())

    # -- validation ----------------------------------------------------------------------
    def _theta(self, theta) -> np.ndarray:
        t = as_float64(theta)
        if t.ndim != 1 or t.shape[0] != self.n_theta:
            shapes = ", ".join(f"{p} {self.shapes[p] or '(scalar)'}" for p in self.params)
            raise DataError(f"theta must be a 1-D array of {self.n_theta} values (parameters "
                            f"{shapes}, each raveled C-order); got shape {t.shape}")
        if not math.isfinite(t.sum()) and not np.isfinite(t).all():  # a sum is cheaper
            k = int(np.flatnonzero(~np.isfinite(t))[0])
            raise DataError(f"theta[{k}] ({self._where(k)}) is {t[k]}")
        return t

    def _where(self, k) -> str:
        at = 0
        for p, size in zip(self.params, self.param_sizes):
            if k < at + size:
                shape = self.shapes[p]
                return f"parameter {p!r}" if not shape else \
                    f"parameter {p!r} entry {tuple(map(int, np.unravel_index(k - at, shape)))}"
            at += size
        return "?"

    def _columns(self, data):
        """Each data symbol's batch as a C-contiguous (n, size) array of the kernel dtype; n."""
        if not self.data:
            return [], 1
        if isinstance(data, np.ndarray) or (hasattr(data, "shape") and hasattr(data, "dtype")
                                             and not hasattr(data, "keys")):
            data = self._split(data)
        if data is None or not hasattr(data, "keys"):
            raise DataTypeError(f"data must be a mapping {{symbol or name: array}} with "
                                f"{', '.join(self.data)}, or one (n, columns) array; "
                                f"got {type(data).__name__}")
        given = {}
        for key in data:
            name = _name(key)
            if name in given and name in self.data:
                raise DataError(f"data {name!r} is given twice (by name and by symbol)")
            given[name] = key
        cols, n = [], None
        for name in self.data:
            if name not in given:
                raise DataError(f"missing data {name!r}; got {sorted(given) if given else 'none'}")
            col = self._column(name, data[given[name]])
            if n is None:
                n = col.shape[0]
            elif col.shape[0] != n:
                raise DataError(f"data {name!r} has {col.shape[0]} samples, but {self.data[0]!r} has {n}")
            cols.append(col)
        if n == 0:
            raise DataError("empty batch: data has 0 samples")
        return cols, n

    def _split(self, array) -> dict:
        """One (n, columns) array as ``{name: (n, size) view}``: each data symbol's entries
        raveled C-order, in data order (a bare ``X`` when there is one input, as for
        scalar models)."""
        array = np.asarray(array)
        sizes = [int(np.prod(self.shapes[name], dtype=int)) for name in self.data]
        if array.ndim == 1 and sum(sizes) == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[1] != sum(sizes):
            layout = ", ".join(f"{name} {self.shapes[name] or '(scalar)'}" for name in self.data)
            raise DataError(f"a data array must have shape (n, {sum(sizes)}): the entries of "
                            f"{layout}, each raveled C-order; got shape {array.shape}")
        starts = np.cumsum([0] + sizes)
        return {name: array[:, a:b] if self.shapes[name] else array[:, a]
                for name, a, b in zip(self.data, starts[:-1], starts[1:])}

    def _prepared(self, data):
        """Columns, n and pointer table; a dict holding the very arrays of the previous call
        skips the checks (they passed then; an array object cannot move its memory)."""
        memo = self._memo
        if memo is not None and type(data) is dict:
            keys, values, cols, n, ptrs = memo
            if tuple(data) == keys and all(map(operator.is_, data.values(), values)):
                return cols, n, ptrs
        cols, n = self._columns(data)
        ptrs = _pointer_table(cols)
        if type(data) is dict and all(any(np.may_share_memory(c, v) for v in data.values()
                                              if isinstance(v, np.ndarray)) for c in cols):
            # only the caller's own arrays (views): a converted copy would go stale if the
            # caller changed their array in place
            self._memo = (tuple(data), tuple(data.values()), cols, n, ptrs)
        return cols, n, ptrs

    def _column(self, name, value):
        shape = self.shapes[name]
        value = real_array(value, f"data {name!r}")
        if not shape:
            ok, expected = value.ndim == 1, "(n,)"
        else:
            r, c = shape
            ok = (value.ndim == 3 and value.shape[1:] == shape) or \
                 (value.ndim == 2 and value.shape[1] == r * c)
            expected = f"(n, {r}, {c}) or (n, {r * c})"
        if not ok:
            raise DataError(f"data {name!r} has per-sample shape {shape or '(scalar)'}: expected "
                            f"an array of shape {expected}, got {value.shape}")
        n = value.shape[0]
        size = shape[0] * shape[1] if shape else 1
        if value.dtype == self.dtype and value.flags.c_contiguous:
            return value.reshape(n, size)
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(value.reshape(n, size), dtype=self.dtype)

    def _diagnose(self, cols):
        for name, c in zip(self.data, cols):
            bad = ~np.isfinite(c)
            if bad.any():
                row, col = np.unravel_index(int(np.flatnonzero(bad)[0]), c.shape)
                raise DataError(f"data {name!r} contains {c[row, col]} in sample {row}; the loss "
                                f"or gradient is not finite")



class ArrayKernel(_ArrayCompiled):
    """Compiled mean loss and gradient of an array objective over a batch."""

    def __init__(self, *, cache=True, **common):
        super().__init__(**common)
        self._cache, self._loss = cache, None
        self._tile = _TILE(self._library.addresses["symdiff_tile"])
        self._tile_addr = self._library.addresses["symdiff_tile"]
        self._free = []  # workspaces not in use (list.pop/append are atomic)
        self._plans = {}
        self._timing = _ThreadChoice()
        self._constants = self._constant_parts()

    def _constant_parts(self):
        """(flat offset, size, hoist offset or None, value, sign) of each sample-invariant part."""
        P, parts = self.plan, []
        for k, terms in enumerate(P.terms):
            for kind, name, sign in terms:
                if kind != "const":
                    continue
                off = P.out_offsets[k]
                if isinstance(name, str):
                    parts.append((off, P.size(name), P.hoist[name], 0.0, sign))
                else:
                    size = P.size(P.program.outputs[k]) if isinstance(P.program.outputs[k], str) else 1
                    parts.append((off, size, None, float(name), sign))
        return parts

    # -- running -----------------------------------------------------------------------------
    def _workspace(self):
        """A free workspace (buffers with their addresses looked up once: ~1 us each)."""
        try:
            return self._free.pop()
        except IndexError:
            return _Workspace(self.plan, self.slots, min(self.threads, self.slots), self.dtype)

    def _schedule(self, n):
        """Per slot (one per core), the (start, end, flags) of its tiles, in order (memoized
        per n). Slot s runs tiles s, s + S, s + 2S, ...; the count S and the tile bounds
        depend on n and the machine's cores alone, not on the threads, so any thread count
        gives the same bits. (Two slots per core, for a thread that starts late, measured
        no faster.)"""
        plan = self._plans.get(n)
        if plan is not None:
            return plan
        P, S = self.plan, self.slots
        per_slot = -(-n // (S * P.tile_rows))
        n_tiles = S * per_slot
        bounds = [n * k // n_tiles for k in range(n_tiles + 1)]
        plan = []
        for s in range(S):
            mine = [k for k in range(s, n_tiles, S) if bounds[k] < bounds[k + 1]]
            last = len(mine) - 1
            plan.append([(bounds[k], bounds[k + 1],
                          (ZERO_SUMS if j == 0 else 0) | (FRESH_ACC if j % FLUSH_TILES == 0 else 0)
                          | (FLUSH_ACC if j == last or (j + 1) % FLUSH_TILES == 0 else 0))
                         for j, k in enumerate(mine)])
        if len(self._plans) > 8:
            self._plans.clear()
        self._plans[n] = plan
        return plan

    def _run(self, theta, cols, n, ptrs=None):
        """Sums over the batch, slot by slot (see ``_schedule``), each slot accumulating in its
        own row of sums; the rows are added in order. Threads take whole slots, each with a
        scratch area of its own."""
        P = self.plan
        schedule = self._schedule(n)
        S = len(schedule)
        ws = self._workspace()
        if ptrs is None:
            ptrs = _pointer_table(cols)
        p_addr = ptrs[1]
        tile, h_addr, sums_addrs, free = self._tile, ws.hoist_addr, ws.sums_addrs, ws.free_scratch

        def slot(s):
            tiles = schedule[s]
            if not tiles:
                ws.sums[s].fill(0.0)
                return
            row, scratch = sums_addrs[s], free.pop()
            for start, end, flags in tiles:
                tile(h_addr, p_addr, start, end, row, scratch, flags)
            free.append(scratch)

        flops = P.flops_per_sample * n
        parallel = self.threads > 1 and S > 1 and flops >= 2 * MIN_FLOPS_PER_THREAD
        timing = self._timing.choose(n) if parallel and flops < ADAPTIVE_FLOPS else None
        if timing is not None:
            parallel = timing.parallel
            t0 = time.perf_counter()
        with self._blas_threads:
            ws.theta[:theta.shape[0]] = theta
            self._prepare(ws.theta_addr, h_addr)
            if not parallel or not self._run_on_team(ws, schedule, n, h_addr, p_addr):
                for s in range(S):
                    slot(s)
        if timing is not None:
            timing.record(time.perf_counter() - t0)
        sums = ws.sums
        total = sums[0] + sums[1] if S > 1 else sums[0].copy()
        for s in range(2, S):  # in order (cheaper than sum(axis=0) for a few rows)
            total += sums[s]
        for off, size, h, value, sign in self._constants:
            part = ws.hoist[h:h + size].astype(np.float64) if h is not None else value
            total[off:off + size] += (sign * n) * part
        self._free.append(ws)
        total *= 1.0 / n
        return total

    def _run_on_team(self, ws, schedule, n, h_addr, p_addr) -> bool:
        """The slots of ``schedule`` on the process's native team (:mod:`codegen.handoff`);
        False if the team is busy with another thread's call (the caller then runs them)."""
        tables = ws.tables.get(n)
        if tables is None:
            slot_table, tile_table = [], []
            for s, tiles in enumerate(schedule):
                slot_table += [len(tile_table) // 4, len(tile_table) // 4 + len(tiles)]
                for start, end, flags in tiles:
                    tile_table += [start, end, ws.sums_addrs[s], flags]
            if len(ws.tables) > 8:
                ws.tables.clear()
            tables = ws.tables[n] = (np.array(slot_table, np.int64),
                                     np.array(tile_table or [0], np.int64))
        for s, tiles in enumerate(schedule):
            if not tiles:
                ws.sums[s].fill(0.0)
        return handoff.run_slots(self._tile_addr, h_addr, p_addr, tables[0], tables[1],
                                 ws.scratch_table, self.threads)

    def __call__(self, theta, data=None):
        """Mean loss and flat mean gradient over the batch ``data`` at ``theta``.

        A non-finite loss or gradient is diagnosed: NaN or infinity in a data array raises
        :class:`~symdiff.errors.DataError` naming it and the sample (theta is checked before
        the call); otherwise the non-finite values are returned for the caller to handle.
        """
        cols, n, ptrs = self._prepared(data)
        t = self._theta(theta)
        total = self._run(t, cols, n, ptrs)
        if not math.isfinite(total.sum()):
            self._diagnose(cols)
        return total.item(0), total[1:]

    def value(self, theta, data=None) -> float:
        """The mean loss alone (a loss-only kernel, compiled on first use: no backward pass)."""
        return self._loss_kernel()(theta, data)[0]

    def _loss_kernel(self):
        if self._loss is None:
            if len(self.plan.program.outputs) == 1:
                self._loss = self
            else:
                from . import compile_array_objective
                self._loss = compile_array_objective(
                    self.plan.program.select([0]), dtype=self.dtype, threads=self.threads,
                    cache=self._cache, keys=self.keys)
        return self._loss

    def bind(self, data) -> "BoundArrayKernel":
        """Validate ``data`` once; the returned callable takes only theta.

        Arrays already of the kernel's dtype and C-contiguous are read in place at every
        call (so a buffer refilled between calls is seen); others are converted once, here.
        """
        cols, n = self._columns(data)
        return BoundArrayKernel(self, cols, n)

    def __repr__(self):
        return (f"<symdiff ArrayKernel params={len(self.params)} ({self.n_theta} values) "
                f"data={len(self.data)} dtype={self.dtype} threads={self.threads}>")


class _ThreadChoice:
    """One thread or several for a batch of a given size, by timing both.

    Splitting a call of a fraction of a millisecond over cores wins when a core is free
    (the native team hands a slot over in about a microsecond) and loses when the cores
    are busy with other work, which only timing tells. Per batch size: three calls on
    one thread, three on the team; then the mode whose median of its last ``KEEP``
    timings is lower runs, and every ``EXPLORE_EVERY``-th call starts ``RUN`` calls of
    the other, so a change in the machine's load is noticed. The first call after a
    change of mode is not counted: the team's helpers were asleep (a wake-up costs tens
    of µs that back-to-back calls do not pay). Results do not depend on the choice (the
    slots are the same either way)."""

    KEEP, EXPLORE_EVERY, RUN = 5, 50, 3

    def __init__(self):
        self._by_n = {}

    def choose(self, n):
        state = self._by_n.get(n)
        if state is None:
            if len(self._by_n) > 8:
                self._by_n.clear()
            state = self._by_n[n] = _Timings()
        k = state.calls
        state.calls += 1
        previous = state.parallel
        if k < 2 * self.RUN:
            state.parallel = k >= self.RUN
        elif state.exploring:
            state.exploring -= 1
        else:
            serial, split = (statistics.median(t) for t in state.times)
            state.parallel = split <= serial
            if k % self.EXPLORE_EVERY == 0:
                state.parallel, state.exploring = not state.parallel, self.RUN - 1
        state.counted = k == 0 or state.parallel == previous
        return state


class _Timings:
    def __init__(self):
        self.calls, self.parallel, self.exploring, self.counted = 0, False, 0, True
        self.times = ([], [])  # seconds of the last counted calls: one thread, several

    def record(self, seconds):
        if not self.counted:
            return
        times = self.times[int(self.parallel)]
        times.append(seconds)
        if len(times) > _ThreadChoice.KEEP:
            del times[0]


def _pointer_table(cols):
    table = np.array([c.ctypes.data for c in cols] or [0], dtype=np.uintp)
    return table, table.ctypes.data


class _Workspace:
    """The buffers of one call: hoisted values, one row of sums per slot and one scratch area
    per thread that may run at the same time (``free_scratch``: their addresses, taken and
    given back by the slots; list.pop/append are atomic)."""

    def __init__(self, plan, slots, threads, dtype):
        self.theta = np.zeros(max(1, sum(plan.size(p) for p in plan.program.params)))
        self.theta_addr = self.theta.ctypes.data
        self.hoist = np.zeros(max(1, plan.hoist_size), dtype=dtype)
        self.hoist_addr = self.hoist.ctypes.data
        self.sums = np.zeros((slots, plan.n_flat), dtype=np.float64)
        self.sums_addrs = [self.sums[s].ctypes.data for s in range(slots)]
        self.scratch = [np.zeros(max(1, plan.scratch_size), dtype=dtype) for _ in range(max(1, threads))]
        self.free_scratch = [a.ctypes.data for a in self.scratch]
        self.scratch_table = np.array(self.free_scratch, np.int64)  # per thread, for the team
        self.tables = {}  # slot and tile tables for the team, per batch size


class BoundArrayKernel:
    """An array kernel with its data checked and pinned: ``bound(theta) -> (loss, grad)``."""

    def __init__(self, kernel, cols, n):
        self.kernel, self._cols, self.n = kernel, cols, n
        self._ptrs = _pointer_table(cols)
        self._loss_bound = None  # holds the table; _cols keeps the arrays alive

    def __call__(self, theta):
        k = self.kernel
        total = k._run(k._theta(theta), self._cols, self.n, self._ptrs)
        if not math.isfinite(total.sum()):
            k._diagnose(self._cols)
        return total.item(0), total[1:]

    def value(self, theta) -> float:
        """The mean loss alone (see :meth:`ArrayKernel.value`)."""
        if self._loss_bound is None:
            loss = self.kernel._loss_kernel()
            self._loss_bound = self if loss is self.kernel else BoundArrayKernel(loss, self._cols, self.n)
        return self._loss_bound(theta)[0] if self._loss_bound is not self else self(theta)[0]


class ArrayModelKernel(_ArrayCompiled):
    """Compiled per-sample output of an array model: ``predict(theta, data) -> array``,
    ``(n,)`` for a scalar output, ``(n, r)`` for an ``(r, 1)`` one, else ``(n, r, c)``."""

    def __init__(self, **common):
        super().__init__(**common)
        self._map_addr = self._library.addresses["symdiff_map_tile"]
        self._map = _MAP_TILE(self._map_addr)
        out = self.plan.program.outputs[0]
        shape = self.plan.shape(out) if isinstance(out, str) else ()
        self.output_shape = () if not shape else (shape[0],) if shape[1] == 1 else shape
        self._free = []

    def __call__(self, theta, data=None):
        P = self.plan
        _, n, ptrs = self._prepared(data)
        t = self._theta(theta)
        name = P.program.outputs[0]
        size = P.size(name) if isinstance(name, str) else 1
        hoist = np.zeros(max(1, P.hoist_size), dtype=self.dtype)
        out = np.empty((n, size), dtype=self.dtype)
        with self._blas_threads:
            self._prepare(t.ctypes.data, hoist.ctypes.data)
            if not isinstance(name, str):
                out[:] = name
            elif name not in P.varying:
                out[:] = hoist[P.hoist[name]:P.hoist[name] + size]
            else:
                self._tiles(hoist, ptrs[1], n, out)
        return out.reshape((n,) + self.output_shape)

    def _tiles(self, hoist, p_addr, n, out):
        P = self.plan
        n_tiles = -(-n // P.tile_rows)
        bounds = [n * k // n_tiles for k in range(n_tiles + 1)]
        h_addr, o_addr = hoist.ctypes.data, out.ctypes.data
        try:
            scratch, table = self._free.pop()  # a scratch area per thread (and its table)
        except IndexError:
            scratch = [np.zeros(max(1, P.scratch_size), dtype=self.dtype)
                       for _ in range(min(self.threads, available_cores()))]
            table = np.array([a.ctypes.data for a in scratch], np.int64)
        try:
            parallel = n_tiles > 1 and P.flops_per_sample * n >= 2 * MIN_FLOPS_PER_THREAD
            if parallel:  # each tile a slot of its own, writing its rows of out
                slots = np.repeat(np.arange(n_tiles + 1, dtype=np.int64), 2)[1:-1]
                tiles = np.zeros((n_tiles, 4), np.int64)
                tiles[:, 0], tiles[:, 1], tiles[:, 2] = bounds[:-1], bounds[1:], o_addr
                if handoff.run_slots(self._map_addr, h_addr, p_addr, slots, tiles.ravel(), table,
                                     self.threads):
                    return
            for k in range(n_tiles):
                self._map(h_addr, p_addr, bounds[k], bounds[k + 1], o_addr, int(table[0]))
        finally:
            self._free.append((scratch, table))

    def __repr__(self):
        return (f"<symdiff ArrayModelKernel params={len(self.params)} ({self.n_theta} values) "
                f"data={len(self.data)} output {self.output_shape} dtype={self.dtype}>")
