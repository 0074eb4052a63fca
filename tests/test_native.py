"""Tests of the compiled kernels (tempscale._native) against independent references.

* accuracy: float32 probabilities within 4 ulp of an extended-precision reference (entries
  >= 1e-30), log_softmax / logsumexp within 1e-6 abs + rel, float64 within 1e-13 relative;
* the contract's edge cases (T = 0 / inf, masks, -inf / +inf / NaN rows) equal to the generic
  Array-API path and to the reference, on every instruction set this CPU supports;
* layouts: every axis, non-contiguous, negative strides, read-only, unaligned, empty, float16;
* per-row temperatures, broadcast masks, several Python threads at once, fork, settings.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from tempscale import _native

pytestmark = pytest.mark.skipif(
    not _native.available() and os.environ.get("TEMPSCALE_REQUIRE_NATIVE") != "1",
    reason="native kernels not built (python setup.py build_ext --inplace)",
)

if _native.available():
    from tempscale._native import _tskernels as _K

    ISAS = list(_K.supported_isas())
else:  # pragma: no cover
    ISAS = []

KINDS = ("softmax", "log_softmax", "logsumexp")
INF, NAN = math.inf, math.nan
F32_ULP_BOUND = 4.0   # stated bound: |p - ref| <= 4 ulp(ref) for ref >= 1e-30 (measured <= 2)
F64_REL_BOUND = 1e-13


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test on each instruction set this CPU supports (avx512f / avx2 / baseline)."""
    _K.set_isa(request.param)
    try:
        yield request.param
    finally:
        _K.set_isa("best")


# ---------------------------------------------------------------------------------------------
# an independent reference: row by row, extended precision, every contract case spelled out
# ---------------------------------------------------------------------------------------------
def _ref_row(kind, r, t):
    if np.isnan(r).any():
        return NAN if kind == "logsumexp" else np.full(r.shape, NAN)
    valid = r > -INF
    if not valid.any():
        if kind == "logsumexp":
            return -INF
        return np.zeros(r.shape) if kind == "softmax" else np.full(r.shape, -INF)
    m = r[valid].max()
    if m == INF or t == 0 or t == INF:
        on = (r == m) if (m == INF or t == 0) else valid
        cnt = on.sum()
        if kind == "logsumexp":
            return m if (m == INF or t == 0 or cnt == 1) else INF
        if kind == "softmax":
            return np.where(on, 1.0 / cnt, 0.0)
        return np.where(on, -np.log(np.longdouble(cnt)), -INF)
    y = (r - m) / np.longdouble(t)
    e = np.exp(y)
    s = e.sum()
    if kind == "softmax":
        return e / s
    # log s = log(k) + log1p(rest / k) for k maxima: log(s) alone would round 1 + 1e-40 to 1
    top = r == m
    k = np.longdouble(top.sum())
    log_s = np.log(k) + np.log1p(e[~top].sum() / k)
    if kind == "log_softmax":
        return y - log_s
    return m + np.longdouble(t) * log_s


def reference(kind, x, T=1.0, axis=-1, mask=None):
    """Extended-precision reference of the contract (returns longdouble / float arrays)."""
    with np.errstate(all="ignore"):
        xl = np.asarray(x).astype(np.longdouble)
        if mask is not None:
            xl = np.where(np.broadcast_to(mask, xl.shape), xl, -INF)
        axis = axis % xl.ndim
        kshape = xl.shape[:axis] + (1,) + xl.shape[axis + 1:]
        Tb = np.broadcast_to(np.asarray(T, dtype=np.float64), kshape)
        xm = np.moveaxis(xl, axis, -1)
        Tm = np.moveaxis(Tb, axis, -1)[..., 0]
        if kind == "logsumexp":
            out = np.empty(xm.shape[:-1], dtype=np.longdouble)
        else:
            out = np.empty(xm.shape, dtype=np.longdouble)
        for idx in np.ndindex(xm.shape[:-1]):
            out[idx] = _ref_row(kind, xm[idx], float(Tm[idx]))
        return out if kind == "logsumexp" else np.moveaxis(out, -1, axis)


def native(kind, x, T=1.0, axis=-1, mask=None, out_dtype=None):
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    axis = axis % x.ndim
    if isinstance(T, np.ndarray) and T.ndim == x.ndim - 1:
        T = np.expand_dims(T, axis)
    r = _native.try_compute(kind, x, T, axis, mask, np.dtype(out_dtype or x.dtype))
    assert r is not None
    return r


