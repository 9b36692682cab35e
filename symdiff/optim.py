"""Gradient-descent optimizers with torch.optim's names, defaults and update rules.

Each optimizer updates a float64 1-D parameter vector in place from its gradient:
``opt.step(theta, grad)``. Its state (momentum buffers, running averages, step
count) is created on the first step and dropped by ``opt.reset()``; ``opt.lr`` is a
plain attribute that learning-rate schedules change between epochs. An
optimizer object keeps the state of one run at a time: give concurrent fits their own.

The update rules are torch.optim's, term for term (where eps goes, bias
correction, how weight decay enters, Nesterov's form), because that is what users
know and compare against; ``docs/optimizers.md`` gives each as a formula next to
the textbook form. ``maximize`` is not supported: minimize the negated objective.

Plain (batch) gradient descent is :class:`SGD` with the whole data set as one batch.
"""

import math

import numpy as np

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW",
    "make_optimizer", "clip_grad_norm", "clip_grad_value",
]


def _check_nonnegative(name, value):
    if not (isinstance(value, (int, float, np.floating, np.integer)) and value >= 0):
        raise ValueError(f"Invalid {name} value: {value!r} (must be a number >= 0)")
    return float(value)


def _check_betas(betas):
    try:
        beta1, beta2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid betas: {betas!r} (must be a pair of numbers in [0, 1))") from None
    for index, beta in enumerate((beta1, beta2)):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta} (must be in [0, 1))")
    return beta1, beta2


class Optimizer:
    """Base class: a learning rate, hyperparameters and lazily created state.

    Subclasses implement ``_new_state(size)`` returning a dict of arrays and
    ``_update(theta, grad, state)`` that changes ``theta`` in place.
    """

    def __init__(self, lr):
        self.lr = _check_nonnegative("learning rate", lr)
        self._state = None

    def reset(self):
        """Forget all state, so the next step is a first step again."""
        self._state = None

    @property
    def state(self):
        """The optimizer's state (``None`` before the first step); read-only by convention."""
        return self._state

    def step(self, theta, grad):
        """Update ``theta`` (float64, 1-D, writable) in place from ``grad``; ``grad`` is not modified."""
        state = self._state
        if state is None or state["size"] != theta.shape[0]:
            state = self._state = self._start(theta, grad)
        state["step"] += 1
        self._update(theta, grad, state)

    def _start(self, theta, grad):
        if not (isinstance(theta, np.ndarray) and theta.dtype == np.float64 and theta.ndim == 1):
            raise TypeError("optimizer step expects theta as a 1-D float64 numpy array")
        if np.shape(grad) != theta.shape:
            raise ValueError(f"gradient shape {np.shape(grad)} does not match parameters {theta.shape}")
        state = {"size": theta.shape[0], "step": 0, "scratch": np.empty_like(theta)}
        state.update(self._new_state(theta.shape[0]))
        return state

    def _new_state(self, size):
        return {}

    def _update(self, theta, grad, state):
        raise NotImplementedError

    def _with_weight_decay(self, theta, grad, state):
        """grad + weight_decay * theta in a scratch buffer (torch's L2-style decay)."""
        if self.weight_decay == 0.0:
            return grad
        out = state["scratch"]
        np.multiply(theta, self.weight_decay, out=out)
        out += grad
        return out

    def _settings(self):
        return {"lr": self.lr}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as torch.optim.SGD.

    g = grad + weight_decay*theta;  b = g on the first step, else momentum*b + (1-dampening)*g;
    direction = g + momentum*b if nesterov else b (g when momentum == 0);  theta -= lr*direction.
    """

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(lr)
        self.momentum = _check_nonnegative("momentum", momentum)
        self.dampening = float(dampening)
        self.weight_decay = _check_nonnegative("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _new_state(self, size):
        return {"momentum_buffer": np.zeros(size)} if self.momentum != 0 else {}

    def _update(self, theta, grad, state):
        g = self._with_weight_decay(theta, grad, state)
        if self.momentum != 0:
            buf = state["momentum_buffer"]
            if state["step"] == 1:
                np.copyto(buf, g)
            else:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * g
            if self.nesterov:
                g = g + self.momentum * buf
            else:
                g = buf
        theta -= self.lr * g

    def _settings(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    """AdaGrad, as torch.optim.Adagrad.

    g = grad + weight_decay*theta;  clr = lr / (1 + (t-1)*lr_decay);  s += g**2;
    theta -= clr * g / (sqrt(s) + eps).
    """

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10):
        super().__init__(lr)
        self.lr_decay = _check_nonnegative("lr_decay", lr_decay)
        self.weight_decay = _check_nonnegative("weight_decay", weight_decay)
        self.initial_accumulator_value = _check_nonnegative(
            "initial_accumulator_value", initial_accumulator_value)
        self.eps = _check_nonnegative("epsilon", eps)

    def _new_state(self, size):
        return {"sum": np.full(size, self.initial_accumulator_value)}

    def _update(self, theta, grad, state):
        g = self._with_weight_decay(theta, grad, state)
        clr = self.lr / (1.0 + (state["step"] - 1) * self.lr_decay)
        total = state["sum"]
        total += g * g
        denom = np.sqrt(total)
        denom += self.eps
        theta -= clr * (g / denom)

    def _settings(self):
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps}


class RMSprop(Optimizer):
    """RMSprop, as torch.optim.RMSprop (eps added outside the square root).

    g = grad + weight_decay*theta;  v = alpha*v + (1-alpha)*g**2;
    centered: m = alpha*m + (1-alpha)*g, d = sqrt(v - m**2) + eps, else d = sqrt(v) + eps;
    momentum > 0: b = momentum*b + g/d, theta -= lr*b;  else theta -= lr*g/d.
    """

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(lr)
        self.alpha = _check_nonnegative("alpha", alpha)
        self.eps = _check_nonnegative("epsilon", eps)
        self.weight_decay = _check_nonnegative("weight_decay", weight_decay)
        self.momentum = _check_nonnegative("momentum", momentum)
        self.centered = bool(centered)

    def _new_state(self, size):
        state = {"square_avg": np.zeros(size)}
        if self.centered:
            state["grad_avg"] = np.zeros(size)
        if self.momentum > 0:
            state["momentum_buffer"] = np.zeros(size)
        return state

    def _update(self, theta, grad, state):
        g = self._with_weight_decay(theta, grad, state)
        alpha = self.alpha
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1.0 - alpha) * (g * g)
        if self.centered:
            grad_avg = state["grad_avg"]
            grad_avg *= alpha
            grad_avg += (1.0 - alpha) * g
            denom = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            denom = np.sqrt(square_avg)
        denom += self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / denom
            theta -= self.lr * buf
        else:
            theta -= self.lr * (g / denom)

    def _settings(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}


class Adam(Optimizer):
    """Adam, as torch.optim.Adam: bias-corrected moments, eps outside the square root.

    g = grad + weight_decay*theta (L2 added to the gradient);  m = b1*m + (1-b1)*g;
    v = b2*v + (1-b2)*g**2;  amsgrad: vmax = max(vmax, v), use vmax in place of v;
    theta -= lr/(1-b1**t) * m / (sqrt(v)/sqrt(1-b2**t) + eps).
    """

    _decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(lr)
        self.betas = _check_betas(betas)
        self.eps = _check_nonnegative("epsilon", eps)
        self.weight_decay = _check_nonnegative("weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def _new_state(self, size):
        state = {"exp_avg": np.zeros(size), "exp_avg_sq": np.zeros(size)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros(size)
        return state

    def _update(self, theta, grad, state):
        beta1, beta2 = self.betas
        step = state["step"]
        if self._decoupled:
            if self.weight_decay != 0.0:
                theta *= 1.0 - self.lr * self.weight_decay
            g = grad
        else:
            g = self._with_weight_decay(theta, grad, state)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * g
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * (g * g)
        second = exp_avg_sq
        if self.amsgrad:
            second = state["max_exp_avg_sq"]
            np.maximum(second, exp_avg_sq, out=second)
        step_size = self.lr / (1.0 - beta1 ** step)
        denom = np.sqrt(second)
        denom /= math.sqrt(1.0 - beta2 ** step)
        denom += self.eps
        theta -= step_size * (exp_avg / denom)

    def _settings(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam with decoupled weight decay.

    theta *= 1 - lr*weight_decay first, then the Adam step on the raw gradient.
    """

    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


