"""The symdiff command line, called in-process through ``main(argv)`` (and once as a real process)."""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symdiff.cli.commands import main
from symdiff.models.parse import parse_formula

REPOSITORY = Path(__file__).resolve().parent.parent


def run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def line_csv(tmp_path):
    rng = np.random.default_rng(3)
    xs = rng.uniform(-2, 2, 80)
    ys = 2.0 * xs + 1.0 + 0.1 * rng.standard_normal(80)
    return write_csv(tmp_path / "line.csv", ["x", "y"], zip(xs, ys)), xs, ys


# --- help ------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["demo"], ["grad"], ["fit"], ["cache"]])
def test_every_help_shows_an_example(capsys, command):
    status, out, _ = run(capsys, *command, "--help")
    assert status == 0
    assert "example" in out and "symdiff " in out.split("example", 1)[1]


def test_no_command_prints_help(capsys):
    status, out, _ = run(capsys)
    assert status == 0 and "grad" in out and "fit" in out


# --- demo ------------------------------------------------------------------


def test_demo_fits_the_tutorial_line_quickly(capsys):
    started = time.perf_counter()
    status, out, err = run(capsys, "demo")
    assert status == 0, err
    assert time.perf_counter() - started < 30
    assert "y_hat = b + w" in out
    assert all(f"∂loss/∂{p}" in out or f"dloss/d{p}" in out for p in "wb")
    fitted = out.split("fitted", 1)[1].splitlines()[0]
    exact = out.split("least squares gives", 1)[1].splitlines()[0]
    w, b = (float(part.split("=")[1]) for part in fitted.split("(")[0].split(","))
    w_exact, b_exact = (float(part.split("=")[1]) for part in exact.split(","))
    assert abs(w - 3) < 0.3 and abs(b - 2) < 0.3
    assert abs(w - w_exact) < 1e-3 and abs(b - b_exact) < 1e-3
    steps = [line for line in out.splitlines() if len(line.split()) == 4 and line.split()[0].isdigit()]
    losses = [float(line.split()[1]) for line in steps]
    assert len(losses) >= 5 and losses[-1] < losses[0]


# --- grad ------------------------------------------------------------------


def test_grad_text_matches_sympy_diff(capsys):
    formula = "a*exp(-b*x) + c*sin(d*x)^2"
    status, out, err = run(capsys, "grad", formula, "--wrt", "a,b,c,d", "--format", "text")
    assert status == 0, err
    expression = parse_formula(formula)
    lines = out.strip().splitlines()
    assert lines[0].startswith("f = ")
    for name, line in zip("abcd", lines[1:]):
        label, printed = line.split(" = ", 1)
        assert label == f"df/d{name}"
        expected = sp.diff(expression, sp.Symbol(name, real=True))
        assert sp.simplify(parse_formula(printed) - expected) == 0
    assert len(lines) == 5


def test_grad_defaults_to_every_symbol_in_order(capsys):
    status, out, _ = run(capsys, "grad", "w*x + b", "--format", "text")
    assert status == 0
    assert [line.split(" = ")[0] for line in out.strip().splitlines()[1:]] == ["df/dw", "df/dx", "df/db"]


def test_grad_pretty_and_latex(capsys):
    status, out, _ = run(capsys, "grad", "a*exp(-b*x) + c", "--wrt", "a,b,c")
    assert status == 0
    assert all(f"/∂{name}" in out or f"/d{name}" in out for name in "abc")
    status, out, _ = run(capsys, "grad", "a*exp(-b*x) + c", "--wrt", "a,b,c", "--format", "latex")
    assert status == 0 and r"\frac{\partial f}{\partial b}" in out and "e^{- b x}" in out


def test_grad_program_llvm_and_asm(capsys):
    status, program, _ = run(capsys, "grad", "(w*x + b - y)^2", "--wrt", "w,b", "--format", "program")
    assert status == 0 and program.strip()
    status, llvm, _ = run(capsys, "grad", "(w*x + b - y)^2", "--wrt", "w,b", "--format", "llvm")
    assert status == 0 and "define" in llvm
    status, asm, _ = run(capsys, "grad", "(w*x + b - y)^2", "--wrt", "w,b", "--format", "asm")
    assert status == 0 and asm.strip() and asm != llvm


# --- fit -------------------------------------------------------------------


def test_fit_line_matches_least_squares(capsys, tmp_path, line_csv):
    path, xs, ys = line_csv
    result_path = tmp_path / "result.json"
    status, out, err = run(capsys, "fit", "y ~ a*x + c", "--data", str(path), "--optimizer", "adam",
                           "--lr", "0.1", "--epochs", "400", "--json", str(result_path), "--quiet")
    assert status == 0, err
    slope, intercept = np.polyfit(xs, ys, 1)
    result = json.loads(result_path.read_text())
    assert result["params"]["a"] == pytest.approx(slope, abs=1e-3)
    assert result["params"]["c"] == pytest.approx(intercept, abs=1e-3)
    residual = ys - (result["params"]["a"] * xs + result["params"]["c"])
    assert result["r2"] == pytest.approx(1 - residual @ residual / np.sum((ys - ys.mean()) ** 2), rel=1e-9)
    assert result["final_loss"] == pytest.approx(np.mean(residual**2), rel=1e-9)
    assert result["epochs"] == 400 and result["rows"] == 80
    for word in ("a ", "c ", "final loss", "R^2", "time"):
        assert word in out


