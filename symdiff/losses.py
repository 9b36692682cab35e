"""Per-sample loss functions as SymPy formulas, for building objectives.

Each takes the model's prediction (or logit) and the target, both SymPy
expressions, and returns the per-sample loss; the objective averages it.
"""

import sympy as sp

from .functions import softplus


def mse(prediction, target):
    """Squared error ``(prediction - target)**2``."""
    return (prediction - target) ** 2


def mae(prediction, target):
    """Absolute error ``|prediction - target|`` (subgradient 0 at the kink)."""
    return sp.Abs(prediction - target)


def huber(prediction, target, delta=1.0):
    """Huber loss: quadratic within ``delta`` of the target, linear outside."""
    r = prediction - target
    delta = sp.nsimplify(delta)
    return sp.Piecewise((r ** 2 / 2, sp.Abs(r) <= delta), (delta * (sp.Abs(r) - delta / 2), True))


def logistic(logit, target):
    """Binary cross-entropy with logits, ``softplus(z) - y*z``: stable for any ``z``.

    Equal to ``-y*log(sigmoid(z)) - (1-y)*log(1 - sigmoid(z))`` for targets in {0, 1}.
    """
    return softplus(logit) - target * logit


LOSSES = {"mse": mse, "mae": mae, "huber": huber, "logistic": logistic}
