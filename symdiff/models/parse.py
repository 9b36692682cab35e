"""Formula strings to SymPy expressions, without ever executing them.

``sympy.sympify`` and ``parse_expr`` hand the string to Python's ``eval``: a command
line or web front end that passes user text to them runs the user's code. This
parser reads the text with :func:`ast.parse` (``mode="eval"``, which only builds a
syntax tree), checks every node of the tree against a whitelist, and only then
builds SymPy objects directly from the nodes. Nothing in the text is looked up in
Python's namespaces or called.

The grammar is Python's expression syntax restricted to:

* numbers: integers become ``sp.Integer``, decimals and exponent notation
  (``0.5``, ``1e-3``) become ``sp.Float`` in double precision, the precision the
  kernels compute in. Write ``1/2`` for the exact rational. Roots of exact numbers
  above ``MAX_EXACT_RADICAND`` (``sqrt(2**1000 + 1)``) become floats: kept exact,
  SymPy would factor their products;
* names, which become real symbols (``sp.Symbol(name, real=True)``) unless
  ``symbols`` maps them to a symbol of the caller's; ``pi``, ``e`` and ``E`` are
  the constants. Names starting with ``_`` are refused;
* ``+ - * /``, unary ``-`` and ``+``, ``**`` and ``^`` (both power, with the
  usual precedence: ``x^2 + 1`` is ``x**2 + 1``);
* calls of the functions in :data:`FUNCTIONS`, with positional arguments.

Everything else (attributes, subscripts, strings, lambdas, comprehensions,
comparisons, keyword arguments, ...) raises :class:`~symdiff.errors.FormulaError`
naming the offending part and its column. Work is bounded before anything is
built: the text length, its number of operators and brackets (which bounds the
depth of the tree :func:`ast.parse` constructs), the nesting depth, and the size
of constants: every constant subexpression is first evaluated in double precision,
and one that overflows (``exp(1000)``, ``9**9**9**9``), is undefined (``log(0)``)
or is not real (``sqrt(-1)``) is refused before SymPy builds it; exact constants
are limited to ``MAX_CONSTANT_BITS``, a little above the range of a double, judged
from sizes (``2**(-10**300)`` is never computed).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable, Mapping

import sympy as sp

from symdiff.errors import FormulaError
from symdiff.models.functions import sigmoid, softplus

__all__ = ["FUNCTIONS", "CONSTANTS", "parse_formula", "parse_model", "names_in_order"]

MAX_LENGTH = 20_000
MAX_OPERATORS = 1_500
MAX_NESTING = 100
MAX_CONSTANT_BITS = 1_100
MAX_EXACT_RADICAND = 1_000

Symbols = Mapping[str, sp.Basic] | Iterable[sp.Symbol] | None

_OPERATOR_CHARACTERS = frozenset("+-*/^%(),[]{}<>=&|~@:")


# name in a formula -> (SymPy callable, allowed argument counts; None: one or more)
FUNCTIONS = {
    "exp": (sp.exp, (1,)),
    "log": (sp.log, (1, 2)),
    "sqrt": (sp.sqrt, (1,)),
    "sin": (sp.sin, (1,)),
    "cos": (sp.cos, (1,)),
    "tan": (sp.tan, (1,)),
    "sinh": (sp.sinh, (1,)),
    "cosh": (sp.cosh, (1,)),
    "tanh": (sp.tanh, (1,)),
    "asin": (sp.asin, (1,)),
    "acos": (sp.acos, (1,)),
    "atan": (sp.atan, (1,)),
    "atan2": (sp.atan2, (2,)),
    "erf": (sp.erf, (1,)),
    "abs": (sp.Abs, (1,)),
    "Abs": (sp.Abs, (1,)),
    "sign": (sp.sign, (1,)),
    "max": (sp.Max, None),
    "Max": (sp.Max, None),
    "min": (sp.Min, None),
    "Min": (sp.Min, None),
    "heaviside": (sp.Heaviside, (1, 2)),
    "Heaviside": (sp.Heaviside, (1, 2)),
    "sigmoid": (sigmoid, (1,)),
    "softplus": (softplus, (1,)),
}

CONSTANTS = {"pi": sp.pi, "e": sp.E, "E": sp.E}

_REFUSED_NODES = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Slice: "slicing",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.Compare: "a comparison",
    ast.BoolOp: "a boolean operator",
    ast.IfExp: "a conditional expression",
    ast.NamedExpr: "an assignment",
    ast.Tuple: "a tuple",
    ast.List: "a list",
    ast.Set: "a set",
    ast.Dict: "a dict",
    ast.Starred: "a starred argument",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

_BINARY_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_UNARY_OPERATORS = (ast.USub, ast.UAdd)
_OPERATOR_SPELLING = {
    ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&",
    ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
    ast.Invert: "~", ast.Not: "not",
}


class _Source:
    """The user's text and the text given to :func:`ast.parse`, with column mapping.

    ``^`` is rewritten to ``**`` before parsing (Python's ``^`` binds looser than
    ``+``) and leading spaces are dropped (``ast.parse`` refuses an indent), which
    shifts columns; errors report columns of the user's text, and of ``whole`` when
    the text is one side of a model.
    """

    def __init__(self, text: str, column_offset: int = 0, whole: str | None = None):
        self.text = text
        self.whole = text if whole is None else whole
        self.column_offset = column_offset
        rewritten = text.replace("^", "**")
        self.leading = len(rewritten) - len(rewritten.lstrip())
        self.parsed = rewritten[self.leading:].rstrip()
        self._user_index = []
        for index, character in enumerate(text):
            self._user_index.extend([index, index] if character == "^" else [index])
        self._user_index.append(len(text))

    def user_column(self, parsed_column: int) -> int:
        """0-based column in the user's text of a 0-based character column of ``parsed``."""
        position = min(max(parsed_column + self.leading, 0), len(self._user_index) - 1)
        return self._user_index[position]

    def char_column(self, byte_column: int) -> int:
        return len(self.parsed.encode("utf-8")[:byte_column].decode("utf-8", errors="ignore"))

    def error(self, reason: str, start: int, end: int | None = None, *, parsed: bool = True) -> FormulaError:
        """A FormulaError naming ``reason``, the snippet and its 1-based column in ``whole``.

        ``start``/``end`` are columns of ``parsed``, or of ``text`` if not ``parsed``.
        """
        if parsed:
            first = self.user_column(start)
            last = self.user_column(end) if end is not None else first + 1
        else:
            first, last = start, (end if end is not None else start + 1)
        last = max(last, first + 1)
        snippet = self.text[first:last] or self.text[max(first - 1, 0):first + 1]
        column = first + self.column_offset + 1
        error = FormulaError(
            f"{reason}: {_shorten(snippet, 40)!r} at column {column} of {_shorten(self.whole)!r}"
        )
        error.formula, error.column, error.snippet, error.reason = self.whole, column, snippet, reason
        return error

    def node_error(self, reason: str, node: ast.AST) -> FormulaError:
        start = self.char_column(getattr(node, "col_offset", 0))
        end_offset = getattr(node, "end_col_offset", None)
        end = self.char_column(end_offset) if end_offset is not None else None
        return self.error(reason, start, end)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_formula(text: str, *, symbols: Symbols = None) -> sp.Expr:
    """Parse ``text`` into a SymPy expression, never executing any part of it.

    ``symbols``: a mapping of names to SymPy objects, or an iterable of symbols
    (mapped by their names), used in place of fresh real symbols (and in place of
    the constants ``pi``/``e``/``E`` if a name says so). Raises
    :class:`~symdiff.errors.FormulaError` for anything outside the grammar in the
    module docstring; the error's ``column`` (1-based) and ``snippet`` point at
    the offending part.
    """
    return _parse(_Source(_checked_text(text)), _symbol_table(symbols))


