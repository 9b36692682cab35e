"""Optimizers against their published update rules, written out here per component.

Each reference below is the rule as torch.optim documents it, coded as plain
Python loops over steps and components, independent of symdiff.optim. Both run on
the same problem: a noisy, ill-conditioned quadratic whose gradient depends on
the current parameters, so any difference in the rule changes the trajectory.
"""

import math

import numpy as np
import pytest

from symdiff import optim

STEPS = 150
SIZE = 5


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(SIZE, SIZE))
    curvature = q @ np.diag(np.logspace(-1, 1, SIZE)) @ q.T / SIZE
    target = rng.normal(size=SIZE)
    noise = rng.normal(scale=0.3, size=(STEPS, SIZE))
    start = rng.normal(size=SIZE)

    def gradient(theta, t):
        return [float(v) for v in curvature @ (np.asarray(theta) - target) + noise[t]]

    return start, gradient


def _run_ours(opt, start, gradient):
    theta = np.array(start, dtype=float)
    path = []
    for t in range(STEPS):
        opt.step(theta, np.array(gradient(theta, t)))
        path.append(theta.copy())
    return np.array(path)


def _run_reference(update, start, gradient):
    theta = [float(v) for v in start]
    state = {}
    path = []
    for t in range(STEPS):
        theta = update(theta, gradient(theta, t), t + 1, state)
        path.append(list(theta))
    return np.array(path)


