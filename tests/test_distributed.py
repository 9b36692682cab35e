"""Fits on Dask data: kernels run on a LocalCluster's workers, only theta and partial sums move.

References: NumPy written by hand for the sums, the same fit on the gathered data (whose
kernels are tested against sympy and finite differences elsewhere) for the solvers.
"""

import os
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import sympy as sp

import symdiff as sd
from symdiff.errors import DataError, DataTypeError, UnsupportedError

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")
pd = pytest.importorskip("pandas")

from symdiff import distributed as sdd  # noqa: E402

a, b, c, x, y = sp.symbols("a b c x y", real=True)
MODEL = a * sp.exp(-b * x) + c
OBJ = sd.Objective((MODEL - y) ** 2, [a, b, c], [x, y])
N = 20_011  # odd: partitions of unequal length


def make_data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 4, n)
    Y = 2.5 * np.exp(-0.8 * X) + 0.3 + 0.05 * rng.normal(size=n)
    return X, Y


X, Y = make_data()
LOCAL = {"x": X, "y": Y}
THETA = np.array([1.7, 0.5, 0.1])


def frame(npartitions=3):
    return dd.from_pandas(pd.DataFrame({"x": X, "y": Y}), npartitions=npartitions)


def by_hand(theta):
    """Mean loss, gradient and Hessian of (a e^{-bx} + c - y)^2, written out in NumPy."""
    A, B, C = theta
    e = np.exp(-B * X)
    r = A * e + C - Y
    J = np.stack([e, -A * X * e, np.ones_like(X)], axis=1)
    H = 2 * J.T @ J / len(X)
    cross = 2 * r * (-X * e)  # d2r/dadb
    H[0, 1] += cross.mean()
    H[1, 0] += cross.mean()
    H[1, 1] += (2 * r * A * X * X * e).mean()
    return np.mean(r * r), 2 * J.T @ r / len(X), H


def test_import_symdiff_does_not_import_dask():
    code = ("import sys, symdiff; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'pandas')); print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stdout + out.stderr


def test_is_dask_without_importing():
    assert sdd.is_dask(frame())
    assert sdd.is_dask({x: da.from_array(X, chunks=5000)})
    assert not sdd.is_dask(LOCAL)
    assert not sdd.is_dask(np.zeros((3, 2)))


def test_default_scheduler_without_client_matches_numpy():
    # runs before the cluster fixture exists: no active client, Dask's default scheduler
    assert sdd.active_client() is None
    bound = sdd.bind(OBJ, frame())
    loss, grad = bound(THETA)
    ref_loss, ref_grad, ref_hess = by_hand(THETA)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11)
    hb = sdd.bind(OBJ, frame(), hessian=True)
    np.testing.assert_allclose(hb(THETA)[2], ref_hess, rtol=1e-11)


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as cl:
        yield cl


