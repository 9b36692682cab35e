"""Fits on data held by a Dask cluster: kernels run where the partitions are.

Every full-batch quantity symdiff computes is a sum over samples (the loss and its
gradient, the Hessian, the Gauss-Newton ``Σr²``, ``Jᵀr``, ``JᵀJ``), and sums split
exactly over partitions. :func:`bind` is the one integration point: given an objective
(or :class:`~symdiff.Residuals`) and data held by Dask, it returns a callable with the
contract of the local bound kernel (``theta -> the same outputs``, means or sums as the
local one gives them) that

* validates and persists the partitions on the workers once (contiguous columns of the
  kernel's dtype; a missing or non-numeric column, NaN or mismatched chunks raise a
  :class:`~symdiff.errors.DataError` naming the column and partition, at bind time);
* ships the kernel as its IR programs, a small picklable :class:`Recipe`: one key of the
  task graph that every partition depends on (so Dask can recompute a lost partition,
  recipe and all), fetched once per worker, compiled once per worker process and kept
  there (keyed by the programs' digest; the on-disk compile cache makes a restarted
  worker cheap);
* sends only theta each call, one task per worker (for the partitions it holds), and
  gets back partial *sums* (at most p² + p + 1 numbers per partition), added in
  partition order; means divide by the global n. Each partition runs single-threaded, so its partial sum does not
  depend on which worker computes it: reruns, and fits during which Dask recomputed a
  lost partition elsewhere, are bit-identical.

The active ``dask.distributed`` client is used; without one, the partitions are computed
once by Dask's default scheduler into this process and the same per-partition code runs
here. Dask is imported only when data is a Dask collection.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np

from .errors import DataError, DataTypeError, UnsupportedError
from .lru import LRU

#: per worker process: recipe digest -> compiled kernel (the most recent ones)
_KERNELS = LRU(32)  # a worker with several threads compiles once


def is_dask(data) -> bool:
    """Whether ``data`` is a Dask collection, or a mapping holding one (never imports dask)."""
    def dask_object(obj):
        return type(obj).__module__.split(".")[0] in ("dask", "dask_expr")

    if dask_object(data):
        return True
    if hasattr(data, "keys") and hasattr(data, "values") and not hasattr(data, "columns"):
        try:
            return any(dask_object(v) for v in data.values())
        except Exception:
            return False
    return False


# -- the kernel, shipped as its programs -------------------------------------------

class Recipe:
    """What a worker needs to compile a kernel: the kind ("loss", "hessian" or
    "residuals"), its IR programs, dtype and threads; ``digest`` names it.

    A plain class, not a dataclass, so that Dask passes it whole instead of traversing
    the programs inside.
    """

    __slots__ = ("kind", "programs", "n_params", "dtype", "threads", "digest")

    def __init__(self, kind, programs, n_params, dtype, threads):
        self.kind, self.programs, self.n_params = kind, tuple(programs), int(n_params)
        self.dtype, self.threads = str(dtype), int(threads)
        text = "\n".join([kind, self.dtype, str(self.threads)] + [repr(p) for p in self.programs])
        self.digest = hashlib.sha256(text.encode()).hexdigest()

    def __reduce__(self):
        return (Recipe, (self.kind, self.programs, self.n_params, self.dtype, self.threads))

    def compile(self):
        """The compiled kernel, once per process."""
        return _KERNELS.get_or_make(self.digest, self._build)

    def _build(self):
        import codegen
        import codegen.second_order as so

        opts = dict(dtype=np.dtype(self.dtype), threads=self.threads, cache=True)
        if self.kind == "loss":
            return codegen.compile_objective(self.programs[0], **opts)
        if self.kind == "hessian":
            program, hvp, full = self.programs
            return so.compile_hessian(program, hvp, lambda: full, **opts)
        return so.compile_residuals(self.programs[0], self.n_params, **opts)


def recipe_for(source, *, hessian=False, dtype=np.float64, threads=1) -> Recipe:
    """The :class:`Recipe` of ``source``: an Objective (``hessian=True``: its Hessian
    kernel; ``hessian="hvp"``: the same without the fused Hessian program, which grows as
    p², for methods that use only Hessian-vector products; the Hessian, if asked for, then
    comes from p Hessian-vector passes, as it does locally beyond
    ``FUSED_HESSIAN_MAX_PARAMS`` parameters) or a Residuals."""
    from .models.objective import Objective
    from .models.residuals import Residuals

    dtype = np.dtype(dtype).str
    if isinstance(source, Residuals):
        programs, kind = (source.program(),), "residuals"
    elif isinstance(source, Objective):
        if hessian:
            from .core.second_derivatives import hessian_program, hvp_program
            from codegen.second_order import FUSED_HESSIAN_MAX_PARAMS
            fused = hessian != "hvp" and len(source.params) <= FUSED_HESSIAN_MAX_PARAMS
            full = hessian_program(source) if fused else None
            programs, kind = (source.program(), hvp_program(source), full), "hessian"
        else:
            programs, kind = (source.program(),), "loss"
    else:
        raise TypeError(f"distributed.bind needs an sd.Objective or sd.Residuals, "
                        f"got {type(source).__name__}")
    if getattr(programs[0], "shapes", ()):
        raise UnsupportedError("array (matrix) objectives on Dask data are not supported yet; "
                               "use scalar data columns")
    return Recipe(kind, programs, len(source.params), dtype, int(threads))


# -- partitions ----------------------------------------------------------------------

class Part:
    """One validated partition: contiguous finite columns in the kernel's order."""

    __slots__ = ("cols", "n", "index", "recipe")

    def __init__(self, cols, n, index, recipe):
        self.cols, self.n, self.index, self.recipe = cols, n, index, recipe

    def __reduce__(self):
        return (Part, (self.cols, self.n, self.index, self.recipe))


