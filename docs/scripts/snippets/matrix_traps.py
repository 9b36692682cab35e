import time

import sympy as sp

import symdiff as sd

M = sp.MatrixSymbol


def residual(n_in, n_hidden, n_out):
    """r = W2 tanh(W1 x + b1) + b2 - y for one sample of a n_in-n_hidden-n_out network."""
    x, y = M("x", n_in, 1), M("y", n_out, 1)
    W1, b1 = M("W1", n_hidden, n_in), M("b1", n_hidden, 1)
    W2, b2 = M("W2", n_out, n_hidden), M("b2", n_out, 1)
    return W2 * (W1 * x + b1).applyfunc(sp.tanh) + b2 - y, [W1, b1, W2, b2], [x, y]


# Trap 1: an element of a product expands into scalar terms
r, params, data = residual(16, 16, 4)
started = time.perf_counter()
expanded = (r.T * r)[0, 0]
print(f"(r.T*r)[0, 0]: {sp.count_ops(expanded)} operations, built in "
      f"{time.perf_counter() - started:.2f} s")
print(f"sd.dot(r, r):  {sp.count_ops(sd.dot(r, r))} operations")

# Trap 2: MatrixExpr.diff on network losses (symdiff never calls it)
W1 = params[0]
print(f"(r.T*r)[0, 0].diff(W1) -> {expanded.diff(W1)!r}")
small, small_params, small_data = residual(4, 5, 3)
try:
    print("(1 1 1) r, diff(W1) ->", (sp.OneMatrix(1, 3) * small).diff(small_params[0]))
except Exception as error:
    print(f"(1 1 1) r, diff(W1) raises {type(error).__name__}: {error}")
objective = sd.Objective(sd.dot(r, r), params=params, data=data)
print("symdiff: dL/dW1 =", objective.gradient()[0])

# Trap 3: SymPy's own operators check shapes when the formula is built
x, y = data
try:
    W1 * y
except Exception as error:
    print(f"W1 * y raises {type(error).__module__}.{type(error).__name__}: {error}")
