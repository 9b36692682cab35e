"""What ``sd.fit`` costs per step on top of the compiled kernel, on workload W1.

W1 is linear regression (8 features + bias, N = 1,000,000). For mini-batches of
32 and 1024 rows this prints, as medians over repeats:

* the raw kernel: steps/s of the bound kernel called again and again on one batch;
* the driver: steps/s of ``sd.fit`` over whole epochs (gather, kernel, finiteness
  check, optimizer update, bookkeeping), with SGD and with Adam;
* the overhead: microseconds per step the driver adds, and its parts measured
  alone (gathering a shuffled batch, the per-epoch reshuffle spread over the
  epoch's steps, one optimizer step).

Run: ``python benchmarks/driver_overhead.py`` (``--quick`` uses N = 100,000 and
fewer repeats; ``--threads`` is passed to ``compile``; ``--wait-quiet 300`` first
waits up to 5 minutes for the shared machine to go idle, and the load other
processes caused during the run is printed with the figures).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import symdiff as sd  # noqa: E402
from symdiff import optim  # noqa: E402
from symdiff.training.driver import fit  # noqa: E402
from report import LoadMonitor, wait_until_quiet  # noqa: E402
from workloads import linear_regression  # noqa: E402


def _median_seconds(function, number, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            function()
        times.append((time.perf_counter() - started) / number)
    return statistics.median(times)


def kernel_seconds(kernel, workload, batch, repeats):
    rows = np.random.default_rng(0).permutation(workload.n)[:batch]
    bound = kernel.bind({s: c[rows] for s, c in workload.data.items()})
    theta = workload.theta.copy()
    for _ in range(1000):
        bound(theta)
    return _median_seconds(lambda: bound(theta), max(200, 200_000 // batch), repeats)


def gather_seconds(workload, batch, repeats):
    """One shuffled batch gathered as the driver does it: rows of a row-major table, then transposed."""
    order = np.random.default_rng(0).permutation(workload.n)
    table = np.ascontiguousarray(np.column_stack(workload.columns))
    rows, columns = np.empty((batch, table.shape[1])), np.empty((table.shape[1], batch))
    state = {"start": 0}

    def gather():
        start = state["start"]
        np.take(table, order[start:start + batch], axis=0, out=rows, mode="clip")
        np.copyto(columns, rows.T)
        state["start"] = (start + batch) % (workload.n - batch)

    return _median_seconds(gather, max(200, 200_000 // batch), repeats)


def shuffle_seconds_per_step(workload, batch, repeats):
    """The once-per-epoch reshuffle of the index permutation, spread over the epoch's steps."""
    order, rng = np.arange(workload.n), np.random.default_rng(0)
    return _median_seconds(lambda: rng.shuffle(order), 1, repeats) * batch / workload.n


def optimizer_seconds(make, size, repeats):
    opt = make()
    theta, grad = np.zeros(size), np.full(size, 1e-3)
    return _median_seconds(lambda: opt.step(theta, grad), 5000, repeats)


def fit_seconds_per_step(objective, workload, batch, make, repeats):
    """Steady-state seconds per step of sd.fit: epochs after the first, which pays for setup effects."""
    times = []
    for _ in range(repeats):
        result = fit(objective, workload.data, optimizer=make(), epochs=3, batch_size=batch,
                     init=workload.theta, progress=False)
        history = result.history
        times.append((history.time[-1] - history.time[0]) / (history.steps[-1] - history.steps[0]))
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 100,000 and 3 repeats")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: compile's)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to leave the cores idle")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    repeats = args.repeats or (3 if args.quick else 7)

    workload = linear_regression(n=n)
    objective = sd.Objective(workload.loss, params=workload.params, data=workload.data_symbols)
    kernel = objective.compile(threads=args.threads)
    size = len(workload.params)
    makers = {"SGD": lambda: optim.SGD(lr=1e-3), "Adam": lambda: optim.Adam(lr=1e-3)}

    if args.wait_quiet > 0:
        waited, load = wait_until_quiet(args.wait_quiet)
        print(f"[waited {waited:.0f} s; other processes now busy on {load:.2f} cores]", flush=True)
    monitor = LoadMonitor()
    print(f"W1: {workload.description}; medians of {repeats} repeats; "
          f"threads={args.threads or 'default'}, {os.cpu_count()} CPUs")
    header = (f"{'batch':>6} {'optimizer':>9} {'kernel steps/s':>15} {'fit steps/s':>12} "
              f"{'fit/kernel':>10} {'overhead us':>12} {'gather us':>10} {'shuffle us':>11} "
              f"{'update us':>10}")
    print(header)
    print("-" * len(header))
    for batch in (32, 1024):
        kernel_s = kernel_seconds(kernel, workload, batch, repeats)
        gather_s = gather_seconds(workload, batch, repeats)
        shuffle_s = shuffle_seconds_per_step(workload, batch, repeats)
        for name, make in makers.items():
            update_s = optimizer_seconds(make, size, repeats)
            step_s = fit_seconds_per_step(objective, workload, batch, make, repeats)
            print(f"{batch:>6} {name:>9} {1 / kernel_s:>15,.0f} {1 / step_s:>12,.0f} "
                  f"{kernel_s / step_s:>10.2f} {1e6 * (step_s - kernel_s):>12.2f} "
                  f"{1e6 * gather_s:>10.2f} {1e6 * shuffle_s:>11.2f} {1e6 * update_s:>10.2f}")
    print("fit/kernel: the share of the raw kernel's speed the driver keeps (1.00 = no overhead); "
          "overhead = fit step - kernel call;\ngather, shuffle (per step) and update are parts of that "
          "overhead timed alone; fit times are steady state (epochs 2 and 3 of 3).")
    print(f"other processes kept {monitor.other_cores():.2f} of {os.cpu_count()} cores busy during the run")


if __name__ == "__main__":
    main()
