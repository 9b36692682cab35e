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
import warnings

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
from .lru import LRU
from .fitting.minimization import METHODS as _FULL_BATCH_METHODS
from .training import multiclass
from .losses import LOSSES, logistic
from .models.objective import Model, Objective
from .models.parse import parse_formula, parse_model
from .training.driver import fit as _fit
from .training.tuning import build_optimizer

__all__ = ["FormulaRegressor", "FormulaClassifier"]

_COMPILED = LRU(32)  # searches with a threading backend fit clones concurrently


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

    by_name = True  # a DataFrame's columns are matched to the inputs by name

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

    def training_data(self, X, target):
        return np.column_stack([X, target])

    def named_params(self, theta) -> dict:
        return {p.name: float(v) for p, v in zip(self.objective.params, theta)}


def _compiled(formula, params, inputs, loss):
    expr = _formula_expr(formula)
    key = (expr, _names(params, "params"), _names(inputs, "inputs"), loss)
    return _COMPILED.get_or_make(key, lambda: _Compiled(expr, params, inputs, loss))


_FIRST_ORDER_SETTINGS = ("optimizer", "lr", "epochs", "batch_size", "weight_decay",
                         "optimizer_options", "early_stopping", "validation_fraction")


def _is_default(value, default) -> bool:
    if value is default:
        return True
    try:
        return bool(type(value) is type(default) and value == default)
    except (TypeError, ValueError):  # arrays and other values without a plain truth value
        return False


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
        self._warn_first_order_settings_unused()
        from .fitting.minimization import fit_full_batch
        from .training.driver import _initial_params

        seed = self.random_state
        if isinstance(seed, np.random.RandomState):
            seed = int(seed.randint(2 ** 31 - 1))
        init_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])
        x0 = _initial_params(compiled.objective, self.init, init_rng)
        data = compiled.training_data(X, target)
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
        self.params_ = compiled.named_params(self.theta_)
        self.history_ = history
        self.n_iter_ = int(result.nit)
        self.stop_reason_ = "converged" if result.success else (
            "max_iter" if result.nit >= self.max_iter else "failed")
        self.loss_ = float(result.fun)
        return self

    def _warn_first_order_settings_unused(self):
        """A first-order setting changed from its default does nothing with a full-batch solver:
        say so rather than ignore it silently (code written before L-BFGS became the default)."""
        import inspect
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [name for name in _FIRST_ORDER_SETTINGS
                   if name in defaults and not _is_default(getattr(self, name), defaults[name].default)]
        if changed:
            warnings.warn(f"{type(self).__name__}: {', '.join(changed)} appl"
                          f"{'ies' if len(changed) == 1 else 'y'} to solver='first-order' only; "
                          f"solver={self.solver!r} ignores {'it' if len(changed) == 1 else 'them'}",
                          UserWarning, stacklevel=4)

    def _train_first_order(self, compiled, X, target):
        options = {} if self.optimizer_options is None else dict(self.optimizer_options)
        if self.weight_decay is not None:
            options["weight_decay"] = self.weight_decay
        # a copy, so that fitting never changes the optimizer instance the estimator was given
        optimizer = build_optimizer(copy.deepcopy(self.optimizer), self.lr, **options)
        seed = self.random_state
        if isinstance(seed, np.random.RandomState):
            seed = int(seed.randint(2 ** 31 - 1))
        data = compiled.training_data(X, target)
        result = _fit(compiled.objective, data, optimizer=optimizer, epochs=self.epochs,
                      batch_size=self.batch_size, seed=seed, init=self.init,
                      early_stopping=self.early_stopping,
                      validation=self.validation_fraction, progress=False)
        self.theta_ = np.array(result.params, dtype=np.float64)
        self.params_ = compiled.named_params(self.theta_)
        self.history_ = result.history
        self.n_iter_ = len(result.history)
        self.stop_reason_ = result.stop_reason
        self.loss_ = result.loss
        return self

    def _outputs(self, X):
        check_is_fitted(self)
        compiled = self._compiled()
        if compiled.by_name:
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
    __doc__ = """Classification with a formula for the logit(s), for scikit-learn.

    Three ways to state the model:

    - **a scalar formula** (a SymPy expression or formula string) is the logit of a
      binary classifier, trained by binary cross-entropy with logits
      (:func:`symdiff.losses.logistic`, ``softplus(z) - y*z``, stable for any logit).
      ``y`` has exactly two classes; ``classes_[1]`` is the positive one, whose
      probability is ``sigmoid(formula)``.
    - **a matrix formula**: a SymPy matrix expression of shape ``(k, 1)``, one logit
      per class, in one ``MatrixSymbol`` input ``x`` of shape ``(d, 1)`` whose entries
      are X's ``d`` columns (by position), with ``MatrixSymbol`` (or scalar)
      parameters; e.g. ``z, params = sd.nets.mlp(x, (32,), outputs=k)`` then
      ``FormulaClassifier(z, params, [x])``. It is trained by softmax cross-entropy
      (:func:`symdiff.losses.softmax_cross_entropy`) against one-hot targets;
      ``k`` must equal the number of classes, in ``classes_`` order.
    - **no formula** (``FormulaClassifier()``): the linear softmax model
      ``W x + b`` built for X's width and y's classes at fit time, i.e. multinomial
      logistic regression without a penalty (scikit-learn's ``LogisticRegression``
      with ``C=inf``); two classes get two logits.

    ``predict_proba`` gives one column per class of ``classes_`` (rows sum to 1);
    ``decision_function`` the logit for a scalar formula, the logits ``(n, k)`` for
    a softmax model with ``k > 2``, and ``z[:, 1] - z[:, 0]`` for a two-class
    softmax model (scikit-learn's convention: positive means ``classes_[1]``);
    ``predict`` the most probable class; ``score`` is accuracy. For a softmax model
    ``params_`` maps each parameter's name to an array of its shape.
    """ + _ESTIMATOR_PARAMETERS

    def __init__(self, formula=None, params=None, inputs=None, optimizer="adam", lr=0.01,
                 epochs=200, batch_size=None, weight_decay=None, optimizer_options=None,
                 init=None, early_stopping=None, validation_fraction=None, random_state=0,
                 solver="lbfgs", max_iter=1000, tol=1e-6):
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

    def _softmax(self) -> bool:
        return multiclass.is_vector_formula(self.formula)

    def _compiled(self):
        if self._softmax():
            return multiclass.compiled(self.formula, self.params, self.inputs,
                                       self.n_features_in_, len(self.classes_))
        return super()._compiled()

    def fit(self, X, y):
        """Train the logit formula(s) on inputs ``X`` and class labels ``y``; return self."""
        if self._softmax():
            return self._fit_softmax(X, y)
        if self.params is None or self.inputs is None:
            raise FormulaError("FormulaClassifier: a scalar formula needs params and inputs")
        compiled, X, y = self._validated_fit_data(X, y)
        check_classification_targets(y)
        kind = type_of_target(y, input_name="y")
        if kind != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {kind}: "
                             f"FormulaClassifier's scalar formula is one logit, for two classes; "
                             f"for more, give a (k, 1) matrix formula of logits or no formula "
                             f"(linear softmax)")
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"FormulaClassifier needs samples of 2 classes; y has only 1 class "
                             f"({classes[0]!r})")
        self.classes_ = classes
        return self._train(compiled, X, (y == classes[1]).astype(np.float64))

    def _fit_softmax(self, X, y):
        X, y = _sklearn_validate_data(self, X, y, reset=True, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"FormulaClassifier needs samples of at least 2 classes; y has only "
                             f"1 class ({classes[0]!r})")
        compiled = multiclass.compiled(self.formula, self.params, self.inputs, X.shape[1],
                                       len(classes))
        self.classes_ = classes
        return self._train(compiled, X, multiclass.one_hot(y, classes))

    def decision_function(self, X):
        """The logit (the formula's value) at each row of ``X``: positive means
        ``classes_[1]``; for a softmax model with more than two classes, the logits ``(n, k)``."""
        z = self._outputs(X)
        if z.ndim == 2 and z.shape[1] == 2:
            return z[:, 1] - z[:, 0]
        return z

    def predict_proba(self, X):
        """The probability of each class of ``classes_``, shape ``(n, n_classes)``."""
        z = self._outputs(X)
        if z.ndim == 2:
            return multiclass.softmax(z)
        return np.column_stack([_sigmoid(-z), _sigmoid(z)])

    def predict(self, X):
        """The most probable class of each row of ``X``."""
        z = self._outputs(X)
        if z.ndim == 2:
            return self.classes_[np.argmax(z, axis=1)]
        return self.classes_[(z > 0).astype(np.intp)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = self._softmax()
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"binary_only": not self._softmax()}


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow, elementwise (the compiled sigmoid's formula)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

