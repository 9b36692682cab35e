"""L1 and L2 penalties as symbolic terms of the objective.

A penalty here is part of the formula: it is differentiated with the loss, so it
shows up in the printed gradient and the compiled kernel, and it is the same
whichever optimizer trains the model. That is the difference from an optimizer's
``weight_decay``, which changes the update rule and is invisible in the gradient.

Conventions (the per-sample loss is averaged over the batch; a penalty involves
only parameters, so it is added once, not per sample):

    l2(params, lam) = lam * sum(p**2)       gradient 2*lam*p
    l1(params, lam) = lam * sum(|p|)        gradient lam*sign(p)

SGD, Adagrad, RMSprop and Adam add ``weight_decay * theta`` to the gradient, so
``weight_decay=wd`` takes the same steps as the objective plus ``l2(params, wd / 2)``;
AdamW's decoupled decay has no penalty equivalent. The penalty, unlike weight
decay, is part of the reported loss, can leave parameters out, and has an L1 form.
"""

import numbers

import sympy as sp

__all__ = ["l1", "l2", "regularized"]


def _strength(name, lam):
    if isinstance(lam, bool) or not isinstance(lam, (numbers.Real, sp.Number)):
        raise TypeError(f"{name} strength must be a real number, got {lam!r}")
    if not lam >= 0:
        raise ValueError(f"{name} strength must be >= 0, got {lam!r}")
    return sp.sympify(lam)


def _symbols(params):
    if isinstance(params, sp.Symbol):
        return (params,)
    params = tuple(params)
    for p in params:
        if not isinstance(p, sp.Symbol):
            raise TypeError(f"penalties apply to parameter symbols, got {p!r} ({type(p).__name__})")
    return params


def _ridge(params, lam):
    return _strength("l2", lam) * sp.Add(*[p ** 2 for p in _symbols(params)])


def _lasso(params, lam):
    return _strength("l1", lam) * sp.Add(*[sp.Abs(p) for p in _symbols(params)])


def l2(params, lam):
    """``lam * sum(p**2)`` over ``params`` (a symbol or a sequence of symbols): ridge penalty."""
    return _ridge(params, lam)


def l1(params, lam):
    """``lam * sum(Abs(p))`` over ``params``: lasso penalty; its gradient is ``lam*sign(p)``."""
    return _lasso(params, lam)


def regularized(objective, l2=0.0, l1=0.0, params=None):
    """A new objective: ``objective`` plus ``l2`` and ``l1`` penalties on ``params``.

    ``params`` defaults to all of the objective's parameters; pass a subset to leave
    some unpenalized (usually the bias). Naming a symbol that is not a parameter of
    the objective is an error, so a typo cannot silently regularize nothing.
    """
    from symdiff import Objective
    from ..errors import FormulaError

    chosen = objective.params if params is None else _symbols(params)
    unknown = [p for p in chosen if p not in objective.params]
    if unknown:
        names = ", ".join(str(p) for p in objective.params)
        raise FormulaError(f"cannot penalize {', '.join(map(str, unknown))}: not a parameter "
                           f"of the objective (parameters: {names})")
    penalty = _ridge(chosen, l2) + _lasso(chosen, l1)
    return Objective(objective.loss + penalty, params=objective.params, data=objective.data)
