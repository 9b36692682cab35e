"""Iterations to converge on logistic regression: gradient descent, momentum, Adam, L-BFGS, Newton.

The problem is the logistic regression of the tutorials and of
``examples/logistic_regression.py`` (cross-entropy with logits, ``softplus(z) - y*z``)
on scikit-learn's breast-cancer data, using its ten standardized "mean" features (with
all thirty the classes are separable and no finite optimum exists). The features are
strongly correlated, so the loss surface is a long narrow valley: the Hessian's
eigenvalues at the optimum span five orders of magnitude.

First-order methods (``sd.fit`` on the whole data set, one step per epoch) take a step
along the gradient, whose length a learning rate must keep safe for the steepest
direction, and then crawl along the flattest. L-BFGS (``sd.minimize(method="lbfgs")``)
builds a curvature model from past gradients; Newton (``method="newton"``) solves with
the exact Hessian that symdiff derives and compiles, and converges quadratically.

The script prints, for each method, the iterations (optimizer steps) until the mean
loss is within 1e-6 of the optimum, the final gap and the wall time, and saves a plot
of the gap against iterations as ``newton_vs_gradient_descent.png`` in ``--out``
(default: the current directory). ``SYMDIFF_FAST=1`` caps the first-order runs at
fewer steps. Needs scikit-learn and matplotlib.

Run: python examples/newton_vs_gradient_descent.py [--out DIR]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

import symdiff as sd

FAST = os.environ.get("SYMDIFF_FAST") == "1"
MAX_STEPS = 400 if FAST else 20_000
TARGET_GAP = 1e-6

# (label, optimizer, settings) of the first-order runs; learning rates picked by hand
FIRST_ORDER = [
    ("gradient descent", "sgd", {"lr": 1.0}),
    ("momentum", "momentum", {"lr": 0.2}),
    ("Adam", "adam", {"lr": 0.05}),
]
SECOND_ORDER = [("L-BFGS", "lbfgs"), ("Newton", "newton")]


def problem():
    features, labels = load_breast_cancer(return_X_y=True)
    features = StandardScaler().fit_transform(features[:, :10])
    w, x = sd.vector("w", 10), sd.vector("x", 10)
    b, y = sd.vector("b", 1)[0], sd.vector("y", 1)[0]
    z = sum(wi * xi for wi, xi in zip(w, x)) + b
    objective = sd.Objective(sd.softplus(z) - y * z, params=[*w, b], data=[*x, y])
    data = {**{xi: features[:, i] for i, xi in enumerate(x)}, y: labels.astype(np.float64)}
    return objective, data


def first_order(objective, data, optimizer, settings):
    """Loss before each step of full-batch training from zeros, and the wall time."""
    started = time.perf_counter()
    result = sd.fit(objective, data, optimizer=optimizer, epochs=MAX_STEPS, init="zeros",
                    progress=False, **settings)
    seconds = time.perf_counter() - started
    losses = list(result.history.train_loss) + [objective.compile().value(result.params, data)]
    return np.array(losses), seconds


def second_order(objective, data, method):
    """Loss at the start and after each iteration of ``sd.minimize``, and the wall time."""
    start = np.zeros(len(objective.params))
    losses = [objective.compile().value(start, data)]
    started = time.perf_counter()
    sd.minimize(objective, data, x0=start, method=method, tol=1e-10,
                callback=lambda r: losses.append(float(r.fun)))
    return np.array(losses), time.perf_counter() - started


def steps_to(losses, optimum):
    hit = np.flatnonzero(losses - optimum <= TARGET_GAP)
    return int(hit[0]) if hit.size else None


def plot(curves, optimum, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    for label, (losses, _) in curves.items():
        steps = np.arange(len(losses))
        ax.plot(steps + 1, np.maximum(losses - optimum, 1e-16), label=label,
                marker="o" if len(losses) < 60 else None, markersize=3)
    ax.axhline(TARGET_GAP, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("iteration (optimizer step) + 1")
    ax.set_ylabel("mean loss - optimum")
    ax.set_title("logistic regression, breast cancer (10 features)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(
        description="Iterations to converge on logistic regression: gradient descent, momentum, "
                    "Adam, L-BFGS and Newton. Prints a table; saves newton_vs_gradient_descent.png "
                    "in --out.")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for newton_vs_gradient_descent.png (default: current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    objective, data = problem()
    optimum = sd.minimize(objective, data, x0=np.zeros(11), method="newton", tol=1e-13).fun
    objective.compile()
    objective.compile(hessian=True)  # compile up front: the times below are iterations only

    curves = {}
    for label, optimizer, settings in FIRST_ORDER:
        curves[label] = first_order(objective, data, optimizer, settings)
    for label, method in SECOND_ORDER:
        curves[label] = second_order(objective, data, method)

    print(f"mean cross-entropy at the optimum: {optimum:.10f}; "
          f"first-order runs capped at {MAX_STEPS} steps")
    print(f"{'method':<18}{'steps to gap <= 1e-6':>22}{'final gap':>14}{'time s':>10}")
    for label, (losses, seconds) in curves.items():
        steps = steps_to(losses, optimum)
        shown = f"{steps}" if steps is not None else f"> {len(losses) - 1}"
        print(f"{label:<18}{shown:>22}{losses[-1] - optimum:>14.2e}{seconds:>10.3f}")
    path = args.out / "newton_vs_gradient_descent.png"
    plot(curves, optimum, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
