"""Handwritten digits with a 64-32-10 network written as matrix formulas.

The network is three lines of SymPy with ``MatrixSymbol`` weights, one sample at a time:
``h = act(W1 x + b1)``, ``z = W2 h + b2``, and the per-sample loss is the softmax
cross-entropy ``logsumexp(z) - y.z`` against the one-hot label ``y``. symdiff
differentiates it at the matrix level (the gradient reads as layer-by-layer
backpropagation: ``dL/dW1 = ((W2^T (softmax(z) - y)) o act'(.)) x^T``), batches it (``W x``
over n samples is one GEMM ``X W^T``) and compiles one kernel for loss and gradient.
Training is ``sd.fit`` with Adam on mini-batches (``--method adam``, the default) or
full-batch L-BFGS by ``sd.minimize`` (``--method lbfgs``); predictions come from the
compiled ``sd.Model`` of the logits, ``(n, 10)``.

The script prints the compile and training times and the test accuracy (and exits
with status 1 below 0.95, except in the fast mode), and writes ``digits_mlp_loss.png``
(training and test loss per epoch) and ``digits_mlp_misclassified.png`` (the test digits
it gets wrong) to --out. Set SYMDIFF_FAST=1 for a quick run. Needs scikit-learn and
matplotlib.

Run: python examples/digits_mlp.py [--activation tanh|relu] [--method adam|lbfgs] [--out DIR]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import sympy as sp
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import symdiff as sd

FAST = os.environ.get("SYMDIFF_FAST") == "1"
ACTIVATIONS = {"tanh": sp.tanh, "relu": sd.relu}


def network(activation):
    """The logits of the 64-32-10 network, its parameters, the input and the target."""
    M = sp.MatrixSymbol
    x, y = M("x", 64, 1), M("y", 10, 1)
    W1, b1, W2, b2 = M("W1", 32, 64), M("b1", 32, 1), M("W2", 10, 32), M("b2", 10, 1)
    z = W2 * (W1 * x + b1).applyfunc(activation) + b2
    return z, [W1, b1, W2, b2], x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="tanh",
                        help="hidden-layer activation (default: tanh)")
    parser.add_argument("--method", choices=["adam", "lbfgs"], default="adam",
                        help="adam: sd.fit on mini-batches of 64; lbfgs: sd.minimize, full batch "
                             "(default: adam)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for digits_mlp_loss.png and digits_mlp_misclassified.png "
                             "(default: the current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    images, labels = digits.images, digits.target
    X = digits.data / 16.0                        # pixels in [0, 1]
    Y = np.eye(10)[labels]                        # one-hot targets
    X_train, X_test, Y_train, Y_test, _, images_test = train_test_split(
        X, Y, images, test_size=0.25, random_state=0, stratify=labels)

    z, params, x, y = network(ACTIVATIONS[args.activation])
    objective = sd.Objective(sd.losses.softmax_cross_entropy(z, y), params=params, data=[x, y])
    started = time.perf_counter()
    kernel = objective.compile()
    predict = sd.Model(z, params, [x]).compile()
    n_params = sum(int(np.prod(p.shape)) for p in params)
    print(f"network 64-32-10 ({args.activation}), {n_params} parameters; gradient derived and compiled in {time.perf_counter() - started:.2f} s")
    for name, value in objective.layers.items():
        print(f"  {name} = {value}")
    print(f"  dL/dW1 = {objective.gradient()[0]}")

    train, test = {x: X_train, y: Y_train}, {x: X_test, y: Y_test}
    epochs = 8 if FAST else 60
    started = time.perf_counter()
    if args.method == "adam":
        result = sd.fit(objective, train, optimizer="adam", lr=0.01, epochs=epochs, batch_size=64,
                        validation=test, seed=0, progress=False)
        theta, curves = result.params, (result.history.train_loss, result.history.val_loss)
        how = f"{epochs} epochs of Adam (lr 0.01, batches of 64)"
    else:
        test_loss, train_loss = [], []

        def record(step):
            train_loss.append(float(step.fun))
            test_loss.append(kernel.value(step.x, test))

        result = sd.minimize(objective, train, method="lbfgs", maxiter=epochs * 5, tol=1e-5,
                             callback=record)
        theta, curves = result.x, (train_loss, test_loss)
        how = f"{result.nit} L-BFGS iterations (full batch)"
    seconds = time.perf_counter() - started

    predicted = predict(theta, {x: X_test}).argmax(axis=1)
    truth = Y_test.argmax(axis=1)
    accuracy = float(np.mean(predicted == truth))
    train_accuracy = float(np.mean(predict(theta, {x: X_train}).argmax(axis=1) == Y_train.argmax(axis=1)))
    print(f"trained {how} in {seconds:.2f} s; test loss {kernel.value(theta, test):.4f}")
    print(f"accuracy: training {train_accuracy:.4f}, test {accuracy:.4f} "
          f"({int(np.sum(predicted != truth))} of {len(truth)} test digits wrong)")

    plot_losses(args.out / "digits_mlp_loss.png", *curves, args.method)
    wrong = np.flatnonzero(predicted != truth)
    plot_misclassified(args.out / "digits_mlp_misclassified.png", images_test[wrong],
                       truth[wrong], predicted[wrong])
    if not FAST and accuracy < 0.95:
        print(f"test accuracy {accuracy:.4f} is below 0.95", file=sys.stderr)
        sys.exit(1)


def plot_losses(path, train_loss, test_loss, method):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, len(train_loss) + 1)
    axes.semilogy(steps, train_loss, label="training")
    axes.semilogy(steps, test_loss, label="test")
    axes.set_xlabel("epoch" if method == "adam" else "L-BFGS iteration")
    axes.set_ylabel("mean softmax cross-entropy")
    axes.set_title("digits, 64-32-10 network")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"saved {path}")


def plot_misclassified(path, images, truth, predicted, limit=40):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = min(len(images), limit)
    columns = 10
    rows = max(1, -(-shown // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.0, rows * 1.25 + 0.4),
                                squeeze=False)
    for k, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if k < shown:
            axis.imshow(images[k], cmap="gray_r", interpolation="nearest")
            axis.set_title(f"{truth[k]} → {predicted[k]}", fontsize=9, color="firebrick")
    figure.suptitle(f"misclassified test digits (true → predicted): {len(images)}"
                    + (f", first {shown} shown" if shown < len(images) else ""), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
