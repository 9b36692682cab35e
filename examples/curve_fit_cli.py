"""A nonlinear curve fit from a CSV file, through the ``symdiff fit`` command line.

Writes ``decay.csv`` (200 noisy measurements of ``y = 2.5*exp(-1.3*x) + 0.5``, the
same data as the shipped ``examples/data/decay.csv``) into ``--out``, then runs

    symdiff fit "y ~ a*exp(-b*x) + c" --data decay.csv --init a=1,b=1,c=0 \
        --optimizer adam --lr 0.05 --epochs 1500 --plot decay_fit.png --json decay_fit.json

as a separate process (``python -m symdiff``, the same program as the console
script), shows its report, and reads the fitted parameters back from the JSON.
The formula string is parsed by symdiff's own parser, never by ``eval``.
Set SYMDIFF_FAST=1 for a quick run.

Run: python examples/curve_fit_cli.py [--out DIR]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FAST = os.environ.get("SYMDIFF_FAST") == "1"
TRUE_PARAMS = {"a": 2.5, "b": 1.3, "c": 0.5}


def write_measurements(path, seed=0, rows=200):
    """Noisy samples of a*exp(-b*x) + c on [0, 4], as a CSV file with columns x, y."""
    rng = np.random.default_rng(seed)
    xs = np.sort(rng.uniform(0.0, 4.0, rows))
    ys = TRUE_PARAMS["a"] * np.exp(-TRUE_PARAMS["b"] * xs) + TRUE_PARAMS["c"] + 0.05 * rng.standard_normal(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y"])
        writer.writerows((f"{x:.6f}", f"{y:.6f}") for x, y in zip(xs, ys))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Output files go to --out (default: the current directory).")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for decay.csv, decay_fit.png and decay_fit.json "
                        "(default: the current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    data = args.out / "decay.csv"
    write_measurements(data)
    epochs = 100 if FAST else 1500
    command = [
        sys.executable, "-m", "symdiff", "fit", "y ~ a*exp(-b*x) + c",
        "--data", str(data), "--init", "a=1,b=1,c=0", "--optimizer", "adam", "--lr", "0.05",
        "--epochs", str(epochs), "--plot", str(args.out / "decay_fit.png"),
        "--json", str(args.out / "decay_fit.json"), "--quiet",
    ]
    print("$ symdiff " + " ".join(f'"{part}"' if " " in part else part for part in command[3:]))
    subprocess.run(command, check=True)

    result = json.loads((args.out / "decay_fit.json").read_text())
    print("\nfitted vs true: " + ", ".join(
        f"{name} {result['params'][name]:.3f} ({true})" for name, true in TRUE_PARAMS.items()))
    if not FAST:
        for name, true in TRUE_PARAMS.items():
            assert abs(result["params"][name] - true) < 0.1, (name, result["params"][name])
        assert result["r2"] > 0.98


if __name__ == "__main__":
    main()
