"""sd.fit against hand-written NumPy training loops, plus its bookkeeping and failure modes.

The references compute the linear-regression gradient in closed form with NumPy
and apply the update rule directly, so they share nothing with the symbolic
gradient, the compiled kernel or symdiff.optim.
"""

import math
import tracemalloc

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff import optim, schedules
from symdiff.errors import DataError, DivergenceError, FormulaError
from symdiff.models.regularization import l1, l2, regularized
from symdiff.training.driver import fit

W = sp.symbols("w0 w1", real=True)
B, X0, X1, Y = sp.symbols("b x0 x1 y", real=True)


def _objective():
    return sd.Objective((W[0] * X0 + W[1] * X1 + B - Y) ** 2, params=[*W, B], data=[X0, X1, Y])


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x0, x1 = rng.normal(size=n), 3.0 * rng.normal(size=n)
    y = 1.5 * x0 - 0.5 * x1 + 0.7 + 0.1 * rng.normal(size=n)
    return {"x0": x0, "x1": x1, "y": y}


def _reference_gradient(theta, data):
    """Closed form: d/dθ mean((Xθ - y)^2) = 2 Xᵀ(Xθ - y) / n, with X = [x0, x1, 1]."""
    X = np.column_stack([data["x0"], data["x1"], np.ones(len(data["y"]))])
    residual = X @ theta - data["y"]
    return float(np.mean(residual ** 2)), 2.0 * X.T @ residual / len(residual)


@pytest.fixture(scope="module")
def objective():
    return _objective()


def test_batch_gradient_descent_matches_numpy_loop(objective):
    data = _data()
    theta0 = np.array([0.1, -0.2, 0.3])
    result = fit(objective, data, optimizer=optim.SGD(lr=0.05), epochs=60, init=theta0, progress=False)
    theta, losses = theta0.copy(), []
    for _ in range(60):
        loss, grad = _reference_gradient(theta, data)
        losses.append(loss)
        theta = theta - 0.05 * grad
    np.testing.assert_allclose(result.params, theta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.history.train_loss, losses, rtol=1e-9)
    assert result.history.steps == list(range(1, 61))
    assert result.params_dict == dict(zip(objective.params, result.params))


def test_converges_to_least_squares(objective):
    data = _data()
    X = np.column_stack([data["x0"], data["x1"], np.ones(len(data["y"]))])
    exact = np.linalg.lstsq(X, data["y"], rcond=None)[0]
    result = fit(objective, data, optimizer="adam", lr=0.05, epochs=1500, progress=False)
    np.testing.assert_allclose(result.params, exact, atol=1e-6)


def test_minibatches_in_order_match_numpy_loop(objective):
    data = _data(n=103)
    theta0 = np.zeros(3)
    result = fit(objective, data, optimizer=optim.SGD(lr=0.02, momentum=0.9), epochs=4,
                 batch_size=25, shuffle=False, init=theta0, progress=False)
    theta, buf, step_losses = theta0.copy(), None, []
    for _ in range(4):
        for start in range(0, 103, 25):
            batch = {k: v[start:start + 25] for k, v in data.items()}
            loss, grad = _reference_gradient(theta, batch)
            step_losses.append(loss)
            buf = grad if buf is None else 0.9 * buf + grad
            theta = theta - 0.02 * buf
    np.testing.assert_allclose(result.params, theta, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.history.step_loss, step_losses, rtol=1e-9)
    sizes = [25, 25, 25, 25, 3]
    for epoch in range(4):
        batch_losses = step_losses[5 * epoch:5 * epoch + 5]
        expected = sum(loss * size for loss, size in zip(batch_losses, sizes)) / 103
        assert result.history.train_loss[epoch] == pytest.approx(expected, rel=1e-9)
    assert result.history.steps[-1] == 20


def test_shuffle_is_seeded(objective):
    data = _data(n=200)
    def run(seed, shuffle=True):
        return fit(objective, data, optimizer="sgd", lr=0.01, epochs=3, batch_size=16, seed=seed,
                   shuffle=shuffle, progress=False).params

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
    assert not np.array_equal(run(1), run(1, shuffle=False))


