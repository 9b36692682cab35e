"""Seven optimizers on two ill-conditioned problems, with the same budget of steps.

Shows the optimizers of the tutorials side by side, each trained by ``sd.fit``:
gradient descent (whole data set per step), SGD (mini-batches), momentum,
Nesterov, AdaGrad, RMSprop and Adam, on

* an elongated quadratic bowl: least squares with two features whose scales
  differ tenfold, so the loss surface is a valley 10 times longer than wide
  (condition number 100): plain gradient descent must use a step small enough
  for the steep direction and then crawls along the flat one;
* logistic regression (cross-entropy with logits) on features of unequal scale.

Draws one figure (loss against optimizer step, one panel per problem) saved as
PNG, and prints a table of the final training loss and wall time of each run.

    python examples/optimizers_compared.py [--out DIR]

``--out`` is where the PNG goes (default: the system temp directory).
``SYMDIFF_FAST=1`` shrinks data and steps so the script finishes in seconds.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import sympy as sp

import symdiff as sd

FAST = os.environ.get("SYMDIFF_FAST") == "1"
N = 2_000 if FAST else 20_000
STEPS = 150 if FAST else 600
MINIBATCH_STEPS_PER_EPOCH = 10

# (label, optimizer name, learning rate, mini-batches?) per problem; rates picked by hand per problem
BOWL_RUNS = [
    ("GD", "sgd", 0.009, False),
    ("SGD", "sgd", 0.009, True),
    ("momentum", "momentum", 0.002, False),
    ("Nesterov", "nesterov", 0.002, False),
    ("AdaGrad", "adagrad", 0.5, False),
    ("RMSprop", "rmsprop", 0.05, False),
    ("Adam", "adam", 0.05, False),
]
LOGISTIC_RUNS = [
    ("GD", "sgd", 0.2, False),
    ("SGD", "sgd", 0.2, True),
    ("momentum", "momentum", 0.05, False),
    ("Nesterov", "nesterov", 0.05, False),
    ("AdaGrad", "adagrad", 0.5, False),
    ("RMSprop", "rmsprop", 0.01, False),
    ("Adam", "adam", 0.05, False),
]


def elongated_bowl(rng):
    """Least squares in (w0, w1) with x1 ten times wider than x0: a quadratic bowl, condition 100."""
    w0, w1, x0, x1, y = sp.symbols("w0 w1 x0 x1 y", real=True)
    objective = sd.Objective((w0 * x0 + w1 * x1 - y) ** 2, params=[w0, w1], data=[x0, x1, y])
    a, b = rng.normal(size=N), 10.0 * rng.normal(size=N)
    data = {"x0": a, "x1": b, "y": 2.0 * a - 0.3 * b + 0.5 * rng.normal(size=N)}
    return objective, data, np.array([-3.0, 1.0])


def logistic_regression(rng):
    """Cross-entropy with logits, softplus(z) - y*z, on three features of scales 1, 5 and 0.2."""
    w, x = sd.vector("w", 3), sd.vector("x", 3)
    b, y = sp.symbols("b y", real=True)
    z = sum(wi * xi for wi, xi in zip(w, x)) + b
    objective = sd.Objective(sd.softplus(z) - y * z, params=[*w, b], data=[*x, y])
    features = rng.normal(size=(N, 3)) * np.array([1.0, 5.0, 0.2])
    logits = features @ np.array([1.5, -0.4, 4.0]) + 0.5
    labels = (rng.random(N) < 1 / (1 + np.exp(-logits))).astype(float)
    data = {**{f"x{i}": features[:, i] for i in range(3)}, "y": labels}
    return objective, data, np.zeros(4)


def run(objective, data, init, runs):
    """Train with each optimizer for the same number of steps; return {label: (steps, losses, seconds)}."""
    objective.compile()  # compile once up front, so the times below are training only
    curves = {}
    for label, name, lr, minibatch in runs:
        batch = N // MINIBATCH_STEPS_PER_EPOCH if minibatch else None
        epochs = STEPS // MINIBATCH_STEPS_PER_EPOCH if minibatch else STEPS
        started = time.perf_counter()
        result = sd.fit(objective, data, optimizer=name, lr=lr, epochs=epochs, batch_size=batch,
                     init=init, progress=False)
        seconds = time.perf_counter() - started
        final = objective.compile().value(result.params, data)
        curves[label] = (np.array(result.history.steps), np.array(result.history.train_loss), final, seconds)
    return curves


def plot(problems, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    for index, (title, curves) in enumerate(problems.items()):
        ax = figure.add_subplot(1, len(problems), index + 1)
        floor = min(min(losses.min(), final) for _, losses, final, _ in curves.values())
        for label, (steps, losses, _, _) in curves.items():
            ax.plot(steps, np.maximum(losses - floor, 1e-9), label=label)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-8)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss - best loss seen")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compare optimizers on ill-conditioned problems.")
    parser.add_argument("--out", default=tempfile.gettempdir(), help="directory for the PNG")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    problems = {
        "elongated quadratic bowl": run(*elongated_bowl(rng), BOWL_RUNS),
        "logistic regression": run(*logistic_regression(rng), LOGISTIC_RUNS),
    }
    print(f"{STEPS} steps each, N = {N:,}; SGD uses {MINIBATCH_STEPS_PER_EPOCH} mini-batches per epoch")
    print(f"{'optimizer':<10}" + "".join(f"{t:>28}" for t in problems))
    print(f"{'':<10}" + f"{'final loss':>18}{'time s':>10}" * len(problems))
    for label in problems["elongated quadratic bowl"]:
        row = "".join(f"{curves[label][2]:>18.6f}{curves[label][3]:>10.3f}" for curves in problems.values())
        print(f"{label:<10}{row}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "optimizers_compared.png")
    plot(problems, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
