"""Random search over learning rate, batch size and optimizer, two ways, on the breast-cancer data.

Logistic regression (a logit ``z = w . x + b`` over the 30 standardized features,
binary cross-entropy with logits) is trained with settings chosen by 5-fold
cross-validation:

1. ``tune``: symdiff's own search on the objective, no scikit-learn involved
   (the data set comes from scikit-learn, that is all);
2. ``RandomizedSearchCV`` over a ``Pipeline(StandardScaler, FormulaClassifier)``,
   the same space, scored by log loss, so both searches minimize the same
   cross-entropy (on different folds: scikit-learn stratifies them).

Each prints the chosen setting, its cross-validated loss, the test accuracy of the
model refitted on the whole training set with it, and how long the search took;
scikit-learn's cross-validation clones the estimator for every fold and trial,
and the count of kernel requests shows the clones share one compiled formula.
Set SYMDIFF_FAST=1 for a run of a few seconds. Needs scikit-learn
(``pip install 'symdiff-llvm[sklearn]'``).

It prints its results and writes no files.

Run: python examples/hyperparameter_search.py
"""

import argparse
import os
import time

import numpy as np
import sympy as sp
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import RandomizedSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import codegen
import symdiff as sd
from symdiff.estimators import FormulaClassifier
from symdiff import loguniform, tune

FAST = os.environ.get("SYMDIFF_FAST") == "1"
TRIALS = 3 if FAST else 30
EPOCHS = 2 if FAST else 30
FOLDS = 5


def main():
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=0, stratify=labels)

    weights = sd.vector("w", features.shape[1])
    inputs = sd.vector("x", features.shape[1])
    b, y = sp.symbols("b y", real=True)
    logit = sum(wi * xi for wi, xi in zip(weights, inputs)) + b
    objective = sd.Objective(sd.losses.logistic(logit, y), params=[*weights, b], data=[*inputs, y])
    space = {"lr": loguniform(1e-4, 1), "batch_size": [16, 64, 256], "optimizer": ["sgd", "adam", "rmsprop"]}
    print(f"logistic regression, {features.shape[1]} features, {len(x_train)} training / {len(x_test)} test rows")
    print(f"space: {space}; {TRIALS} random trials, {FOLDS}-fold cross-validation, {EPOCHS} epochs per fit\n")

    # 1. sd.tune on the objective
    scaler = StandardScaler().fit(x_train)
    train = np.column_stack([scaler.transform(x_train), y_train])
    test_inputs = scaler.transform(x_test)
    started = time.perf_counter()
    result = tune(objective, train, space, trials=TRIALS, cv=FOLDS, epochs=EPOCHS, seed=0, init="zeros")
    tune_seconds = time.perf_counter() - started
    predict = sd.Model(logit, params=[*weights, b], inputs=list(inputs)).compile()
    tune_accuracy = np.mean((predict(result.fit.params, test_inputs) > 0) == (y_test == 1))
    columns = ["lr", "batch_size", "optimizer", "mean_loss", "std_loss", "status"]
    table = result.table
    print("sd.tune: the five best trials")
    if hasattr(table, "sort_values"):
        print(table.sort_values("rank")[columns].head(5).to_string(index=False, float_format="{:.4g}".format))
    else:
        for record in sorted(table, key=lambda r: r["rank"])[:5]:
            print("  " + ", ".join(f"{k}={record[k]}" for k in columns))

    # 2. RandomizedSearchCV over FormulaClassifier
    stats_before = dict(codegen.STATS)
    pipeline = make_pipeline(StandardScaler(), FormulaClassifier(logit, [*weights, b], list(inputs),
                                                                 epochs=EPOCHS, init="zeros",
                                                                 solver="first-order"))
    search = RandomizedSearchCV(
        pipeline, {f"formulaclassifier__{name}": values for name, values in space.items()},
        n_iter=TRIALS, cv=FOLDS, scoring="neg_log_loss", random_state=0, error_score=np.nan)
    started = time.perf_counter()
    search.fit(x_train, y_train)
    search_seconds = time.perf_counter() - started
    requests = {key: codegen.STATS[key] - stats_before[key] for key in stats_before}
    sklearn_best = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
    fits = TRIALS * FOLDS + 1

    def shown(setting):
        return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in sorted(setting.items()))

    sklearn_std = search.cv_results_["std_test_score"][search.best_index_]
    sklearn_accuracy = np.mean(search.predict(x_test) == y_test)
    rows = [
        ("best setting", shown(result.best_setting), shown(sklearn_best)),
        ("CV cross-entropy", f"{result.best_loss:.4f} ± {result.best_std:.4f}",
         f"{-search.best_score_:.4f} ± {sklearn_std:.4f}"),
        ("test accuracy", f"{tune_accuracy:.3f}", f"{sklearn_accuracy:.3f}"),
        ("search time", f"{tune_seconds:.2f} s ({fits} fits)", f"{search_seconds:.2f} s ({fits} fits)"),
    ]
    print(f"\n{'':18}{'sd.tune':<48}RandomizedSearchCV")
    for name, ours, theirs in rows:
        print(f"{name:18}{ours:<48}{theirs}")
    print(f"\nkernels asked of codegen during RandomizedSearchCV's {fits} fits: {sum(requests.values())} "
          f"(one objective, one predictor; {requests['compiled']} compiled, {requests['disk_hits']} from "
          f"the disk cache, {requests['memory_hits']} already in memory from sd.tune's run)")

if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0],
                            epilog="It prints its results and writes no files.").parse_args()
    main()
