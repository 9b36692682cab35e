"""What :class:`~symdiff.estimators.FormulaClassifier` adds for softmax (multi-class) models.

A classifier whose formula is a vector of ``k`` logits, a SymPy matrix expression of
shape ``(k, 1)`` in one ``MatrixSymbol`` input ``x`` of shape ``(d, 1)`` (whose ``d``
entries are X's columns, by position), is trained by softmax cross-entropy
(:func:`symdiff.losses.softmax_cross_entropy`) against one-hot targets; ``k`` must be the
number of classes. With no formula at all, the model is the linear softmax
``W x + b`` (``W``: k x d, ``b``: k x 1), built for the data's width and classes at fit
time: multinomial logistic regression, as scikit-learn's ``LogisticRegression``.

The derived objective and predictor are kept in a process-wide cache keyed by the
formula (or the default's width and classes), as the scalar estimators' are.
"""

from __future__ import annotations


import numpy as np
import sympy as sp

from ..errors import DataError, FormulaError
from ..lru import LRU

_COMPILED = LRU(32)


def is_vector_formula(formula) -> bool:
    """True for a softmax classifier's formula: None (the default linear model) or a
    SymPy matrix expression of logits."""
    return formula is None or isinstance(formula, sp.MatrixExpr)


def linear_softmax(n_features, n_classes):
    """(logits, params, input) of the default model ``W*x + b``."""
    x = sp.MatrixSymbol("x", n_features, 1)
    W, b = sp.MatrixSymbol("W", n_classes, n_features), sp.MatrixSymbol("b", n_classes, 1)
    return W * x + b, [W, b], [x]


class SoftmaxCompiled:
    """A softmax classifier's predictor (logits per sample, ``(n, k)``) and objective."""

    by_name = False  # X's columns are the input vector's entries, by position

    def __init__(self, logits, params, inputs):
        from ..losses import softmax_cross_entropy
        from ..models.objective import Model, Objective
        if not isinstance(logits, sp.MatrixExpr) or logits.shape[1] != 1:
            raise FormulaError(f"a multi-class formula must be a (k, 1) vector of logits, got "
                               f"shape {getattr(logits, 'shape', '()')}")
        if isinstance(inputs, sp.MatrixSymbol):
            inputs = [inputs]
        self.model = Model(logits, list(params), inputs)
        if len(self.model.inputs) != 1 or not isinstance(self.model.inputs[0], sp.MatrixSymbol) \
                or self.model.inputs[0].shape[1] != 1:
            found = ", ".join(f"{s.name} {getattr(s, 'shape', '()')}" for s in self.model.inputs)
            raise FormulaError(f"a multi-class formula takes one MatrixSymbol input column vector "
                               f"(d, 1) whose entries are X's columns; its inputs are {found}")
        self.input = self.model.inputs[0]
        self.n_columns = int(self.input.shape[0])
        self.n_outputs = int(logits.shape[0])
        taken = {s.name for s in logits.free_symbols}
        name = "y"
        while name in taken:
            name += "_"
        target = sp.MatrixSymbol(name, self.n_outputs, 1)
        self.objective = Objective(softmax_cross_entropy(self.model.output, target),
                                   self.model.params, [self.input, target])
        self.input_names = [f"{self.input.name}[{i}]" for i in range(self.n_columns)]

    def predict(self, theta, X):
        """The logits, ``(n, k)``."""
        return self.model.compile()(theta, {self.input: np.ascontiguousarray(X, dtype=np.float64)})

    def training_data(self, X, target):
        """The data mapping of the objective: X and the one-hot targets ``(n, k)``."""
        return {self.input: np.ascontiguousarray(X, dtype=np.float64),
                self.objective.data[1]: np.ascontiguousarray(target, dtype=np.float64)}

    def named_params(self, theta) -> dict:
        """{name: array of the parameter's shape (a float for a scalar)}."""
        return {p.name: v for p, v in self.objective.unpack(theta).items()}


def compiled(formula, params, inputs, n_features, n_classes, estimator="FormulaClassifier"):
    """The cached :class:`SoftmaxCompiled` of ``formula`` (None: the linear default for
    ``n_features`` and ``n_classes``), checked against the data's width and classes."""
    if formula is None:
        key = ("linear", int(n_features), int(n_classes))
    else:
        key = (formula, _names(params), _names(inputs))
    entry = _COMPILED.get_or_make(key, lambda: (
        SoftmaxCompiled(*linear_softmax(n_features, n_classes)) if formula is None
        else SoftmaxCompiled(formula, params, inputs)))
    if entry.n_columns != n_features:
        error = DataError(f"{estimator}: the formula takes {entry.n_columns} input column"
                          f"{'s' if entry.n_columns != 1 else ''} ({entry.input.name}, a "
                          f"{entry.n_columns}x1 vector, in that order) but X has {n_features} "
                          f"column{'s' if n_features != 1 else ''}")
        error.inputs, error.columns = (entry.input.name,), n_features
        raise error
    if entry.n_outputs != n_classes:
        raise ValueError(f"{estimator}: the formula gives {entry.n_outputs} logits but y has "
                         f"{n_classes} classes; a softmax formula needs one logit per class")
    return entry


def _names(symbols):
    if symbols is None:
        return None
    if isinstance(symbols, (str, sp.Basic)):
        symbols = [symbols]
    return tuple(s if isinstance(s, str) else getattr(s, "name", str(s)) for s in symbols)


def one_hot(y, classes) -> np.ndarray:
    return (np.asarray(y)[:, None] == np.asarray(classes)[None, :]).astype(np.float64)


def softmax(z) -> np.ndarray:
    """Row-wise softmax of logits ``(n, k)``, stable for any logits."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
