"""The native team (codegen.handoff) that splits short array-kernel calls over cores:
the same bits as one thread, whichever thread runs a slot; concurrent callers; helpers
that went to sleep; a forked child; a clean interpreter exit while helpers spin."""

import multiprocessing
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import codegen
import codegen.array_kernel as array_kernel
from codegen import handoff
from test_array_rows import _problem, _softmax_mlp

pytestmark = pytest.mark.skipif(codegen.available_cores() < 2, reason="one core: no team")


@pytest.fixture
def always_split(monkeypatch):
    """Every call of two slots or more goes to the team (no timing of one thread)."""
    monkeypatch.setattr(array_kernel, "ADAPTIVE_FLOPS", 0)
    monkeypatch.setattr(array_kernel, "MIN_FLOPS_PER_THREAD", 0)


def _kernels(dtype, threads=2):
    p = _softmax_mlp(64, 32, 10)
    return (codegen.compile_objective(p, dtype=dtype, threads=1, cache=False),
            codegen.compile_objective(p, dtype=dtype, threads=threads, cache=False))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 7, 1797, 5001])
def test_team_calls_give_the_bits_of_one_thread(always_split, dtype, n):
    one, two = _kernels(dtype)
    theta, X, Y = _problem((64, 32, 10), n, seed=n)
    want = one(theta, {"x": X, "y": Y})
    bound = two.bind({"x": X, "y": Y})
    calls = handoff.team(1).seq
    for _ in range(50):
        got = bound(theta)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])
    assert handoff.team(1).seq >= calls + 50  # every call ran on the team


def test_concurrent_callers_share_one_team(always_split):
    one, two = _kernels(np.float64)
    theta, X, Y = _problem((64, 32, 10), 1797, seed=3)
    want = one(theta, {"x": X, "y": Y})
    failures = []

    def caller():
        bound = two.bind({"x": X, "y": Y})
        for _ in range(100):
            loss, grad = bound(theta)
            if loss != want[0] or not np.array_equal(grad, want[1]):
                failures.append((loss, grad))

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_helpers_that_went_to_sleep_are_woken(always_split):
    one, two = _kernels(np.float32)
    theta, X, Y = _problem((64, 32, 10), 1797, seed=4)
    want = one(theta, {"x": X, "y": Y})
    two(theta, {"x": X, "y": Y})
    team = handoff.team(1)
    deadline = time.monotonic() + 5
    while team.sleeping < len(team.helpers) and time.monotonic() < deadline:
        time.sleep(0.01)  # past the spin budget (~0.3 ms) the helpers block
    assert team.sleeping == len(team.helpers)
    got = two(theta, {"x": X, "y": Y})
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def _child(queue):
    one, two = _kernels(np.float64)
    theta, X, Y = _problem((64, 32, 10), 1797, seed=5)
    array_kernel.ADAPTIVE_FLOPS = 0
    a, b = one(theta, {"x": X, "y": Y}), two(theta, {"x": X, "y": Y})
    queue.put((a[0] == b[0]) and bool(np.array_equal(a[1], b[1])))


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_forked_child_makes_its_own_team(always_split):
    one, two = _kernels(np.float64)
    theta, X, Y = _problem((64, 32, 10), 1797, seed=5)
    two(theta, {"x": X, "y": Y})  # the parent's team exists and spins
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    assert queue.get(timeout=60) is True
    child.join(timeout=60)
    assert child.exitcode == 0


def test_exit_while_helpers_spin_is_clean():
    code = (
        "import numpy as np, codegen, codegen.array_kernel as ak\n"
        "from test_array_rows import _problem, _softmax_mlp\n"
        "ak.ADAPTIVE_FLOPS = 0\n"
        "k = codegen.compile_objective(_softmax_mlp(64, 32, 10), threads=2, cache=False)\n"
        "theta, X, Y = _problem((64, 32, 10), 1797)\n"
        "for _ in range(20): k(theta, {'x': X, 'y': Y})\n"
        "print('done')\n")
    for _ in range(3):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=str(__import__("pathlib").Path(__file__).parent))
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "done"


def test_model_outputs_on_the_team_are_the_bits_of_one_thread(always_split):
    import sympy as sp

    import symdiff as sd
    x = sp.MatrixSymbol("x", 64, 1)
    z, params = sd.nets.mlp(x, (32,), outputs=10)
    model = sd.Model(z, params, [x])
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20_000, 64))  # several tiles
    theta = rng.normal(0, 0.1, 64 * 32 + 32 + 32 * 10 + 10)
    calls = handoff.team(1).seq
    one, two = model.compile(threads=1)(theta, X), model.compile(threads=2)(theta, X)
    assert handoff.team(1).seq > calls
    np.testing.assert_array_equal(one, two)
    W1, b1 = theta[:2048].reshape(32, 64), theta[2048:2080]
    W2, b2 = theta[2080:2400].reshape(10, 32), theta[2400:]
    np.testing.assert_allclose(two, np.tanh(X @ W1.T + b1) @ W2.T + b2, rtol=1e-12, atol=1e-12)
