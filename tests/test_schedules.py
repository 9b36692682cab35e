"""Learning-rate schedules against their defining formulas, and against torch when installed."""

import math

import numpy as np
import pytest

from symdiff import schedules

EPOCHS = 40
BASE = 0.3


def _rates(schedule, losses=None, base=BASE, epochs=EPOCHS):
    losses = losses if losses is not None else [1.0] * epochs
    epochs = len(losses)
    rates = [schedule.start(base)]
    for epoch in range(epochs - 1):
        rates.append(schedule.advance(losses[epoch]))
    return np.array(rates)


def test_step_lr():
    expected = [BASE * 0.5 ** (e // 7) for e in range(EPOCHS)]
    np.testing.assert_allclose(_rates(schedules.StepLR(7, gamma=0.5)), expected, rtol=1e-15)


def test_exponential_lr():
    expected = [BASE * 0.9 ** e for e in range(EPOCHS)]
    np.testing.assert_allclose(_rates(schedules.ExponentialLR(0.9)), expected, rtol=1e-15)


def test_cosine_annealing_reaches_eta_min_at_t_max_and_rises_after():
    rates = _rates(schedules.CosineAnnealingLR(T_max=15, eta_min=0.01))
    expected = [0.01 + (BASE - 0.01) * (1 + math.cos(math.pi * e / 15)) / 2 for e in range(EPOCHS)]
    np.testing.assert_allclose(rates, expected, rtol=1e-14)
    assert rates[15] == pytest.approx(0.01) and rates[16] > rates[15]


def test_linear_warmup_alone_and_then_exponential():
    warm = _rates(schedules.LinearWarmup(5, start_factor=0.2))
    ramp = [BASE * (0.2 + 0.8 * min(e, 5) / 5) for e in range(EPOCHS)]
    np.testing.assert_allclose(warm, ramp, rtol=1e-15)
    chained = _rates(schedules.LinearWarmup(5, start_factor=0.2, after=schedules.ExponentialLR(0.8)))
    expected = ramp[:5] + [BASE * 0.8 ** (e - 5) for e in range(5, EPOCHS)]
    np.testing.assert_allclose(chained, expected, rtol=1e-15)


def _plateau_reference(losses, base, factor, patience, threshold, min_lr, cooldown):
    """torch's documented rule, written out: reduce after more than `patience` non-improving epochs."""
    lr, best, bad, cool = base, math.inf, 0, 0
    rates = [lr]
    for loss in losses[:-1]:
        if loss < best * (1 - threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            if lr - new > 1e-8:
                lr = new
            cool, bad = cooldown, 0
        rates.append(lr)
    return np.array(rates)


@pytest.mark.parametrize("settings", [
    dict(factor=0.5, patience=2, threshold=1e-4, min_lr=0.0, cooldown=0),
    dict(factor=0.1, patience=0, threshold=0.05, min_lr=0.001, cooldown=2),
    dict(factor=0.3, patience=4, threshold=1e-4, min_lr=0.0, cooldown=1),
])
def test_reduce_on_plateau(settings):
    rng = np.random.default_rng(3)
    losses = list(np.maximum.accumulate(rng.random(EPOCHS))[::-1] + 0.05 * rng.random(EPOCHS))
    ours = _rates(schedules.ReduceLROnPlateau(**settings), losses)
    expected = _plateau_reference(losses, BASE, **settings)
    np.testing.assert_allclose(ours, expected, rtol=1e-15)
    assert ours[-1] < BASE


def test_plateau_on_a_flat_loss_waits_patience_epochs():
    rates = _rates(schedules.ReduceLROnPlateau(factor=0.5, patience=3), [1.0] * 10)
    # epoch 0 sets best; epochs 1..4 are four bad epochs > patience 3, so epoch 5 runs at half rate
    assert list(rates[:5]) == [BASE] * 5 and rates[5] == BASE / 2


def test_function_schedule_and_bad_arguments():
    rates = _rates(schedules.as_schedule(lambda e: 1.0 / (1 + e)), epochs=5)
    np.testing.assert_allclose(rates, [1.0 / (1 + e) for e in range(5)])
    with pytest.raises(ValueError, match="step_size"):
        schedules.StepLR(0)
    with pytest.raises(ValueError, match="factor"):
        schedules.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="start_factor"):
        schedules.LinearWarmup(3, start_factor=0)
    with pytest.raises(TypeError):
        schedules.as_schedule(0.1)


def test_schedule_restarts_cleanly():
    schedule = schedules.ReduceLROnPlateau(factor=0.5, patience=0)
    first = _rates(schedule, [1.0] * 6)
    np.testing.assert_array_equal(_rates(schedule, [1.0] * 6), first)


def _torch_rates(make, losses=None):
    torch = pytest.importorskip("torch")
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=BASE)
    scheduler = make(torch.optim.lr_scheduler, opt)
    rates = []
    for epoch in range(EPOCHS):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if losses is None:
            scheduler.step()
        else:
            scheduler.step(losses[epoch])
    return np.array(rates)


@pytest.mark.parametrize("ours, theirs", [
    (lambda: schedules.StepLR(6, 0.3), lambda s, o: s.StepLR(o, 6, 0.3)),
    (lambda: schedules.ExponentialLR(0.93), lambda s, o: s.ExponentialLR(o, 0.93)),
    (lambda: schedules.CosineAnnealingLR(12, 0.02), lambda s, o: s.CosineAnnealingLR(o, 12, 0.02)),
    (lambda: schedules.LinearWarmup(4, 0.25), lambda s, o: s.LinearLR(o, 0.25, 1.0, 4)),
    (lambda: schedules.LinearWarmup(4, 0.25, after=schedules.CosineAnnealingLR(20)),
     lambda s, o: s.SequentialLR(o, [s.LinearLR(o, 0.25, 1.0, 4), s.CosineAnnealingLR(o, 20)], [4])),
])
def test_matches_torch_when_installed(ours, theirs):
    expected = _torch_rates(theirs)
    np.testing.assert_allclose(_rates(ours()), expected, rtol=1e-12)


def test_plateau_matches_torch_when_installed():
    rng = np.random.default_rng(5)
    losses = list(1.0 / (1 + np.arange(EPOCHS)) + 0.2 * rng.random(EPOCHS))
    expected = _torch_rates(lambda s, o: s.ReduceLROnPlateau(o, factor=0.5, patience=2, cooldown=1), losses)
    ours = _rates(schedules.ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1), losses)
    np.testing.assert_allclose(ours, expected, rtol=1e-15)
