"""The markdown report of a benchmark run: machine, per-workload tables, ratios, targets.

All ratios are ``time ÷ reference time``: below 1 the row is faster than the
reference. The targets of issue 3 are evaluated from the same run and marked
``met`` or ``MISSED``.
"""

from __future__ import annotations

import importlib
import os
import platform
import resource
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VERSIONED = ["numpy", "llvmlite", "sympy", "numba", "jax", "jaxlib", "torch", "symengine"]
NUMBA_ROWS = ("numba", "numba parallel")
FLOOR_ROWS = ("floor (numba)", "floor (numpy)")


class LoadMonitor:
    """CPU time other processes used while we ran, from /proc/stat minus our own usage."""

    def __init__(self):
        self.wall, self.busy, self.own = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy():
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return float("nan")

    @staticmethod
    def _own():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def other_cores(self) -> float:
        """Average number of cores busy with other processes since construction."""
        wall = time.perf_counter() - self.wall
        return ((self._busy() - self.busy) - (self._own() - self.own)) / wall


def wait_until_quiet(timeout_s, threshold=0.25, window_s=2.0):
    """Wait until other processes keep fewer than ``threshold`` cores busy over a window."""
    start = time.perf_counter()
    while True:
        monitor = LoadMonitor()
        time.sleep(window_s)
        load = monitor.other_cores()
        waited = time.perf_counter() - start
        if load < threshold or waited >= timeout_s:
            return waited, load


def machine() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = info.get("Model name", model).strip()
        if "CPU family" in info:
            model += f" (family {info['CPU family'].strip()}, model {info.get('Model', '?').strip()})"
        flags = info.get("Flags", "")
        simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
        model += f", {simd}"
        if "L3 cache" in info:
            model += f", L3 {info['L3 cache'].strip()}"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    versions = []
    for name in VERSIONED:
        try:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
        except Exception:  # noqa: BLE001 - a broken install must not end the report
            versions.append(f"{name} n/a")
    try:
        commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return (f"- CPU: {model}; {os.cpu_count()} logical cores; "
            f"{platform.system()} {platform.machine()}; Python {platform.python_version()}\n"
            f"- {', '.join(versions)}\n"
            f"- symdiff commit {commit or '?'}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
            f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}")


def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x))


def _row(rows, label):
    for r in rows:
        if r.label == label and r.times:
            return r
    return None


def _median(rows, label) -> float:
    r = _row(rows, label)
    return r.median if r else float("nan")


def _best_of(rows, labels):
    found = [r for r in (_row(rows, lb) for lb in labels) if r]
    return min(found, key=lambda r: r.median) if found else None


def _fmt(x, digits=3) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def _status(r) -> str:
    if r.status == "ok":
        return "–" if r.kind == "floor" else f"ok ({r.error:.0e})"
    return r.status


def compile_table(results) -> str:
    """symdiff's compile time per stage (``kernel.compile_times``), first compile only."""
    stages, found = [], []
    for w, rows in results:
        r = _row(rows, "symdiff")
        if r and r.compile_times and not r.compile_times.get("cached"):
            found.append((w.name, r))
            stages += [k for k, v in r.compile_times.items()
                       if isinstance(v, float) and k not in stages]
    if not found:
        return ""
    lines = ["| workload | setup s | " + " | ".join(stages) + " |", "|" + "---|" * (len(stages) + 2)]
    for name, r in found:
        lines.append(f"| {name} | {_fmt(r.setup_s, 2)} | "
                     + " | ".join(_fmt(r.compile_times.get(k), 2) for k in stages) + " |")
    return ("### symdiff compile time per stage (seconds; setup = formula to first result)\n\n"
            + "\n".join(lines) + "\n")


