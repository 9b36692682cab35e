"""The table of supported primitives, each with a safe input domain, that drives the tests."""

import sympy as sp

from symdiff import sigmoid, softplus

u, v = sp.symbols("u v", real=True)

# (name, expression in u (and v), domain of u, domain of v)
PRIMITIVE_CASES = [
    ("add", u + v, (-3, 3), (-3, 3)),
    ("sub", u - v, (-3, 3), (-3, 3)),
    ("mul", u * v, (-3, 3), (-3, 3)),
    ("div", u / v, (-3, 3), (0.5, 3)),
    ("neg", -u, (-3, 3), None),
    ("powi", u ** 3, (-2, 2), None),
    ("powi_neg", u ** -2, (0.5, 2), None),
    ("pow_real", u ** sp.Rational(3, 2), (0.2, 3), None),
    ("pow_sym", u ** v, (0.2, 3), (-2, 2)),
    ("sqrt", sp.sqrt(u), (0.1, 4), None),
    ("exp", sp.exp(u), (-5, 5), None),
    ("log", sp.log(u), (0.1, 5), None),
    ("sin", sp.sin(u), (-6, 6), None),
    ("cos", sp.cos(u), (-6, 6), None),
    ("tan", sp.tan(u), (-1.2, 1.2), None),
    ("sinh", sp.sinh(u), (-3, 3), None),
    ("cosh", sp.cosh(u), (-3, 3), None),
    ("tanh", sp.tanh(u), (-3, 3), None),
    ("asin", sp.asin(u), (-0.9, 0.9), None),
    ("acos", sp.acos(u), (-0.9, 0.9), None),
    ("atan", sp.atan(u), (-4, 4), None),
    ("atan2", sp.atan2(u, v), (-3, 3), (0.3, 3)),
    ("atan2_negx", sp.atan2(u, v), (0.3, 3), (-3, -0.3)),
    ("erf", sp.erf(u), (-3, 3), None),
    ("abs", sp.Abs(u), (0.1, 3), None),
    ("abs_neg", sp.Abs(u), (-3, -0.1), None),
    ("sign", sp.sign(u) * u ** 2, (-3, 3), None),
    ("max", sp.Max(u, v), (-3, 3), (-3, 3)),
    ("min", sp.Min(u, v), (-3, 3), (-3, 3)),
    ("relu", sp.Max(0, u), (-3, 3), None),
    ("leaky_relu", sp.Piecewise((u, u > 0), (u / 100, True)), (-3, 3), None),
    ("huber", sp.Piecewise((u ** 2 / 2, sp.Abs(u) <= 1), (sp.Abs(u) - sp.Rational(1, 2), True)),
     (-3, 3), None),
    ("heaviside", sp.Heaviside(u) * u, (-3, 3), None),
    ("sigmoid", sigmoid(u), (-6, 6), None),
    ("softplus", softplus(u), (-6, 6), None),
    ("naive_softplus", sp.log(1 + sp.exp(u)), (-6, 6), None),
    ("naive_sigmoid", 1 / (1 + sp.exp(-u)), (-6, 6), None),
    ("log1p", sp.log(1 + u ** 2), (-3, 3), None),
    ("constants", sp.pi * u + sp.E * u ** 2 + sp.Rational(2, 7), (-3, 3), None),
    ("float_const", 0.37 * u, (-3, 3), None),
    ("and_or", sp.Piecewise((u, (u > 0) & (u < 1)), (2 * u, (u < -1) | (u > 2)), (u ** 2, True)),
     (-3, 3), None),
]
