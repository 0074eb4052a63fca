"""The temperature softmax family against exact references, on every backend."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tempscale
from tempscale import log_softmax, logsumexp, softmax, temper

from .conftest import assert_close, to_numpy

INF = math.inf
mpmath.mp.dps = 60


# ------------------------------------------------------------------------------------------
# an exact, independent reference (mpmath, 60 digits) that spells out every limit
# ------------------------------------------------------------------------------------------
def ref_row(row, T):
    """(softmax, log_softmax, logsumexp) of one row at temperature T, exactly."""
    row = [float(v) for v in row]
    n = len(row)
    if any(math.isnan(v) for v in row):
        return [math.nan] * n, [math.nan] * n, math.nan
    valid = [v > -INF for v in row]
    if not any(valid):
        return [0.0] * n, [-INF] * n, -INF
    m = max(v for v, ok in zip(row, valid, strict=True) if ok)
    if m == INF or T == 0:
        top = [v == m for v in row]
        k = sum(top)
        p = [1.0 / k if t else 0.0 for t in top]
        lp = [-math.log(k) if t else -INF for t in top]
        return p, lp, m
    if T == INF:
        k = sum(valid)
        p = [1.0 / k if ok else 0.0 for ok in valid]
        lp = [-math.log(k) if ok else -INF for ok in valid]
        return p, lp, (row[valid.index(True)] if k == 1 else INF)
    Tm = mpmath.mpf(T)
    ys = [(mpmath.mpf(v) - mpmath.mpf(m)) / Tm if ok else None for v, ok in zip(row, valid, strict=True)]
    s = mpmath.fsum(mpmath.exp(y) for y in ys if y is not None)
    ls = mpmath.log(s)
    p = [float(mpmath.exp(y) / s) if y is not None else 0.0 for y in ys]
    lp = [float(y - ls) if y is not None else -INF for y in ys]
    lse = float(mpmath.mpf(m) + Tm * ls)
    return p, lp, lse


def ref(x, T, axis=-1):
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    Ts = np.broadcast_to(np.asarray(T, dtype=np.float64), x.shape[:-1])
    P, LP, L = np.empty_like(x), np.empty_like(x), np.empty(x.shape[:-1])
    for idx in np.ndindex(*x.shape[:-1]):
        p, lp, lse = ref_row(x[idx], float(Ts[idx]))
        P[idx], LP[idx], L[idx] = p, lp, lse
    return np.moveaxis(P, -1, axis), np.moveaxis(LP, -1, axis), L


# ------------------------------------------------------------------------------------------
# seed cases
# ------------------------------------------------------------------------------------------
def test_seed_three_classes():
    out = softmax([[-1, 0, 1]], 0.5)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[0.01587624, 0.11731043, 0.86681333]], rtol=0, atol=5e-9)
    out32 = softmax(np.array([[-1, 0, 1]], dtype=np.float32), 0.5)
    assert out32.dtype == np.float32
    exact = np.array(ref([[-1, 0, 1]], 0.5)[0])
    # within 2 ulp of the correctly rounded float32 value
    ulp = np.spacing(exact.astype(np.float32))
    assert np.all(np.abs(out32.astype(np.float64) - exact) <= 2 * ulp)
    np.testing.assert_allclose(out32, [[0.01587624, 0.11731043, 0.86681333]], rtol=1e-6)


SEED_T = [0.1, 0.5, 1, 2, 10]


def seed_vector():
    i = np.arange(10)
    return np.exp(-0.5 * (i - 4.0) ** 2) / math.sqrt(2 * math.pi)


@pytest.mark.parametrize("T", SEED_T)
def test_seed_gaussian_figure_inputs(xp, T):
    p = seed_vector()
    exp_p, exp_lp, exp_lse = ref(p, T)
    x = xp.asarray(p)
    assert_close(softmax(x, T), exp_p, xp=xp, rtol=1e-12, atol=1e-15)
    assert_close(log_softmax(x, T), exp_lp, xp=xp, rtol=1e-12, atol=1e-12)
    assert_close(logsumexp(x, T), exp_lse, xp=xp, rtol=1e-12, atol=1e-12)
    # and against SciPy's softmax(x / T), the formula users write by hand
    np.testing.assert_allclose(to_numpy(softmax(x, T)), scipy.special.softmax(p / T), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# the contract matrix: rows x temperatures x dtypes x backends
# ------------------------------------------------------------------------------------------
BIG32 = float(np.finfo(np.float32).max)
ROWS = {
    "plain": [-1.0, 0.0, 1.0, 2.5],
    "ties": [3.0, 1.0, 3.0, -2.0],
    "masked": [-INF, 0.5, -INF, 2.0],
    "all_masked": [-INF, -INF, -INF, -INF],
    "pos_inf": [1.0, INF, 0.0, -INF],
    "pos_inf_ties": [INF, 2.0, INF, 1.0],
    "nan": [0.0, math.nan, 1.0, 2.0],
    "huge": [BIG32, -BIG32, 0.0, BIG32 / 2],
    "tiny_gaps": [1e-30, 2e-30, 0.0, -1e-30],
    "one_valid": [-INF, 7.0, -INF, -INF],
    "constant": [4.0, 4.0, 4.0, 4.0],
}
TEMPS = [0.0, 1e-30, 0.5, 1.0, 2.0, 1e30, INF]


def dname(dt) -> str:
    text = str(dt)
    if "torch" in text or "array_api_strict" in text:
        return text.split(".")[-1].rstrip("'>")
    return np.dtype(dt).name


def _dtypes(xp):
    names = ["float64", "float32"]
    if hasattr(xp, "float16"):
        names.append("float16")
    if hasattr(xp, "bfloat16"):
        names.append("bfloat16")
    return [getattr(xp, n) for n in names]


FMAX = {"float64": 1.7976931348623157e308, "float32": BIG32, "float16": 65504.0,
        "bfloat16": 3.3895313892515355e38}


def _overflow_as(a, name):
    """A float64 reference as the dtype holds it: beyond the dtype's max is +-inf."""
    a = np.array(a, dtype=np.float64)
    big = np.abs(a) > FMAX[name] * (1 + 2.0 ** -11)
    a[big] = np.sign(a[big]) * INF
    return a


