"""Nonlinear least-squares test problems with published optima.

Moré, Garbow & Hillstrom (1981), "Testing unconstrained optimization software", ACM TOMS 7:
residual vectors written here in SymPy; the reference Jacobian is ``sympy.diff`` of them,
evaluated by ``lambdify`` (an independent path from symdiff's). Starts are the paper's
``x0``, ``10·x0`` and ``100·x0``; ``optima`` lists the sums of squares the paper reports
(global and the local ones good algorithms are known to stop at).

NIST StRD nonlinear regression (public-domain data under ``tests/data/nist/``): the data,
the two published starts and the certified parameters and residual sum of squares are
read from the files; the model formulas are copied from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

NIST_DIR = Path(__file__).parent / "data" / "nist"


@dataclass
class Problem:
    name: str
    residuals: list          # SymPy expressions in ``params`` (None: set _r and _J)
    params: tuple
    starts: list             # list of start vectors
    optima: tuple            # published sums of squares (first = global)
    solution: tuple = None   # certified parameters when published

    def __post_init__(self):
        if self.residuals is None:
            return
        r = sp.Matrix(self.residuals)
        J = r.jacobian(sp.Matrix(self.params))
        self._r = sp.lambdify([self.params], r, "numpy")
        self._J = sp.lambdify([self.params], J, "numpy")

    @property
    def p(self):
        return len(self.params)

    def r(self, x):
        return np.asarray(self._r(tuple(x)), float).ravel()

    def rJ(self, x):
        return self.r(x), np.asarray(self._J(tuple(x)), float).reshape(-1, self.p)

    def normal(self, x):
        r, J = self.rJ(x)
        return float(r @ r), J.T @ r, J.T @ J


def _xs(n):
    return sp.symbols(f"x1:{n + 1}", real=True)


def _mgh():
    out = []

    def add(name, res, xs, x0, optima, scales=(1, 10, 100)):
        x0 = np.asarray(x0, float)
        starts = [x0 * s for s in scales] if np.any(x0) else [x0]
        out.append(Problem(name, list(res), xs, starts, tuple(optima)))

    x1, x2 = _xs(2)
    add("rosenbrock", [10 * (x2 - x1 ** 2), 1 - x1], (x1, x2), [-1.2, 1], [0.0])
    add("freudenstein_roth", [-13 + x1 + ((5 - x2) * x2 - 2) * x2,
                              -29 + x1 + ((x2 + 1) * x2 - 14) * x2], (x1, x2), [0.5, -2],
        [0.0, 48.9842536792400])
    add("powell_badly_scaled", [10 ** 4 * x1 * x2 - 1, sp.exp(-x1) + sp.exp(-x2) - sp.Float("1.0001")],
        (x1, x2), [0, 1], [0.0], scales=(1,))
    add("brown_badly_scaled", [x1 - 10 ** 6, x2 - sp.Rational(2, 10 ** 6), x1 * x2 - 2], (x1, x2),
        [1, 1], [0.0])
    ys = [sp.Rational(3, 2), sp.Rational(9, 4), sp.Rational(21, 8)]
    add("beale", [ys[i] - x1 * (1 - x2 ** (i + 1)) for i in range(3)], (x1, x2), [1, 1], [0.0])
    add("jennrich_sampson", [2 + 2 * i - (sp.exp(i * x1) + sp.exp(i * x2)) for i in range(1, 11)],
        (x1, x2), [0.3, 0.4], [124.362182355])
    x1, x2, x3 = _xs(3)
    theta = sp.atan(x2 / x1) / (2 * sp.pi) + sp.Piecewise((0, x1 > 0), (sp.S.Half, True))
    add("helical_valley", [10 * (x3 - 10 * theta), 10 * (sp.sqrt(x1 ** 2 + x2 ** 2) - 1), x3],
        (x1, x2, x3), [-1, 0, 0], [0.0])
    y = [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39]
    add("bard", [y[i - 1] - (x1 + i / ((16 - i) * x2 + min(i, 16 - i) * x3)) for i in range(1, 16)],
        (x1, x2, x3), [1, 1, 1], [8.21487730657e-3, 17.4286])
    y = [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521, 0.2420, 0.1295,
         0.0540, 0.0175, 0.0044, 0.0009]
    add("gaussian", [x1 * sp.exp(-x2 * ((8 - i) / 2 - x3) ** 2 / 2) - y[i - 1] for i in range(1, 16)],
        (x1, x2, x3), [0.4, 1, 0], [1.12793276961e-8], scales=(1,))
    y = [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427,
         3820, 3307, 2872]
    add("meyer", [x1 * sp.exp(x2 / (45 + 5 * i + x3)) - y[i - 1] for i in range(1, 17)],
        (x1, x2, x3), [0.02, 4000, 250], [87.9458551], scales=(1,))
    add("box_3d", [sp.exp(-t * x1) - sp.exp(-t * x2) - x3 * (sp.exp(-t) - sp.exp(-10 * t))
                   for t in [sp.Rational(i, 10) for i in range(1, 11)]],
        (x1, x2, x3), [0, 10, 20], [0.0])
    x1, x2, x3, x4 = _xs(4)
    y = [.1957, .1947, .1735, .1600, .0844, .0627, .0456, .0342, .0323, .0235, .0246]
    u = [4, 2, 1, .5, .25, .167, .125, .1, .0833, .0714, .0625]
    add("kowalik_osborne", [y[i] - x1 * (u[i] ** 2 + u[i] * x2) / (u[i] ** 2 + u[i] * x3 + x4)
                            for i in range(11)], (x1, x2, x3, x4), [0.25, 0.39, 0.415, 0.39],
        [3.07505603849e-4, 1.02734e-3])
    x = _xs(5)
    y = [0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751, 0.718,
         0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490, 0.478, 0.467,
         0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406]
    add("osborne1", [y[i] - (x[0] + x[1] * sp.exp(-10 * i * x[3]) + x[2] * sp.exp(-10 * i * x[4]))
                     for i in range(33)], x, [0.5, 1.5, -1, 0.01, 0.02], [5.46489469665e-5],
        scales=(1,))
    x = _xs(11)
    y = [1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679,
         0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644,
         0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391,
         0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668,
         0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581,
         0.428, 0.292, 0.162, 0.098, 0.054]
    res = []
    for i in range(65):
        t = sp.Rational(i, 10)
        res.append(y[i] - (x[0] * sp.exp(-t * x[4]) + x[1] * sp.exp(-(t - x[8]) ** 2 * x[5])
                           + x[2] * sp.exp(-(t - x[9]) ** 2 * x[6])
                           + x[3] * sp.exp(-(t - x[10]) ** 2 * x[7])))
    add("osborne2", res, x, [1.3, 0.65, 0.65, 0.7, 0.6, 3, 5, 7, 2, 4.5, 5.5], [4.01377362e-2],
        scales=(1,))
    x = _xs(6)
    res = []
    for i in range(1, 14):
        t = sp.Rational(i, 10)
        yi = sp.exp(-t) - 5 * sp.exp(-10 * t) + 3 * sp.exp(-4 * t)
        res.append(x[2] * sp.exp(-t * x[0]) - x[3] * sp.exp(-t * x[1]) + x[5] * sp.exp(-t * x[4]) - yi)
    add("biggs_exp6", res, x, [1, 2, 1, 1, 1, 1], [0.0, 5.65565e-3], scales=(1, 10))
    for n, fstar in [(6, 2.28767005355e-3), (9, 1.39976151800e-6)]:
        x = _xs(n)
        res = []
        for i in range(1, 30):
            t = sp.Rational(i, 29)
            s1 = sum((j - 1) * x[j - 1] * t ** (j - 2) for j in range(2, n + 1))
            s2 = sum(x[j - 1] * t ** (j - 1) for j in range(1, n + 1))
            res.append(s1 - s2 ** 2 - 1)
        res += [x[0], x[1] - x[0] ** 2 - 1]
        add(f"watson{n}", res, x, np.zeros(n), [fstar])
    return out


NIST_MODELS = {
    "Misra1a": "b1*(1-exp(-b2*x))",
    "BoxBOD": "b1*(1-exp(-b2*x))",
    "DanWood": "b1*x**b2",
    "Chwirut2": "exp(-b1*x)/(b2+b3*x)",
    "Rat42": "b1 / (1+exp(b2-b3*x))",
    "Rat43": "b1 / ((1+exp(b2-b3*x))**(1/b4))",
    "MGH09": "b1*(x**2+x*b2) / (x**2+x*b3+b4)",
    "MGH10": "b1 * exp(b2/(x+b3))",
    "MGH17": "b1 + b2*exp(-x*b4) + b3*exp(-x*b5)",
    "Eckerle4": "(b1/b2) * exp(-0.5*((x-b3)/b2)**2)",
    "Bennett5": "b1 * (b2+x)**(-1/b3)",
    "Thurber": "(b1 + b2*x + b3*x**2 + b4*x**3) / (1 + b5*x + b6*x**2 + b7*x**3)",
    "Hahn1": "(b1+b2*x+b3*x**2+b4*x**3) / (1+b5*x+b6*x**2+b7*x**3)",
    "Kirby2": "(b1 + b2*x + b3*x**2) / (1 + b4*x + b5*x**2)",
    "Lanczos1": "b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)",
    "Lanczos3": "b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)",
    "Gauss3": "b1*exp(-b2*x) + b3*exp(-(x-b4)**2/b5**2) + b6*exp(-(x-b7)**2/b8**2)",
    "Roszman1": "b1 - b2*x - atan(b3/(x-b4))/pi",
    "ENSO": ("b1 + b2*cos(2*pi*x/12) + b3*sin(2*pi*x/12) + b5*cos(2*pi*x/b4) + b6*sin(2*pi*x/b4)"
             " + b8*cos(2*pi*x/b7) + b9*sin(2*pi*x/b7)"),
}


@dataclass
class NistData:
    name: str
    model: str
    x: np.ndarray
    y: np.ndarray
    starts: list
    certified: np.ndarray
    certified_stderr: np.ndarray
    rss: float

    @property
    def params(self):
        return [f"b{i + 1}" for i in range(len(self.certified))]


def read_nist(name: str) -> NistData:
    """One NIST StRD file: data, both starts, certified parameters, stderrs and RSS."""
    lines = (NIST_DIR / f"{name}.dat").read_text().splitlines()
    starts1, starts2, cert, sd_ = [], [], [], []
    rss = None
    data_at = None
    for i, line in enumerate(lines):
        m = re.match(r"\s*b(\d+)\s*=\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", line)
        if m:
            starts1.append(float(m.group(2)))
            starts2.append(float(m.group(3)))
            cert.append(float(m.group(4)))
            sd_.append(float(m.group(5)))
        if line.startswith("Residual Sum of Squares:"):
            rss = float(line.split()[-1])
        if line.startswith("Data:") and "y" in line.split():
            data_at = i + 1
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[data_at:] if ln.strip()])
    return NistData(name, NIST_MODELS[name], rows[:, 1], rows[:, 0],
                    [np.array(starts1), np.array(starts2)], np.array(cert), np.array(sd_), rss)


def nist_problem(name: str) -> Problem:
    """A NIST data set as a :class:`Problem` with a SymPy reference Jacobian."""
    d = read_nist(name)
    b = sp.symbols(" ".join(d.params), real=True)
    xs = sp.Symbol("x", real=True)
    model = sp.sympify(d.model, locals={**{s.name: s for s in b}, "x": xs})
    f = sp.lambdify([b, xs], model, "numpy")
    grads = [sp.lambdify([b, xs], sp.diff(model, bi), "numpy") for bi in b]
    x, y = d.x, d.y

    def r(theta):
        return np.broadcast_to(f(theta, x), x.shape) - y

    def J(theta):
        return np.column_stack([np.broadcast_to(g(theta, x), x.shape) for g in grads])

    problem = Problem(d.name, None, tuple(b), d.starts, (d.rss,), tuple(d.certified))
    problem._r, problem._J = r, J
    return problem


MGH = _mgh()
NIST_NAMES = list(NIST_MODELS)
