"""Choosing training settings: cross-validated search (``tune``) and the learning-rate range test (``lr_find``).

Both work on an :class:`~symdiff.Objective` and its data directly, without
scikit-learn: every trial trains with :func:`symdiff.fit` on the kernel the
objective compiled once, so a search costs fits, never compilations.

A search space maps setting names to values:

* a list or tuple: the choices (``"optimizer": ["sgd", "adam"]``);
* a distribution: :func:`loguniform`, :func:`uniform`, :func:`randint`, or any
  object with scipy's ``rvs(random_state=...)`` (random search only);
* anything else: a fixed value.

A setting is a keyword of :func:`symdiff.fit` (``optimizer``, ``lr``, ``epochs``,
``batch_size``, ``shuffle``, ``init``, ``schedule``, ``clip_norm``, ``clip_value``,
``early_stopping``) or a constructor argument of an optimizer (``weight_decay``,
``momentum``, ``nesterov``, ``betas``, ``eps``, ``alpha``, ``amsgrad``, ...). An
optimizer setting applies to the trials whose optimizer has it and is ignored by
the others (so ``momentum`` can be searched next to ``["sgd", "adam"]``); a name
that is neither is a ValueError. The distributions also have scikit-learn's
``rvs`` interface, so the same space works in ``RandomizedSearchCV``.
"""

import copy
import inspect
import itertools
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, DivergenceError, SymdiffError
from ..optim import SGD, Adagrad, Adam, AdamW, RMSprop, make_optimizer
from .driver import _data_columns, _initial_params, fit

__all__ = ["tune", "TuneResult", "lr_find", "LRFinder", "loguniform", "uniform", "randint",
           "build_optimizer"]

FIT_SETTINGS = ("optimizer", "lr", "epochs", "batch_size", "shuffle", "init", "schedule",
                "clip_norm", "clip_value", "early_stopping")
OPTIMIZER_SETTINGS = tuple(sorted({
    name for cls in (SGD, Adagrad, RMSprop, Adam, AdamW)
    for name in inspect.signature(cls.__init__).parameters if name not in ("self", "lr")}))


def build_optimizer(optimizer, lr=None, **settings):
    """An optimizer from a name or instance, with its learning rate and other settings.

    ``settings`` are constructor arguments of the optimizer's class (``weight_decay``,
    ``momentum``, ``betas``, ...). They are applied by constructing a fresh instance from
    the named optimizer's settings updated with them, so each value is validated as the
    constructor validates it; a setting the optimizer lacks is a ValueError. An instance
    given without settings is returned as it is (with ``lr`` set, as ``make_optimizer`` does).
    """
    base = make_optimizer(optimizer, lr)
    if not settings:
        return base
    current = base._settings()
    unknown = sorted(set(settings) - set(current))
    if unknown:
        raise ValueError(f"{type(base).__name__} has no setting {', '.join(map(repr, unknown))}; "
                         f"its settings are {', '.join(current)}")
    current.update(settings)
    return type(base)(**current)


# -- distributions ----------------------------------------------------------------------

class _Distribution:
    """A distribution to draw one setting from; ``rvs`` as scipy.stats and scikit-learn call it."""

    def rvs(self, size=None, random_state=None):
        rng = _generator(random_state)
        if size is None:
            return self._draw(rng, None).item()
        return self._draw(rng, size)


def _generator(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2 ** 31 - 1))
    return np.random.default_rng(random_state)


def _bounds(name, low, high, positive=False):
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            raise ValueError(f"{name} bounds must be finite numbers, got ({low!r}, {high!r})")
    if not low < high:
        raise ValueError(f"{name} needs low < high, got ({low!r}, {high!r})")
    if positive and not low > 0:
        raise ValueError(f"{name} needs 0 < low, got low={low!r}")
    return float(low), float(high)


class loguniform(_Distribution):
    """Log-uniform on [low, high]: log(value) is uniform, as for a learning rate (0 < low < high)."""

    def __init__(self, low, high):
        self.low, self.high = _bounds("loguniform", low, high, positive=True)

    def _draw(self, rng, size):
        return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size))

    def __repr__(self):
        return f"loguniform({self.low:g}, {self.high:g})"