def _representable(row, dtype_name):
    fmax = {"float64": 1.8e308, "float32": BIG32, "float16": 65504.0, "bfloat16": 3.38e38}[dtype_name]
    return all(not math.isfinite(v) or abs(v) <= fmax for v in row)


@pytest.mark.parametrize("T", TEMPS, ids=lambda t: f"T={t:g}")
def test_contract_matrix(xp, T):
    for dt in _dtypes(xp):
        name = dname(dt)
        for label, row in ROWS.items():
            if not _representable(row, name):
                continue
            x = xp.asarray([row], dtype=dt)
            xr = to_numpy(x).astype(np.float64)  # the row as the dtype holds it
            p, lp, lse = (_overflow_as(a, name) for a in ref(xr, T))
            ctx = f"{label} T={T} {name}"
            got_p = softmax(x, T)
            got_lp = log_softmax(x, T)
            got_l = logsumexp(x, T)
            assert got_p.dtype == dt and got_lp.dtype == dt and got_l.dtype == dt, ctx
            gp, glp, gl = (to_numpy(a).astype(np.float64) for a in (got_p, got_lp, got_l))
            assert not np.isnan(gp).any() or np.isnan(xr).any(), ctx
            t = {"float64": 1e-12, "float32": 2e-6, "float16": 2e-3, "bfloat16": 1.6e-2}[name]
            np.testing.assert_allclose(gp, p, rtol=t, atol=t, err_msg=ctx, equal_nan=True)
            fin = np.isfinite(lp)
            np.testing.assert_array_equal(np.isfinite(glp), fin, err_msg=ctx)
            np.testing.assert_allclose(glp[fin], lp[fin], rtol=t, atol=t * 10, err_msg=ctx)
            np.testing.assert_array_equal(glp[~fin], lp[~fin], err_msg=ctx)
            if np.isfinite(lse).all():
                np.testing.assert_allclose(gl, lse, rtol=t, atol=t, err_msg=ctx)
            else:
                np.testing.assert_array_equal(gl, lse, err_msg=ctx)


