"""sd.tune (cross-validated search), its distributions, and sd.lr_find, against independent computations."""

import math
import sys

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.errors import DataError, SymdiffError
from symdiff.training.tuning import build_optimizer, loguniform, lr_find, randint, tune, uniform

a, b, x, y = sp.symbols("a b x y", real=True)
OBJECTIVE = sd.Objective((a * x + b - y) ** 2, [a, b], [x, y])


def line_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-2, 2, n)
    return {"x": xs, "y": 1.5 * xs - 0.7 + 0.1 * rng.standard_normal(n)}


# -- distributions -------------------------------------------------------------------------

def test_distributions_follow_their_laws():
    stats = pytest.importorskip("scipy.stats")
    draws = loguniform(1e-4, 1).rvs(size=4000, random_state=0)
    assert stats.kstest(draws, stats.loguniform(1e-4, 1).cdf).pvalue > 1e-3
    draws = uniform(-2, 3).rvs(size=4000, random_state=1)
    assert stats.kstest(draws, stats.uniform(-2, 5).cdf).pvalue > 1e-3
    draws = randint(3, 7).rvs(size=4000, random_state=2)
    assert set(np.unique(draws)) == {3, 4, 5, 6}
    counts = np.bincount(draws - 3)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_distributions_take_scikit_learn_random_states():
    one = loguniform(1e-3, 10).rvs(random_state=np.random.RandomState(5))
    assert isinstance(one, float) and 1e-3 <= one <= 10
    assert loguniform(1e-3, 10).rvs(random_state=7) == loguniform(1e-3, 10).rvs(random_state=7)
    assert isinstance(randint(0, 3).rvs(random_state=np.random.default_rng(1)), int)
    for bad in [(0, 1), (1, 1), (2, 1), (math.nan, 1)]:
        with pytest.raises(ValueError):
            loguniform(*bad)
    with pytest.raises(ValueError):
        randint(0.5, 3)


def test_build_optimizer_validates_settings():
    opt = build_optimizer("sgd", 0.1, momentum=0.9, nesterov=True)
    assert isinstance(opt, sd.optim.SGD) and (opt.lr, opt.momentum, opt.nesterov) == (0.1, 0.9, True)
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer("sgd", 0.1, momentum=-1)
    with pytest.raises(ValueError, match="Adam has no setting 'momentum'"):
        build_optimizer("adam", momentum=0.9)


# -- tune ------------------------------------------------------------------------------------

def test_folds_partition_the_rows_and_repeat_from_the_seed():
    data = line_data(103)
    space = {"lr": [0.05]}
    first = tune(OBJECTIVE, data, space, method="grid", cv=4, epochs=2, refit=False)
    again = tune(OBJECTIVE, data, space, method="grid", cv=4, epochs=2, refit=False)
    other = tune(OBJECTIVE, data, space, method="grid", cv=4, epochs=2, seed=1, refit=False)
    held = np.concatenate([v for _, v in first.folds])
    np.testing.assert_array_equal(np.sort(held), np.arange(103))
    for train, val in first.folds:
        assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 103
        assert len(val) in (25, 26)
    for (t1, v1), (t2, v2) in zip(first.folds, again.folds):
        np.testing.assert_array_equal(v1, v2)
    assert not all(np.array_equal(v1, v2) for (_, v1), (_, v2) in zip(first.folds, other.folds))
    assert first.records == [{**r, "seconds": first.records[i]["seconds"]} for i, r in enumerate(again.records)]