def assert_f32_ulp(p, ref, bound=F32_ULP_BOUND):
    p = np.asarray(p, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    sel = ref >= 1e-30
    ulp = np.spacing(ref[sel].astype(np.float32)).astype(np.float64)
    err = np.abs(p[sel] - ref[sel]) / ulp
    assert err.size == 0 or err.max() <= bound, f"max error {err.max():.2f} ulp"
    # entries below 1e-30: absolute error far below the smallest tested probability
    assert np.all(np.abs(p[~sel] - ref[~sel]) <= 1e-37 + 4 * np.abs(ref[~sel]) * 2.0**-23)


def assert_contract_equal(got, want, rtol, atol=None):
    """Same NaN / inf pattern, exact zeros where the reference is exactly 0, finite values
    within rtol (plus an absolute slack at the bottom of the output dtype's range)."""
    got = np.asarray(got)
    sub = float(np.finfo(got.dtype).smallest_subnormal) if got.dtype.kind == "f" else 0.0
    tiny = 4 * float(np.finfo(got.dtype).tiny) if got.dtype.kind == "f" else 0.0
    with np.errstate(over="ignore"):
        want_exact = np.asarray(want)
        want = want_exact.astype(got.dtype).astype(np.float64)
        got = got.astype(np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    # exact zeros where the reference is 0 (masked entries, underflow), up to the output dtype's
    # smallest subnormal: a probability whose exact value is just under half of it may round up
    # to it after the float pipeline's two roundings (measured: 6.98e-46 -> 1.4e-45 in float32)
    assert np.all(np.abs(got[want_exact == 0]) <= sub)
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=tiny if atol is None else atol)


# ---------------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------------
SHAPES = [(3, 1), (5, 2), (17, 3), (40, 10), (9, 15), (33, 16), (21, 17), (19, 47), (7, 48),
          (5, 49), (6, 100), (3, 1000), (2, 4097), (1, 40000)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("T", [1e-3, 0.7, 1.0, 25.0])
def test_float32_softmax_within_4_ulp(isa, shape, T):
    rng = np.random.default_rng(hash((shape, T)) % 2**32)
    x = (rng.standard_normal(shape) * 8).astype(np.float32)
    assert_f32_ulp(native("softmax", x, T), reference("softmax", x, T))


@pytest.mark.parametrize("shape", [(40, 10), (19, 47), (6, 100), (2, 4097)])
@pytest.mark.parametrize("T", [1e-30, 1e-6, 3.0, 1e30])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e30, 3e38])
def test_float32_extreme_magnitudes(isa, shape, T, scale):
    rng = np.random.default_rng(7)
    x = np.clip(rng.standard_normal(shape) * scale, -3.4e38, 3.4e38).astype(np.float32)
    x[0, 0] = np.float32(3.4028235e38) if scale > 1e30 else x[0, 0]
    x[-1, -1] = -np.float32(3.4028235e38) if scale > 1e30 else x[-1, -1]
    for kind in KINDS:
        got = native(kind, x, T)
        assert not np.isnan(got).any(), kind
    p = native("softmax", x, T)
    assert_f32_ulp(p, reference("softmax", x, T))
    ls = native("log_softmax", x, T)
    ref = reference("log_softmax", x, T).astype(np.float64)
    fin = np.isfinite(ref) & (np.abs(ref) < 1e38)
    np.testing.assert_allclose(ls[fin], ref[fin], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_float32_log_softmax_and_logsumexp(isa, shape):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 30).astype(np.float32)
    for T in (0.05, 0.7, 40.0):
        np.testing.assert_allclose(native("log_softmax", x, T), reference("log_softmax", x, T)
                                   .astype(np.float64), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(native("logsumexp", x, T), reference("logsumexp", x, T)
                                   .astype(np.float64), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_float64_accuracy(isa, shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape) * 10
    for T in (0.01, 0.7, 50.0):
        p = native("softmax", x, T)
        ref = reference("softmax", x, T).astype(np.float64)
        sel = ref >= 1e-30
        assert np.all(np.abs(p[sel] - ref[sel]) <= F64_REL_BOUND * ref[sel])
        np.testing.assert_allclose(native("log_softmax", x, T),
                                   reference("log_softmax", x, T).astype(np.float64),
                                   rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(native("logsumexp", x, T),
                                   reference("logsumexp", x, T).astype(np.float64),
                                   rtol=1e-14, atol=1e-14)


def test_float64_extreme_magnitudes(isa):
    big = np.finfo(np.float64).max
    x = np.array([[big, -big, 0.0, big / 3], [-big, -big / 2, -big, -1.0]] * 5)
    x = np.concatenate([x] * 30, axis=1)  # 120 wide, and a 4-wide narrow copy below
    for xx in (x, x[:, :4]):
        for T in (1e-30, 1.0, 1e30):
            for kind in KINDS:
                got = native(kind, xx, T)
                assert not np.isnan(got).any()
                assert_contract_equal(got, reference(kind, xx, T), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# the contract's edge cases
# ---------------------------------------------------------------------------------------------
EDGE_ROWS = [
    [1.0, 3.0, 3.0, 2.0],              # ties (T = 0 splits)
    [-INF, -INF, -INF, -INF],          # fully masked
    [-INF, 2.0, -INF, 1.0],            # partly masked
    [INF, 1.0, INF, -INF],             # +inf shares the mass
    [INF, 1.0, 2.0, 0.0],              # single +inf
    [NAN, 1.0, 2.0, 3.0],              # NaN row
    [NAN, INF, -INF, 1.0],             # NaN beats +inf
    [-INF, -INF, 5.0, -INF],           # single unmasked
    [0.0, 0.0, 0.0, 0.0],              # uniform
    [-1e30, 1e30, 0.0, -3.0],          # spread
]


def _edge_array(width, dtype):
    """EDGE_ROWS padded with -inf to ``width`` columns (so narrow and wide paths both see them)."""
    rows = np.full((len(EDGE_ROWS), width), -INF)
    rows[:, :4] = np.array(EDGE_ROWS)
    if width > 4:  # a few finite fillers for the rows that are not all-masked
        rng = np.random.default_rng(0)
        fill = rng.standard_normal((len(EDGE_ROWS), width - 4))
        keep = ~np.isnan(rows[:, :4]).any(1) & (rows[:, :4] > -INF).any(1)
        rows[keep, 4:] = fill[keep] - 50
    with np.errstate(over="ignore"):
        return rows.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [4, 20, 64, 300])
@pytest.mark.parametrize("T", [0.0, INF, 1e-30, 0.5, 1e30])
@pytest.mark.parametrize("kind", KINDS)
def test_contract_edge_rows(isa, dtype, width, T, kind):
    x = _edge_array(width, dtype)
    got = native(kind, x, T)
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    assert_contract_equal(got, reference(kind, x, T), rtol=rtol)


@pytest.mark.parametrize("width", [1, 3, 4, 10, 16, 17])
@pytest.mark.parametrize("T", [0.0, INF, 0.5])
def test_contract_edge_rows_in_full_blocks(isa, width, T):
    """Edge rows inside full 16-row blocks (the register-resident narrow kernel)."""
    rng = np.random.default_rng(15)
    x = np.tile(_edge_array(max(width, 4), np.float32)[:, :width], (5, 1))  # 50 rows
    x = x[rng.permutation(len(x))]
    x[::7] = rng.standard_normal((len(x[::7]), width)).astype(np.float32)
    for kind in KINDS:
        assert_contract_equal(native(kind, x, T), reference(kind, x, T), rtol=2e-6)


def _generic():
    mod = pytest.importorskip("tempscale._softmax")
    gen = getattr(mod, "_generic", None)
    if gen is None:
        pytest.skip("tempscale._softmax._generic not available")
    return gen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [4, 64])
@pytest.mark.parametrize("T", [0.0, INF, 0.5, 1e30])
@pytest.mark.parametrize("kind", KINDS)
def test_contract_matches_generic_path(dtype, width, T, kind):
    generic = _generic()
    x = _edge_array(width, dtype)
    got = native(kind, x, T)
    want = generic(kind, x, T)
    assert got.dtype == want.dtype
    assert_contract_equal(got, want, rtol=2e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_public_api_uses_native_and_matches_generic(kind):
    import tempscale

    generic = _generic()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 70)).astype(np.float32)
    mask = rng.random((50, 70)) > 0.2
    T = rng.uniform(0.1, 3, size=50).astype(np.float32)
    func = getattr(tempscale, kind)
    got = func(x, T, mask=mask)
    np.testing.assert_array_equal(got, native(kind, x, T, mask=mask))
    np.testing.assert_allclose(got, generic(kind, x, T, mask=mask), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_masks_and_per_row_temperature(isa, kind):
    rng = np.random.default_rng(5)
    for shape in [(30, 7), (9, 200)]:
        x = rng.standard_normal(shape).astype(np.float32) * 4
        x[0, 1] = NAN  # masked away below: must not poison the row
        mask = rng.random(shape) > 0.3
        mask[0, 1] = False
        mask[1] = False  # fully masked row
        T = rng.uniform(0.05, 5.0, size=shape[0]).astype(np.float32)
        T[2] = 0.0
        T[3] = INF
        got = native(kind, x, T, mask=mask)
        assert_contract_equal(got, reference(kind, x, T[:, None], mask=mask), rtol=2e-6)
        # broadcast mask over the rows, float64 per-row T of the keepdims shape
        m1 = mask[5]
        got = native(kind, x, T[:, None].astype(np.float64), mask=m1)
        assert_contract_equal(got, reference(kind, x, T[:, None], mask=m1), rtol=2e-6)


# ---------------------------------------------------------------------------------------------
# layouts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_axis_and_strided_layouts(isa, kind, dtype):
    rng = np.random.default_rng(6)
    base = (rng.standard_normal((6, 70, 9, 5)) * 3).astype(dtype)
    views = {
        "contiguous": base,
        "fortran": np.asfortranarray(base),
        "step": base[::2, ::3, :, ::-1],
        "negative": base[::-1, ::-1, ::-2],
        "transposed": base.transpose(2, 0, 3, 1),
    }
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    for name, v in views.items():
        for axis in range(v.ndim):
            got = native(kind, v, 0.6, axis=axis)
            want = reference(kind, v, 0.6, axis=axis)
            assert got.shape == want.shape, name
            assert_contract_equal(got, want, rtol=rtol, atol=rtol)


def test_read_only_and_unaligned(isa):
    rng = np.random.default_rng(8)
    for n in (7, 300):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((11, n)).astype(dtype)
            ro = x.copy()
            ro.flags.writeable = False
            buf = np.zeros(x.nbytes + 1, dtype=np.uint8)
            un = buf[1:].view(dtype).reshape(x.shape)
            un[...] = x
            assert not un.flags.aligned
            want = native("softmax", x, 0.9)
            for v in (ro, un):
                for kind in KINDS:
                    np.testing.assert_array_equal(native(kind, v, 0.9), native(kind, x, 0.9))
            np.testing.assert_array_equal(native("softmax", ro, 0.9), want)


def test_empty_arrays():
    for shape, axis in [((0, 5), 1), ((5, 0), 1), ((0, 0), 0), ((3, 0, 2), 1), ((0,), 0)]:
        x = np.zeros(shape, dtype=np.float32)
        for kind in KINDS:
            got = native(kind, x, 0.5, axis=axis)
            want = reference(kind, x, 0.5, axis=axis)
            assert got.shape == want.shape
            assert_contract_equal(got, want, rtol=0)
    lse = native("logsumexp", np.zeros((4, 0)), np.ones((4, 1)), axis=1)
    np.testing.assert_array_equal(lse, np.full(4, -INF))


@pytest.mark.parametrize("n", [5, 90])
def test_float16_in_and_out(isa, n):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((13, n)) * 3).astype(np.float16)
    x[0, 0] = np.float16(65504)
    x[1, :] = -np.inf
    for kind in KINDS:
        got = native(kind, x, 0.8)
        assert got.dtype == np.float16
        assert_contract_equal(got, reference(kind, x, 0.8), rtol=2e-3, atol=1e-7)
    # float32 compute, float16 result
    x32 = x.astype(np.float32)
    got = native("softmax", x32, 0.8, out_dtype=np.float16)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float64), reference("softmax", x32, 0.8)
                               .astype(np.float64), rtol=1e-3, atol=1e-7)


