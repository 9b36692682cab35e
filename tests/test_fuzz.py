"""Hostile and malformed input, fuzzed with hypothesis, on every public entry point.

The contract under test: every call ends either in a documented exception — a
``sd.SymdiffError``, or a ``TypeError``/``ValueError`` — or in a correct result
(checked against a NumPy float64 evaluation of the same inputs); nothing crashes
the interpreter, nothing returns a wrong number. A few kernels are compiled once
at import; hypothesis fuzzes the calls. Cases that could take the process down
(absurd formulas, batches claiming billions of samples) run in subprocesses, where
a crash is seen as a signal instead of ending the test run.

Each generated case is counted by kind and outcome; the counts are printed at
the end of the module (and written to ``$SYMDIFF_FUZZ_REPORT`` if set).
``SYMDIFF_FUZZ_SCALE=20`` multiplies the number of generated cases (a long local
run); ``SYMDIFF_FUZZ_ABSURD=1`` also compiles the 10,000-deep formula and the
100,000-term sum (minutes to hours).
"""

import collections
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import scipy.special
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symdiff as sd

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED = (sd.SymdiffError, TypeError, ValueError)
FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SCALE = float(os.environ.get("SYMDIFF_FUZZ_SCALE", "1"))   # e.g. 20 for a long local run


def examples(count):
    return max(1, int(count * SCALE))

COUNTS = collections.Counter()      # kind -> cases
OUTCOMES = collections.Counter()    # (kind, outcome) -> cases

w, b, x, y = sp.symbols("w b x y", real=True)
LINEAR = sd.Objective((w * x + b - y) ** 2, params=[w, b], data=[x, y])
KERNEL64 = LINEAR.compile(dtype=np.float64, threads=1)
KERNEL32 = LINEAR.compile(dtype=np.float32, threads=1)
MODEL = sd.Model(w * x + b, params=[w, b], inputs=[x]).compile(threads=1)


# -- the oracle -------------------------------------------------------------------------

def linear_reference(theta, columns):
    """Mean loss and gradient of (w*x + b - y)**2, plus the magnitude its rounding scales with."""
    xs, ys = columns
    with np.errstate(all="ignore"):
        r = theta[0] * xs + theta[1] - ys
        values = np.array([np.mean(r * r), np.mean(2 * r * xs), np.mean(2 * r)])
        scale = np.array([np.mean(r * r), np.mean(np.abs(2 * r * xs)), np.mean(np.abs(2 * r))])
        scale += np.mean(np.abs(theta[0] * xs)) + abs(theta[1]) + np.mean(np.abs(ys))
    return values, scale


def model_reference(theta, columns):
    with np.errstate(all="ignore"):
        out = theta[0] * columns[0] + theta[1]
        scale = np.abs(theta[0] * columns[0]) + abs(theta[1])
    return out, scale


def assert_matches(got, expected, scale, rtol, what):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    finite = np.isfinite(expected)
    assert np.all(~np.isfinite(got[~finite])), f"{what}: finite {got[~finite]} where the exact value is not"
    error = np.abs(got[finite] - expected[finite])
    bound = rtol * scale[finite] + 1e-300
    assert np.all(error <= bound), f"{what}: got {got}, expected {expected}"


def run_case(kinds, call, expect, check):
    """Run ``call``; ``expect`` is "error", "result" or "either"; ``check(result)`` asserts correctness.

    The case is counted once under each of its ``kinds`` (e.g. its theta and its data variant).
    """
    kinds = [kinds] if isinstance(kinds, str) else kinds
    COUNTS["cases"] += 1
    for kind in kinds:
        COUNTS[kind] += 1
    try:
        result = call()
    except DOCUMENTED as exc:
        for kind in kinds:
            OUTCOMES[kind, f"error:{type(exc).__name__}"] += 1
        assert expect != "result", f"{kinds}: a valid call raised {type(exc).__name__}: {exc}"
        return
    for kind in kinds:
        OUTCOMES[kind, "result"] += 1
    assert expect != "error", f"{kinds}: expected a documented error, got the result {result!r}"
    check(result)