def test_background_shuffles_equal_sequential_ones():
    from symdiff.training.driver import _Permutations

    permutations = _Permutations(1000, np.random.default_rng(5))
    reference_rng, reference = np.random.default_rng(5), np.arange(1000)
    for epoch in range(4):
        drawn = permutations.advance(prefetch=epoch < 3).copy()
        reference_rng.shuffle(reference)
        np.testing.assert_array_equal(drawn, reference)
    permutations.close()
    assert permutations.pending is None


def test_minibatches_do_not_copy_the_data_set_per_epoch(objective):
    n = 200_000
    data = _data(n=n)
    data_bytes = sum(v.nbytes for v in data.values())
    epoch_peaks = []

    def measure(epoch, params, history):
        current, peak = tracemalloc.get_traced_memory()
        epoch_peaks.append(peak - current)
        tracemalloc.reset_peak()

    tracemalloc.start()
    try:
        fit(objective, data, optimizer="sgd", lr=0.01, epochs=4, batch_size=4096, progress=False,
            callbacks=[measure])
    finally:
        tracemalloc.stop()
    # epoch 0 also pays for the one-time setup (the row-major table, the permutation);
    # later epochs may allocate batch-sized temporaries, never a data-set-sized copy
    assert max(epoch_peaks[1:]) < 0.05 * data_bytes, (epoch_peaks, data_bytes)


def test_data_forms_agree(objective):
    data = _data(n=50)
    by_symbol = {X0: data["x0"], X1: data["x1"], Y: data["y"]}
    array = np.column_stack([data["x0"], data["x1"], data["y"]])
    results = [fit(objective, d, optimizer="sgd", lr=0.05, epochs=5, progress=False).params
               for d in (data, by_symbol, array)]
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_bad_data_and_arguments_name_the_problem(objective):
    data = _data(n=20)
    with pytest.raises(DataError, match="'y'"):
        fit(objective, {"x0": data["x0"], "x1": data["x1"]}, epochs=1, progress=False)
    with pytest.raises(DataError, match="differ in length"):
        fit(objective, {**data, "y": data["y"][:-1]}, epochs=1, progress=False)
    with pytest.raises(DataError, match="non-finite value at row 3"):
        fit(objective, {**data, "x1": np.where(np.arange(20) == 3, np.nan, data["x1"])}, epochs=1,
            progress=False)
    with pytest.raises(DataError, match=r"shape \(n, 3\)"):
        fit(objective, np.ones((20, 2)), epochs=1, progress=False)
    with pytest.raises(FormulaError, match="'q'"):
        fit(objective, data, init={"q": 1.0}, epochs=1, progress=False)
    with pytest.raises(DataError, match="3 parameters"):
        fit(objective, data, init=[1.0, 2.0], epochs=1, progress=False)
    with pytest.raises(DataError, match="'b' the value nan"):
        fit(objective, data, init={"b": float("nan")}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(objective, data, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(objective, data, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="fraction in"):
        fit(objective, data, validation=1, progress=False)


def test_init_array_is_not_modified_and_dataframes_work(objective):
    data = _data(n=40)
    init = np.array([0.5, 0.5, 0.5])
    result = fit(objective, data, optimizer="sgd", lr=0.05, epochs=5, init=init, progress=False)
    np.testing.assert_array_equal(init, [0.5, 0.5, 0.5])
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"y": data["y"], "x1": data["x1"], "x0": data["x0"], "extra": 1.0})
    from_frame = fit(objective, frame, optimizer="sgd", lr=0.05, epochs=5, init=init, progress=False)
    np.testing.assert_array_equal(from_frame.params, result.params)


def test_init_mapping_sets_named_params(objective):
    result = fit(objective, _data(n=20), optimizer="sgd", lr=0.0, epochs=1, init={"b": 2.5, W[0]: -1.0},
                 progress=False)
    assert result.params_dict[B] == 2.5 and result.params_dict[W[0]] == -1.0
    assert abs(result.params_dict[W[1]]) < 0.1


