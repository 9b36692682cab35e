"""symdiff: formulas in, readable symbolic gradients and native training kernels out.

Define a model and its per-sample loss as SymPy formulas, inspect the reverse-mode
gradient symbolic differentiation derives, and call the vectorized, multi-threaded
kernel llvmlite compiles from it.
"""

from .errors import (DataError, DataTypeError, DivergenceError, FormulaError, SymdiffError,
                     SymdiffWarning, UnsupportedError)
from .models.functions import sigmoid, softplus
from .models.matrix_functions import dot, logsumexp, relu, softmax, sum
from .core.ir import Instr, Program
from .core.evaluate import evaluate
from .display.compgraph import ComputationalGraph, computational_graph
from .models.objective import Model, Objective, grad, vector
from . import losses, optim, schedules
from .nets import mlp
from .models.parse import parse_formula, parse_model
from .models.regularization import l1, l2, regularized
from .models.residuals import Residuals
from .core.second_derivatives import hessian
from .fitting.minimization import minimize
from .fitting.fit_result import LeastSquaresResult
from .fitting.least_squares import least_squares
from .fitting.curve_fit import curve_fit
from .training.driver import FitResult, History, fit
from .training.tuning import LRFinder, TuneResult, loguniform, lr_find, randint, tune, uniform

__version__ = "0.1.0"

__all__ = ["Objective", "Model", "grad", "vector", "sigmoid", "softplus", "mlp", "Program",
           "sum", "dot", "logsumexp", "softmax", "relu",
           "Instr", "evaluate", "computational_graph", "ComputationalGraph", "losses", "optim",
           "schedules", "fit", "FitResult", "History", "l1", "l2", "regularized", "Residuals",
           "hessian", "minimize", "least_squares", "curve_fit", "LeastSquaresResult",
           "parse_formula", "parse_model",
           "tune", "TuneResult", "lr_find", "LRFinder", "loguniform", "uniform", "randint",
           "FormulaRegressor", "FormulaClassifier",
           "SymdiffError", "FormulaError", "UnsupportedError", "DataError", "DataTypeError",
           "DivergenceError", "SymdiffWarning", "__version__"]


def __getattr__(name):
    # the estimators import scikit-learn, an optional extra: load them on first use
    if name in ("FormulaRegressor", "FormulaClassifier"):
        from . import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module 'symdiff' has no attribute {name!r}")