def test_fit_exponential_decay_with_plot(capsys, tmp_path):
    rng = np.random.default_rng(0)
    xs = np.sort(rng.uniform(0, 4, 150))
    ys = 2.5 * np.exp(-1.3 * xs) + 0.5 + 0.02 * rng.standard_normal(150)
    path = write_csv(tmp_path / "decay.csv", ["x", "y"], zip(xs, ys))
    plot, result_path = tmp_path / "fit.png", tmp_path / "fit.json"
    status, _, err = run(capsys, "fit", "y ~ a*exp(-b*x) + c", "--data", str(path), "--init", "a=1,b=1,c=0",
                         "--lr", "0.05", "--epochs", "1500", "--plot", str(plot), "--json", str(result_path),
                         "--quiet")
    assert status == 0, err
    params = json.loads(result_path.read_text())["params"]
    assert params == pytest.approx({"a": 2.5, "b": 1.3, "c": 0.5}, abs=0.06)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_logistic_reports_accuracy(capsys, tmp_path):
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 200))
    label = (x1 - 0.5 * x2 + 0.3 * rng.standard_normal(200) > 0).astype(int)
    path = write_csv(tmp_path / "points.csv", ["x1", "x2", "label"], zip(x1, x2, label))
    result_path = tmp_path / "r.json"
    status, out, err = run(capsys, "fit", "label ~ w1*x1 + w2*x2 + b", "--data", str(path), "--loss", "logistic",
                           "--lr", "0.05", "--epochs", "50", "--batch-size", "32", "--json", str(result_path),
                           "--quiet")
    assert status == 0, err
    result = json.loads(result_path.read_text())
    p = result["params"]
    expected = np.mean(((p["w1"] * x1 + p["w2"] * x2 + p["b"]) > 0) == (label == 1))
    assert result["accuracy"] == pytest.approx(expected) and expected > 0.85
    assert "accuracy" in out


def test_fit_params_option_makes_a_column_a_parameter(capsys, tmp_path, line_csv):
    path, _, _ = line_csv
    status, _, err = run(capsys, "fit", "y ~ a*x + c", "--data", str(path), "--params", "a,c",
                         "--epochs", "5", "--quiet")
    assert status == 0, err
    status, _, err = run(capsys, "fit", "y ~ a*x + q", "--data", str(path), "--params", "a",
                         "--epochs", "5", "--quiet")
    assert status == 2 and "'q'" in err


# --- errors: one line, exit status 2, no traceback -------------------------


def _bad(tmp_path):
    good = write_csv(tmp_path / "good.csv", ["x", "y"], [(1, 2), (2, 4), (3, 6)])
    text = write_csv(tmp_path / "text.csv", ["x", "y"], [(1, 2), (2, "abc"), (3, 6)])
    blank = write_csv(tmp_path / "blank.csv", ["x", "y"], [(1, 2), (2, ""), (3, 6)])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("x,y\n")
    short = tmp_path / "short.csv"
    short.write_text("x,y\n1,2\n3\n")
    return {
        "missing response column": (["fit", "q ~ a*x + c", "--data", str(good)], "'q'"),
        "missing input column": (["fit", "y ~ a*z + c", "--data", str(good), "--params", "a,c"], "'z'"),
        "non-numeric cell": (["fit", "y ~ a*x + c", "--data", str(text)], "'abc'"),
        "empty cell": (["fit", "y ~ a*x + c", "--data", str(blank)], "empty cell"),
        "empty file": (["fit", "y ~ a*x + c", "--data", str(empty)], "empty"),
        "header only": (["fit", "y ~ a*x + c", "--data", str(header_only)], "no data rows"),
        "short row": (["fit", "y ~ a*x + c", "--data", str(short)], "line 3"),
        "no such file": (["fit", "y ~ a*x + c", "--data", str(tmp_path / "nope.csv")], "not found"),
        "bad formula": (["fit", "y ~ a*x + __import__('os')", "--data", str(good)], "column"),
        "no tilde": (["fit", "a*x + c", "--data", str(good)], "~"),
        "unknown loss": (["fit", "y ~ a*x", "--data", str(good), "--loss", "hinge"], "hinge"),
        "unknown optimizer": (["fit", "y ~ a*x", "--data", str(good), "--optimizer", "lbfgs"], "lbfgs"),
        "negative lr": (["fit", "y ~ a*x", "--data", str(good), "--lr", "-1"], "-1"),
        "bad init": (["fit", "y ~ a*x", "--data", str(good), "--init", "a=one"], "one"),
        "init of non-parameter": (["fit", "y ~ a*x", "--data", str(good), "--init", "q=1"], "'q'"),
        "no parameters": (["fit", "y ~ x", "--data", str(good)], "no parameters"),
        "logistic needs 0/1": (["fit", "y ~ a*x", "--data", str(good), "--loss", "logistic"], "0/1"),
        "missing --data": (["fit", "y ~ a*x"], "--data"),
        "response on both sides": (["fit", "y ~ a*y + x", "--data", str(good)], "'y'"),
        "grad bad formula": (["grad", "x.real"], "attribute"),
        "grad bad format": (["grad", "x", "--format", "pdf"], "pdf"),
        "unknown command": (["frobnicate"], "frobnicate"),
    }