def sgd_reference(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    def update(theta, grad, t, state):
        buf = state.setdefault("buf", [0.0] * len(theta))
        new = []
        for i, (p, g) in enumerate(zip(theta, grad)):
            g = g + weight_decay * p
            if momentum != 0:
                buf[i] = g if t == 1 else momentum * buf[i] + (1 - dampening) * g
                g = g + momentum * buf[i] if nesterov else buf[i]
            new.append(p - lr * g)
        return new
    return update


def adagrad_reference(lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    def update(theta, grad, t, state):
        acc = state.setdefault("sum", [initial_accumulator_value] * len(theta))
        clr = lr / (1 + (t - 1) * lr_decay)
        new = []
        for i, (p, g) in enumerate(zip(theta, grad)):
            g = g + weight_decay * p
            acc[i] += g * g
            new.append(p - clr * g / (math.sqrt(acc[i]) + eps))
        return new
    return update


def rmsprop_reference(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    def update(theta, grad, t, state):
        v = state.setdefault("v", [0.0] * len(theta))
        m = state.setdefault("m", [0.0] * len(theta))
        b = state.setdefault("b", [0.0] * len(theta))
        new = []
        for i, (p, g) in enumerate(zip(theta, grad)):
            g = g + weight_decay * p
            v[i] = alpha * v[i] + (1 - alpha) * g * g
            v_tilde = v[i]
            if centered:
                m[i] = alpha * m[i] + (1 - alpha) * g
                v_tilde = v[i] - m[i] ** 2
            if momentum > 0:
                b[i] = momentum * b[i] + g / (math.sqrt(v_tilde) + eps)
                new.append(p - lr * b[i])
            else:
                new.append(p - lr * g / (math.sqrt(v_tilde) + eps))
        return new
    return update


def adam_reference(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    beta1, beta2 = betas

    def update(theta, grad, t, state):
        m = state.setdefault("m", [0.0] * len(theta))
        v = state.setdefault("v", [0.0] * len(theta))
        vmax = state.setdefault("vmax", [0.0] * len(theta))
        new = []
        for i, (p, g) in enumerate(zip(theta, grad)):
            if decoupled:
                p = p - lr * weight_decay * p
            else:
                g = g + weight_decay * p
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1 ** t)
            if amsgrad:
                vmax[i] = max(vmax[i], v[i])
                v_hat = vmax[i] / (1 - beta2 ** t)
            else:
                v_hat = v[i] / (1 - beta2 ** t)
            new.append(p - lr * m_hat / (math.sqrt(v_hat) + eps))
        return new
    return update


CASES = [
    (optim.SGD, sgd_reference, dict(lr=0.05)),
    (optim.SGD, sgd_reference, dict(lr=0.03, momentum=0.9)),
    (optim.SGD, sgd_reference, dict(lr=0.03, momentum=0.8, dampening=0.3, weight_decay=0.05)),
    (optim.SGD, sgd_reference, dict(lr=0.03, momentum=0.9, nesterov=True)),
    (optim.SGD, sgd_reference, dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.1)),
    (optim.Adagrad, adagrad_reference, dict(lr=0.3)),
    (optim.Adagrad, adagrad_reference, dict(lr=0.5, lr_decay=0.01, weight_decay=0.02)),
    (optim.Adagrad, adagrad_reference, dict(lr=0.2, initial_accumulator_value=0.5, eps=1e-3)),
    (optim.RMSprop, rmsprop_reference, dict(lr=0.01)),
    (optim.RMSprop, rmsprop_reference, dict(lr=0.01, alpha=0.9, weight_decay=0.05)),
    (optim.RMSprop, rmsprop_reference, dict(lr=0.005, centered=True, momentum=0.7)),
    (optim.RMSprop, rmsprop_reference, dict(lr=0.005, momentum=0.9, eps=1e-4)),
    (optim.RMSprop, rmsprop_reference, dict(lr=0.01, centered=True, alpha=0.95)),
    (optim.Adam, adam_reference, dict(lr=0.05)),
    (optim.Adam, adam_reference, dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    (optim.Adam, adam_reference, dict(lr=0.05, amsgrad=True, eps=1e-6)),
    (optim.AdamW, lambda **kw: adam_reference(decoupled=True, **kw), dict(lr=0.05, weight_decay=0.01)),
    (optim.AdamW, lambda **kw: adam_reference(decoupled=True, **kw),
     dict(lr=0.05, weight_decay=0.2, amsgrad=True, betas=(0.7, 0.9))),
]


@pytest.mark.parametrize("cls, reference, settings", CASES,
                         ids=[f"{c.__name__}-{s}" for c, _, s in CASES])
def test_matches_published_rule(cls, reference, settings):
    start, gradient = _problem()
    ours = _run_ours(cls(**settings), start, gradient)
    expected = _run_reference(reference(**settings), start, gradient)
    assert np.abs(expected[-1] - start).max() > 0.1, "the test problem must actually move"
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_adamw_default_weight_decay_is_applied():
    start, gradient = _problem(1)
    ours = _run_ours(optim.AdamW(lr=0.05), start, gradient)
    expected = _run_reference(adam_reference(lr=0.05, weight_decay=0.01, decoupled=True), start, gradient)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_torch_defaults():
    rates = (optim.SGD().lr, optim.Adagrad().lr, optim.RMSprop().lr, optim.Adam().lr)
    assert rates == (1e-3, 1e-2, 1e-2, 1e-3)
    assert optim.Adagrad().eps == 1e-10 and optim.RMSprop().alpha == 0.99
    assert optim.Adam().betas == (0.9, 0.999) and optim.Adam().weight_decay == 0.0
    assert optim.AdamW().weight_decay == 1e-2


def test_reset_forgets_state_and_lr_is_settable():
    start, gradient = _problem()
    opt = optim.Adam(lr=0.05)
    first = _run_ours(opt, start, gradient)
    opt.reset()
    assert opt.state is None
    np.testing.assert_array_equal(_run_ours(opt, start, gradient), first)
    opt.reset()
    opt.lr = 0.0
    theta = np.array(start, dtype=float)
    opt.step(theta, np.ones(SIZE))
    np.testing.assert_array_equal(theta, start)


def test_step_does_not_modify_gradient():
    theta = np.ones(3)
    grad = np.array([1.0, -2.0, 3.0])
    optim.SGD(lr=0.1, weight_decay=0.5, momentum=0.9, nesterov=True).step(theta, grad)
    np.testing.assert_array_equal(grad, [1.0, -2.0, 3.0])


@pytest.mark.parametrize("make, message", [
    (lambda: optim.SGD(lr=-1), "learning rate"),
    (lambda: optim.SGD(lr=0.1, nesterov=True), "Nesterov"),
    (lambda: optim.SGD(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (lambda: optim.Adam(betas=(0.9, 1.0)), "beta parameter at index 1"),
    (lambda: optim.Adam(eps=-1e-8), "epsilon"),
    (lambda: optim.RMSprop(momentum=-0.1), "momentum"),
    (lambda: optim.Adagrad(weight_decay=-1), "weight_decay"),
])
def test_invalid_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_make_optimizer_by_name():
    assert isinstance(optim.make_optimizer("adam"), optim.Adam)
    nesterov = optim.make_optimizer("Nesterov", lr=0.1)
    assert nesterov.nesterov and nesterov.momentum == 0.9 and nesterov.lr == 0.1
    assert optim.make_optimizer("momentum", lr=0.2).momentum == 0.9
    assert optim.make_optimizer("rmsprop").lr == 1e-2
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'"):
        optim.make_optimizer("adamax")
    with pytest.raises(TypeError):
        optim.make_optimizer(3)


def test_clip_grad_norm_and_value():
    grad = np.array([3.0, 4.0])
    assert optim.clip_grad_norm(grad, 1.0) == 5.0
    np.testing.assert_allclose(grad, np.array([3.0, 4.0]) / (5.0 + 1e-6))
    small = np.array([0.3, 0.4])
    optim.clip_grad_norm(small, 1.0)
    np.testing.assert_array_equal(small, [0.3, 0.4])
    values = np.array([-5.0, 0.5, 2.0])
    optim.clip_grad_value(values, 1.0)
    np.testing.assert_array_equal(values, [-1.0, 0.5, 1.0])


def _torch_path(cls_name, settings, start, gradient):
    torch = pytest.importorskip("torch")
    param = torch.tensor(np.array(start, dtype=float), requires_grad=True)
    opt = getattr(torch.optim, cls_name)([param], **settings)
    path = []
    for t in range(STEPS):
        param.grad = torch.tensor(gradient(param.detach().numpy(), t), dtype=torch.float64)
        opt.step()
        path.append(param.detach().numpy().copy())
    return np.array(path)


@pytest.mark.parametrize("cls, reference, settings", CASES,
                         ids=[f"torch-{c.__name__}-{s}" for c, _, s in CASES])
def test_matches_torch_when_installed(cls, reference, settings):
    start, gradient = _problem(2)
    expected = _torch_path(cls.__name__, settings, start, gradient)
    ours = _run_ours(cls(**settings), start, gradient)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-11)