# -- malformed thetas --------------------------------------------------------------------

def theta_variants(values):
    """(kind, theta as passed, expectation, theta as float64 for the reference)."""
    as_int = np.trunc(values)
    return {
        "theta ok": (values, "result", values),
        "theta list": (values.tolist(), "result", values),
        "theta int64": (as_int.astype(np.int64), "either", as_int),
        "theta int8": (np.clip(as_int, -100, 100).astype(np.int8), "either", np.clip(as_int, -100, 100)),
        "theta bool": (values > 0, "either", (values > 0).astype(np.float64)),
        "theta float16": (values.astype(np.float16), "either", values.astype(np.float16).astype(np.float64)),
        "theta float32": (values.astype(np.float32), "either", values.astype(np.float32).astype(np.float64)),
        "theta non-contiguous": (np.repeat(values, 2)[::2], "result", values),
        "theta read-only": (_read_only(values), "result", values),
        "theta complex": (values + 1j, "error", None),
        "theta object": (np.array([str(v) for v in values], dtype=object), "error", None),
        "theta string": ("1.0, 2.0", "error", None),
        "theta None": (None, "error", None),
        "theta too short": (values[:1], "error", None),
        "theta too long": (np.append(values, 1.0), "error", None),
        "theta empty": (np.array([]), "error", None),
        "theta 2-D": (values[None, :], "error", None),
        "theta NaN": (np.array([np.nan, values[1]]), "either", np.array([np.nan, values[1]])),
        "theta inf": (np.array([values[0], -np.inf]), "either", np.array([values[0], -np.inf])),
    }


def _read_only(array):
    array = np.array(array)
    array.setflags(write=False)
    return array


# -- malformed data ----------------------------------------------------------------------

def data_variants(names, symbols, arrays):
    """(kind, data as passed, expectation, columns as float64 for the reference or None).

    ``arrays`` are the kernel's columns in order; the first one gets the per-column
    malformations, the last one the length mismatch.
    """
    first, rest = arrays[0], list(arrays[1:])

    def columns(first_column, keys=names):
        return dict(zip(keys, [first_column, *rest]))

    def altered(new_first):
        return [new_first, *rest]

    with np.errstate(all="ignore"):
        return _data_variants(names, symbols, arrays, first, rest, columns, altered)


