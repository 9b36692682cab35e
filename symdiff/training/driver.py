"""The training driver: ``sd.fit`` runs an optimizer on a compiled objective.

One step is: gather a batch, call the compiled kernel for the mean loss and its
gradient, check both are finite, clip, let the optimizer update the parameters in
place. Everything around the kernel call is kept small, because at small batch
sizes the driver's own cost competes with the kernel's (``benchmarks/driver_overhead.py``
measures it): mini-batches are gathered through an index permutation into buffers
allocated once and bound to the kernel once, so no step copies the data set and
no step re-validates data; shuffled batches come from a row-major copy of the data
(one cache line per sample, not one per column), and the next epoch's permutation
is shuffled in the background.
"""

import array
import math
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, DataTypeError, DivergenceError, FormulaError
from ..optim import clip_grad_norm, clip_grad_value, make_optimizer
from ..schedules import as_schedule

__all__ = ["fit", "FitResult", "History"]


@dataclass
class History:
    """What happened in each epoch of a fit, one list entry per completed epoch.

    ``train_loss``: for batch gradient descent, the kernel's loss at the parameters
    before that epoch's step; for mini-batches, the mean of the epoch's batch losses
    weighted by batch size (each batch at the parameters in force when it was drawn).
    ``val_loss``: loss on the validation data after the epoch (NaN without validation).
    ``lr``: learning rate used in the epoch. ``grad_norm``: mean Euclidean norm of the
    gradients of the epoch's steps, before clipping. ``time``: wall seconds since the
    fit started, at the end of the epoch. ``steps``: optimizer steps taken so far.
    ``step_loss``: the loss of every step (batch), for plots against steps; an
    ``array.array("d")``, 8 bytes a step, so long mini-batch fits stay small.
    """

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    time: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    step_loss: array.array = field(default_factory=lambda: array.array("d"))

    _PER_EPOCH = ("epoch", "train_loss", "val_loss", "lr", "grad_norm", "time", "steps")

    def __len__(self):
        return len(self.epoch)

    @property
    def has_validation(self):
        return any(not math.isnan(v) for v in self.val_loss)

    def as_dict(self):
        """The per-epoch columns as NumPy arrays (``step_loss`` excluded), e.g. for a DataFrame."""
        return {name: np.asarray(getattr(self, name)) for name in self._PER_EPOCH}

    def _record(self, epoch, train_loss, val_loss, lr, grad_norm, elapsed, steps):
        self.epoch.append(epoch)
        self.train_loss.append(train_loss)
        self.val_loss.append(val_loss)
        self.lr.append(lr)
        self.grad_norm.append(grad_norm)
        self.time.append(elapsed)
        self.steps.append(steps)

    def plot(self, path=None, *, title=None):
        """Plot training (and validation) loss against epoch; return the matplotlib Figure.

        The loss axis is logarithmic when the losses are positive and span more than
        a factor of 30. With ``path``, the figure is drawn with the Agg backend (no
        display needed, pyplot's global state untouched) and saved there; without it,
        pyplot makes the figure so it shows in notebooks and interactive sessions.
        Needs matplotlib (``pip install symdiff-llvm[plot]``).
        """
        from ..display.plotting import finish_figure, new_figure
        figure = new_figure(path, "History.plot")
        ax = figure.add_subplot(1, 1, 1)
        ax.plot(self.epoch, self.train_loss, label="training loss")
        if self.has_validation:
            ax.plot(self.epoch, self.val_loss, label="validation loss")
        losses = [v for v in self.train_loss + self.val_loss if not math.isnan(v)]
        if losses and min(losses) > 0 and max(losses) > 30 * min(losses):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean loss")
        return finish_figure(figure, ax, path, title)

    def __repr__(self):
        if not self.epoch:
            return "History(no epochs)"
        last = f"train_loss={self.train_loss[-1]:.6g}"
        if self.has_validation:
            last += f", val_loss={self.val_loss[-1]:.6g}"
        return f"History({len(self)} epochs, {self.steps[-1]} steps, last {last})"


