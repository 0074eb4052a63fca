"""Regression tests for the core hardening (issue 10, items 1, 2, 8, 9 and 16, with their classes).

* 1: every public function taking Python scalars, lists, NumPy scalars or 0-d arrays works as
  the first call in a fresh interpreter.
* 2: logsumexp / log_softmax / entropy are exact when ``log sum exp`` is close to 0 (the log1p
  form), for every temperature, on the generic path, the fused torch path and the public call.
* 8: an array temperature (NumPy float64 scalar, 0-d, per-row; torch/JAX float64) is never
  rounded to the logits' narrower dtype before the division.
* 9: a mask (or per-row temperature) must broadcast *to* x's shape; it never enlarges the output.
* 16: pandas objects and anything with ``__array__`` are read as NumPy; object arrays are refused.

Plus the temperature range beyond [1e-30, 1e30] (subnormal, 1e300, max, inf) with logits at
the dtype's extremes, on every backend.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import mpmath
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import tempscale
import tempscale._config
import tempscale._softmax as sm
from tempscale import entropy, log_softmax, logsumexp, perplexity, softmax, solve_temperature, temper

from .conftest import to_numpy

INF = math.inf
F64_MAX = float(np.finfo(np.float64).max)
F32_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------------------------------
# an exact reference (mpmath), independent of the library
# ------------------------------------------------------------------------------------------
def exact_row(row, T, dps=80):
    """(softmax, log_softmax, logsumexp) of a finite-maximum row at 0 < T < inf, as mpf."""
    with mpmath.workdps(dps):
        row = [float(v) for v in row]
        valid = [v > -INF for v in row]
        m = max(v for v, ok in zip(row, valid, strict=True) if ok)
        Tm = mpmath.mpf(T)
        ys = [(mpmath.mpf(v) - mpmath.mpf(m)) / Tm if ok else None for v, ok in zip(row, valid, strict=True)]
        # log s = log k + log1p(r/k): k maxima, r the rest (1 + r would round r away at any dps)
        k = sum(1 for v, ok in zip(row, valid, strict=True) if ok and v == m)
        r = mpmath.fsum(mpmath.exp(y) for y, v in zip(ys, row, strict=True) if y is not None and v != m)
        s = k + r
        ls = mpmath.log(k) + mpmath.log1p(r / k)
        p = [mpmath.exp(y) / s if y is not None else mpmath.mpf(0) for y in ys]
        lp = [y - ls if y is not None else mpmath.mpf("-inf") for y in ys]
        return p, lp, mpmath.mpf(m) + Tm * ls


def exact(x, T, kind):
    """``kind`` of a 2-D float array along the last axis, exactly, as float64 (T per row ok)."""
    x = np.asarray(x, dtype=np.float64)
    Ts = np.broadcast_to(np.asarray(T, dtype=np.float64).reshape(-1), (x.shape[0],))
    out = []
    for row, t in zip(x, Ts, strict=True):
        p, lp, lse = exact_row(row, float(t))
        out.append({"softmax": p, "log_softmax": lp, "logsumexp": lse}[kind])
    return np.array([[float(v) for v in r] if isinstance(r, list) else float(r) for r in out],
                    dtype=np.float64)


# ------------------------------------------------------------------------------------------
# 1. fresh interpreters: Python scalars, lists, NumPy scalars and 0-d arrays as the first call
# ------------------------------------------------------------------------------------------
_FRESH_CALLS = {
    "softmax": ["ts.softmax(1000, 1.0, axis=None)", "ts.softmax(np.float32(2.0), axis=None)",
                "ts.softmax([1, 2], 0.5)", "ts.softmax(np.array(3.0), axis=None)"],
    "log_softmax": ["ts.log_softmax(3, axis=None)", "ts.log_softmax([0.0, -40.0])"],
    "logsumexp": ["ts.logsumexp(2.0, axis=None)", "ts.logsumexp([0, -40])",
                  "ts.logsumexp(np.float64(1.5), 2.0, axis=None)"],
    "temper": ["ts.temper(0.5, 1.0)", "ts.temper([0.2, 0.8], np.float64(1.0))",
               "ts.temper(np.array(0.25), 3)"],
    "entropy": ["ts.entropy(1.0, axis=None)", "ts.entropy([1.0, 1.0])"],
    "perplexity": ["ts.perplexity(5, axis=None)", "ts.perplexity([2.0, 2.0, 2.0])"],
    "solve_temperature": ["ts.solve_temperature([0.0, 1.0], max_prob=0.6)",
                          "ts.solve_temperature([[0.0, 0.0, 1.0]], perplexity=2.5)"],
    "calibration_error": ["ts.calibration_error([[0.2, 0.8]], [1])"],
    "nll": ["ts.nll([[0.5, 0.5]], [1])"],
    "brier_score": ["ts.brier_score([[0.0, 1.0]], [1])"],
    "reliability_curve": ["ts.reliability_curve([[0.2, 0.8]], [1]) is not None"],
    "fit_temperature": ["ts.fit_temperature([[1.0, 2.0], [2.0, 1.0], [1.0, 0.0]], [1, 0, 1])"],
    "kd_loss": ["ts.kd_loss([[1.0, 2.0]], [[1.0, 2.0]])"],
    "sample": ["ts.sample([1.0, 2.0], 0.0)"],
    "warp": ["ts.warp([[1.0, 2.0]], 1.0)"],
    "gumbel_softmax": ["ts.gumbel_softmax([[1.0, 2.0]], 1.0)"],
    "TemperatureScaler": ["ts.TemperatureScaler().fit([[1.0, 2.0], [2.0, 1.0], [1.0, 0.0]], "
                          "[1, 0, 1]).temperature_"],
    **{name: [f"ts.{name}().fit([[1.0, 2.0], [2.0, 1.0], [1.0, 0.0], [0.0, 1.5]], "
              "[1, 0, 0, 1]).predict_proba([[1.0, 2.0]])"]
       for name in ("VectorScaler", "MatrixScaler", "DirichletScaler")},
    "CalibrationMeter": ["ts.CalibrationMeter().update([[1.0, 2.0]], [1]).compute()['nll']"],
    "sparse_kd_loss": ["ts.sparse_kd_loss([[1.0, 2.0]], [[0, 1]], [[1.0, 2.0]])"],
    "SparseTeacher": ["ts.sparse_kd_loss([[1.0, 2.0]], teacher=ts.SparseTeacher([[0, 1]], [[1.0, 2.0]]))"],
}
# the exact values the first call must give (None: only that it runs and gives finite numbers)
_FRESH_EXPECT = {
    "softmax": [1.0, 1.0, [1 / (1 + math.e ** 2), 1 / (1 + math.e ** -2)], 1.0],
    "log_softmax": [0.0, [-math.log1p(math.exp(-40.0)), -40.0 - math.log1p(math.exp(-40.0))]],
    "logsumexp": [2.0, math.log1p(math.exp(-40.0)), 1.5],
    "temper": [1.0, [0.2, 0.8], 1.0],
    "entropy": [0.0, math.log(2.0)],
    "perplexity": [1.0, 3.0],
    "kd_loss": [0.0],
    "sparse_kd_loss": [0.0],
    "CalibrationMeter": [math.log1p(math.exp(-1.0))],
    "SparseTeacher": [0.0],
    "sample": [1],
    "brier_score": [0.0],
    "nll": [math.log(2.0)],
}


@pytest.mark.parametrize("name", sorted(_FRESH_CALLS))
def test_first_call_in_a_fresh_interpreter(name):
    calls = _FRESH_CALLS[name]
    code = "\n".join([
        "import json, math",
        "import numpy as np",
        "import tempscale as ts",
        "out = []",
        "def num(r):",
        "    a = np.asarray(r.tolist() if hasattr(r, 'tolist') else r, dtype=float)",
        "    return a.tolist()",
        *[f"out.append(num({c}))" for c in calls],
        "print(json.dumps(out))",
    ])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(got) == len(calls)
    for g in got:
        assert np.all(np.isfinite(np.asarray(g, dtype=float))), got
    for g, e in zip(got, _FRESH_EXPECT.get(name, []), strict=False):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-13, atol=0)


def test_fresh_interpreter_covers_every_array_function():
    skip = {"__version__", "get_num_threads", "set_num_threads", "show_config", "config", "get_config"}
    arrays = {n for n in tempscale.__all__ if n not in skip and not n.endswith("Warning")}
    assert arrays == set(_FRESH_CALLS)


# ------------------------------------------------------------------------------------------
# 2. logsumexp near 0: the log1p form, every T, every path
# ------------------------------------------------------------------------------------------
_NEAR_ZERO_ROWS = np.array([[0.0, -40.0, -INF], [0.0, -700.0, -45.0], [-3.0, -3.0 - 60.0, -80.0],
                            [5.0, 5.0 - 37.5, 5.0 - 50.0], [0.0, 0.0, -40.0]])
_NEAR_ZERO_T = [1.0, 0.5, 2.0, 0.037, 13.0, "rows"]


def _check_near_zero(f, xp, T):
    """``f(kind, x, T)`` against mpmath on rows whose logsumexp is close to the max."""
    rows = _NEAR_ZERO_ROWS
    temp = np.array([1.0, 0.5, 2.0, 0.25, 3.0]) if T == "rows" else T
    want_lse = exact(rows, temp, "logsumexp")
    want_lsm = exact(rows, temp, "log_softmax")
    x = xp.asarray(rows)
    t = xp.asarray(temp) if T == "rows" else temp
    got = to_numpy(f("logsumexp", x, t))
    np.testing.assert_allclose(got, want_lse, rtol=8e-16, atol=0)
    got = to_numpy(f("log_softmax", x, t))
    fin = np.isfinite(want_lsm)
    np.testing.assert_allclose(got[fin], want_lsm[fin], rtol=8e-16, atol=0)
    assert (got[~fin] == -INF).all()
    # the quoted case, exactly
    assert float(to_numpy(f("logsumexp", xp.asarray([0.0, -40.0], dtype=xp.float64), 1.0))) == \
        math.log1p(math.exp(-40.0))
    assert float(to_numpy(f("log_softmax", xp.asarray([0.0, -40.0], dtype=xp.float64), 1.0))[0]) == \
        -math.log1p(math.exp(-40.0))


@pytest.mark.parametrize("T", _NEAR_ZERO_T)
def test_logsumexp_and_log_softmax_near_zero(xp, T):
    """The generic path on NumPy, the public call elsewhere (the fused path on torch)."""
    if tempscale._compat.is_numpy_namespace(xp):
        f = sm._generic  # the public call on NumPy is the native kernel's: see below
    else:
        def f(kind, x, t):
            return getattr(sm, kind)(x, t)
    _check_near_zero(f, xp, T)


@pytest.mark.parametrize("T", _NEAR_ZERO_T)
def test_logsumexp_and_log_softmax_near_zero_public_numpy_call(T):
    """The same through the public call on NumPy float64 arrays (the native kernel)."""
    import array_api_compat.numpy as xp

    _check_near_zero(lambda kind, x, t: getattr(sm, kind)(x, t), xp, T)


def test_logsumexp_near_zero_torch_fused_and_generic_agree_float32():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[0.0, -20.0, -30.0], [1.0, 1.0 - 17.0, -INF]], dtype=torch.float32)
    want = exact(x.double().numpy(), 1.0, "logsumexp")
    for got in (logsumexp(x), sm._generic("logsumexp", x, 1.0)):
        np.testing.assert_allclose(got.double().numpy(), want, rtol=2e-7)
    # the fused path keeps gradients: d logsumexp / dx = softmax
    xr = x.double().requires_grad_(True)
    (g,) = torch.autograd.grad(logsumexp(xr).sum(), xr)
    torch.testing.assert_close(g, softmax(xr.detach()), rtol=1e-14, atol=1e-300)
    (g,) = torch.autograd.grad(log_softmax(xr)[:, 0].sum(), xr)
    p = softmax(xr.detach())
    expect = -p
    expect[:, 0] += 1
    torch.testing.assert_close(g, expect, rtol=1e-14, atol=2e-16)


def test_entropy_of_near_one_hot_rows_is_exact():
    # H = -sum p log p with p_1 = 1/(1 + e^-40): the max entry's -log p_1 = log1p(e^-40)
    x = np.array([[0.0, -40.0], [0.0, -60.0]])
    for row, h in zip(x, entropy(x), strict=True):
        with mpmath.workdps(60):
            p, lp, _ = exact_row(row, 1.0)
            want = -mpmath.fsum(a * b for a, b in zip(p, lp, strict=True))
        assert abs(h - float(want)) <= 4e-16 * float(want)
    with sm_generic():
        for row, h in zip(x, entropy(x), strict=True):
            with mpmath.workdps(60):
                p, lp, _ = exact_row(row, 1.0)
                want = -mpmath.fsum(a * b for a, b in zip(p, lp, strict=True))
            assert abs(h - float(want)) <= 4e-16 * float(want)


def sm_generic():
    """Context manager: the native kernel and the fused torch path off (the generic path)."""
    return tempscale._config.config(native=False, torch_fused=False)


def _err(got, want):
    return abs(mpmath.mpf(float(got)) - want)


def _slack(want, row):
    """2 ulp of the result, plus half an ulp of the row's max where ``m + T log s`` cancels
    (neither SciPy's form nor ours avoids that one; with the max at 0 it is nothing)."""
    m = float(np.max(row))
    return 2 * np.spacing(abs(float(want))) + (np.spacing(abs(m)) if m != 0 else 0.0)


_row = st.lists(st.floats(-800, 0, allow_nan=False), min_size=1, max_size=7)


@settings(max_examples=120, deadline=None)
@given(_row, st.floats(-1e3, 1e3), st.sampled_from([1.0, 1.0, 0.3, 2.0, 1e-3, 40.0]),
       st.integers(1, 3))
def test_logsumexp_at_least_as_exact_as_scipy(rest, shift, T, k):
    """Against mpmath: never worse than SciPy's logsumexp (of x/T, times T) beyond 2 ulp."""
    row = np.array([0.0] * k + rest) + shift
    with mpmath.workdps(80):
        want = exact_row(row, T)[2]
        scipy_val = T * scipy.special.logsumexp(row / T) if T != 1.0 else \
            scipy.special.logsumexp(row)
        bound = _err(scipy_val, want) + _slack(want, row)
        with sm_generic():
            assert _err(logsumexp(row, T), want) <= bound
        torch = pytest.importorskip("torch")
        assert _err(logsumexp(torch.asarray(row), T).item(), want) <= bound  # the fused path


@settings(max_examples=120, deadline=None)
@given(_row, st.floats(-1e3, 1e3), st.sampled_from([1.0, 1.0, 0.3, 2.0, 1e-3, 40.0]),
       st.integers(1, 3))
def test_logsumexp_at_least_as_exact_as_scipy_public_numpy_call(rest, shift, T, k):
    """The same through the public call on NumPy (the native kernel)."""
    row = np.array([0.0] * k + rest) + shift
    with mpmath.workdps(80):
        want = exact_row(row, T)[2]
        scipy_val = T * scipy.special.logsumexp(row / T) if T != 1.0 else \
            scipy.special.logsumexp(row)
        assert _err(logsumexp(row, T), want) <= _err(scipy_val, want) + _slack(want, row)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-60, -20, allow_nan=False), min_size=1, max_size=5),
       st.sampled_from([1.0, 0.5, 2.0]))
