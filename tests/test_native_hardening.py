"""Regression tests of the native kernel's hardening (issue 10, items 2, 4, 8, 13), against
mpmath / extended-precision references and the generic Array-API path.

* every accepted temperature (0, subnormal, 1e-300 ... 1.7e308, max, inf) on every instruction
  set, float16 / float32 / float64, softmax / log_softmax / logsumexp, every layout the kernel
  distinguishes (narrow rows in transposed blocks, 16-row register blocks, wide rows, strided /
  other axis, masks, per-row T, multi-threaded splits, huge rows), with extreme rows (+-max
  spans, subnormal gaps, ties, -inf / +inf / NaN);
* logsumexp / log_softmax near 0 in the log1p form, as exact as SciPy (item 2);
* float64 temperatures with float32 / float16 logits used at double precision (item 8);
* environment variables and settings: one warning and the default, never an import error;
  explicit calls raise the library's errors (item 13).

Errors are measured in ulps of the output dtype: |got - ref| / spacing(ref rounded to dtype).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tempscale import _native

mpmath = pytest.importorskip("mpmath")

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
F64MAX = float(np.finfo(np.float64).max)
F32MAX = float(np.finfo(np.float32).max)
# every class of accepted temperature: 0, subnormal, tiny, around float32's limits, huge, inf
TEMPS = [0.0, 5e-324, 1e-320, 1e-300, 1e-60, 1e-45, 3e-39, 1e-38, 1e-30, 1e-3, 0.7, 1.0, 3.0,
         1e30, 1e38, 3.4e38, 1e300, 1.7e308, F64MAX, INF]
# measured maxima (see the report in the test docstrings) plus headroom
ULP_BOUND = {np.float16: 1.0, np.float32: 4.0, np.float64: 8.0}


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test on each instruction set this CPU supports (avx512f / avx2 / baseline)."""
    _K.set_isa(request.param)
    try:
        yield request.param
    finally:
        _K.set_isa("best")


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------
mpmath.mp.dps = 40


def _mp_row(row, T):
    """(softmax, log_softmax, logsumexp) of one row in mpmath, every contract case spelled out.

    Returns lists of mpf / float (inf, nan) values."""
    n = len(row)
    if any(math.isnan(v) for v in row) or math.isnan(T):
        return [NAN] * n, [NAN] * n, NAN
    valid = [v > -INF for v in row]
    if not any(valid):
        return [0.0] * n, [-INF] * n, -INF
    m = max(v for v in row if v > -INF)
    if m == INF or T == 0 or T == INF:
        on = [v == m for v in row] if (m == INF or T == 0) else valid
        k = sum(on)
        lse = m if (m == INF or T == 0 or k == 1) else INF
        lp = 0.0 if k == 1 else -mpmath.log(k)
        return ([mpmath.mpf(1) / k if o else 0.0 for o in on],
                [lp if o else -INF for o in on], lse)
    mT, TT = mpmath.mpf(m), mpmath.mpf(T)
    ys = [(mpmath.mpf(v) - mT) / TT if v > -INF else None for v in row]
    es = [mpmath.exp(y) if y is not None else mpmath.mpf(0) for y in ys]
    s = mpmath.fsum(es)
    # log s as log(k) + log1p(rest / k): at a fixed working precision log(1 + 1e-55) is 0
    k = sum(1 for v in row if v == m)
    rest = mpmath.fsum(e for v, e in zip(row, es, strict=True) if v != m)
    ls = mpmath.log(k) + mpmath.log1p(rest / k)
    sm = [e / s for e in es]
    lsm = [y - ls if y is not None else -INF for y in ys]
    return sm, lsm, mT + TT * ls


