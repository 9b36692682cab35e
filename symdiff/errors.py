"""Exceptions raised by symdiff.

Every error a user can provoke with bad input is a :class:`SymdiffError`, so one
``except sd.SymdiffError`` catches them all; each also derives from the builtin
exception a Python user would expect (``ValueError``, ``TypeError``, ...), so code
written against NumPy conventions keeps working.
"""


class SymdiffError(Exception):
    """Base class of every error symdiff raises on purpose."""


class SymdiffWarning(UserWarning):
    """Base class of symdiff's warnings (e.g. a corrupted compile-cache entry was rebuilt)."""


class FormulaError(SymdiffError, ValueError):
    """A formula (string or SymPy expression) is malformed or refers to unknown symbols."""


class UnsupportedError(SymdiffError, NotImplementedError):
    """A formula uses a function or construct that symdiff cannot differentiate or compile."""


class DataError(SymdiffError, ValueError):
    """Data passed to a kernel is malformed: missing column, wrong length, NaN, empty batch."""


class DataTypeError(SymdiffError, TypeError):
    """Data or parameters of a dtype a kernel cannot take (complex, object, strings, ...)."""


class DivergenceError(SymdiffError, FloatingPointError):
    """Training produced a non-finite loss or gradient.

    ``params`` holds the last finite parameters, ``epoch`` and ``step`` where it happened.
    """

    def __init__(self, message, *, epoch=None, step=None, params=None, history=None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.params = params
        self.history = history