def test_bound_calls_match_numpy_and_local_kernels(client):
    ref_loss, ref_grad, ref_hess = by_hand(THETA)
    bound = sdd.bind(OBJ, frame(4))
    assert bound.n == N and bound.n_partitions == 4
    loss, grad = bound(THETA)
    np.testing.assert_allclose([loss, *grad], [ref_loss, *ref_grad], rtol=1e-11)
    assert bound.value(THETA) == pytest.approx(ref_loss, rel=1e-12)

    arrays = {x: da.from_array(X, chunks=6000), y: da.from_array(Y, chunks=6000)}
    hb = sdd.bind(OBJ, arrays, hessian=True)
    local = OBJ.compile(hessian=True).bind(LOCAL)
    l2, g2, h2 = hb(THETA)
    np.testing.assert_allclose(h2, ref_hess, rtol=1e-11)
    np.testing.assert_allclose(g2, ref_grad, rtol=1e-11)
    v = np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(hb.hvp(THETA, v), ref_hess @ v, rtol=1e-10)
    np.testing.assert_allclose(hb.loss_grad(THETA)[1], local.loss_grad(THETA)[1], rtol=1e-12)
    by_hvp = sdd.bind(OBJ, arrays, hessian="hvp")  # no fused Hessian program: p H v passes
    np.testing.assert_allclose(by_hvp(THETA)[2], ref_hess, rtol=1e-10)

    res = sd.Residuals(MODEL - y, [a, b, c], [x, y])
    rb = sdd.bind(res, arrays)
    rss, jtr, jtj = rb(THETA)
    assert rss == pytest.approx(ref_loss * N, rel=1e-12)
    np.testing.assert_allclose(jtr, ref_grad * N / 2, rtol=1e-11)
    e = np.exp(-THETA[1] * X)
    J = np.stack([e, -THETA[0] * X * e, np.ones_like(X)], axis=1)
    np.testing.assert_allclose(jtj, J.T @ J, rtol=1e-11)
    assert rb.value(THETA) == pytest.approx(rss, rel=1e-13)
    # only theta out and p + 1 sums back per partition
    def compiled_here():
        import codegen
        from symdiff import distributed as here
        return dict(codegen.STATS), sorted(here._KERNELS)

    seen = client.run(compiled_here)
    before = dict(bound.stats)
    bound(THETA)
    # compiled once per worker process: later tasks neither compile nor look up a cache
    assert client.run(compiled_here) == seen
    assert all(bound.recipe.digest in kernels for _, kernels in seen.values())
    moved = {k: bound.stats[k] - before[k] for k in before}
    groups = bound._backend.groups  # one task per worker holding partitions
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3] and len(groups) <= 2
    assert moved == {"calls": 1, "tasks": len(groups), "bytes_sent": len(groups) * 3 * 8,
                     "bytes_received": 4 * 4 * 8}


def test_reruns_and_the_default_scheduler_are_bit_identical(client):
    bound = sdd.bind(OBJ, frame(3))
    one = bound(THETA)
    for _ in range(bound._backend.REGROUP + 2):  # through a regrouping of the partitions
        again = bound(THETA)
        assert again[0] == one[0] and np.array_equal(again[1], one[1])
    two = sdd.bind(OBJ, frame(3))(THETA)
    here = sdd.bind(OBJ, frame(3), client=False)(THETA)
    for other in (two, here):
        assert one[0] == other[0] and np.array_equal(one[1], other[1])


def test_minimize_lbfgs_agrees_with_the_local_fit(client):
    start = {a: 1.0, b: 1.0, c: 0.0}
    here = sd.minimize(OBJ, LOCAL, x0=start)
    there = sd.minimize(OBJ, frame(3), x0=start)
    assert there.success
    np.testing.assert_allclose(there.x, here.x, rtol=1e-7, atol=1e-9)
    assert there.fun == pytest.approx(here.fun, rel=1e-10)
    for method in ("newton", "newton-cg"):
        second = sd.minimize(OBJ, frame(3), x0=start, method=method)
        np.testing.assert_allclose(second.x, here.x, rtol=1e-7, atol=1e-9)


def test_full_batch_gradient_descent_agrees_with_the_local_fit(client):
    kw = dict(optimizer=sd.optim.SGD(lr=0.1), epochs=15, progress=False, init="zeros")
    here = sd.fit(OBJ, LOCAL, **kw)
    there = sd.fit(OBJ, frame(3), **kw)
    np.testing.assert_allclose(there.history.train_loss, here.history.train_loss, rtol=1e-12)
    np.testing.assert_allclose(list(there.params_dict.values()), list(here.params_dict.values()),
                               rtol=1e-12)
    also_n = sd.fit(OBJ, frame(3), batch_size=N, validation=frame(2), **kw)
    np.testing.assert_array_equal(also_n.history.train_loss, there.history.train_loss)
    held_out = sd.fit(OBJ, LOCAL, validation=LOCAL, **kw)
    np.testing.assert_allclose(also_n.history.val_loss, held_out.history.val_loss, rtol=1e-12)


