"""Logistic regression with cross-entropy on scikit-learn's breast-cancer data.

The model is a logit ``z = w . x + b`` over the 30 standardized features; the
per-sample loss is the binary cross-entropy written with logits,

    loss = softplus(z) - y*z  =  -y*log(sigmoid(z)) - (1 - y)*log(1 - sigmoid(z)),

which symdiff compiles without overflow for any z (its gradient is
``(sigmoid(z) - y) * x``: the printed gradient shows it). ``sd.fit`` trains it with
Adam on mini-batches of 32, holding out 20% of the training set for validation;
the script prints test accuracy next to scikit-learn's own LogisticRegression and
saves the training and validation loss curves as ``logistic_regression.png`` in
``--out``. Set SYMDIFF_FAST=1 for a quick run. Needs scikit-learn and matplotlib
(``pip install 'symdiff-llvm[sklearn,plot]'``).

Run: python examples/logistic_regression.py [--out DIR]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import sympy as sp
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import symdiff as sd
from symdiff.optim import Adam

FAST = os.environ.get("SYMDIFF_FAST") == "1"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for logistic_regression.png (default: the current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels.astype(np.float64), test_size=0.25, random_state=0, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    n_features = x_train.shape[1]

    weights = sd.vector("w", n_features)
    inputs = sd.vector("x", n_features)
    b, y = sp.symbols("b y", real=True)
    logit = sum(wi * xi for wi, xi in zip(weights, inputs)) + b
    loss = sd.softplus(logit) - y * logit
    objective = sd.Objective(loss, params=[*weights, b], data=[*inputs, y])
    gradient = objective.gradient()
    z = sp.Symbol("z", real=True)
    print("z = w0*x0 + ... + w29*x29 + b  (the logit)")
    print(f"loss         {loss.subs(logit, z)}")
    print(f"d loss/d w0  {gradient[0].subs(logit, z)}")
    print(f"d loss/d b   {gradient[-1].subs(logit, z)}")

    train = np.column_stack([x_train, y_train])
    test = np.column_stack([x_test, y_test])
    epochs = 3 if FAST else 60
    started = time.perf_counter()
    result = sd.fit(objective, train, optimizer=Adam(lr=0.01), epochs=epochs, batch_size=32,
                    validation=0.2, seed=0, init="zeros", progress=False)
    seconds = time.perf_counter() - started

    predict = sd.Model(logit, params=[*weights, b], inputs=list(inputs)).compile()
    test_logits = predict(result.params, x_test)
    accuracy = np.mean((test_logits > 0) == (y_test > 0.5))
    print(f"\nsd.fit (Adam, lr 0.01, batch 32, {epochs} epochs, {seconds:.2f} s)")
    print(f"  final training loss   {result.history.train_loss[-1]:.4f}")
    print(f"  final validation loss {result.history.val_loss[-1]:.4f}")
    print(f"  test cross-entropy    {objective.compile().value(result.params, test):.4f}")
    print(f"  test accuracy         {accuracy:.3f}")

    reference = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    print(f"scikit-learn LogisticRegression (L2, C=1) test accuracy {reference.score(x_test, y_test):.3f}")
    if not FAST:
        assert accuracy > 0.93, accuracy

    path = args.out / "logistic_regression.png"
    result.history.plot(path, title="logistic regression, breast-cancer data")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
