"""Fitting to convergence: full-batch solvers that call the compiled kernels every step.

``least_squares`` (Levenberg-Marquardt in ``levenberg_marquardt`` on the fused
Gauss-Newton sums, the report in ``fit_result``), ``curve_fit`` (scipy's drop-in, with
NumPy functions traced in ``tracing``), ``minimization`` (``sd.minimize`` through
scipy.optimize and our Newton), and ``distributed``/``distributed_lsq`` (the same
kernels bound to data on a Dask cluster).
"""