def test_near_zero_logsumexp_relative_error(rest, T):
    """A result close to 0 (the max at 0, the rest far below) keeps its relative precision."""
    row = np.array([0.0] + rest)
    want = float(exact_row(row, T)[2])
    got = sm._generic("logsumexp", row, T)
    assert abs(got - want) <= 1e-15 * want
    got = sm._generic("log_softmax", row, T)[0]
    assert abs(got + want / T) <= 1e-15 * want / T


# ------------------------------------------------------------------------------------------
# 8. array temperatures are not narrowed before the division
# ------------------------------------------------------------------------------------------
def _ulp_error(got, want, dtype):
    """Largest error in units of the output dtype's last place (entries above 1e-30)."""
    got = np.asarray(got, dtype=np.float64)
    sp = np.spacing(np.maximum(np.abs(want), np.finfo(dtype).smallest_normal).astype(dtype))
    keep = np.abs(want) > 1e-30
    return float((np.abs(got - want) / sp.astype(np.float64))[keep].max())


def _temperatures(T, rows):
    return {
        "python float": T,
        "np.float64": np.float64(T),
        "0-d float64": np.array(T, dtype=np.float64),
        "per-row float64": np.full(rows, T, dtype=np.float64),
        "per-row kept axis": np.full((rows, 1), T, dtype=np.float64),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("T", [0.01, 0.3, 7.7])
def test_numpy_array_temperature_keeps_its_precision(dtype, T):
    rng = np.random.default_rng(8)
    x = (rng.normal(size=(32, 24)) * 3).astype(dtype)
    for kind in ("softmax", "log_softmax"):
        want = sm._generic(kind, x.astype(np.float64), T)  # x exactly, T exactly, float64
        for path, f in (("generic", lambda t, kind=kind: sm._generic(kind, x, t)),
                        ("public", lambda t, kind=kind: getattr(sm, kind)(x, t))):
            errs = {n: _ulp_error(f(t), want, dtype) for n, t in _temperatures(T, 32).items()}
            assert max(errs.values()) <= max(errs["python float"], 1.5), (kind, path, errs)


def test_torch_and_jax_float64_temperature_with_float32_logits():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(16, 20)) * 3).astype(np.float32)
    T = 0.01
    want = sm._generic("softmax", x.astype(np.float64), T)
    for t in (torch.tensor(T, dtype=torch.float64), torch.full((16,), T, dtype=torch.float64),
              torch.full((16, 1), T, dtype=torch.float64)):
        got = softmax(torch.asarray(x), t)
        assert got.dtype == torch.float32
        assert _ulp_error(got.numpy(), want, np.float32) <= 1.0
        # learnable (generic path) as well
        got = softmax(torch.asarray(x), t.clone().requires_grad_(True))
        assert _ulp_error(got.detach().numpy(), want, np.float32) <= 1.0
    for t in (jnp.asarray(T, dtype=jnp.float64), jnp.full((16,), T, dtype=jnp.float64)):
        got = softmax(jnp.asarray(x), t)
        assert got.dtype == jnp.float32
        assert _ulp_error(np.asarray(got), want, np.float32) <= 1.0
    # logsumexp too (its result's scale is the logits')
    want_l = sm._generic("logsumexp", x.astype(np.float64), T)
    got_l = logsumexp(torch.asarray(x), torch.tensor(T, dtype=torch.float64))
    assert _ulp_error(got_l.numpy(), want_l, np.float32) <= 1.0