def test_unhandled_cases_return_none():
    x = np.ones((2, 3), dtype=np.float32)
    assert _native.try_compute("softmax", x.astype(np.int64), 1.0, 1, None, np.float64) is None
    assert _native.try_compute("softmax", x.astype(">f4"), 1.0, 1, None, np.float32) is None
    assert _native.try_compute("softmax", x, 1.0, 1, None, np.float64) is None
    assert _native.try_compute("softmax", x, 1.0, 1, None, np.complex64) is None
    assert _native.try_compute("entropy", x, 1.0, 1, None, np.float32) is None
    assert _native.try_compute("softmax", x.tolist(), 1.0, 1, None, np.float32) is None
    assert _native.try_compute("softmax", np.float32(1.0).reshape(()), 1.0, 0, None,
                               np.float32) is None
    assert _native.try_compute("softmax", x, 1.0, 1, x.astype(np.int8), np.float32) is None


# ---------------------------------------------------------------------------------------------
# threads, settings
# ---------------------------------------------------------------------------------------------
def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(10)
    for shape in [(3000, 10), (100, 5000)]:
        x = rng.standard_normal(shape).astype(np.float32)
        old = _native.set_num_threads(1)
        try:
            one = native("softmax", x, 0.7)
            _native.set_num_threads(4)
            four = native("softmax", x, 0.7)
        finally:
            _native.set_num_threads(old)
        np.testing.assert_array_equal(one, four)