def test_divergence_names_epoch_and_step_and_keeps_finite_params(objective):
    with pytest.raises(DivergenceError, match="smaller learning rate") as caught:
        fit(objective, _data(), optimizer="sgd", lr=10.0, epochs=1000, progress=False)
    error = caught.value
    assert error.epoch is not None and error.step == error.epoch + 1
    assert f"epoch {error.epoch}" in str(error) and f"step {error.step}" in str(error)
    assert np.isfinite(error.params).all()
    assert len(error.history) == error.epoch


def test_parameters_overflowing_is_divergence_not_a_data_error(objective):
    class Overflowing(optim.SGD):
        def _update(self, theta, grad, state):
            super()._update(theta, grad, state)
            if state["step"] == 3:
                theta[1] = np.inf

    with pytest.raises(DivergenceError, match="epoch 3, step 4") as caught:
        fit(objective, _data(), optimizer=Overflowing(lr=0.01), epochs=10, progress=False)
    assert np.isfinite(caught.value.params).all()


def test_ctrl_c_returns_result_so_far(objective):
    def interrupt(epoch, params, history):
        if epoch == 3:
            raise KeyboardInterrupt

    result = fit(objective, _data(), optimizer="adam", lr=0.01, epochs=50, callbacks=[interrupt],
                 progress=False)
    assert result.interrupted and result.stop_reason == "interrupted"
    assert len(result.history) == 4 and np.isfinite(result.params).all()


def test_ctrl_c_inside_an_update_restores_the_last_complete_step(objective):
    class Flaky(optim.SGD):
        def _update(self, theta, grad, state):
            if state["step"] == 5:
                theta += 1e6
                raise KeyboardInterrupt
            super()._update(theta, grad, state)

    data = _data()
    result = fit(objective, data, optimizer=Flaky(lr=0.05), epochs=20, init=np.zeros(3), progress=False)
    expected = fit(objective, data, optimizer=optim.SGD(lr=0.05), epochs=4, init=np.zeros(3), progress=False)
    assert result.interrupted
    np.testing.assert_array_equal(result.params, expected.params)


def test_callback_can_stop(objective):
    seen = []
    result = fit(objective, _data(), optimizer="sgd", lr=0.01, epochs=30, progress=False,
                 callbacks=[lambda e, p, h: seen.append((e, p.copy())) or e == 6])
    assert result.stop_reason == "callback" and len(result.history) == 7 and len(seen) == 7
    np.testing.assert_array_equal(seen[-1][1], result.params)


def test_validation_fraction_and_early_stopping(objective):
    rng = np.random.default_rng(4)
    n = 60
    x0, x1 = rng.normal(size=n), rng.normal(size=n)
    data = {"x0": x0, "x1": x1, "y": np.sin(3 * x0) + rng.normal(scale=1.0, size=n)}
    result = fit(objective, data, optimizer="adam", lr=0.3, epochs=500, validation=0.3,
                 early_stopping=10, progress=False)
    history = result.history
    assert np.isfinite(history.val_loss).all()
    assert result.stop_reason == "early_stopping" and len(history) < 500
    best = int(np.argmin(history.val_loss))
    assert result.best_epoch == best and len(history) == best + 11
    again = fit(objective, data, optimizer="adam", lr=0.3, epochs=500, validation=0.3,
                early_stopping=10, progress=False)
    np.testing.assert_array_equal(again.params, result.params)


def test_explicit_validation_set_loss_matches_reference(objective):
    data, held = _data(n=300, seed=1), _data(n=100, seed=2)
    result = fit(objective, data, optimizer="sgd", lr=0.05, epochs=10, validation=held, progress=False)
    expected, _ = _reference_gradient(result.params, held)
    assert result.history.val_loss[-1] == pytest.approx(expected, rel=1e-9)


