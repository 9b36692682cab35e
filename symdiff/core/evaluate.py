"""The reference semantics of the IR: a NumPy interpreter.

Slow and obviously correct; the native kernels and every IR pass are tested
against it. Array programs (``program.shapes``) follow the batch semantics of the
contract in :mod:`symdiff.core.ir`: a varying value carries a leading sample axis, a
shared one does not, and every op's NumPy reference broadcasts over that axis.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError, DataTypeError
from .ir import Program
from .primitives import PRIMITIVES


def evaluate(program: Program, params, data) -> list:
    """Evaluate every output of ``program``; returns per-sample values for every output.

    ``params``: in ``program.params`` order, one value per parameter (a float, or an
    array of the parameter's shape), or for an array program also the flat theta
    (1-D, each parameter raveled C-order). ``data``: mapping name -> per-sample values
    (all with the same number of samples n); a data symbol of per-sample shape
    ``(r, c)`` is given as ``(n, r, c)`` or ``(n, r*c)``, a scalar as ``(n,)``.

    Returns one array per output: ``(n,)`` for a scalar, ``(n, r, c)`` for an array
    output (without the leading ``n`` when the program has no data).
    """
    if program.shapes:
        return _evaluate_arrays(program, params, data)
    env = {name: np.float64(v) for name, v in zip(program.params, params)}
    n = None
    for name in program.data:
        col = np.asarray(data[name], dtype=np.float64)
        env[name] = col
        n = len(col)
    _run_body(program, env)
    shape = () if n is None else (n,)
    return [np.broadcast_to(np.asarray(env[o] if isinstance(o, str) else o, dtype=np.float64), shape)
            for o in program.outputs]


def param_values(program: Program, params) -> list:
    """One float64 value per parameter (0-d or of its shape) from either accepted form."""
    shapes = [program.shape(p) for p in program.params]
    sizes = [int(np.prod(s)) if s else 1 for s in shapes]
    if not isinstance(params, np.ndarray) and len(params) == len(shapes) and all(
            np.shape(v) in (s, (int(np.prod(s)),) if s else ()) for v, s in zip(params, shapes)):
        return [_real(v, p).reshape(s) for v, p, s in zip(params, program.params, shapes)]
    flat = _real(params, "theta").ravel()
    if flat.size != sum(sizes):
        raise DataError(f"theta has {flat.size} entries; the parameters "
                        f"{', '.join(f'{p} {s}' for p, s in zip(program.params, shapes))} "
                        f"need {sum(sizes)}")
    out, at = [], 0
    for s, k in zip(shapes, sizes):
        out.append(flat[at:at + k].reshape(s))
        at += k
    return out


def data_values(program: Program, data) -> tuple[dict, int | None]:
    """Each data symbol's batch as ``(n, r, c)`` (arrays) or ``(n, 1, 1)`` (scalars), and n."""
    env, n = {}, None
    data = {getattr(k, "name", k): v for k, v in data.items()}
    for name in program.data:
        if name not in data:
            raise DataError(f"no data for {name!r}")
        col = _real(data[name], name)
        shape = program.shape(name)
        if not shape:
            if col.ndim != 1:
                raise DataError(f"data {name!r} is a scalar per sample: expected shape (n,), "
                                f"got {col.shape}")
            col = col[:, None, None]
        elif col.ndim == 3 and col.shape[1:] == shape:
            pass
        elif col.ndim == 2 and col.shape[1] == shape[0] * shape[1]:
            col = col.reshape(len(col), *shape)
        else:
            expected = f"(n, {shape[0]}, {shape[1]}) or (n, {shape[0] * shape[1]})"
            raise DataError(f"data {name!r} has per-sample shape {shape}: expected {expected}, "
                            f"got {col.shape}")
        if n is not None and len(col) != n:
            raise DataError(f"data {name!r} has {len(col)} samples, the others {n}")
        n = len(col)
        env[name] = col
    return env, n


def _real(value, name) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DataTypeError(f"{name!r} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _run_body(program: Program, env: dict):
    """Every instruction of ``program`` in order, reading and writing ``env`` (NumPy
    semantics: overflow and invalid values become inf and NaN, as in the kernels)."""
    with np.errstate(all="ignore"):
        for ins in program.body:
            prim = PRIMITIVES[ins.op]
            args = [env[a] if isinstance(a, str) else a for a in ins.args]
            env[ins.target] = prim.numpy(*args)


def _evaluate_arrays(program: Program, params, data) -> list:
    env = dict(zip(program.params, param_values(program, params)))
    columns, n = data_values(program, data)
    env.update(columns)
    _run_body(program, env)
    lead = () if n is None else (n,)
    outs = []
    for o in program.outputs:
        v = np.asarray(env[o] if isinstance(o, str) else o, dtype=np.float64)
        shape = program.shape(o)
        if not shape:
            v = v.reshape(v.shape[:-2]) if v.ndim >= 2 else v
            outs.append(np.broadcast_to(v, lead))
        else:
            outs.append(np.broadcast_to(v, lead + shape))
    return outs