@dataclass
class FitResult:
    """The outcome of :func:`fit`.

    ``params``: 1-D array in the objective's parameter order; ``params_dict``: the
    same as {symbol: value}. ``stop_reason``: "epochs", "early_stopping" (params are
    then those of ``best_epoch``), "callback" or "interrupted" (Ctrl-C; ``interrupted``
    is True and params are those after the last completed step).
    """

    params: np.ndarray
    params_dict: dict
    history: History
    optimizer: object
    stop_reason: str = "epochs"
    best_epoch: int = None

    @property
    def interrupted(self):
        return self.stop_reason == "interrupted"

    @property
    def loss(self):
        """Training loss of the last completed epoch (NaN if none completed)."""
        return self.history.train_loss[-1] if len(self.history) else math.nan

    def __repr__(self):
        shown = ", ".join(f"{k}={v:.6g}" for k, v in list(self.params_dict.items())[:6])
        more = ", ..." if len(self.params_dict) > 6 else ""
        return (f"FitResult({shown}{more}; {len(self.history)} epochs, stop_reason="
                f"{self.stop_reason!r}, loss={self.loss:.6g})")


def _data_columns(objective, data, what="data", dtype=np.float64):
    """The objective's data columns as contiguous arrays of ``dtype`` (the kernel's, so
    binding copies nothing), in ``objective.data`` order."""
    symbols = objective.data
    if isinstance(data, Mapping) or hasattr(data, "columns"):
        keys = list(data.keys()) if isinstance(data, Mapping) else list(data.columns)
        by_name = {str(k): k for k in keys}
        raw = []
        for symbol in symbols:
            key = symbol if symbol in keys else by_name.get(symbol.name)
            if key is None:
                raise DataError(f"{what} has no column for {symbol.name!r}; it needs "
                                f"{', '.join(s.name for s in symbols)}")
            raw.append((symbol.name, data[key]))
    else:
        try:
            table = np.asarray(data)
        except Exception as exc:
            raise DataTypeError(f"{what} must be a mapping of columns or a 2-D array: {exc}") from None
        if table.ndim != 2 or table.shape[1] != len(symbols):
            raise DataError(f"{what} as an array must have shape (n, {len(symbols)}) for columns "
                            f"{', '.join(s.name for s in symbols)}; got shape {table.shape}")
        raw = [(symbol.name, table[:, j]) for j, symbol in enumerate(symbols)]
    columns = []
    shapes = {s.name: tuple(int(d) for d in s.shape) for s in symbols if hasattr(s, "shape")}
    for name, values in raw:
        values = np.asarray(values)
        if values.dtype.kind not in "biuf":
            raise DataTypeError(f"{what} column {name!r} has dtype {values.dtype}; need real numbers")
        if name in shapes:  # a matrix symbol: (n, r, c) or (n, r*c), kept as (n, r*c)
            values = _matrix_column(what, name, values, shapes[name])
        elif values.ndim != 1:
            raise DataError(f"{what} column {name!r} must be 1-D, got shape {values.shape}")
        with np.errstate(over="ignore"):  # beyond float32's range: inf, reported below
            values = np.ascontiguousarray(values, dtype=dtype)
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"{what} column {name!r} has a non-finite value at row {bad}: {values[bad]}")
        columns.append(values)
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        sizes = ", ".join(f"{s.name}: {len(c)}" for s, c in zip(symbols, columns))
        raise DataError(f"{what} columns differ in length ({sizes})")
    if not columns or not len(columns[0]):
        raise DataError(f"{what} is empty" if columns else
                        "the objective has no data symbols; sd.fit needs per-sample data")
    return columns


def _matrix_column(what, name, values, shape):
    r, c = shape
    if not ((values.ndim == 3 and values.shape[1:] == shape) or
            (values.ndim == 2 and values.shape[1] == r * c)):
        raise DataError(f"{what} {name!r} has per-sample shape {shape}: expected an array of "
                        f"shape (n, {r}, {c}) or (n, {r * c}), got {values.shape}")
    return values.reshape(len(values), r * c)


def _as_mapping(objective, columns):
    return {symbol: column for symbol, column in zip(objective.data, columns)}