_BY_NAME = {
    "sgd": (SGD, {}),
    "gd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (Adagrad, {}),
    "rmsprop": (RMSprop, {}),
    "adam": (Adam, {}),
    "adamw": (AdamW, {}),
}


def make_optimizer(optimizer, lr=None):
    """An :class:`Optimizer` from an instance or a name.

    Names: ``"sgd"`` (also ``"gd"``), ``"momentum"`` (SGD with momentum 0.9),
    ``"nesterov"`` (SGD, Nesterov momentum 0.9), ``"adagrad"``, ``"rmsprop"``,
    ``"adam"``, ``"adamw"``; ``lr=None`` takes torch's default for that optimizer.
    Passing ``lr`` together with an instance sets that instance's learning rate.
    """
    if isinstance(optimizer, Optimizer):
        if lr is not None:
            optimizer.lr = _check_nonnegative("learning rate", lr)
        return optimizer
    if isinstance(optimizer, str):
        key = optimizer.strip().lower()
        if key not in _BY_NAME:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(_BY_NAME)}")
        cls, settings = _BY_NAME[key]
        if lr is not None:
            settings = {**settings, "lr": lr}
        return cls(**settings)
    raise TypeError(f"optimizer must be a symdiff.optim.Optimizer or a name, not {type(optimizer).__name__}")


def clip_grad_norm(grad, max_norm):
    """Scale ``grad`` in place so its Euclidean norm is at most ``max_norm``; return the norm before.

    As torch.nn.utils.clip_grad_norm_: the scale is max_norm / (norm + 1e-6), applied only when below 1.
    """
    norm = math.sqrt(float(np.dot(grad, grad)))
    scale = max_norm / (norm + 1e-6)
    if scale < 1.0:
        grad *= scale
    return norm


def clip_grad_value(grad, clip_value):
    """Clamp every component of ``grad`` in place to ``[-clip_value, clip_value]``."""
    np.clip(grad, -clip_value, clip_value, out=grad)
    return grad