BAD_CASES = [
    "missing response column", "missing input column", "non-numeric cell", "empty cell", "empty file", "header only", "short row",
    "no such file", "bad formula", "no tilde", "unknown loss", "unknown optimizer", "negative lr",
    "bad init", "init of non-parameter", "no parameters", "logistic needs 0/1", "missing --data",
    "response on both sides", "grad bad formula", "grad bad format", "unknown command",
]


def test_bad_cases_are_all_listed(tmp_path):
    assert sorted(_bad(tmp_path)) == sorted(BAD_CASES)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_two(capsys, tmp_path, case):
    argv, mentioned = _bad(tmp_path)[case]
    status, out, err = run(capsys, *argv)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("symdiff: error: ")
    assert mentioned in lines[0]
    assert "Traceback" not in err + out


def test_diverging_fit_is_one_line_exit_one(capsys, tmp_path):
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 4, 50)
    path = write_csv(tmp_path / "grow.csv", ["x", "y"], zip(xs, np.exp(1.3 * xs)))
    status, _, err = run(capsys, "fit", "y ~ a*exp(b*x)", "--data", str(path), "--optimizer", "sgd",
                         "--lr", "10", "--epochs", "500", "--quiet")
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("symdiff: error: ") and "diverged" in err
    assert "Traceback" not in err


# --- cache -----------------------------------------------------------------


def test_cache_info_and_clear(capsys, tmp_path, monkeypatch):
    from codegen.cache import KernelCache

    directory = tmp_path / "cache"
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(directory))
    monkeypatch.delenv("SYMDIFF_CACHE", raising=False)
    cache = KernelCache(directory)
    cache.put(KernelCache.key("one"), b"object code")
    cache.put(KernelCache.key("two"), b"more object code")

    status, out, _ = run(capsys, "cache", "info")
    assert status == 0 and str(directory) in out and "entries    2" in out
    status, out, _ = run(capsys, "cache", "clear")
    assert status == 0 and "removed 2 cached kernels" in out
    assert KernelCache(directory).info()["entries"] == 0


def test_cache_turned_off(capsys, monkeypatch):
    monkeypatch.setenv("SYMDIFF_CACHE", "0")
    status, out, _ = run(capsys, "cache", "info")
    assert status == 0 and "off" in out


# --- as a separate process -------------------------------------------------


def _environment():
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    return environment


def test_python_dash_m_symdiff_reports_errors_without_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "symdiff", "grad", "open('x', 'w')"], cwd=tmp_path, env=_environment(),
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("symdiff: error: ") and "Traceback" not in completed.stderr
    assert not (tmp_path / "x").exists()


def test_console_script_prints_a_gradient(tmp_path):
    script = shutil.which("symdiff")
    if script is None:
        pytest.skip("the symdiff console script is not installed (pip install -e .)")
    completed = subprocess.run(
        [script, "grad", "x^3 + y*x", "--wrt", "x", "--format", "text"], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    printed = completed.stdout.strip().splitlines()[1].split(" = ", 1)[1]
    x, y = sp.symbols("x y", real=True)
    assert sp.simplify(parse_formula(printed) - (3 * x**2 + y)) == 0


def test_internal_error_is_one_line_unless_debugging(capsys, monkeypatch):
    import symdiff.cli.commands as cli

    def broken(expression, wrt):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "grad", broken)
    monkeypatch.delenv("SYMDIFF_DEBUG", raising=False)
    status, _, err = run(capsys, "grad", "x^2")
    assert status == 1 and len(err.strip().splitlines()) == 1 and "internal error (RuntimeError: boom)" in err
    monkeypatch.setenv("SYMDIFF_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["grad", "x^2"])


@pytest.mark.parametrize("form", ["pretty", "text", "latex"])
def test_grad_of_a_formula_too_big_to_print_shows_the_shared_program(capsys, form):
    formula = "x"
    for k in range(12):
        formula = (f"tanh(w{k}*{formula} + b{k})*({formula} + c{k})" if k < 3
                   else f"tanh(w{k}*({formula}) + b{k})")
    status, out, err = run(capsys, "grad", "--format", form, formula)
    assert status == 0
    assert "too many to print" in err and "--format program" in err
    assert "28 parameters" in out and "shared instructions" in out and len(out) < 3000