def test_float16_no_overflow_large_logits(xp):
    if not hasattr(xp, "float16"):
        pytest.skip("the Array API standard (array-api-strict) has no float16")
    x = xp.asarray([[60000.0, -60000.0, 65504.0]], dtype=xp.float16)
    p = softmax(x, 0.01)
    assert p.dtype == xp.float16
    np.testing.assert_array_equal(to_numpy(p).astype(float), [[0, 0, 1]])
    out = softmax(x, 0.5, dtype=xp.float32)
    assert out.dtype == xp.float32


def test_integer_and_bool_promote(xp):
    x = xp.asarray([[1, 2, 3]])
    p = softmax(x, 1.0)
    assert xp.isdtype(p.dtype, "real floating")
    np.testing.assert_allclose(to_numpy(p), scipy.special.softmax([[1, 2, 3]], axis=-1), rtol=1e-6)
    b = softmax(xp.asarray([True, False]))
    np.testing.assert_allclose(to_numpy(b), scipy.special.softmax([1.0, 0.0]), rtol=1e-6)


# ------------------------------------------------------------------------------------------
# random inputs vs SciPy; axes; per-row temperatures; masks
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1, 2, -3])
def test_axes_and_per_row_temperature(xp, axis):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3, size=(3, 4, 5))
    rows_shape = np.delete(np.array(x.shape), axis % 3)
    T = rng.uniform(0.2, 3.0, size=tuple(rows_shape))
    expected = scipy.special.softmax(x / np.expand_dims(T, axis), axis=axis)
    got = softmax(xp.asarray(x), xp.asarray(T), axis=axis)
    assert_close(got, expected, xp=xp, rtol=1e-12, atol=1e-14)
    # keepdims form of the temperature gives the same
    got2 = softmax(xp.asarray(x), xp.asarray(np.expand_dims(T, axis)), axis=axis)
    assert_close(got2, expected, xp=xp, rtol=1e-12, atol=1e-14)
    exp_lse = np.expand_dims(T, axis) * scipy.special.logsumexp(x / np.expand_dims(T, axis), axis=axis, keepdims=True)
    assert_close(logsumexp(xp.asarray(x), xp.asarray(T), axis=axis, keepdims=True), exp_lse, xp=xp, rtol=1e-12)
    assert_close(logsumexp(xp.asarray(x), xp.asarray(T), axis=axis), np.squeeze(exp_lse, axis), xp=xp, rtol=1e-12)


def test_per_row_special_temperatures(xp):
    x = np.array([[1.0, 3.0, 3.0], [1.0, 2.0, -INF], [0.0, 1.0, 2.0]])
    T = np.array([0.0, INF, 1.0])
    p, lp, lse = ref(x, T)
    assert_close(softmax(xp.asarray(x), xp.asarray(T)), p, xp=xp)
    assert_close(log_softmax(xp.asarray(x), xp.asarray(T)), lp, xp=xp)
    assert_close(logsumexp(xp.asarray(x), xp.asarray(T)), lse, xp=xp)


def test_mask_equals_neg_inf(xp):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6))
    mask = rng.random((4, 6)) > 0.4
    mask[2] = False  # a fully masked row
    xm = np.where(mask, x, -INF)
    for f in (softmax, log_softmax, logsumexp):
        a = f(xp.asarray(x), 0.7, mask=xp.asarray(mask))
        b = f(xp.asarray(xm), 0.7)
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    # a broadcast mask (one per class)
    cm = np.array([True, False, True, True, False, True])
    a = softmax(xp.asarray(x), 2.0, mask=xp.asarray(cm))
    assert_close(a, ref(np.where(cm, x, -INF), 2.0)[0], xp=xp)
    # a masked NaN is a masked entry, not a NaN row
    xn = x.copy()
    xn[0, 0] = math.nan
    m0 = np.ones_like(mask)
    m0[0, 0] = False
    assert not np.isnan(to_numpy(softmax(xp.asarray(xn), 1.0, mask=xp.asarray(m0)))).any()