def test_fold_losses_equal_a_manual_cross_validation():
    data = line_data()
    space = {"lr": [0.01, 0.1], "optimizer": ["sgd", "adam"]}
    result = tune(OBJECTIVE, data, space, method="grid", cv=5, epochs=15, batch_size=32)
    assert [(r["lr"], r["optimizer"]) for r in result.records] == [
        (0.01, "sgd"), (0.01, "adam"), (0.1, "sgd"), (0.1, "adam")]
    columns = {k: np.asarray(v) for k, v in data.items()}
    for record in result.records:
        losses = []
        for train, val in result.folds:
            fitted = sd.fit(OBJECTIVE, {k: v[train] for k, v in columns.items()}, optimizer=record["optimizer"],
                            lr=record["lr"], epochs=15, batch_size=32, seed=0, progress=False)
            slope, intercept = fitted.params
            losses.append(np.mean((slope * columns["x"][val] + intercept - columns["y"][val]) ** 2))
        np.testing.assert_allclose([record[f"fold_{k}"] for k in range(5)], losses, rtol=1e-12)
        assert record["mean_loss"] == pytest.approx(np.mean(losses), rel=1e-12)
        assert record["std_loss"] == pytest.approx(np.std(losses), rel=1e-9)
    best = min(result.records, key=lambda r: r["mean_loss"])
    assert result.best_setting == {"lr": best["lr"], "optimizer": best["optimizer"]}
    assert result.best_loss == best["mean_loss"] and result.best_std == best["std_loss"]
    assert sorted(r["rank"] for r in result.records) == [1, 2, 3, 4] and best["rank"] == 1
    refit = sd.fit(OBJECTIVE, data, epochs=15, batch_size=32, seed=0, progress=False,
                   optimizer=best["optimizer"], lr=best["lr"])
    np.testing.assert_array_equal(result.fit.params, refit.params)


def test_random_search_draws_from_the_space_reproducibly():
    data = line_data(80)
    space = {"lr": loguniform(1e-3, 0.3), "batch_size": [8, 16, 80], "optimizer": ["sgd", "adam", "rmsprop"],
             "epochs": randint(2, 5)}
    result = tune(OBJECTIVE, data, space, trials=7, cv=3, refit=False)
    again = tune(OBJECTIVE, data, space, trials=7, cv=3, refit=False)
    assert len(result.records) == 7
    for record in result.records:
        assert 1e-3 <= record["lr"] <= 0.3 and record["batch_size"] in (8, 16, 80)
        assert record["optimizer"] in ("sgd", "adam", "rmsprop") and record["epochs"] in (2, 3, 4)
    assert [r["lr"] for r in result.records] == [r["lr"] for r in again.records]


def test_random_search_over_lists_draws_distinct_settings():
    space = {"lr": [0.01, 0.1], "optimizer": ["sgd", "adam"]}
    result = tune(OBJECTIVE, line_data(40), space, trials=10, cv=2, epochs=1, refit=False)
    settings = [(r["lr"], r["optimizer"]) for r in result.records]
    assert len(settings) == 4 and len(set(settings)) == 4


def test_optimizer_settings_apply_where_the_optimizer_has_them():
    data = line_data(60)
    result = tune(OBJECTIVE, data, {"optimizer": ["sgd", "adam"], "momentum": [0.0, 0.9]}, method="grid",
                  cv=2, epochs=3, lr=0.01, refit=False)
    by_setting = {(r["optimizer"], r["momentum"]): r["mean_loss"] for r in result.records}
    assert by_setting[("sgd", 0.0)] != by_setting[("sgd", 0.9)]
    assert by_setting[("adam", 0.0)] == by_setting[("adam", 0.9)]  # Adam has no momentum: ignored
    with pytest.raises(ValueError, match="'learning_rate' is not a setting tune can vary"):
        tune(OBJECTIVE, data, {"learning_rate": [0.1]})
    with pytest.raises(ValueError, match="momentum"):
        tune(OBJECTIVE, data, {"optimizer": ["sgd"], "momentum": [-0.5]}, method="grid")
    with pytest.raises(ValueError, match="'momentum' is a setting of none of the optimizers searched"):
        tune(OBJECTIVE, data, {"optimizer": ["adam", "adamw"], "momentum": [0.9]}, method="grid")


def test_diverging_trials_score_inf_and_rank_last():
    data = line_data(60)
    result = tune(OBJECTIVE, data, {"lr": [0.05, 1e6]}, method="grid", cv=3, epochs=30, optimizer="sgd")
    good, bad = result.records
    assert good["status"] == "ok" and bad["status"] == "diverged"
    assert bad["mean_loss"] == math.inf and math.isnan(bad["std_loss"]) and bad["rank"] == 2
    assert result.best_setting == {"lr": 0.05}
    with pytest.raises(SymdiffError, match="every one of the 1 trials diverged") as info:
        tune(OBJECTIVE, data, {"lr": [1e6]}, method="grid", cv=3, epochs=30, optimizer="sgd")
    assert info.value.records[0]["status"] == "diverged"


