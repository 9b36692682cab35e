"""Defining models as formulas: what a user writes before anything is differentiated.

``objective`` holds :class:`Objective` and :class:`Model` (scalar formulas, and through
``array_objective`` MatrixSymbol formulas), ``residuals`` the least-squares residual
form; ``functions`` and ``matrix_functions`` the formula helpers SymPy lacks
(``sd.sigmoid``, ``sd.softmax``, ``sd.dot``, ...); ``nets`` builds networks,
``regularization`` penalties, and ``parse`` turns formula text into SymPy without
``eval``. Each object hands its formulas to :mod:`symdiff.core` and its IR to
:mod:`codegen`.
"""