def mp_reference(x, T, axis=-1, mask=None):
    """{kind: float64-or-mpf object array} of the contract, row by row in mpmath.

    ``T`` is a float or an array broadcastable to the keepdims shape (used at float64)."""
    x = np.asarray(x)
    axis = axis % x.ndim
    xd = x.astype(np.float64)
    if mask is not None:
        xd = np.where(np.broadcast_to(mask, x.shape), xd, -INF)
    kshape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
    Tb = np.moveaxis(np.broadcast_to(np.asarray(T, dtype=np.float64), kshape), axis, -1)[..., 0]
    xm = np.moveaxis(xd, axis, -1)
    out = {k: np.empty(xm.shape if k != "logsumexp" else xm.shape[:-1], dtype=object)
           for k in KINDS}
    for idx in np.ndindex(xm.shape[:-1]):
        sm, lsm, lse = _mp_row([float(v) for v in xm[idx]], float(Tb[idx]))
        out["softmax"][idx] = sm
        out["log_softmax"][idx] = lsm
        out["logsumexp"][idx] = lse
    out["softmax"] = np.moveaxis(out["softmax"], -1, axis)
    out["log_softmax"] = np.moveaxis(out["log_softmax"], -1, axis)
    return out


def ulp_error(got, ref, dtype, *, shift=None, conditioned=False):
    """Max error of ``got`` in ulps of ``dtype`` against the exact ``ref`` (object / float array).

    The NaN / +-inf pattern must match the reference rounded to ``dtype`` exactly (an error of
    inf otherwise).  ``shift``: for logsumexp, an extra allowance of the same number of ulps of
    |ref - m| (the unavoidable cancellation of m + T log s)."""
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=object).reshape(-1)
    dt = np.dtype(dtype)
    with np.errstate(over="ignore"):
        ref_d = np.array([float(r) for r in ref], dtype=np.float64)
        ref_rounded = ref_d.astype(dt).astype(np.float64)
    nan_g, nan_r = np.isnan(got), np.isnan(ref_rounded)
    if (nan_g != nan_r).any():
        return INF
    inf_g, inf_r = np.isinf(got), np.isinf(ref_rounded)
    if (inf_g != inf_r).any() or (got[inf_g] != ref_rounded[inf_r]).any():
        return INF
    fin = ~(nan_g | inf_g)
    if not fin.any():
        return 0.0
    top = float(np.spacing(np.finfo(dt).max / 2)) * 2  # spacing(max) itself overflows
    with np.errstate(over="ignore"):
        sp = np.spacing(np.abs(ref_rounded[fin]).astype(dt)).astype(np.float64)
    sp = np.where(np.isinf(sp), top, sp)
    sp = np.maximum(sp, float(np.finfo(dt).smallest_subnormal))
    if shift is not None:
        sh = np.asarray(shift, dtype=np.float64).reshape(-1)[fin]
        with np.errstate(invalid="ignore", over="ignore"):
            extra = np.spacing(np.abs(ref_d[fin] - sh).astype(dt)).astype(np.float64)
        sp = sp + np.where(np.isfinite(extra), extra, 0.0)
    err = np.array([float(abs(mpmath.mpf(g) - r)) for g, r in zip(got[fin], ref[fin], strict=True)])
    ulps = err / sp
    if conditioned:
        # exp(y) with |y| large: every evaluation that rounds y = (x - m)/T once (this kernel's
        # float64 path, the generic path, SciPy) is off by up to |y| * 2^-53 relative, i.e.
        # about |y| / 2 ulps; |log p| >= |y| bounds it (for log_softmax near 0, -log1p(e^y) ~
        # -e^y, and logsumexp - m ~ T e^y, the same |log| holds).  Count it separately.
        with np.errstate(divide="ignore"):
            logp = np.abs(np.log(np.abs(ref_d[fin])))
        ulps = ulps / (1.0 + np.where(np.isfinite(logp), logp, 0.0) / 2)
    return float(np.max(ulps))


def native(kind, x, T=1.0, axis=-1, mask=None, out_dtype=None):
    x = np.asarray(x)
    axis = axis % x.ndim
    if isinstance(T, np.ndarray) and T.ndim == x.ndim - 1:
        T = np.expand_dims(T, axis)
    r = _native.try_compute(kind, x, T, axis, mask, np.dtype(out_dtype or x.dtype))
    assert r is not None
    return r


def _generic():
    mod = pytest.importorskip("tempscale._softmax")
    gen = getattr(mod, "_generic", None)
    if gen is None:
        pytest.skip("tempscale._softmax._generic not available")
    return gen


