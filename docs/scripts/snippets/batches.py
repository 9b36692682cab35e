import time

import numpy as np
import sympy as sp
import symdiff as sd
from symdiff.optim import SGD

w, b, x, y = sp.symbols("w b x y")
objective = sd.Objective((w * x + b - y) ** 2, params=[w, b], data=[x, y])
rng = np.random.default_rng(0)
xs = rng.standard_normal(1000)
data = {x: xs, y: 3 * xs + 2 + 0.5 * rng.standard_normal(1000)}

kernel = objective.compile()                                 # compile once, outside the timings
for label, batch_size, lr, epochs in [("batch (1000)", None, 0.1, 100),
                                      ("mini-batch (32)", 32, 0.05, 4),
                                      ("stochastic (1)", 1, 0.005, 1)]:
    started = time.perf_counter()
    result = sd.fit(objective, data, optimizer=SGD(lr=lr), epochs=epochs, batch_size=batch_size,
                    init="zeros", progress=False)
    seconds = time.perf_counter() - started
    print(f"{label:16} lr={lr:<6} epochs={epochs:<4} steps={result.history.steps[-1]:<5} "
          f"w={result.params[0]:.3f} b={result.params[1]:.3f} "
          f"loss={kernel.value(result.params, data):.4f} ({seconds * 1e3:.0f} ms)")