def test_axis_none_whole_array(xp):
    x = np.arange(6.0).reshape(2, 3)
    got = softmax(xp.asarray(x), 2.0, axis=None)
    assert_close(got, scipy.special.softmax(x / 2.0, axis=None), xp=xp)
    got_l = logsumexp(xp.asarray(x), 2.0, axis=None)
    assert_close(got_l, 2.0 * scipy.special.logsumexp(x / 2.0), xp=xp, shape=())


def test_zero_d_and_empty(xp):
    # empty rows: nothing to share, like an all-masked row
    e = xp.asarray(np.zeros((3, 0)))
    assert tuple(softmax(e).shape) == (3, 0)
    np.testing.assert_array_equal(to_numpy(logsumexp(e)), [-INF] * 3)
    # no rows at all
    e2 = xp.asarray(np.zeros((0, 4)))
    assert tuple(softmax(e2, 0.5).shape) == (0, 4)
    assert tuple(logsumexp(e2).shape) == (0,)
    # 0-d: axis=-1 is out of bounds (as in NumPy), axis=None works
    z = xp.asarray(3.0)
    with pytest.raises(IndexError, match="axis -1 is out of bounds for array of dimension 0"):
        softmax(z)
    assert float(to_numpy(softmax(z, axis=None))) == 1.0
    assert float(to_numpy(logsumexp(z, 0.5, axis=None))) == 3.0


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("func", [softmax, log_softmax, logsumexp])
def test_bad_temperature(func, xp):
    x = xp.asarray([[1.0, 2.0]])
    name = func.__name__
    with pytest.raises(ValueError, match=rf"'temperature' parameter of {name} must be .* Got -1\.0 instead"):
        func(x, -1.0)
    with pytest.raises(ValueError, match=rf"'temperature' parameter of {name}.*Got nan instead"):
        func(x, float("nan"))
    with pytest.raises(ValueError, match=rf"'temperature' parameter of {name}.*Got -0\.5 instead"):
        func(x, xp.asarray([-0.5]))
    with pytest.raises(ValueError, match=r"per-row temperatures of shape \(1,\)"):
        func(x, xp.asarray([1.0, 2.0, 3.0]))


def test_bad_axis_and_mask():
    x = np.ones((2, 3))
    with pytest.raises(IndexError, match="axis 2 is out of bounds for array of dimension 2"):
        softmax(x, axis=2)
    with pytest.raises(np.exceptions.AxisError):
        log_softmax(x, axis=-3)
    with pytest.raises(TypeError, match="'axis' parameter of softmax must be an int"):
        softmax(x, axis=1.5)
    with pytest.raises(TypeError, match="'mask' parameter of softmax must be a boolean array"):
        softmax(x, mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"'mask' parameter of logsumexp must be broadcastable"):
        logsumexp(x, mask=np.ones((4,), dtype=bool))
    with pytest.raises(TypeError, match="'dtype' parameter of softmax"):
        softmax(x, dtype=np.int32)
    with pytest.raises(TypeError, match="'x' parameter of softmax must be an array of real numbers"):
        softmax(np.ones(3, dtype=complex))
    with pytest.raises(ValueError, match="'p' parameter of temper must be an array of non-negative"):
        temper(np.array([0.5, -0.1]), 1.0)


def test_no_input_mutation_and_namespace_of_lists():
    x = np.array([[1.0, 2.0, 3.0]])
    x.setflags(write=False)
    softmax(x, 0.3)
    out = softmax([1, 2, 3], 1.0)
    assert isinstance(out, np.ndarray)


