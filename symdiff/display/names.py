"""How symbol names print in LaTeX: ``coat_price`` is one word, not "coat" with subscript "price".

SymPy reads an underscore as a subscript, which suits ``w_1``, ``x_max`` or
``theta_0`` but turns the snake_case names of real models (``coat_price``,
``learning_rate``) into misleading notation. A name whose part before the first
underscore is a word (two or more characters, not a Greek letter's name) prints as
that word, upright underscores included; every other name keeps SymPy's notation.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import greek_letters_set

__all__ = ["is_word_name", "latex_symbol_names", "latex"]


def is_word_name(name: str) -> bool:
    """True for snake_case words such as ``coat_price``; False for ``w_1``, ``x_max``, ``theta_0``."""
    head = name.split("_", 1)[0]
    return "_" in name and len(head) > 1 and head.lower() not in greek_letters_set


def latex_symbol_names(symbols) -> dict:
    """``symbol_names`` for :func:`sympy.latex`: the word names among ``symbols``, spelled out."""
    return {s: r"\mathit{%s}" % s.name.replace("_", r"\_") for s in symbols
            if isinstance(s, sp.Symbol) and is_word_name(s.name)}


def latex(expr, extra_symbols=()) -> str:
    """:func:`sympy.latex` of ``expr`` with word names kept whole (also for ``extra_symbols``)."""
    symbols = set(getattr(expr, "free_symbols", ())) | set(extra_symbols)
    return sp.latex(expr, symbol_names=latex_symbol_names(symbols))
