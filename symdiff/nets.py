"""Small neural networks written out as scalar SymPy formulas.

A multilayer perceptron is just a formula: each unit is ``act(sum_j W[i,j] h[j] + b[i])``.
Writing it this way lets symdiff show its backpropagation as formulas and compile
its training kernel like any other model.
"""

from __future__ import annotations

import sympy as sp


def mlp(inputs, hidden, activation=sp.tanh, prefix="") -> tuple:
    """A fully connected network with one linear output unit.

    ``inputs``: the input symbols; ``hidden``: sizes of the hidden layers, e.g. ``(16, 16)``;
    ``activation``: a SymPy function of one argument (``sp.tanh``, ``lambda z: sp.Max(0, z)``).
    Returns ``(output, params)`` with params ordered layer by layer, weights (row-major) then
    biases; parameters are named ``W{layer}_{i}_{j}``, ``b{layer}_{i}``.
    """
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
