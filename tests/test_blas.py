"""codegen.blas: generated code calling GEMM, against NumPy's matmul.

Each binding (NumPy's OpenBLAS, SciPy's cython_blas adapter, the plain-loop fallback)
is a per-process choice, so the non-default ones run in a child process.
"""

import ctypes
import os
import subprocess
import sys

import llvmlite.binding as llvm
import numpy as np
import pytest
from llvmlite import ir

from codegen import blas
from codegen.target import new_target_machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gemm_function(single, ta, tb, alpha, beta):
    """f(A, B, C, m, n, k): C = alpha*op(A) op(B) + beta*C, row-major, tight leading dims."""
    blas.bind()
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [blas.PTR] * 3 + [blas.I64] * 3), name="f")
    a, bm, c, m, n, k = fn.args
    b = ir.IRBuilder(fn.append_basic_block())
    blas.emit_gemm(b, module, single, ta, tb, m, n, k, alpha, a, m if ta else k, bm,
                   k if tb else n, beta, c, n)
    b.ret_void()
    mod = llvm.parse_assembly(str(module))
    mod.verify()
    engine = llvm.create_mcjit_compiler(mod, new_target_machine())
    engine.finalize_object()
    sig = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, *[ctypes.c_int64] * 3)
    return engine, sig(engine.get_function_address("f"))


def check_all_cases():
    """Every dtype and transpose combination on odd sizes; returns the worst relative error."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for single in (True, False):
        dt = np.float32 if single else np.float64
        for ta in (False, True):
            for tb in (False, True):
                for (m, n, k), beta in (((17, 5, 33), 0.5), ((1, 1, 1), 0.0), ((64, 31, 129), 0.0)):
                    _engine, f = _gemm_function(single, ta, tb, 1.5, beta)  # keeps the code alive
                    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
                    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
                    C = rng.standard_normal((m, n)).astype(dt)
                    ref = 1.5 * ((A.T if ta else A).astype(float) @ (B.T if tb else B).astype(float))
                    if beta:
                        ref += beta * C
                    else:
                        C[:] = np.nan  # beta = 0: C is not read
                    f(A.ctypes.data, B.ctypes.data, C.ctypes.data, m, n, k)
                    tol = (1e-5 if single else 1e-13) * (1 + np.abs(ref).max()) * np.sqrt(k)
                    err = np.abs(C - ref).max()
                    assert err <= tol, (single, ta, tb, m, n, k, err)
                    worst = max(worst, err / tol)
    return worst


def test_gemm_bound_in_this_process_matches_numpy():
    binding = blas.bind()
    assert binding.source in ("numpy-openblas", "scipy-cython-blas", "loop")
    check_all_cases()


@pytest.mark.parametrize("choice, source", [("scipy", "scipy-cython-blas"), ("loop", "loop")])
def test_fallback_bindings_match_numpy(choice, source):
    code = ("import sys; sys.path.insert(0, 'tests'); from codegen import blas; import test_blas; "
            "test_blas.check_all_cases(); print(blas.bind().source)")
    env = dict(os.environ, SYMDIFF_BLAS=choice)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == source


def test_numpy_binding_is_numpys_own_openblas():
    binding = blas.bind()
    if binding.source != "numpy-openblas":
        pytest.skip(f"this NumPy bundles no OpenBLAS ({binding.source})")
    assert "openblas" in os.path.basename(binding.library)
    assert llvm.address_of_symbol("symdiff_sgemm") == llvm.address_of_symbol("scipy_cblas_sgemm64_")


def test_single_threaded_sets_and_restores_the_thread_count():
    binding = blas.bind()
    if binding.get_threads is None:
        pytest.skip("no thread control for this BLAS")
    before = binding.get_threads()
    with blas.single_threaded():
        assert binding.get_threads() == 1
        with blas.single_threaded():
            assert binding.get_threads() == 1
        assert binding.get_threads() == 1
    assert binding.get_threads() == before
