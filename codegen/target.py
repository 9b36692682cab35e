"""The host CPU as LLVM sees it: one target machine, its SIMD width, its vector math.

Kernels are compiled for the machine they run on (host CPU name and features), so
they use every SIMD lane it has. ``SYMDIFF_VECTOR_BITS`` (128, 256, 512) overrides
the vector width chosen from the features, e.g. to compare 256- and 512-bit code.
"""

from __future__ import annotations

import ctypes.util
import functools
import os
from dataclasses import dataclass

import llvmlite
import llvmlite.binding as llvm


@dataclass(frozen=True)
class HostTarget:
    triple: str
    cpu: str
    features: str
    vector_bits: int
    isa: str                 # glibc vector-ABI letter: b (SSE), d (AVX2), e (AVX-512), "" none
    libmvec: bool            # glibc's vector math library is loaded

    def lanes(self, dtype_bits: int) -> int:
        return max(1, self.vector_bits // dtype_bits)

    @property
    def fingerprint(self) -> str:
        return "|".join([self.triple, self.cpu, self.features, str(self.vector_bits),
                         self.isa, str(self.libmvec), llvmlite.__version__])


@functools.lru_cache(maxsize=None)
def _initialize():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return True


@functools.lru_cache(maxsize=None)
def host_target() -> HostTarget:
    _initialize()
    triple = llvm.get_process_triple()
    cpu = llvm.get_host_cpu_name()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    feats = set(f[1:] for f in features.split(",") if f.startswith("+"))
    x86 = triple.startswith(("x86_64", "i686", "i386"))
    if x86 and "avx512f" in feats:
        bits, isa = 512, "e"
    elif x86 and "avx2" in feats:
        bits, isa = 256, "d"
    elif x86:
        bits, isa = 128, "b"
    else:
        bits, isa = 128, ""
    override = os.environ.get("SYMDIFF_VECTOR_BITS")
    if override:
        bits = int(override)
        isa = {512: "e", 256: "d", 128: "b"}.get(bits, "") if x86 else ""
        if bits == 512 and "avx512f" not in feats or bits == 256 and "avx2" not in feats:
            isa = ""
    return HostTarget(triple, cpu, features, bits, isa, _load_libmvec() and bool(isa))


def _load_libmvec() -> bool:
    """Make glibc's libmvec symbols visible to the JIT; False where there is none."""
    for name in ("libmvec.so.1", ctypes.util.find_library("mvec")):
        if not name:
            continue
        try:
            llvm.load_library_permanently(name)
            return True
        except RuntimeError:
            continue
    return False


@functools.lru_cache(maxsize=None)
def target_machine():
    """The shared target machine used to optimize and emit code (never given to an engine)."""
    return new_target_machine()


def new_target_machine(codegen_opt: int = 3):
    """A fresh target machine; an execution engine takes ownership of the one it is given."""
    t = host_target()
    target = llvm.Target.from_triple(t.triple)
    return target.create_target_machine(cpu=t.cpu, features=t.features, opt=codegen_opt,
                                        reloc="default", codemodel="jitdefault")


def has_symbol(name: str) -> bool:
    _initialize()
    return bool(llvm.address_of_symbol(name))
