import itertools

import numpy as np
import sympy as sp
import symdiff as sd

a, b, c, x, y = sp.symbols("a b c x y")
objective = sd.Objective((a * sp.exp(-b * x) + c - y) ** 2, params=[a, b, c], data=[x, y])
rng = np.random.default_rng(0)
xs = rng.uniform(0, 4, 400)
ys = 2.5 * np.exp(-1.3 * xs) + 0.5 + 0.05 * rng.standard_normal(400)
folds = np.array_split(rng.permutation(400), 5)              # 5-fold cross-validation
kernel = objective.compile()

rows = []
for optimizer, lr, batch_size in itertools.product(["sgd", "adam"], [0.01, 0.05, 0.2], [16, 128]):
    losses = []
    for k, held_out in enumerate(folds):
        train = np.setdiff1d(np.arange(400), held_out)
        result = sd.fit(objective, {x: xs[train], y: ys[train]}, optimizer=optimizer, lr=lr,
                        epochs=30, batch_size=batch_size, init=[1.0, 1.0, 0.0], seed=k, progress=False)
        losses.append(kernel.value(result.params, {x: xs[held_out], y: ys[held_out]}))
    rows.append((np.mean(losses), np.std(losses), optimizer, lr, batch_size))

print("validation MSE (mean ± std over 5 folds)   optimizer  lr     batch")
for mean, std, optimizer, lr, batch_size in sorted(rows)[:6]:
    print(f"{mean:.5f} ± {std:.5f}                       {optimizer:9}  {lr:<5}  {batch_size}")
print(f"... {len(rows)} settings in all; the worst: {max(rows)[0]:.3g}")
