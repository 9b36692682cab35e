"""scikit-learn estimators for formula models: ``FormulaRegressor`` and ``FormulaClassifier``.

A formula model is a SymPy expression (or a formula string, parsed by
:func:`symdiff.parse_formula`, never evaluated) of named parameters and inputs.
The estimators wrap it in scikit-learn's contract, so a formula model drops into
``GridSearchCV``, ``RandomizedSearchCV``, ``cross_val_score`` and ``Pipeline``:
the constructor stores its arguments and nothing else, ``fit(X, y)`` trains by
:func:`symdiff.fit`, and fitted state lives in attributes ending in ``_``.

``X`` is a 2-D array whose columns are the ``inputs`` in the order given, or a
pandas DataFrame whose column names include the inputs' names (other columns are
ignored, order does not matter: unlike scikit-learn's own estimators, which refuse
reordered columns at predict time, a formula knows its inputs by name). A formula
takes a fixed number of inputs, so any other number of columns is refused with a
ValueError (a :class:`~symdiff.errors.DataError`) naming the inputs.

Compiling is the expensive part of a fit, and a search clones the estimator for
every setting and fold. The derived objective and predictor of a formula are
therefore kept in a process-wide cache keyed by the formula, its parameters and
inputs, and the loss: every clone of an estimator finds the same compiled
kernels, and a 5-fold search over 20 settings compiles once. Fitted estimators
hold only plain arrays and dicts, so they pickle; an unpickled estimator finds
(or rebuilds) its kernels through the same cache.

Needs scikit-learn (``pip install 'symdiff-llvm[sklearn]'``).
"""

import copy
import threading
import warnings
from collections import OrderedDict

import numpy as np
import sympy as sp

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import check_is_fitted
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError("symdiff.estimators needs scikit-learn: pip install 'symdiff-llvm[sklearn]'") from None

try:
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # scikit-learn < 1.6
    def _sklearn_validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from .errors import DataError, FormulaError
from .minimization import METHODS as _FULL_BATCH_METHODS
from .losses import LOSSES, logistic
from .objective import Model, Objective
from .parse import parse_formula, parse_model
from .training import fit as _fit
from .tuning import build_optimizer

__all__ = ["FormulaRegressor", "FormulaClassifier"]

_CACHE_SIZE = 32
_COMPILED = OrderedDict()
_COMPILED_LOCK = threading.Lock()


def _formula_expr(formula):
    if isinstance(formula, str):
        return parse_model(formula)[1] if "~" in formula else parse_formula(formula)
    if isinstance(formula, sp.Expr):
        return formula
    raise FormulaError(f"formula must be a SymPy expression or a formula string, "
                       f"not {type(formula).__name__}")


def _names(symbols, what):
    if isinstance(symbols, (str, sp.Symbol)):
        symbols = [symbols]
    try:
        symbols = list(symbols)
    except TypeError:
        raise FormulaError(f"{what} must be a list of SymPy symbols or names, got {symbols!r}") from None
    return tuple(s if isinstance(s, str) else getattr(s, "name", s) for s in symbols)


def _target_symbol(taken):
    name = "y"
    while name in taken:
        name += "_"
    return sp.Symbol(name, real=True)


class _Compiled:
    """A formula's predictor and training objective, derived and compiled once per process."""

    def __init__(self, expr, params, inputs, loss):
        self.model = Model(expr, params, inputs)
        taken = {s.name for s in expr.free_symbols} | set(_names(params, "params")) | set(
            _names(inputs, "inputs"))
        target = _target_symbol(taken)
        per_sample = loss(self.model.output, target)
        self.objective = Objective(per_sample, self.model.params, list(self.model.inputs) + [target])
        self.input_names = [s.name for s in self.model.inputs]

    def predict(self, theta, X):
        return self.model.compile()(theta, np.ascontiguousarray(X, dtype=np.float64))


