"""Matrix helpers SymPy lacks or gets wrong, as SymPy objects that print well.

``sum(A)``, ``dot(u, v)`` and ``logsumexp(v)`` are scalars; ``softmax(v)`` and the
elementwise maps (``relu(A)``, ``sigmoid(A)``, ``A.applyfunc(f)``) are matrices of
their argument's shape. symdiff translates each into array ops (:mod:`symdiff.core.from_matrix`)
and never asks SymPy to differentiate them: ``MatrixExpr.diff`` raises or returns 0
on such formulas (sympy issues 24229, 26946, 21062). ``(u.T*v)[0, 0]`` on a product
expands into one scalar term per element; ``dot(u, v)`` stays one operation.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from ..errors import FormulaError
from .functions import sigmoid


def is_matrix(e) -> bool:
    return bool(getattr(e, "is_Matrix", False))


def _matrix_arg(e, what):
    e = sp.sympify(e)
    if not is_matrix(e):
        raise FormulaError(f"{what} needs a matrix argument, got {e}")
    return e


def function_name(f) -> str | None:
    """The name of the scalar function a Lambda ``d -> f(d)`` applies, or None."""
    if isinstance(f, sp.Lambda) and len(f.variables) == 1:
        body, d = f.expr, f.variables[0]
        if isinstance(body, sp.Function) and body.args == (d,):
            return type(body).__name__
        if isinstance(body, sp.exp) and body.args == (d,):
            return "exp"
        if isinstance(body, sp.Heaviside) and body.args == (d, 0):
            return "step"
    if isinstance(f, sp.FunctionClass):
        return f.__name__
    return None


_LATEX_NAMES = {"tanh": r"\tanh", "exp": r"\exp", "log": r"\log", "sin": r"\sin",
                "cos": r"\cos", "sigmoid": r"\sigma", "sinh": r"\sinh", "cosh": r"\cosh"}


class Elementwise(ElementwiseApplyFunction):
    """``f`` applied to every element of a matrix: prints ``tanh.(W*x + b)`` (Julia's dot
    notation) instead of SymPy's ``Lambda(_d, tanh(_d)).(W*x + b)``."""

    def _sympystr(self, printer):
        return f"{self._fname(printer)}.({printer._print(self.expr)})"

    def _pretty(self, printer):
        from sympy.printing.pretty.stringpict import prettyForm
        inner = printer._print(self.expr)
        return prettyForm(*prettyForm(*inner.parens()).left(self._fname(printer) + "."))

    def _latex(self, printer):
        name = function_name(self.function)
        if name is None:
            head = r"\left(%s\right)" % printer._print(self.function)
        else:
            head = _LATEX_NAMES.get(name, r"\operatorname{%s}" % name)
        return r"%s_{\circ}\left(%s\right)" % (head, printer._print(self.expr))

    def _fname(self, printer):
        name = function_name(self.function)
        if name is not None:
            return name
        f = self.function
        d = sp.Symbol("d")
        return f"(d -> {sp.sstr(f.expr.xreplace({f.variables[0]: d}))})"


class Ones(sp.OneMatrix):
    """The all-ones matrix, printed ``ones(r, c)``: SymPy prints ``OneMatrix`` as ``1``, so
    the gradient of ``sd.sum(W*x)`` would read ``1*x.T``."""

    def _sympystr(self, printer):
        return f"ones({printer._print(self.shape[0])}, {printer._print(self.shape[1])})"

    def _latex(self, printer):
        return r"\mathbf{1}"

    def _eval_transpose(self):
        return Ones(self.cols, self.rows)


class ElementwiseOp(sp.MatrixExpr):
    """A scalar op of several same-shape matrices, elementwise (a display form, e.g. the
    subgradient of ``max.(A, B)``): prints ``max.(A, B)``."""

    def __new__(cls, name, *args):
        name = sp.Symbol(name) if isinstance(name, str) else name
        return super().__new__(cls, name, *[sp.sympify(a) for a in args])

    @property
    def shape(self):
        return next(a.shape for a in self.args[1:] if is_matrix(a))

    def _sympystr(self, printer):
        return f"{self.args[0].name}.({', '.join(printer._print(a) for a in self.args[1:])})"

    def _latex(self, printer):
        return r"\operatorname{%s}_{\circ}\left(%s\right)" % (
            self.args[0].name, ", ".join(printer._print(a) for a in self.args[1:]))


