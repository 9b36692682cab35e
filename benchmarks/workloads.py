"""The benchmark workloads of issue 3: SymPy per-sample losses with seeded data.

A :class:`Workload` carries everything a contestant needs: the per-sample loss as
a SymPy expression (the objective is its mean over the batch), the parameter and
data symbols in order, one 1-D array per data symbol, and a parameter vector
``theta`` deliberately away from the optimum so that every gradient entry is
sizeable and comparisons between implementations are meaningful.

``kind`` names the model family, which is what hand-written peers dispatch on;
``unpack_mlp`` gives them the MLP's weight matrices in the same order as
``params``. Data are generated in float64 from a fixed seed and cast, so a
float32 workload holds exactly the float64 values rounded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

try:
    from symdiff import softplus
except ImportError:
    try:
        from symdiff.models.functions import softplus
    except ImportError:
        def softplus(z):
            return sp.log(1 + sp.exp(z))

SEED = 20261125
MLP_SIZES = (4, 16, 16, 1)


@dataclass(frozen=True)
class Workload:
    """One benchmark problem: loss formula, symbols, data columns and a theta."""

    name: str
    kind: str
    loss: sp.Expr
    params: tuple
    data_symbols: tuple
    columns: tuple  # one 1-D array per data symbol, same order
    theta: np.ndarray
    dtype: type = np.float64
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.columns[0])

    @property
    def data(self) -> dict:
        """Data as ``{symbol: column}``, the form a symdiff kernel takes."""
        return dict(zip(self.data_symbols, self.columns))

    @property
    def nbytes(self) -> int:
        return self.extra.get("nbytes") or sum(c.nbytes for c in self.columns)

    def features(self) -> np.ndarray:
        """All data columns but the last (the target) as an (n, d) C-ordered matrix."""
        return np.ascontiguousarray(np.column_stack(self.columns[:-1]))

    def target(self) -> np.ndarray:
        return self.columns[-1]

    def astype(self, dtype) -> Workload:
        """The same workload with data and theta rounded to ``dtype``."""
        return Workload(
            name=self.name + ("-f32" if dtype == np.float32 else ""),
            kind=self.kind, loss=self.loss, params=self.params,
            data_symbols=self.data_symbols,
            columns=tuple(np.ascontiguousarray(c, dtype=dtype) for c in self.columns),
            theta=self.theta.astype(dtype), dtype=dtype,
            description=self.description, extra=self.extra)


def _symbols(prefix: str, n: int) -> tuple:
    return tuple(sp.Symbol(f"{prefix}{i}", real=True) for i in range(n))


def linear_regression(n: int = 1_000_000, features: int = 8, name: str = "W1") -> Workload:
    """W1 (and W5 with small ``n``): MSE of ``w·x + b`` against ``y``."""
    rng = np.random.default_rng(SEED)
    w_true = rng.normal(size=features)
    X = rng.normal(size=(n, features))
    y = X @ w_true + 0.3 + 0.1 * rng.normal(size=n)
    w, x = _symbols("w", features), _symbols("x", features)
    b, ys = sp.Symbol("b", real=True), sp.Symbol("y", real=True)
    pred = sum(wi * xi for wi, xi in zip(w, x)) + b
    theta = np.concatenate([w_true + rng.normal(scale=0.5, size=features), [-0.7]])
    return Workload(name, "linear", (pred - ys) ** 2, w + (b,), x + (ys,),
                    tuple(X.T.copy()) + (y,), theta,
                    description=f"linear regression MSE, N={n:,}, {features} features + bias")


def logistic_regression(n: int = 1_000_000, features: int = 16) -> Workload:
    """W2: binary cross-entropy with logits, ``softplus(z) - y*z``."""
    rng = np.random.default_rng(SEED + 2)
    w_true = rng.normal(scale=0.5, size=features)
    X = rng.normal(size=(n, features))
    z = X @ w_true - 0.2
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    w, x = _symbols("w", features), _symbols("x", features)
    b, ys = sp.Symbol("b", real=True), sp.Symbol("y", real=True)
    zs = sum(wi * xi for wi, xi in zip(w, x)) + b
    theta = np.concatenate([w_true + rng.normal(scale=0.3, size=features), [0.4]])
    return Workload("W2", "logistic", softplus(zs) - ys * zs, w + (b,), x + (ys,),
                    tuple(X.T.copy()) + (y,), theta,
                    description=f"logistic regression, cross-entropy with logits, N={n:,}, "
                                f"{features} features + bias")


def curve_fit(n: int = 1_000_000) -> Workload:
    """W3: MSE of ``a*exp(-b*x) + c*sin(d*x + e)``."""
    rng = np.random.default_rng(SEED + 3)
    a, b, c, d, e = sp.symbols("a b c d e", real=True)
    xs, ys = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    true = np.array([2.0, 0.5, 1.0, 3.0, 0.3])
    x = rng.uniform(0.0, 10.0, size=n)
    y = true[0] * np.exp(-true[1] * x) + true[2] * np.sin(true[3] * x + true[4])
    y += 0.05 * rng.normal(size=n)
    pred = a * sp.exp(-b * xs) + c * sp.sin(d * xs + e)
    theta = np.array([1.5, 0.7, 0.8, 2.9, 0.1])
    return Workload("W3", "curve", (pred - ys) ** 2, (a, b, c, d, e), (xs, ys), (x, y), theta,
                    description=f"curve fit a·exp(−b·x)+c·sin(d·x+e), MSE, N={n:,}")


def mlp(n: int = 100_000) -> Workload:
    """W4: MLP 4-16-16-1 with tanh, scalar formulas, MSE.

    Parameter order: W1 (16×4, row-major), b1, W2 (16×16, row-major), b2,
    w3 (16), b3 — 369 parameters; :func:`unpack_mlp` undoes it.
    """
    rng = np.random.default_rng(SEED + 4)
    n_in, n_h1, n_h2, _ = MLP_SIZES
    X = rng.normal(size=(n, n_in))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] ** 2
    x, ys = _symbols("x", n_in), sp.Symbol("y", real=True)
    W1 = [_symbols(f"W1_{j}_", n_in) for j in range(n_h1)]
    b1 = _symbols("b1_", n_h1)
    W2 = [_symbols(f"W2_{k}_", n_h1) for k in range(n_h2)]
    b2 = _symbols("b2_", n_h2)
    w3, b3 = _symbols("w3_", n_h2), sp.Symbol("b3", real=True)
    h1 = [sp.tanh(sum(W1[j][i] * x[i] for i in range(n_in)) + b1[j]) for j in range(n_h1)]
    h2 = [sp.tanh(sum(W2[k][j] * h1[j] for j in range(n_h1)) + b2[k]) for k in range(n_h2)]
    out = sum(w3[k] * h2[k] for k in range(n_h2)) + b3
    params = sum(W1, ()) + b1 + sum(W2, ()) + b2 + w3 + (b3,)
    theta = np.concatenate([
        rng.normal(scale=1 / np.sqrt(n_in), size=n_h1 * n_in), rng.normal(scale=0.1, size=n_h1),
        rng.normal(scale=1 / np.sqrt(n_h1), size=n_h2 * n_h1), rng.normal(scale=0.1, size=n_h2),
        rng.normal(scale=1 / np.sqrt(n_h2), size=n_h2), [0.1]])
    return Workload("W4", "mlp", (out - ys) ** 2, params, x + (ys,),
                    tuple(X.T.copy()) + (y,), theta,
                    description=f"MLP 4-16-16-1 tanh as scalar formulas, MSE, N={n:,}, "
                                f"{len(params)} params")


def unpack_mlp(theta: np.ndarray):
    """``(W1, b1, W2, b2, w3, b3)`` views of a W4 parameter vector."""
    n_in, n_h1, n_h2, _ = MLP_SIZES
    sizes = [n_h1 * n_in, n_h1, n_h2 * n_h1, n_h2, n_h2, 1]
    parts = np.split(theta, np.cumsum(sizes)[:-1])
    return (parts[0].reshape(n_h1, n_in), parts[1], parts[2].reshape(n_h2, n_h1),
            parts[3], parts[4], parts[5][0])


def small_batch() -> Workload:
    """W5: the W1 model on a batch of 32 samples (time per call)."""
    return linear_regression(n=32, name="W5")


BUILDERS = {"W1": linear_regression, "W2": logistic_regression, "W3": curve_fit, "W4": mlp,
            "W5": small_batch}


def build(name: str) -> Workload:
    """Workload by name: W1–W5, or W1-f32 … W4-f32 (the W6 family)."""
    base, _, suffix = name.partition("-")
    w = BUILDERS[base]()
    return w.astype(np.float32) if suffix == "f32" else w
