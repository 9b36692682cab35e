"""`symdiff fit` by Levenberg–Marquardt: the issue's two failing examples, report, JSON, exit 3."""

import json

import numpy as np
import pytest

from nls_problems import read_nist
from test_cli import run, write_csv

MISRA = read_nist("Misra1a")


@pytest.fixture
def misra_csv(tmp_path):
    return write_csv(tmp_path / "misra1a.csv", ["x", "y"],
                     ((float(a), float(b)) for a, b in zip(MISRA.x, MISRA.y)))


@pytest.fixture
def enzyme_csv(tmp_path):
    rng = np.random.default_rng(3)
    s = np.array([0.5, 1, 2, 3, 5, 8, 12, 20, 30, 50.0])
    clean = 12 * s / (3.5 + s)
    dv = 0.03 * clean
    v = clean + dv * rng.standard_normal(s.size)
    return write_csv(tmp_path / "mm.csv", ["S", "v", "dv"], zip(s, v, dv)), s, v, dv


def test_misra1a_from_the_published_start_reaches_the_certified_values(capsys, tmp_path, misra_csv):
    out_json = tmp_path / "fit.json"
    status, out, err = run(capsys, "fit", "y ~ b1*(1-exp(-b2*x))", "--data", str(misra_csv),
                           "--init", "b1=500,b2=1e-4", "--json", str(out_json))
    assert status == 0, err
    result = json.loads(out_json.read_text())
    np.testing.assert_allclose([result["params"]["b1"], result["params"]["b2"]], MISRA.certified, rtol=1e-6)
    np.testing.assert_allclose([result["stderr"]["b1"], result["stderr"]["b2"]],
                               MISRA.certified_stderr, rtol=1e-5)
    assert result["rss"] == pytest.approx(MISRA.rss, rel=1e-8)
    assert result["method"] == "lm" and result["success"] is True and result["nfev"] > 0
    for key in ("covariance", "redchi", "r2", "aic"):
        assert key in result
    assert "b1 =  238.94213 +/- 2.70701 (1.13%)" in out
    assert "reduced chi-square" in out and "R-squared" in out and "C(b1, b2)" in out


def test_misra1a_without_init_starts_sensibly_and_says_how(capsys, misra_csv):
    status, out, err = run(capsys, "fit", "y ~ b1*(1-exp(-b2*x))", "--data", str(misra_csv))
    assert status == 0, err
    assert "b1=" in out and "(linear least squares)" in out and "(1/median|x|)" in out
    assert "b1 =  238.94213" in out


def test_michaelis_menten_with_defaults_and_with_sigma(capsys, tmp_path, enzyme_csv):
    from scipy.optimize import curve_fit
    path, s, v, dv = enzyme_csv
    out_json = tmp_path / "mm.json"
    status, out, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--json", str(out_json))
    assert status == 0, err
    result = json.loads(out_json.read_text())
    popt, pcov = curve_fit(lambda S, Vmax, Km: Vmax * S / (Km + S), s, v, p0=[10, 1])
    np.testing.assert_allclose([result["params"]["Vmax"], result["params"]["Km"]], popt, rtol=1e-5)
    np.testing.assert_allclose(result["covariance"], pcov, rtol=1e-3)
    assert result["r2"] > 0.98
    assert "(median|S|)" in out

    status, out, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--sigma", "dv",
                           "--json", str(out_json))
    assert status == 0, err
    result = json.loads(out_json.read_text())
    popt, pcov = curve_fit(lambda S, Vmax, Km: Vmax * S / (Km + S), s, v, p0=[10, 1], sigma=dv)
    np.testing.assert_allclose([result["params"]["Vmax"], result["params"]["Km"]], popt, rtol=1e-5)
    np.testing.assert_allclose(result["covariance"], pcov, rtol=1e-3)
    assert "weights 1/dv^2" in out and "chi-square" in out


