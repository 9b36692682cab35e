"""The estimators' default full-batch solver reaches the optimum on real data sets."""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from symdiff.estimators import FormulaClassifier, FormulaRegressor


def linear(cls, width, **settings):
    inputs = [f"x{i}" for i in range(width)]
    weights = [f"w{i}" for i in range(width)]
    formula = " + ".join(f"{w}*{x}" for w, x in zip(weights, inputs)) + " + c"
    return cls(formula, weights + ["c"], inputs, **settings)


def test_regressor_defaults_reach_ols_on_diabetes():
    X, y = load_diabetes(return_X_y=True, scaled=False)  # raw target, inputs scaled in the pipeline
    ours = cross_val_score(make_pipeline(StandardScaler(), linear(FormulaRegressor, 10)), X, y, cv=5)
    ols = cross_val_score(make_pipeline(StandardScaler(), LinearRegression()), X, y, cv=5)
    assert ols.mean() == pytest.approx(0.4823, abs=1e-4)
    np.testing.assert_allclose(ours, ols, atol=1e-6)
    model = make_pipeline(StandardScaler(), linear(FormulaRegressor, 10)).fit(X, y)
    reference = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)
    est = model[-1]
    assert est.stop_reason_ == "converged" and est.n_iter_ == len(est.history_)
    np.testing.assert_allclose(est.theta_[:10], reference[-1].coef_, rtol=1e-5, atol=1e-3)
    assert est.theta_[10] == pytest.approx(reference[-1].intercept_, rel=1e-8)


def _breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    # the ten "mean" features: not linearly separable, so the maximum-likelihood fit exists
    return StandardScaler().fit_transform(X[:, :10]), y


def _mean_nll(theta, X, y):
    z = X @ theta[:-1] + theta[-1]
    return np.mean(np.logaddexp(0, z) - y * z)


@pytest.mark.parametrize("solver", ["lbfgs", "newton", "trust-exact"])
def test_classifier_defaults_reach_maximum_likelihood_on_breast_cancer(solver):
    X, y = _breast_cancer()
    # reference: Newton's method (IRLS) in NumPy, iterated to machine precision
    A = np.column_stack([X, np.ones(len(y))])
    t = np.zeros(11)
    for _ in range(40):
        p = 1 / (1 + np.exp(-A @ t))
        t = t - np.linalg.solve((A.T * (p * (1 - p))) @ A, A.T @ (p - y))
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(X, y)
    assert _mean_nll(t, X, y) <= _mean_nll(np.r_[reference.coef_[0], reference.intercept_], X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = linear(FormulaClassifier, 10, solver=solver).fit(X, y)
    assert model.stop_reason_ == "converged"
    # the default tol=1e-6 bounds the gradient; the Hessian's smallest eigenvalue here is 5.6e-6,
    # so the loss gap could be ~1e-6 in the worst case: L-BFGS gets within 3e-10, Newton to rounding
    assert model.loss_ == pytest.approx(_mean_nll(t, X, y), rel=1e-8)
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], 1 / (1 + np.exp(-A @ t)), atol=1e-4)
    # with a tight tol, the parameters: L-BFGS then stops on its relative-decrease test
    # (64 eps): along the flattest direction (eigenvalue 5.6e-6) a 5e-5 error changes the loss
    # by ~1e-14, below what a line search on loss values can see; Newton's gradient test can
    tight = linear(FormulaClassifier, 10, solver=solver, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(tight.theta_, t, atol=1e-4 if solver == "lbfgs" else 1e-6)


def test_max_iter_emits_convergence_warning():
    X, y = _breast_cancer()
    model = linear(FormulaClassifier, 10, max_iter=3)
    with pytest.warns(ConvergenceWarning, match=r"solver 'lbfgs' reached max_iter after 3 iterations"):
        model.fit(X, y)
    assert model.stop_reason_ == "max_iter" and model.n_iter_ == 3


def test_first_order_still_selectable_and_unknown_solver_refused():
    X, y = load_diabetes(return_X_y=True)
    sgd = linear(FormulaRegressor, 10, solver="first-order", optimizer="sgd", lr=0.1, epochs=7).fit(X, y)
    assert sgd.n_iter_ == 7 and sgd.stop_reason_ == "epochs"
    with pytest.raises(ValueError, match="unknown solver 'adam'"):
        clone(sgd).set_params(solver="adam").fit(X, y)