def parse_model(text: str, *, symbols: Symbols = None) -> tuple[sp.Expr, sp.Expr]:
    """Parse ``"response ~ model"`` (e.g. ``"y ~ a*exp(-b*x) + c"``) into ``(lhs, rhs)``.

    Both sides follow :func:`parse_formula`'s grammar; errors give columns in the
    whole text.
    """
    text = _checked_text(text)
    parts = text.split("~")
    if len(parts) < 2:
        raise _Source(text).error("a model is written 'response ~ formula'", 0, len(text), parsed=False)
    if len(parts) > 2:
        second = text.index("~", text.index("~") + 1)
        raise _Source(text).error("a model has exactly one '~'", second, parsed=False)
    table = _symbol_table(symbols)
    split = len(parts[0]) + 1
    lhs = _parse(_Source(parts[0], 0, text), table)
    rhs = _parse(_Source(parts[1], split, text), table)
    return lhs, rhs


def names_in_order(text: str) -> list[str]:
    """Names used in ``text`` (symbols, not functions or constants), in order of first appearance.

    Call it on text :func:`parse_formula` or :func:`parse_model` accepted; it
    orders a formula's free symbols the way its author wrote them.
    """
    text = _checked_text(text)
    names: list[str] = []
    for part in text.split("~"):
        tree = ast.parse(part.replace("^", "**").strip() or "0", mode="eval")
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        found = [
            (node.col_offset, node.id)
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and id(node) not in called and node.id not in CONSTANTS
        ]
        for _, name in sorted(found):
            if name not in names:
                names.append(name)
    return names


