"""FormulaClassifier with softmax: multi-class on iris and digits against scikit-learn's
LogisticRegression (multinomial, penalty off or C large) and NumPy by hand, matrix
formulas (sd.nets.mlp), and scikit-learn's estimator checks with multi-class targets."""

import pickle
import re
import warnings

import numpy as np
import pytest
import sympy as sp

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

try:
    from sklearn.utils.estimator_checks import estimator_checks_generator
except ImportError:  # scikit-learn < 1.6
    estimator_checks_generator = None

import symdiff as sd
from symdiff.errors import DataError, FormulaError
from symdiff.estimators import FormulaClassifier


def _reference(X, y, C, tol=1e-10):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(C=C, tol=tol, max_iter=10_000).fit(X, y)


def _digits():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scale = StandardScaler().fit(Xtr)
    return scale.transform(Xtr), scale.transform(Xte), ytr, yte


@pytest.mark.parametrize("solver", ["lbfgs", "first-order"])
def test_iris_matches_multinomial_logistic_regression(solver):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    settings = {"solver": "first-order", "lr": 0.05, "epochs": 3000} if solver == "first-order" else {}
    model = FormulaClassifier(**settings).fit(X, names)
    reference = _reference(X, names, C=np.inf)
    np.testing.assert_array_equal(model.classes_, reference.classes_)
    P = model.predict_proba(X)
    assert P.shape == (150, 3)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
    ours, theirs = log_loss(names, P), log_loss(names, reference.predict_proba(X))
    if solver == "lbfgs":
        assert ours == pytest.approx(theirs, rel=1e-4)
        np.testing.assert_allclose(P, reference.predict_proba(X), atol=2e-3)
        # the mean cross-entropy's gradient by hand is zero at the fitted parameters
        W, b = model.params_["W"], model.params_["b"][:, 0]
        Z = X @ W.T + b
        E = np.exp(Z - Z.max(1, keepdims=True))
        D = E / E.sum(1, keepdims=True) - (names[:, None] == model.classes_).astype(float)
        assert np.abs(D.T @ X / 150).max() < 1e-5 and np.abs(D.mean(0)).max() < 1e-5
        assert model.stop_reason_ == "converged"
    else:
        assert ours < theirs + 0.01
    assert model.score(X, names) >= reference.score(X, names) - 0.01
    np.testing.assert_array_equal(model.predict(X), model.classes_[P.argmax(1)])
    Z = model.decision_function(X)
    assert Z.shape == (150, 3)
    np.testing.assert_allclose(P, np.exp(Z) / np.exp(Z).sum(1, keepdims=True), rtol=1e-10)
    assert model.params_["W"].shape == (3, 4) and model.params_["b"].shape == (3, 1)


def test_digits_linear_softmax_against_logistic_regression():
    Xtr, Xte, ytr, yte = _digits()
    model = FormulaClassifier().fit(Xtr, ytr)
    reference = _reference(Xtr, ytr, C=1e4, tol=1e-4)
    ours = log_loss(ytr, model.predict_proba(Xtr), labels=model.classes_)
    theirs = log_loss(ytr, reference.predict_proba(Xtr), labels=reference.classes_)
    assert ours <= theirs + 1e-4  # separable: both near 0, ours unpenalized
    assert model.score(Xte, yte) >= reference.score(Xte, yte) - 0.02
    assert model.score(Xte, yte) > 0.93
    np.testing.assert_allclose(model.predict_proba(Xte).sum(1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("solver", ["lbfgs", "first-order"])
def test_digits_mlp_formula(solver):
    Xtr, Xte, ytr, yte = _digits()
    x = sp.MatrixSymbol("x", 64, 1)
    logits, params = sd.nets.mlp(x, (32,), activation=sp.tanh, outputs=10)
    settings = ({"max_iter": 300} if solver == "lbfgs" else
                {"solver": "first-order", "epochs": 60, "batch_size": 64, "lr": 0.01})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FormulaClassifier(logits, params, [x], **settings).fit(Xtr, ytr)
    assert model.score(Xte, yte) > 0.95
    P = model.predict_proba(Xte)
    assert P.shape == (len(Xte), 10)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-12)
    # the predictions by hand from the fitted matrices
    W1, b1, W2, b2 = (model.params_[n] for n in ("W1", "b1", "W2", "b2"))
    Z = np.tanh(Xte @ W1.T + b1[:, 0]) @ W2.T + b2[:, 0]
    np.testing.assert_allclose(model.decision_function(Xte), Z, rtol=1e-9, atol=1e-9)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(Xte), P)