def test_integer_temperature_array_is_exact():
    x = np.array([[0.0, 1.0e9, 1.5e9]], dtype=np.float32)
    t = np.array([16777217])  # not a float32: rounding it moves p[1] by 30 ulp
    want = sm._generic("softmax", x.astype(np.float64), 16777217.0)
    for T in (t, t[:, None], np.int64(16777217), 16777217):
        assert _ulp_error(sm._generic("softmax", x, T), want, np.float32) <= 1.0


# ------------------------------------------------------------------------------------------
# 9. masks and per-row temperatures broadcast TO x's shape
# ------------------------------------------------------------------------------------------
_MASK_FUNCS = [
    ("softmax", lambda x, **kw: softmax(x, **kw)),
    ("log_softmax", lambda x, **kw: log_softmax(x, **kw)),
    ("logsumexp", lambda x, **kw: logsumexp(x, **kw)),
    ("entropy", lambda x, **kw: entropy(x, **kw)),
    ("perplexity", lambda x, **kw: perplexity(x, **kw)),
]


@pytest.mark.parametrize("axis", [-1, None])
def test_mask_that_would_enlarge_the_output_is_refused(xp, axis):
    x = xp.asarray(np.zeros((1, 3)))
    big = xp.asarray(np.ones((4, 3), dtype=bool))
    for name, f in _MASK_FUNCS:
        with pytest.raises(ValueError, match=rf"'mask' parameter of {name} must be broadcastable "
                                             r"to the input's shape \(1, 3\).*\(4, 3\)"):
            f(x, mask=big, axis=axis)
    with pytest.raises(ValueError, match=r"'mask' parameter of solve_temperature.*\(4, 3\)"):
        solve_temperature(xp.asarray(np.array([[0.0, 1.0, 2.0]])), entropy=0.5, mask=big)
    # more dimensions than x, even of size 1: refused (broadcast_to semantics)
    with pytest.raises(ValueError, match=r"'mask' parameter of softmax.*\(1, 1, 3\)"):
        softmax(x, mask=xp.asarray(np.ones((1, 1, 3), dtype=bool)), axis=axis)
    # what broadcasts to x still works, and keeps x's shape
    ok = xp.asarray(np.array([True, False, True]))
    for _name, f in _MASK_FUNCS:
        f(x, mask=ok, axis=axis)
    got = softmax(x, mask=ok, axis=axis)
    assert tuple(got.shape) == (1, 3)
    np.testing.assert_allclose(to_numpy(got), [[0.5, 0.0, 0.5]])


