"""Seven optimizers on two ill-conditioned problems, with the same budget of steps.

Shows the optimizers of the tutorials side by side, each trained by ``sd.fit``:
gradient descent (whole data set per step), SGD (mini-batches), momentum,
Nesterov, AdaGrad, RMSprop and Adam, on

* an elongated quadratic bowl: least squares with two features whose scales
  differ tenfold, so the loss surface is a valley 10 times longer than wide
  (condition number 100): plain gradient descent must use a step small enough
  for the steep direction and then crawls along the flat one;
* logistic regression (cross-entropy with logits) on features of unequal scale.

Given enough steps every optimizer reaches the same minimum, so the final loss
cannot tell them apart; the table shows what does: how far above the best loss
each one still is after a fixed early step, and how many steps it needs to get
within a relative tolerance of it (plus the wall time). The figure
``optimizers_compared.png`` (loss against optimizer step, one panel per problem)
goes into ``--out`` (default: the current directory).

    python examples/optimizers_compared.py [--out DIR]

``SYMDIFF_FAST=1`` shrinks data and steps so the script finishes in seconds.
"""

import argparse
import os
import time

import numpy as np
import sympy as sp

import symdiff as sd

FAST = os.environ.get("SYMDIFF_FAST") == "1"
N = 2_000 if FAST else 20_000
STEPS = 150 if FAST else 600
MINIBATCH_STEPS_PER_EPOCH = 10
EARLY_STEP = 20         # the loss compared at this step, where the optimizers differ most
TOLERANCE = 1e-3        # "converged": within this fraction of the best loss seen

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
    parser = argparse.ArgumentParser(description="Compare optimizers on ill-conditioned problems.",
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", default=".",
                        help="directory for optimizers_compared.png (default: the current directory)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    problems = {
        "elongated quadratic bowl": run(*elongated_bowl(rng), BOWL_RUNS),
        "logistic regression": run(*logistic_regression(rng), LOGISTIC_RUNS),
    }
    print(f"{STEPS} steps each, N = {N:,}; SGD uses {MINIBATCH_STEPS_PER_EPOCH} mini-batches per epoch")
    print(f"excess loss = training loss - best loss seen on that problem; steps to converge: "
          f"first step within {TOLERANCE:g} x best loss ('-': not within {STEPS} steps)")
    for title, curves in problems.items():
        best = min(min(losses.min(), final) for _, losses, final, _ in curves.values())
        print(f"\n{title} (best loss {best:.6f})")
        print(f"{'optimizer':<10}{f'excess at step {EARLY_STEP}':>22}{'steps to converge':>19}"
              f"{'final loss':>12}{'time s':>8}")
        for label, (steps, losses, final, seconds) in curves.items():
            early = losses[min(np.searchsorted(steps, EARLY_STEP), len(losses) - 1)] - best
            within = np.flatnonzero(losses - best <= TOLERANCE * abs(best))
            reached = f"{steps[within[0]]}" if within.size else "-"
            print(f"{label:<10}{early:>22.3e}{reached:>19}{final:>12.6f}{seconds:>8.3f}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "optimizers_compared.png")
    plot(problems, path)
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    main()
