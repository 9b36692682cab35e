"""A small neural network (2-16-16-1, tanh) on the two-moons data set, written as formulas.

Every unit is a scalar formula: ``h1_j = tanh(sum_i W1_ji x_i + b1_j)``,
``h2_k = tanh(sum_j W2_kj h1_j + b2_k)``, logit ``z = sum_k v_k h2_k + c``, and the
per-sample loss is the cross-entropy with logits ``softplus(z) - y*z``. symdiff
derives the gradient for all 337 parameters by reverse mode on the shared
expression graph (each hidden unit is computed once, its adjoint accumulated from
every unit that uses it), compiles one kernel for loss and gradient, and
``sd.fit`` trains it with Adam. The script prints the training and test accuracy
and saves the decision boundary as ``mlp_two_moons.png`` in ``--out``.
Set SYMDIFF_FAST=1 for a quick run. Needs scikit-learn and matplotlib.

Run: python examples/mlp_two_moons.py [--out DIR]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import sympy as sp
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

import symdiff as sd
from symdiff.optim import Adam

FAST = os.environ.get("SYMDIFF_FAST") == "1"
LAYERS = (2, 16, 16, 1)


def network(inputs):
    """The logit of a tanh MLP with LAYERS widths, and its parameters in a fixed order."""
    params = []
    activations = list(inputs)
    for layer, (fan_in, fan_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:]), start=1):
        weights = [sd.vector(f"W{layer}_{unit}_", fan_in) for unit in range(fan_out)]
        biases = sd.vector(f"b{layer}_", fan_out)
        params += [w for row in weights for w in row] + list(biases)
        sums = [sum(w * a for w, a in zip(row, activations)) + bias for row, bias in zip(weights, biases)]
        last = layer == len(LAYERS) - 1
        activations = sums if last else [sp.tanh(s) for s in sums]
    return activations[0], params


def initial_values(params, seed):
    """Glorot-style random weights (scaled by 1/sqrt(fan-in)), zero biases."""
    rng = np.random.default_rng(seed)
    values = []
    for p in params:
        if p.name.startswith("W"):
            layer = int(p.name[1])
            values.append(rng.standard_normal() / np.sqrt(LAYERS[layer - 1]))
        else:
            values.append(0.0)
    return np.array(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for mlp_two_moons.png (default: the current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    points, labels = make_moons(n_samples=600, noise=0.15, random_state=0)
    x_train, x_test, y_train, y_test = train_test_split(points, labels.astype(np.float64),
                                                        test_size=0.25, random_state=0)
    x1, x2, y = sp.symbols("x1 x2 y", real=True)
    logit, params = network([x1, x2])
    loss = sd.softplus(logit) - y * logit

    started = time.perf_counter()
    objective = sd.Objective(loss, params=params, data=[x1, x2, y])
    kernel = objective.compile()
    print(f"network {'-'.join(map(str, LAYERS))}, tanh: {len(params)} parameters; "
          f"gradient derived and compiled in {time.perf_counter() - started:.2f} s")

    epochs = 20 if FAST else 200
    started = time.perf_counter()
    result = sd.fit(objective, np.column_stack([x_train, y_train]), optimizer=Adam(lr=0.01),
                    epochs=epochs, batch_size=64, init=initial_values(params, seed=0), seed=0,
                    progress=False)
    print(f"trained {epochs} epochs (Adam, lr 0.01, batch 64) in {time.perf_counter() - started:.2f} s; "
          f"final training loss {result.history.train_loss[-1]:.4f}")

    predict = sd.Model(logit, params=params, inputs=[x1, x2]).compile()
    train_accuracy = np.mean((predict(result.params, x_train) > 0) == (y_train > 0.5))
    test_accuracy = np.mean((predict(result.params, x_test) > 0) == (y_test > 0.5))
    print(f"accuracy: training {train_accuracy:.3f}, test {test_accuracy:.3f}")
    print(f"test loss {kernel.value(result.params, np.column_stack([x_test, y_test])):.4f}")
    if not FAST:
        assert test_accuracy > 0.93, test_accuracy

    plot(args.out / "mlp_two_moons.png", predict, result.params, points, labels)


def plot(path, predict, theta, points, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = points.min(axis=0) - 0.5, points.max(axis=0) + 0.5
    g1, g2 = np.meshgrid(np.linspace(low[0], high[0], 300), np.linspace(low[1], high[1], 300))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    probability = (0.5 * (1 + np.tanh(0.5 * predict(theta, grid)))).reshape(g1.shape)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    filled = axes.contourf(g1, g2, probability, levels=20, cmap="RdBu_r", alpha=0.7)
    axes.contour(g1, g2, probability, levels=[0.5], colors="k", linewidths=1.5)
    axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="RdBu_r", edgecolors="k", s=14)
    figure.colorbar(filled, ax=axes, label="P(y = 1)")
    axes.set_title("2-16-16-1 tanh network: decision boundary")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