def test_per_row_temperature_never_enlarges_the_output(xp):
    x = xp.asarray(np.zeros((1, 3)))
    for name, _f in _MASK_FUNCS[:3]:
        for T in (np.ones((4, 1)), np.ones(4), np.ones((2, 1, 1))):
            with pytest.raises(ValueError, match=rf"'temperature' parameter of {name}"):
                getattr(sm, name)(x, xp.asarray(T))
    with pytest.raises(ValueError, match=r"'temperature' parameter of entropy"):
        entropy(x, xp.asarray(np.ones(4)))
    with pytest.raises(ValueError, match=r"'temperature' parameter of temper"):
        temper(xp.asarray(np.ones((1, 3))), xp.asarray(np.ones(4)))
    with pytest.raises(ValueError, match=r"'entropy' parameter of solve_temperature"):
        solve_temperature(xp.asarray(np.array([[0.0, 1.0]])), entropy=xp.asarray(np.ones(4)))


# ------------------------------------------------------------------------------------------
# 16. pandas and array-likes
# ------------------------------------------------------------------------------------------
class ArrayLike:
    """Not an array-API array, but NumPy can read it."""

    def __init__(self, data):
        self.data = np.asarray(data)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)


def test_pandas_and_array_likes_are_read_as_numpy():
    pd = pytest.importorskip("pandas")
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]])
    df = pd.DataFrame(z, columns=["a", "b", "c"])
    for obj in (df, ArrayLike(z)):
        np.testing.assert_allclose(softmax(obj, 0.5), softmax(z, 0.5), rtol=1e-15)
        assert isinstance(softmax(obj), np.ndarray)
        np.testing.assert_allclose(log_softmax(obj, 2.0), log_softmax(z, 2.0), rtol=1e-15)
        np.testing.assert_allclose(logsumexp(obj, 0.7), logsumexp(z, 0.7), rtol=1e-15)
        np.testing.assert_allclose(entropy(obj), entropy(z), rtol=1e-15)
        np.testing.assert_allclose(perplexity(obj), perplexity(z), rtol=1e-15)
        np.testing.assert_allclose(solve_temperature(obj, entropy=0.5),
                                   solve_temperature(z, entropy=0.5), rtol=1e-12)
        np.testing.assert_allclose(temper(ArrayLike(softmax(z)), 2.0),
                                   temper(softmax(z), 2.0), rtol=1e-15)
    s = pd.Series([1.0, 2.0, 3.0])
    np.testing.assert_allclose(softmax(s), softmax(np.array([1.0, 2.0, 3.0])), rtol=1e-15)
    # per-row temperatures and masks as pandas objects too
    T = pd.Series([0.5, 2.0])
    np.testing.assert_allclose(softmax(df, T), softmax(z, np.array([0.5, 2.0])), rtol=1e-15)
    mask = pd.DataFrame(np.array([[True, False, True], [True, True, False]]))
    np.testing.assert_allclose(softmax(df, mask=mask), softmax(z, mask=mask.to_numpy()), rtol=1e-15)
    # a torch tensor stays a tensor
    torch = pytest.importorskip("torch")
    assert isinstance(softmax(torch.asarray(z)), torch.Tensor)