# ---------------------------------------------------------------------------------------------
# probe rows: every numerical class the kernel must survive
# ---------------------------------------------------------------------------------------------
def _probe(dtype, width):
    """16 rows x ``width`` columns of extreme / ordinary values in ``dtype``."""
    fi = np.finfo(dtype)
    big, sub, tiny = float(fi.max), float(fi.smallest_subnormal), float(fi.smallest_normal)
    rng = np.random.default_rng(width)
    rows = [
        [0.0, -sub, -2 * sub, -3 * sub, -tiny],                   # subnormal gaps
        [big, -big, 0.0, big / 2, -big / 3],                      # span beyond the max
        [-big, -big, -big / 2, -big],                             # ties at -max
        [big, big, -big, 1.0],                                    # ties at +max
        [1.0, 3.0, 3.0, 2.0],                                     # ties
        [0.0, -40.0, -20.0, -100.0],                              # logsumexp near 0
        [-INF, 2.0, -INF, 1.0],                                   # partly masked
        [-INF, -INF, -INF, -INF],                                 # fully masked
        [INF, 1.0, INF, -INF],                                    # +inf shares the mass
        [NAN, 1.0, 2.0, 3.0],                                     # NaN row
        [-INF, -INF, 5.0, -INF],                                  # one unmasked entry
        [tiny, sub, 0.0, -sub],                                   # all around zero
        [1e4, 1e4 - 1, -1e4, 0.0],                                # ordinary, large
        [0.25, -0.5, 0.125, 0.0],
    ]
    special = {7, 8, 9, 10}  # fully masked, +inf, NaN, one unmasked entry: no filler
    x = np.full((16, width), -INF)
    fill = np.abs(rng.standard_normal((16, width))) * 3
    for i in range(16):
        r = rows[i][:width] if i < len(rows) else []
        x[i, :len(r)] = r
        if i in special:
            continue
        base = max(r) if r else 0.0
        scale = max(abs(base), 1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            x[i, len(r):] = np.clip(base - scale * fill[i, len(r):], -big, big)
    with np.errstate(over="ignore"):
        return x.astype(dtype)


_REF_CACHE: dict = {}


def _probe_ref(dtype, width, T):
    key = (np.dtype(dtype).str, width, T)
    if key not in _REF_CACHE:
        _REF_CACHE[key] = mp_reference(_probe(dtype, width), T)
    return _REF_CACHE[key]


DTYPES = [np.float16, np.float32, np.float64]


def _check(kind, got, ref, dtype, x=None, axis=-1, bound=None):
    bound = ULP_BOUND[dtype] if bound is None else bound
    shift = None
    if kind == "logsumexp" and x is not None:
        with np.errstate(invalid="ignore"):
            xm = np.where(np.isnan(x), -INF, x.astype(np.float64))
            shift = np.max(xm, axis=axis)
    # float64: error relative to the conditioning of exp (see ulp_error); log_softmax near 0 and
    # logsumexp near m are sums of such exps
    err = ulp_error(got, ref, dtype, shift=shift, conditioned=dtype == np.float64)
    assert err <= bound, f"{kind}: {err:.3g} ulp > {bound}"
    return err


# ---------------------------------------------------------------------------------------------
# item 4: every temperature, every instruction set, every layout
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", TEMPS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [4, 16, 20, 64])
def test_every_temperature_contiguous_rows(isa, dtype, width, T):
    """Narrow blocks (4, 20), 16-row register blocks (16, float32) and wide rows (64)."""
    x = _probe(dtype, width)
    ref = _probe_ref(dtype, width, T)
    for kind in KINDS:
        _check(kind, native(kind, x, T), ref[kind], dtype, x)


@pytest.mark.parametrize("T", [5e-324, 1e-300, 1e-45, 3e-39, 1e30, 3.4e38, 1e300, 1.7e308])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [20, 64])
def test_every_temperature_other_layouts(isa, dtype, width, T):
    """The same rows along axis 0, through a mask, with a per-row T array (float32 and float64)."""
    x = _probe(dtype, width)
    ref = _probe_ref(dtype, width, T)
    for kind in KINDS:
        want = ref[kind]
        # other axis / strided: the transposed array along axis 0
        got = native(kind, np.ascontiguousarray(x.T), T, axis=0)
        _check(kind, got.T if kind != "logsumexp" else got, want, dtype, x)
        got = native(kind, x[:, ::-1], T)[..., ::-1] if kind != "logsumexp" else \
            native(kind, x[:, ::-1], T)
        _check(kind, got, want, dtype, x)
        # a mask that removes exactly the -inf entries, which now hold garbage (NaN, +inf)
        mask = ~np.isneginf(x)
        garbage = np.where(mask, x, np.array([NAN, INF], dtype=dtype)[np.arange(x.size).reshape(
            x.shape) % 2])
        _check(kind, native(kind, garbage, T, mask=mask), want, dtype, x)
        # per-row T arrays (every row the same T): gather path instead of the fast one
        for tdt in (np.float64, np.float32):
            with np.errstate(over="ignore"):
                Tr = np.full(x.shape[0], T, dtype=tdt)
            if float(Tr[0]) != T:
                continue  # not representable in float32
            _check(kind, native(kind, x, Tr), want, dtype, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [4, 20, 64])
