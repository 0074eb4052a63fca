"""The compiled moments kernel (``tempscale._native._tsmoments``) behind fit_temperature's NumPy
path: its sums against an mpmath reference (edge rows: -inf entries, huge spans, subnormal
probabilities), every instruction-set variant, strided inputs, and the fit it drives against
the generic (NumPy-chunk) path."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import tempscale
from tempscale.calibration import fit_temperature
from tempscale.calibration._nll import NumpyNLL

M = pytest.importorskip("tempscale._native._tsmoments", reason="moments extension not built")
ISAS = ["baseline", "avx2", "avx512"]


def mp_sums(z, y, w, beta, exp2):
    """(sum w g, sum w var, sum w k3, nonmax) of every row, in 60-digit arithmetic."""
    mpmath.mp.dps = 60
    G = H = K = mpmath.mpf(0)
    nonmax = 0
    for i in range(z.shape[0]):
        row = [mpmath.ldexp(mpmath.mpf(float(v)), -exp2) for v in z[i] if v > -math.inf]
        m = max(row)
        d = [v - m for v in row]
        e = [mpmath.exp(beta * v) for v in d]
        s = mpmath.fsum(e)
        mu = mpmath.fsum(a * b for a, b in zip(e, d, strict=True)) / s
        var = mpmath.fsum(a * (b - mu) ** 2 for a, b in zip(e, d, strict=True)) / s
        k3 = mpmath.fsum(a * (b - mu) ** 3 for a, b in zip(e, d, strict=True)) / s
        dy = mpmath.ldexp(mpmath.mpf(float(z[i, y[i]])), -exp2) - m
        wi = 1 if w is None else mpmath.mpf(float(w[i]))
        G += wi * (mu - dy)
        H += wi * var
        K += wi * k3
        nonmax += int(dy != 0 and wi > 0)
    return float(G), float(H), float(K), nonmax


def check(z, y, w=None, beta=1.0, exp2=0, precise=True, threads=1, rtol=1e-13, isa=None):
    g, h, k3, bad, nonmax = M.moments(z, y, w, beta, exp2, precise, threads, isa=isa)
    G, H, K, nm = mp_sums(z, y, w, beta, exp2)
    assert bad == 0
    assert nonmax == nm
    scale = max(abs(H), abs(G), 1e-300)
    assert g == pytest.approx(G, rel=rtol, abs=rtol * scale)
    assert h == pytest.approx(H, rel=rtol, abs=rtol * scale)
    assert k3 == pytest.approx(K, rel=rtol, abs=rtol * max(abs(K), scale))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k", [1, 3, 10, 33, 70])  # short rows (lane per row) and long rows
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_rows_match_mpmath(isa, k, dtype):
    rng = np.random.default_rng(k)
    n = 13  # not a multiple of the lanes: the leftover rows take the row path
    z = (3 * rng.standard_normal((n, k))).astype(dtype)
    y = rng.integers(0, k, n).astype(np.intp)
    w = rng.uniform(0, 2, n)
    for beta in (0.0, 0.3, 2.5):
        check(z, y, None, beta, isa=isa)
        check(z, y, w, beta, exp2=2, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k", [5, 40])
def test_edge_rows_match_mpmath(isa, k):
    """-inf (masked) entries, a label at the maximum, huge spans, and probabilities down in the
    subnormal range of float64 (exp(-740)): every one within 1e-13 of 60-digit arithmetic."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((9, k))
    z[0, 1:] = -np.inf                      # one unmasked entry (the label's)
    z[1, ::2] = -np.inf                     # half masked
    z[2] = np.linspace(-1e300, 1e300, k)    # a span of 2e300
    z[3, 0] = 740.0                         # the rest at ~exp(-740): subnormal probabilities
    z[4, :] = 7.0                           # a constant row
    z[5, 0] = -1e300
    z[6, -1] = 1e-300
    y = np.zeros(9, np.intp)
    y[2] = k - 1
    y[6] = k - 1
    y[1] = 1                                # the label unmasked
    check(z, y, None, 1.0, isa=isa)
    rest = np.r_[0:2, 3:5, 6:9]             # at beta = 0 a huge span's variance is 1e600
    check(z[rest], y[rest], None, 0.0, isa=isa)
    for beta in (0.0, 0.7):                 # the huge spans, scaled as the fit scales them
        check(z[[2, 5]], y[[2, 5]], None, beta, exp2=1000, isa=isa)
    check(z[3:4], y[3:4], None, 1.0, isa=isa)  # exp(-740) is subnormal: kept, not flushed
    g = M.moments(z[3:4], y[3:4], None, 1.0, 0, True, 1, isa=isa)[1]
    assert g > 0


@pytest.mark.parametrize("isa", ISAS)
def test_float32_arithmetic_is_close(isa):
    """precise=False on float32 logits: float32 arithmetic, close enough to get near the root."""
    rng = np.random.default_rng(1)
    for k in (10, 300):
        z = (2 * rng.standard_normal((50, k))).astype(np.float32)
        y = rng.integers(0, k, 50).astype(np.intp)
        check(z, y, None, 1.3, precise=False, rtol=3e-5, isa=isa)