def _checked_text(text) -> str:
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula is too long: {len(text)} characters (limit {MAX_LENGTH})")
    if "\x00" in text:
        raise FormulaError(f"formula contains a NUL character at column {text.index(chr(0)) + 1}")
    # Line breaks become spaces so columns stay valid and a formula may span lines.
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


def _symbol_table(symbols) -> dict[str, sp.Basic]:
    if symbols is None:
        return {}
    if isinstance(symbols, Mapping):
        return {str(name): _as_sympy(value, name) for name, value in symbols.items()}
    return {symbol.name: _as_sympy(symbol, symbol.name) for symbol in symbols}


def _as_sympy(value, name) -> sp.Basic:
    """A SymPy object for ``symbols[name]``: SymPy objects as they are, Python numbers converted."""
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormulaError(f"symbols[{name!r}] must be a SymPy object or a number, not {type(value).__name__}")
    return sp.Integer(value) if isinstance(value, int) else sp.Float(value)


def _parse(source: _Source, symbols: dict[str, sp.Basic]) -> sp.Expr:
    if not source.parsed:
        raise source.error("empty formula", 0, len(source.text), parsed=False)
    operators = sum(1 for c in source.parsed if c in _OPERATOR_CHARACTERS)
    if operators > MAX_OPERATORS:
        raise FormulaError(
            f"formula has too many operators and brackets: {operators} (limit {MAX_OPERATORS}); "
            "build formulas this large with SymPy directly"
        )
    try:
        tree = ast.parse(source.parsed, mode="eval")
    except SyntaxError as error:
        if source.parsed[-1] in "+-*/^(,":
            raise source.error("formula ends with an operator", len(source.parsed) - 1) from None
        column = max((error.offset or 1) - 1, 0) if error.lineno in (None, 1) else len(source.parsed)
        if _juxtaposed(source.parsed, column):
            raise source.error("missing operator (write '*' to multiply)", column) from None
        raise source.error(f"syntax error ({error.msg})", column) from None
    except (ValueError, MemoryError, RecursionError) as error:
        raise source.error(
            f"formula cannot be read ({type(error).__name__})", 0, len(source.text), parsed=False
        ) from None
    _check_tree(tree.body, source)
    return _Builder(source, symbols).build(tree.body)