def _initial_params(objective, init, rng):
    if getattr(objective, "_array", False):
        from ..models.array_objective import init_from
        theta = init_from(objective, init, rng)
        if not np.isfinite(theta).all():
            raise DataError("init gives a parameter a non-finite value")
        return theta
    names = [p.name for p in objective.params]
    size = len(names)
    theta = 0.01 * rng.standard_normal(size)
    if isinstance(init, str):
        if init != "zeros":
            raise ValueError(f"init must be None, 'zeros', an array or a mapping, not {init!r}")
        theta[:] = 0.0
    elif isinstance(init, Mapping):
        for key, value in init.items():
            name = getattr(key, "name", key)
            if name not in names:
                raise FormulaError(f"init names {name!r}, which is not a parameter "
                                   f"(parameters: {', '.join(names)})")
            theta[names.index(name)] = float(value)
    elif init is not None:
        theta = np.array(init, dtype=np.float64).reshape(-1)
        if theta.shape != (size,):
            raise DataError(f"init has {theta.size} values but the objective has {size} parameters "
                            f"({', '.join(names)})")
    if not np.isfinite(theta).all():
        bad = int(np.flatnonzero(~np.isfinite(theta))[0])
        raise DataError(f"init gives parameter {names[bad]!r} the value {theta[bad]}")
    return theta


def _split_validation(columns, fraction, rng):
    n = len(columns[0])
    held = int(round(fraction * n))
    if not 1 <= held < n:
        raise DataError(f"validation={fraction} of {n} samples leaves no training or no validation data")
    order = rng.permutation(n)
    val_rows, train_rows = np.sort(order[:held]), np.sort(order[held:])
    return [c[train_rows] for c in columns], [c[val_rows] for c in columns]


class _BatchSlot:
    """Buffers for batches of one size, bound to the kernel once.

    ``rows`` receives the gathered samples row by row; ``columns`` (one contiguous
    row per data symbol, what the kernel reads) receives their transpose.
    """

    def __init__(self, kernel, objective, size, width):
        self.size = size
        self.rows = np.zeros((size, width), kernel.dtype)
        self.columns = np.zeros((width, size), kernel.dtype)
        self.bound = kernel.bind(_as_mapping(objective, list(self.columns)))


class _MatrixBatchSlot:
    """Buffers for batches of one size when data symbols are matrices: one C-contiguous
    ``(size, k)`` block per symbol (``(size,)`` for a scalar), bound to the kernel once."""

    def __init__(self, kernel, objective, size, shapes):
        self.size = size
        self.blocks = [np.zeros((size,) + tuple(s), kernel.dtype) for s in shapes]
        self.bound = kernel.bind(_as_mapping(objective, self.blocks))


class _Permutations:
    """The epochs' index permutations, each shuffled in the background during the epoch before.

    Reshuffling a million indices takes tens of milliseconds, as long as hundreds of
    small steps; NumPy's shuffle releases the GIL, so a helper thread prepares the
    next epoch's order on a spare array while this epoch trains on a free core. The
    result is exactly the sequential one: epoch e+1's order is epoch e's, shuffled
    by the next draws of the same generator.
    """

    def __init__(self, n, rng):
        self.rng = rng
        self.current = np.arange(n)
        self.spare = None
        self.pending = None

    def advance(self, prefetch):
        """Make the next permutation current; with ``prefetch``, start shuffling the one after."""
        if self.pending is None:
            self.rng.shuffle(self.current)
        else:
            self.current, self.spare = self._finish(), self.current
        if prefetch:
            if self.spare is None:
                self.spare = np.empty_like(self.current)
            self._start(self.current, self.spare)
        return self.current

    def _start(self, source, target):
        outcome = {}

        def shuffle():
            try:
                np.copyto(target, source)
                self.rng.shuffle(target)
            except BaseException as exc:  # re-raised in the training thread by _finish
                outcome["error"] = exc

        thread = threading.Thread(target=shuffle, name="symdiff-shuffle", daemon=True)
        thread.start()
        self.pending = (thread, target, outcome)

    def _finish(self):
        thread, target, outcome = self.pending
        self.pending = None
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return target

    def close(self):
        """Wait for a background shuffle still running, so none outlives the fit."""
        if self.pending is not None:
            self.pending[0].join()
            self.pending = None