def _compiled(formula, params, inputs, loss):
    expr = _formula_expr(formula)
    key = (expr, _names(params, "params"), _names(inputs, "inputs"), loss)
    with _COMPILED_LOCK:  # searches with a threading backend fit clones concurrently
        entry = _COMPILED.get(key)
        if entry is None:
            entry = _Compiled(expr, params, inputs, loss)
            _COMPILED[key] = entry
            while len(_COMPILED) > _CACHE_SIZE:
                _COMPILED.popitem(last=False)
        else:
            _COMPILED.move_to_end(key)
    return entry


class _FormulaEstimator(BaseEstimator):
    """What the regressor and the classifier share: inputs, fitting, the compiled pieces."""

    def _loss_function(self):
        raise NotImplementedError

    def _compiled(self):
        return _compiled(self.formula, self.params, self.inputs, self._loss_function())

    @property
    def objective_(self):
        """The training objective (a :class:`symdiff.Objective`) of the fitted estimator."""
        check_is_fitted(self)
        return self._compiled().objective

    @property
    def model_(self):
        """The predictor (a :class:`symdiff.Model`) of the fitted estimator."""
        check_is_fitted(self)
        return self._compiled().model

    def _select_columns(self, X, names):
        """A DataFrame with string column names gives the inputs by name; anything else by position."""
        columns = getattr(X, "columns", None)
        if columns is None or not len(columns) or not all(isinstance(c, str) for c in columns):
            return X
        missing = [name for name in names if name not in set(columns)]
        if missing:
            raise DataError(f"{type(self).__name__}: X has no column {', '.join(map(repr, missing))}; "
                             f"the formula's inputs are {', '.join(names)}")
        return X[names]

    def _check_width(self, X, names):
        """A formula has a fixed number of inputs: refuse other widths, naming the inputs.

        The DataError (a ValueError) carries ``inputs`` (the names) and ``columns`` (X's width).
        """
        if X.shape[1] != len(names):
            error = DataError(
                f"{type(self).__name__}: the formula takes {len(names)} input column"
                f"{'s' if len(names) != 1 else ''} ({', '.join(names)}, in that order) but X has "
                f"{X.shape[1]} column{'s' if X.shape[1] != 1 else ''}")
            error.inputs, error.columns = tuple(names), X.shape[1]
            raise error

    def _validated_fit_data(self, X, y):
        compiled = self._compiled()
        X = self._select_columns(X, compiled.input_names)
        X, y = _sklearn_validate_data(self, X, y, reset=True, dtype=np.float64,
                                      y_numeric=not isinstance(self, ClassifierMixin))
        self._check_width(X, compiled.input_names)
        return compiled, X, y

    def _train(self, compiled, X, target):
        if self.solver == "first-order":
            return self._train_first_order(compiled, X, target)
        if self.solver not in _FULL_BATCH_METHODS:
            raise ValueError(f"unknown solver {self.solver!r}; choose 'first-order' or one of "
                             f"{', '.join(sorted(_FULL_BATCH_METHODS))}")
        from .minimization import fit_full_batch
        from .training import _initial_params

        seed = self.random_state
        if isinstance(seed, np.random.RandomState):
            seed = int(seed.randint(2 ** 31 - 1))
        init_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])
        x0 = _initial_params(compiled.objective, self.init, init_rng)
        data = np.column_stack([X, target])
        result, history = fit_full_batch(compiled.objective, data, method=self.solver, x0=x0,
                                         tol=self.tol, maxiter=self.max_iter)
        if not result.success:
            from sklearn.exceptions import ConvergenceWarning
            reason = ("reached max_iter" if result.nit >= self.max_iter
                      else f"stopped: {result.message}")
            warnings.warn(f"{type(self).__name__}: solver {self.solver!r} {reason} after "
                          f"{result.nit} iterations (max_iter={self.max_iter}, tol={self.tol}); "
                          f"increase max_iter or scale the inputs", ConvergenceWarning,
                          stacklevel=3)
        self.theta_ = np.array(result.x, dtype=np.float64)
        self.params_ = {p.name: float(v) for p, v in zip(compiled.objective.params, self.theta_)}
        self.history_ = history
        self.n_iter_ = int(result.nit)
        self.stop_reason_ = "converged" if result.success else (
            "max_iter" if result.nit >= self.max_iter else "failed")
        self.loss_ = float(result.fun)
        return self

    def _train_first_order(self, compiled, X, target):
        options = {} if self.optimizer_options is None else dict(self.optimizer_options)
        if self.weight_decay is not None:
            options["weight_decay"] = self.weight_decay
        # a copy, so that fitting never changes the optimizer instance the estimator was given
        optimizer = build_optimizer(copy.deepcopy(self.optimizer), self.lr, **options)
        seed = self.random_state
        if isinstance(seed, np.random.RandomState):
            seed = int(seed.randint(2 ** 31 - 1))
        data = np.column_stack([X, target])
        result = _fit(compiled.objective, data, optimizer=optimizer, epochs=self.epochs,
                      batch_size=self.batch_size, seed=seed, init=self.init,
                      early_stopping=self.early_stopping,
                      validation=self.validation_fraction, progress=False)
        self.theta_ = np.array(result.params, dtype=np.float64)
        self.params_ = {p.name: float(v) for p, v in zip(compiled.objective.params, self.theta_)}
        self.history_ = result.history
        self.n_iter_ = len(result.history)
        self.stop_reason_ = result.stop_reason
        self.loss_ = result.loss
        return self

    def _outputs(self, X):
        check_is_fitted(self)
        compiled = self._compiled()
        X = self._select_columns(X, compiled.input_names)
        X = _sklearn_validate_data(self, X, reset=False, dtype=np.float64)
        self._check_width(X, compiled.input_names)
        return compiled.predict(self.theta_, X)