def test_least_squares_agrees_with_the_local_fit(client):
    start = {a: 1.0, b: 1.0, c: 0.0}
    here = sd.least_squares(MODEL, LOCAL, y, start)
    there = sd.least_squares(MODEL, frame(3), y, start)
    assert there.success and there.nfev == here.nfev
    np.testing.assert_allclose(there.x, here.x, rtol=1e-9)
    np.testing.assert_allclose(there.covariance, here.covariance, rtol=1e-7)
    assert there.rss == pytest.approx(here.rss, rel=1e-10)
    assert there.r2 == pytest.approx(here.r2, rel=1e-10)
    sig = 0.05 + 0.01 * X
    weighted = pd.DataFrame({"x": X, "y": Y, "s": sig})
    here = sd.least_squares(MODEL, {"x": X, "y": Y}, y, start, sigma=sig)
    there = sd.least_squares(MODEL, dd.from_pandas(weighted, npartitions=3), y, start, sigma="s")
    np.testing.assert_allclose(there.x, here.x, rtol=1e-9)
    np.testing.assert_allclose(there.stderr.by_name()["b"], here.stderr.by_name()["b"], rtol=1e-7)
    assert (there.rss, there.chisqr) == pytest.approx((here.rss, here.chisqr), rel=1e-10)
    assert there.r2 == pytest.approx(here.r2, rel=1e-10)
    with pytest.raises(UnsupportedError, match="method='lm'"):
        sd.least_squares(MODEL, frame(3), y, start, loss="soft_l1")


def test_streaming_qr_combines_partitions(client):
    res = sd.Residuals(MODEL - y, [a, b, c], [x, y])
    bound = sdd.bind(res, frame(4))
    rss, R, qtr = bound.qr(THETA)
    e = np.exp(-THETA[1] * X)
    J = np.stack([e, -THETA[0] * X * e, np.ones_like(X)], axis=1)
    r = THETA[0] * e + THETA[2] - Y
    assert rss == pytest.approx(r @ r, rel=1e-12)
    assert np.array_equal(R, np.triu(R))
    np.testing.assert_allclose(R.T @ R, J.T @ J, rtol=1e-11)
    np.testing.assert_allclose(R.T @ qtr, J.T @ r, rtol=1e-10)


