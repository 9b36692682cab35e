"""Gradient clipping keeps a steep start from wrecking the fit.

Fitting y = a * exp(b * x) from a start with b too large: the loss there is
large and its gradient thousands of times larger than near the
optimum. A learning rate that suits the optimum makes plain gradient descent's
first step fling b far into the negative, where exp(b * x) is practically zero
and so is the gradient: the fit never comes back. (Flung the other way it would
overflow instead, which ``sd.fit`` stops with a ``DivergenceError`` naming the
epoch and step.) Clipping the gradient, by its Euclidean norm (``clip_norm``)
or componentwise (``clip_value``), bounds each step while the gradient is huge
and does nothing once it is small, so the same learning rate then converges.
Clipping by value also turns the gradient (each component is cut separately):
here it ends zig-zagging across the valley a little short of the optimum, while
clipping by norm keeps the direction and gets there.

Prints the outcome of each run and saves one PNG with the loss and the gradient
norm (before clipping) against the epoch.

    python examples/gradient_clipping.py [--out DIR]

``--out`` is where ``gradient_clipping.png`` goes (default: the current directory).
``SYMDIFF_FAST=1`` shrinks data and epochs so the script finishes in seconds.
"""

import argparse
import os

import numpy as np
import sympy as sp

import symdiff as sd

FAST = os.environ.get("SYMDIFF_FAST") == "1"
N = 500 if FAST else 5_000
EPOCHS = 300 if FAST else 1500
LR = 0.005
START = {"a": 1.0, "b": 2.5}
RUNS = {"no clipping": {}, "clip_norm=1": {"clip_norm": 1.0}, "clip_value=1": {"clip_value": 1.0}}


def problem(rng):
    a, b, x, y = sp.symbols("a b x y", real=True)
    objective = sd.Objective((a * sp.exp(b * x) - y) ** 2, params=[a, b], data=[x, y])
    xs = rng.uniform(0, 2, size=N)
    data = {"x": xs, "y": 2.0 * np.exp(1.3 * xs) + 0.2 * rng.normal(size=N)}
    return objective, data


def plot(histories, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    loss_ax, norm_ax = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for label, history in histories.items():
        loss_ax.plot(history.epoch, history.train_loss, label=label)
        norm_ax.plot(history.epoch, history.grad_norm, label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    norm_ax.set(xlabel="epoch", ylabel="gradient norm before clipping", yscale="log", title="gradient norm")
    for ax in (loss_ax, norm_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Gradient clipping on an exponential curve fit.",
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", default=".",
                        help="directory for gradient_clipping.png (default: the current directory)")
    args = parser.parse_args(argv)
    objective, data = problem(np.random.default_rng(2))
    print(f"fit y = a*exp(b*x) to N = {N:,} points (true a = 2, b = 1.3) from a = {START['a']}, "
          f"b = {START['b']}; gradient descent, lr = {LR}, {EPOCHS} epochs")
    histories = {}
    for label, clipping in RUNS.items():
        try:
            result = sd.fit(objective, data, optimizer="sgd", lr=LR, epochs=EPOCHS, init=START,
                         progress=False, **clipping)
        except sd.DivergenceError as error:
            histories[label] = error.history
            print(f"{label:<16} diverged: {error}")
            continue
        histories[label] = result.history
        fitted = ", ".join(f"{k} = {v:.4f}" for k, v in result.params_dict.items())
        norms = result.history.grad_norm
        print(f"{label:<16} {fitted}, final loss {result.history.train_loss[-1]:.5f}, "
              f"gradient norm {norms[0]:.3g} at the start, {norms[-1]:.3g} at the end")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gradient_clipping.png")
    plot(histories, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
