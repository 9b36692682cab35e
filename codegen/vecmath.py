"""Vector math: which native routine computes each transcendental primitive.

LLVM cannot vectorize a call to scalar libm, so a loop over ``exp`` would run one
lane at a time. On x86-64 glibc we call the vector variants of glibc's ``libmvec``
directly (``_ZGVeN8v_exp`` is exp on 8 doubles with AVX-512), named by the x86
vector function ABI; glibc documents them at 4 ulp or better (the tests compare
against NumPy over wide ranges). Where a vector variant is missing, each lane
calls the scalar libm function — slower, never wrong.
"""

from __future__ import annotations

from .target import has_symbol

# primitive -> (libm base name, arity)
LIBM = {
    "exp": ("exp", 1), "log": ("log", 1), "expm1": ("expm1", 1), "log1p": ("log1p", 1),
    "sin": ("sin", 1), "cos": ("cos", 1), "tan": ("tan", 1),
    "sinh": ("sinh", 1), "cosh": ("cosh", 1), "tanh": ("tanh", 1),
    "asin": ("asin", 1), "acos": ("acos", 1), "atan": ("atan", 1),
    "atan2": ("atan2", 2), "erf": ("erf", 1), "pow": ("pow", 2),
}


def scalar_name(op: str, single: bool) -> str:
    base, _ = LIBM[op]
    return base + ("f" if single else "")


def vector_name(op: str, single: bool, lanes: int, isa: str) -> str | None:
    """The libmvec symbol for ``op`` on ``lanes`` lanes, or None if there is none."""
    if not isa or lanes == 1:
        return None
    base, arity = LIBM[op]
    name = f"_ZGV{isa}N{lanes}{'v' * arity}_{base}{'f' if single else ''}"
    return name if has_symbol(name) else None
