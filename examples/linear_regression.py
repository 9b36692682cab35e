"""Linear regression by gradient descent: the tutorials' y = 3x + 2 + noise.

Shows the whole path on the smallest model: the model and its per-sample squared
error as formulas, the symbolic gradient symdiff derives, the compiled kernel
that returns the mean loss and mean gradient over the data, and three ways to
descend with it:

* a hand-written loop ``theta -= lr * grad`` over the kernel (what ``sd.fit`` does
  inside, minus the bookkeeping);
* ``sd.fit`` with plain SGD on the whole data set each step (batch gradient descent);
* ``sd.fit`` with mini-batches of 10 samples (mini-batch stochastic gradient descent).

All three land on the least-squares solution (w close to 3, b close to 2). Saves
``linear_regression.png`` (data, fitted lines, loss curves) in ``--out``.
Set SYMDIFF_FAST=1 for a quick run.

Run: python examples/linear_regression.py [--out DIR]
"""

import argparse
import os
from pathlib import Path

import numpy as np
import sympy as sp

import symdiff as sd
from symdiff.optim import SGD

FAST = os.environ.get("SYMDIFF_FAST") == "1"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for linear_regression.png (default: the current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(1)
    xs = rng.standard_normal(100)
    ys = 3 * xs + 2 + 0.5 * rng.standard_normal(100)

    w, b, x, y = sp.symbols("w b x y", real=True)
    model = w * x + b
    loss = (model - y) ** 2
    objective = sd.Objective(loss, params=[w, b], data=[x, y])
    print(f"model     y_hat = {model}")
    print(f"loss      {loss}  (mean over samples)")
    for symbol, derivative in zip(objective.params, objective.gradient()):
        print(f"gradient  d loss/d{symbol} = {derivative}")
    print("\nthe program the kernel runs for each sample:")
    print(objective.program())

    kernel = objective.compile()
    data = {x: xs, y: ys}
    steps = 20 if FAST else 200

    theta = np.zeros(2)
    for _ in range(steps):
        _, gradient = kernel(theta, data)
        theta -= 0.1 * gradient
    print(f"\nhand-written loop, {steps} steps:   w = {theta[0]:.4f}, b = {theta[1]:.4f}")

    batch = sd.fit(objective, data, optimizer=SGD(lr=0.1), epochs=steps, init="zeros", progress=False)
    print(f"sd.fit, batch GD, {steps} epochs:    w = {batch.params[0]:.4f}, b = {batch.params[1]:.4f}")
    assert np.allclose(batch.params, theta), "sd.fit with batch SGD takes the same steps as the loop"

    epochs = 5 if FAST else 50
    mini = sd.fit(objective, data, optimizer=SGD(lr=0.02), epochs=epochs, batch_size=10,
                  init="zeros", seed=0, progress=False)
    print(f"sd.fit, mini-batches of 10, {epochs} epochs: w = {mini.params[0]:.4f}, b = {mini.params[1]:.4f}")

    exact = np.linalg.lstsq(np.column_stack([xs, np.ones_like(xs)]), ys, rcond=None)[0]
    print(f"least squares:                   w = {exact[0]:.4f}, b = {exact[1]:.4f}")
    if not FAST:
        assert np.allclose(theta, exact, atol=1e-3) and np.allclose(mini.params, exact, atol=0.05)

    plot(args.out / "linear_regression.png", xs, ys, exact, batch, mini)


def plot(path, xs, ys, exact, batch, mini):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    grid = np.linspace(xs.min(), xs.max(), 2)
    left.scatter(xs, ys, s=12, alpha=0.6, label="data")
    left.plot(grid, exact[0] * grid + exact[1], "k--", label="least squares")
    left.plot(grid, batch.params[0] * grid + batch.params[1], label="batch GD")
    left.plot(grid, mini.params[0] * grid + mini.params[1], label="mini-batch SGD")
    left.set_xlabel("x")
    left.set_ylabel("y")
    left.legend()
    right.plot(batch.history.epoch, batch.history.train_loss, label="batch GD (1 step/epoch)")
    right.plot(mini.history.epoch, mini.history.train_loss, label="mini-batch SGD (10 steps/epoch)")
    right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel("mean squared error")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