class uniform(_Distribution):
    """Uniform on [low, high] (note: bounds, not scipy's loc and scale)."""

    def __init__(self, low, high):
        self.low, self.high = _bounds("uniform", low, high)

    def _draw(self, rng, size):
        return rng.uniform(self.low, self.high, size)

    def __repr__(self):
        return f"uniform({self.low:g}, {self.high:g})"


class randint(_Distribution):
    """Integers low, low+1, ..., high-1, equally likely (high excluded, as scipy.stats.randint)."""

    def __init__(self, low, high):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (low, high)):
            raise ValueError(f"randint bounds must be integers, got ({low!r}, {high!r})")
        if not low < high:
            raise ValueError(f"randint needs low < high, got ({low!r}, {high!r})")
        self.low, self.high = int(low), int(high)

    def _draw(self, rng, size):
        return rng.integers(self.low, self.high, size)

    def __repr__(self):
        return f"randint({self.low}, {self.high})"


# -- the search ---------------------------------------------------------------------------

@dataclass
class TuneResult:
    """The outcome of :func:`tune`.

    ``best_setting``: the trial setting with the lowest mean validation loss;
    ``best_loss`` its mean over the folds, ``best_std`` their standard deviation
    (population, ddof=0, as scikit-learn's ``std_test_score``). ``table``: every
    trial (a pandas DataFrame if pandas is installed, else ``records``): the
    setting, ``mean_loss``, ``std_loss``, ``fold_0``... (each fold's validation
    loss, inf when training diverged), ``status`` ("ok" or "diverged"),
    ``seconds`` and ``rank`` (1 = best). ``fit``: the :class:`~symdiff.FitResult`
    of training on all the data with the best setting (None with ``refit=False``).
    ``folds``: the (training rows, validation rows) index pairs used by every trial.
    """

    best_setting: dict
    best_loss: float
    best_std: float
    records: list
    table: object
    fit: object
    folds: list = field(repr=False)
    method: str = "random"
    seconds: float = 0.0

    @property
    def best_index(self):
        return min(range(len(self.records)), key=lambda i: self.records[i]["rank"])

    def __repr__(self):
        shown = ", ".join(f"{k}={_short(v)}" for k, v in self.best_setting.items())
        return (f"TuneResult(best: {shown}; validation loss {self.best_loss:.6g} ± {self.best_std:.2g} "
                f"over {len(self.folds)} folds; {len(self.records)} {self.method} trials, "
                f"{self.seconds:.1f} s)")


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def _check_space(space, fixed):
    if not isinstance(space, dict) or not space:
        raise ValueError("space must be a non-empty dict of setting name -> choices, distribution or value")
    for name in list(space) + list(fixed):
        if name not in FIT_SETTINGS and name not in OPTIMIZER_SETTINGS:
            raise ValueError(
                f"{name!r} is not a setting tune can vary: use a keyword of sd.fit "
                f"({', '.join(FIT_SETTINGS)}) or an optimizer setting ({', '.join(OPTIMIZER_SETTINGS)})")


def _is_distribution(value):
    return hasattr(value, "rvs") and not isinstance(value, (list, tuple, str))


def _grid(space):
    names = list(space)
    choices = []
    for name in names:
        value = space[name]
        if _is_distribution(value):
            raise ValueError(f"grid search needs lists of values; {name!r} is a distribution ({value!r}); "
                             f"use method='random' or give a list")
        choices.append(list(value) if isinstance(value, (list, tuple)) else [value])
        if not choices[-1]:
            raise ValueError(f"{name!r} has no values to choose from")
    return [dict(zip(names, combination)) for combination in itertools.product(*choices)]


def _random_settings(space, trials, rng):
    """``trials`` random settings; from a space of lists only, distinct ones (as many as exist)."""
    if not any(_is_distribution(v) for v in space.values()):
        grid = _grid(space)
        picked = rng.choice(len(grid), size=min(trials, len(grid)), replace=False)
        return [grid[i] for i in picked]
    settings = []
    for _ in range(trials):
        setting = {}
        for name, value in space.items():
            if _is_distribution(value):
                setting[name] = value.rvs(random_state=rng)
            elif isinstance(value, (list, tuple)):
                if not value:
                    raise ValueError(f"{name!r} has no values to choose from")
                setting[name] = value[int(rng.integers(len(value)))]
            else:
                setting[name] = value
        settings.append(setting)
    return settings