def _data_variants(names, symbols, arrays, first, rest, columns, altered):
    n = len(first)
    at_half = np.arange(n) == n // 2
    as_int = np.trunc(np.clip(first, -2.0**62, 2.0**62)).astype(np.int64)
    unaligned = np.frombuffer(b"\0" + first.tobytes(), dtype=np.float64, count=n, offset=1)
    variants = {
        "data dict of names": (columns(first), "result", arrays),
        "data dict of symbols": (columns(first, keys=symbols), "result", arrays),
        "data 2-D C-order": (np.column_stack(arrays), "result", arrays),
        "data 2-D Fortran-order": (np.asfortranarray(np.column_stack(arrays)), "result", arrays),
        "data read-only": (dict(zip(names, map(_read_only, arrays))), "result", arrays),
        "data non-contiguous": (columns(np.repeat(first, 2)[::2]), "either", arrays),
        "data byte-swapped": (columns(first.astype(">f8")), "either", arrays),
        "data unaligned": (columns(unaligned), "either", arrays),
        "data int column": (columns(as_int), "either", altered(as_int.astype(np.float64))),
        "data bool column": (columns(first > 0), "either", altered((first > 0).astype(np.float64))),
        "data float16 column": (columns(first.astype(np.float16)), "either",
                                altered(first.astype(np.float16).astype(np.float64))),
        "data float32 column": (columns(first.astype(np.float32)), "either",
                                altered(first.astype(np.float32).astype(np.float64))),
        "data list column": (columns(first.tolist()), "either", arrays),
        "data extra column": ({**columns(first), "z": first}, "either", arrays),
        "data complex column": (columns(first + 1j), "error", None),
        "data object column": (columns(first.astype(str).astype(object)), "error", None),
        "data string column": (columns(first.astype(str)), "error", None),
        "data datetime column": (columns(np.trunc(first).astype("datetime64[s]")), "error", None),
        "data missing column": (dict(zip(names[:-1], arrays[:-1])), "error", None),
        "data 2-D column": (columns(first[:, None]), "error", None),
        "data 2-D too wide": (np.column_stack([*arrays, first]), "error", None),
        "data 3-D": (np.column_stack(arrays)[:, :, None], "error", None),
        "data 0-D": (np.float64(1.0), "error", None),
        "data None": (None, "error", None),
        "data string": ("x=1,y=2", "error", None),
        "data empty dict": ({}, "error", None),
        "data n=0 dict": (dict(zip(names, [a[:0] for a in arrays])), "error", None),
        "data n=0 2-D": (np.empty((0, len(arrays))), "error", None),
        "data NaN": (columns(np.where(at_half, np.nan, first)), "either", altered(np.where(at_half, np.nan, first))),
        "data inf": (columns(np.where(at_half, -np.inf, first)), "either", altered(np.where(at_half, -np.inf, first))),
        "data overflowing": (columns(first * 1e300), "either", altered(first * 1e300)),
    }
    if len(arrays) > 1:
        variants["data length mismatch"] = ({**columns(first), names[-1]: np.append(arrays[-1], 1.0)}, "error", None)
    return variants