@pytest.mark.parametrize("name", [pytest.param("MGH09", marks=pytest.mark.slow), "Thurber"])
def test_hard_nist_problems_on_dask_data(client, name):
    """Ill-conditioned iterates go through the partitions' streaming QR, combined here:
    NIST's certified values and standard errors, as in one process."""
    from nls_problems import NIST_MODELS, read_nist
    d = read_nist(name)
    ddf = dd.from_pandas(pd.DataFrame({"x": d.x, "y": d.y}), npartitions=2)
    res = sd.least_squares(NIST_MODELS[name].replace("**", "^"), ddf, "y",
                           dict(zip(d.params, d.starts[0])), xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert res.success, res.message
    assert res.rss == pytest.approx(d.rss, rel=1e-8)
    np.testing.assert_allclose(res.x, d.certified, rtol=1e-6)
    np.testing.assert_allclose([res.stderr[p] for p in d.params], d.certified_stderr, rtol=1e-4)


def test_mini_batches_on_dask_data_say_what_is_supported(client):
    with pytest.raises(UnsupportedError, match="batch_size=None"):
        sd.fit(OBJ, frame(3), batch_size=100, epochs=1, progress=False)
    with pytest.raises(UnsupportedError, match="random_split"):
        sd.fit(OBJ, frame(3), validation=0.2, epochs=1, progress=False)


def test_data_stays_on_the_workers(client):
    """2e6 rows (32 MB) generated on the workers: the client never holds them."""
    n, chunk = 2_000_000, 500_000
    xs = da.random.RandomState(1).uniform(0, 4, size=n, chunks=chunk)
    ys = 2.5 * da.exp(-0.8 * xs) + 0.3
    tracemalloc.start()
    try:
        bound = sdd.bind(OBJ, {x: xs, y: ys})
        for _ in range(5):
            loss, grad = bound(THETA)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bound.n == n and np.isfinite(loss)
    # about 1 MB here: Dask's bookkeeping for 4 partitions, whatever their length
    assert peak < 16 * n / 8, f"the client allocated {peak} bytes for {16 * n} bytes of data"
    bound.close()


def test_missing_column_names_it(client):
    ddf = dd.from_pandas(pd.DataFrame({"x": X, "z": Y}), npartitions=2)
    with pytest.raises(DataError, match=r"missing data column.*'y'"):
        sd.minimize(OBJ, ddf)


def test_non_numeric_column_names_it(client):
    ddf = dd.from_pandas(pd.DataFrame({"x": X, "y": Y.astype(str)}), npartitions=2)
    with pytest.raises(DataTypeError, match="'y'"):
        sdd.bind(OBJ, ddf)


def test_nan_names_the_column_and_partition(client):
    Ybad = Y.copy()
    Ybad[15_000] = np.nan  # in the third of three partitions
    ddf = dd.from_pandas(pd.DataFrame({"x": X, "y": Ybad}), npartitions=3)
    start = ddf.divisions[2]
    with pytest.raises(DataError, match=rf"'y' contains nan at row {15_000 - start} of partition 2"):
        sd.fit(OBJ, ddf, epochs=2, progress=False)


def test_missing_values_of_pandas_nullable_columns_are_named(client):
    table = pd.DataFrame({"x": pd.array(X, dtype="Float64"), "y": Y})
    table.loc[7, "x"] = pd.NA
    with pytest.raises(DataError, match=r"'x' contains nan at row 7 of partition 0"):
        sdd.bind(OBJ, dd.from_pandas(table, npartitions=2))


def test_mismatched_chunks_name_the_column_and_partition(client):
    arrays = {x: da.from_array(X, chunks=5000), y: da.from_array(Y, chunks=(5000, 4000, 11011))}
    with pytest.raises(DataError, match=r"'y' is chunked differently.*partition 1"):
        sd.minimize(OBJ, arrays)
    arrays = {x: da.from_array(X, chunks=5000), y: Y}
    with pytest.raises(DataTypeError, match="'y'"):
        sdd.bind(OBJ, arrays)
    # chunk sizes unknown until computed (a DataFrame's to_dask_array()): checked per partition
    left = dd.from_pandas(pd.DataFrame({"x": X}), npartitions=3).x.to_dask_array()
    right = dd.from_pandas(pd.DataFrame({"y": Y[:-5]}), npartitions=3).y.to_dask_array()
    with pytest.raises(DataError, match=r"'y' has \d+ rows in partition \d, but 'x' has"):
        sdd.bind(OBJ, {x: left, y: right})


def test_a_worker_killed_mid_fit_changes_nothing(client):
    """Kill one worker process (its partitions with it) in the middle of an L-BFGS fit:
    Dask recomputes them elsewhere and the fit ends bit-identical. (Last: it disturbs
    the shared cluster, whose nanny restarts the worker.)"""
    ddf = frame(4)
    start = {a: 1.0, b: 1.0, c: 0.0}
    calm = sd.minimize(OBJ, ddf, x0=start)
    pids = list(client.run(os.getpid).values())
    steps = []

    def kill_one(intermediate):
        steps.append(intermediate.fun)
        if len(steps) == 3:
            os.kill(pids[0], signal.SIGKILL)

    rough = sd.minimize(OBJ, ddf, x0=start, callback=kill_one)
    assert len(steps) > 3 and pids[0] not in client.run(os.getpid).values()
    assert rough.success and rough.nit == calm.nit
    np.testing.assert_array_equal(rough.x, calm.x)
    assert rough.fun == calm.fun