# ------------------------------------------------------------------------------------------
# temper
# ------------------------------------------------------------------------------------------
def test_temper_matches_power_formula(xp):
    p = np.array([[0.05, 0.15, 0.0, 0.8], [0.25, 0.25, 0.25, 0.25]])
    for T in [0.3, 1.0, 2.0, 7.0]:
        w = np.where(p > 0, p ** (1 / T), 0)
        assert_close(temper(xp.asarray(p), T), w / w.sum(-1, keepdims=True), xp=xp)
    assert_close(temper(xp.asarray(p), 0.0), [[0, 0, 0, 1], [0.25] * 4], xp=xp)
    assert_close(temper(xp.asarray(p), INF), [[1 / 3, 1 / 3, 0, 1 / 3], [0.25] * 4], xp=xp)
    # the seed mistake: softmax over probabilities is near-flat, temper is not
    s = seed_vector()
    assert to_numpy(softmax(xp.asarray(s))).max() < 0.15
    assert to_numpy(temper(xp.asarray(s), 1.0)).max() > 0.39


# ------------------------------------------------------------------------------------------
# autodiff
# ------------------------------------------------------------------------------------------
def test_torch_gradcheck_x_and_temperature():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    T = torch.tensor([0.5, 1.3, 4.0], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 0, 1]], dtype=torch.bool)
    for f in (softmax, log_softmax):  # masked outputs are constants (0 or -inf): compare the rest
        assert torch.autograd.gradcheck(lambda a, t, f=f: torch.where(mask, f(a, t, mask=mask), 0), (x, T))
    for f in (softmax, log_softmax, logsumexp):
        assert torch.autograd.gradgradcheck(lambda a, t, f=f: f(a, t), (x, T))
    assert torch.autograd.gradcheck(lambda a: softmax(a, 0.7, axis=0), (x,))


def test_torch_masked_rows_have_zero_not_nan_gradients():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[-INF, -INF, -INF], [0.0, -INF, 1.0], [1.0, INF, 2.0]],
                     dtype=torch.float64, requires_grad=True)
    T = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    for f in (softmax, log_softmax):
        out = f(x, T)
        w = torch.ones_like(out)
        loss = (torch.where(torch.isfinite(out), out, torch.zeros_like(out)) * w).sum()
        gx, gT = torch.autograd.grad(loss, (x, T))
        assert torch.isfinite(gx).all() and torch.isfinite(gT).all(), f.__name__
        assert (gx[0] == 0).all()
    lse = logsumexp(x[:2], T)
    gx, = torch.autograd.grad(torch.where(torch.isfinite(lse), lse, 0).sum(), (x,))
    assert torch.isfinite(gx).all() and (gx[0] == 0).all()
    # T = 0 and T = inf rows: finite gradients
    x2 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    Tz = torch.tensor([0.0, INF], dtype=torch.float64, requires_grad=True)
    gx, gT = torch.autograd.grad(softmax(x2, Tz).pow(2).sum(), (x2, Tz))
    assert torch.isfinite(gx).all() and torch.isfinite(gT).all()


def test_torch_gradient_matches_analytic():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[0.3, -1.2, 2.0, 0.1]], dtype=torch.float64, requires_grad=True)
    T = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    lse = logsumexp(x, T)[0]
    gx, gT = torch.autograd.grad(lse, (x, T))
    p = softmax(x.detach(), 1.7)
    # d/dx [T log sum exp(x/T)] = softmax(x/T);  d/dT = log s - sum p x / T
    torch.testing.assert_close(gx, p)
    xs = x.detach()[0]
    expected_gT = torch.logsumexp(xs / 1.7, 0) - (p[0] * xs).sum() / 1.7
    torch.testing.assert_close(gT, expected_gT)


