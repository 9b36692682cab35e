"""Residuals: the per-sample ``r_i(theta)`` of a least-squares problem and its Gauss-Newton sums.

A :class:`Residuals` is what a least-squares solver needs and nothing more: the residual
of one sample as a formula (e.g. ``(model - y)/sigma``), its Jacobian row derived by
reverse mode on the expression DAG, and a kernel that returns, in one fused pass over the
data, the three sums a Gauss-Newton or Levenberg-Marquardt step is made of::

    rss = sum_i r_i**2,    jtr = sum_i r_i * J_i,    jtj = sum_i J_i^T J_i

The n-by-p Jacobian is never formed: every sample contributes its rank-one update to
the p(p+1)/2 upper-triangle sums while its row is still in registers. These are sums,
not means, because that is how solvers and covariance formulas use them.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import FormulaError
from .objective import _as_expr, _Derived, _free_symbols, _guard_depth, _symbols, _tidy
from ..core.ir import Program, linearize
from ..core.to_sympy import to_sympy


class Residuals:
    """The per-sample residual ``residual`` in ``params`` and ``data`` symbols.

    ``data`` defaults to every free symbol of ``residual`` that is not a parameter.
    """

    @_guard_depth
    def __init__(self, residual, params, data=None):
        self.residual = _as_expr(residual, "residual")
        if isinstance(params, (sp.Symbol, str)):
            params = [params]
        self.params = _symbols(list(params), self.residual, "params")
        if not self.params:
            raise FormulaError("residuals need at least one parameter")
        pnames = {p.name for p in self.params}
        if data is None:
            data = sorted((s for s in _free_symbols(self.residual) if s.name not in pnames),
                          key=lambda s: s.name)
        elif isinstance(data, (sp.Symbol, str)):
            data = [data]
        self.data = _symbols(list(data), self.residual, "data")
        clash = pnames & {d.name for d in self.data}
        if clash:
            raise FormulaError(f"{sorted(clash)} cannot be both a parameter and a data column")
        unknown = sorted({s.name for s in _free_symbols(self.residual)} - pnames
                         - {d.name for d in self.data})
        if unknown:
            raise FormulaError(f"the residual uses {unknown}, which are neither params nor data")
        self._derived = None
        self._program = None
        self._jacobian = None
        self._kernels = {}

    def _derive(self):
        if self._derived is None:
            self._derived = _Derived([self.residual], self.params, self.data, gradient_of=0)
        return self._derived

    @_guard_depth
    def jacobian(self) -> list:
        """``[dr/dp for p in params]``: one Jacobian row, as readable SymPy expressions."""
        if self._jacobian is None:
            d = self._derive()
            symbols = {s.name: s for s in self.params + self.data}
            self._jacobian = [_tidy(e) for e in to_sympy(d.graph, d.grad_nodes, symbols)]
        return list(self._jacobian)

    @_guard_depth
    def program(self) -> Program:
        """One program for every kernel of these residuals (the IR).

        Outputs, in order: ``r``; the Jacobian row ``dr/dp`` (p entries); ``r**2``;
        ``r*dr/dp`` (p); ``dr/dp_j*dr/dp_k`` for ``j <= k`` in row-major order
        (p(p+1)/2). Kernels select the outputs they need.
        """
        if self._program is None:
            d = self._derive()
            g, r, jac = d.graph, d.nodes[0], d.grad_nodes
            names = [p.name for p in self.params]
            outputs = [r] + jac + [g.mul(r, r)] + [g.mul(r, j) for j in jac]
            labels = ["r"] + [f"dr/d{n}" for n in names] + ["r**2"] + [f"r*dr/d{n}" for n in names]
            for j in range(len(jac)):
                for k in range(j, len(jac)):
                    outputs.append(g.mul(jac[j], jac[k]))
                    labels.append(f"dr/d{names[j]}*dr/d{names[k]}")
            self._program = linearize(g, outputs, labels, names, [x.name for x in self.data])
        return self._program

    def compile(self, dtype=np.float64, threads=None, cache=True):
        """A :class:`codegen.second_order.ResidualKernel`:
        ``kernel(theta, data) -> (rss, jtr, jtj)`` (sums over the samples)."""
        import codegen.second_order as so

        key = ("<f8" if dtype is np.float64 else np.dtype(dtype).str, threads)
        k = self._kernels.get(key)
        if k is None:
            k = so.compile_residuals(self.program(), len(self.params), dtype=dtype,
                                     threads=threads, cache=cache, keys=self.data)
            k.compile_times = {**self._derive().times, **k.compile_times}
            self._kernels[key] = k
        return k

    def __repr__(self):
        return (f"Residuals({self.residual}, params=[{', '.join(p.name for p in self.params)}], "
                f"data=[{', '.join(d.name for d in self.data)}])")

