"""A compiler process: LLVM optimization and code emission outside the user's process.

Why: llvmlite 0.50 leaks roughly 50-150 KB of native memory every time an optimization
pipeline runs, whatever is closed afterwards, so a long session that compiles many
distinct formulas would grow without bound; and an LLVM assertion would abort the
user's Python process. The worker is a plain ``python`` child that imports only
llvmlite and this package's ``target``/``jit`` modules (not NumPy or SymPy), compiles
what it is sent, and is replaced after ``RECYCLE_AFTER`` compilations, which returns
its leaked memory to the system.

Policy (``SYMDIFF_COMPILE_WORKER``): ``auto`` (default) compiles the first
``IN_PROCESS_COMPILES`` kernels of a process in-process (no start-up cost for the
common case of a few formulas) and the rest in the worker; ``1`` always uses the
worker; ``0`` never does.

Protocol over the child's stdin/stdout: 8-byte little-endian length, then a JSON
request ``{"ir": ..., "opt_level": ...}``; the reply is a length-prefixed JSON header
followed by a length-prefixed object file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

IN_PROCESS_COMPILES = 32
RECYCLE_AFTER = 200

_BOOTSTRAP = r"""
import sys, types
pkg = types.ModuleType("codegen")
pkg.__path__ = [sys.argv[1]]
sys.modules["codegen"] = pkg
from codegen.worker import serve
serve()
"""


class CompilerProcessError(RuntimeError):
    """The compiler process failed or died while compiling (its message says why)."""


def _write(stream, data: bytes):
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)


def _read(stream) -> bytes:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    n = int.from_bytes(header, "little")
    data = stream.read(n)
    if len(data) < n:
        raise EOFError
    return data


def serve():
    """The worker's loop (runs in the child process)."""
    channel_in = sys.stdin.buffer
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the protocol
    from codegen.jit import optimize_and_emit
    while True:
        try:
            request = json.loads(_read(channel_in))
        except EOFError:
            return
        try:
            compiled = optimize_and_emit(request["ir"], opt_level=request.get("opt_level", 3),
                                         fast_codegen=request.get("fast_codegen", False))
            header = {"ok": True, "optimized_ir": compiled.optimized_ir, "times": compiled.times}
            obj = compiled.object_code
        except Exception as exc:  # reported to the parent, which raises it
            header, obj = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, b""
        _write(channel_out, json.dumps(header).encode())
        _write(channel_out, obj)
        channel_out.flush()


class CompilerProcess:
    """The parent's handle on one worker process."""

    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, here],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.compiles = 0

    def compile(self, llvm_ir: str, opt_level: int = 3, fast_codegen: bool = False):
        from .jit import CompiledObject
        try:
            _write(self.proc.stdin, json.dumps({"ir": llvm_ir, "opt_level": opt_level,
                                                "fast_codegen": fast_codegen}).encode())
            self.proc.stdin.flush()
            header = json.loads(_read(self.proc.stdout))
            obj = _read(self.proc.stdout)
        except (EOFError, BrokenPipeError, OSError):
            code = self.proc.poll()
            self.close()
            raise CompilerProcessError(f"the LLVM compiler process died (exit status {code}) "
                                       f"while compiling this kernel") from None
        self.compiles += 1
        if not header["ok"]:
            raise CompilerProcessError(header["error"])
        return CompiledObject(obj, header["optimized_ir"], header["times"])

    def close(self):
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except Exception:
                proc.kill()


_lock = threading.Lock()
_current = None
_in_process = 0


def _policy() -> str:
    return os.environ.get("SYMDIFF_COMPILE_WORKER", "auto").strip().lower()


def optimize(llvm_ir: str, opt_level: int = 3, fast_codegen: bool = False):
    """Optimize and emit ``llvm_ir`` in-process or in the worker, by the policy above."""
    global _current, _in_process
    from .jit import optimize_and_emit
    policy = _policy()
    with _lock:
        use_worker = policy in ("1", "true", "yes", "always") or (
            policy == "auto" and _in_process >= IN_PROCESS_COMPILES)
        if not use_worker:
            _in_process += 1
    if not use_worker:
        return optimize_and_emit(llvm_ir, opt_level=opt_level, fast_codegen=fast_codegen)
    with _lock:
        if _current is None or _current.proc is None or _current.compiles >= RECYCLE_AFTER:
            if _current is not None:
                _current.close()
            _current = CompilerProcess()
        return _current.compile(llvm_ir, opt_level, fast_codegen)


def shutdown():
    global _current
    with _lock:
        if _current is not None:
            _current.close()
            _current = None


import atexit  # noqa: E402  (registered last: the worker is closed before the interpreter tears down)

atexit.register(shutdown)