def test_jax_grad_jit_vmap():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax.test_util import check_grads

    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    T = jnp.asarray([0.5, 1.0, 3.0])

    def f(a, t):
        return jnp.sum(log_softmax(a, t) * jnp.arange(5.0)) + jnp.sum(logsumexp(a, t))

    check_grads(f, (x, T), order=2, modes=["rev", "fwd"])
    jf = jax.jit(lambda a, t: softmax(a, t))
    np.testing.assert_allclose(jf(x, T), softmax(x, T), rtol=1e-12)
    v = jax.vmap(lambda row, t: softmax(row, t))(x, T)
    np.testing.assert_allclose(v, softmax(x, T), rtol=1e-12)
    # fully masked rows: zero gradients, no NaN, under jit
    xm = jnp.asarray([[-INF, -INF], [0.0, -INF]])
    g = jax.jit(jax.grad(lambda a: jnp.sum(softmax(a, 0.5) ** 2)))(xm)
    assert np.isfinite(np.asarray(g)).all()
    gt = jax.grad(lambda t: jnp.sum(softmax(x, t)[:, 0]))(T)
    assert np.isfinite(np.asarray(gt)).all()


def test_jit_with_traced_negative_temperature_is_not_checked_eagerly():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    out = jax.jit(lambda t: softmax(jnp.asarray([1.0, 2.0]), t))(jnp.asarray(-1.0))
    assert np.isnan(np.asarray(out)).all()  # a traced negative T cannot raise; it gives NaN
    out = jax.jit(lambda t: softmax(jnp.asarray([1.0, 2.0]), t))(1.0)
    np.testing.assert_allclose(out, scipy.special.softmax([1.0, 2.0]))


def test_dask_backend():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6))
    dx = da.from_array(x, chunks=(4, 6))
    got = softmax(dx, 0.5)
    assert type(got).__module__.startswith("dask")
    np.testing.assert_allclose(got.compute(), scipy.special.softmax(x / 0.5, axis=-1), rtol=1e-12)
    np.testing.assert_allclose(logsumexp(dx, 2.0).compute(), 2 * scipy.special.logsumexp(x / 2, axis=-1))


# ------------------------------------------------------------------------------------------
# properties (hypothesis)
# ------------------------------------------------------------------------------------------
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), elements=finite)
temps = st.one_of(st.floats(1e-3, 1e3), st.sampled_from([0.0, INF]))


@settings(max_examples=150, deadline=None)
@given(arrays, temps)
def test_rows_sum_to_one_and_log_consistency(x, T):
    p = softmax(x, T)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-12)
    assert (p >= 0).all()
    lp = log_softmax(x, T)
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-9, atol=1e-300)
    lse = logsumexp(x, T)
    assert (lse >= x.max(-1) - 1e-9 * np.abs(x).max(-1)).all()


@settings(max_examples=100, deadline=None)
@given(arrays, st.floats(1e-2, 1e2), st.floats(-1e3, 1e3))
def test_shift_and_scale_invariance(x, T, c):
    p = softmax(x, T)
    np.testing.assert_allclose(softmax(x + c, T), p, atol=1e-8)
    np.testing.assert_allclose(softmax(3.0 * x, 3.0 * T), p, atol=1e-8)


