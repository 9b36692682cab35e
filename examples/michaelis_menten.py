"""Michaelis–Menten kinetics by least squares, with uncertainties and a confidence band.

The data are the classic Puromycin experiment (Treloar 1974; R's ``Puromycin`` data set,
treated cells): initial reaction velocity ``v`` (counts/min/min) against substrate
concentration ``S`` (ppm). The model ``v = Vmax*S/(Km + S)`` is fitted by
``sd.least_squares`` (Levenberg–Marquardt on symdiff's fused Gauss–Newton kernel), which
prints the fit report (estimates ± standard errors, correlations, χ², R², AIC). The
estimates are checked against R's ``nls`` on the same data (Vmax = 212.7 ± 6.947,
Km = 0.06412 ± 0.008281, to the digits R's documentation prints) and against
``scipy.optimize.curve_fit`` when scipy is installed.

Saves ``michaelis_menten.png`` (data, fitted curve with its 95 % confidence band, and
residuals) in the directory given by ``--out`` (default: the current directory).

Run: python examples/michaelis_menten.py [--out DIR]
"""

import argparse
from pathlib import Path

import numpy as np
import sympy as sp

import symdiff as sd

CONCENTRATION = np.array([0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.10, 1.10])
VELOCITY = np.array([76, 47, 97, 107, 123, 139, 159, 152, 191, 201, 207, 200], dtype=float)
#: R's nls on the same data, as its documentation prints it (4 significant digits)
R_NLS = {"Vmax": (212.7, 6.947, 0.05, 0.0005), "Km": (0.06412, 0.008281, 5e-6, 5e-7)}
Z95 = 1.959964


def confidence_band(result, grid):
    """Pointwise 95 % band of the fitted curve by the delta method: var(ŷ) = g Σ gᵀ, with
    g = ∂model/∂θ from symdiff's compiled Jacobian of the model on the grid."""
    (s,) = result.inputs
    gradient_kernel = sd.Residuals(result.model, list(result.params), [s]).compile()
    g = gradient_kernel.jacobian(result.x, {s: grid})
    spread = np.sqrt(np.einsum("ij,jk,ik->i", g, result.covariance, g))
    return Z95 * spread


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Writes michaelis_menten.png into --out.")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="directory for michaelis_menten.png (default: current directory)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    data = {"S": CONCENTRATION, "v": VELOCITY}
    result = sd.least_squares("Vmax*S/(Km + S)", data, "v", {"Vmax": 200.0, "Km": 0.1})
    print(result)
    print()
    print(f"{'':6}{'symdiff':>24}{'R nls (documented)':>26}")
    for name, (value, stderr, half_digit, half_digit_stderr) in R_NLS.items():
        print(f"{name:6}{result.params[name]:>13.6g} ± {result.stderr[name]:<9.4g}"
              f"{value:>14.4g} ± {stderr:<9.4g}")
        assert abs(result.params[name] - value) <= half_digit
        assert abs(result.stderr[name] - stderr) <= half_digit_stderr
    try:
        from scipy.optimize import curve_fit
    except ImportError:
        print("scipy not installed: skipping the comparison with scipy.optimize.curve_fit")
    else:
        popt, pcov = curve_fit(lambda S, Vmax, Km: Vmax * S / (Km + S), CONCENTRATION, VELOCITY,
                               p0=[200.0, 0.1])
        print(f"scipy curve_fit: Vmax = {popt[0]:.6g} ± {np.sqrt(pcov[0, 0]):.4g}, "
              f"Km = {popt[1]:.6g} ± {np.sqrt(pcov[1, 1]):.4g}")

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    grid = np.linspace(0.0, 1.15, 300)
    s = sp.Symbol("S", real=True)
    fitted = result.predict({s: grid})
    band = confidence_band(result, grid)
    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    left.fill_between(grid, fitted - band, fitted + band, color="C1", alpha=0.25, label="95% confidence band")
    left.plot(grid, fitted, color="C1", linewidth=2,
              label=f"Vmax·S/(Km + S): Vmax = {result.params['Vmax']:.1f} ± {result.stderr['Vmax']:.1f}, "
                    f"Km = {result.params['Km']:.4f} ± {result.stderr['Km']:.4f}")
    left.scatter(CONCENTRATION, VELOCITY, color="C0", zorder=3, label="Puromycin (treated)")
    left.set_xlabel("substrate concentration S (ppm)")
    left.set_ylabel("velocity v (counts/min²)")
    left.legend(loc="lower right", fontsize=8)
    residuals = VELOCITY - result.predict(data)
    right.axhline(0.0, color="C1")
    right.scatter(CONCENTRATION, residuals, color="C0")
    right.set_xlabel("S (ppm)")
    right.set_ylabel("residual v − fit")
    right.set_title(f"residuals (R² = {result.r2:.3f})")
    figure.tight_layout()
    path = args.out / "michaelis_menten.png"
    figure.savefig(path, dpi=110)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