def test_object_arrays_are_refused_clearly():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(TypeError, match=r"'x' parameter of softmax must be an array of numbers.*"
                                        r"DataFrame of dtype object"):
        softmax(df)
    with pytest.raises(TypeError, match=r"of entropy must be an array of numbers"):
        entropy(df)
    with pytest.raises(TypeError, match=r"of log_softmax must be an array of numbers"):
        log_softmax(ArrayLike(np.array([1, None], dtype=object)))
    with pytest.raises(TypeError, match=r"of softmax must be an array of numbers"):
        softmax([1.0, None])
    with pytest.raises(TypeError, match=r"'mask' parameter of softmax must be an array of numbers"):
        softmax(np.ones(2), mask=pd.Series([True, None]))
    with pytest.raises(TypeError, match=r"'temperature' parameter of logsumexp must be an array of"):
        logsumexp(np.ones((2, 2)), pd.Series([1.0, "a"]))


# ------------------------------------------------------------------------------------------
# temperatures beyond [1e-30, 1e30], logits at the dtype's extremes, every backend
# ------------------------------------------------------------------------------------------
def _extreme_rows(fmax):
    return np.array([[-fmax, fmax, 0.0], [fmax, fmax / 2, -fmax], [-fmax, -fmax / 2, -fmax],
                     [1.0, 2.0, 2.0], [1e-310 if fmax > 1e300 else 1e-40, 0.0, -1.0]])


