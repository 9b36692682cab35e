"""BLAS GEMM for generated code, with no C extension: NumPy's own OpenBLAS, bound by name.

Generated code calls two fixed symbols, ``symdiff_sgemm`` and ``symdiff_dgemm``, with the
row-major CBLAS signature and 64-bit integers::

    void symdiff_sgemm(i32 order, i32 transa, i32 transb, i64 m, i64 n, i64 k, float alpha,
                       float* a, i64 lda, float* b, i64 ldb, float beta, float* c, i64 ldc)

(``order`` is always 101, row-major; ``transa``/``transb`` are 111 or 112.) Because the
names are fixed, an object file from the on-disk cache links against whatever this
process binds them to. :func:`bind` (idempotent, called before any array kernel is
loaded) binds them, in order of preference, to

1. ``scipy_cblas_[sd]gemm64_`` of the OpenBLAS that NumPy 2.x wheels bundle
   (``numpy.libs/libscipy_openblas64_*.so``), loaded with
   ``llvm.load_library_permanently`` — NumPy has loaded it already, so this is the very
   library and thread pool ``numpy.matmul`` uses;
2. SciPy's ``scipy.linalg.cython_blas`` Fortran ``[sd]gemm`` function pointers (from its
   ``__pyx_capi__`` capsules), through a small adapter compiled here (row-major to
   column-major, 64- to 32-bit integers);
3. a plain triple loop compiled here, with a :class:`~symdiff.errors.SymdiffWarning`:
   slow, never wrong, never a crash.

``SYMDIFF_BLAS`` = ``numpy``, ``scipy`` or ``loop`` forces one of them (tests use it).

Threads: symdiff runs its own batch tiles on its own threads, so BLAS must run
single-threaded inside them — two thread pools on the same cores spin against each
other (measured 140x slower). This OpenBLAS build's ``openblas_set_num_threads_local``
turns out to be process-wide, not per thread, so :func:`single_threaded` sets the
thread count to one for the duration of a kernel call and restores it when the last
concurrent call leaves.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
import warnings
from dataclasses import dataclass

import llvmlite.binding as llvm
from llvmlite import ir

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
SYMBOLS = {True: "symdiff_sgemm", False: "symdiff_dgemm"}

I32, I64 = ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()


def gemm_type(single: bool) -> ir.FunctionType:
    T = F32 if single else F64
    return ir.FunctionType(ir.VoidType(), [I32, I32, I32, I64, I64, I64, T, PTR, I64, PTR, I64,
                                           T, PTR, I64])


def declare_gemm(module: ir.Module, single: bool) -> ir.Function:
    """The GEMM function of ``module`` for float32 (``single``) or float64."""
    name = SYMBOLS[single]
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, gemm_type(single), name=name)
        fn.attributes.add("nounwind")
    return fn


def emit_gemm(b: ir.IRBuilder, module: ir.Module, single: bool, ta: bool, tb: bool,
              m, n, k, alpha: float, a, lda, bmat, ldb, beta: float, c, ldc):
    """Emit ``C = alpha*op(A) @ op(B) + beta*C`` (row-major); sizes are i64 values or ints,
    ``alpha``/``beta`` numbers or ``T`` values."""
    T = F32 if single else F64
    as64 = lambda v: v if isinstance(v, ir.Value) else ir.Constant(I64, int(v))
    real = lambda v: v if isinstance(v, ir.Value) else ir.Constant(T, float(v))
    args = [ir.Constant(I32, ROW_MAJOR), ir.Constant(I32, TRANS if ta else NO_TRANS),
            ir.Constant(I32, TRANS if tb else NO_TRANS), as64(m), as64(n), as64(k),
            real(alpha), a, as64(lda), bmat, as64(ldb), real(beta), c, as64(ldc)]
    return b.call(declare_gemm(module, single), args)


@dataclass
class Binding:
    """What the GEMM symbols are bound to in this process."""
    source: str                 # "numpy-openblas", "scipy-cython-blas" or "loop"
    library: str                # path or module it came from
    set_threads: object = None  # ctypes function int -> None, or None if unknown
    get_threads: object = None  # ctypes function () -> int

    corename: str = ""          # the kernels OpenBLAS chose for this CPU, if it says

    @property
    def fast(self) -> bool:
        return self.source != "loop"


_lock = threading.Lock()
_binding: Binding | None = None
_shims = []  # execution engines of adapters/fallbacks, alive for the process (bound once)


def bind() -> Binding:
    """Bind ``symdiff_sgemm``/``symdiff_dgemm`` for this process (once) and say to what."""
    global _binding
    with _lock:
        if _binding is None:
            from .target import _initialize
            _initialize()
            choice = os.environ.get("SYMDIFF_BLAS", "").strip().lower()
            order = {"numpy": [_bind_numpy], "scipy": [_bind_scipy], "loop": []}.get(
                choice, [_bind_numpy, _bind_scipy])
            for attempt in order:
                found = attempt()
                if found is not None:
                    _binding = found
                    break
            else:
                if choice not in ("loop",):
                    from symdiff.errors import SymdiffWarning
                    warnings.warn("no BLAS library could be bound (looked for NumPy's bundled "
                                  "OpenBLAS and scipy.linalg.cython_blas): matrix products in "
                                  "array kernels run as plain loops, much slower", SymdiffWarning,
                                  stacklevel=3)
                _binding = _bind_loop()
        return _binding


def _numpy_openblas_paths():
    import numpy as np
    root = os.path.dirname(os.path.abspath(np.__file__))
    pattern = "lib*openblas*.so*"
    paths = []
    for folder in (os.path.join(root, "..", "numpy.libs"), os.path.join(root, ".libs"),
                   os.path.join(root, "..", "numpy", ".dylibs"), os.path.join(root, ".dylibs")):
        paths += sorted(glob.glob(os.path.join(folder, pattern)))
        paths += sorted(glob.glob(os.path.join(folder, "lib*openblas*.dylib")))
    return [os.path.normpath(p) for p in paths]


def _bind_numpy() -> Binding | None:
    for path in _numpy_openblas_paths():
        try:
            llvm.load_library_permanently(path)
        except RuntimeError:
            continue
        names = {}
        for single, base in ((True, "sgemm"), (False, "dgemm")):
            for cand in (f"scipy_cblas_{base}64_", f"cblas_{base}64_"):
                if llvm.address_of_symbol(cand):
                    names[single] = cand
                    break
        if len(names) != 2:
            continue
        for single, cand in names.items():
            llvm.add_symbol(SYMBOLS[single], llvm.address_of_symbol(cand))
        setter = getter = None
        try:
            setter, getter = _thread_controls(ctypes.CDLL(path), "64_")
        except OSError:
            pass
        return Binding("numpy-openblas", path, setter, getter, _corename(path))
    return None


def _corename(path) -> str:
    try:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                     "openblas_get_corename"):
            if hasattr(lib, name):
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = ctypes.c_char_p, []
                return (fn() or b"").decode()
    except OSError:
        pass
    return ""


def _capsule_pointer(capsule) -> int:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _bind_scipy() -> Binding | None:
    try:
        from scipy.linalg import cython_blas
        capi = cython_blas.__pyx_capi__
        pointers = {single: _capsule_pointer(capi[name])
                    for single, name in ((True, "sgemm"), (False, "dgemm"))}
    except Exception:
        return None
    module = ir.Module(name="symdiff_blas_adapter")
    for single, address in pointers.items():
        _fortran_adapter(module, single, address)
    _load_shim(module)
    return Binding("scipy-cython-blas", "scipy.linalg.cython_blas", *_scipy_thread_control())


def _scipy_thread_control():
    try:
        import scipy
        root = os.path.dirname(os.path.abspath(scipy.__file__))
        for path in sorted(glob.glob(os.path.join(root, "..", "scipy.libs", "lib*openblas*.so*"))):
            setter, getter = _thread_controls(ctypes.CDLL(path), "")
            if setter is not None:
                return setter, getter
    except Exception:
        pass
    return None, None


def _fortran_adapter(module, single, address):
    """``symdiff_[sd]gemm`` calling a Fortran ``[sd]gemm`` at ``address``.

    Row-major ``C = op(A) op(B)`` is column-major ``C^T = op(B)^T op(A)^T``: swap the
    operands and the sizes m and n, keep the flags.
    """
    T = F32 if single else F64
    fn = ir.Function(module, gemm_type(single), name=SYMBOLS[single])
    _order, ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def slot(ty, value):
        p = b.alloca(ty)
        b.store(value, p)
        p.type = PTR
        return p

    flag = lambda t: b.select(b.icmp_signed("==", t, ir.Constant(I32, TRANS)),
                              ir.Constant(ir.IntType(8), ord("T")), ir.Constant(ir.IntType(8), ord("N")))
    i32 = lambda v: slot(I32, b.trunc(v, I32))
    fortran = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * 13),
                          name=f"symdiff_fortran_{'s' if single else 'd'}gemm")
    llvm.add_symbol(fortran.name, address)
    b.call(fortran, [slot(ir.IntType(8), flag(tb)), slot(ir.IntType(8), flag(ta)), i32(n), i32(m),
                     i32(k), slot(T, alpha), bm, i32(ldb), a, i32(lda), slot(T, beta), c, i32(ldc)])
    b.ret_void()


def _bind_loop() -> Binding:
    module = ir.Module(name="symdiff_blas_loop")
    for single in (True, False):
        _loop_gemm(module, single)
    _load_shim(module)
    return Binding("loop", "symdiff (inline loops)")


def _thread_controls(lib, suffix):
    """OpenBLAS's (set, get) thread-count functions in ``lib`` (names ending in ``suffix``,
    "64_" for the ILP64 builds), or (None, None)."""
    for prefix in ("scipy_openblas", "openblas"):
        s, g = f"{prefix}_set_num_threads{suffix}", f"{prefix}_get_num_threads{suffix}"
        if hasattr(lib, s) and hasattr(lib, g):
            setter, getter = getattr(lib, s), getattr(lib, g)
            setter.argtypes, setter.restype = [ctypes.c_int], None
            getter.argtypes, getter.restype = [], ctypes.c_int
            return setter, getter
    return None, None


def _loop_gemm(module, single):
    """A plain row-major GEMM (beta = 0 never reads C, as BLAS specifies)."""
    T = F32 if single else F64
    fn = ir.Function(module, gemm_type(single), name=SYMBOLS[single])
    _order, ta, tb, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc = fn.args
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    zero = ir.Constant(I64, 0)
    is_ta = b.icmp_signed("==", ta, ir.Constant(I32, TRANS))
    is_tb = b.icmp_signed("==", tb, ir.Constant(I32, TRANS))
    beta0 = b.fcmp_ordered("==", beta, ir.Constant(T, 0.0))
    acc = b.alloca(T)

    def loop(b, lo, hi, name, body):
        from .lower import emit_for  # lower.py needs nothing from here: no import cycle
        emit_for(b, lo, hi, body, 1, name)

    def at(ptr, idx):
        return b.gep(ptr, [idx], source_etype=T)

    def row_body(b, i):
        def col_body(b, j):
            b.store(ir.Constant(T, 0.0), acc)

            def k_body(b, p):
                ai = b.select(is_ta, b.add(b.mul(p, lda), i), b.add(b.mul(i, lda), p))
                bi = b.select(is_tb, b.add(b.mul(j, ldb), p), b.add(b.mul(p, ldb), j))
                prod = b.fmul(b.load(at(a, ai), typ=T), b.load(at(bm, bi), typ=T))
                b.store(b.fadd(b.load(acc, typ=T), prod), acc)

            loop(b, zero, k, "p", k_body)
            cij = at(c, b.add(b.mul(i, ldc), j))
            val = b.fmul(alpha, b.load(acc, typ=T))
            old = b.load(cij, typ=T)
            keep = b.fadd(val, b.fmul(beta, old))
            b.store(b.select(beta0, val, keep), cij)

        loop(b, zero, n, "j", col_body)

    loop(b, zero, m, "i", row_body)
    b.ret_void()


def _load_shim(module):
    from .target import new_target_machine
    mod = llvm.parse_assembly(str(module))
    mod.verify()
    engine = llvm.create_mcjit_compiler(mod, new_target_machine())
    engine.finalize_object()
    for single in (True, False):
        llvm.add_symbol(SYMBOLS[single], engine.get_function_address(SYMBOLS[single]))
    _shims.append(engine)


_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = None


class SingleThreaded:
    """Context manager: BLAS runs on one thread inside (process-wide; nested and concurrent
    blocks share one save/restore: the count comes back when the last one leaves)."""

    def __init__(self):
        self.binding = bind()

    def __enter__(self):
        global _threads_users, _threads_saved
        binding = self.binding
        if binding.set_threads is not None:
            with _threads_lock:
                if _threads_users == 0:
                    _threads_saved = binding.get_threads()
                    if _threads_saved != 1:
                        binding.set_threads(1)
                _threads_users += 1
        return self

    def __exit__(self, *exc):
        global _threads_users
        binding = self.binding
        if binding.set_threads is not None:
            with _threads_lock:
                _threads_users -= 1
                if _threads_users == 0 and _threads_saved not in (None, 1):
                    binding.set_threads(_threads_saved)
        return False


def single_threaded() -> SingleThreaded:
    """BLAS on one thread inside ``with single_threaded(): ...`` (see :class:`SingleThreaded`)."""
    return SingleThreaded()
