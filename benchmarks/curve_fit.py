"""sd.curve_fit against scipy.optimize on the issue's curve-fit workloads, in one run.

Large: ``a*exp(-b*x) + c*sin(d*x + e)`` on 1,000,000 points, from a fixed start to
convergence, by

* ``sd.curve_fit`` with a warm cache (the NumPy function traced and compiled once before
  timing; each timed call re-binds the data and runs Levenberg–Marquardt on the fused
  Gauss–Newton kernel),
* ``scipy.optimize.curve_fit`` (MINPACK lmdif, finite-difference Jacobian, as users call it),
* ``scipy.optimize.least_squares(method="lm")`` with a hand-written NumPy Jacobian.

All three must reach the same optimum (parameters to 1e-6 relative, else the run stops
with status 1). Small: the same exponential-plus-sine model and a three-parameter decay on
6, 25 and 250 points: time per fit of ``sd.curve_fit`` (warm) against
``scipy.optimize.curve_fit``. Prints medians and ratios (peer time / symdiff time: above 1
means symdiff is faster).

Run: ``python benchmarks/curve_fit.py`` (``--quick``: 200,000 points, fewer repeats;
``--small``: the small fits alone). Kernels use every core, as sd.curve_fit does by default.
"""

import argparse
import statistics
import sys
import time

import numpy as np

import symdiff as sd

TRUTH = np.array([2.0, 0.4, 0.8, 3.0, 0.5])
START = np.array([1.5, 0.3, 0.6, 2.9, 0.3])


def exp_sin(x, a, b, c, d, e):
    return a * np.exp(-b * x) + c * np.sin(d * x + e)


def exp_sin_jacobian(theta, x, y):
    a, b, c, d, e = theta
    ex = np.exp(-b * x)
    s, co = np.sin(d * x + e), np.cos(d * x + e)
    return np.column_stack([ex, -a * x * ex, s, c * x * co, c * co])


def decay(x, a, b, c):
    return a * np.exp(-b * x) + c


def data(n, f, truth, seed=0, noise=0.05, span=10.0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, span, n)
    return x, f(x, *truth) + noise * rng.standard_normal(n)


def median_time(call, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def large(n, repeats):
    from scipy.optimize import curve_fit, least_squares
    x, y = data(n, exp_sin, TRUTH)
    sd.curve_fit(exp_sin, x, y, p0=START)          # trace + compile once (warm cache)
    rows = []
    t_sd, (p_sd, _) = median_time(lambda: sd.curve_fit(exp_sin, x, y, p0=START), repeats)
    t_cf, (p_cf, _) = median_time(lambda: curve_fit(exp_sin, x, y, p0=START), repeats)
    t_ls, sol = median_time(lambda: least_squares(lambda t: exp_sin(x, *t) - y, START, method="lm",
                                                  jac=lambda t: exp_sin_jacobian(t, x, y)), repeats)
    for name, p in (("scipy.optimize.curve_fit", p_cf), ("scipy least_squares + NumPy Jacobian", sol.x)):
        if not np.allclose(p, p_sd, rtol=1e-6):
            print(f"WRONG: {name} reached {p}, symdiff {p_sd}", file=sys.stderr)
            sys.exit(1)
    rows.append(("sd.curve_fit (warm)", t_sd, 1.0))
    rows.append(("scipy.optimize.curve_fit", t_cf, t_cf / t_sd))
    rows.append(("scipy least_squares(lm) + NumPy Jacobian", t_ls, t_ls / t_sd))
    print(f"\n## a*exp(-b*x) + c*sin(d*x + e), {n:,} points, from {START.tolist()} to convergence\n")
    print(f"optimum (all three agree to 1e-6): {np.round(p_sd, 6).tolist()}\n")
    print("| contender | median time | ratio (peer / symdiff) |")
    print("|---|---:|---:|")
    for name, t, ratio in rows:
        print(f"| {name} | {t * 1e3:.1f} ms | {ratio:.1f}× |")


def small(repeats):
    from scipy.optimize import curve_fit
    print("\n## Small fits: time per fit (warm cache)\n")
    print("| model | points | sd.curve_fit | scipy curve_fit | ratio (scipy / symdiff) |")
    print("|---|---:|---:|---:|---:|")
    for name, f, truth, start in (("a*exp(-b*x) + c", decay, [2.5, 1.3, 0.5], [1.0, 1.0, 0.0]),
                                  ("a*exp(-b*x) + c*sin(d*x + e)", exp_sin, TRUTH, START)):
        for n in (6, 25, 250):
            x, y = data(n, f, truth, span=4.0 if f is decay else 10.0)
            p_sd, _ = sd.curve_fit(f, x, y, p0=start)
            p_cf, _ = curve_fit(f, x, y, p0=start)
            same = np.allclose(p_sd, p_cf, rtol=1e-5, atol=1e-8)
            number = 200
            t_sd = median_time(lambda: [sd.curve_fit(f, x, y, p0=start) for _ in range(number)], repeats)[0] / number
            t_cf = median_time(lambda: [curve_fit(f, x, y, p0=start) for _ in range(number)], repeats)[0] / number
            flag = "" if same else " (different optimum)"
            print(f"| {name} | {n} | {t_sd * 1e6:.0f} µs | {t_cf * 1e6:.0f} µs | {t_cf / t_sd:.2f}×{flag} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 points, 3 repeats")
    parser.add_argument("--small", action="store_true", help="the small fits alone")
    args = parser.parse_args()
    n = 200_000 if args.quick else 1_000_000
    repeats = 3 if args.quick else 7
    if not args.small:
        large(n, repeats)
    small(repeats)


if __name__ == "__main__":
    main()