def workload_table(w, rows) -> str:
    numba = _best_of(rows, NUMBA_ROWS)
    floor = _best_of(rows, FLOOR_ROWS)
    numpy_ms = _median(rows, "numpy")
    small = w.name == "W5"
    unit, scale = ("µs", 1e6) if small else ("ms", 1e3)
    head = (f"### {w.name}: {w.description} ({np.dtype(w.dtype).name}, "
            f"{w.nbytes / 1e6:.3g} MB of data)\n\n")
    cols = ["contender", f"median {unit}", f"min {unit}", "÷ numba", "÷ floor", "÷ numpy",
            "cores used", f"CPU {unit}", "setup s", "check (max rel err)", "notes"]
    if small:
        cols.remove("÷ floor")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if r.times:
            cell = {"contender": r.label, f"median {unit}": _fmt(r.median * scale),
                    f"min {unit}": _fmt(r.best * scale),
                    "÷ numba": _fmt(r.median / numba.median if numba else None),
                    "÷ floor": _fmt(r.median / floor.median if floor else None),
                    "÷ numpy": _fmt(r.median / numpy_ms),
                    "cores used": f"{r.cores_used:.1f}",
                    f"CPU {unit}": _fmt(r.cpu_median * scale),
                    "setup s": _fmt(r.setup_s, 2), "check (max rel err)": _status(r),
                    "notes": r.note}
        else:
            cell = {"contender": r.label, f"median {unit}": r.status, "notes": r.reason}
        lines.append("| " + " | ".join(cell.get(c, "–") for c in cols) + " |")
    notes = []
    if numba:
        notes.append(f"numba = {numba.label}")
    if floor:
        notes.append(f"floor = {floor.label}")
    return head + "\n".join(lines) + ("\n\n" + "; ".join(notes) + "\n" if notes else "\n")


def summary(results) -> str:
    by = {w.name: rows for w, rows in results}
    out = []
    lines = ["| workload | symdiff float64 ms | symdiff float32 ms | f64 ÷ f32 (target ≥ 1.6 on W1–W3) |",
             "|---|---|---|---|"]
    for n in ("W1", "W2", "W3", "W4"):
        a, b = _median(by.get(n, []), "symdiff"), _median(by.get(n + "-f32", []), "symdiff")
        if _finite(a) or _finite(b):
            lines.append(f"| {n} | {_fmt(a * 1e3)} | {_fmt(b * 1e3)} | {_fmt(a / b)} |")
    out.append("### float32 vs float64 (symdiff, all threads)\n\n" + "\n".join(lines))
    lines = [("| workload | symdiff 1 thread ms | symdiff all threads ms "
              "| 1 ÷ all (target ≥ 1.7 on W3, W4) | numba serial ÷ parallel |"),
             "|---|---|---|---|---|"]
    for w, rows in results:
        if w.name == "W5":
            continue
        one, all_ = _median(rows, "symdiff 1 thread"), _median(rows, "symdiff")
        ns, np_ = _median(rows, "numba"), _median(rows, "numba parallel")
        if _finite(one) or _finite(ns):
            lines.append(f"| {w.name} | {_fmt(one * 1e3)} | {_fmt(all_ * 1e3)} | {_fmt(one / all_)} "
                         f"| {_fmt(ns / np_)} |")
    out.append(f"### Threads ({os.cpu_count()} cores)\n\n" + "\n".join(lines))
    return "\n\n".join(out) + "\n"


def _verdict(ok) -> str:
    return "–" if ok is None else "met" if ok else "**MISSED**"