class _Batches:
    """Mini-batches of the training data, each gathered into reused buffers.

    Shuffled batches gather whole samples from a row-major copy of the data made
    once per fit: a random sample is then one or two cache lines instead of one
    cache miss per column, which makes the gather about four times faster on data
    larger than the caches. Unshuffled batches are contiguous slices, copied
    straight from the columns.
    """

    def __init__(self, kernel, objective, columns, batch_size, shuffle_rng=None):
        shuffle = shuffle_rng is not None
        self.n, width = len(columns[0]), len(columns)
        self.matrices = any(c.ndim > 1 for c in columns)
        if self.matrices:  # (n, k) blocks: gathered block by block into (size, k) buffers
            width = None
        self.batch_size = batch_size
        self.columns = columns
        self.permutations = _Permutations(self.n, shuffle_rng) if shuffle else None
        self.order = None
        self.table = np.empty((self.n, width), columns[0].dtype) if shuffle and width else None
        if self.table is not None:
            for j, column in enumerate(columns):
                self.table[:, j] = column
        slot = _BatchSlot if width else _MatrixBatchSlot
        shape = width or [c.shape[1:] for c in columns]
        self.full = slot(kernel, objective, batch_size, shape)
        tail = self.n % batch_size
        self.tail = slot(kernel, objective, tail, shape) if tail else None

    def start_epoch(self, more_to_come):
        """Draw this epoch's order (shuffled batches only); prepare the next one if ``more_to_come``."""
        if self.permutations is not None:
            self.order = self.permutations.advance(prefetch=more_to_come)

    def close(self):
        if self.permutations is not None:
            self.permutations.close()

    def __iter__(self):
        n, size, order, table = self.n, self.batch_size, self.order, self.table
        for start in range(0, n, size):
            stop = min(start + size, n)
            slot = self.full if stop - start == size else self.tail
            if self.matrices:
                for column, buffer in zip(self.columns, slot.blocks):
                    if order is not None:
                        np.take(column, order[start:stop], axis=0, out=buffer, mode="clip")
                    else:
                        np.copyto(buffer, column[start:stop])
            elif table is not None:
                np.take(table, order[start:stop], axis=0, out=slot.rows, mode="clip")
                np.copyto(slot.columns, slot.rows.T)
            else:
                for column, buffer in zip(self.columns, slot.columns):
                    np.copyto(buffer, column[start:stop])
            yield stop - start, slot.bound


def _check_positive(name, value, kind=float):
    if value is None:
        return None
    allowed = (int, float) if kind is float else int
    if isinstance(value, bool) or not isinstance(value, allowed) or not value > 0:
        noun = "a positive integer" if kind is int else "a positive number"
        raise ValueError(f"{name} must be {noun} or None, got {value!r}")
    return value


def _progress_bar(progress, epochs):
    if not (progress and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=epochs, unit="epoch", file=sys.stderr, dynamic_ncols=True, leave=True)