@settings(max_examples=100, deadline=None)
@given(arrays)
def test_limits(x):
    n = x.shape[-1]
    np.testing.assert_allclose(softmax(x, 1e300), np.full(x.shape, 1.0 / n), rtol=1e-9)
    np.testing.assert_array_equal(softmax(x, INF), np.full(x.shape, 1.0 / n))
    p0 = softmax(x, 0.0)
    ismax = x == x.max(-1, keepdims=True)
    np.testing.assert_allclose(p0, ismax / ismax.sum(-1, keepdims=True))
    np.testing.assert_array_equal(logsumexp(x, 0.0), x.max(-1))


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 8), elements=finite), st.floats(0.05, 20))
def test_matches_mpmath(x, T):
    p, lp, lse = ref(x, T)
    np.testing.assert_allclose(softmax(x, T), p, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(logsumexp(x, T), lse, rtol=1e-12)


def test_public_functions_exported():
    for name in ("softmax", "log_softmax", "logsumexp", "temper"):
        assert getattr(tempscale, name).__module__ == "tempscale._softmax"


@pytest.mark.parametrize("T", [1e-30, 0.3, 1.0, 2.5, 1e30, "rows"])
def test_torch_fused_path_equals_generic(T):
    torch = pytest.importorskip("torch")
    import tempscale._softmax as sm

    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 9, generator=g, dtype=torch.float64) * 50
    x[1, 2] = -INF
    x[2] = -INF  # a fully masked row
    x[3, 0] = 1e300
    mask = torch.rand(6, 9, generator=g) > 0.2
    temp = torch.rand(6, generator=g, dtype=torch.float64) * 3 + 0.1 if T == "rows" else T
    for kind in ("softmax", "log_softmax", "logsumexp"):
        for m in (None, mask):
            fused = getattr(sm, kind)(x, temp, mask=m)
            generic = sm._generic(kind, x, temp, mask=m)
            torch.testing.assert_close(fused, generic, rtol=1e-10, atol=1e-14, equal_nan=True)
    # gradients through the fused path: finite, and equal to the generic path's
    xr = x.clone().requires_grad_(True)
    w = torch.randn(6, 9, generator=g, dtype=torch.float64)
    (gf,) = torch.autograd.grad((sm.softmax(xr, temp) * w).sum(), xr)
    (gg,) = torch.autograd.grad((sm._generic("softmax", xr, temp) * w).sum(), xr)
    assert torch.isfinite(gf).all()
    torch.testing.assert_close(gf, gg, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("T", [5e-324, 1e-44, 1e-310])
def test_subnormal_temperature_gives_the_limit_not_nan(xp, T, generic_path):
    for dt in (xp.float32, xp.float64):
        p = to_numpy(softmax(xp.asarray([[1.0, 2.0, 2.0, -1.0]], dtype=dt), T))
        np.testing.assert_array_equal(p, [[0, 0.5, 0.5, 0]])


def test_torch_fused_fully_masked_rows_get_zero_gradient():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[-INF, -INF, -INF], [0.5, -INF, 2.0]], dtype=torch.float64, requires_grad=True)
    for f in (softmax, log_softmax, logsumexp):
        out = f(x, 0.7)  # a Python-float T: the fused path
        w = torch.ones_like(out)
        (g,) = torch.autograd.grad(torch.where(torch.isfinite(out), out * w, 0).sum(), x)
        assert torch.isfinite(g).all(), f.__name__
        assert (g[0] == 0).all() and (g[1, 1] == 0), f.__name__


def test_integer_01_masks_equal_boolean_masks(xp):
    """``mask`` takes booleans or 0/1 integers (the argument layer's one rule for masks)."""
    x = xp.asarray([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]])
    mb = np.array([[True, False, True, True], [False, True, True, True]])
    mi = mb.astype(np.int32)
    for f in (softmax, log_softmax, logsumexp):
        want = to_numpy(f(x, 0.7, mask=xp.asarray(mb)))
        np.testing.assert_array_equal(to_numpy(f(x, 0.7, mask=xp.asarray(mi))), want)
    with pytest.raises(ValueError, match="'mask' parameter of softmax must be a boolean array.*"
                                         "0/1 integers. Got 2 instead"):
        softmax(x, mask=xp.asarray(mi * 2))


def test_config_switches_the_native_path_off(monkeypatch):
    """``tempscale.config(native=False)`` keeps NumPy calls off the compiled kernel (and the
    result is the generic path's, equal to the float64 reference)."""
    from tempscale import _config, _native

    calls = []
    inner = _native.try_compute

    def counting(*args, **kwargs):
        calls.append(args[0])
        return inner(*args, **kwargs)

    monkeypatch.setattr(_native, "try_compute", counting)
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    with _config.config(native=False):
        got = softmax(x, 0.5)
    assert calls == []
    want = np.exp(x / 0.5 - np.log(np.exp(x / 0.5).sum(-1, keepdims=True)))
    np.testing.assert_allclose(got, want, rtol=1e-14)
    softmax(x, 0.5)
    assert calls == ["softmax"]
