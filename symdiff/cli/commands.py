"""The ``symdiff`` command line: a gradient or a fit from a formula, without writing a script.

Subcommands: ``demo`` (the tutorial's linear regression), ``grad`` (the symbolic
gradient, the kernel's program, its LLVM IR or assembly), ``fit`` (a model
``response ~ formula`` fitted to the columns of a CSV file) and ``cache`` (the
on-disk kernel cache). Formula strings go through :mod:`symdiff.models.parse`, never
``eval``.

Exit status: 0 on success; 2 for bad input (usage, formula, data file), with one
line ``symdiff: error: ...`` on standard error and no traceback; 3 when a
least-squares fit stopped without converging (with a warning line); 1 when a fit
fails at run time (the loss diverged) or on an internal error (its traceback is
printed when the environment variable ``SYMDIFF_DEBUG`` is set).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

from symdiff.cli.checks import check_output_paths, divergence_advice, unused_column_warnings
from symdiff.errors import DivergenceError, SymdiffError
from symdiff.display.bounded import objective_readable, objective_sizes
from symdiff.losses import LOSSES
from symdiff.models.objective import Model, Objective, grad
from symdiff.optim import make_optimizer
from symdiff.models.parse import names_in_order, parse_formula, parse_model
from symdiff.training.driver import fit

__all__ = ["main", "build_parser", "read_columns"]

USAGE_ERROR = 2
RUNTIME_ERROR = 1

GRAD_FORMATS = ("pretty", "text", "latex", "program", "llvm", "asm")
LOSS_NAMES = ("mse", "mae", "huber", "logistic")
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SECOND_ORDER_METHODS = ("lbfgs", "newton")
METHOD_NAMES = ("lm",) + SECOND_ORDER_METHODS + OPTIMIZER_NAMES


class CommandError(Exception):
    """Bad input found by a subcommand: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become one line and exit status 2 in :func:`main`."""

    def error(self, message):
        raise CommandError(message)


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.run(args) or 0
    except SystemExit as exit_request:  # --help, --version
        return exit_request.code if isinstance(exit_request.code, int) else 0
    except DivergenceError as error:
        _report(_divergence_message(error, args))
        return RUNTIME_ERROR
    except BrokenPipeError:  # the reader went away (``symdiff fit ... | head``): nothing to say
        sys.stdout = open(os.devnull, "w")  # so that the interpreter's final flush stays quiet
        return 141
    except (CommandError, SymdiffError, ValueError, TypeError, OSError) as error:
        _report(str(error))
        return USAGE_ERROR
    except KeyboardInterrupt:
        _report("interrupted")
        return 130
    except Exception as error:  # a bug of ours: one line, the traceback on request
        if os.environ.get("SYMDIFF_DEBUG"):
            raise
        _report(f"internal error ({type(error).__name__}: {error}); "
                "set SYMDIFF_DEBUG=1 to see the traceback, and please report it")
        return RUNTIME_ERROR


def _report(message: str) -> None:
    print(f"symdiff: error: {' '.join(message.split())}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"symdiff: warning: {' '.join(message.split())}", file=sys.stderr)


def _divergence_message(error, args) -> str:
    """A diverged ``fit`` gets command-line advice; other commands keep their message."""
    if getattr(args, "command", None) != "fit":
        return str(error)
    return divergence_advice(error, getattr(args, "lr", None),
                             suggest_lm=getattr(args, "method", None) != "lm")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all subcommands (each ``--help`` ends with examples)."""
    parser = _Parser(
        prog="symdiff",
        description="Symbolic reverse-mode gradients of formulas, compiled to native training kernels.",
        epilog="examples:\n  symdiff demo\n  symdiff grad \"a*exp(-b*x) + c\" --wrt a,b,c\n"
        "  symdiff fit \"y ~ a*exp(-b*x) + c\" --data measurements.csv\n\n"
        "Run 'symdiff COMMAND --help' for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo",
        help="fit the tutorial's linear regression y = 3x + 2 + noise by gradient descent",
        description="The tutorial's linear regression: 100 noisy samples of y = 3x + 2, the model "
        "w*x + b, its MSE loss and symbolic gradient, and plain gradient descent that calls the "
        "compiled kernel at every step.",
        epilog="example:\n  symdiff demo\n  symdiff demo --steps 500 --lr 0.05 --seed 7",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--steps", type=_positive_int, default=100, help="gradient-descent steps (default 100)")
    demo.add_argument("--lr", type=_positive_float, default=0.1, help="learning rate (default 0.1)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the generated data (default 1)")
    demo.set_defaults(run=run_demo)

    grad = commands.add_parser(
        "grad",
        help="print the symbolic gradient of a formula (or the program, LLVM IR, assembly)",
        description="Differentiate FORMULA with respect to the symbols of --wrt (default: all of "
        "them) in reverse mode. The other symbols are data: 'program', 'llvm' and 'asm' show the "
        "kernel that averages the formula and its gradient over a batch of them; 'text' prints one "
        "line per entry in the syntax symdiff reads.",
        epilog="examples:\n  symdiff grad \"a*exp(-b*x) + c\" --wrt a,b,c\n"
        "  symdiff grad \"softplus(-y*(w*x + b))\" --wrt w,b --format latex\n"
        "  symdiff grad \"(w*x + b - y)^2\" --wrt w,b --format program",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grad.add_argument("formula", help="the formula, e.g. \"a*exp(-b*x) + c\"")
    grad.add_argument("--wrt", type=_name_list, help="comma-separated symbols to differentiate by")
    grad.add_argument("--format", choices=GRAD_FORMATS, default="pretty", help="output form (default pretty)")
    grad.set_defaults(run=run_grad)

    fit = commands.add_parser(
        "fit",
        help="fit a model 'response ~ formula' to the columns of a CSV file",
        description="Fit MODEL ('response ~ formula') to a CSV file with a header row. Symbols named "
        "like a column are data; the other symbols are parameters (or give --params). The squared-error "
        "loss is minimized by Levenberg-Marquardt (--method lm): the report gives each parameter "
        "with its standard error, RSS, reduced chi-square, R^2, AIC and correlations, and a fit that "
        "did not converge exits with status 3. Other losses and --method/--optimizer NAME train by "
        "a first-order optimizer and report the final loss, R^2 (accuracy for --loss logistic), "
        "epochs and time.",
        epilog="examples:\n  symdiff fit \"y ~ a*exp(-b*x) + c\" --data measurements.csv\n"
        "  symdiff fit \"v ~ Vmax*S/(Km + S)\" --data rates.csv --sigma dv --json fit.json\n"
        "  symdiff fit \"y ~ a*exp(-b*x) + c\" --data m.csv --init a=1,b=0.1 --optimizer adam "
        "--lr 0.05 --epochs 800 --plot fit.png --json fit.json\n"
        "  symdiff fit \"label ~ w1*x1 + w2*x2 + b\" --data points.csv --loss logistic --batch-size 64",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("model", help="the model, e.g. \"y ~ a*exp(-b*x) + c\"")
    fit.add_argument("--data", required=True, type=Path, help="CSV file with a header row")
    fit.add_argument("--params", type=_name_list, help="comma-separated parameters (default: non-column symbols)")
    fit.add_argument("--init", type=_assignments, default={}, action=_MergeAssignments,
                     help="starting values, e.g. a=1,b=0.1 (may be repeated; the others start "
                     "where the output's 'start' line says)")
    fit.add_argument("--loss", choices=LOSS_NAMES, default="mse", help="per-sample loss (default mse)")
    fit.add_argument("--method", choices=METHOD_NAMES, default=None,
                     help="lm (Levenberg-Marquardt least squares, the default for --loss mse), lbfgs "
                     "or newton (full-batch, to convergence, any loss), or a first-order optimizer "
                     "(the default for other losses: adam)")
    fit.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default=None,
                     help="first-order optimizer (same as --method NAME)")
    fit.add_argument("--sigma", metavar="COLUMN", help="column of per-row standard deviations "
                     "(weights 1/sigma^2; --method lm)")
    fit.add_argument("--lr", type=_positive_float, default=0.01, help="learning rate (default 0.01)")
    fit.add_argument("--epochs", type=_positive_int, default=500, help="passes over the data (default 500)")
    fit.add_argument("--batch-size", type=_positive_int, default=None, help="mini-batch size (default: all rows)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the shuffling (default 0)")
    fit.add_argument("--plot", type=Path, help="save a PNG of data, fitted curve and loss history")
    fit.add_argument("--json", type=Path, help="save the result as JSON")
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    fit.add_argument("--strict", action="store_true",
                     help="a data column the model does not use is an error, not a warning")
    fit.set_defaults(run=run_fit)

    cache = commands.add_parser(
        "cache",
        help="show or clear the on-disk cache of compiled kernels",
        description="The on-disk cache of compiled kernels (set SYMDIFF_CACHE_DIR to move it, "
        "SYMDIFF_CACHE=0 to turn it off).",
        epilog="examples:\n  symdiff cache info\n  symdiff cache clear",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cache.add_argument("action", choices=("info", "clear"))
    cache.set_defaults(run=run_cache)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("symdiff-llvm")
    except Exception:
        return "(not installed)"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _name_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    for name in names:
        if not name.isidentifier() or name.startswith("_"):
            raise argparse.ArgumentTypeError(f"{name!r} is not a symbol name")
    return names


class _MergeAssignments(argparse.Action):
    """``--init a=1 --init b=2`` means ``--init a=1,b=2``: repeated options add up."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), **values})


def _assignments(text: str) -> dict[str, float]:
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, number = item.partition("=")
        name = name.strip()
        if not equals or not name.isidentifier():
            raise argparse.ArgumentTypeError(f"expected name=value, got {item!r}")
        try:
            values[name] = float(number)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {number.strip()!r} is not a number") from None
        if not math.isfinite(values[name]):
            raise argparse.ArgumentTypeError(f"{name}: starting value must be finite")
    return values


# --- demo ------------------------------------------------------------------


def run_demo(args) -> int:
    """The tutorial's linear regression, by plain gradient descent on the compiled kernel."""
    w, b, x, y = sp.symbols("w b x y", real=True)
    rng = np.random.default_rng(args.seed)
    xs = rng.standard_normal(100)
    ys = 3 * xs + 2 + 0.5 * rng.standard_normal(100)

    model = w * x + b
    loss = (model - y) ** 2
    objective = Objective(loss, params=[w, b], data=[x, y])
    print("symdiff demo: linear regression by gradient descent, the tutorial's y = 3x + 2 + noise\n")
    print(f"data       100 samples: x ~ N(0, 1), y = 3x + 2 + N(0, 0.5^2)  (seed {args.seed})")
    unicode = _stdout_takes_unicode()
    partial = "∂" if unicode else "d"
    print(_indented("model", _labelled("y_hat", model, unicode)))
    print(_indented("loss", _labelled("loss", loss, unicode), "   (mean over the samples: MSE)"))
    for index, (symbol, derivative) in enumerate(zip(objective.params, objective.gradient())):
        label = _labelled(f"{partial}loss/{partial}{symbol}", derivative, unicode)
        print(_indented("gradient" if index == 0 else "", label))

    started = time.perf_counter()
    kernel = objective.compile()
    compile_seconds = time.perf_counter() - started
    print(f"compiled   in {compile_seconds:.2f} s to a native kernel returning (mean loss, mean gradient)\n")

    data = {x: xs, y: ys}
    step_kernel = kernel.bind(data) if hasattr(kernel, "bind") else (lambda theta: kernel(theta, data))
    theta = np.zeros(2)
    every = max(args.steps // 10, 1)
    print(f"gradient descent, learning rate {args.lr}: theta <- theta - lr * gradient")
    print(f"{'step':>6} {'loss':>12} {'w':>9} {'b':>9}")
    started = time.perf_counter()
    for step in range(args.steps + 1):
        value, gradient = step_kernel(theta)
        if step % every == 0 or step == args.steps:
            print(f"{step:6d} {value:12.6f} {theta[0]:9.4f} {theta[1]:9.4f}")
        if not np.all(np.isfinite(gradient)):
            raise DivergenceError(f"the loss diverged at step {step}", step=step, params=theta.copy())
        if step < args.steps:
            theta -= args.lr * gradient
    fit_seconds = time.perf_counter() - started

    exact = np.linalg.lstsq(np.column_stack([xs, np.ones_like(xs)]), ys, rcond=None)[0]
    print(f"\nfitted     w = {theta[0]:.4f}, b = {theta[1]:.4f}   (data made with w = 3, b = 2)")
    print(f"check      least squares gives w = {exact[0]:.4f}, b = {exact[1]:.4f}")
    print(f"time       {args.steps} steps in {fit_seconds * 1e3:.1f} ms")
    return 0


# --- grad ------------------------------------------------------------------


def run_grad(args) -> int:
    """Print the gradient of a formula in the requested form."""
    expression = parse_formula(args.formula)
    order = [name for name in names_in_order(args.formula)]
    symbols = {symbol.name: symbol for symbol in expression.free_symbols}
    wrt_names = args.wrt or order
    if not wrt_names:
        raise CommandError(f"formula {args.formula!r} has no symbols to differentiate by")
    wrt = [symbols.get(name, sp.Symbol(name, real=True)) for name in wrt_names]
    data = [symbols[name] for name in order if name in symbols and name not in wrt_names]

    if args.format in ("pretty", "text", "latex"):
        objective = Objective(expression, params=wrt, data=data)
        if not objective_readable(objective):
            print(objective.latex() if args.format == "latex" else objective.pretty())
            print(f"symdiff: note: the gradient written out has up to "
                  f"{max(objective_sizes(objective)[1:]):,} operations per entry, too many to "
                  f"print; shown: the shared program's first lines (--format program prints "
                  f"all of it)", file=sys.stderr)
            return 0
        gradient = grad(expression, wrt)
        print(_format_gradient(expression, wrt, gradient, args.format))
        return 0
    objective = Objective(expression, params=wrt, data=data)
    if args.format == "program":
        print(objective.program())
        return 0
    kernel = objective.compile()
    print(kernel.llvm_ir if args.format == "llvm" else kernel.asm)
    return 0


def _format_gradient(expression, wrt, gradient, form: str) -> str:
    """``pretty``: 2-D art; ``text``: one ``name = formula`` line each, in the syntax symdiff parses."""
    if form == "text":
        lines = [f"f = {sp.sstr(expression)}"]
        lines += [f"df/d{symbol} = {sp.sstr(derivative)}" for symbol, derivative in zip(wrt, gradient)]
        return "\n".join(lines)
    if form == "latex":
        from symdiff.display.names import latex
        lines = [f"f = {latex(expression)}"]
        for symbol, derivative in zip(wrt, gradient):
            lines.append(rf"\frac{{\partial f}}{{\partial {latex(symbol)}}} = "
                         f"{latex(derivative, expression.free_symbols)}")
        return "\n".join(lines)
    unicode = _stdout_takes_unicode()
    partial = "∂" if unicode else "d"
    lines = [_labelled("f", expression, unicode)]
    for symbol, derivative in zip(wrt, gradient):
        lines.append(_labelled(f"{partial}f/{partial}{symbol}", derivative, unicode))
    return "\n".join(lines).rstrip("\n")


def _labelled(label: str, expression, unicode: bool) -> str:
    """``label = expression`` in SymPy's 2-D pretty form, the label on the expression's baseline."""
    from sympy.printing.pretty.pretty import PrettyPrinter
    from sympy.printing.pretty.stringpict import prettyForm

    form = PrettyPrinter({"use_unicode": unicode, "wrap_line": False})._print(expression)
    text = prettyForm(*form.left(f"{label} = ")).render(wrap_line=False)
    lines = [line.rstrip() for line in text.splitlines()]
    return "\n".join(lines) + ("\n" if len(lines) > 1 else "")


def _indented(heading: str, block: str, note: str = "") -> str:
    """``block`` in the report's second column; ``heading`` and ``note`` on its baseline (the labelled line)."""
    lines = block.rstrip("\n").splitlines()
    baseline = next((i for i, line in enumerate(lines) if line[:1] not in ("", " ")), 0)
    return "\n".join(
        f"{heading if i == baseline else '':10} {line}{note if i == baseline else ''}".rstrip()
        for i, line in enumerate(lines)
    )


def _stdout_takes_unicode() -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "∂∑√".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# --- fit -------------------------------------------------------------------


def read_columns(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named columns of a CSV file with a header row, as float64 arrays.

    Raises :class:`CommandError` naming the file, row and column for an empty
    file, a missing column, a short row, or a cell that is not a finite number.
    """
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise CommandError(f"data file {str(path)!r} not found") from None
    except IsADirectoryError:
        raise CommandError(f"data file {str(path)!r} is a directory") from None
    with handle:
        rows = csv.reader(handle)
        try:
            header = next(rows, None)
            while header is not None and not any(cell.strip() for cell in header):
                header = next(rows, None)
            if header is None:
                raise CommandError(f"data file {str(path)!r} is empty")
            header = [cell.strip() for cell in header]
            missing = [name for name in names if name not in header]
            if missing:
                raise CommandError(
                    f"column {missing[0]!r} not found in {str(path)!r} (columns: {', '.join(header)})"
                )
            positions = {name: header.index(name) for name in names}
            values = {name: [] for name in names}
            for line_number, row in enumerate(rows, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                for name, position in positions.items():
                    if position >= len(row):
                        raise CommandError(f"{str(path)!r} line {line_number}: no value for column {name!r}")
                    values[name].append(_number(row[position], path, line_number, name))
        except UnicodeDecodeError:
            raise CommandError(f"data file {str(path)!r} is not UTF-8 text") from None
        except csv.Error as error:
            raise CommandError(f"data file {str(path)!r} is not valid CSV: {error}") from None
    if not names or not values[names[0]]:
        raise CommandError(f"data file {str(path)!r} has a header but no data rows")
    return {name: np.asarray(column, dtype=np.float64) for name, column in values.items()}


def _number(cell: str, path: Path, line_number: int, name: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        shown = repr(text) if text else "an empty cell"
        raise CommandError(f"{str(path)!r} line {line_number}, column {name!r}: {shown} is not a finite number")
    return value


def _header(path: Path) -> list[str]:
    """Column names of the CSV file (empty for an empty file); errors are left to :func:`read_columns`."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            for row in csv.reader(handle):
                if any(cell.strip() for cell in row):
                    return [cell.strip() for cell in row]
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return []


def _check_columns(args, used: list[str], parameter_names: list[str]) -> None:
    """Warn about (or with --strict, reject) data columns the model leaves unused."""
    for message in unused_column_warnings(_header(args.data), set(used), parameter_names):
        if getattr(args, "strict", False):
            raise CommandError(f"{message} (--strict)")
        _warn(message)


@dataclass
class FitProblem:
    """A model ``response ~ formula`` with its parameters, inputs and data columns, ready to fit."""

    model: str
    response: sp.Symbol
    formula: sp.Expr
    params: list
    inputs: list
    columns: dict

    @classmethod
    def from_args(cls, args) -> "FitProblem":
        """Parse the model, split its symbols into parameters and data, read the data; or CommandError."""
        response, formula = parse_model(args.model)
        if not isinstance(response, sp.Symbol):
            raise CommandError(f"the left side of '~' must be one column name, got {sp.sstr(response)!r}")
        names = names_in_order(args.model.split("~", 1)[1])
        if args.params:
            unknown = [name for name in args.params if name not in names]
            if unknown:
                raise CommandError(f"parameter {unknown[0]!r} does not appear in the formula")
            parameter_names = list(args.params)
        else:
            in_file = set(_header(args.data))
            parameter_names = [name for name in names if name not in in_file]
        input_names = [name for name in names if name not in parameter_names]
        if response.name in input_names:
            raise CommandError(f"the response {response.name!r} also appears on the right of '~'")
        if not parameter_names:
            raise CommandError("the formula has no parameters to fit (every symbol is a column of the data)")
        for name in args.init:
            if name not in parameter_names:
                raise CommandError(f"--init gives {name!r}, which is not a parameter ({', '.join(parameter_names)})")
        columns = read_columns(args.data, input_names + [response.name])
        _check_columns(args, input_names + [response.name], parameter_names)
        if args.loss == "logistic" and not np.all(np.isin(columns[response.name], (0.0, 1.0))):
            raise CommandError(f"--loss logistic needs a 0/1 response; column {response.name!r} has other values")
        symbol_of = {symbol.name: symbol for symbol in formula.free_symbols}
        return cls(args.model, response, formula, [symbol_of[name] for name in parameter_names],
                   [symbol_of[name] for name in input_names], columns)

    @property
    def target(self) -> np.ndarray:
        return self.columns[self.response.name]

    @property
    def data(self) -> dict:
        """{symbol: column} for the inputs and the response."""
        return {symbol: self.columns[symbol.name] for symbol in [*self.inputs, self.response]}

    def predict(self, theta, inputs: dict) -> np.ndarray:
        """The formula at ``theta`` for each row of ``inputs`` ({input symbol: column}), compiled."""
        model = Model(self.formula, params=self.params, inputs=self.inputs)
        return np.asarray(model.compile()(theta, inputs), dtype=np.float64)


def fit_method(args) -> str:
    """--method, else --optimizer, else lm for the squared-error loss and adam otherwise."""
    if args.method and args.optimizer and args.method != args.optimizer:
        raise CommandError(f"--method {args.method} and --optimizer {args.optimizer} disagree; give one")
    method = args.method or args.optimizer or ("lm" if args.loss == "mse" else "adam")
    if method == "lm" and args.loss != "mse":
        raise CommandError(f"--method lm fits the squared error; --loss {args.loss} needs a first-order optimizer")
    if args.sigma and method != "lm":
        raise CommandError("--sigma weights a least-squares fit: use it with --method lm")
    return method


def run_fit(args) -> int:
    """Fit ``response ~ formula`` to a CSV file and print (and optionally save) the report."""
    _check_outputs(args)
    method = fit_method(args)
    problem = FitProblem.from_args(args)
    if method == "lm":
        from symdiff.cli.solvers import run_lm_fit
        return run_lm_fit(args, problem)
    if method in SECOND_ORDER_METHODS:
        from symdiff.cli.solvers import run_minimize_fit
        return run_minimize_fit(args, problem, method)
    args.optimizer = method
    objective = Objective(LOSSES[args.loss](problem.formula, problem.response),
                          params=problem.params, data=[*problem.inputs, problem.response])
    init = np.array([args.init.get(p.name, 1.0) for p in problem.params], dtype=np.float64)
    started = time.perf_counter()
    result = fit(objective, problem.data, optimizer=make_optimizer(args.optimizer, lr=args.lr),
                 epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, init=init,
                 progress=not args.quiet)
    seconds = time.perf_counter() - started

    theta = np.asarray(result.params, dtype=np.float64)
    prediction = problem.predict(theta, problem.data)
    score_name, score = _score(args.loss, prediction, problem.target)
    report = {
        "model": args.model,
        "data": str(args.data),
        "rows": int(problem.target.size),
        "loss_function": args.loss,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "epochs": _epochs_run(result, args.epochs),
        "params": {p.name: float(value) for p, value in zip(problem.params, theta)},
        "final_loss": float(objective.compile().value(theta, problem.data)),
        score_name: score,
        "seconds": seconds,
        "stopped": getattr(result, "stop_reason", "epochs"),
        "loss_history": _loss_history(result),
    }
    _print_report(report, score_name)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(_finite_or_none(report), handle, indent=2)
        print(f"saved      {args.json}")
    if args.plot:
        _plot_fit(args.plot, problem, theta, prediction, report)
        print(f"saved      {args.plot}")
    return 0


def _check_outputs(args) -> None:
    """Output files are checked before the fit, so a bad path costs no fitting time."""
    check_output_paths({f"--{name}": getattr(args, name, None) for name in ("plot", "json", "out")})
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError("--plot needs matplotlib: pip install 'symdiff-llvm[plot]'") from None


def _finite_or_none(value):
    """``value`` with NaN and infinities replaced by None, which JSON can represent."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


def _score(loss_name: str, prediction: np.ndarray, target: np.ndarray) -> tuple[str, float]:
    if loss_name == "logistic":
        return "accuracy", float(np.mean((prediction > 0) == (target > 0.5)))
    residual = float(np.sum((target - prediction) ** 2))
    spread = float(np.sum((target - target.mean()) ** 2))
    return "r2", (1.0 - residual / spread) if spread > 0 else float("nan")


def _epochs_run(result, requested: int) -> int:
    history = getattr(result, "history", None)
    try:
        return len(history) if history is not None else requested
    except TypeError:
        return requested


def _loss_history(result) -> list[float]:
    history = getattr(result, "history", None)
    values = getattr(history, "train_loss", None) if history is not None else None
    return [float(v) for v in values] if values is not None else []


def _print_report(report: dict, score_name: str) -> None:
    print(f"model      {report['model']}")
    batch = report["batch_size"] or report["rows"]
    print(f"data       {report['rows']} rows of {report['data']}")
    print(f"training   {report['loss_function']} loss, {report['optimizer']} lr={report['lr']:g}, "
          f"{report['epochs']} epochs, batch {batch}")
    width = max(len(name) for name in report["params"])
    for index, (name, value) in enumerate(report["params"].items()):
        label = "parameters" if index == 0 else ""
        print(f"{label:10} {name:<{width}} = {value:.6g}")
    print(f"final loss {report['final_loss']:.6g}")
    score_label = "R^2" if score_name == "r2" else "accuracy"
    print(f"{score_label:10} {report[score_name]:.4g}")
    print(f"time       {report['seconds']:.2f} s")
    if report["stopped"] == "interrupted":
        print(f"stopped    interrupted (Ctrl-C) after {report['epochs']} epochs; these are the parameters so far")


def fit_figure():
    """A Figure of its own with two panels on the Agg canvas: no display needed, pyplot untouched."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CommandError("--plot needs matplotlib: pip install 'symdiff-llvm[plot]'") from None
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    return (figure, *figure.subplots(1, 2))


def draw_data_and_fit(axis, problem: FitProblem, predict, fitted) -> None:
    """The data and the fitted curve for one input; fitted against observed for several."""
    target, name = problem.target, problem.response.name
    if len(problem.inputs) == 1:
        (symbol,) = problem.inputs
        xs = problem.columns[symbol.name]
        grid = np.linspace(xs.min(), xs.max(), 400)
        axis.scatter(xs, target, s=10, alpha=0.6, label="data")
        axis.plot(grid, predict({symbol: grid}), color="C1", linewidth=2, label="fit")
        axis.set_xlabel(symbol.name)
        axis.set_ylabel(name)
        axis.legend()
    else:
        axis.scatter(target, fitted, s=10, alpha=0.6)
        low, high = float(min(target.min(), fitted.min())), float(max(target.max(), fitted.max()))
        axis.plot([low, high], [low, high], color="C1")
        axis.set_xlabel(f"observed {name}")
        axis.set_ylabel("fitted")
    axis.set_title(problem.model)


def _plot_fit(path, problem: FitProblem, theta, prediction, report) -> None:
    """Data and fitted curve (or fitted against observed, for several inputs) beside the loss history."""
    figure, left, right = fit_figure()
    draw_data_and_fit(left, problem, lambda data: problem.predict(theta, data), prediction)
    history = report["loss_history"]
    if history:
        right.plot(np.arange(1, len(history) + 1), history)
        if min(history) > 0 and max(history) / min(history) > 50:
            right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel(f"{report['loss_function']} loss")
    right.set_title("training loss")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- cache -----------------------------------------------------------------


def run_cache(args) -> int:
    """Show or clear the on-disk kernel cache."""
    from codegen.cache import KernelCache

    cache = KernelCache.default()
    if cache is None:
        print("the kernel cache is turned off (SYMDIFF_CACHE is 0/false/no/off)")
        return 0
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} cached kernel{'s' if removed != 1 else ''} from {cache.directory}")
        return 0
    info = cache.info()
    print(f"directory  {info['directory']}")
    print(f"entries    {info['entries']}")
    print(f"size       {_size(info['total_bytes'])} of {_size(info['max_bytes'])}")
    state = "enabled" if info["enabled"] else f"disabled: {info['reason_disabled']}"
    print(f"state      {state}")
    return 0


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"


if __name__ == "__main__":
    sys.exit(main())