def test_per_row_temperatures_of_every_class(isa, dtype, width):
    """One block mixing T = 0, subnormal, tiny, huge and inf rows (float64 per-row T)."""
    x = _probe(dtype, width)
    rng = np.random.default_rng(width)
    T = np.array(TEMPS[:16], dtype=np.float64)
    for perm in (np.arange(16), rng.permutation(16)):
        Tp = T[perm]
        ref = mp_reference(x, Tp[:, None])
        for kind in KINDS:
            _check(kind, native(kind, x, Tp), ref[kind], dtype, x)


@pytest.mark.parametrize("T", [0.0, 5e-324, 1e-45, 1e38, INF])
@pytest.mark.parametrize("kind", KINDS)
def test_fully_masked_and_nonfinite_rows_with_per_row_T(isa, kind, T):
    """Fully masked rows, +-inf and NaN rows under T = 0 / inf / extreme per-row T."""
    generic = _generic()
    for dtype in (np.float32, np.float64):
        x = _probe(dtype, 20)
        mask = np.ones(x.shape, bool)
        mask[[0, 5, 12]] = False                   # fully masked by the mask
        Tr = np.full(16, T)
        Tr[1::3] = 0.0
        Tr[2::3] = INF
        ref = mp_reference(x, Tr[:, None], mask=mask)
        got = native(kind, x, Tr, mask=mask)
        _check(kind, got, ref[kind], dtype, np.where(mask, x, -INF))
        want = generic(kind, x, Tr[:, None], mask=mask)
        want = np.squeeze(want, -1) if kind == "logsumexp" and want.ndim == 2 else want
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        if kind == "softmax":
            assert np.all(got[~mask] == 0)


@pytest.mark.parametrize("T", [5e-324, 1e-300, 1e-45, 3e-39, 1e-30, 1e30, 1e38, 3.4e38, 1e300,
                               1.7e308])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_generic_path_at_extreme_temperatures(dtype, T):
    """The generic Array-API path is the contract's reference: same values on every ISA."""
    generic = _generic()
    x = _probe(dtype, 20)
    for isa_name in ISAS:
        _K.set_isa(isa_name)
        try:
            for kind in KINDS:
                got = native(kind, x, T)
                want = generic(kind, x, T)
                want = np.squeeze(want, -1) if kind == "logsumexp" and want.ndim == 2 else want
                ref = _probe_ref(dtype, 20, T)[kind]
                # both within the stated bound of the exact value (so within 2x of each other)
                _check(kind, got, ref, dtype, x)
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
                np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
                np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        finally:
            _K.set_isa("best")


def test_quoted_examples():
    """The issue's examples: T below ~4e-39 on AVX-512 float32, and a span beyond FLT_MAX."""
    for isa_name in ISAS:
        _K.set_isa(isa_name)
        try:
            x = np.array([[0.0, -1.0, 2.0, 1.5]], np.float32)
            for T in (1e-39, 3e-39, 1e-45, 5e-324):
                np.testing.assert_array_equal(native("softmax", x, T), [[0, 0, 1, 0]])
                assert native("logsumexp", x, T)[0] == 2.0
                ref = mp_reference(x, T)  # log_softmax: -0.5 / 3e-39 = -1.7e38 is finite
                _check("log_softmax", native("log_softmax", x, T), ref["log_softmax"],
                       np.float32)
            x = np.array([[3e38, -3e38, 0.0]], np.float32)
            ref = mp_reference(x, 1e38)
            for kind in KINDS:
                _check(kind, native(kind, x, 1e38), ref[kind], np.float32, x)
        finally:
            _K.set_isa("best")


