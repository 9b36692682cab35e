"""SymPy functions that symdiff adds for numerically stable models.

``sigmoid(z) = 1/(1 + exp(-z))`` (elementwise on a matrix) and ``softplus(z) = log(1 + exp(z))`` are ordinary
SymPy functions (``sympy.diff`` knows their derivatives, ``rewrite(exp)`` expands
them), but symdiff differentiates and compiles them as primitives: the compiled
``softplus`` never overflows (``softplus(1000) == 1000``) and its derivative is the
sigmoid, not ``exp(z)/(1 + exp(z))`` evaluated as ``inf/inf``. symdiff also
recognises the naive spellings ``log(1 + exp(z))`` and ``1/(1 + exp(-z))`` in user
formulas and turns them into these functions.
"""

import sympy as sp


class sigmoid(sp.Function):
    """The logistic function ``1/(1 + exp(-z))``."""

    nargs = 1

    def __new__(cls, z, **kwargs):
        if getattr(z, "is_Matrix", False):  # sigmoid(A) on a matrix is elementwise
            from .matrix_functions import elementwise
            return elementwise(cls, z)
        return super().__new__(cls, z, **kwargs)

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, z):
        if z.is_zero:
            return sp.Rational(1, 2)
        return None

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return 1 / (1 + sp.exp(-z))

    def _eval_evalf(self, prec):
        if self.args[0].is_number:
            return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)
        return None

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


class softplus(sp.Function):
    """``log(1 + exp(z))``, evaluated without overflow."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    @classmethod
    def eval(cls, z):
        if z.is_zero:
            return sp.log(2)
        return None

    def _eval_rewrite_as_exp(self, z, **kwargs):
        return sp.log(1 + sp.exp(z))

    def _eval_rewrite_as_log(self, z, **kwargs):
        return sp.log(1 + sp.exp(z))

    def _eval_evalf(self, prec):
        if self.args[0].is_number:
            return sp.log(1 + sp.exp(self.args[0]))._eval_evalf(prec)
        return None

    def _eval_is_real(self):
        return self.args[0].is_real

    def _latex(self, printer):
        return r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])