def test_flat_region_is_a_warning_and_exit_3(capsys, misra_csv):
    status, out, err = run(capsys, "fit", "y ~ b1*(1-exp(-b2*x))", "--data", str(misra_csv), "--init", "b2=1")
    assert status == 3
    assert "warning" in err and "b2" in err


def test_non_convergence_is_a_warning_and_exit_3(capsys, tmp_path):
    d = read_nist("Bennett5")   # from NIST's first start, 400 evaluations are not enough
    path = write_csv(tmp_path / "bennett5.csv", ["x", "y"], ((float(a), float(b)) for a, b in zip(d.x, d.y)))
    status, out, err = run(capsys, "fit", "y ~ b1 * (b2+x)**(-1/b3)", "--data", str(path),
                           "--init", "b1=-2000,b2=50,b3=0.8")
    assert status == 3
    assert "did not converge" in err and "max_nfev" in err
    assert "converged          = False" in out


def test_first_order_optimizers_still_work(capsys, tmp_path, enzyme_csv):
    path, *_ = enzyme_csv
    out_json = tmp_path / "adam.json"
    for flags in (["--optimizer", "adam"], ["--method", "adam"]):
        status, out, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), *flags,
                               "--epochs", "5", "--quiet", "--json", str(out_json))
        assert status == 0, err
        assert json.loads(out_json.read_text())["optimizer"] == "adam"
        assert "final loss" in out


def test_method_option_errors(capsys, enzyme_csv):
    path, *_ = enzyme_csv
    status, _, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--method", "lm",
                         "--optimizer", "adam")
    assert status == 2 and "disagree" in err
    status, _, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--loss", "mae",
                         "--method", "lm")
    assert status == 2 and "--loss mae" in err
    status, _, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--optimizer", "adam",
                         "--sigma", "dv")
    assert status == 2 and "--sigma" in err
    status, _, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--sigma", "nope")
    assert status == 2 and "nope" in err


def test_lm_plot(capsys, tmp_path, enzyme_csv):
    path, *_ = enzyme_csv
    plot = tmp_path / "fit.png"
    status, _, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--plot", str(plot))
    assert status == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("method", ["lbfgs", "newton"])
def test_second_order_methods_reach_the_least_squares_optimum(capsys, tmp_path, enzyme_csv, method):
    path, *_ = enzyme_csv
    lm_json, other_json = tmp_path / "lm.json", tmp_path / f"{method}.json"
    assert run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--json", str(lm_json))[0] == 0
    status, out, err = run(capsys, "fit", "v ~ Vmax*S/(Km + S)", "--data", str(path), "--method", method,
                           "--json", str(other_json))
    assert status == 0, err
    lm, other = json.loads(lm_json.read_text()), json.loads(other_json.read_text())
    assert other["method"] == method and other["success"] is True
    for name in ("Vmax", "Km"):
        assert other["params"][name] == pytest.approx(lm["params"][name], rel=1e-4)
    assert f"method     {method}" in out


def test_repeated_init_options_add_up(capsys, misra_csv):
    status, out, _ = run(capsys, "fit", "y ~ b1*(1-exp(-b2*x))", "--data", str(misra_csv),
                         "--init", "b1=500", "--init", "b2=1e-4")
    assert status == 0
    assert "start      b1=500 (--init), b2=0.0001 (--init)" in out
    assert "b1 =  238.942" in out


def test_lbfgs_stopping_on_a_badly_scaled_fit_is_not_called_converged(capsys, misra_csv):
    """L-BFGS-B stops Misra1a from the published start by its relative-reduction test at
    b1 = 500 (certified 238.94): the loss still falls steeply along b1, so exit 3."""
    status, out, err = run(capsys, "fit", "y ~ b1*(1-exp(-b2*x))", "--data", str(misra_csv),
                           "--method", "lbfgs", "--init", "b1=500,b2=1e-4")
    assert status == 3
    assert "NOT converged" in out and "try --method lm" in err