def test_multithreaded_splits_and_huge_rows():
    """Row splits over threads (narrow and wide) and rows longer than one task give the same
    bits as one thread, and those are within the bound of the exact value."""
    old = _native.get_num_threads()
    try:
        for dtype in (np.float32, np.float64):
            for width, reps in ((20, 300), (64, 200)):
                x = np.tile(_probe(dtype, width), (reps, 1))
                for T in (1e-45, 3e-39, 1e38, 1e300):
                    ref = _probe_ref(dtype, width, T)
                    for kind in KINDS:
                        _native.set_num_threads(1)
                        one = native(kind, x, T)
                        _native.set_num_threads(3)
                        three = native(kind, x, T)
                        np.testing.assert_array_equal(one, three)
                        _check(kind, three[:16], ref[kind], dtype, x[:16])
            # a huge row (longer than one task): a head, a long tail of equal values, -inf
            head = [0.0, -1e-3, -2.0, -30.0, -5.0]
            ntail = 70_000
            xr = np.array([head + [-60.0] * ntail + [-INF] * 3], dtype=dtype)
            for T in (3e-39, 1.0, 7.0, 1e30):
                TT = mpmath.mpf(T)
                ys = [mpmath.mpf(float(v)) / TT for v in xr[0, :6]]
                s = mpmath.fsum(mpmath.exp(y) for y in ys[:5]) + ntail * mpmath.exp(ys[5])
                ls = mpmath.log1p(s - 1)  # exact: s - 1 has the working precision here
                ref = {"softmax": [mpmath.exp(y) / s for y in ys],
                       "log_softmax": [y - ls for y in ys], "logsumexp": [TT * ls]}
                for kind in KINDS:
                    got = native(kind, xr, T)
                    if kind == "logsumexp":
                        _check(kind, got, ref[kind], dtype, xr)
                    else:
                        _check(kind, got[:, :6], ref[kind], dtype)
                        assert np.all(got[0, 6:-3] == got[0, 5])
                        assert np.all(got[0, -3:] == (0 if kind == "softmax" else -INF))
    finally:
        _native.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# item 2: logsumexp / log_softmax near 0 (log1p form), every ISA, every T