def test_table_is_a_dataframe_with_pandas_and_records_without(monkeypatch):
    pandas = pytest.importorskip("pandas")
    data = line_data(40)
    result = tune(OBJECTIVE, data, {"lr": [0.01, 0.1]}, method="grid", cv=2, epochs=2, refit=False)
    assert isinstance(result.table, pandas.DataFrame)
    assert list(result.table["mean_loss"]) == [r["mean_loss"] for r in result.records]
    assert {"lr", "mean_loss", "std_loss", "fold_0", "fold_1", "status", "rank"} <= set(result.table.columns)
    monkeypatch.setitem(sys.modules, "pandas", None)
    plain = tune(OBJECTIVE, data, {"lr": [0.01, 0.1]}, method="grid", cv=2, epochs=2, refit=False)
    assert plain.table is plain.records and isinstance(plain.table, list)


def test_bad_arguments_are_named(capsys):
    data = line_data(40)
    with pytest.raises(ValueError, match="grid search needs lists"):
        tune(OBJECTIVE, data, {"lr": loguniform(1e-3, 1)}, method="grid")
    with pytest.raises(ValueError, match="leave trials=None"):
        tune(OBJECTIVE, data, {"lr": [0.1]}, method="grid", trials=3)
    with pytest.raises(ValueError, match="cv must be an integer >= 2"):
        tune(OBJECTIVE, data, {"lr": [0.1]}, cv=1)
    with pytest.raises(DataError, match="needs at least 5 samples"):
        tune(OBJECTIVE, line_data(4), {"lr": [0.1]})
    with pytest.raises(ValueError, match="method must be"):
        tune(OBJECTIVE, data, {"lr": [0.1]}, method="bayes")
    tune(OBJECTIVE, data, {"lr": [0.1]}, trials=1, cv=2, epochs=1)
    assert capsys.readouterr().err == ""  # no progress bar when stderr is not a terminal


# -- lr_find -----------------------------------------------------------------------------------

def test_lr_find_stops_past_the_stability_limit_of_gradient_descent():
    data = line_data(256)
    features = np.column_stack([data["x"], np.ones(256)])
    hessian = 2 * features.T @ features / 256
    limit = 2 / np.linalg.eigvalsh(hessian).max()  # full-batch SGD diverges for lr > limit
    found = lr_find(OBJECTIVE, data, start=1e-4, end=100, steps=80, optimizer="sgd", batch_size=256)
    np.testing.assert_allclose(found.lrs, np.geomspace(1e-4, 100, 80)[:len(found.lrs)], rtol=1e-12)
    assert found.stop_reason == "diverged" and len(found.lrs) < 80
    assert found.lrs[-1] > limit
    assert 1e-4 < found.suggestion < limit and found.lr_min_loss / 10 < limit
    np.testing.assert_allclose(found.losses[0], np.mean(data["y"] ** 2), rtol=0.05)  # near-zero init


def test_lr_find_smoothing_is_a_centred_mean_and_plot_saves(tmp_path):
    pytest.importorskip("matplotlib")
    found = lr_find(OBJECTIVE, line_data(500), steps=40)
    h = 2
    losses = found.losses
    expected = [np.mean(losses[max(0, i - h):i + h + 1]) for i in range(len(losses))]
    np.testing.assert_allclose(found.smoothed, expected, rtol=1e-12)
    assert found.lrs[0] <= found.suggestion <= found.lr_min_loss
    path = tmp_path / "lr.png"
    figure = found.plot(path)
    assert path.stat().st_size > 1000 and figure.axes[0].get_xscale() == "log"


def test_lr_find_refuses_bad_ranges():
    with pytest.raises(ValueError):
        lr_find(OBJECTIVE, line_data(50), start=1, end=0.1)
    with pytest.raises(ValueError):
        lr_find(OBJECTIVE, line_data(50), steps=2)


def test_progress_bar_over_trials_on_a_terminal(monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    tune(OBJECTIVE, line_data(40), {"lr": [0.01, 0.03, 0.1]}, method="grid", cv=2, epochs=2)
    shown = terminal.getvalue()
    assert "3/3" in shown and "trial" in shown and "best=" in shown and "epoch" not in shown
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    tune(OBJECTIVE, line_data(40), {"lr": [0.01]}, method="grid", cv=2, epochs=2, progress=False)
    assert quiet.getvalue() == ""