def checked_part(names, columns, recipe, index) -> Part:
    """Validate one partition's columns; errors name the column and the partition."""
    dtype = np.dtype(recipe.dtype)
    out, n = [], None
    for name, c in zip(names, columns):
        a = np.asarray(c)
        if a.dtype.kind not in "biuf":
            raise DataTypeError(f"data column {name!r} in partition {index} holds {a.dtype}, "
                                f"not real numbers")
        if a.ndim != 1:
            raise DataError(f"data column {name!r} in partition {index} must be 1-D, got shape {a.shape}")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise DataError(f"data column {name!r} has {a.shape[0]} rows in partition {index}, "
                            f"but {names[0]!r} has {n}: give every column the same row chunks")
        with np.errstate(over="ignore"):
            a = np.ascontiguousarray(a, dtype=dtype)
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"data column {name!r} contains {a[row]} at row {row} of partition "
                            f"{index}")
        out.append(a)
    return Part(tuple(out), n or 0, index, recipe)


def _from_frame(frame, names, recipe, index):
    # numeric columns (checked from the metadata); pandas' missing values become NaN
    columns = [frame[name].to_numpy(dtype=np.dtype(recipe.dtype), na_value=np.nan)
               for name in names]
    return checked_part(names, columns, recipe, index)


def _from_chunks(names, recipe, index, *chunks):
    return checked_part(names, chunks, recipe, index)


def _length(part) -> int:
    return part.n


#: rows per block of a partition's streaming QR (as ``ResidualKernel.qr``'s default)
QR_BLOCK_ROWS = 65536


def partial_sums(part, method, theta) -> np.ndarray:
    """Sums over one partition: ``method`` is "grad" (loss and gradient, or the
    Gauss-Newton sums), "value" (loss or Σr²), "hessian" or "hvp" (theta then v); or
    "qr" (residuals: Σr², the Jacobian's R factor and Qᵀr, packed; combined by
    :meth:`DistributedBound.qr`, not added)."""
    kernel = part.recipe.compile()
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    ptrs = np.array([c.__array_interface__["data"][0] for c in part.cols] or [0], dtype=np.uintp)
    if method == "qr":
        p = kernel.n_params
        if part.n == 0:
            return np.zeros(1 + p * p + p)
        rss, R, qtr = kernel._qr(theta, part.cols, part.n, ptrs, QR_BLOCK_ROWS)
        return np.concatenate([[rss], R.ravel(), qtr])
    if method == "hessian":
        if part.recipe.programs[2] is None:
            return _hessian_by_columns(kernel, theta, ptrs, part.n)
        kernel.compile_hessian()
    runner = {"grad": kernel._grad, "value": kernel._value,
              "hessian": getattr(kernel, "_hess", None), "hvp": getattr(kernel, "_hvp", None)}[method]
    if part.n == 0:
        return np.zeros(runner.n_out)
    return runner.run(theta, ptrs, part.n, kernel.threads, scale=1.0)


