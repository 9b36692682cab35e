"""Per-epoch learning-rate schedules with torch.optim.lr_scheduler's formulas.

A schedule does not hold an optimizer: ``sd.fit`` asks it for the learning rate of
each epoch and writes that into ``optimizer.lr``, so one schedule object works with
any optimizer. The protocol is two calls:

``start(base_lr) -> lr``  forget any state; return the rate for epoch 0.
``advance(metric) -> lr`` the epoch just finished with monitored loss ``metric``
                          (validation loss if there is one, else training loss);
                          return the rate for the next epoch.

Epoch ``e`` counts from 0, so ``StepLR(10, 0.5)`` trains epochs 0..9 at the base
rate, 10..19 at half of it. The closed forms below equal torch's chained updates
(up to rounding). A plain function ``epoch -> lr`` is accepted wherever a schedule is.
A schedule object keeps the state of one fit at a time: give concurrent fits their own.
"""

import math

__all__ = [
    "Schedule", "StepLR", "ExponentialLR", "CosineAnnealingLR", "LinearWarmup",
    "ReduceLROnPlateau", "as_schedule",
]


def _positive_int(name, value):
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _positive(name, value):
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Schedule:
    """Base of the closed-form schedules: the rate is a function of the epoch and base rate."""

    _state_names = ("base_lr", "epoch")

    def start(self, base_lr):
        self.base_lr = float(base_lr)
        self.epoch = 0
        return self.lr_at(0, self.base_lr)

    def advance(self, metric=None):
        self.epoch += 1
        return self.lr_at(self.epoch, self.base_lr)

    def lr_at(self, epoch, base_lr):
        """The learning rate in ``epoch`` (from 0) for a starting rate ``base_lr``."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                         if k not in self._state_names)
        return f"{type(self).__name__}({args})"


class StepLR(Schedule):
    """Decay by ``gamma`` every ``step_size`` epochs: base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = _positive_int("step_size", step_size)
        self.gamma = _positive("gamma", gamma)

    def lr_at(self, epoch, base_lr):
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """Decay by ``gamma`` every epoch: base_lr * gamma ** epoch (the tutorials' decaying rate)."""

    def __init__(self, gamma):
        self.gamma = _positive("gamma", gamma)

    def lr_at(self, epoch, base_lr):
        return base_lr * self.gamma ** epoch


class CosineAnnealingLR(Schedule):
    """Half a cosine from base_lr down to ``eta_min`` over ``T_max`` epochs.

    eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2; past T_max it
    rises again along the same cosine, as torch's does.
    """

    def __init__(self, T_max, eta_min=0.0):
        self.T_max = _positive_int("T_max", T_max)
        if not (isinstance(eta_min, (int, float)) and eta_min >= 0):
            raise ValueError(f"eta_min must be a number >= 0, got {eta_min!r}")
        self.eta_min = float(eta_min)

    def lr_at(self, epoch, base_lr):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LinearWarmup(Schedule):
    """Ramp linearly from ``start_factor * base_lr`` to ``base_lr`` over ``warmup_epochs``, then hand over.

    During warm-up the rate is base_lr * (start_factor + (1 - start_factor) * epoch / warmup_epochs)
    (torch's LinearLR with end_factor 1). From epoch ``warmup_epochs`` on, ``after``
    (any schedule, started afresh at base_lr, as torch's SequentialLR does) takes
    over; without ``after`` the rate stays at base_lr.
    """

    def __init__(self, warmup_epochs, start_factor=1.0 / 3, after=None):
        self.warmup_epochs = _positive_int("warmup_epochs", warmup_epochs)
        if not (isinstance(start_factor, (int, float)) and 0 < start_factor <= 1):
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        self.start_factor = float(start_factor)
        self.after = None if after is None else as_schedule(after)

    def _warm(self, epoch):
        fraction = min(epoch, self.warmup_epochs) / self.warmup_epochs
        return self.base_lr * (self.start_factor + (1.0 - self.start_factor) * fraction)

    def start(self, base_lr):
        self.base_lr = float(base_lr)
        self.epoch = 0
        return self._warm(0)

    def advance(self, metric=None):
        self.epoch += 1
        if self.epoch < self.warmup_epochs or self.after is None:
            return self._warm(self.epoch)
        if self.epoch == self.warmup_epochs:
            return self.after.start(self.base_lr)
        return self.after.advance(metric)


class ReduceLROnPlateau(Schedule):
    """Multiply the rate by ``factor`` once the monitored loss stops improving for ``patience`` epochs.

    As torch's: an epoch improves when metric < best * (1 - threshold) (mode "min",
    threshold_mode "rel"; "abs" uses best - threshold; mode "max" mirrors both).
    After more than ``patience`` epochs without improvement the rate becomes
    max(lr * factor, min_lr), unless that changes it by less than ``eps``; then
    ``cooldown`` epochs pass before bad epochs are counted again.
    """

    _state_names = ("base_lr", "epoch", "lr", "best", "bad_epochs", "cooldown_left")

    def __init__(self, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0.0, eps=1e-8):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not (isinstance(factor, (int, float)) and 0 <= factor < 1):
            raise ValueError(f"factor must be in [0, 1), got {factor!r}")
        if not (isinstance(patience, int) and patience >= 0):
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if not (isinstance(cooldown, int) and cooldown >= 0):
            raise ValueError(f"cooldown must be an integer >= 0, got {cooldown!r}")
        self.mode, self.factor, self.patience = mode, float(factor), patience
        self.threshold, self.threshold_mode = float(threshold), threshold_mode
        self.cooldown, self.min_lr, self.eps = cooldown, float(min_lr), float(eps)

    def start(self, base_lr):
        self.base_lr = self.lr = float(base_lr)
        self.epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0
        return self.lr

    def _improves(self, metric):
        relative = self.threshold_mode == "rel"
        if self.mode == "min":
            return metric < (self.best * (1 - self.threshold) if relative else self.best - self.threshold)
        return metric > (self.best * (1 + self.threshold) if relative else self.best + self.threshold)

    def advance(self, metric=None):
        if metric is None:
            raise ValueError("ReduceLROnPlateau needs the epoch's loss to decide")
        self.epoch += 1
        metric = float(metric)
        if self._improves(metric):
            self.best = metric
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            reduced = max(self.lr * self.factor, self.min_lr)
            if self.lr - reduced > self.eps:
                self.lr = reduced
            self.cooldown_left = self.cooldown
            self.bad_epochs = 0
        return self.lr

    def lr_at(self, epoch, base_lr):
        raise TypeError("ReduceLROnPlateau depends on the losses seen, not on the epoch alone")


class _FunctionSchedule(Schedule):
    """Wraps a user function ``epoch -> lr``; the base rate is ignored."""

    def __init__(self, function):
        self.function = function

    def lr_at(self, epoch, base_lr):
        lr = float(self.function(epoch))
        if not (lr >= 0 and math.isfinite(lr)):
            raise ValueError(f"schedule function returned learning rate {lr!r} at epoch {epoch}")
        return lr


def as_schedule(schedule):
    """A :class:`Schedule` from a schedule or a function ``epoch -> lr`` (``None`` passes through)."""
    if schedule is None or isinstance(schedule, Schedule):
        return schedule
    if callable(schedule):
        return _FunctionSchedule(schedule)
    raise TypeError("schedule must be a symdiff schedule or a function epoch -> lr, "
                    f"not {type(schedule).__name__}")
