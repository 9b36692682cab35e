import re
import time

import numpy as np
import sympy as sp
from sklearn.datasets import load_digits

import symdiff as sd

M = sp.MatrixSymbol
x, y = M("x", 64, 1), M("y", 10, 1)
W1, b1, W2, b2 = M("W1", 32, 64), M("b1", 32, 1), M("W2", 10, 32), M("b2", 10, 1)
z = W2 * (W1 * x + b1).applyfunc(sp.tanh) + b2
objective = sd.Objective(sd.losses.softmax_cross_entropy(z, y),
                         params=[W1, b1, W2, b2], data=[x, y])

kernel = objective.compile(cache=False)
print(kernel)
print(f"compiled in {sum(v for v in kernel.compile_times.values() if isinstance(v, float)):.2f} s")
calls = re.findall(r'call [^@]*@"?([\w.]+)', kernel.llvm_ir)
print("calls in the generated code:",
      ", ".join(f"{name} x{calls.count(name)}" for name in sorted(set(calls)) if "llvm." not in name))

digits = load_digits()
X, Y = digits.data / 16.0, np.eye(10)[digits.target]            # (1797, 64), (1797, 10)
theta = objective.init(seed=0)                                   # Glorot weights, zero biases
loss, grad = kernel(theta, {x: X, y: Y})

# the same batch by hand, layer by layer: forward, then backward with delta = dL/d(pre-activation)
P = objective.unpack(theta)
H = np.tanh(X @ P[W1].T + P[b1].T)                               # h = tanh(W1 x + b1), a row per sample
Z = H @ P[W2].T + P[b2].T                                        # z = W2 h + b2
S = np.exp(Z - Z.max(1, keepdims=True))
S /= S.sum(1, keepdims=True)                                     # softmax(z)
n = len(X)
delta2 = (S - Y) / n                                             # dL/dz (mean over the batch)
delta1 = (delta2 @ P[W2]) * (1 - H**2)                           # (W2^T delta2) o tanh'
by_hand = {W1: delta1.T @ X, b1: delta1.sum(0)[:, None], W2: delta2.T @ H, b2: delta2.sum(0)[:, None]}
loss_by_hand = np.mean(np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1)) + Z.max(1) - (Y * Z).sum(1))

print(f"loss: kernel {loss:.12f}, NumPy {loss_by_hand:.12f}")
for p, g in objective.unpack(grad).items():
    print(f"dL/d{p.name} {g.shape}: largest difference from NumPy "
          f"{np.abs(g - by_hand[p]).max():.1e}")

def median_time(f, repeats=200):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times))

print(f"one loss-and-gradient call on all {n} digits: {median_time(lambda: kernel(theta, {x: X, y: Y})) * 1e3:.2f} ms")
