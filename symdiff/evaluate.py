"""The reference semantics of the IR: a NumPy interpreter.

Slow and obviously correct; the native kernels and every IR pass are tested
against it.
"""

from __future__ import annotations

import numpy as np

from .ir import Program
from .primitives import PRIMITIVES


def evaluate(program: Program, params, data) -> list:
    """Evaluate every output of ``program``; returns arrays broadcast over the samples.

    ``params``: sequence of floats in ``program.params`` order; ``data``: mapping
    name -> 1-D array (all the same length).
    """
    env = {name: np.float64(v) for name, v in zip(program.params, params)}
    n = None
    for name in program.data:
        col = np.asarray(data[name], dtype=np.float64)
        env[name] = col
        n = len(col)
    with np.errstate(all="ignore"):
        for ins in program.body:
            prim = PRIMITIVES[ins.op]
            args = [env[a] if isinstance(a, str) else a for a in ins.args]
            env[ins.target] = prim.numpy(*args)
    shape = () if n is None else (n,)
    return [np.broadcast_to(np.asarray(env[o] if isinstance(o, str) else o, dtype=np.float64), shape)
            for o in program.outputs]