def _hessian_by_columns(kernel, theta, ptrs, n) -> np.ndarray:
    """Sums of the loss, gradient and Hessian (upper triangle) from one gradient pass and
    p Hessian-vector passes, laid out as the fused Hessian program's outputs."""
    p = kernel.n_params
    if n == 0:
        return np.zeros(1 + p + p * (p + 1) // 2)
    first = kernel._grad.run(theta, ptrs, n, kernel.threads, scale=1.0)
    buf = np.zeros(2 * p)
    buf[:p] = theta
    H = np.empty((p, p))
    for j in range(p):
        buf[p + j] = 1.0
        H[:, j] = kernel._hvp.run(buf, ptrs, n, kernel.threads, scale=1.0)
        buf[p + j] = 0.0
    H = 0.5 * (H + H.T)
    return np.concatenate([first, H[np.triu_indices(p)]])


# -- data -> per-partition tasks -------------------------------------------------------

def prepared_partitions(data, names, recipe) -> list:
    """Dask delayed objects, one per partition, each computing a validated :class:`Part`.

    Column presence, dtypes and chunk agreement are checked here from Dask's metadata,
    without computing anything.
    """
    import dask

    if not names:
        raise DataError("Dask data needs at least one data column; this objective has none")
    # one key for the recipe, a dependency of every partition: each worker fetches it once
    recipe = dask.delayed(recipe, name=f"symdiff-recipe-{uuid.uuid4().hex}", traverse=False)
    if hasattr(data, "columns") and hasattr(data, "to_delayed"):
        missing = [n for n in names if n not in data.columns]
        if missing:
            raise DataError(f"missing data column(s) {missing} in the Dask DataFrame; "
                            f"got columns {list(map(str, data.columns))}")
        for name in names:
            dt = data.dtypes[name]
            if getattr(dt, "kind", "O") not in "biuf":
                raise DataTypeError(f"data column {name!r} holds {dt}, not real numbers "
                                    f"(every partition)")
        parts = data[names].to_delayed()
        make = dask.delayed(_from_frame, pure=False)  # keys of this binding alone
        return [make(p, names, recipe, i) for i, p in enumerate(parts)]
    if hasattr(data, "keys"):
        given = {(k.name if hasattr(k, "name") and not isinstance(k, str) else str(k)): k
                 for k in data.keys()}
        arrays = []
        for name in names:
            if name not in given:
                raise DataError(f"missing data column {name!r}; got columns {sorted(given)}")
            a = data[given[name]]
            if type(a).__module__.split(".")[0] != "dask" or not hasattr(a, "chunks"):
                raise DataTypeError(f"data column {name!r} is a {type(a).__name__}; with Dask data "
                                    f"every column must be a dask array (da.from_array(...))")
            if a.ndim != 1:
                raise DataError(f"data column {name!r} must be a 1-D dask array, got shape {a.shape}")
            if a.dtype.kind not in "biuf":
                raise DataTypeError(f"data column {name!r} holds {a.dtype}, not real numbers")
            arrays.append(a)
        first = arrays[0].chunks[0]
        for name, a in zip(names[1:], arrays[1:]):
            rows = a.chunks[0]
            unknown = any(r != r for r in rows + first)  # NaN: sizes known only when computed
            if unknown and len(rows) == len(first):
                continue  # each partition's lengths are compared when it is prepared
            if rows != first:
                i = next((k for k, (r, f) in enumerate(zip(rows, first)) if r != f),
                         min(len(rows), len(first)))
                size = (lambda c: f"{c[i]} rows" if i < len(c) else "no rows")
                where = (f"its partition {i} has {size(rows)}, that of {names[0]!r} "
                         f"{size(first)} ({len(rows)} vs {len(first)} partitions)")
                raise DataError(f"data column {name!r} is chunked differently from {names[0]!r}: "
                                f"{where}; rechunk every column to the same row chunks")
        chunks = [a.to_delayed().ravel() for a in arrays]
        make = dask.delayed(_from_chunks, pure=False)
        return [make(names, recipe, i, *cs) for i, cs in enumerate(zip(*chunks))]
    raise DataTypeError(f"Dask data must be a dask DataFrame or a mapping of symbols to dask "
                        f"arrays, got {type(data).__name__}")


def active_client():
    """The active ``dask.distributed`` client, or None (Dask's default scheduler)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def partial_sums_of(parts, method, theta) -> list:
    """:func:`partial_sums` of each of ``parts`` (one task for a worker's partitions)."""
    return [partial_sums(part, method, theta) for part in parts]


class _OnCluster:
    """Partitions persisted on the workers; each call one task per worker.

    The partitions are grouped by the worker holding them (asked once, and again every
    ``REGROUP`` calls), and each group is one task: Dask runs a task where its inputs
    are, so nothing but theta and the sums moves, and a call costs one task per worker,
    not one per partition. If a worker dies, Dask recomputes its partitions and runs
    their group elsewhere (moving data until the next regrouping); the sums are still
    added in partition order, so the results do not change.
    """

    REGROUP = 16

    def __init__(self, client, prepared):
        self.client = client
        self.parts = client.compute(prepared)
        self.lengths = client.gather(client.map(_length, self.parts, pure=False))
        self._group()

    def _group(self):
        holders = self.client.who_has(self.parts)
        groups = {}
        for i, f in enumerate(self.parts):
            groups.setdefault(min(holders.get(f.key) or [""]), []).append(i)
        self.groups = list(groups.values())
        self.calls = 0

    def sums(self, method, theta):
        self.calls += 1
        if self.calls > self.REGROUP:
            self._group()
        futures = [self.client.submit(partial_sums_of, [self.parts[i] for i in group], method,
                                      theta, pure=False) for group in self.groups]
        sums = [None] * len(self.parts)
        for group, results in zip(self.groups, self.client.gather(futures)):
            for i, s in zip(group, results):
                sums[i] = s
        return sums

    def close(self):
        self.parts = []  # dropping the futures releases the partitions; never blocks


class _InProcess:
    """No client: partitions computed once by Dask's default scheduler, kept here."""

    def __init__(self, prepared):
        import dask
        self.parts = list(dask.compute(*prepared))
        self.lengths = [p.n for p in self.parts]

    def sums(self, method, theta):
        return [partial_sums(p, method, theta) for p in self.parts]

    def close(self):
        self.parts = []


class DistributedBound:
    """A kernel bound to Dask data: the local bound kernel's calls, computed where the data is.

    ``n`` (rows), ``n_partitions``; ``stats``: calls, tasks, bytes of theta sent and of
    partial sums received (payloads, not protocol overhead). ``close()`` releases the
    persisted partitions (also when garbage collected).
    """

    def __init__(self, recipe, names, backend):
        self.recipe = recipe
        self.kind = recipe.kind
        self.names = tuple(names)
        self._backend = backend
        self.n_partitions = len(backend.lengths)
        self.n = int(sum(backend.lengths))
        if self.n == 0:
            raise DataError("empty batch: the Dask data has 0 samples")
        self._param_names = list(recipe.programs[0].params)  # errors name the parameter
        self.stats = {"calls": 0, "tasks": 0, "bytes_sent": 0, "bytes_received": 0}

    def _sums(self, method, theta, v=None) -> np.ndarray:
        from codegen.kernel import check_theta
        if self._backend is None:
            raise DataError("this Dask binding was closed (its partitions released); bind again")
        theta = check_theta(theta, self._param_names)
        if v is not None:
            from codegen.second_order import _direction
            theta = np.concatenate([theta, _direction(v, len(theta))])
        parts = self._backend.sums(method, theta)
        total = np.array(parts[0], dtype=np.float64, copy=True)
        for s in parts[1:]:  # in partition order, wherever they were computed
            total += s
        tasks = len(getattr(self._backend, "groups", parts))
        st = self.stats
        st["calls"] += 1
        st["tasks"] += tasks
        st["bytes_sent"] += theta.nbytes * tasks
        st["bytes_received"] += sum(np.asarray(s).nbytes for s in parts)
        return total

    def _mean_loss_grad(self, method="grad"):
        def call(theta):
            s = self._sums(method, theta) / self.n
            return s.item(0), s[1:1 + self.recipe.n_params].copy()
        return call

    def __call__(self, theta):
        p = self.recipe.n_params
        if self.kind == "loss":
            return self._mean_loss_grad()(theta)
        from codegen.second_order import upper_to_symmetric
        if self.kind == "hessian":
            s = self._sums("hessian", theta) / self.n
            return s.item(0), s[1:1 + p].copy(), upper_to_symmetric(s[1 + p:], p)
        s = self._sums("grad", theta)
        return s.item(0), s[1:1 + p].copy(), upper_to_symmetric(s[1 + p:], p)

    def value(self, theta) -> float:
        """The mean loss (the residual sum of squares for residuals)."""
        s = self._sums("value", theta).item(0)
        return s if self.kind == "residuals" else s / self.n

    def qr(self, theta):
        """Residuals: ``(rss, R, qtr)`` as ``ResidualKernel.qr`` gives them: each partition's
        streaming QR of ``[J | r]`` on its worker, the p-by-(p+1) factors stacked in
        partition order and reduced by one more QR here (TSQR)."""
        from codegen.kernel import check_theta
        if self._backend is None:
            raise DataError("this Dask binding was closed (its partitions released); bind again")
        theta = check_theta(theta, self._param_names)
        p = self.recipe.n_params
        parts = self._backend.sums("qr", theta)
        rss = 0.0
        blocks = []
        for s in parts:
            rss += s[0]
            blocks.append(np.column_stack([s[1:1 + p * p].reshape(p, p), s[1 + p * p:]]))
        top = np.linalg.qr(np.vstack(blocks), mode="r")
        R = np.zeros((p + 1, p + 1))
        R[:top.shape[0]] = top
        st = self.stats
        tasks = len(getattr(self._backend, "groups", parts))
        st["calls"] += 1
        st["tasks"] += tasks
        st["bytes_sent"] += theta.nbytes * tasks
        st["bytes_received"] += sum(np.asarray(s).nbytes for s in parts)
        return float(rss), np.triu(R[:p, :p]), R[:p, p].copy()

    def loss_grad(self, theta):
        """``(mean loss, mean gradient)`` of a Hessian kernel's objective."""
        return self._mean_loss_grad()(theta)

    def hessian(self, theta) -> np.ndarray:
        return self(theta)[2]

    def hvp(self, theta, v) -> np.ndarray:
        """The mean Hessian at ``theta`` times ``v`` (scipy's ``hessp``)."""
        return self._sums("hvp", theta, v) / self.n

    def close(self):
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:
                pass

    def __del__(self):
        self.close()

    def __repr__(self):
        return (f"<symdiff DistributedBound kind={self.kind} n={self.n} "
                f"partitions={self.n_partitions}>")


def bind(source, data, *, hessian=False, dtype=np.float64, threads=1, client=None) -> DistributedBound:
    """Bind ``source`` (an Objective, its Hessian kernel with ``hessian=True``, or a
    Residuals) to Dask ``data``: a dask DataFrame with columns named like the data
    symbols, or a mapping {symbol or name: 1-D dask array} with the same row chunks.

    Returns a :class:`DistributedBound` whose calls match ``source.compile(...).bind(data)``
    on the gathered data. ``client``: a ``dask.distributed.Client`` (default: the active
    one, if any; ``False`` or no active client: Dask's default scheduler computes the
    partitions once into this process, and the same per-partition code runs here). ``threads``: kernel
    threads per partition task (1: Dask's workers provide the parallelism, and results do
    not depend on where a partition runs).
    """
    recipe = recipe_for(source, hessian=hessian, dtype=dtype, threads=threads)
    names = [d.name for d in source.data]
    prepared = prepared_partitions(data, names, recipe)
    if not prepared:
        raise DataError("empty batch: the Dask data has no partitions")
    client = active_client() if client is None else (None if client is False else client)
    backend = _OnCluster(client, prepared) if client is not None else _InProcess(prepared)
    return DistributedBound(recipe, names, backend)


def bind_any(source, data, *, hessian=False):
    """``source.compile(hessian=bool(hessian)).bind(data)``, or :func:`bind` when ``data``
    is Dask's (``hessian="hvp"``: without the full Hessian there)."""
    if is_dask(data):
        return bind(source, data, hessian=hessian)
    if hessian:
        return source.compile(hessian=True).bind(data)
    return source.compile().bind(data)


def fit_bindings(objective, data, validation, batch_size):
    """``(train, validation or None, n)`` bound kernels for a full-batch ``sd.fit`` on Dask data.

    Mini-batches are not supported on Dask data (a shuffled mini-batch would gather rows
    from every partition each step): ``batch_size`` must be None or at least n.
    """
    if isinstance(validation, (int, float, np.number)) and not isinstance(validation, bool):
        raise UnsupportedError("validation=<fraction> is not supported on Dask data; split it "
                               "yourself (ddf.random_split([0.8, 0.2], random_state=0)) and pass "
                               "the held-out part as validation=")
    whole = bind_any(objective, data)
    if batch_size is not None and batch_size < whole.n:
        if hasattr(whole, "close"):
            whole.close()
        raise UnsupportedError(
            f"mini-batch sd.fit (batch_size={batch_size}) on Dask data is not supported: use "
            f"batch_size=None (full batch: each step is one pass over the {whole.n} rows where "
            f"they are), or sd.minimize(objective, data) for L-BFGS")
    validate = bind_any(objective, validation) if validation is not None else None
    return whole, validate, whole.n
