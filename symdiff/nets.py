"""Small neural networks written out as scalar SymPy formulas.

A multilayer perceptron is just a formula: each unit is ``act(sum_j W[i,j] h[j] + b[i])``.
Writing it this way lets symdiff show its backpropagation as formulas and compile
its training kernel like any other model. Given a ``MatrixSymbol`` input vector,
:func:`mlp` builds the matrix-level network instead, ``h = act(W h + b)`` with one
weight matrix per layer: the form whose kernels use GEMM and whose gradient reads
as layer-by-layer backpropagation.
"""

from __future__ import annotations

import sympy as sp


def mlp(inputs, hidden, activation=sp.tanh, prefix="", outputs=1, output="linear") -> tuple:
    """A fully connected network; with scalar ``inputs``, one linear output unit.

    With a ``MatrixSymbol`` column vector as ``inputs`` the network is matrix-level:
    weights ``W{layer}`` (out x in) and biases ``b{layer}`` (out x 1) as matrix symbols,
    ``outputs`` output units, and ``output`` "linear" (the logits, for
    ``sd.losses.softmax_cross_entropy`` or ``mse``) or "softmax" (probabilities);
    ``activation`` is applied elementwise (``sp.tanh``, ``sd.relu``, ``sd.sigmoid``, a lambda).

    ``inputs``: the input symbols; ``hidden``: sizes of the hidden layers, e.g. ``(16, 16)``;
    ``activation``: a SymPy function of one argument (``sp.tanh``, ``lambda z: sp.Max(0, z)``).
    Returns ``(output, params)`` with params ordered layer by layer, weights (row-major) then
    biases; parameters are named ``W{layer}_{i}_{j}``, ``b{layer}_{i}``.
    """
    if isinstance(inputs, sp.MatrixSymbol):
        return _matrix_mlp(inputs, hidden, activation, prefix, outputs, output)
    if outputs != 1 or output != "linear":
        raise ValueError("scalar inputs build one linear output; pass a MatrixSymbol input "
                         "vector for several or softmax outputs")
    h = list(inputs)
    params = []
    sizes = list(hidden) + [1]
    for layer, width in enumerate(sizes, start=1):
        W = [[sp.Symbol(f"{prefix}W{layer}_{i}_{j}", real=True) for j in range(len(h))]
             for i in range(width)]
        b = [sp.Symbol(f"{prefix}b{layer}_{i}", real=True) for i in range(width)]
        params += [w for row in W for w in row] + b
        pre = [sp.Add(*[W[i][j] * h[j] for j in range(len(h))]) + b[i] for i in range(width)]
        h = pre if layer == len(sizes) else [activation(z) for z in pre]
    return h[0], tuple(params)


def _matrix_mlp(x, hidden, activation, prefix, outputs, output):
    from .models.matrix_functions import elementwise, softmax
    if x.shape[1] != 1:
        raise ValueError(f"mlp needs a column-vector input, got shape {x.shape}")
    if output not in ("linear", "softmax"):
        raise ValueError(f"output must be 'linear' or 'softmax', not {output!r}")
    h, params, width = x, [], int(x.shape[0])
    sizes = list(hidden) + [int(outputs)]
    for layer, out in enumerate(sizes, start=1):
        W = sp.MatrixSymbol(f"{prefix}W{layer}", out, width)
        b = sp.MatrixSymbol(f"{prefix}b{layer}", out, 1)
        params += [W, b]
        z = W * h + b
        h = z if layer == len(sizes) else elementwise(activation, z)
        width = out
    return (softmax(h) if output == "softmax" else h), tuple(params)