def _folds(n, cv, rng):
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise ValueError(f"cv must be an integer >= 2 (the number of folds), got {cv!r}")
    if n < cv:
        raise DataError(f"{cv}-fold cross-validation needs at least {cv} samples, got {n}")
    order = rng.permutation(n)
    parts = np.array_split(order, cv)
    return [(np.sort(np.concatenate(parts[:k] + parts[k + 1:])), np.sort(parts[k])) for k in range(cv)]


def _fit_arguments(setting, fixed, epochs):
    """Split one trial's setting into sd.fit keywords, with the optimizer built from its settings."""
    merged = {**fixed, **setting}
    arguments = {"epochs": epochs}
    arguments.update({k: v for k, v in merged.items() if k in FIT_SETTINGS})
    optimizer = copy.deepcopy(arguments.pop("optimizer", "adam"))
    lr = arguments.pop("lr", None)
    base = make_optimizer(optimizer)
    own = base._settings()
    settings = {k: v for k, v in merged.items() if k in OPTIMIZER_SETTINGS and k in own}
    arguments["optimizer"] = build_optimizer(base, lr, **settings)
    return arguments


def _check_settings(settings, fixed, epochs):
    """Build every trial's arguments once, so a bad value fails now rather than an hour in.

    Also refuses an optimizer setting that no trial's optimizer has (``momentum``
    searched with Adam alone), which would otherwise be silently ignored.
    """
    applied, optimizers = set(), set()
    for setting in settings:
        optimizer = _fit_arguments(setting, fixed, epochs)["optimizer"]
        optimizers.add(type(optimizer).__name__)
        applied |= set(optimizer._settings())
    wanted = {k for k in list(fixed) + list(settings[0]) if k in OPTIMIZER_SETTINGS}
    unused = sorted(wanted - applied)
    if unused:
        raise ValueError(f"{', '.join(map(repr, unused))} is a setting of none of the optimizers searched "
                         f"({', '.join(sorted(optimizers))})")


def _progress(progress, total):
    if not (progress and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="trial", file=sys.stderr, dynamic_ncols=True, leave=True)


