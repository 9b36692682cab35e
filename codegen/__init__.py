"""symdiff's native side: IR -> LLVM IR -> machine code for this CPU -> callable.

``codegen`` consumes :class:`symdiff.core.ir.Program` and nothing else of the symbolic
front end. The entry points are :func:`compile_objective` (mean loss and gradient
over a batch) and :func:`compile_model` (per-sample predictions).

Compiled code is reused at two levels: an in-process LRU keyed by the program text,
dtype and target (so estimators cloned by a hyperparameter search compile once), and
the on-disk cache of :mod:`codegen.cache` (so a new process skips LLVM entirely).
``STATS`` counts what happened.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections import OrderedDict

import numpy as np

from .kernel import BoundKernel, Kernel, ModelKernel, available_cores
from .lower import LoweringError, lower_to_llvm
from .target import host_target

__all__ = ["compile_objective", "compile_array_objective", "compile_model", "compile_array_model", "clear_memory_cache", "Kernel", "BoundKernel", "ModelKernel",
           "LoweringError", "STATS", "available_cores"]

STATS = {"compiled": 0, "memory_hits": 0, "disk_hits": 0}
_MEMORY = OrderedDict()
_MEMORY_SIZE = 64
_VERSION = "0.1.0"
#: programs with more instructions than this get the back end's fast code generation
LARGE_BODY = 4000


def _dtype_flag(dtype) -> bool:
    dt = np.dtype(dtype)
    if dt == np.float32:
        return True
    if dt == np.float64:
        return False
    raise TypeError(f"kernels are compiled for float32 or float64, not {dt}")


@functools.lru_cache(maxsize=None)
def _source_digest() -> str:
    """Digest of the code generator's own source: a changed lowering never reuses old code."""
    h = hashlib.sha256(_VERSION.encode())
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("lower.py", "vecmath.py", "jit.py", "target.py", "__init__.py", "lower_array.py",
                 "blas.py"):
        with open(os.path.join(here, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _build(program, dtype, functions, cache):
    """Compile (or fetch) the functions of ``program``.

    Returns (library, llvm_ir, optimized_ir, times, lanes); ``llvm_ir`` is a string, or a
    callable producing it when the code came from a cache (lowering is then skipped).
    The cache key is the program text, the functions asked for, the dtype, the target
    (triple, CPU, features, vector width, llvmlite version) and the code generator's source.
    """
    from .jit import NativeLibrary
    from .worker import optimize

    single = _dtype_flag(dtype)
    target = host_target()
    lanes = target.lanes(32 if single else 64)
    isa = target.isa if target.libmvec else ""

    if getattr(program, "shapes", ()):
        from . import blas
        from .lower_array import lower_array_to_llvm
        blas.bind()  # the GEMM symbols the object code refers to, before it is loaded

        mode = "map" if "symdiff_map_tile" in functions else "reduce"

        def lower():
            return str(lower_array_to_llvm(program, single=single, lanes=lanes, isa=isa, mode=mode))
    else:
        def lower():
            return str(lower_to_llvm(program, single=single, lanes=lanes, isa=isa,
                                     functions=functions))

    key = hashlib.sha256("\n".join([repr(program), repr(sorted(functions.items())), str(single),
                                     target.fingerprint, _source_digest()]).encode()).hexdigest()
    hit = _MEMORY.get(key)
    if hit is not None:
        _MEMORY.move_to_end(key)
        STATS["memory_hits"] += 1
        library, optimized_ir, old_times = hit
        return library, lower, optimized_ir, {"cached": "memory"}, lanes
    times = {}
    disk = _disk_cache() if cache else None
    blob = disk.get(key) if disk is not None else None
    if blob is not None:
        object_code, optimized_ir = _unpack(blob)
        STATS["disk_hits"] += 1
        times["cached"] = "disk"
        llvm_ir = lower
    else:
        t0 = time.perf_counter()
        llvm_ir = lower()
        times["lower_to_llvm"] = time.perf_counter() - t0
        compiled = optimize(llvm_ir, fast_codegen=len(program.body) > LARGE_BODY)
        object_code, optimized_ir = compiled.object_code, compiled.optimized_ir
        times.update(compiled.times)
        STATS["compiled"] += 1
        if disk is not None:
            disk.put(key, _pack(object_code, optimized_ir))
    t1 = time.perf_counter()
    library = NativeLibrary(object_code, list(functions))
    times["load"] = time.perf_counter() - t1
    _MEMORY[key] = (library, optimized_ir, times)
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return library, llvm_ir, optimized_ir, times, lanes


def clear_memory_cache() -> None:
    """Forget the in-process compiled code (kernels still alive keep theirs)."""
    _MEMORY.clear()


def _pack(object_code: bytes, optimized_ir: str) -> bytes:
    ir_bytes = optimized_ir.encode()
    return len(object_code).to_bytes(8, "little") + object_code + ir_bytes


def _unpack(blob: bytes):
    n = int.from_bytes(blob[:8], "little")
    return blob[8:8 + n], blob[8 + n:].decode()


def _disk_cache():
    try:
        from .cache import KernelCache
    except ImportError:
        return None
    return KernelCache.default()


def compile_objective(program, *, dtype=np.float64, threads=None, cache=True, keys=None) -> Kernel:
    """A :class:`Kernel` for an objective program whose outputs are (loss, *gradient).

    ``keys``: optional objects (e.g. SymPy symbols) that data mappings may use instead of
    the names in ``program.data``, one per data name, looked up first.
    """
    if getattr(program, "shapes", ()):
        return compile_array_objective(program, dtype=dtype, threads=threads, cache=cache, keys=keys)
    functions = {"symdiff_grad": ("reduce", tuple(range(len(program.outputs)))),
                 "symdiff_value": ("reduce", (0,))}
    library, llvm_ir, opt_ir, times, lanes = _build(program, dtype, functions, cache)
    return Kernel(params=program.params, data=program.data, dtype=dtype, threads=threads,
                  library=library, lanes=lanes, llvm_ir=llvm_ir, optimized_ir=opt_ir,
                  compile_times=times, grad_name="symdiff_grad", value_name="symdiff_value",
                  n_out=len(program.outputs), keys=keys)


def compile_array_objective(program, *, dtype=np.float64, threads=None, cache=True, keys=None):
    """An :class:`~codegen.array_kernel.ArrayKernel` for an array program (GEMMs, tiles)."""
    from .array_kernel import ArrayKernel
    from .lower_array import ArrayPlan
    functions = {"symdiff_prepare": ("array", ()), "symdiff_tile": ("array", ())}
    library, llvm_ir, opt_ir, times, lanes = _build(program, dtype, functions, cache)
    return ArrayKernel(plan=ArrayPlan(program, lanes), params=program.params, data=program.data,
                       dtype=dtype, threads=threads, library=library, lanes=lanes, llvm_ir=llvm_ir,
                       optimized_ir=opt_ir, compile_times=times, keys=keys, cache=cache)


def compile_array_model(program, *, dtype=np.float64, threads=None, cache=True, keys=None):
    """An :class:`~codegen.array_kernel.ArrayModelKernel`: output 0 of an array program per
    sample, ``(n,)`` for a scalar output, ``(n, r)`` for ``(r, 1)``, else ``(n, r, c)``."""
    from .array_kernel import ArrayModelKernel
    from .lower_array import ArrayPlan
    functions = {"symdiff_prepare": ("array", ()), "symdiff_map_tile": ("array", ())}
    library, llvm_ir, opt_ir, times, lanes = _build(program.select([0]), dtype, functions, cache)
    return ArrayModelKernel(plan=ArrayPlan(program.select([0]), lanes, "map"), params=program.params,
                            data=program.data, dtype=dtype, threads=threads, library=library,
                            lanes=lanes, llvm_ir=llvm_ir, optimized_ir=opt_ir,
                            compile_times=times, keys=keys)


def compile_model(program, *, dtype=np.float64, threads=None, cache=True) -> ModelKernel:
    """A :class:`ModelKernel` computing output 0 of ``program`` for every sample
    (an :class:`~codegen.array_kernel.ArrayModelKernel` for an array program)."""
    if getattr(program, "shapes", ()):
        return compile_array_model(program, dtype=dtype, threads=threads, cache=cache)
    functions = {"symdiff_map": ("map", (0,))}
    library, llvm_ir, opt_ir, times, lanes = _build(program, dtype, functions, cache)
    return ModelKernel(params=program.params, data=program.data, dtype=dtype, threads=threads,
                       library=library, lanes=lanes, llvm_ir=llvm_ir, optimized_ir=opt_ir,
                       compile_times=times, map_name="symdiff_map")