_ESTIMATOR_PARAMETERS = """
    ``formula``: a SymPy expression or a formula string (``"a*exp(-b*x) + c"``; a
    ``"y ~ ..."`` model string uses its right-hand side). ``params``: the trained
    parameters, SymPy symbols or names; ``inputs``: the input symbols or names, in
    the order of X's columns (a DataFrame is matched by column name).
    ``solver``: "lbfgs" (default: full-batch L-BFGS to convergence, as scikit-learn's
    LogisticRegression), another :func:`symdiff.minimize` method ("newton",
    "trust-exact", "trust-krylov", "newton-cg", "bfgs", "cg"), or "first-order" (the
    ``optimizer`` below, by :func:`symdiff.fit`). ``max_iter`` caps the full-batch
    solver's iterations (reaching it emits scikit-learn's ``ConvergenceWarning``);
    ``tol`` bounds the largest entry of the mean loss's gradient at convergence.
    With ``solver="first-order"``:
    ``optimizer``: a name ("sgd", "momentum", "nesterov", "adagrad", "rmsprop",
    "adam", "adamw") or a :mod:`symdiff.optim` optimizer; ``lr`` its learning rate
    (None: the optimizer's default); ``weight_decay`` the optimizer's weight decay
    (None: its default); ``optimizer_options`` a dict of its other settings, e.g.
    ``{"momentum": 0.9}``. ``epochs``, ``batch_size`` (None: whole data set per
    step), ``init``, ``early_stopping`` are :func:`symdiff.fit`'s;
    ``validation_fraction`` (None or a fraction in (0, 1)) holds out that share of
    the training data as fit's ``validation``; ``random_state`` (an int) seeds the
    initial parameters, the shuffling and the held-out split.

    Fitted attributes: ``params_`` ({name: value}), ``theta_`` (the same values as
    an array in ``params`` order), ``history_`` (:class:`symdiff.History`),
    ``n_iter_`` (solver iterations, or epochs run), ``stop_reason_`` ("converged",
    "max_iter", "failed", or sd.fit's), ``loss_`` (last training loss),
    ``n_features_in_`` (and ``feature_names_in_`` after a DataFrame); properties
    ``objective_`` and ``model_`` give the symbolic objective and predictor.
"""