def targets(results) -> str:
    """Issue 3's targets, evaluated on this run."""
    by = {w.name: rows for w, rows in results}
    lines = ["| target | measured | verdict |", "|---|---|---|"]

    def r2(x):
        return f"{x:.2f}" if _finite(x) else "–"

    def add(text, value, ok):
        lines.append(f"| {text} | {value} | {_verdict(ok if value != '–' else None)} |")

    for n in ("W1", "W2"):
        rows = by.get(n, [])
        floor = _best_of(rows, FLOOR_ROWS)
        s = _median(rows, "symdiff")
        ratio = s / floor.median if floor else float("nan")
        add(f"{n}: symdiff ≤ 1.5 × bandwidth floor", r2(ratio) + " ×" if _finite(ratio) else "–",
            ratio <= 1.5)
    for n, need in (("W3", 5.0), ("W4", 2.0)):
        rows = by.get(n, [])
        peers_ = [r for r in rows if r.kind == "peer" and r.times]
        best = min(peers_, key=lambda r: r.median) if peers_ else None
        s = _median(rows, "symdiff")
        ratio = best.median / s if best else float("nan")
        add(f"{n}: symdiff ≥ {need:g}× faster than the best peer",
            f"{r2(ratio)}× (best peer: {best.label})" if _finite(ratio) else "–", ratio >= need)
    for n in ("W1", "W2", "W3", "W4"):
        rows = by.get(n, [])
        ratio = _median(rows, "numpy") / _median(rows, "symdiff")
        add(f"{n}: symdiff ≥ 3× faster than NumPy", r2(ratio) + "×" if _finite(ratio) else "–",
            ratio >= 3)
    rows = by.get("W5", [])
    nb, bound, checked = (_median(rows, k) for k in ("numba", "symdiff bound", "symdiff"))
    add("W5: bound call ≤ Numba call", f"{_fmt(bound * 1e6)} µs vs {_fmt(nb * 1e6)} µs"
        if _finite(bound) and _finite(nb) else "–", bound <= nb)
    add("W5: checked call ≤ 3 × Numba call", f"{r2(checked / nb)} ×" if _finite(checked)
        and _finite(nb) else "–", checked <= 3 * nb)
    for n in ("W1", "W2", "W3"):
        ratio = _median(by.get(n, []), "symdiff") / _median(by.get(n + "-f32", []), "symdiff")
        add(f"{n}: float32 ≥ 1.6× faster than float64", r2(ratio) + "×" if _finite(ratio)
            else "–", ratio >= 1.6)
    for n in ("W3", "W4"):
        rows = by.get(n, [])
        ratio = _median(rows, "symdiff 1 thread") / _median(rows, "symdiff")
        add(f"{n}: 2 threads ≥ 1.7× faster than 1", r2(ratio) + "×" if _finite(ratio) else "–",
            ratio >= 1.7)
    for n, limit in (("W1", 0.5), ("W2", 0.5), ("W3", 0.5), ("W4", 3.0)):
        r = _row(by.get(n, []), "symdiff")
        s = r.setup_s if r else float("nan")
        add(f"{n}: compile ≤ {limit:g} s (formula → callable)", _fmt(s, 2) + " s" if _finite(s)
            else "–", s <= limit)
    return "### Targets of issue 3\n\n" + "\n".join(lines) + "\n"


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def update_readme(path: Path, text: str) -> None:
    """Replace what lies between the results markers of ``path`` with ``text``."""
    readme = path.read_text()
    head, _, rest = readme.partition(README_START)
    _, found, tail = rest.partition(README_END)
    if not found:
        raise SystemExit(f"{path} has no {README_START} … {README_END} markers")
    body = text.replace("## symdiff benchmark", "### symdiff benchmark", 1)
    body = body.replace("\n### ", "\n#### ")
    path.write_text(f"{head}{README_START}\n{body}\n{README_END}{tail}")


def render(results, args, elapsed, other_cores) -> str:
    mode = "--quick" if args.quick else "full"
    header = (f"## symdiff benchmark ({mode}, {args.repeats} interleaved rounds, medians)\n\n"
              f"{machine()}\n"
              f"- run took {elapsed:.0f} s; other processes kept {other_cores:.2f} of "
              f"{os.cpu_count()} cores busy on average meanwhile\n\n"
              "Ratios are time ÷ reference time (below 1 = faster than the reference). "
              "numba = the faster of the two hand-written Numba loops; floor = the faster "
              "way to read the data once. setup = one-time cost (build, compile, first call) "
              "beyond one ordinary call; for symdiff it is the compile from formula to "
              "callable.\n\n")
    body = "\n".join(workload_table(w, rows) for w, rows in results)
    return "\n".join([header + body, summary(results), compile_table(results), targets(results)])
