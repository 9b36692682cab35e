"""FormulaRegressor and FormulaClassifier: scikit-learn's own checks, its tools, and independent fits.

scikit-learn's estimator checks feed data of many widths (1, 3, 4, 5, 10, 20
columns); a formula takes a fixed number of inputs and refuses any other width
with a DataError naming its inputs. So each check runs on a linear formula of
width 2 first and, if it was refused for width, again on a formula with as many
inputs as the check's data has: every check runs on a formula it applies to.
"""

import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sympy as sp

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

try:
    from sklearn.utils.estimator_checks import estimator_checks_generator
except ImportError:  # scikit-learn < 1.6 has no generator of checks
    estimator_checks_generator = None

import codegen
import symdiff as sd
from symdiff.errors import DataError, FormulaError
from symdiff.estimators import FormulaClassifier, FormulaRegressor
from symdiff.training.tuning import loguniform

WIDTH_REFUSED = re.compile(r"the formula takes \d+ input columns? \(.*\) but X has (\d+) column")


def linear(cls, width, **settings):
    inputs = [f"x{i}" for i in range(width)]
    weights = [f"w{i}" for i in range(width)]
    formula = " + ".join(f"{w}*{x}" for w, x in zip(weights, inputs)) + " + c"
    return cls(formula, weights + ["c"], inputs, **settings)


FAST = {"epochs": 30, "lr": 0.1}


def _checks(cls):
    if estimator_checks_generator is None:
        return []
    return [(cls, check) for _, check in estimator_checks_generator(linear(cls, 2, **FAST))]


def _check_name(check):
    return getattr(check, "func", check).__name__


def _exceptions(error):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


CHECKS = _checks(FormulaRegressor) + _checks(FormulaClassifier)
# check_array_api_input skips itself unless SCIPY_ARRAY_API=1; the kernels read NumPy arrays only.
SKIPPED_BY_SKLEARN = {"check_array_api_input"}


@pytest.mark.parametrize("cls, check", CHECKS,
                         ids=[f"{cls.__name__}-{_check_name(check)}" for cls, check in CHECKS])
def test_sklearn_estimator_check(cls, check):
    if _check_name(check) in SKIPPED_BY_SKLEARN:
        pytest.skip("scikit-learn runs it only with SCIPY_ARRAY_API=1")
    width, tried = 2, set()
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check(linear(cls, width, **FAST))
            return
        except Exception as error:
            refused = [WIDTH_REFUSED.search(str(e)) for e in _exceptions(error)]
            refused = [m for m in refused if m]
            if not refused or int(refused[0].group(1)) in tried | {width}:
                raise
            tried.add(width)
            width = int(refused[0].group(1))


def test_wrong_width_is_a_clear_error_naming_the_inputs():
    rng = np.random.default_rng(0)
    model = FormulaRegressor("a*x + b*z + c", ["a", "b", "c"], ["x", "z"])
    with pytest.raises(DataError, match=r"takes 2 input columns \(x, z, in that order\) but X has 3") as info:
        model.fit(rng.normal(size=(10, 3)), rng.normal(size=10))
    assert isinstance(info.value, ValueError)
    assert info.value.inputs == ("x", "z") and info.value.columns == 3
    model.fit(rng.normal(size=(10, 2)), rng.normal(size=10))
    with pytest.raises(ValueError, match="X has 1 features, but FormulaRegressor is expecting 2"):
        model.predict(rng.normal(size=(4, 1)))


def test_regressor_matches_scipy_curve_fit_on_a_nonlinear_formula():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 4, 300)
    y = 2.0 * np.exp(-0.8 * x) + 0.5 + 0.05 * rng.standard_normal(300)
    model = FormulaRegressor("y ~ a*exp(-b*x) + c", ["a", "b", "c"], ["x"], lr=0.05, epochs=3000,
                             init={"a": 1.0, "b": 1.0, "c": 0.0}, solver="first-order")
    model.fit(x[:, None], y)
    reference, _ = optimize.curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=[1, 1, 0])
    np.testing.assert_allclose(model.theta_, reference, rtol=2e-3, atol=2e-3)
    assert list(model.params_) == ["a", "b", "c"]
    expected = reference[0] * np.exp(-reference[1] * x) + reference[2]
    np.testing.assert_allclose(model.predict(x[:, None]), expected, atol=5e-3)
    residual = y - expected
    r2 = 1 - residual @ residual / ((y - y.mean()) @ (y - y.mean()))
    assert model.score(x[:, None], y) == pytest.approx(r2, abs=1e-3)
    assert model.n_features_in_ == 1 and model.n_iter_ == 3000 and model.stop_reason_ == "epochs"
    assert len(model.history_) == 3000 and model.history_.train_loss[-1] == model.loss_