def _juxtaposed(text: str, column: int) -> bool:
    """Whether ``column`` starts an operand right after another (``2 x``, ``2x``, ``a (b)``)."""
    before = text[:column].rstrip()
    here = text[column:column + 1]
    after_operand = bool(before) and (before[-1].isalnum() or before[-1] in "._)")
    starts_operand = here.isalnum() or here in "_("
    glued_number = bool(re.match(r"\d+(\.\d*)?[A-Za-z_]", text[column:]))
    return (after_operand and starts_operand) or glued_number


def _check_tree(root: ast.AST, source) -> None:
    """Refuse any node outside the grammar, and nesting deeper than MAX_NESTING, before building."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise source.node_error(f"formula is nested too deeply (limit {MAX_NESTING} levels)", node)
        reason = _refusal(node)
        if reason:
            culprit = node.func if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name) else node
            raise source.node_error(reason, culprit)
        for child in _children(node):
            continues_chain = (
                isinstance(node, ast.BinOp)
                and child is node.left
                and isinstance(child, ast.BinOp)
                and _chain_kind(child.op) == _chain_kind(node.op) is not None
            )
            stack.append((child, depth if continues_chain else depth + 1))


def _children(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.Call):
        return list(node.args)
    return []


def _refusal(node: ast.AST) -> str | None:
    for kind, what in _REFUSED_NODES.items():
        if isinstance(node, kind):
            return f"{what} is not allowed in a formula"
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINARY_OPERATORS):
            return f"operator {_OPERATOR_SPELLING.get(type(node.op), type(node.op).__name__)!r} is not supported"
        return None
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _UNARY_OPERATORS):
            spelling = _OPERATOR_SPELLING.get(type(node.op), type(node.op).__name__)
            hint = " (write 'response ~ formula' models with parse_model)" if spelling == "~" else ""
            return f"operator {spelling!r} is not supported{hint}"
        return None
    if isinstance(node, ast.Name):
        if node.id.startswith("_"):
            return "names starting with '_' are not allowed"
        return None
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{type(value).__name__} literals are not allowed in a formula"
        if isinstance(value, float) and not math.isfinite(value):
            return "number is too large for double precision"
        if isinstance(value, int) and value.bit_length() > MAX_CONSTANT_BITS:
            return f"integer literal is too large (more than {MAX_CONSTANT_BITS} bits)"
        return None
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                return "attribute access is not allowed in a formula"
            return "only named functions can be called"
        name = node.func.id
        if name.startswith("_"):
            return "names starting with '_' are not allowed"
        if name not in FUNCTIONS:
            return f"unknown function {name!r} (known: {', '.join(sorted(set(FUNCTIONS)))})"
        if node.keywords:
            return "keyword arguments are not allowed in a formula"
        arities = FUNCTIONS[name][1]
        if arities is not None and len(node.args) not in arities:
            wanted = " or ".join(str(n) for n in arities)
            return f"{name}() takes {wanted} argument{'s' if arities != (1,) else ''}, got {len(node.args)}"
        if arities is None and not node.args:
            return f"{name}() needs at least one argument"
        return None
    return f"{type(node).__name__} is not allowed in a formula"


def _chain_kind(op: ast.operator) -> str | None:
    if isinstance(op, (ast.Add, ast.Sub)):
        return "sum"
    if isinstance(op, (ast.Mult, ast.Div)):
        return "product"
    return None


class _Builder:
    """Builds SymPy objects from a tree that :func:`_check_tree` accepted.

    Each constant subexpression (one without symbols) is also evaluated in double
    precision, from its parts' doubles, *before* SymPy builds it; a constant that
    overflows, is undefined or is not real is refused there. So every number SymPy
    ever sees lies within double range: evaluating it later (``evalf``, assumption
    queries like ``is_zero``) stays cheap, instead of, e.g., reducing ``exp(2**1000)``
    modulo pi for ``sin`` with 2**1000 bits of pi.
    """

    def __init__(self, source, symbols: dict[str, sp.Basic]):
        self.source = source
        self.symbols = symbols

    def build(self, node: ast.AST) -> sp.Expr:
        return self._build(node)[0]

    def _build(self, node: ast.AST) -> tuple[sp.Expr, float | None]:
        """The SymPy expression of ``node`` and, for a constant, its double value (else None)."""
        if isinstance(node, ast.Constant):
            value = node.value
            return (sp.Integer(value) if isinstance(value, int) else sp.Float(value)), self._double(
                lambda: float(value), node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            operand, double = self._build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return operand, double
            return -operand, (None if double is None else -double)
        if isinstance(node, ast.BinOp):
            kind = _chain_kind(node.op)
            if kind is not None:
                return self._chain(node, kind)
            return self._power(node)
        return self._call(node)

    def _double(self, compute, node: ast.AST) -> float:
        """``compute()`` as a finite real double, or a FormulaError naming ``node``."""
        try:
            value = compute()
        except OverflowError:
            value = math.inf
        except ZeroDivisionError:
            raise self.source.node_error("division by zero", node) from None
        except ValueError:
            raise self.source.node_error("constant is undefined (outside the function's domain)", node) from None
        if isinstance(value, complex):
            raise self.source.node_error("constant is not a real number", node)
        if not math.isfinite(value):
            raise self.source.node_error("constant overflows double precision", node)
        return value

    def _name(self, node: ast.Name) -> tuple[sp.Expr, float | None]:
        name = node.id
        if name in self.symbols:
            value = self.symbols[name]
        elif name in CONSTANTS:
            value = CONSTANTS[name]
        elif name in FUNCTIONS:
            raise self.source.node_error(f"{name} is a function; call it as {name}(...)", node)
        else:
            return sp.Symbol(name, real=True), None
        if value.free_symbols:
            return value, None
        return value, self._double(lambda: float(value), node)

    def _chain(self, node: ast.BinOp, kind: str) -> tuple[sp.Expr, float | None]:
        """A left-nested chain like ``a - b + c`` (or ``a*b/c``) as one Add (Mul), built without
        recursion on its length."""
        operations = []
        while isinstance(node, ast.BinOp) and _chain_kind(node.op) == kind:
            operations.append((node.op, node.right))
            node = node.left
        first, double = self._build(node)
        items = [first]
        for op, right in reversed(operations):
            value, right_double = self._build(right)
            if isinstance(op, ast.Sub):
                value, right_double = -value, (None if right_double is None else -right_double)
            elif isinstance(op, ast.Div):
                if value is sp.S.Zero or right_double == 0.0:
                    raise self.source.node_error("division by zero", right)
                value, right_double = sp.Pow(value, -1), (None if right_double is None else 1.0 / right_double)
            items.append(value)
            if double is not None and right_double is not None:
                left_double = double
                combine = (lambda: left_double + right_double) if kind == "sum" else (lambda: left_double * right_double)
                double = self._double(combine, node)
            else:
                double = None
        return self._checked(sp.Add(*items) if kind == "sum" else sp.Mul(*items), node), double

    def _power(self, node: ast.BinOp) -> tuple[sp.Expr, float | None]:
        (base, base_double), (exponent, exponent_double) = self._build(node.left), self._build(node.right)
        if base_double is not None and exponent_double is not None:
            double = self._double(lambda: base_double ** exponent_double, node)
        else:
            double = None
        if exponent.is_Number and not _power_is_small(base, exponent):
            raise self.source.node_error(f"constant power is too large (more than {MAX_CONSTANT_BITS} bits)", node)
        if base is sp.S.Zero and exponent.is_Number and exponent < 0:
            raise self.source.node_error("division by zero", node)
        if base.is_Rational and exponent.is_Rational and not exponent.is_Integer and _beyond_exact_roots(base):
            base = sp.Float(base)
        return self._checked(sp.Pow(base, exponent), node), double

    def _call(self, node: ast.Call) -> tuple[sp.Expr, float | None]:
        name = node.func.id
        function, _ = FUNCTIONS[name]
        built = [self._build(argument) for argument in node.args]
        arguments = [expression for expression, _ in built]
        doubles = [double for _, double in built]
        double = None
        if all(d is not None for d in doubles):
            double = self._double(lambda: DOUBLE_FUNCTIONS[name](*doubles), node)
        if function is sp.sqrt and arguments[0].is_Rational and _beyond_exact_roots(arguments[0]):
            arguments[0] = sp.Float(arguments[0])
        return self._checked(function(*arguments), node), double

    def _checked(self, value: sp.Expr, node: ast.AST) -> sp.Expr:
        if value is sp.zoo or value is sp.nan or value is sp.oo or value is sp.S.NegativeInfinity:
            raise self.source.node_error("formula evaluates to an infinite or undefined value", node)
        numbers = [value] if value.is_Rational else [a for a in value.args if a.is_Rational]
        if any(_rational_bits(number) > MAX_CONSTANT_BITS for number in numbers):
            raise self.source.node_error(f"constant is too large (more than {MAX_CONSTANT_BITS} bits)", node)
        return value


def _sigmoid_double(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _softplus_double(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _heaviside_double(z: float, at_zero: float = 0.5) -> float:
    return 1.0 if z > 0 else 0.0 if z < 0 else at_zero


# name in a formula -> the same function on doubles, for constant subexpressions
DOUBLE_FUNCTIONS = {
    "exp": math.exp, "log": lambda z, base=None: math.log(z) if base is None else math.log(z) / math.log(base),
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh,
    "asin": math.asin, "acos": math.acos, "atan": math.atan, "atan2": math.atan2, "erf": math.erf,
    "abs": abs, "Abs": abs, "sign": lambda z: float((z > 0) - (z < 0)),
    "max": max, "Max": max, "min": min, "Min": min,
    "heaviside": _heaviside_double, "Heaviside": _heaviside_double,
    "sigmoid": _sigmoid_double, "softplus": _softplus_double,
}


def _beyond_exact_roots(base: sp.Rational) -> bool:
    """Whether a root of ``base`` should be a float: SymPy factors radicands, and products of
    roots of large numbers make it factor huge integers (minutes for a dozen 1000-bit ones)."""
    return abs(base.p) > MAX_EXACT_RADICAND or base.q > MAX_EXACT_RADICAND


def _rational_bits(number: sp.Rational) -> int:
    return max(abs(number.p).bit_length(), number.q.bit_length())


def _power_is_small(base: sp.Expr, exponent: sp.Number) -> bool:
    """Whether SymPy can evaluate ``base**exponent`` without building a number over MAX_CONSTANT_BITS.

    Decided from sizes, never by computing the power. Bases SymPy keeps symbolic under a
    power (symbols, ``pi``, ``exp(...)``, ...) are always small enough.
    """
    bits = _exact_magnitude_bits(base)
    if bits is None or bits == 0:
        return True
    size = abs(float(exponent)) * bits
    return math.isfinite(size) and size <= MAX_CONSTANT_BITS


def _exact_magnitude_bits(value: sp.Expr) -> float | None:
    """A bound on |log2 |value|| for numbers SymPy evaluates exactly under a power
    (rationals, floats, and their products and rational powers); None for anything else."""
    if value in (sp.Integer(0), sp.Integer(1), sp.Integer(-1)):
        return 0.0
    if value.is_Rational:
        return max(math.log2(abs(value.p)), math.log2(value.q))
    if value.is_Float:
        magnitude = abs(float(value))
        if magnitude == 0.0:
            return 0.0
        return abs(math.log2(magnitude)) if math.isfinite(magnitude) else math.inf
    if value.is_Pow and value.exp.is_Rational:
        inner = _exact_magnitude_bits(value.base)
        return None if inner is None else inner * abs(float(value.exp))
    if value.is_Mul:
        parts = [_exact_magnitude_bits(factor) for factor in value.args]
        return None if any(part is None for part in parts) else sum(parts)
    return None