def test_concurrent_python_threads():
    rng = np.random.default_rng(11)
    xs = [rng.standard_normal((2000 + 7 * i, 40 + 50 * (i % 3))).astype(np.float32) for i in range(8)]
    want = [native("softmax", x, 0.5) for x in xs]
    errors = []

    def work(i):
        try:
            for _ in range(5):
                np.testing.assert_array_equal(native("softmax", xs[i], 0.5), want[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_set_num_threads_validates_and_returns_previous():
    old = _native.get_num_threads()
    assert _native.set_num_threads(3) == old
    assert _native.get_num_threads() == 3
    _native.set_num_threads(old)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="'n' parameter of set_num_threads"):
            _native.set_num_threads(bad)


def test_show_config(capsys):
    cfg = _native.show_config()
    out = capsys.readouterr().out
    assert cfg["native"] is True
    assert cfg["isa"] in ("avx512f", "avx2", "baseline")
    assert cfg["isa"] == cfg["supported_isas"][0]
    assert cfg["num_threads"] == _native.get_num_threads()
    assert "isa" in out and cfg["isa"] in out
    quiet = _native.show_config(print_out=False)
    assert quiet["isa"] == cfg["isa"]


def _run(code, **env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=e,
                          capture_output=True, text=True, timeout=120)


def test_environment_thread_count_and_default():
    r = _run("from tempscale import _native; print(_native.get_num_threads())",
             TEMPSCALE_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"
    e = dict(os.environ)
    e.pop("TEMPSCALE_NUM_THREADS", None)
    r = subprocess.run([sys.executable, "-c", "import os; from tempscale import _native; "
                        "print(_native.get_num_threads(), len(os.sched_getaffinity(0)))"],
                       env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    a, b = r.stdout.split()
    assert a == b
    # an unusable value warns once and keeps the default (never an import-time traceback);
    # tests/test_native_hardening.py covers every variable and value class
    r = _run("import os; from tempscale import _native; "
             "print(_native.get_num_threads(), len(os.sched_getaffinity(0)))",
             TEMPSCALE_NUM_THREADS="zero")
    assert r.returncode == 0, r.stderr
    a, b = r.stdout.split()
    assert a == b
    assert "TEMPSCALE_NUM_THREADS" in r.stderr and "RuntimeWarning" in r.stderr


def test_require_native_raises_when_extension_missing():
    code = """
        import sys
        sys.modules["tempscale._native._tskernels"] = None   # simulate a missing extension
        try:
            import tempscale._native
        except ImportError as exc:
            print("raised", "TEMPSCALE_REQUIRE_NATIVE" in str(exc))
        else:
            print("silent")
    """
    r = _run(code, TEMPSCALE_REQUIRE_NATIVE="1")
    assert r.stdout.strip() == "raised True", r.stderr
    r = _run(code.replace('print("silent")', 'print("silent", tempscale._native.available())'),
             TEMPSCALE_REQUIRE_NATIVE="0")
    assert r.stdout.strip() == "silent False", r.stderr


def test_threadpoolctl_limits_the_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not hasattr(threadpoolctl, "register"):
        pytest.skip("threadpoolctl < 3.5 has no custom controllers")
    assert _native.register_threadpoolctl()
    old = _native.set_num_threads(2)
    try:
        with threadpoolctl.threadpool_limits(limits=1, user_api="tempscale"):
            assert _native.get_num_threads() == 1
        assert _native.get_num_threads() == 2
        info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "tempscale"]
        assert info and info[0]["num_threads"] == 2
    finally:
        _native.set_num_threads(old)


BENCH_ONLY = pytest.mark.skipif(
    not (_native.available() and getattr(_K, "bench_kernels", 0)),
    reason="benchmark-only kernels not compiled in: rebuild with TEMPSCALE_BENCH_KERNELS=1 "
           "python setup.py build_ext --inplace (.ci/sanitize.sh does)")


@BENCH_ONLY
def test_streaming_store_path(isa):
    """The non-temporal-store variant (benchmark builds, off by default) computes the same values,
    and exp_pass (the benchmark's limit) is exp."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((7, 3001)).astype(np.float32)
    x[1, 5] = NAN
    x[2, :] = -INF
    want = native("softmax", x, 0.6)
    old = _K._set_stream_bytes(0)
    try:
        got = native("softmax", x, 0.6)
        lim = np.empty_like(x)
        _K.exp_pass(x, lim, 2)
    finally:
        _K._set_stream_bytes(old)
    np.testing.assert_array_max_ulp(got, want, maxulp=1)   # same math, FMA vs mul+add
    with np.errstate(all="ignore"):
        fin = np.isfinite(x)
        np.testing.assert_allclose(lim[fin], np.exp(x[fin].astype(np.float64)), rtol=4e-7)


def test_output_block_cache():
    x = np.random.default_rng(13).standard_normal((1000, 600)).astype(np.float32)  # 2.4 MB
    _native.release_memory()
    assert _K.cache_info()["blocks"] == 0
    a = native("softmax", x, 0.5)
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata
    want = a.copy()
    del a
    assert _K.cache_info()["blocks"] == 1
    assert _K.cache_info()["cached_bytes"] == x.nbytes
    b = native("softmax", x, 0.5)      # reuses the block
    assert _K.cache_info()["blocks"] == 0
    np.testing.assert_array_equal(b, want)
    c = native("softmax", x, 0.5)      # a second, distinct buffer
    assert not np.shares_memory(b, c)
    del b, c
    assert _K.cache_info()["blocks"] == 2
    _native.release_memory()
    assert _K.cache_info()["cached_bytes"] == 0
    old = _K.cache_info()["limit_bytes"]
    try:
        _native.set_cache_limit(0)
        d = native("softmax", x, 0.5)
        del d
        assert _K.cache_info()["blocks"] == 0
    finally:
        _native.set_cache_limit(old)
    with pytest.raises(ValueError, match="'nbytes' parameter of set_cache_limit"):
        _native.set_cache_limit(-1)
    r = _run("from tempscale import _native; print(_native.show_config(print_out=False)"
             "['output_cache']['limit_bytes'])", TEMPSCALE_CACHE_MB="3")
    assert r.stdout.strip() == str(3 * 2**20), r.stderr


def test_fork_after_pool_started():
    code = """
        import os, numpy as np
        from tempscale import _native
        x = np.random.default_rng(0).standard_normal((4000, 100)).astype(np.float32)
        _native.set_num_threads(2)
        a = _native.try_compute("softmax", x, 0.5, 1, None, np.float32)
        pid = os.fork()
        if pid == 0:
            b = _native.try_compute("softmax", x, 0.5, 1, None, np.float32)
            os._exit(0 if np.array_equal(a, b) else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """
    r = _run(code)
    assert r.stdout.strip() == "child 0", r.stderr


@pytest.mark.slow
def test_large_inputs_all_threads():
    rng = np.random.default_rng(12)
    for shape in [(200_000, 10), (16, 300_000)]:
        x = rng.standard_normal(shape).astype(np.float32)
        p = native("softmax", x, 0.7)
        np.testing.assert_allclose(p.sum(-1, dtype=np.float64), 1.0, rtol=2e-6)
        rows = [0, shape[0] // 2, shape[0] - 1]
        assert_f32_ulp(p[rows], reference("softmax", x[rows], 0.7))


# ---------------------------------------------------------------------------------------------
# the compiled core's build: sources, build flags, portability (issue 15)
# ---------------------------------------------------------------------------------------------
ROOT = pathlib.Path(__file__).resolve().parents[1]
NATIVE_DIR = ROOT / "src" / "tempscale" / "_native"
needs_sources = pytest.mark.skipif(not (ROOT / "setup.py").exists() or not NATIVE_DIR.is_dir(),
                                   reason="needs the source tree (setup.py, src/tempscale/_native)")
# Python-free translation units: what the C test harness (tests/c) builds
CORE_SOURCES = ["_dispatch.c", "_reference.c", "_job.c", "_pool.c"]


def _setup_extensions(every=False, **env):
    """setup.py's extension list (name, sources, depends, macros, compile flags) under ``env``,
    without building anything: the kernels' extension only, unless ``every``."""
    pytest.importorskip("setuptools", reason="setup.py needs setuptools (a build requirement)")
    code = textwrap.dedent("""
        import json, os, runpy, sys
        import setuptools
        os.chdir(sys.argv[1])
        setuptools.setup = lambda **kw: print(json.dumps(
            [[e.name, e.sources, e.depends, e.define_macros, e.extra_compile_args]
             for e in kw.get("ext_modules", [])]))
        runpy.run_path("setup.py", run_name="__main__")
    """)
    e = {k: v for k, v in os.environ.items() if not k.startswith("TEMPSCALE_")}
    e.update(env)
    r = subprocess.run([sys.executable, "-c", code, str(ROOT)], env=e, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    exts = json.loads(r.stdout.strip().splitlines()[-1])
    return exts if every else [e for e in exts if e[0].endswith("._tskernels")]


@needs_sources
def test_setup_lists_every_native_source_and_header():
    """The split into one-concern files is complete: setup.py compiles every .c file of
    _native and rebuilds on a change of any header; pyproject's package-data globs
    (_native/*.c, _native/*.h) cover them all."""
    exts = _setup_extensions(every=True)
    (name, sources, depends, macros, cflags), = [e for e in exts if e[0].endswith("_tskernels")]
    assert name == "tempscale._native._tskernels"
    # other extensions of _native (the calibration moments kernel, _moments.c) build alone
    own = {pathlib.Path(s).name for e in exts if e[0] != name for s in e[1]}
    on_disk = {p.name for p in NATIVE_DIR.iterdir() if p.suffix in (".c", ".h")} - own
    assert {pathlib.Path(s).name for s in sources} == {n for n in on_disk if n.endswith(".c")}
    assert {pathlib.Path(d).name for d in depends} == {n for n in on_disk if n.endswith(".h")}
    for f in sources + depends:
        assert (ROOT / f).is_file(), f
    others = {p.name for p in NATIVE_DIR.iterdir() if p.is_file()} - on_disk - own
    assert all(n == "__init__.py" or n.endswith((".so", ".pyd")) for n in others), others
    # no backslash macro longer than a few lines is left (the reference is a header per type)
    for p in NATIVE_DIR.glob("*.[ch]"):
        run = longest = 0
        for line in p.read_text().splitlines():
            run = run + 1 if line.rstrip().endswith("\\") else 0
            longest = max(longest, run)
        assert longest <= 12, f"{p.name}: a {longest}-line backslash macro"


@needs_sources
def test_benchmark_kernels_only_with_the_build_flag():
    """TEMPSCALE_BENCH_KERNELS=1 (and only it) defines TS_BENCH_KERNELS; a normal build
    has no exp_pass / _set_stream_bytes."""
    (_, _, _, plain, _), = _setup_extensions()
    (_, _, _, bench, _), = _setup_extensions(TEMPSCALE_BENCH_KERNELS="1")
    assert "TS_BENCH_KERNELS" not in {m for m, _ in plain}
    assert ["TS_BENCH_KERNELS", "1"] in bench
    if getattr(_K, "bench_kernels", 0):
        assert hasattr(_K, "exp_pass") and hasattr(_K, "_set_stream_bytes")
    else:
        assert not hasattr(_K, "exp_pass") and not hasattr(_K, "_set_stream_bytes")


# identifiers that exist only on some platforms / compilers / CPUs: allowed only inside a
# preprocessor conditional that names a platform (or an ISA macro set for the x86 copies)
_PLATFORM_ONLY = ["malloc_usable_size", "malloc_size", "<malloc.h>", "<malloc/malloc.h>",
                  "<malloc_np.h>", "sched_getaffinity", "pthread_setaffinity_np", "get_nprocs",
                  "memalign", "__builtin_cpu_supports", "__builtin_cpu_init", "<immintrin.h>",
                  "#pragma GCC target", "#pragma clang attribute", "_mm512_", "_mm256_", "_mm_",
                  "__m512", "__m256", "__mmask"]
_PLATFORM_MACROS = ["__linux__", "__APPLE__", "__FreeBSD__", "__x86_64__", "__aarch64__",
                    "__clang__", "__GNUC__", "HAVE_X86_DISPATCH", "HAVE_TSUM", "KI_AVX512",
                    "KI_FMA_X86"]


def _unguarded_platform_uses(text):
    """(line number, token) of platform-only tokens outside platform conditionals."""
    stack, bad = [], []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("/*") or line.startswith("*") or line.startswith("//"):
            continue
        if re.match(r"#\s*if", line):
            stack.append(line)
            continue
        if re.match(r"#\s*(elif|else)", line):
            stack[-1] += " " + line
            continue
        if re.match(r"#\s*endif", line):
            stack.pop()
            continue
        code = line.split("/*")[0]
        guarded = any(m in group for group in stack for m in _PLATFORM_MACROS)
        for tok in _PLATFORM_ONLY:
            if tok in code and not guarded:
                bad.append((no, tok))
    return bad


@needs_sources
def test_c_sources_guard_platform_specific_calls():
    """Portable C: glibc-only calls, x86 intrinsics, CPU detection and target pragmas only
    inside conditionals naming their platform (each with a fallback), so that the same
    sources build with gcc and clang on Linux x86-64 / aarch64 and macOS."""
    found = {}
    for p in sorted(NATIVE_DIR.glob("*.[ch]")):
        bad = _unguarded_platform_uses(p.read_text())
        if bad:
            found[p.name] = bad
    assert not found, found
    # the checker itself sees an unguarded use, and accepts a guarded one
    assert _unguarded_platform_uses("#include <malloc.h>\nx = malloc_usable_size(p);\n")
    assert not _unguarded_platform_uses("#if defined(__linux__)\n#include <malloc.h>\n#endif\n")
    # setup.py: no -march / -ffast-math (one wheel for every CPU; the contract needs inf / NaN)
    (_, _, _, _, cflags), = _setup_extensions()
    assert not [f for f in cflags if f.startswith(("-march", "-mtune=native", "-ffast-math",
                                                   "-Ofast", "-mavx"))], cflags


def test_cpu_count_without_sched_getaffinity(monkeypatch):
    """macOS has no os.sched_getaffinity: the default thread count falls back to cpu_count."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert _native._cpu_count() == max(1, os.cpu_count() or 1)


def _compiler(*names):
    for n in names:
        if shutil.which(n):
            return n
    return None


@needs_sources
def test_c_harness_passes_natively():
    """tests/c/test_kernels.c (no Python): every contract row, temperature, dtype, layout and
    instruction set of this CPU against a long-double reference, one and three threads."""
    cc = _compiler("cc", "gcc", "clang")
    if cc is None:
        pytest.skip("no C compiler (cc / gcc / clang) on PATH")
    r = subprocess.run(["bash", str(ROOT / "tests" / "c" / "run.sh"), "--quiet"], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "CC": cc})
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^\d+ passed, 0 failed", r.stdout, re.M), r.stdout


@needs_sources
def test_core_compiles_for_aarch64_without_x86_paths(tmp_path):
    """The Python-free core cross-compiles for aarch64 (warnings are errors) with only the
    baseline kernels (.ci/cross.sh also runs the C test there under qemu-aarch64)."""
    xcc = _compiler("aarch64-linux-gnu-gcc")
    if xcc is None:
        pytest.skip("aarch64-linux-gnu-gcc not installed (apt-get install gcc-aarch64-linux-gnu "
                    "libc6-dev-arm64-cross; .ci/cross.sh installs it)")
    objs = []
    for src in CORE_SOURCES:
        obj = tmp_path / (src + ".o")
        r = subprocess.run([xcc, "-c", "-O1", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                            "-Wno-psabi", "-I", str(NATIVE_DIR), str(NATIVE_DIR / src), "-o",
                            str(obj)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        objs.append(str(obj))
    nm = _compiler("aarch64-linux-gnu-nm", "nm")
    if nm:
        syms = subprocess.run([nm, *objs], capture_output=True, text=True).stdout
        assert "_base" in syms and "_avx" not in syms


# ---------------------------------------------------------------------------------------------
# property tests
# ---------------------------------------------------------------------------------------------
hyp = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_specials = st.sampled_from([0.0, -INF, INF, NAN, 1e30, -1e30, 3.4e38, -3.4e38])
_finite = st.floats(-1e4, 1e4, width=32)


@st.composite
def _inputs(draw):
    rows = draw(st.integers(1, 6))
    n = draw(st.sampled_from([1, 2, 3, 10, 16, 47, 48, 65, 130]))
    elems = st.one_of(_finite, _finite, _finite, _specials)
    x = draw(hnp.arrays(np.float32, (rows, n), elements=elems))
    T = draw(st.sampled_from([0.0, INF, 1e-30, 0.01, 0.7, 1.0, 13.0, 1e30]))
    return x, T


@settings(max_examples=80, deadline=None)
@given(_inputs(), st.sampled_from(KINDS))
def test_property_matches_reference(inp, kind):
    x, T = inp
    with np.errstate(over="ignore"):
        got = native(kind, x, T)
    assert_contract_equal(got, reference(kind, x, T), rtol=3e-6)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 200)),
                  elements=st.floats(-50, 50, width=32)),
       st.floats(0.05, 20.0))
def test_property_sum_shift_and_log(x, T):
    p = native("softmax", x, T)
    np.testing.assert_allclose(p.sum(-1, dtype=np.float64), 1.0, rtol=x.shape[1] * 2.0**-23 + 1e-6)
    shifted = native("softmax", (x.astype(np.float64) + 3.0).astype(np.float32), T)
    ok = p > 1e-20
    np.testing.assert_allclose(shifted[ok], p[ok], rtol=1e-4)  # x + 3 rounds in float32
    ls = native("log_softmax", x, T)
    np.testing.assert_allclose(np.exp(ls.astype(np.float64))[ok], p[ok], rtol=1e-5)
    lse = native("logsumexp", x, T)
    assert np.all(lse >= x.max(-1) - 1e-4 * np.abs(x.max(-1)) - 1e-4)
