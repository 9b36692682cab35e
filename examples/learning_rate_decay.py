"""Learning-rate schedules on the tutorials' linear regression, y = 3x + 2 + noise.

Mini-batch SGD with a constant learning rate stops improving at a noise floor:
every batch gradient is noisy, so the parameters keep jittering around the
optimum by an amount proportional to the rate. Decaying the rate (the tutorials'
"dynamic" learning rate, alpha <- alpha * decay, is ``ExponentialLR``) trades
early speed for a quieter end. This script trains the same model from the same
start with a constant rate and with each schedule of ``symdiff.schedules``, then

* prints, per schedule, the final training loss, the distance of (w, b) from the
  least-squares solution, and the last learning rate;
* saves one PNG with the excess loss (full-data loss after each epoch minus the
  least-squares loss, recorded by a callback) and the learning rate against the epoch.

    python examples/learning_rate_decay.py [--out DIR]

``--out`` is where ``learning_rate_decay.png`` goes (default: the current directory).
``SYMDIFF_FAST=1`` shrinks data and epochs so the script finishes in seconds.
"""

import argparse
import os

import numpy as np
import sympy as sp

import symdiff as sd
from symdiff import schedules

FAST = os.environ.get("SYMDIFF_FAST") == "1"
N = 1_000 if FAST else 10_000
EPOCHS = 30 if FAST else 120
LR = 0.05
BATCH = 8

SCHEDULES = {
    "constant": None,
    "exponential (0.95/epoch)": schedules.ExponentialLR(0.95),
    "step (x0.3 every 1/4)": schedules.StepLR(EPOCHS // 4, 0.3),
    "cosine": schedules.CosineAnnealingLR(EPOCHS),
    "warm-up, then cosine": schedules.LinearWarmup(EPOCHS // 10, 0.1,
                                                   after=schedules.CosineAnnealingLR(EPOCHS - EPOCHS // 10)),
    "reduce on plateau": schedules.ReduceLROnPlateau(factor=0.3, patience=2, threshold=0.01),
}


def problem(rng):
    w, b, x, y = sp.symbols("w b x y", real=True)
    objective = sd.Objective((w * x + b - y) ** 2, params=[w, b], data=[x, y])
    xs = rng.normal(size=N)
    data = {"x": xs, "y": 3 * xs + 2 + 0.5 * rng.normal(size=N)}
    exact = np.polyfit(xs, data["y"], 1)
    return objective, data, exact


def plot(results, excess, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    loss_ax, lr_ax = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for label, result in results.items():
        history = result.history
        loss_ax.plot(history.epoch, np.maximum(excess[label], 1e-12), label=label)
        lr_ax.plot(history.epoch, history.lr, label=label)
    loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="loss - least-squares loss", title="excess loss after each epoch")
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate used in each epoch")
    for ax in (loss_ax, lr_ax):
        ax.grid(True, alpha=0.3)
    lr_ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Learning-rate schedules on linear regression.",
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", default=".",
                        help="directory for learning_rate_decay.png (default: the current directory)")
    args = parser.parse_args(argv)
    objective, data, exact = problem(np.random.default_rng(1))
    kernel = objective.compile()
    best = kernel.value(np.array(exact), data)
    print(f"y = 3x + 2 + noise, N = {N:,}, SGD lr = {LR}, batch {BATCH}, {EPOCHS} epochs; "
          f"least-squares w = {exact[0]:.4f}, b = {exact[1]:.4f}, loss {best:.6f}")
    print(f"{'schedule':<26}{'final loss':>12}{'excess loss':>13}{'|(w,b) - exact|':>17}{'last lr':>10}")
    results, excess = {}, {}
    for label, schedule in SCHEDULES.items():
        excess[label] = gaps = []

        def record(epoch, params, history, gaps=gaps):
            gaps.append(kernel.value(params, data) - best)

        result = sd.fit(objective, data, optimizer="sgd", lr=LR, epochs=EPOCHS, batch_size=BATCH,
                        schedule=schedule, init="zeros", callbacks=[record], progress=False)
        results[label] = result
        final = kernel.value(result.params, data)
        distance = np.linalg.norm(result.params - exact)
        last_lr = result.history.lr[-1]
        print(f"{label:<26}{final:>12.6f}{final - best:>13.2e}{distance:>17.2e}{last_lr:>10.2e}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "learning_rate_decay.png")
    plot(results, excess, path)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
