"""Levenberg–Marquardt core against published optima, MINPACK (scipy's method="lm") and
scipy's bounded solver, on the Moré–Garbow–Hillstrom and NIST StRD problems."""

import numpy as np
import pytest

from nls_problems import MGH, NIST_NAMES, nist_problem, read_nist
from symdiff.fitting.levenberg_marquardt import ILL_CONDITIONED, levenberg_marquardt

MGH_BY_NAME = {p.name: p for p in MGH}


def solve(problem, x0, **kw):
    """Our default: normal equations, SVD of J where they are ill-conditioned."""
    return levenberg_marquardt(problem.normal, x0, jacobian=problem.rJ, **kw)


def reaches(rss, optimum, rel=1e-6, floor=1e-20):
    return abs(rss - optimum) <= rel * optimum + floor


@pytest.mark.parametrize("name,start", [
    ("rosenbrock", 0), ("rosenbrock", 2), ("powell_badly_scaled", 0), ("brown_badly_scaled", 1),
    ("helical_valley", 1), ("bard", 0), ("gaussian", 0), ("meyer", 0), ("box_3d", 0),
    ("kowalik_osborne", 0), ("osborne1", 0), ("osborne2", 0), ("biggs_exp6", 1), ("watson6", 0),
])
def test_mgh_reaches_the_published_optimum(name, start):
    problem = MGH_BY_NAME[name]
    res = solve(problem, problem.starts[start])
    assert res.success, res.message
    assert reaches(res.rss, problem.optima[0]), (res.rss, problem.optima[0])


@pytest.mark.parametrize("name,start", [
    ("Misra1a", 0), ("MGH09", 0), ("MGH09", 1), ("Thurber", 0), ("Eckerle4", 1), ("Rat43", 0),
    ("MGH17", 0), ("Lanczos3", 1),
])
def test_nist_certified_values(name, start):
    """Certified parameters to 6 significant digits (NIST's usual bar is 4–6) with tight
    tolerances; the defaults (1e-8, as scipy's) give as many digits as MINPACK does."""
    problem = nist_problem(name)
    cert = read_nist(name)
    res = solve(problem, problem.starts[start], xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert res.success, res.message
    assert reaches(res.rss, cert.rss, rel=1e-8)
    np.testing.assert_allclose(res.x, cert.certified, rtol=1e-6)


def test_the_normal_equations_alone_lose_digits_that_the_jacobian_keeps():
    """MGH09 from NIST's first start: JᵀJ alone stops at a far point (so does MINPACK);
    with the SVD of J at ill-conditioned iterates the certified optimum is reached."""
    problem = nist_problem("MGH09")
    x0 = problem.starts[0]
    normal_only = levenberg_marquardt(problem.normal, x0)
    hybrid = solve(problem, x0)
    assert not reaches(normal_only.rss, problem.optima[0], rel=1e-3)
    assert reaches(hybrid.rss, problem.optima[0], rel=1e-8)
    assert 0 < ILL_CONDITIONED < 1e-6


def test_jacobian_form_equals_normal_form_on_a_well_conditioned_problem():
    problem = MGH_BY_NAME["osborne1"]
    a = levenberg_marquardt(problem.normal, problem.starts[0])
    b = levenberg_marquardt(problem.rJ, problem.starts[0], form="jacobian")
    np.testing.assert_allclose(a.x, b.x, rtol=1e-6)
    assert a.nfev == b.nfev


@pytest.mark.parametrize("lower,upper,x0", [
    ([-np.inf, -np.inf], [0.5, np.inf], [-1.2, 1.0]),
    ([-2.0, -1.0], [0.5, 0.2], [-1.2, 0.1]),
    ([1.5, -np.inf], [np.inf, np.inf], [1.6, 1.0]),
])
def test_bounds_by_change_of_variables_match_scipy(lower, upper, x0):
    from scipy.optimize import least_squares
    problem = MGH_BY_NAME["rosenbrock"]
    ref = least_squares(problem.r, x0, jac=lambda x: problem.rJ(x)[1], bounds=(lower, upper),
                        xtol=1e-14, ftol=1e-14, gtol=1e-14)
    res = solve(problem, x0, bounds=(lower, upper))
    assert res.success
    assert np.all(res.x >= lower) and np.all(res.x <= upper)
    assert reaches(res.rss, 2 * ref.cost, rel=1e-7)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-5)


def test_start_outside_bounds_is_refused():
    problem = MGH_BY_NAME["rosenbrock"]
    with pytest.raises(ValueError, match="outside the bounds"):
        solve(problem, [1.0, 1.0], bounds=([2, -np.inf], [np.inf, np.inf]))


def test_max_nfev_reports_failure():
    problem = MGH_BY_NAME["meyer"]
    res = solve(problem, problem.starts[0], max_nfev=10)
    assert not res.success and res.status == 5 and res.nfev == 10
    assert "max_nfev" in res.message


def test_non_finite_start_reports_failure():
    problem = MGH_BY_NAME["jennrich_sampson"]
    res = solve(problem, problem.starts[2])     # exp(300·i) overflows
    assert not res.success and res.status == 9


def test_zero_residual_stops_at_once():
    problem = MGH_BY_NAME["rosenbrock"]
    res = solve(problem, [1.0, 1.0])
    assert res.success and res.rss == 0.0 and res.nfev == 1


@pytest.mark.slow
@pytest.mark.parametrize("problem,start", [(p, k) for p in MGH for k in range(len(p.starts))]
                         + [(name, k) for name in NIST_NAMES for k in range(2)],
                         ids=lambda v: v if isinstance(v, (str, int)) else v.name)
def test_every_problem_minpack_solves_we_solve(problem, start):
    """Sum of squares at least as low as MINPACK's lmder (scipy method="lm") from the same start."""
    import warnings
    from scipy.optimize import least_squares
    if isinstance(problem, str):
        problem = nist_problem(problem)
    x0 = problem.starts[start]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            ref = 2 * least_squares(problem.r, x0, jac=lambda x: problem.rJ(x)[1], method="lm").cost
        except ValueError:       # MINPACK refuses a non-finite start
            ref = np.inf
    res = solve(problem, x0)
    if res.status == 9:     # the model overflows at the start: MINPACK must not have solved it
        assert not any(reaches(ref, o, rel=1e-4) for o in problem.optima)
        return
    assert res.rss <= ref * (1 + 1e-5) + 1e-24, (res.rss, ref)


def test_streaming_qr_form_matches_the_jacobian_svd():
    """``qr=`` (R and Qᵀr, as a TSQR gives them) steps exactly like the SVD of J."""
    def qr_of(problem):
        def qr(x):
            r, J = problem.rJ(x)
            Q, R = np.linalg.qr(J)
            return float(r @ r), R, Q.T @ r
        return qr
    # converged tightly (at the defaults both stop on MGH09's flat valley, where they
    # stop depends on the last bits of the arithmetic)
    tight = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15)
    for name, start in [("MGH09", 0), ("MGH17", 0)]:
        problem = nist_problem(name)
        by_svd = solve(problem, problem.starts[start], **tight)
        by_qr = levenberg_marquardt(problem.normal, problem.starts[start], qr=qr_of(problem), **tight)
        assert by_qr.njev > by_qr.nfev          # the fallback ran
        np.testing.assert_allclose(by_qr.x, by_svd.x, rtol=1e-6)
        np.testing.assert_allclose(by_qr.x, read_nist(name).certified, rtol=1e-6)
        assert reaches(by_qr.rss, problem.optima[0], rel=1e-8)