@st.composite
def samples(draw, count):
    """``count`` columns of n finite samples: hypothesis picks n, scale and seed; NumPy fills them."""
    n = draw(st.integers(1, 40))
    scale = draw(st.sampled_from([0.0, 1e-300, 1e-3, 1.0, 100.0, 1e100]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return [rng.normal(size=n) * scale for _ in range(count)]


ENTRIES = ["kernel(theta, data)", "kernel.value", "kernel.bind(data)(theta)", "bound.value(theta)",
           "float32 kernel", "model(theta, data)"]
finite_values = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@st.composite
def kernel_calls(draw, theta_kind=None, data_kind=None):
    """(entry point, theta kind, theta variant, data kind, data variant); None kinds are drawn too."""
    entry = draw(st.sampled_from(ENTRIES))
    names, symbols = (["x"], [x]) if entry == "model(theta, data)" else (["x", "y"], [x, y])
    arrays = draw(samples(len(names)))
    theta = np.array(draw(st.lists(finite_values, min_size=2, max_size=2)))
    thetas, datas = theta_variants(theta), data_variants(names, symbols, arrays)
    if theta_kind is None:
        theta_kind = draw(st.sampled_from(sorted(thetas)))
    if data_kind is None:
        data_kind = draw(st.sampled_from(sorted(datas)))
    if data_kind not in datas:  # a malformation the model's single column cannot have
        data_kind = "data dict of names"
    return entry, theta_kind, thetas[theta_kind], data_kind, datas[data_kind]


THETA_KINDS = sorted(theta_variants(np.zeros(2)))
DATA_KINDS = sorted(data_variants(["x", "y"], [x, y], [np.zeros(3), np.zeros(3)]))


def combine(theta_expect, data_expect):
    if "error" in (theta_expect, data_expect):
        return "error"
    return "result" if theta_expect == data_expect == "result" else "either"


@pytest.mark.parametrize("theta_kind", THETA_KINDS)
@settings(FUZZ, max_examples=examples(15))
@given(data=st.data())
def test_malformed_theta(theta_kind, data):
    check_kernel_call(data.draw(kernel_calls(theta_kind=theta_kind, data_kind="data dict of names")))


@pytest.mark.parametrize("data_kind", DATA_KINDS)
@settings(FUZZ, max_examples=examples(15))
@given(data=st.data())
def test_malformed_data(data_kind, data):
    check_kernel_call(data.draw(kernel_calls(theta_kind="theta ok", data_kind=data_kind)))


@settings(FUZZ, max_examples=examples(300))
@given(kernel_calls())
def test_malformed_theta_and_data_together(case):
    check_kernel_call(case)


def check_kernel_call(case):
    """Every entry point ends in a documented error or the reference result."""
    entry, theta_kind, (theta, theta_expect, theta64), data_kind, (data, data_expect, columns) = case
    expect = combine(theta_expect, data_expect)
    if entry == "float32 kernel" and expect == "result" and max(np.max(np.abs(c)) for c in columns) > 3e38:
        expect = "either"  # beyond float32's range: refusing the data is right too
    kind = f"{entry} | {theta_kind} | {data_kind}"
    rtol = 1e-5 if entry == "float32 kernel" else 1e-12

    def check_objective(result, value_only=False):
        if entry == "float32 kernel":  # computes in float32, parameters included
            cols = [np.asarray(c, dtype=np.float32).astype(np.float64) for c in columns]
            params = theta64.astype(np.float32).astype(np.float64)
        else:
            cols = [np.asarray(c, dtype=np.float64) for c in columns]
            params = theta64
        expected, scale = linear_reference(params, cols)
        if value_only:
            assert isinstance(result, float)
            assert_matches([result], expected[:1], scale[:1], rtol, kind)
        else:
            loss, grad = result
            assert isinstance(loss, float)
            assert_matches([loss, *grad], expected, scale, rtol, kind)

    if entry == "kernel(theta, data)":
        call, check = (lambda: KERNEL64(theta, data)), check_objective
    elif entry == "float32 kernel":
        call, check = (lambda: KERNEL32(theta, data)), check_objective
    elif entry == "kernel.value":
        call, check = (lambda: KERNEL64.value(theta, data)), (lambda r: check_objective(r, value_only=True))
    elif entry == "kernel.bind(data)(theta)":
        call, check = (lambda: KERNEL64.bind(data)(theta)), check_objective
    elif entry == "bound.value(theta)":
        call, check = (lambda: KERNEL64.bind(data).value(theta)), (lambda r: check_objective(r, value_only=True))
    else:
        def check(result):
            expected, scale = model_reference(theta64, [np.asarray(c, dtype=np.float64) for c in columns])
            assert_matches(result, expected, scale, rtol, kind)
        call = lambda: MODEL(theta, data)  # noqa: E731
    COUNTS[f"entry: {entry}"] += 1
    run_case([theta_kind, data_kind], call, expect, check)


DTYPES = {np.float64: "result", np.float32: "result", "float64": "result", "f4": "result", None: "either",
          np.int32: "error", np.int64: "error", np.complex128: "error", np.float16: "error", np.longdouble: "either",
          "banana": "error", object: "error", bool: "error"}
THREADS = [(None, "result"), (1, "result"), (2, "result"), (10**9, "result"), (0, "either"), (-1, "either"),
           (2.5, "either"), (True, "either"), ("two", "error"), ((2,), "error")]   # pairs: True == 1 as a key


@settings(FUZZ, max_examples=examples(60))
@given(st.sampled_from(list(DTYPES)), st.sampled_from(THREADS), st.booleans())
def test_compile_arguments(dtype, threads_case, model):
    """obj.compile / model.compile with odd dtypes and thread counts: a working kernel or a clear error."""
    threads, threads_expect = threads_case
    expect = combine(DTYPES[dtype], threads_expect)
    theta, xs, ys = np.array([0.7, -0.2]), np.linspace(-1, 1, 50), np.linspace(0, 2, 50)

    def check(kernel):
        if model:
            expected, scale = model_reference(theta, [xs])
            got = kernel(theta, {"x": xs})
        else:
            expected, scale = linear_reference(theta, [xs, ys])
            loss, grad = kernel(theta, {"x": xs, "y": ys})
            got = [loss, *grad]
        assert_matches(got, expected, scale, 1e-5 if np.dtype(kernel.dtype) == np.float32 else 1e-12,
                       f"compile(dtype={dtype!r}, threads={threads!r})")

    target = sd.Model(w * x + b, params=[w, b], inputs=[x]) if model else LINEAR
    COUNTS[f"entry: {'model' if model else 'obj'}.compile(dtype, threads)"] += 1
    run_case([f"compile dtype {dtype!r}", f"compile threads {threads!r}"],
             lambda: target.compile(dtype=dtype, threads=threads), expect, check)


# -- malformed formulas ------------------------------------------------------------------

z = sp.Symbol("z", real=True)
UNSUPPORTED = [sp.gamma, sp.zeta, sp.loggamma, sp.floor, sp.ceiling, sp.li, sp.Ei, sp.fresnels,
               sp.Function("f"), lambda u: sp.besselj(0, u), lambda u: u * sp.Derivative(sp.Function("g")(w), w)]
SUPPORTED = [sp.exp, sp.log, sp.sin, sp.cos, sp.tanh, sp.atan, sp.sqrt, sp.Abs, sp.erf, sd.sigmoid, sd.softplus]


NUMPY_FUNCTIONS = {"softplus": lambda u: np.logaddexp(0.0, u), "sigmoid": lambda u: 0.5 * (1 + np.tanh(u / 2)),
                   "erf": scipy.special.erf}


@st.composite
def formulas(draw, depth=3):
    """A random scalar formula in w, b (params) and x (data)."""
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from([w, b, x, sp.Integer(2), sp.Rational(1, 3), sp.Float(0.5)]))
    op = draw(st.sampled_from(["add", "mul", "pow", "fn"]))
    left = draw(formulas(depth - 1))
    if op == "fn":
        return draw(st.sampled_from(SUPPORTED))(left)
    right = draw(formulas(depth - 1))
    if op == "add":
        return left + right
    if op == "mul":
        return left * right
    return left ** draw(st.sampled_from([2, 3, -1]))


@st.composite
def malformed_objectives(draw):
    base = draw(formulas())
    kind = draw(st.sampled_from(["stray symbol", "unsupported function", "matrix loss", "matrix symbol loss",
                                 "relational loss", "boolean loss", "python list loss", "None loss",
                                 "complex constant", "infinite constant", "nan constant",
                                 "param listed twice", "param also data", "param is an expression",
                                 "param is a number", "no params", "valid"]))
    params, data = [w, b], [x]
    loss = base + w + b + x  # every symbol used, so only the malformation matters
    if kind == "stray symbol":
        loss = loss + z
    elif kind == "unsupported function":
        loss = loss + draw(st.sampled_from(UNSUPPORTED))(w * x)
    elif kind == "matrix loss":
        loss = sp.Matrix([loss, w])
    elif kind == "matrix symbol loss":
        loss = sp.MatrixSymbol("A", 2, 2)
    elif kind == "relational loss":
        loss = sp.Lt(w + b + x, 1)
    elif kind == "boolean loss":
        loss = sp.And(w > 0, x > 0)
    elif kind == "python list loss":
        loss = [loss]
    elif kind == "None loss":
        loss = None
    elif kind == "complex constant":
        loss = loss + sp.I * w
    elif kind == "infinite constant":
        loss = loss + sp.oo * w
    elif kind == "nan constant":
        loss = loss + sp.nan * w
    elif kind == "param listed twice":
        params = [w, b, w]
    elif kind == "param also data":
        data = [x, w]
    elif kind == "param is an expression":
        params = [w + 1, b]
    elif kind == "param is a number":
        params = [3, b]
    elif kind == "no params":
        params = []
    return kind, loss, params, data


def build_and_compile(loss, params, data):
    objective = sd.Objective(loss, params=params, data=data)
    objective.gradient()
    return objective


@settings(FUZZ, max_examples=examples(200))
@given(malformed_objectives())
def test_malformed_objectives_are_refused_clearly(case):
    kind, loss, params, data = case
    expect = "either" if kind == "valid" else "error"

    def check(objective):
        for entry, exact in zip(objective.gradient(), [sp.diff(loss, p) for p in objective.params]):
            point = {w: 0.37, b: -0.81, x: 1.3}
            got, want = complex(entry.subs(point).evalf()), complex(exact.subs(point).evalf())
            if np.isfinite(want):
                assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), f"{kind}: d/d wrong for {loss}"

    COUNTS["entry: sd.Objective(...).gradient()"] += 1
    run_case(f"objective: {kind}", lambda: build_and_compile(loss, params, data), expect, check)