def tune(objective, data, space, method="random", trials=None, cv=5, epochs=100, seed=0,
         progress=True, refit=True, **fixed):
    """Search training settings by ``cv``-fold cross-validation; return a :class:`TuneResult`.

    ``data``: as :func:`symdiff.fit` takes it. ``space``: setting name -> list of
    choices, distribution, or fixed value (module docstring). ``method="random"``
    draws ``trials`` settings (default 30; from a space of lists only, distinct
    ones); ``method="grid"`` runs every combination of the lists (``trials`` must
    then be None). ``fixed``: further settings shared by every trial (the space wins
    on a clash), e.g. ``batch_size=32`` or ``weight_decay=1e-4``.

    Every trial uses the same folds, drawn from ``seed``, and trains each fold with
    ``seed`` too, so trials differ only by their setting and the search repeats
    exactly. A trial is scored by the objective's mean loss on each held-out fold
    after ``epochs`` epochs (or early stopping); a fold whose training diverges
    scores inf. The best trial has the lowest mean. With ``refit``, the best setting
    is then trained on all of ``data`` (``result.fit``). ``progress``: a tqdm bar over
    trials, shown only when stderr is a terminal.
    """
    _check_space(space, fixed)
    if method not in ("random", "grid"):
        raise ValueError(f"method must be 'random' or 'grid', got {method!r}")
    if method == "grid" and trials is not None:
        raise ValueError("method='grid' runs every combination; leave trials=None")
    trials = 30 if trials is None else trials
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    fold_rng, draw_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    columns = _data_columns(objective, data)
    folds = _folds(len(columns[0]), cv, fold_rng)
    settings = _grid(space) if method == "grid" else _random_settings(space, trials, draw_rng)
    _check_settings(settings, fixed, epochs)
    kernel = objective.compile()
    splits = [({s: c[train] for s, c in zip(objective.data, columns)},
               {s: c[held] for s, c in zip(objective.data, columns)}) for train, held in folds]

    started = time.perf_counter()
    records = []
    bar = _progress(progress, len(settings))
    try:
        for index, setting in enumerate(settings):
            trial_started = time.perf_counter()
            losses, status = [], "ok"
            for train, held in splits:
                try:
                    result = fit(objective, train, seed=seed, progress=False,
                                 **_fit_arguments(setting, fixed, epochs))
                    loss = kernel.value(result.params, held)
                except DivergenceError:
                    loss = math.inf
                if not math.isfinite(loss):
                    loss, status = math.inf, "diverged"
                losses.append(float(loss))
            finite = all(math.isfinite(v) for v in losses)
            record = {"trial": index, **setting,
                      "mean_loss": float(np.mean(losses)) if finite else math.inf,
                      "std_loss": float(np.std(losses)) if finite else math.nan,
                      **{f"fold_{k}": v for k, v in enumerate(losses)},
                      "status": status, "seconds": time.perf_counter() - trial_started}
            records.append(record)
            if bar is not None:
                bar.set_postfix({"best": f"{min(r['mean_loss'] for r in records):.4g}"}, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    order = sorted(range(len(records)), key=lambda i: (records[i]["mean_loss"], i))
    for rank, i in enumerate(order, start=1):
        records[i]["rank"] = rank
    best = records[order[0]]
    if not math.isfinite(best["mean_loss"]):
        error = SymdiffError(f"every one of the {len(records)} trials diverged; search smaller learning "
                             f"rates (the table is on this error's .records)")
        error.records = records
        raise error
    best_setting = dict(settings[order[0]])
    refitted = None
    if refit:
        refitted = fit(objective, {s: c for s, c in zip(objective.data, columns)}, seed=seed,
                       progress=False, **_fit_arguments(best_setting, fixed, epochs))
    return TuneResult(best_setting=best_setting, best_loss=best["mean_loss"], best_std=best["std_loss"],
                      records=records, table=_table(records), fit=refitted, folds=folds,
                      method=method, seconds=time.perf_counter() - started)


def _table(records):
    try:
        import pandas
    except ImportError:
        return records
    return pandas.DataFrame.from_records(records)


# -- learning-rate range test ----------------------------------------------------------------

@dataclass
class LRFinder:
    """The outcome of :func:`lr_find`: the loss recorded at each learning rate tried.

    ``lrs``, ``losses`` (each step's batch loss, before its update) and ``smoothed``
    (the centred moving average of the losses over steps/10 + 1 steps, which unlike a
    running average does not lag behind the learning rate) have one entry per step
    with a finite loss. ``suggestion``: the learning rate where the smoothed loss
    falls fastest against log(lr), before its minimum (the steepest descent point,
    Smith's recommended starting lr; the slope is taken across the same window, so
    batch noise does not pass for descent). ``lr_min_loss``: where the smoothed loss
    is lowest; ``lr_min_loss / 10`` is the other common rule. ``stop_reason``: "end",
    or "diverged" (the running loss rose above ``diverge`` times its minimum, or a
    value stopped being finite).
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    lr_min_loss: float
    stop_reason: str

    def plot(self, path=None, *, title=None):
        """Loss against learning rate (log axis) with the suggestion marked; return the Figure.

        With ``path``, drawn with the Agg backend and saved there, pyplot untouched;
        without it, made through pyplot so it shows interactively. Needs matplotlib.
        """
        from ..display.plotting import finish_figure, new_figure
        figure = new_figure(path, "LRFinder.plot")
        ax = figure.add_subplot(1, 1, 1)
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="batch loss")
        ax.plot(self.lrs, self.smoothed, lw=2, label="smoothed loss")
        ax.axvline(self.suggestion, color="C3", ls="--", label=f"suggestion {self.suggestion:.3g}")
        ax.set_xscale("log")
        low, high = self.smoothed.min(), self.smoothed[: int(np.argmin(self.smoothed)) + 1].max()
        if high > low:
            ax.set_ylim(low - 0.1 * (high - low), high + 0.3 * (high - low))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("mean loss")
        return finish_figure(figure, ax, path, title)

    def __repr__(self):
        return (f"LRFinder({len(self.lrs)} steps from lr {self.lrs[0]:.3g} to {self.lrs[-1]:.3g}, "
                f"{self.stop_reason}; suggestion {self.suggestion:.3g}, min loss at {self.lr_min_loss:.3g})")


def lr_find(objective, data, start=1e-6, end=1.0, steps=100, optimizer="adam", batch_size=None,
            seed=0, init=None, smoothing=0.9, diverge=4.0, **optimizer_settings):
    """Learning-rate range test: raise lr geometrically from ``start`` to ``end`` over ``steps`` steps.

    Each step takes the next mini-batch, records its loss, and updates the
    parameters with the current lr (Smith 2017, "Cyclical learning rates for
    training neural networks"). The default ``batch_size`` (None) makes the
    ``steps`` batches one pass over the data (``ceil(n / steps)`` samples each, but
    at least 32, so that one batch's noise does not hide the trend); smaller batches
    or more steps cycle through the data, reshuffled each pass. The test stops early
    when the running loss (exponential moving average with factor ``smoothing``,
    bias-corrected) exceeds ``diverge`` times its minimum or a value stops being
    finite. ``optimizer`` and ``optimizer_settings`` (e.g. ``momentum=0.9``) should be
    those you will train with:
    the right lr depends on them. Returns an :class:`LRFinder` (``.suggestion``, ``.plot()``).
    """
    _bounds("lr_find", start, end, positive=True)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 3:
        raise ValueError(f"steps must be an integer >= 3, got {steps!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not diverge > 1:
        raise ValueError(f"diverge must be > 1, got {diverge!r}")
    columns = _data_columns(objective, data)
    n = len(columns[0])
    if batch_size is None:
        batch_size = max(32, math.ceil(n / steps))
    elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    batch_size = min(batch_size, n)
    init_rng, order_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    theta = _initial_params(objective, init, init_rng)
    opt = build_optimizer(copy.deepcopy(optimizer), start, **optimizer_settings)
    opt.reset()
    kernel = objective.compile()
    schedule = np.geomspace(start, end, steps)
    lrs, losses = [], []
    average, best, stop_reason = 0.0, math.inf, "end"
    order, position = order_rng.permutation(n), 0
    with np.errstate(over="ignore", invalid="ignore"):
        for step, lr in enumerate(schedule):
            if position + batch_size > n:
                order, position = order_rng.permutation(n), 0
            rows = order[position:position + batch_size]
            position += batch_size
            loss, gradient = kernel(theta, {s: c[rows] for s, c in zip(objective.data, columns)})
            loss = float(loss)
            lrs.append(float(lr))
            losses.append(loss)
            if not (math.isfinite(loss) and np.isfinite(gradient).all()):
                stop_reason = "diverged"
                break
            average = smoothing * average + (1 - smoothing) * loss
            current = average / (1 - smoothing ** (step + 1))
            best = min(best, current)
            if current > diverge * best and step > 0:
                stop_reason = "diverged"
                break
            opt.lr = float(lr)
            opt.step(theta, np.asarray(gradient, dtype=np.float64))
            if not np.isfinite(theta).all():
                stop_reason = "diverged"
                break
    finite = np.isfinite(losses)
    lrs, losses = np.array(lrs)[finite], np.array(losses)[finite]
    smoothed = _centred_mean(losses, max(1, steps // 20))
    suggestion, lr_min_loss = _suggest(lrs, smoothed)
    return LRFinder(lrs, losses, smoothed, suggestion, lr_min_loss, stop_reason)


def _centred_mean(values, h):
    """Mean of each value and its h neighbours either side (fewer at the ends)."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    low, high = np.maximum(index - h, 0), np.minimum(index + h + 1, len(values))
    return (sums[high] - sums[low]) / (high - low)


def _suggest(lrs, smoothed):
    """(lr of steepest descent of the smoothed loss before its minimum, lr of the minimum)."""
    if len(lrs) < 3:
        raise SymdiffError(f"the learning-rate range test diverged after {len(lrs)} steps; "
                           f"start from a smaller lr (start={lrs[0]:g})")
    lowest = int(np.argmin(smoothed))
    h = max(1, len(lrs) // 20)
    logs = np.log(lrs)
    centres = np.arange(h, min(lowest, len(lrs) - 1 - h) + 1)
    if not len(centres):
        return float(lrs[lowest]), float(lrs[lowest])
    slope = (smoothed[centres + h] - smoothed[centres - h]) / (logs[centres + h] - logs[centres - h])
    return float(lrs[centres[int(np.argmin(slope))]]), float(lrs[lowest])
