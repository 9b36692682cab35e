"""The compiler process: same machine code as in-process compilation, failures are errors."""

import numpy as np
import pytest
import sympy as sp

import codegen
import symdiff as sd
from codegen import worker

w, x = sp.symbols("w x", real=True)


def test_worker_compiles_the_same_kernel(monkeypatch):
    monkeypatch.setenv("SYMDIFF_COMPILE_WORKER", "1")
    obj = sd.Objective(sp.exp(-w * x) * sp.sin(x) + w ** 2, [w], [x])
    k_worker = obj.compile(cache=False)
    codegen._MEMORY.clear()
    monkeypatch.setenv("SYMDIFF_COMPILE_WORKER", "0")
    k_local = sd.Objective(obj.loss, [w], [x]).compile(cache=False)
    data = {x: np.linspace(0, 3, 1001)}
    assert k_worker([0.7], data)[0] == k_local([0.7], data)[0]
    np.testing.assert_array_equal(k_worker([0.7], data)[1], k_local([0.7], data)[1])


def test_worker_reports_llvm_errors():
    proc = worker.CompilerProcess()
    try:
        with pytest.raises(worker.CompilerProcessError):
            proc.compile("this is not LLVM IR")
        # and it keeps serving afterwards
        out = proc.compile("define double @f(double %a) {\n  ret double %a\n}\n")
        assert len(out.object_code) > 0
    finally:
        proc.close()


def test_dead_worker_is_an_error_not_a_crash():
    proc = worker.CompilerProcess()
    proc.proc.kill()
    proc.proc.wait()
    with pytest.raises(worker.CompilerProcessError, match="died"):
        proc.compile("define double @f(double %a) {\n  ret double %a\n}\n")