# ---------------------------------------------------------------------------------------------
_NEAR0_ROWS = [[0.0, -40.0], [0.0, -20.0], [0.0, -100.0], [0.0, 0.0, -40.0], [5.0, -35.0],
               [0.0, -40.0, -41.0, -45.0], [-3.0, -43.0], [1e-3, -80.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [1.0, 0.5, 2.0, 1e-3, 37.0])
@pytest.mark.parametrize("pad", [0, 60])
def test_logsumexp_and_log_softmax_near_zero(isa, dtype, T, pad):
    """logsumexp([0, -40]) = log1p(e^-40) = 4.25e-18, not 0; log_softmax likewise, within a few
    ulps of mpmath, narrow (pad 0) and wide (pad 60 entries of -inf) rows."""
    for row in _NEAR0_ROWS:
        r = [v * T for v in row] + [-INF] * pad
        x = np.array([r], dtype=dtype)
        ref = mp_reference(x, T)
        for kind in ("log_softmax", "logsumexp"):
            _check(kind, native(kind, x, T), ref[kind], dtype, x, bound=4.0)
    lse = native("logsumexp", np.array([[0.0, -40.0]], dtype), 1.0)[0]
    assert lse == pytest.approx(4.248354255291589e-18, rel=1e-6)
    ls0 = native("log_softmax", np.array([[0.0, -40.0]], dtype), 1.0)[0, 0]
    assert ls0 == pytest.approx(-4.248354255291589e-18, rel=1e-6)


def test_logsumexp_at_least_as_exact_as_scipy(isa):
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(21)
    worst_ours = worst_scipy = 0.0
    for _ in range(40):
        n = int(rng.integers(2, 80))
        x = -np.abs(rng.standard_normal(n)) * rng.choice([1.0, 30.0, 300.0])
        x[rng.integers(n)] = 0.0  # result near log1p(small)
        ref = mp_reference(x[None, :], 1.0)["logsumexp"]
        ours = ulp_error(native("logsumexp", x[None, :], 1.0), ref, np.float64)
        theirs = ulp_error(np.array([special.logsumexp(x)]), ref, np.float64)
        worst_ours, worst_scipy = max(worst_ours, ours), max(worst_scipy, theirs)
        assert ours <= max(theirs, 2.0) + 1.0
    assert worst_ours <= 4.0


# ---------------------------------------------------------------------------------------------
# item 8: float64 temperatures with float32 / float16 logits, at double precision
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("width", [10, 16, 100])
def test_float64_temperature_used_unrounded(isa, dtype, width):
    rng = np.random.default_rng(width)
    x = (rng.standard_normal((16, width)) * 4).astype(dtype)
    Ts = [0.01, 0.0123456789, 1.0 / 3.0, 7.1e-3]
    bound = 3.0 if dtype == np.float32 else 1.0
    for T in Ts:
        ref = mp_reference(x, T)
        for form in (np.float64(T), np.array(T), np.array([[T]]), np.full((16, 1), T),
                     np.full(16, T), T):
            got = native("softmax", x, form)
            _check("softmax", got, ref["softmax"], dtype, bound=bound)
        Tr = np.array([Ts[i % 4] for i in range(16)])
        ref = mp_reference(x, Tr[:, None])
        for kind in KINDS:
            _check(kind, native(kind, x, Tr), ref[kind], dtype, x, bound=bound)
    if dtype == np.float32:
        # the check discriminates: the temperature rounded to float32 lands far off
        T = 0.0123456789
        ref = mp_reference(x, T)
        narrowed = native("softmax", x, float(np.float32(T)))
        assert ulp_error(narrowed, ref["softmax"], dtype) > 10


def test_public_api_keeps_float64_temperature():
    """softmax(x32, np.float64(T)) and per-row float64 T: as exact as a Python float."""
    import tempscale

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((8, 50)) * 4).astype(np.float32)
    T = 0.0123456789
    ref = mp_reference(x, T)["softmax"]
    e_float = ulp_error(tempscale.softmax(x, T), ref, np.float32)
    for form in (np.float64(T), np.array(T), np.full(8, T)):
        e = ulp_error(tempscale.softmax(x, form), ref, np.float32)
        assert e <= max(e_float, 1.5) + 0.5, (type(form), e, e_float)


# ---------------------------------------------------------------------------------------------
# item 13: environment variables and settings
# ---------------------------------------------------------------------------------------------
def _run(code, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("TEMPSCALE_")}
    e.update(env)
    return subprocess.run([sys.executable, "-W", "default", "-c", textwrap.dedent(code)], env=e,
                          capture_output=True, text=True, timeout=120)


_PROBE_CODE = """
    import os, numpy as np, tempscale
    from tempscale import _native
    p = tempscale.softmax(np.array([0.0, 1.0, 2.0]), 0.5)
    assert abs(p.sum() - 1) < 1e-12, p
    cfg = _native.show_config(print_out=False)
    print(cfg["num_threads"], len(os.sched_getaffinity(0)), cfg["isa"],
          cfg["supported_isas"][0], cfg["native"], cfg["output_cache"]["limit_bytes"])
"""

_BAD_ENV = [
    ("TEMPSCALE_NUM_THREADS", "abc"), ("TEMPSCALE_NUM_THREADS", "0"),
    ("TEMPSCALE_NUM_THREADS", "-3"), ("TEMPSCALE_NUM_THREADS", "1e30"),
    ("TEMPSCALE_NUM_THREADS", "nan"), ("TEMPSCALE_NUM_THREADS", "2.5"),
    ("TEMPSCALE_CACHE_MB", "abc"), ("TEMPSCALE_CACHE_MB", "-1"), ("TEMPSCALE_CACHE_MB", "nan"),
    ("TEMPSCALE_CACHE_MB", "inf"), ("TEMPSCALE_ISA", "avx9000"), ("TEMPSCALE_ISA", "sse2"),
    ("TEMPSCALE_DISABLE_NATIVE", "yes"), ("TEMPSCALE_REQUIRE_NATIVE", "true"),
]