def test_two_classes_with_the_default_softmax_follow_sklearn_conventions():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 2))
    y = np.where(X[:, 0] - X[:, 1] + 0.5 * rng.normal(size=200) > 0, "b", "a")
    model = FormulaClassifier().fit(X, y)
    reference = _reference(X, y, C=np.inf)
    d = model.decision_function(X)
    assert d.shape == (200,)
    np.testing.assert_array_equal(model.predict(X), np.where(d > 0, "b", "a"))
    np.testing.assert_allclose(model.predict_proba(X), reference.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(d, reference.decision_function(X), rtol=1e-3, atol=1e-3)


def test_matrix_formula_errors_name_the_problem():
    x = sp.MatrixSymbol("x", 4, 1)
    logits, params = sd.nets.mlp(x, (), outputs=3)
    X, y = np.random.default_rng(0).normal(size=(12, 4)), np.arange(12) % 3
    with pytest.raises(ValueError, match="gives 3 logits but y has 4 classes"):
        FormulaClassifier(logits, params, [x]).fit(X, np.arange(12) % 4)
    with pytest.raises(DataError, match=r"takes 4 input columns \(x, a 4x1 vector.*X has 5"):
        FormulaClassifier(logits, params, [x]).fit(np.ones((12, 5)), y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        FormulaClassifier().fit(X, np.zeros(12))
    with pytest.raises(FormulaError, match=r"\(k, 1\) vector of logits"):
        FormulaClassifier(sp.MatrixSymbol("W", 3, 4) * x * x.T, params[:1], [x]).fit(X, y)
    with pytest.raises(ValueError, match="Only binary classification is supported.*matrix formula"):
        FormulaClassifier("a*x + b", ["a", "b"], ["x"]).fit(X[:, :1], y)
    model = FormulaClassifier(logits, params, [x]).fit(X, y)
    with pytest.raises(ValueError, match="X has 5 features"):
        model.predict(np.ones((3, 5)))


def _checks():
    if estimator_checks_generator is None:
        return []
    return list(estimator_checks_generator(FormulaClassifier()))


CHECKS = _checks()


@pytest.mark.parametrize("estimator, check", CHECKS,
                         ids=[getattr(c, "func", c).__name__ for _, c in CHECKS])
def test_sklearn_estimator_check_multiclass(estimator, check):
    if getattr(check, "func", check).__name__ == "check_array_api_input":
        pytest.skip("scikit-learn runs it only with SCIPY_ARRAY_API=1")
    assert estimator.__sklearn_tags__().classifier_tags.multi_class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


WIDTH_REFUSED = re.compile(r"takes (\d+) input columns? .* but X has (\d+) column")
CLASSES_REFUSED = re.compile(r"gives (\d+) logits but y has (\d+) classes")
#: checks that fit two and three classes in one go: a formula of k logits is for k classes
NEEDS_SEVERAL_CLASS_COUNTS = {"check_classifiers_classes", "check_classifiers_train"}


def _mlp_classifier(width, classes):
    x = sp.MatrixSymbol("x", width, 1)
    logits, params = sd.nets.mlp(x, (4,), outputs=classes)
    return FormulaClassifier(logits, params, [x], max_iter=50)


def _causes(error):
    while error is not None:
        yield str(error)
        error = error.__cause__ or error.__context__


MLP_CHECKS = [] if estimator_checks_generator is None else \
    [check for _, check in estimator_checks_generator(_mlp_classifier(2, 3))]


@pytest.mark.parametrize("check", MLP_CHECKS, ids=[getattr(c, "func", c).__name__ for c in MLP_CHECKS])
def test_sklearn_estimator_check_on_a_matrix_formula(check):
    """Each check runs on an MLP formula with as many inputs and logits as its data has
    columns and classes (a fixed formula refuses others, naming both counts)."""
    name = getattr(check, "func", check).__name__
    if name == "check_array_api_input":
        pytest.skip("scikit-learn runs it only with SCIPY_ARRAY_API=1")
    width, classes, tried = 2, 3, set()
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check(_mlp_classifier(width, classes))
            assert name not in NEEDS_SEVERAL_CLASS_COUNTS
            return
        except Exception as error:
            messages = list(_causes(error))
            widths = [m for m in map(WIDTH_REFUSED.search, messages) if m]
            counts = [m for m in map(CLASSES_REFUSED.search, messages) if m]
            following = ((int(widths[0].group(2)), classes) if widths else
                         (width, int(counts[0].group(2))) if counts else None)
            if following is None or following in tried:
                if name in NEEDS_SEVERAL_CLASS_COUNTS and counts:
                    return
                raise
            tried.add((width, classes))
            width, classes = following