@settings(FUZZ, max_examples=examples(100))
@given(formulas(), st.sampled_from(["symbols", "names", "single symbol", "junk wrt", "unsupported"]))
def test_grad_on_random_formulas(formula, wrt_kind):
    wrt = {"symbols": [w, b], "names": ["w", "b"], "single symbol": w, "junk wrt": [w * x, 3],
           "unsupported": [w]}[wrt_kind]
    expr = formula + sp.gamma(w) if wrt_kind == "unsupported" else formula
    expect = "error" if wrt_kind in ("junk wrt", "unsupported") else "either"

    def check(gradient):
        symbols = [w] if wrt_kind == "single symbol" else [w, b]
        assert len(gradient) == len(symbols)
        point = {w: 0.43, b: 0.29, x: 1.7}
        for entry, s in zip(gradient, symbols):
            want = complex(sp.diff(expr, s).subs(point).evalf())
            got = complex(sp.sympify(entry).subs(point).evalf())
            if np.isfinite(want):
                assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), f"d/d{s} of {expr}: {entry}"

    COUNTS["entry: sd.grad"] += 1
    run_case(f"grad: {wrt_kind}", lambda: sd.grad(expr, wrt), expect, check)


@settings(FUZZ, max_examples=examples(25))
@given(formulas(depth=3), st.sampled_from([np.float64, np.float32]))
def test_random_formulas_compile_to_correct_kernels(formula, dtype):
    """obj.compile and kernel(...) on random valid formulas, against lambdify (few: each compile costs ~70 ms)."""
    loss = formula + w * x + b
    objective = sd.Objective(loss, params=[w, b], data=[x])
    xs = np.linspace(0.1, 1.9, 11)
    theta = np.array([0.37, -0.21])
    reference = sp.lambdify([w, b, x], [loss] + [sp.diff(loss, p) for p in (w, b)], [NUMPY_FUNCTIONS, "numpy"])
    COUNTS["entry: obj.compile"] += 1
    with np.errstate(all="ignore"):
        expected = np.array([np.mean(np.broadcast_to(v, xs.shape)) for v in reference(*theta, xs)], dtype=float)
    scale = np.abs(expected) + 1

    def check(kernel):
        loss_value, grad = kernel(theta, {"x": xs.astype(dtype)})
        assert_matches([loss_value, *grad], expected, scale, 1e-9 if dtype is np.float64 else 2e-3, str(loss))

    def compile_and_check():
        kernel = objective.compile(dtype=dtype)
        try:
            check(kernel)
        except sd.DataError:
            assert not np.all(np.isfinite(expected)), f"DataError for a finite objective {loss}"
        return kernel

    run_case("compile: random valid formula", compile_and_check, "either", lambda kernel: None)