@pytest.mark.parametrize("T", [5e-324, 1e-310, 1e-300, 1e-40, 1e-30, 0.7, 1e30, 1e38, 1e300,
                               1.7e308, F64_MAX, INF])
def test_extreme_temperatures_and_logits(xp, T, generic_path):
    for dt_name in ("float64", "float32"):
        dt = getattr(xp, dt_name)
        fmax = F64_MAX if dt_name == "float64" else F32_MAX
        rows = _extreme_rows(fmax).astype(dt_name)
        if tempscale._compat.is_jax_namespace(xp):
            rows = rows[:4]  # XLA's CPU backend flushes subnormal logits (row 4) to zero
        x = xp.asarray(rows, dtype=dt)
        rows64 = rows.astype(np.float64)
        for t in (T, xp.asarray(np.full(rows.shape[0], T)) if T <= fmax else T):
            p = to_numpy(softmax(x, t)).astype(np.float64)
            lp = to_numpy(log_softmax(x, t)).astype(np.float64)
            lse = to_numpy(logsumexp(x, t)).astype(np.float64)
            assert not np.isnan(p).any() and not np.isnan(lp).any() and not np.isnan(lse).any()
            np.testing.assert_allclose(p.sum(-1), 1.0, rtol=3e-6)
            if T == INF:
                np.testing.assert_allclose(p, np.full(rows.shape, 1 / 3), rtol=1e-7)
                continue
            # the T -> 0 limit where every gap over T overflows; the exact value elsewhere
            want_p = exact(rows64, min(float(T), F64_MAX), "softmax")
            tol = 1e-12 if dt_name == "float64" else 3e-6
            np.testing.assert_allclose(p, want_p, rtol=tol, atol=tol)
            want_l = exact(rows64, min(float(T), F64_MAX), "logsumexp")
            with np.errstate(over="ignore"):
                want_l = want_l.astype(dt_name).astype(np.float64)
            np.testing.assert_allclose(lse, want_l, rtol=tol, atol=0)