class _Stepper:
    """One optimizer step at a time on a live parameter vector, with the checks around it.

    Keeps a copy of the parameters from before the current update, so that a
    divergence can hand back the last finite parameters and a Ctrl-C arriving in
    the middle of an update can be undone.
    """

    def __init__(self, theta, optimizer, clip_norm, clip_value, history):
        self.theta = theta
        self.previous = theta.copy()
        self.optimizer = optimizer
        self.clip_norm, self.clip_value = clip_norm, clip_value
        self.history = history
        self.steps = 0
        self.updating = False

    def step(self, bound, epoch):
        """Evaluate ``bound`` at theta, check, clip, update; return (loss, gradient norm before clipping)."""
        theta = self.theta
        try:
            loss, grad = bound(theta)
        except DataError:  # the kernel refuses non-finite parameters
            if np.isfinite(theta).all():
                raise
            raise self.diverged(epoch, math.nan) from None
        grad_norm = math.sqrt(float(np.dot(grad, grad)))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise self.diverged(epoch, loss)
        if self.clip_value is not None:
            clip_grad_value(grad, self.clip_value)
        if self.clip_norm is not None:
            clip_grad_norm(grad, self.clip_norm)
        np.copyto(self.previous, theta)
        self.updating = True
        self.optimizer.step(theta, grad)
        self.updating = False
        self.steps += 1
        self.history.step_loss.append(loss)
        return loss, grad_norm

    def undo_partial_update(self):
        if self.updating:
            np.copyto(self.theta, self.previous)
            self.updating = False

    def diverged(self, epoch, loss):
        finite = np.isfinite(self.theta).all()
        if not finite:
            what = "parameters are no longer finite"
        elif not math.isfinite(loss):
            what = f"loss is {loss}"
        else:
            what = "gradient norm is not finite"
        step = self.steps + 1
        return DivergenceError(
            f"training diverged at epoch {epoch}, step {step}: the {what}. "
            f"Try a smaller learning rate (lr={self.optimizer.lr:g} now), clip_norm=..., or rescaled "
            f"data; the last finite parameters are on this error's .params",
            epoch=epoch, step=step, params=(self.theta if finite else self.previous).copy(),
            history=self.history)


def _train_epoch(stepper, epoch, whole, batches, n):
    """One epoch; return (training loss, mean gradient norm) as History defines them."""
    if batches is None:
        return stepper.step(whole, epoch)
    loss_sum = norm_sum = 0.0
    count = 0
    for size, bound in batches:
        loss, grad_norm = stepper.step(bound, epoch)
        loss_sum += loss * size
        norm_sum += grad_norm
        count += 1
    return loss_sum / n, norm_sum / count


