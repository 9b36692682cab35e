"""Benchmark symdiff against its peers on the workloads of issue 3; one command.

    python benchmarks/run.py [--quick] [--only W1,W3] [--repeats 11] [--out results.md]

For each workload every contender (the peers of ``peers.py`` and symdiff's
kernels) is prepared once (its one-time setup and first call are timed), its loss
and gradient are checked against the hand-written NumPy reference, it is warmed
up, and then all contenders are timed round-robin — one call of each per round,
the starting contender rotating — so that drifting load on a shared machine hits
all of them alike. The table reports medians over the rounds. A contender that is
not installed shows ``n/a``; one whose gradient disagrees shows ``WRONG`` and is
not timed (the run then exits with status 1).

Spinning worker threads of one library would steal cores from the next contender,
so the OpenMP runtimes (PyTorch, Numba) are asked to sleep when idle and OpenBLAS
to stop spinning at once; both are set before NumPy is imported, unless the
caller's environment already sets them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np
import peers
import report
import workloads

BIG = ["W1", "W2", "W3", "W4"]
FLOAT32 = [f"{w}-f32" for w in BIG]
RTOL = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-3}
#: --quick leaves out the peers that take seconds to set up (compiles measured on 2 cores)
QUICK_SKIP = {"numba parallel": "skipped by --quick (compile 2–9 s)",
              "floor (numba)": "skipped by --quick (compile ~1 s)"}
QUICK_SKIP_ON = {"W4": {"sympy.lambdify": "skipped by --quick (setup ~20 s)"}}
#: peers --quick still runs on the float32 workloads (besides symdiff)
QUICK_F32 = {"numpy", "floor (numpy)", "numba"}


@dataclass
class Row:
    """One contender on one workload: setup, check and timing results."""

    label: str
    contender: peers.Contender | None = None
    status: str = "ok"  # ok | n/a | WRONG | error
    reason: str = ""
    setup_s: float = float("nan")
    error: float = float("nan")
    times: list = field(default_factory=list)
    cpu: list = field(default_factory=list)  # process CPU seconds per wall second, per sample
    inner: int = 1
    compile_times: dict | None = None
    kind: str = "peer"  # peer | floor | symdiff
    note: str = ""

    @property
    def median(self) -> float:
        return float(np.median(self.times)) if self.times else float("nan")

    @property
    def cpu_median(self) -> float:
        """Median process CPU seconds per call (all threads): what the call cost the machine."""
        return float(np.median(np.multiply(self.times, self.cpu))) if self.cpu else float("nan")

    @property
    def cores_used(self) -> float:
        return float(np.median(self.cpu)) if self.cpu else float("nan")

    @property
    def best(self) -> float:
        return float(np.min(self.times)) if self.times else float("nan")


# --------------------------------------------------------------------------- symdiff

def _prepare_symdiff(w, threads, bound=False):
    import symdiff as sd
    if not hasattr(sd, "Objective"):
        raise peers.PeerUnavailable("symdiff core not available")
    obj = sd.Objective(w.loss, params=list(w.params), data=list(w.data_symbols))
    try:
        kernel = obj.compile(dtype=w.dtype, threads=threads, cache=False)
    except TypeError:
        kernel = obj.compile(dtype=w.dtype, threads=threads)
    note = f"{kernel.threads} thread{'s' if kernel.threads > 1 else ''}"
    if getattr(kernel, "lanes", None):
        note += f", {kernel.lanes} lanes"
    cached = (getattr(kernel, "compile_times", None) or {}).get("cached")
    if cached:
        note += f", machine code from {cached} cache"
    theta64 = w.theta.astype(np.float64)
    if bound:
        bound_call = kernel.bind(w.data)
        c = peers.Contender(lambda theta, data: bound_call(theta), None, note + ", bind(data)")
    else:
        c = peers.Contender(kernel, w.data, note)
    c.theta = theta64
    c.compile_times = getattr(kernel, "compile_times", None)
    return c


def symdiff_contenders(w, with_bound):
    out = {"symdiff": lambda w: _prepare_symdiff(w, None),
           "symdiff 1 thread": lambda w: _prepare_symdiff(w, 1)}
    if with_bound:
        out["symdiff bound"] = lambda w: _prepare_symdiff(w, None, bound=True)
    return out


# --------------------------------------------------------------------------- measuring

def _reference(w):
    """NumPy's loss and gradient in float64 on the workload's (possibly rounded) data."""
    w64 = w.astype(np.float64) if w.dtype != np.float64 else w
    c = peers.prepare_numpy(w64)
    loss, grad = c.call(w64.theta, c.data)
    return loss, np.asarray(grad, dtype=np.float64)


def _check(row, result, ref, rtol):
    loss, grad = result
    ref_loss, ref_grad = ref
    grad = np.asarray(grad, dtype=np.float64)
    if grad.shape != ref_grad.shape:
        return f"gradient shape {grad.shape}, NumPy's is {ref_grad.shape}"
    scale = max(float(np.max(np.abs(ref_grad))), 1e-300)
    row.error = max(float(np.max(np.abs(grad - ref_grad))) / scale,
                    abs(float(loss) - ref_loss) / max(abs(ref_loss), 1e-300))
    if not np.allclose(grad, ref_grad, rtol=rtol, atol=rtol * scale) or \
            not np.isclose(loss, ref_loss, rtol=rtol):
        return f"differs from NumPy by {row.error:.1e} (rtol {rtol:g})"
    return ""


def prepare_rows(w, makers, ref, skip):
    rows = []
    rtol = RTOL[np.dtype(w.dtype)]
    for label, make in makers.items():
        row = Row(label, kind="floor" if label.startswith("floor") else
                  "symdiff" if label.startswith("symdiff") else "peer")
        rows.append(row)
        if label in skip:
            row.status, row.reason = "n/a", skip[label]
            continue
        try:
            t0 = time.perf_counter()
            c = make(w)
            theta = getattr(c, "theta", w.theta)
            result = c.call(theta, c.data)
            row.setup_s = time.perf_counter() - t0
        except peers.PeerUnavailable as exc:
            row.status, row.reason = "n/a", str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a peer crashing must not end the run
            row.status, row.reason = "error", f"{type(exc).__name__}: {exc}"[:120]
            continue
        row.contender = c
        row.compile_times = getattr(c, "compile_times", None)
        if c.checked:
            problem = _check(row, result, ref, rtol)
            if problem:
                row.status, row.reason = "WRONG", problem
                row.contender = None
    return rows


def _one(c, inner):
    """Seconds per call over ``inner`` calls, and the cores busy meanwhile (CPU ÷ wall time)."""
    theta = getattr(c, "theta", None)
    call, data = c.call, c.data
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(inner):
        call(theta, data)
    wall = time.perf_counter() - t0
    return wall / inner, (time.process_time() - c0) / wall


def time_rows(rows, theta, repeats, target_s=None):
    """Round-robin timing; ``target_s`` sets calls per sample so a sample lasts that long."""
    live = [r for r in rows if r.contender is not None]
    for r in live:
        if getattr(r.contender, "theta", None) is None:
            r.contender.theta = theta
        first = min(_one(r.contender, 1)[0] for _ in range(3))  # warm-up
        if target_s:
            r.inner = int(np.clip(target_s / max(first, 1e-7), 1, 100_000))
    for k in range(repeats):
        for r in live[k % len(live):] + live[:k % len(live)]:
            time.sleep(0.001)
            seconds, cores = _one(r.contender, r.inner)
            r.times.append(seconds)
            r.cpu.append(cores)
    for r in live:
        if np.isfinite(r.setup_s):
            r.setup_s = max(r.setup_s - r.median, 0.0)
        r.note, r.contender = r.contender.note, None  # let its copy of the data go


def run_workload(name, args):
    w = workloads.build(name)
    base = name.split("-")[0]
    makers = dict(peers.PEERS)
    if name == "W5":
        makers = {k: v for k, v in makers.items() if not k.startswith("floor")}
    makers.update(symdiff_contenders(w, with_bound=(name == "W5")))
    skip = {}
    if args.quick:
        skip = {**QUICK_SKIP, **QUICK_SKIP_ON.get(base, {})}
        if w.dtype == np.float32:
            skip.update({p: "skipped by --quick" for p in makers
                         if p not in QUICK_F32 and not p.startswith("symdiff") and p not in skip})
    ref = _reference(w)
    rows = prepare_rows(w, makers, ref, skip)
    time_rows(rows, w.theta, args.repeats, target_s=0.01 if name == "W5" else None)
    info = workloads.Workload(w.name, w.kind, w.loss, w.params, w.data_symbols,
                              tuple(np.empty(0, w.dtype) for _ in w.columns), w.theta, w.dtype,
                              w.description, {"nbytes": w.nbytes})
    return info, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="7 rounds; leave out peers that are slow to set up, and most "
                             "peers on float32")
    parser.add_argument("--only", default="",
                        help="comma-separated workloads: W1..W6, or W1-f32..W4-f32")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 11, quick 7)")
    parser.add_argument("--out", default=None, help="also write the markdown report here")
    parser.add_argument("--readme", action="store_true",
                        help="also put the report into benchmarks/README.md (Latest results)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to leave the "
                             "cores idle (the machine is shared)")
    args = parser.parse_args(argv)
    args.repeats = max(7, args.repeats or (7 if args.quick else 11))

    names = BIG + ["W5"] + FLOAT32
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        expanded = []
        for s in wanted:
            expanded += FLOAT32 if s == "W6" else [s]
        unknown = [s for s in expanded if s not in names]
        if unknown:
            parser.error(f"unknown workload(s) {unknown}; choose from W1..W6, "
                         f"{', '.join(FLOAT32)}")
        names = [n for n in names if n in expanded]

    if args.wait_quiet > 0:
        waited, load = report.wait_until_quiet(args.wait_quiet)
        print(f"[waited {waited:.0f} s; other processes now busy on {load:.2f} cores]",
              file=sys.stderr, flush=True)
    monitor = report.LoadMonitor()
    started = time.perf_counter()
    results = []
    for name in names:
        t0 = time.perf_counter()
        w, rows = run_workload(name, args)
        results.append((w, rows))
        print(f"[{name} done in {time.perf_counter() - t0:.1f} s]", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    text = report.render(results, args, elapsed, monitor.other_cores())
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.readme:
        report.update_readme(HERE / "README.md", text)
    wrong = [(w.name, r.label) for w, rows in results for r in rows if r.status == "WRONG"]
    if wrong:
        print(f"gradient check failed: {wrong}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