@pytest.mark.parametrize("var,value", _BAD_ENV)
def test_bad_environment_value_warns_once_and_uses_default(var, value):
    r = _run(_PROBE_CODE, **{var: value})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    named = [ln for ln in r.stderr.splitlines() if var in ln]
    assert len(named) == 1, r.stderr
    assert "RuntimeWarning" in named[0] and repr(value) in named[0] and "must be" in named[0]
    nthreads, ncpu, isa, best, native_on, _ = r.stdout.split()
    assert nthreads == ncpu and isa == best and native_on == "True"
    if var != "TEMPSCALE_CACHE_MB":
        return
    default = _run(_PROBE_CODE)
    assert r.stdout.split()[-1] == default.stdout.split()[-1]


@pytest.mark.parametrize("var,value,expect", [
    ("TEMPSCALE_NUM_THREADS", " 3 ", 3), ("TEMPSCALE_NUM_THREADS", "100000", 256),
    ("TEMPSCALE_CACHE_MB", "1e30", 2**62), ("TEMPSCALE_CACHE_MB", "0.5", 2**19),
    ("TEMPSCALE_CACHE_MB", "0", 0), ("TEMPSCALE_ISA", " Baseline ", "baseline"),
    ("TEMPSCALE_ISA", "best", None), ("TEMPSCALE_NUM_THREADS", "", None),
])
def test_good_environment_values(var, value, expect):
    r = _run(_PROBE_CODE, **{var: value})
    assert r.returncode == 0, r.stderr
    assert var not in r.stderr, r.stderr
    nthreads, ncpu, isa, best, _, limit = r.stdout.split()
    if var == "TEMPSCALE_NUM_THREADS":
        assert int(nthreads) == (expect if expect is not None else int(ncpu))
    elif var == "TEMPSCALE_CACHE_MB":
        assert int(limit) == expect
    else:
        assert isa == (expect or best)


def test_unsupported_isa_name_lists_the_supported_ones():
    r = _run(_PROBE_CODE, TEMPSCALE_ISA="avx512")
    line = [ln for ln in r.stderr.splitlines() if "TEMPSCALE_ISA" in ln][0]
    for name in ISAS:
        assert repr(name) in line


@pytest.mark.parametrize("bad", [0, -1, -(10**30)])
def test_set_num_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match=r"The 'n' parameter of set_num_threads must be a positive"
                                         r" integer\. Got "):
        _native.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1e30, 2.0, math.nan, "abc", "2", True, None, [2]])
def test_set_num_threads_rejects_non_integers(bad):
    with pytest.raises(TypeError, match=r"'n' parameter of set_num_threads") as info:
        _native.set_num_threads(bad)
    assert isinstance(info.value, ValueError)  # the type it raised before, too
    assert repr(bad) in str(info.value)


def test_set_num_threads_caps_huge_values():
    code = """
        import numpy as np
        from tempscale import _native
        x = np.random.default_rng(0).standard_normal((5000, 30)).astype(np.float32)
        one = _native.try_compute("softmax", x, 0.5, 1, None, np.float32)
        _native.set_num_threads(10**30)
        print(_native.get_num_threads())
        many = _native.try_compute("softmax", x, 0.5, 1, None, np.float32)
        print(bool(np.array_equal(one, many)))
        _native.set_num_threads(np.int64(2))
        print(_native.get_num_threads())
    """
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(_native.MAX_THREADS), "True", "2"]


def test_set_cache_limit_edge_values():
    old = _K.cache_info()["limit_bytes"]
    try:
        for bad in (-1, -(10**30)):
            with pytest.raises(ValueError, match="'nbytes' parameter of set_cache_limit"):
                _native.set_cache_limit(bad)
        for bad in (1e30, math.nan, "abc", 1.5, True):
            with pytest.raises(TypeError, match="'nbytes' parameter of set_cache_limit"):
                _native.set_cache_limit(bad)
        _native.set_cache_limit(10**30)
        assert _K.cache_info()["limit_bytes"] == 2**62
        _native.set_cache_limit(1)   # below any block: nothing is kept
        x = np.ones((600, 600), np.float32)
        a = native("softmax", x, 1.0)
        del a
        assert _K.cache_info()["blocks"] == 0
        np.testing.assert_array_equal(native("softmax", x, 1.0), np.full(x.shape, 1 / 600,
                                                                         np.float32))
    finally:
        _native.set_cache_limit(old)
        _native.release_memory()