def elementwise(f, A) -> Elementwise:
    """``f`` (a SymPy function class, a Lambda, or a Python function of one symbol)
    applied to every element of the matrix ``A``."""
    A = _matrix_arg(A, "elementwise")
    if not isinstance(f, (sp.FunctionClass, sp.Lambda)):
        d = sp.Dummy("d", real=True)
        f = sp.Lambda(d, f(d))
    elif isinstance(f, sp.FunctionClass):
        d = sp.Dummy("d", real=True)
        f = sp.Lambda(d, f(d))
    return Elementwise(f, A)


class _MatrixScalar(sp.Function):
    """A scalar function of matrix arguments (no automatic evaluation, real valued)."""

    def _eval_is_real(self):
        return True

    def _eval_is_commutative(self):
        return True  # a scalar, though its arguments are matrices

    def _eval_derivative(self, s):
        raise FormulaError(f"symdiff differentiates {type(self).__name__} itself; "
                           f"use sd.grad or an Objective, not sympy.diff")


class sum(_MatrixScalar):  # noqa: A001 - the name users write: sd.sum(A)
    """The sum of all elements of a matrix."""

    nargs = 1

    @classmethod
    def eval(cls, A):
        A = _matrix_arg(A, "sum")
        if isinstance(A, sp.MatrixBase):  # explicit entries: the scalar formula
            return sp.Add(*A)
        return None

    def _latex(self, printer):
        return r"\operatorname{sum}\left(%s\right)" % printer._print(self.args[0])


class dot(_MatrixScalar):
    """``sum_ij u_ij v_ij``: the inner product of two vectors (or matrices) of one shape."""

    nargs = 2

    @classmethod
    def eval(cls, u, v):
        _matrix_arg(u, "dot")
        _matrix_arg(v, "dot")
        if u.shape != v.shape:
            raise FormulaError(f"dot: shapes {u.shape} and {v.shape} do not match")
        if isinstance(u, sp.MatrixBase) and isinstance(v, sp.MatrixBase):
            return sp.Add(*[a * b for a, b in zip(u, v)])
        return None

    def _latex(self, printer):
        return r"\left\langle %s, %s\right\rangle" % tuple(printer._print(a) for a in self.args)


class logsumexp(_MatrixScalar):
    """``log(sum(exp(v)))``, computed with the largest element shifted out (no overflow)."""

    nargs = 1

    @classmethod
    def eval(cls, v):
        v = _matrix_arg(v, "logsumexp")
        if isinstance(v, sp.MatrixBase):
            return sp.log(sp.Add(*[sp.exp(t) for t in v]))
        return None

    def _latex(self, printer):
        return r"\operatorname{logsumexp}\left(%s\right)" % printer._print(self.args[0])


class softmax(sp.MatrixExpr):
    """``exp(v - logsumexp(v))``: a probability vector of ``v``'s shape."""

    def __new__(cls, v):
        v = _matrix_arg(v, "softmax")
        return super().__new__(cls, v)

    @property
    def shape(self):
        return self.args[0].shape

    def doit(self, **hints):
        v = self.args[0].doit(**hints) if hints.get("deep", True) else self.args[0]
        if isinstance(v, sp.MatrixBase):
            total = sp.Add(*[sp.exp(t) for t in v])
            return v.applyfunc(lambda t: sp.exp(t) / total)
        return softmax(v)

    def _entry(self, i, j, **kwargs):
        raise FormulaError("softmax is a whole-vector function: its elements are not taken "
                           "one by one (use the vector, or sd.logsumexp)")

    def _sympystr(self, printer):
        return f"softmax({printer._print(self.args[0])})"

    def _latex(self, printer):
        return r"\operatorname{softmax}\left(%s\right)" % printer._print(self.args[0])

    def _pretty(self, printer):
        from sympy.printing.pretty.stringpict import prettyForm
        return prettyForm(*prettyForm(*printer._print(self.args[0]).parens()).left("softmax"))


class relu_scalar(sp.Function):
    """``max(0, z)`` as one named function (its derivative at 0 is taken as 0)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0], 0)

    def _eval_rewrite_as_Max(self, z, **kwargs):
        return sp.Max(0, z)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _sympystr(self, printer):
        return f"relu({printer._print(self.args[0])})"

    def _latex(self, printer):
        return r"\operatorname{relu}\left(%s\right)" % printer._print(self.args[0])


relu_scalar.__name__ = "relu"


def relu(A):
    """``max(0, A)`` elementwise for a matrix, ``max(0, z)`` for a scalar."""
    A = sp.sympify(A)
    if is_matrix(A):
        return elementwise(relu_scalar, A)
    return relu_scalar(A)


def sigmoid_matrix(A):
    return elementwise(sigmoid, A)
