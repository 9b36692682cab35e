"""Fits on Dask data vs the same fits in one process: time per iteration and bytes moved.

    python benchmarks/distributed.py [--rows 4000000] [--partitions 8] [--workers 2]

4e6 rows of ``y = a·exp(−b·x) + c + noise`` are generated *on the workers* of a
LocalCluster (processes, 1 thread each) by ``dask.array.random``; the local peer computes
the same rows into this process. Reported, medians over repeated calls at a fixed theta:

* per-call time of the Gauss–Newton sums (least squares) and of the loss+gradient (L-BFGS),
  distributed vs local (the local kernel uses every core, as a one-process fit would);
* whole fits (``sd.least_squares``, ``sd.minimize``): wall time, iterations, time per
  iteration, and whether both reach the same optimum;
* bytes per call: the payload (theta out, partial sums back, from ``bound.stats``); the
  median traffic over the loopback interface during one call (client, scheduler, workers:
  Dask's task messages and protocol included), next to the same for an idle sleep of the
  same length; and the workers' fetches of data from each other during the calls (from
  their transfer logs: partitions never move, only the small recipe once per worker).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# this file's name shadows the ``distributed`` package: drop its folder from the path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

import symdiff as sd  # noqa: E402
from symdiff import distributed as sdd  # noqa: E402

a, b, c, x, y = sp.symbols("a b c x y", real=True)
MODEL = a * sp.exp(-b * x) + c
THETA = np.array([2.0, 0.7, 0.2])
START = {a: 1.0, b: 1.0, c: 0.0}


def loopback_bytes():
    import psutil
    nics = psutil.net_io_counters(pernic=True)
    lo = nics.get("lo")
    return None if lo is None else lo.bytes_sent


def transfers(client):
    """(count, bytes) of data fetched from other workers, summed over the workers."""
    def log(dask_worker):
        entries = list(getattr(dask_worker, "transfer_incoming_log", ()))
        return len(entries), sum(int(e.get("total", 0)) for e in entries)
    counts = client.run(log).values()
    return sum(c for c, _ in counts), sum(b for _, b in counts)


def _noop(z):
    return z


def per_call(fn, repeats):
    """Median seconds and median loopback bytes per call (medians: other processes on a
    shared machine use the loopback interface too)."""
    fn()
    times, wire = [], []
    for _ in range(repeats):
        lo, t = loopback_bytes(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if lo is not None:
            wire.append(loopback_bytes() - lo)
    return statistics.median(times), (statistics.median(wire) if wire else float("nan"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=float, default=4e6)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    n, parts = int(args.rows), args.partitions

    import dask
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        rs = da.random.RandomState(42)
        xs = rs.uniform(0, 4, size=n, chunks=-(-n // parts))
        ys = 2.5 * da.exp(-0.8 * xs) + 0.3 + 0.05 * rs.normal(size=n, chunks=xs.chunks)
        data = {x: xs, y: ys}
        X, Y = dask.compute(xs, ys)  # the local peer's copy (only the peer gathers)
        local = {"x": X, "y": Y}
        obj = sd.Objective((MODEL - y) ** 2, [a, b, c], [x, y])
        res = sd.Residuals(MODEL - y, [a, b, c], [x, y])

        rows = []
        for name, source in (("Gauss-Newton sums (least squares)", res), ("loss+gradient (L-BFGS)", obj)):
            t = time.perf_counter()
            there = sdd.bind(source, data)
            bind_s = time.perf_counter() - t
            here = source.compile().bind(local)
            t_here, _ = per_call(lambda: here(THETA), args.repeats)
            before = dict(there.stats)
            moved0 = transfers(client)
            t_there, wire = per_call(lambda: there(THETA), args.repeats)
            _, idle = per_call(lambda: time.sleep(t_there), args.repeats)  # heartbeats, neighbours
            moved = [m1 - m0 for m0, m1 in zip(moved0, transfers(client))]
            calls = there.stats["calls"] - before["calls"]
            sent = (there.stats["bytes_sent"] - before["bytes_sent"]) / calls
            back = (there.stats["bytes_received"] - before["bytes_received"]) / calls
            rows.append((name, t_here, t_there, bind_s, sent, back, wire, idle, moved))
            there.close()

        futures = client.map(_noop, range(args.workers))  # a call is one task per worker
        client.gather(futures)
        floor, floor_wire = per_call(lambda: client.gather(client.map(_noop, futures, pure=False)),
                                     args.repeats)

        fits = []
        for name, run in (("sd.least_squares (LM)", lambda d: sd.least_squares(MODEL, d, y, START)),
                          ("sd.minimize (L-BFGS)", lambda d: sd.minimize(obj, d, x0=START))):
            out = {}
            for where, d in (("local", local), ("dask", data)):
                t = time.perf_counter()
                r = run(d)
                out[where] = (time.perf_counter() - t, r)
            fits.append((name, out))

    print(f"# {n:.3g} rows in {parts} partitions on {args.workers} Dask workers (processes, "
          f"1 thread each) vs one process ({os.cpu_count()} cores); medians of {args.repeats} calls")
    print(f"{'per call':36s} {'local ms':>9s} {'dask ms':>9s} {'ratio':>6s} {'bind s':>7s} "
          f"{'theta out B':>11s} {'sums back B':>11s} {'loopback B':>10s} {'idle lo B':>9s} "
          f"{'worker-worker transfers':>23s}")
    for name, t_here, t_there, bind_s, sent, back, wire, idle, moved in rows:
        print(f"{name:36s} {1e3 * t_here:9.2f} {1e3 * t_there:9.2f} {t_there / t_here:6.2f} "
              f"{bind_s:7.2f} {sent:11.0f} {back:11.0f} {wire:10.0f} {idle:9.0f} "
              f"{moved[0]:8d} ({moved[1]} B)")
    print(f"{'Dask floor: %d no-op tasks' % args.workers:36s} {'':9s} {1e3 * floor:9.2f} {'':6s} {'':7s} "
          f"{'':11s} {'':11s} {floor_wire:10.0f}")
    print(f"{'whole fit (dask: bind included)':36s} {'local s':>9s} {'dask s':>9s} {'iters':>6s} {'ms/it local':>11s} "
          f"{'ms/it dask':>10s}  same optimum")
    for name, out in fits:
        (tl, rl), (td, rd) = out["local"], out["dask"]
        it = rl.nfev
        same = np.allclose(rl.x, rd.x, rtol=1e-7)
        print(f"{name:36s} {tl:9.2f} {td:9.2f} {it:6d} {1e3 * tl / it:11.2f} "
              f"{1e3 * td / rd.nfev:10.2f}  {same} (nfev dask {rd.nfev})")


if __name__ == "__main__":
    main()