@pytest.mark.parametrize("isa", ISAS)
def test_rows_it_cannot_take_are_counted(isa):
    z = np.zeros((12, 4))
    z[0, 2] = np.nan
    z[1, 1] = np.inf
    z[2, :] = -np.inf
    z[3, 0] = -np.inf                       # the label masked
    y = np.zeros(12, np.intp)
    for zz in (z, z.astype(np.float32), np.tile(z, (1, 10))):
        for precise in (True, False):
            assert M.moments(zz, y, None, 1.0, 0, precise, 1, isa=isa)[3] == 4


@pytest.mark.parametrize("k", [6, 50])
def test_strided_inputs_equal_contiguous(k):
    rng = np.random.default_rng(2)
    big = rng.standard_normal((40, 2 * k))
    y = rng.integers(0, k, 20).astype(np.intp)
    views = [big[::2, ::2], big[::-2, 1::2], np.asfortranarray(big[:20, :k])]
    for v in views:
        ref = M.moments(np.ascontiguousarray(v), y, None, 1.1, 0, True, 1)
        got = M.moments(v, y, None, 1.1, 0, True, 1)
        np.testing.assert_allclose(got[:3], ref[:3], rtol=1e-14)
        assert got[3:] == ref[3:]


def test_threads_split_rows():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((30001, 12)).astype(np.float32)
    y = rng.integers(0, 12, 30001).astype(np.intp)
    one = M.moments(z, y, None, 0.8, 0, True, 1)
    for t in (2, 3, 7):
        np.testing.assert_allclose(M.moments(z, y, None, 0.8, 0, True, t)[:3], one[:3],
                                   rtol=1e-12)


def test_bad_arguments():
    z = np.zeros((3, 2))
    with pytest.raises(TypeError, match="2-D"):
        M.moments(np.zeros(3), np.zeros(3, np.intp), None, 1.0, 0, True, 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        M.moments(z.astype(np.int64), np.zeros(3, np.intp), None, 1.0, 0, True, 1)
    with pytest.raises(ValueError, match="one entry per row"):
        M.moments(z, np.zeros(2, np.intp), None, 1.0, 0, True, 1)
    with pytest.raises(ValueError, match="out of range"):
        M.moments(z, np.array([0, 2, 0]), None, 1.0, 0, True, 1)
    with pytest.raises(ValueError, match="isa"):
        M.moments(z, np.zeros(3, np.intp), None, 1.0, 0, True, 1, isa="sse9")
    assert M.isa() in ISAS


# ------------------------------------------------------------------------------------------
# the fit it drives
# ------------------------------------------------------------------------------------------
def _data(n, k, seed=0, dtype=np.float32, scale=4.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.standard_normal((n, k)) + 1.5 * np.eye(k)[y]
    return (scale * z).astype(dtype), y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "k"), [(500, 3), (60_000, 10), (3000, 200)])
def test_fit_equals_generic_path(dtype, n, k):
    z, y = _data(n, k, dtype=dtype)
    w = np.random.default_rng(1).uniform(0.1, 2.0, n)
    for sw in (None, w):
        T = fit_temperature(z, y, sample_weight=sw)
        with tempscale.config(native=False):
            T_ref = fit_temperature(z, y, sample_weight=sw)
        assert T == pytest.approx(T_ref, rel=1e-12)


def test_fit_takes_strided_logits_and_every_scale():
    z, y = _data(4000, 8, dtype=np.float64)
    T = fit_temperature(z, y)
    assert fit_temperature(np.asfortranarray(z), y) == pytest.approx(T, rel=1e-13)
    zz = np.repeat(z, 2, axis=1)[:, ::2]
    assert not zz.flags.c_contiguous
    assert fit_temperature(zz, y) == pytest.approx(T, rel=1e-13)
    for c in (2.0 ** -900, 2.0 ** 900):
        assert fit_temperature(z * c, y) == pytest.approx(T * c, rel=1e-12)


def test_fit_with_masked_entries_falls_back_to_the_generic_path():
    z, y = _data(2000, 6, dtype=np.float64)
    z[::7, 5] = -np.inf
    y[::7] = np.minimum(y[::7], 4)
    T = fit_temperature(z, y)
    with tempscale.config(native=False):
        assert T == pytest.approx(fit_temperature(z, y), rel=1e-12)


def test_kernel_matches_numpy_evaluator():
    """The same derivatives as the NumPy-chunk evaluator (the previous implementation)."""
    z, y = _data(20_000, 10, dtype=np.float32)
    yi = y.astype(np.intp)
    ref = NumpyNLL(z, yi, None, threads=1, exp2=3)
    for beta in (0.2, 1.0, 5.0):
        g, h, k3, bad, _ = M.moments(z, yi, None, beta, 3, True, 2)
        r = ref.evaluate(beta, True)
        assert bad == 0 and r is not None
        np.testing.assert_allclose(np.array([g, h, k3]) / 20_000, r, rtol=1e-11)