def test_schedule_rates_recorded_and_optimizer_lr_restored(objective):
    opt = optim.SGD(lr=0.04)
    result = fit(objective, _data(), optimizer=opt, epochs=12, schedule=schedules.StepLR(5, 0.5),
                 progress=False)
    np.testing.assert_allclose(result.history.lr, [0.04 * 0.5 ** (e // 5) for e in range(12)])
    assert opt.lr == 0.04


def test_plateau_schedule_watches_validation_loss(objective):
    data = _data(n=200)
    result = fit(objective, data, optimizer="sgd", lr=0.01, epochs=40, validation=0.25,
                 schedule=schedules.ReduceLROnPlateau(factor=0.5, patience=0, threshold=0.5), progress=False)
    rates = result.history.lr
    assert rates[0] == 0.01 and min(rates) < 0.01


def test_clip_norm_and_clip_value_match_numpy_loop(objective):
    data = _data()
    for clip in ({"clip_norm": 0.5}, {"clip_value": 0.2}, {"clip_value": 0.3, "clip_norm": 0.4}):
        result = fit(objective, data, optimizer=optim.SGD(lr=0.1), epochs=30, init=np.zeros(3),
                     progress=False, **clip)
        theta, norms = np.zeros(3), []
        for _ in range(30):
            _, grad = _reference_gradient(theta, data)
            norms.append(np.linalg.norm(grad))
            if "clip_value" in clip:
                grad = np.clip(grad, -clip["clip_value"], clip["clip_value"])
            if "clip_norm" in clip:
                norm = np.linalg.norm(grad)
                grad = grad * min(1.0, clip["clip_norm"] / (norm + 1e-6))
            theta = theta - 0.1 * grad
        np.testing.assert_allclose(result.params, theta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.history.grad_norm, norms, rtol=1e-9)


def test_l2_penalty_equals_weight_decay_and_shows_in_gradient(objective):
    data = _data()
    penalized = regularized(objective, l2=0.05)
    extra = sp.expand(penalized.gradient()[0] - objective.gradient()[0])
    assert extra.free_symbols == {W[0]} and float(extra.subs(W[0], 3.0)) == pytest.approx(0.3)
    plain = fit(objective, data, optimizer=optim.SGD(lr=0.05, momentum=0.5, weight_decay=0.1), epochs=40,
                init=np.ones(3), progress=False)
    with_penalty = fit(penalized, data, optimizer=optim.SGD(lr=0.05, momentum=0.5), epochs=40,
                       init=np.ones(3), progress=False)
    np.testing.assert_allclose(with_penalty.params, plain.params, rtol=1e-9)


def test_l1_penalty_gradient_and_bias_left_out(objective):
    penalized = regularized(objective, l1=0.3, params=W)
    gradient = penalized.gradient()
    reference = [sp.diff(penalized.loss, p) for p in penalized.params]
    for ours, theirs, p in zip(gradient, reference, penalized.params):
        point = {W[0]: 0.7, W[1]: -1.3, B: 0.2, X0: 0.5, X1: -2.0, Y: 1.0}
        assert float(ours.subs(point)) == pytest.approx(float(theirs.subs(point)))
    assert "sign" in str(gradient[0]) and "sign" not in str(gradient[2])
    assert l2([W[0]], 0.5) == 0.5 * W[0] ** 2
    assert l1(W, 2) == 2 * sp.Abs(W[0]) + 2 * sp.Abs(W[1])
    with pytest.raises(FormulaError, match="x0"):
        regularized(objective, l2=0.1, params=[X0])
    with pytest.raises(ValueError):
        l2(W, -1.0)


def test_l1_drives_a_useless_weight_to_zero(objective):
    rng = np.random.default_rng(7)
    n = 300
    x0, x1 = rng.normal(size=n), rng.normal(size=n)
    data = {"x0": x0, "x1": x1, "y": 2.0 * x0 + 0.05 * rng.normal(size=n)}
    result = fit(regularized(objective, l1=0.05, params=W), data, optimizer="sgd", lr=0.01,
                 epochs=3000, progress=False)
    assert abs(result.params_dict[W[1]]) < 5e-3 < result.params_dict[W[0]]


def test_progress_is_silent_off_a_terminal(objective, capsys):
    fit(objective, _data(n=30), optimizer="sgd", lr=0.01, epochs=5, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_on_a_terminal(objective, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    fit(objective, _data(n=30), optimizer="sgd", lr=0.01, epochs=5, validation=0.2, progress=True)
    shown = terminal.getvalue()
    assert "5/5" in shown and "loss=" in shown and "val=" in shown
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    fit(objective, _data(n=30), optimizer="sgd", lr=0.01, epochs=5, progress=False)
    assert quiet.getvalue() == ""


def test_history_plot_saves_png(objective, tmp_path):
    pytest.importorskip("matplotlib")
    result = fit(objective, _data(), optimizer="sgd", lr=0.05, epochs=20, validation=0.2, progress=False)
    path = tmp_path / "curves.png"
    figure = result.history.plot(path)
    assert path.stat().st_size > 1000 and open(path, "rb").read(4) == b"\x89PNG"
    assert len(figure.axes[0].lines) == 2
    losses = result.history.train_loss + result.history.val_loss
    assert figure.axes[0].get_yscale() == ("log" if max(losses) > 30 * min(losses) else "linear")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = result.history.plot()
    assert plt.fignum_exists(shown.number) and shown.axes[0].get_yscale() in ("linear", "log")
    plt.close(shown)
    columns = result.history.as_dict()
    assert set(columns) >= {"train_loss", "val_loss", "lr", "grad_norm", "time", "steps"}
    assert np.all(np.diff(columns["time"]) >= 0) and math.isfinite(columns["time"][-1])


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"])
def test_every_named_optimizer_reduces_the_loss(objective, name):
    result = fit(objective, _data(), optimizer=name, lr=0.01, epochs=30, batch_size=32, progress=False)
    assert result.history.train_loss[-1] < 0.5 * result.history.train_loss[0]


@pytest.mark.parametrize("name, settings", [("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.01)),
                                            ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
                                            ("SGD", dict(lr=0.02, momentum=0.9, nesterov=True))])
def test_minibatch_fit_matches_a_torch_training_loop_when_installed(objective, name, settings):
    torch = pytest.importorskip("torch")
    data = _data(n=150)
    features = torch.tensor(np.column_stack([data["x0"], data["x1"]]))
    target = torch.tensor(data["y"])
    weights = torch.tensor([0.2, -0.1], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    # one parameter tensor per symbol keeps torch's per-element update identical to ours
    opt = getattr(torch.optim, name)([weights, bias], **settings)
    for _ in range(3):
        for start in range(0, 150, 40):
            opt.zero_grad()
            residual = features[start:start + 40] @ weights + bias - target[start:start + 40]
            (residual ** 2).mean().backward()
            opt.step()
    expected = np.concatenate([weights.detach().numpy(), [bias.item()]])
    result = fit(objective, data, optimizer=getattr(optim, name)(**settings), epochs=3, batch_size=40,
                 shuffle=False, init=[0.2, -0.1, 0.3], progress=False)
    np.testing.assert_allclose(result.params, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch_size, shuffle", [(None, True), (16, False), (16, True)])
def test_float32_kernels_follow_the_float64_fit(batch_size, shuffle):
    M = sp.MatrixSymbol
    x, y = M("x", 3, 1), M("y", 2, 1)
    W, b = M("W", 2, 3), M("b", 2, 1)
    obj = sd.Objective(sd.losses.mse(W * x + b, y), [W, b], [x, y])
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 3))
    Y = X @ np.array([[1.0, -2.0, 0.5], [0.3, 0.0, 2.0]]).T + rng.normal(0, 0.1, size=(100, 2))
    runs = [sd.fit(obj, {x: X, y: Y}, optimizer="adam", lr=0.05, epochs=40, batch_size=batch_size,
                   shuffle=shuffle, init="zeros", progress=False, dtype=dtype)
            for dtype in (np.float64, np.float32)]
    want, got = (r.history.train_loss for r in runs)
    np.testing.assert_allclose(got, want, rtol=2e-4)    # float32 rounding, 40 epochs of Adam
    assert runs[1].params.dtype == np.float64
    with pytest.raises(sd.DataError, match="non-finite value at row 0"):
        sd.fit(obj, {x: np.full((4, 3), 1e39), y: Y[:4]}, epochs=1, progress=False, dtype=np.float32)