def test_classifier_matches_sklearn_logistic_regression():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 2))
    logit = 1.5 * X[:, 0] - 2.0 * X[:, 1] + 0.3
    labels = np.where(rng.uniform(size=400) < 1 / (1 + np.exp(-logit)), "yes", "no")
    w0, w1, b, x0, x1 = sp.symbols("w0 w1 b x0 x1", real=True)
    model = FormulaClassifier(w0 * x0 + w1 * x1 + b, [w0, w1, b], [x0, x1], lr=0.05, epochs=2000,
                              solver="first-order")
    model.fit(X, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = linear_model.LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(X, labels)
    np.testing.assert_array_equal(model.classes_, ["no", "yes"])
    np.testing.assert_allclose(model.theta_, [*reference.coef_[0], reference.intercept_[0]], rtol=1e-3,
                               atol=1e-3)
    probabilities = model.predict_proba(X)
    np.testing.assert_allclose(probabilities, reference.predict_proba(X), atol=1e-3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-15)
    z = model.decision_function(X)
    np.testing.assert_allclose(probabilities[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), np.where(z > 0, "yes", "no"))
    assert model.score(X, labels) == pytest.approx(np.mean(model.predict(X) == labels))


def test_classifier_probabilities_are_exact_in_both_tails():
    model = FormulaClassifier("a*x", ["a"], ["x"]).fit(np.array([[-1.0], [1.0]]), [0, 1])
    model.theta_ = np.array([1.0])
    p = model.predict_proba(np.array([[-800.0], [800.0], [-40.0]]))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[2], [1.0, np.exp(-40.0) / (1 + np.exp(-40.0))], rtol=1e-15)


def test_classifier_refuses_other_than_two_classes():
    X = np.random.default_rng(3).normal(size=(9, 1))
    model = FormulaClassifier("a*x + b", ["a", "b"], ["x"], epochs=2)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        model.fit(X, [0, 1, 2] * 3)
    with pytest.raises(ValueError, match="needs samples of 2 classes; y has only 1 class"):
        model.fit(X, [1] * 9)
    with pytest.raises(ValueError, match="Unknown label type"):
        model.fit(X, np.linspace(0, 1, 9))


def test_dataframe_columns_are_matched_by_name():
    pandas = pytest.importorskip("pandas")
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 2))
    y = 3.0 * X[:, 0] - X[:, 1] + 1.0
    frame = pandas.DataFrame({"noise": rng.normal(size=60), "z": X[:, 1], "x": X[:, 0]})
    by_name = FormulaRegressor("a*x + b*z + c", ["a", "b", "c"], ["x", "z"], lr=0.1, epochs=300,
                               solver="first-order").fit(frame, y)
    by_position = clone(by_name).fit(X, y)
    np.testing.assert_array_equal(by_name.theta_, by_position.theta_)
    np.testing.assert_array_equal(by_name.feature_names_in_, ["x", "z"])
    np.testing.assert_array_equal(by_name.predict(frame), by_position.predict(X))
    np.testing.assert_array_equal(by_name.predict(frame[["z", "x"]]), by_position.predict(X))
    with pytest.raises(ValueError, match=r"X has no column 'z'; the formula's inputs are x, z"):
        clone(by_name).fit(frame.drop(columns="z"), y)


def test_constructor_stores_arguments_and_bad_formulas_fail_at_fit():
    model = FormulaRegressor("a*x + __import__('os')", ["a"], ["x"])
    assert model.formula == "a*x + __import__('os')"
    with pytest.raises(FormulaError):
        model.fit(np.ones((3, 1)), np.ones(3))
    with pytest.raises(FormulaError, match="neither params nor inputs"):
        FormulaRegressor("a*x + q", ["a"], ["x"]).fit(np.ones((3, 1)), np.ones(3))
    with pytest.raises(ValueError, match="unknown regression loss 'logistic'"):
        FormulaRegressor("a*x", ["a"], ["x"], loss="logistic").fit(np.ones((3, 1)), np.ones(3))
    with pytest.raises(NotFittedError):
        FormulaRegressor("a*x", ["a"], ["x"]).predict(np.ones((3, 1)))