class FormulaRegressor(RegressorMixin, _FormulaEstimator):
    __doc__ = """Least-squares (or other loss) regression with a formula model, for scikit-learn.

    ``loss``: "mse", "mae", "huber" (:mod:`symdiff.losses`) or a function
    ``loss(prediction, target) -> per-sample SymPy loss``. ``score`` is R².
    """ + _ESTIMATOR_PARAMETERS

    def __init__(self, formula, params, inputs, loss="mse", optimizer="adam", lr=0.01, epochs=200,
                 batch_size=None, weight_decay=None, optimizer_options=None, init=None,
                 early_stopping=None, validation_fraction=None, random_state=0, solver="lbfgs",
                 max_iter=1000, tol=1e-6):
        self.formula = formula
        self.params = params
        self.inputs = inputs
        self.loss = loss
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.optimizer_options = optimizer_options
        self.init = init
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol

    def _loss_function(self):
        if callable(self.loss):
            return self.loss
        if self.loss not in LOSSES or self.loss == "logistic":
            raise ValueError(f"unknown regression loss {self.loss!r}; choose one of mse, mae, huber, "
                             f"or pass a function (prediction, target) -> SymPy loss")
        return LOSSES[self.loss]

    def fit(self, X, y):
        """Train the formula's parameters on inputs ``X`` and targets ``y``; return self."""
        compiled, X, y = self._validated_fit_data(X, y)
        return self._train(compiled, X, y)

    def predict(self, X):
        """The formula's value at each row of ``X`` with the fitted parameters."""
        return self._outputs(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = False
        return tags


class FormulaClassifier(ClassifierMixin, _FormulaEstimator):
    __doc__ = """Binary classification with a formula for the logit, for scikit-learn.

    Trained by binary cross-entropy with logits (:func:`symdiff.losses.logistic`,
    ``softplus(z) - y*z``, stable for any logit). ``y`` has exactly two classes;
    ``classes_[1]`` is the positive one, whose probability is ``sigmoid(formula)``.
    ``predict_proba`` gives both columns, ``decision_function`` the logit,
    ``predict`` the class whose probability is larger; ``score`` is accuracy.
    """ + _ESTIMATOR_PARAMETERS

    def __init__(self, formula, params, inputs, optimizer="adam", lr=0.01, epochs=200,
                 batch_size=None, weight_decay=None, optimizer_options=None, init=None,
                 early_stopping=None, validation_fraction=None, random_state=0, solver="lbfgs",
                 max_iter=1000, tol=1e-6):
        self.formula = formula
        self.params = params
        self.inputs = inputs
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.optimizer_options = optimizer_options
        self.init = init
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol

    def _loss_function(self):
        return logistic

    def fit(self, X, y):
        """Train the logit formula on inputs ``X`` and two-class labels ``y``; return self."""
        compiled, X, y = self._validated_fit_data(X, y)
        check_classification_targets(y)
        kind = type_of_target(y, input_name="y")
        if kind != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {kind}: "
                             f"FormulaClassifier's formula is one logit, for two classes")
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"FormulaClassifier needs samples of 2 classes; y has only 1 class "
                             f"({classes[0]!r})")
        self.classes_ = classes
        return self._train(compiled, X, (y == classes[1]).astype(np.float64))

    def decision_function(self, X):
        """The logit (the formula's value) at each row of ``X``: positive means ``classes_[1]``."""
        return self._outputs(X)

    def predict_proba(self, X):
        """Probabilities of ``classes_[0]`` and ``classes_[1]``, shape (n, 2)."""
        z = self.decision_function(X)
        return np.column_stack([_sigmoid(-z), _sigmoid(z)])

    def predict(self, X):
        """The more probable class of each row of ``X``."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(np.intp)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"binary_only": True}


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow, elementwise (the compiled sigmoid's formula)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