# -- bugs found by fuzzing, fixed; kept as regression tests -------------------------------

def test_a_column_given_twice_is_refused():
    with pytest.raises(DOCUMENTED):
        KERNEL64(np.array([1.0, 0.5]), {"x": np.ones(3), x: np.zeros(3), "y": np.ones(3)})


def test_objective_without_data_columns_takes_the_batch_size_it_asks_for():
    kernel = sd.Objective(w ** 2 + b ** 2, params=[w, b], data=[]).compile()
    loss, grad = kernel(np.array([1.0, 0.5]))
    assert loss == 1.25 and list(grad) == [2.0, 1.0]


def test_a_symbol_named_like_a_number_is_not_the_number():
    two = sp.Symbol("2", real=True)
    data = {"2": np.full(4, 5.0)}
    sd.Objective((w - 2) ** 2, params=[w], data=[two]).compile()
    loss, grad = sd.Objective((w - two) ** 2, params=[w], data=[two]).compile()(np.array([1.0]), data)
    assert (loss, list(grad)) == (16.0, [-8.0])


# -- cases that could take the process down: subprocesses ------------------------------

CHILD_PRELUDE = textwrap.dedent(
    """
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
    sys.path.insert(0, {root!r})
    import numpy as np, sympy as sp, symdiff as sd
    w, b, x, y = sp.symbols("w b x y", real=True)
    def outcome(call):
        try:
            call()
            print("OUTCOME result")
        except (sd.SymdiffError, TypeError, ValueError) as exc:
            print("OUTCOME documented", type(exc).__name__, str(exc)[:200].replace(chr(10), " "))
        except BaseException as exc:
            print("OUTCOME undocumented", type(exc).__name__, str(exc)[:200].replace(chr(10), " "))
    """
)

