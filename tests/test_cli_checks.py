"""``symdiff fit``'s checks before fitting (unused columns, output paths) and its CLI advice."""

import csv
import time

import numpy as np
import pytest

from symdiff.cli.commands import main
from symdiff.cli.checks import unused_column_warnings


def run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def decay_csv(tmp_path):
    rng = np.random.default_rng(1)
    xs = rng.uniform(0, 3, 60)
    ys = 2.5 * np.exp(-1.3 * xs) + 0.5 + 0.01 * rng.standard_normal(60)
    path = tmp_path / "decay.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y"])
        writer.writerows(zip(xs, ys))
    return path


def test_typo_in_a_variable_warns_naming_column_and_parameter(capsys, decay_csv):
    status, out, err = run(capsys, "fit", "y ~ a*exp(-b*t) + c", "--data", str(decay_csv),
                           "--optimizer", "adam", "--epochs", "3", "--quiet")
    assert status == 0
    assert "symdiff: warning: column 'x' is unused; did you mean x instead of parameter t?" in err
    assert out.startswith("model ")


def test_typo_with_least_squares_exits_3_with_undetermined_parameters(capsys, decay_csv):
    status, out, err = run(capsys, "fit", "y ~ a*exp(-b*t) + c", "--data", str(decay_csv), "--quiet")
    assert status == 3
    assert "column 'x' is unused; did you mean x instead of parameter t?" in err
    assert "do not determine a, b, t, c" in err
    assert "t =  1 +/- inf" in out


def test_strict_makes_an_unused_column_an_error_before_fitting(capsys, decay_csv):
    status, out, err = run(capsys, "fit", "y ~ a*exp(-b*t) + c", "--data", str(decay_csv), "--strict",
                           "--quiet")
    assert status == 2 and out == ""
    assert err.startswith("symdiff: error: column 'x' is unused") and "--strict" in err


def test_a_model_using_every_column_gives_no_warning(capsys, decay_csv):
    status, out, err = run(capsys, "fit", "y ~ a*exp(-b*x) + c", "--data", str(decay_csv), "--strict",
                           "--optimizer", "adam", "--epochs", "3", "--quiet")
    assert status == 0 and err == ""


@pytest.mark.parametrize("method", [[], ["--optimizer", "adam"]], ids=["default", "adam"])
def test_fit_output_does_not_start_with_a_blank_line(capsys, decay_csv, method):
    status, out, _ = run(capsys, "fit", "y ~ a*exp(-b*x) + c", "--data", str(decay_csv), *method,
                         "--epochs", "3", "--quiet")
    assert status == 0 and out.startswith("model ")


@pytest.mark.parametrize("option", ["--plot", "--json"])
def test_output_path_in_a_missing_directory_fails_before_fitting(capsys, decay_csv, tmp_path, option):
    target = tmp_path / "no" / "such" / "dir" / ("x.png" if option == "--plot" else "x.json")
    started = time.perf_counter()
    status, out, err = run(capsys, "fit", "y ~ a*exp(-b*x) + c", "--data", str(decay_csv), option,
                           str(target), "--epochs", "100000", "--quiet")
    assert status == 2 and out == ""
    assert err.startswith(f"symdiff: error: {option} ") and str(target) in err and "does not exist" in err
    assert "Errno" not in err
    assert time.perf_counter() - started < 30  # 100000 epochs were not run first


def test_output_path_that_is_a_directory_is_refused(capsys, decay_csv, tmp_path):
    status, _, err = run(capsys, "fit", "y ~ a*exp(-b*x) + c", "--data", str(decay_csv),
                         "--json", str(tmp_path), "--quiet")
    assert status == 2 and "is a directory" in err and str(tmp_path) in err


def test_divergence_gives_command_line_advice(capsys, tmp_path):
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 4, 50)
    path = tmp_path / "grow.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y"])
        writer.writerows(zip(xs, np.exp(1.3 * xs)))
    status, _, err = run(capsys, "fit", "y ~ a*exp(b*x)", "--data", str(path), "--optimizer", "sgd",
                         "--lr", "10", "--epochs", "500", "--quiet")
    assert status == 1 and "diverged" in err
    assert "--lr (now 10)" in err and "--method lm" in err and "--init" in err
    assert "clip_norm" not in err and ".params" not in err


def test_suggestions_pair_each_unused_column_with_its_likely_parameter():
    assert unused_column_warnings(["x", "y", "id"], {"y"}, ["a", "t"]) == [
        "column 'x' is unused; did you mean x instead of parameter t?", "column 'id' is unused"]
    assert unused_column_warnings(["dose", "y"], {"y"}, ["doze", "k"]) == [
        "column 'dose' is unused; did you mean dose instead of parameter doze?"]
    assert unused_column_warnings(["x", "y"], {"x", "y"}, ["a"]) == []


def test_grad_latex_keeps_word_names_whole(capsys):
    status, out, _ = run(capsys, "grad", "coat_price*x_1 + pay_fraction", "--format", "latex")
    assert status == 0
    assert r"\mathit{coat\_price}" in out and r"\mathit{pay\_fraction}" in out
    assert "coat_{price}" not in out and "x_{1}" in out