def test_optimizer_settings_reach_the_optimizer():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(50, 1)), rng.normal(size=50)
    plain = FormulaRegressor("a*x + b", ["a", "b"], ["x"], optimizer="sgd", lr=0.01, epochs=20,
                             solver="first-order").fit(X, y)
    momentum = clone(plain).set_params(optimizer_options={"momentum": 0.9}).fit(X, y)
    direct = sd.fit(momentum.objective_, np.column_stack([X, y]), optimizer=sd.optim.SGD(lr=0.01, momentum=0.9),
                    epochs=20, seed=0, progress=False)
    np.testing.assert_array_equal(momentum.theta_, direct.params)
    assert not np.array_equal(plain.theta_, momentum.theta_)
    decayed = clone(plain).set_params(weight_decay=0.5).fit(X, y)
    direct = sd.fit(plain.objective_, np.column_stack([X, y]), optimizer=sd.optim.SGD(lr=0.01, weight_decay=0.5),
                    epochs=20, seed=0, progress=False)
    np.testing.assert_array_equal(decayed.theta_, direct.params)
    given = sd.optim.SGD(lr=0.5, momentum=0.9)
    from_instance = clone(plain).set_params(optimizer=given).fit(X, y)
    assert given.lr == 0.5 and given.state is None, "fit trains a copy of the optimizer it was given"
    np.testing.assert_array_equal(from_instance.theta_, momentum.theta_)
    with pytest.raises(ValueError, match="SGD has no setting 'betas'"):
        clone(plain).set_params(optimizer_options={"betas": (0.9, 0.99)}).fit(X, y)


def test_pickled_estimator_predicts_the_same():
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(40, 2)), rng.integers(0, 2, 40)
    model = linear(FormulaClassifier, 2).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def _regression_data(n=120, seed=7):
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[5.0, -3.0], scale=[4.0, 0.5], size=(n, 2))
    y = 0.7 * X[:, 0] - 2.0 * X[:, 1] + 1.0 + 0.1 * rng.standard_normal(n)
    return X, y


def test_searches_cross_validation_and_pipeline_compile_each_formula_once(monkeypatch):
    monkeypatch.setenv("SYMDIFF_CACHE", "0")  # no disk cache: every build not found in memory compiles
    X, y = _regression_data()
    model = FormulaRegressor("p*u - q*v + r", ["p", "q", "r"], ["u", "v"], epochs=40,
                             solver="first-order")
    before = dict(codegen.STATS)
    grid = {"lr": [0.003, 0.01, 0.03, 0.1, 0.3], "optimizer": ["adam", "adamw", "rmsprop", "adagrad"]}
    search = GridSearchCV(model, grid, cv=5).fit(X, y)
    compiled = codegen.STATS["compiled"] - before["compiled"]
    requested = sum(codegen.STATS[k] - before[k] for k in before)
    assert compiled == 2, "one objective kernel and one predictor for 20 settings x 5 folds + refit"
    assert requested == 2, "clones reuse the compiled formula without asking codegen again"
    assert len(search.cv_results_["mean_test_score"]) == 20 and search.best_score_ > 0.9

    randomized = RandomizedSearchCV(model, {"lr": loguniform(1e-3, 0.3), "batch_size": [16, 64]},
                                    n_iter=4, cv=3, random_state=0).fit(X, y)
    scores = cross_val_score(model.set_params(lr=0.1), X, y, cv=KFold(5, shuffle=True, random_state=0))
    pipeline = make_pipeline(StandardScaler(), clone(model).set_params(lr=0.1, epochs=300)).fit(X, y)
    assert codegen.STATS["compiled"] - before["compiled"] == 2
    assert all(0.0 < s < 0.3 for s in randomized.cv_results_["param_lr"])
    assert scores.shape == (5,) and np.all(scores > 0.5)
    assert pipeline.score(X, y) > 0.99


def test_cross_val_score_equals_manual_folds():
    X, y = _regression_data(seed=8)
    model = FormulaRegressor("p*u + q*v + r", ["p", "q", "r"], ["u", "v"], lr=0.1, epochs=50,
                             solver="first-order")
    folds = KFold(4, shuffle=True, random_state=1)
    scores = cross_val_score(model, X, y, cv=folds)
    manual = [clone(model).fit(X[train], y[train]).score(X[test], y[test]) for train, test in folds.split(X)]
    np.testing.assert_array_equal(scores, manual)


def test_importing_symdiff_does_not_import_scikit_learn():
    code = "import symdiff, symdiff.training.tuning, sys; print('sklearn' in sys.modules, 'pandas' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.split() == ["False", "False"]


def test_threaded_search_equals_serial_search():
    joblib = pytest.importorskip("joblib")
    X, y = _regression_data(seed=9)
    model = FormulaRegressor("p*u + q*v + r", ["p", "q", "r"], ["u", "v"], epochs=30,
                             solver="first-order")
    grid = {"lr": [0.01, 0.1], "batch_size": [None, 16]}
    serial = GridSearchCV(model, grid, cv=3).fit(X, y)
    with joblib.parallel_backend("threading", n_jobs=2):
        threaded = GridSearchCV(model, grid, cv=3, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(threaded.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