def test_huge_python_int_temperature_is_the_infinite_limit():
    np.testing.assert_array_equal(softmax(np.array([1.0, 5.0]), 10 ** 400), [0.5, 0.5])
    with pytest.raises(ValueError, match="'temperature' parameter of softmax"):
        softmax(np.array([1.0, 5.0]), -10 ** 400)
    with pytest.raises(TypeError, match="'temperature' parameter of softmax"):
        softmax(np.array([1.0, 5.0]), True)


def test_torch_fused_tensor_temperature_subnormal_and_huge():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.0, 2.0, 2.0, -1.0], [-F64_MAX, F64_MAX, 0.0, 1.0]], dtype=torch.float64)
    for T in (5e-324, 1e-310, 1e300, F64_MAX):
        t = torch.full((2,), T, dtype=torch.float64)
        for kind in ("softmax", "log_softmax", "logsumexp"):
            got = getattr(sm, kind)(x, t)
            gen = sm._generic(kind, x, t)
            assert not torch.isnan(got).any(), (kind, T)
            torch.testing.assert_close(got, gen, rtol=1e-13, atol=0)


def test_solve_temperature_tiny_solution_has_no_nan():
    # the Newton step's c/T overflows to -inf on the far entry: 0 * -inf must not appear
    x = np.array([[0.0, -1e-300, -1e5]])
    T = solve_temperature(x, entropy=0.3)
    assert np.isfinite(T).all() and T[0] > 0
    np.testing.assert_allclose(entropy(x, T[:, None]), [0.3], rtol=1e-9)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("T", [3.5e38, 1e39, 1e300, 1.7e308])