@pytest.mark.parametrize("kind", KINDS)
def test_nan_or_negative_temperature_array_gives_nan_rows(isa, kind):
    """Validation is the caller's job; if a NaN / negative per-row T reaches the kernel anyway,
    exactly those rows are NaN (never garbage or a crash), on every path."""
    for dtype in DTYPES:
        for width in (4, 16, 64):
            x = _probe(dtype, width)[[4, 5, 12, 13, 14, 15] * 3]
            T = np.ones(len(x))
            T[[1, 7]] = NAN
            T[[3, 10]] = -1.0
            got = native(kind, x, T)
            bad = np.isnan(T)
            bad[[3, 10]] = True
            rows = got if kind == "logsumexp" else got.reshape(len(x), -1).T
            assert np.all(np.isnan(rows[..., bad]))
            assert not np.isnan(rows[..., ~bad]).any()


# ---------------------------------------------------------------------------------------------
# the torch path's entry points at the C level: bfloat16 (uint16) storage and backward()
# ---------------------------------------------------------------------------------------------
def _bf16(a):
    """float32 -> bfloat16 bits (round to nearest even), as uint16."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(a), np.uint16(0x7FC0), r)


def _from_bf16(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


def test_bfloat16_storage_matches_float32_rounded():
    rng = np.random.default_rng(0)
    x = _from_bf16(_bf16(rng.standard_normal((9, 70)).astype(np.float32) * 4))
    x[1, 3] = np.inf
    x[2] = -np.inf
    x[3, 5] = np.nan
    for kind in range(3):
        for T in (0.0, 0.7, np.inf, 1e-30):
            want = np.empty_like(x) if kind < 2 else np.empty(9, np.float32)
            got = np.empty(x.shape, np.uint16) if kind < 2 else np.empty(9, np.uint16)
            wv = want if kind < 2 else np.lib.stride_tricks.as_strided(want, x.shape, (4, 0))
            gv = got if kind < 2 else np.lib.stride_tricks.as_strided(got, x.shape, (2, 0))
            _K.compute(kind, x, T, None, wv, 1, 1)
            _K.compute(kind, _bf16(x), T, None, gv, 1, 1, 3)
            np.testing.assert_array_equal(_from_bf16(got), _from_bf16(_bf16(want)))


def test_bfloat16_and_backward_arguments_are_checked():
    x = np.zeros((2, 3), np.float32)
    h = np.zeros((2, 3), np.uint16)
    with pytest.raises(TypeError):
        _K.compute(0, x, 1.0, None, h, 1, 1, 3)  # bf16 flag on float32 data
    with pytest.raises(TypeError):
        _K.compute(0, x, 1.0, None, np.empty((2, 3), np.uint16), 1, 1, 2)  # bf16 out, f32 in
    out = np.empty_like(x)
    dx = np.empty_like(x)
    with pytest.raises(ValueError):
        _K.backward(0, x, out, x[:, :2], 1.0, None, dx, None, 1, 0)  # shape mismatch
    with pytest.raises(ValueError):
        _K.backward(0, x, out, np.zeros((2, 3), np.float64), 1.0, None, dx, None, 1, 0)
    with pytest.raises(ValueError):
        _K.backward(0, x, out, x, 1.0, None, np.zeros((3, 2), np.float32).T, None, 1, 0)
    with pytest.raises(ValueError):
        _K.backward(2, x, out, x, 1.0, None, dx, None, 1, 0)  # logsumexp: not here
    with pytest.raises(TypeError):
        _K.backward(0, x, out, x, np.ones(3), None, dx, None, 1, 0)  # T: one per row
    with pytest.raises(TypeError):
        _K.backward(0, x, out, x, 1.0, np.ones((2, 3), np.int8), dx, None, 1, 0)
    with pytest.raises(TypeError):
        _K.backward(0, x, out, x, 1.0, None, dx, np.zeros(2, np.float32), 1, 0)
    _K.backward(0, x, out, x, np.ones(2), np.ones((2, 3), bool), dx, np.zeros(2), 1, 0)
