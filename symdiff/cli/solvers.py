"""``symdiff fit`` by second-order solvers: ``--method lm`` (least squares by
Levenberg–Marquardt, with uncertainties; the default for the squared-error loss) and
``--method lbfgs``/``newton`` (``sd.minimize`` on any loss).

Called by :func:`symdiff.cli.commands.run_fit`. Starts:
``--init`` values, else the least-squares values of the parameters the formula is linear in
(given the others), else 1 — the report says which. Prints the fit report (value ±
standard error and relative error, RSS, reduced χ², R², AIC, correlations); a fit that
did not converge prints a warning line and exits with status 3.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import sympy as sp

#: exit status of a fit that stopped without converging
NOT_CONVERGED = 3
#: a standard error this many times the value means the data do not determine the parameter
UNDETERMINED = 1e3


def linear_parameters(formula, params) -> list:
    """The parameters ``formula`` is jointly linear in (all their second derivatives vanish)."""
    chosen = []
    for p in params:
        if sp.diff(formula, p, 2) != 0:
            continue
        if all(sp.diff(formula, p, q) == 0 for q in chosen):
            chosen.append(p)
    return chosen


def scale_role(formula, param, inputs):
    """``("mul", x)`` if ``param`` only ever multiplies one data column ``x`` (a rate, as in
    ``exp(-b*x)``), ``("add", x)`` if it is only ever added to one (a shift, as in
    ``Km + S``); else None."""
    roles = set()

    def walk(e):
        if not e.has(param):
            return
        if (e.is_Mul or e.is_Add) and param in e.args:
            others = [a for a in e.args if a != param]
            columns = [a for a in others if a in inputs]
            if len(columns) == 1 and all(a.is_number for a in others if a not in columns):
                roles.add(("mul" if e.is_Mul else "add", columns[0]))
            else:
                roles.add(None)
            for a in others:
                walk(a)
            return
        if e == param:
            roles.add(None)
            return
        for a in e.args:
            walk(a)

    walk(formula)
    return roles.pop() if len(roles) == 1 else None


def starting_values(problem, init, kernel_bound):
    """``(theta0, source)``: each parameter's start and where it came from: ``--init``;
    for a parameter that only multiplies a column x, 1/median|x| (so the product is of
    order 1), for one only added to a column x, median|x|; then the least-squares solution
    for the parameters the formula is linear in (the others at their starts); else 1."""
    theta = np.array([init.get(p.name, 1.0) for p in problem.params], dtype=float)
    source = {p.name: ("--init" if p.name in init else "default 1") for p in problem.params}
    linear = linear_parameters(problem.formula, problem.params)
    for i, p in enumerate(problem.params):
        if p.name in init or p in linear:
            continue
        role = scale_role(problem.formula, p, set(problem.inputs))
        if role is None:
            continue
        typical = float(np.median(np.abs(problem.columns[role[1].name])))
        if not (np.isfinite(typical) and typical > 0):
            continue
        if role[0] == "mul":
            theta[i], source[p.name] = 1.0 / typical, f"1/median|{role[1].name}|"
        else:
            theta[i], source[p.name] = typical, f"median|{role[1].name}|"
    free_linear = [p for p in linear if p.name not in init]
    if not free_linear:
        return theta, source
    index = [problem.params.index(p) for p in free_linear]
    at_zero = theta.copy()
    at_zero[index] = 0.0
    with np.errstate(all="ignore"):
        r0 = kernel_bound.residuals(at_zero)
        basis = kernel_bound.jacobian(at_zero)[:, index]
    if not (np.all(np.isfinite(r0)) and np.all(np.isfinite(basis))):
        return theta, source
    solution, *_ = np.linalg.lstsq(basis, -r0, rcond=None)
    if np.all(np.isfinite(solution)):
        theta[index] = solution
        for p in free_linear:
            source[p.name] = "linear least squares"
    return theta, source


def run_lm_fit(args, problem) -> int:
    """Fit ``problem`` (a :class:`symdiff.cli.commands.FitProblem`) by least squares; report; exit code."""
    from ..fitting.least_squares import fit_least_squares, residuals_for

    sigma = None
    if args.sigma:
        from .commands import CommandError, read_columns
        if args.sigma in [p.name for p in problem.params] or args.sigma == problem.response.name:
            raise CommandError(f"--sigma {args.sigma!r} must be a data column other than the response")
        sigma = read_columns(args.data, [args.sigma])[args.sigma]
        if np.any(sigma <= 0):
            raise CommandError(f"--sigma column {args.sigma!r} must be positive")
    columns = {s.name: problem.columns[s.name] for s in [*problem.inputs, problem.response]}
    plain = residuals_for(problem.formula, problem.response, problem.params, problem.inputs, False)
    theta0, source = starting_values(problem, args.init, plain.compile().bind(columns))
    started = time.perf_counter()
    result = fit_least_squares(problem.formula, columns, problem.response, theta0,
                               params=problem.params, sigma=sigma, method="lm")
    seconds = time.perf_counter() - started
    n = problem.target.size

    starts = {p.name: float(v) for p, v in zip(problem.params, theta0)}
    print(f"model      {args.model}")
    print(f"data       {n} rows of {args.data}" + (f", weights 1/{args.sigma}^2" if sigma is not None else ""))
    print("start      " + ", ".join(f"{k}={v:.6g} ({source[k]})" for k, v in starts.items()))
    ignored = [flag for flag, value, default_value in (("--lr", args.lr, 0.01), ("--epochs", args.epochs, 500),
                                                       ("--batch-size", args.batch_size, None))
               if value != default_value]
    if ignored:
        print(f"note       {', '.join(ignored)} apply to first-order optimizers; Levenberg-Marquardt ignores them")
    print(result.report())
    print(f"time       {seconds:.3f} s")

    report = {"model": args.model, "data": str(args.data), "rows": int(n), "loss_function": "mse",
              "start": starts, "start_source": source, "seconds": seconds,
              "final_loss": result.rss / n, **result.to_dict()}
    if args.json:
        from .commands import _finite_or_none
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(_finite_or_none(report), handle, indent=2)
        print(f"saved      {args.json}")
    if args.plot:
        plot_fit_and_residuals(args.plot, problem, result)
        print(f"saved      {args.plot}")
    if not result.success:
        print(f"symdiff: warning: the fit did not converge: {result.message}; the parameters "
              "above are where it stopped", file=sys.stderr)
        return NOT_CONVERGED
    undetermined = [p.name for p in problem.params
                    if not np.isfinite(result.stderr[p]) or result.stderr[p] > UNDETERMINED * abs(result.params[p])]
    if undetermined and result.dof > 0:
        print(f"symdiff: warning: the fit stopped where the data do not determine {', '.join(undetermined)} "
              f"(standard error over {UNDETERMINED:g} times the value): a flat region, not an optimum; "
              "try other --init values", file=sys.stderr)
        return NOT_CONVERGED
    return 0


def plot_fit_and_residuals(path, problem, result) -> None:
    """Data and fitted curve (or fitted against observed) beside the residuals."""
    from .commands import draw_data_and_fit, fit_figure

    figure, left, right = fit_figure()
    data = {s: problem.columns[s.name] for s in problem.inputs}
    target = problem.target
    fitted = result.predict(data) if problem.inputs else np.full(target.size, result.predict(None))
    draw_data_and_fit(left, problem, result.predict, fitted)
    if len(problem.inputs) == 1:
        (symbol,) = problem.inputs
        right.scatter(problem.columns[symbol.name], target - fitted, s=10, alpha=0.6)
        right.set_xlabel(symbol.name)
    else:
        right.scatter(fitted, target - fitted, s=10, alpha=0.6)
        right.set_xlabel("fitted")
    right.axhline(0.0, color="C1")
    right.set_ylabel("residual")
    right.set_title(f"residuals (R² = {result.r2:.4g})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


#: the largest |dL/dθᵢ · θᵢ| / L accepted as a stationary point (scale free: at a true
#: optimum it is ~1e-6; where L-BFGS stops early on a badly scaled fit it is ~1)
STATIONARY = 1e-3


def not_stationary(result, initial_loss):
    """The name of a parameter along which the loss still falls steeply where a solver
    reported convergence, or None. Exact fits (loss far below where it began) pass."""
    loss = float(result.fun)
    if not loss > 1e-12 * abs(initial_loss):
        return None
    x, g = np.asarray(result.x, dtype=float), np.asarray(result.jac, dtype=float)
    relative = np.abs(g) * np.maximum(np.abs(x), 1e-12) / loss
    worst = int(np.argmax(relative))
    return str(list(result.params)[worst]) if relative[worst] > STATIONARY else None


def run_minimize_fit(args, problem, method) -> int:
    """Minimize the mean ``--loss`` by ``sd.minimize`` (L-BFGS or Newton); report; exit code."""
    from ..fitting.least_squares import residuals_for
    from ..losses import LOSSES
    from ..fitting.minimization import minimize_quietly
    from ..models.objective import Objective

    columns = {s.name: problem.columns[s.name] for s in [*problem.inputs, problem.response]}
    plain = residuals_for(problem.formula, problem.response, problem.params, problem.inputs, False)
    theta0, source = starting_values(problem, args.init, plain.compile().bind(columns))
    objective = Objective(LOSSES[args.loss](problem.formula, problem.response), params=problem.params,
                          data=[*problem.inputs, problem.response])
    started = time.perf_counter()
    result = minimize_quietly(objective, problem.data, x0=theta0, method=method)
    seconds = time.perf_counter() - started
    if result.success:
        initial_loss = objective.compile()(np.asarray(theta0, dtype=float), problem.data)[0]
        stuck = not_stationary(result, initial_loss)
        if stuck:
            result.success = False
            result.message = (f"{result.message}, but the gradient is not small where it stopped "
                              f"(|dL/d{stuck} * {stuck}| is over {STATIONARY:g} of the loss): a badly "
                              "scaled problem; try --method lm")
    theta = np.asarray(result.x, dtype=float)
    from .commands import _score
    prediction = problem.predict(theta, problem.data)
    score_name, score = _score(args.loss, prediction, problem.target)
    n = problem.target.size
    print(f"model      {args.model}")
    print(f"data       {n} rows of {args.data}")
    print("start      " + ", ".join(f"{p.name}={v:.6g} ({source[p.name]})" for p, v in zip(problem.params, theta0)))
    print(f"method     {method} on the mean {args.loss} loss: {'converged' if result.success else 'NOT converged'} "
          f"after {result.nit} iterations ({result.message})")
    width = max(len(p.name) for p in problem.params)
    for index, (p, value) in enumerate(zip(problem.params, theta)):
        print(f"{'parameters' if index == 0 else '':10} {p.name:<{width}} = {value:.8g}")
    print(f"final loss {float(result.fun):.6g}")
    print(f"{'R^2' if score_name == 'r2' else 'accuracy':10} {score:.4g}")
    print(f"time       {seconds:.3f} s")
    report = {"model": args.model, "data": str(args.data), "rows": int(n), "loss_function": args.loss,
              "method": method, "start": {p.name: float(v) for p, v in zip(problem.params, theta0)},
              "start_source": source, "params": {p.name: float(v) for p, v in zip(problem.params, theta)},
              "final_loss": float(result.fun), score_name: score, "nit": int(result.nit),
              "nfev": int(getattr(result, "nfev", 0) or 0), "success": bool(result.success),
              "message": str(result.message), "seconds": seconds}
    if args.json:
        from .commands import _finite_or_none
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(_finite_or_none(report), handle, indent=2)
        print(f"saved      {args.json}")
    if not result.success:
        print(f"symdiff: warning: the fit did not converge ({method}): {result.message}; the parameters "
              "above are where it stopped", file=sys.stderr)
        return NOT_CONVERGED
    return 0