HUGE_BATCHES = {
    "stride-0 column claiming 2**31+1 samples": "k(np.array([1.0, 0.5]), {'x': np.broadcast_to(1.0, (2**31 + 1,)), "
                                                "'y': np.broadcast_to(2.0, (2**31 + 1,))})",
    "stride-0 column claiming 2**40 samples": "k.bind({'x': np.broadcast_to(1.0, (2**40,)), "
                                              "'y': np.broadcast_to(2.0, (2**40,))})",
    "stride-0 2-D data claiming 2**40 samples": "k(np.array([1.0, 0.5]), np.broadcast_to([1.0, 2.0], (2**40, 2)))",
    "stride-0 model input claiming 2**40 samples": "m(np.array([1.0, 0.5]), {'x': np.broadcast_to(1.0, (2**40,))})",
}

def horner(depth):
    return f"e = x\nfor _ in range({depth}): e = e * w + 1"


HORNER_REFERENCE = textwrap.dedent(
    """
    def horner_reference(depth, w0, xs):
        # e <- e*w + 1 and its w-derivative de <- de*w + e, sample by sample
        e, de = xs.copy(), np.zeros_like(xs)
        for _ in range(depth):
            e, de = e * w0 + 1, de * w0 + e
        return e.mean(), de.mean()
    """
)

# name -> (formula-building code, depth for the Horner reference or None, compile it?)
ABSURD_FORMULAS = {
    "nested 10,000 deep (Horner): objective and program": (horner(10000), None, False),
    "nested 10,000 deep (tanh): objective and program": (
        "e = w * x\nfor _ in range(10000): e = sp.tanh(e, evaluate=False)", None, False),
    "nested 1,000 deep (Horner): compiled and called": (horner(1000), 1000, True),
}
if os.environ.get("SYMDIFF_FUZZ_ABSURD") == "1":   # minutes to hours: LLVM's code generation is ~quadratic
    ABSURD_FORMULAS["nested 10,000 deep (Horner): compiled and called"] = (horner(10000), 10000, True)
    ABSURD_FORMULAS["100,000 terms: compiled and called"] = (
        "e = sp.Add(*[(w * x - k) ** 2 for k in range(1, 100001)])", None, True)