def test_torch_float32_temperature_beyond_the_dtype_max(kind, T):
    """A Python-float T above float32's max on a float32 tensor: the limit, never NaN."""
    torch = pytest.importorskip("torch")
    import tempscale as ts

    x = torch.tensor([[1.0, -math.inf, 2.0], [-math.inf, -math.inf, -math.inf]])
    got = getattr(ts, kind)(x, T).numpy()
    want = getattr(ts, kind)(x.double().numpy(), T)  # float64 NumPy: T representable
    with np.errstate(over="ignore"):  # logsumexp ~ T log 2 rounds to inf in float32
        want = want.astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert not np.isnan(got).any()


@pytest.mark.parametrize("lib", ["numpy-native", "numpy-generic", "torch"])
def test_logsumexp_whose_scaled_log_overflows_alone(lib):
    """m + T log s where T log s overflows but the sum does not (m < 0, T near the max)."""
    import tempscale as ts
    from tempscale._softmax import _generic

    M = np.finfo(np.float64).max
    row = np.array([[-M, -M, -M / 2, -M]])
    # exact: m + T log(1 + 3 e^{-1/2}) with m = -M/2, T = M
    want = float(-mpmath.mpf(M) / 2 + mpmath.mpf(M) * mpmath.log(1 + 3 * mpmath.exp(-0.5)))
    if lib == "numpy-native":
        got = ts.logsumexp(row, M)
    elif lib == "numpy-generic":
        got = _generic("logsumexp", row, M)
    else:
        torch = pytest.importorskip("torch")
        got = ts.logsumexp(torch.asarray(row), M).numpy()
    np.testing.assert_allclose(got, [want], rtol=1e-15)
