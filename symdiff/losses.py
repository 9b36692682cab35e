"""Per-sample loss functions as SymPy formulas, for building objectives.

Each takes the model's prediction (or logit) and the target, both SymPy
expressions, and returns the per-sample loss; the objective averages it. Given
vectors (matrix expressions of one shape), the elementwise losses average over the
elements, as PyTorch's default reduction does over a batch of vector outputs.
"""

import sympy as sp

from .models import matrix_functions as MF
from .errors import FormulaError
from .models.functions import softplus


def _pair(prediction, target, name):
    """(prediction, target, number of elements) when both are matrices, else None."""
    p_mat, t_mat = MF.is_matrix(prediction), MF.is_matrix(target)
    if not (p_mat or t_mat):
        return None
    if not (p_mat and t_mat) or prediction.shape != target.shape:
        raise FormulaError(f"{name}: prediction and target shapes "
                           f"{getattr(prediction, 'shape', '()')} and {getattr(target, 'shape', '()')} "
                           f"do not match")
    rows, cols = prediction.shape
    return prediction, target, int(rows) * int(cols)


def _mean_elementwise(name, prediction, target, scalar_loss):
    pair = _pair(prediction, target, name)
    if pair is None:
        return None
    p, t, k = pair
    d = sp.Dummy("r", real=True)
    return MF.sum(MF.elementwise(sp.Lambda(d, scalar_loss(d)), p - t)) / k


def mse(prediction, target):
    """Squared error ``(prediction - target)**2`` (on vectors: the mean over the elements)."""
    pair = _pair(prediction, target, "mse")
    if pair is not None:
        p, t, k = pair
        return MF.dot(p - t, p - t) / k
    return (prediction - target) ** 2


def mae(prediction, target):
    """Absolute error ``|prediction - target|`` (subgradient 0 at the kink; vectors: mean)."""
    vector = _mean_elementwise("mae", prediction, target, sp.Abs)
    if vector is not None:
        return vector
    return sp.Abs(prediction - target)


def huber(prediction, target, delta=1.0):
    """Huber loss: quadratic within ``delta`` of the target, linear outside (vectors: mean)."""
    delta = sp.nsimplify(delta)
    vector = _mean_elementwise("huber", prediction, target, lambda r: sp.Piecewise(
        (r ** 2 / 2, sp.Abs(r) <= delta), (delta * (sp.Abs(r) - delta / 2), True)))
    if vector is not None:
        return vector
    r = prediction - target
    return sp.Piecewise((r ** 2 / 2, sp.Abs(r) <= delta), (delta * (sp.Abs(r) - delta / 2), True))


def logistic(logit, target):
    """Binary cross-entropy with logits, ``softplus(z) - y*z``: stable for any ``z``.

    Equal to ``-y*log(sigmoid(z)) - (1-y)*log(1 - sigmoid(z))`` for targets in {0, 1}.
    On vectors (independent binary labels): the mean over the elements.
    """
    pair = _pair(logit, target, "logistic")
    if pair is not None:
        z, y, k = pair
        return (MF.sum(MF.elementwise(softplus, z)) - MF.dot(y, z)) / k
    return softplus(logit) - target * logit


def softmax_cross_entropy(logits, target):
    """Cross-entropy of ``softmax(logits)`` against a one-hot (or probability) ``target``
    vector: ``logsumexp(z) - dot(y, z)``, stable for any logits; its gradient in ``z`` is
    ``softmax(z) - y``. The target's elements must sum to 1."""
    pair = _pair(logits, target, "softmax_cross_entropy")
    if pair is None:
        raise FormulaError("softmax_cross_entropy needs a logits vector and a target vector "
                           "(MatrixSymbol expressions of one shape)")
    z, y, _ = pair
    return MF.logsumexp(z) - MF.dot(y, z)


LOSSES = {"mse": mse, "mae": mae, "huber": huber, "logistic": logistic}
#: the losses Model.objective accepts by name (softmax_cross_entropy needs vector outputs)
MODEL_LOSSES = {**LOSSES, "softmax_cross_entropy": softmax_cross_entropy}