def fit(objective, data, optimizer="adam", epochs=100, batch_size=None, shuffle=True, seed=0,
        init=None, schedule=None, clip_norm=None, clip_value=None, validation=None,
        early_stopping=None, callbacks=(), progress=True, *, lr=None, dtype=np.float64):
    """Train ``objective`` on ``data`` by gradient descent; return a :class:`FitResult`.

    ``data`` (and a ``validation`` data set): {symbol or name: 1-D array} or an
    (n, len(objective.data)) array, as the compiled kernel takes it.
    ``optimizer``: a :mod:`symdiff.optim` optimizer or a name ("sgd", "momentum",
    "nesterov", "adagrad", "rmsprop", "adam", "adamw"); ``lr`` sets its learning rate.
    The optimizer's state is reset at the start and its ``lr`` restored at the end.
    ``batch_size=None`` uses the whole data set each step (batch gradient descent,
    one step per epoch); an int gives mini-batches, reshuffled every epoch when
    ``shuffle`` (reproducibly from ``seed``), the last one smaller if n is not a multiple.
    Shuffled mini-batches are gathered from one row-major copy of the training data,
    made at the start (so memory holds the data twice); nothing is copied per epoch.
    ``init``: None (small normal values, std 0.01, from ``seed``), "zeros", a 1-D
    array, or {symbol or name: value} (others keep the default).
    ``schedule``: a :mod:`symdiff.schedules` schedule or a function epoch -> lr,
    applied per epoch starting from the optimizer's lr; ReduceLROnPlateau watches the
    validation loss when there is one, else the training loss.
    ``clip_value`` clamps each gradient component, then ``clip_norm`` rescales the
    gradient to at most that Euclidean norm (torch's clip_grad_norm_).
    ``validation``: a data set like ``data``, or a fraction in (0, 1) held out at random.
    ``early_stopping``: patience in epochs without improvement of the validation loss
    (training loss without validation); the result then carries the best epoch's params.
    ``callbacks``: functions ``callback(epoch, params, history)`` called after each
    epoch with the live parameter array (copy it to keep it); returning True stops.
    ``progress``: a tqdm bar with loss and validation loss, shown only when stderr is a terminal.
    ``dtype``: the kernel's float type; ``np.float32`` runs float32 kernels (twice the
    SIMD width) and keeps the data and batch buffers in float32 (parameters and
    optimizer state stay float64).

    Raises :class:`~symdiff.errors.DivergenceError` (epoch, step, last finite params)
    when the loss or gradient stops being finite. Ctrl-C ends the fit early and
    returns the result so far with ``result.interrupted`` set.
    """
    if not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 0):
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    _check_positive("batch_size", batch_size, int)
    _check_positive("clip_norm", clip_norm)
    _check_positive("clip_value", clip_value)
    _check_positive("early_stopping", early_stopping, int)
    callbacks = tuple(callbacks) if not callable(callbacks) else (callbacks,)
    opt = make_optimizer(optimizer, lr)
    schedule = as_schedule(schedule)
    init_rng, split_rng, shuffle_rng = (np.random.default_rng(s)
                                        for s in np.random.SeedSequence(seed).spawn(3))

    from ..distributed import is_dask

    if is_dask(data) or is_dask(validation):
        from ..distributed import fit_bindings  # full batch where the partitions are
        whole, validate, n = fit_bindings(objective, data, validation, batch_size)
        batches = None
        theta = _initial_params(objective, init, init_rng)
    else:
        kernel = objective.compile(dtype=dtype)
        columns = _data_columns(objective, data, dtype=dtype)
        if validation is None:
            val_columns = None
        elif isinstance(validation, (int, float, np.number)) and not isinstance(validation, bool):
            if not 0 < validation < 1:
                raise ValueError(f"validation must be a data set or a fraction in (0, 1), got {validation!r}")
            columns, val_columns = _split_validation(columns, validation, split_rng)
        else:
            val_columns = _data_columns(objective, validation, "validation data", dtype)
        theta = _initial_params(objective, init, init_rng)
        n = len(columns[0])
        if batch_size is None or batch_size >= n:
            whole, batches = kernel.bind(_as_mapping(objective, columns)), None
        else:
            whole, batches = None, _Batches(kernel, objective, columns, batch_size,
                                            shuffle_rng if shuffle else None)
        validate = kernel.bind(_as_mapping(objective, val_columns)) if val_columns is not None else None

    history = History()
    result = FitResult(theta, {}, history, opt)
    stepper = _Stepper(theta, opt, clip_norm, clip_value, history)
    base_lr = opt.lr
    opt.reset()
    if schedule is not None:
        opt.lr = schedule.start(base_lr)
    best_loss, best_theta, bad_epochs = math.inf, None, 0
    bar = _progress_bar(progress, epochs)
    started = time.perf_counter()
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow ends as DivergenceError
            for epoch in range(epochs):
                if batches is not None:
                    batches.start_epoch(more_to_come=epoch + 1 < epochs)
                train_loss, grad_norm = _train_epoch(stepper, epoch, whole, batches, n)
                val_loss = validate.value(theta) if validate is not None else math.nan
                history._record(epoch, train_loss, val_loss, opt.lr, grad_norm,
                                time.perf_counter() - started, stepper.steps)
                watched = val_loss if validate is not None else train_loss
                if bar is not None:
                    shown = {"loss": f"{train_loss:.4g}"}
                    if validate is not None:
                        shown["val"] = f"{val_loss:.4g}"
                    bar.set_postfix(shown, refresh=False)
                    bar.update(1)
                if early_stopping is not None:
                    if watched < best_loss:
                        best_loss, best_theta, bad_epochs = watched, theta.copy(), 0
                        result.best_epoch = epoch
                    else:
                        bad_epochs += 1
                        if bad_epochs >= early_stopping:
                            result.stop_reason = "early_stopping"
                            np.copyto(theta, best_theta)
                            break
                if [callback(epoch, theta, history) for callback in callbacks].count(True):
                    result.stop_reason = "callback"
                    break
                if schedule is not None and epoch + 1 < epochs:
                    opt.lr = schedule.advance(watched)
    except KeyboardInterrupt:
        stepper.undo_partial_update()
        result.stop_reason = "interrupted"
    finally:
        if batches is not None:
            batches.close()
        for bound in (whole, validate):
            if hasattr(bound, "close"):  # Dask data: release the persisted partitions
                bound.close()
        if bar is not None:
            bar.close()
        opt.lr = base_lr
    result.params_dict = dict(zip(objective.params, (float(v) for v in theta)))
    return result