def run_child(body, timeout):
    script = CHILD_PRELUDE.format(root=str(REPO_ROOT)) + textwrap.dedent(body)
    try:
        done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"no answer within {timeout} s"
    if done.returncode < 0:
        return "crash", f"killed by signal {-done.returncode}: {done.stderr[-500:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("OUTCOME ")]
    if done.returncode != 0 or not lines:
        return "crash", f"exit status {done.returncode}: {done.stderr[-500:]}"
    return lines[-1].split()[1], lines[-1]


def count_subprocess_case(name, outcome):
    COUNTS["cases"] += 1
    COUNTS["entry: subprocess"] += 1
    COUNTS[f"subprocess: {name}"] += 1
    OUTCOMES[f"subprocess: {name}", outcome] += 1


@pytest.mark.parametrize("name", list(HUGE_BATCHES))
def test_batches_claiming_huge_n_end_cleanly(name):
    body = ("k = sd.Objective((w*x + b - y)**2, params=[w, b], data=[x, y]).compile()\n"
            "m = sd.Model(w*x + b, params=[w, b], inputs=[x]).compile()\n"
            f"outcome(lambda: {HUGE_BATCHES[name]})\n")
    kind, detail = run_child(body, timeout=120)
    count_subprocess_case(name, kind)
    assert kind in ("documented", "result"), f"{name}: {detail}"


@pytest.mark.parametrize("name", list(ABSURD_FORMULAS))
def test_absurd_formulas_end_cleanly(name):
    """Formulas 10,000 deep build their objective and program (or are refused clearly); compiled ones are right.

    Compiling the 10,000-deep formula and the 100,000-term sum is left to
    ``SYMDIFF_FUZZ_ABSURD=1``: LLVM's machine-code generation grows about
    quadratically with the straight-line body (a 50,000-operation body took 185 s).
    """
    code, reference_depth, compile_it = ABSURD_FORMULAS[name]
    body = code + "\n" + HORNER_REFERENCE + textwrap.dedent(
        f"""
        def build():
            objective = sd.Objective(e, params=[w], data=[x])
            objective.program()
            if {compile_it}:
                xs = np.linspace(0, 1, 9)
                loss, grad = objective.compile()(np.array([0.999]), {{'x': xs}})
                if {reference_depth} is not None:
                    want_loss, want_grad = horner_reference({reference_depth}, 0.999, xs)
                    assert abs(loss - want_loss) <= 1e-9 * abs(want_loss), (loss, want_loss)
                    assert abs(grad[0] - want_grad) <= 1e-9 * abs(want_grad), (grad[0], want_grad)
        outcome(build)
        """)
    kind, detail = run_child(body, timeout=7200 if "100,000" in name else 900)
    count_subprocess_case(name, kind)
    assert kind in ("documented", "result"), f"{name}: {detail}"


# -- the counts ----------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    yield
    entries = sorted((k, v) for k, v in COUNTS.items() if k.startswith("entry: "))
    kinds = sorted((k, v) for k, v in COUNTS.items() if k != "cases" and not k.startswith("entry: "))
    crashes = sum(v for (_, outcome), v in OUTCOMES.items() if outcome in ("crash", "timeout"))
    undocumented = sum(v for (_, outcome), v in OUTCOMES.items() if outcome == "undocumented")
    lines = [f"fuzz: {COUNTS['cases']} cases, {len(kinds)} kinds, {crashes} crashes or hangs, "
             f"{undocumented} undocumented exceptions"]
    lines += [f"  {name}: {count}" for name, count in entries]
    for kind, count in kinds:
        outcomes = ", ".join(f"{o} {v}" for (k, o), v in sorted(OUTCOMES.items()) if k == kind)
        lines.append(f"    {kind}: {count} ({outcomes})")
    report = os.environ.get("SYMDIFF_FUZZ_REPORT")
    if report:
        Path(report).write_text("\n".join(lines) + "\n")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))
