"""The lean JAX path (tempscale._jax): same values and gradients as the generic path.

The generic Array-API path is the reference (``tempscale.config(jax_fast=False)``); the lean
path must agree on the whole contract matrix (scalar and per-row temperatures, T = 0 / inf rows,
masks, fully masked rows, +-inf logits, huge spans), in value and in gradient (through ``x`` and
through a temperature array), under ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import tempscale as ts  # noqa: E402
from tempscale import _jax  # noqa: E402
from tempscale._softmax import _generic  # noqa: E402

KINDS = ("softmax", "log_softmax", "logsumexp")


@pytest.fixture(autouse=True, scope="module")
def _x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def _rows(dtype, rng):
    big = float(np.finfo(dtype).max) / 10
    x = rng.normal(size=(9, 6)) * 3
    x[1, 2] = -np.inf                          # one masked logit
    x[2, :] = -np.inf                          # fully masked row
    x[3, 1] = x[3, 4] = np.inf                 # +inf logits share the mass
    x[5] = [1, 3, 3, -np.inf, 0, 3]            # tied maxima
    x[6] = [-3 * big, 3 * big, 0, 1, 2, -big]  # a span beyond the dtype's max
    x[7] = 0.0                                 # constant row
    x[8] = [0, -40, -45, -50, -60, -70]        # nearly certain (log1p matters)
    return x.astype(dtype)


def _tol(dtype):
    return (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)


def _close(a, b, dtype, grad=False):
    rtol, atol = _tol(dtype)
    if grad:
        rtol, atol = rtol * 100, atol * 100
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, equal_nan=True)


TEMPS = ["0.7", "1", "3e5", "small", "rows"]


def _temperature(name, dtype):
    if name == "rows":
        return jnp.asarray([0.7, 0, np.inf, 2, 1, 0.5, 1e30, 3, 1e-3], dtype=dtype)
    if name == "small":
        return 1e-30 if dtype == np.float64 else 1e-20
    return float(name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tname", TEMPS)
def test_values_and_gradients_equal_the_generic_path(dtype, kind, tname):
    masked = tname in ("0.7", "rows")  # a random mask on top of the -inf entries
    rng = np.random.default_rng(abs(hash((kind, tname, masked))) % 2**32)
    x = jnp.asarray(_rows(dtype, rng))
    T = _temperature(tname, dtype)
    mask = jnp.asarray(rng.random(x.shape) > 0.2) if masked else None
    f = getattr(ts, kind)
    _close(f(x, T, mask=mask), _generic(kind, x, T, mask=mask), dtype)

    # gradients (NaN rows aside: a NaN logit's gradient is NaN on both paths)
    out_shape = f(x, T, mask=mask).shape
    g = jnp.asarray(rng.normal(size=out_shape), dtype=dtype)

    def loss(fn, xx, TT):
        r = fn(xx, TT)
        return jnp.sum(jnp.where(jnp.isfinite(r), r, 0) * g)

    lean = lambda xx, TT: f(xx, TT, mask=mask)  # noqa: E731
    ref = lambda xx, TT: _generic(kind, xx, TT, mask=mask)  # noqa: E731
    argnums = 0 if isinstance(T, float) else (0, 1)
    ga = jax.grad(lambda a, b: loss(lean, a, b), argnums=argnums)(x, T)
    gb = jax.grad(lambda a, b: loss(ref, a, b), argnums=argnums)(x, T)
    for u, v in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb), strict=True):
        _close(u, v, dtype, grad=True)


@pytest.mark.parametrize("kind", KINDS)
def test_the_lean_path_is_taken_for_ordinary_temperatures(kind, monkeypatch):
    calls = []
    real = _jax.compute

    def spy(*args, **kwargs):
        r = real(*args, **kwargs)
        calls.append(r is not None)
        return r

    monkeypatch.setattr(_jax, "compute", spy)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    getattr(ts, kind)(x, 0.7)
    getattr(ts, kind)(x, jnp.asarray([0.5, 1.0, 2.0]))
    getattr(ts, kind)(x, 0.0)          # a limit: the generic path
    assert calls == [True, True, False]
    with ts.config(jax_fast=False):
        getattr(ts, kind)(x, 0.7)
    assert calls == [True, True, False]  # switched off: not consulted


@pytest.mark.parametrize("kind", KINDS)
def test_jit_vmap_and_grad_compose(kind):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(4, 3, 7)))
    T = jnp.asarray(rng.uniform(0.2, 3, size=(4, 3)))
    f = getattr(ts, kind)
    eager = f(x, T)
    _close(jax.jit(f)(x, T), eager, np.float64)
    # vmap over the leading axis, per-row temperatures mapped along
    _close(jax.vmap(lambda a, t: f(a, t))(x, T), eager, np.float64)
    # grad through T under jit matches finite differences of the generic path
    loss = lambda t: jnp.sum(jnp.sin(f(x, t)))  # noqa: E731
    ref = lambda t: jnp.sum(jnp.sin(_generic(kind, x, t)))  # noqa: E731
    _close(jax.jit(jax.grad(loss))(T), jax.grad(ref)(T), np.float64, grad=True)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", KINDS)
def test_narrow_dtypes_compute_in_float32(dtype, kind):
    x64 = np.random.default_rng(2).normal(size=(5, 33)) * 4
    x = jnp.asarray(x64, dtype=dtype)
    got = getattr(ts, kind)(x, 0.6)
    assert got.dtype == x.dtype
    want = _generic(kind, jnp.asarray(x, dtype=jnp.float32), 0.6)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64),
                               np.asarray(want.astype(x.dtype), dtype=np.float64),
                               rtol=1e-2, atol=1e-3)


def test_nearly_certain_rows_keep_the_log1p_accuracy():
    # log_softmax at the maximum is -log1p(sum of the others): exact far below float32's eps
    x = jnp.asarray([[0.0, -30.0, -31.0]], dtype=jnp.float32)
    got = float(ts.log_softmax(x, 1.0)[0, 0])
    want = -math.log1p(math.exp(-30.0) + math.exp(-31.0))
    assert got == pytest.approx(want, rel=1e-6)
    assert got != 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_forward_mode_and_second_derivatives(kind):
    # a custom_jvp rule: jvp / jacfwd / hessian work, like on the generic path
    from jax.test_util import check_grads

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, 5)))
    T = jnp.asarray([0.5, 1.0, 2.0])
    f = getattr(ts, kind)
    check_grads(lambda a, t: f(a, t), (x, T), order=2, modes=("fwd", "rev"))
    check_grads(lambda a: f(a, 0.7), (x,), order=2, modes=("fwd", "rev"))
    h = jax.hessian(lambda a: jnp.sum(f(a, 0.7) ** 2))(x[0])
    h_ref = jax.hessian(lambda a: jnp.sum(_generic(kind, a, 0.7) ** 2))(x[0])
    _close(h, h_ref, np.float64, grad=True)


def test_a_very_unlikely_entry_keeps_its_log_softmax_gradient():
    # p underflows to 0 but log_softmax is finite there: its derivative is not 0
    x = jnp.asarray([[0.0, -150.0, 1.0]], dtype=jnp.float32)
    g = jax.grad(lambda a: ts.log_softmax(a, 1.0)[0, 1])(x)
    g_ref = jax.grad(lambda a: _generic("log_softmax", a, 1.0)[0, 1])(x)
    _close(g, g_ref, np.float32)
    assert float(g[0, 1]) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# the scalar-temperature forward's branches: lax.cond on "some row's maximum is not finite"
# (the contract's per-row values) and on "some row has s < 2" (the exact log1p sum)
# --------------------------------------------------------------------------------------------
def _mp_row(kind, row, T):
    """``kind`` of one finite row at 50 digits (mpmath), as float64."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(50):
        y = [mpmath.mpf(float(v)) / mpmath.mpf(T) for v in row]
        lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in y))
        if kind == "logsumexp":
            return np.asarray([float(lse * mpmath.mpf(T))])
        if kind == "log_softmax":
            return np.asarray([float(v - lse) for v in y])
        return np.asarray([float(mpmath.exp(v - lse)) for v in y])


def _batch(ordinary, certain, odd, dtype):
    """Rows: ordinary ones (s >= 2), nearly certain ones (one maximum, s < 2), contract rows."""
    rng = np.random.default_rng(7)
    rows = []
    if ordinary:
        rows += list(rng.normal(size=(2, 6)) * 2)
    if certain:
        rows += [[0.0, -40, -45, -50, -60, -70], [5.0, -30, -31, -33, -34, -35]]
    if odd:
        rows += [[np.inf, 1, np.inf, 0, -np.inf, 2], [-np.inf] * 6, [1, np.nan, 0, 2, 3, 4]]
    if not certain:
        rows += list(rng.normal(size=(1, 6)) * 0.1)  # still s >= 2 (flat)
    return np.asarray(rows, dtype=dtype)


COMBOS = [(o, c, d) for o in (True, False) for c in (True, False) for d in (True, False)
          if o or c or d]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "-".join(
    n for n, on in zip(("ordinary", "certain", "odd"), c, strict=True) if on))
def test_each_branch_matches_mpmath_and_the_generic_path(dtype, kind, combo):
    x = jnp.asarray(_batch(*combo, dtype=dtype))
    T = 0.7
    f = getattr(ts, kind)
    got = jax.jit(lambda a: f(a, T))(x)
    want = _generic(kind, x, T)
    _close(got, want, dtype)
    xs = np.asarray(x, dtype=np.float64)
    for i, row in enumerate(xs):
        if np.all(np.isfinite(row)):  # the 50-digit reference on finite rows
            ref = _mp_row(kind, row, T)
            # (XLA's CPU backend flushes subnormal results to zero)
            np.testing.assert_allclose(np.asarray(got[i], dtype=np.float64).ravel(), ref,
                                       rtol=_tol(dtype)[0], atol=np.finfo(dtype).smallest_normal)
    if combo[1] and kind != "softmax":  # the exact sum: log s of [0, -40, ...] is not 0
        i = 2 if combo[0] else 0
        assert float(np.asarray(got).reshape(len(xs), -1)[i, 0]) != 0.0

    # gradient: closed form in float64 on finite rows, the generic path's everywhere
    g = jnp.asarray(np.random.default_rng(8).normal(size=got.shape), dtype=dtype)

    def loss(fn, a):
        r = fn(a)
        return jnp.sum(jnp.where(jnp.isfinite(r), r, 0) * g)

    ga = jax.jit(jax.grad(lambda a: loss(lambda b: f(b, T), a)))(x)
    gb = jax.grad(lambda a: loss(lambda b: _generic(kind, b, T), a))(x)
    _close(ga, gb, dtype, grad=True)  # NaN rows: constant, zero gradient (both paths)
    for i, row in enumerate(xs):
        if not np.all(np.isfinite(row)):
            continue
        p = _mp_row("softmax", row, T)
        gi = np.asarray(g[i], dtype=np.float64)
        if kind == "softmax":
            ref = p * (gi - np.sum(gi * p)) / T
        elif kind == "log_softmax":
            ref = (gi - p * np.sum(gi)) / T
        else:
            ref = float(gi) * p
        np.testing.assert_allclose(np.asarray(ga[i], dtype=np.float64), ref,
                                   rtol=_tol(dtype)[0] * 100, atol=_tol(dtype)[1] * 100)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_batches_that_take_different_branches(kind):
    # under vmap each lax.cond becomes a select: a batch of batches, one with contract rows,
    # one with a nearly certain row, one ordinary, must give each batch's own result
    f = getattr(ts, kind)
    parts = [_batch(True, False, False, np.float32)[:3], _batch(True, True, False,
             np.float32)[1:4], _batch(False, False, True, np.float32)[:3]]
    stack = jnp.asarray(np.stack(parts))
    got = jax.jit(jax.vmap(lambda a: f(a, 0.7)))(stack)
    for i, part in enumerate(parts):
        _close(got[i], f(jnp.asarray(part), 0.7), np.float32)
        _close(got[i], _generic(kind, jnp.asarray(part), 0.7), np.float32)
    gsum = jax.vmap(jax.grad(lambda a: jnp.sum(jnp.where(jnp.isfinite(r := f(a, 0.7)), r, 0)
                                                * jnp.arange(r.size).reshape(r.shape))))
    ref = jax.grad(lambda a: jnp.sum(jnp.where(jnp.isfinite(r := _generic(kind, a, 0.7)), r, 0)
                                     * jnp.arange(r.size).reshape(r.shape)))
    gv = gsum(stack)
    for i, part in enumerate(parts):
        _close(gv[i], ref(jnp.asarray(part)), np.float32, grad=True)


@pytest.mark.parametrize("T", [4.0, 1e-3 * float(np.finfo(np.float32).max)])
@pytest.mark.parametrize("kind", KINDS)
def test_a_span_beyond_the_dtype_max_with_a_large_temperature(kind, T):
    # x - m overflows to -inf; (x - m)/T is finite for T > 1: the lean forward recomputes the
    # output with the halved form, and huge T sums with it too
    big = float(np.finfo(np.float32).max) * 0.9
    x = jnp.asarray([[-big, big, 0.0, 1.0], [0.5, -1.0, 2.0, 0.0]], dtype=jnp.float32)
    got = getattr(ts, kind)(x, T)
    want = _generic(kind, x, T)
    _close(got, want, np.float32)
    assert np.all(np.isfinite(np.asarray(got))) or kind == "softmax"


# per-row temperatures: a batch whose temperatures are all ordinary takes the lean passes
# (lax.cond on the whole batch); a row at a limit sends the batch to the general form
ROW_TEMPS = {
    "ordinary": [0.7, 1.3, 0.5, 2.0, 0.9, 1.1, 0.6],
    "a T=0 row": [0.7, 1.3, 0.0, 2.0, 0.9, 1.1, 0.6],
    # (T = inf on a row with distinct finite logits gives NaN on the general form under jit,
    # a defect of the general form not covered here)
    "a T=inf row": [0.7, 1.3, 0.5, 2.0, 0.9, np.inf, 0.6],  # the fully masked row
}


def _row_batch(dtype):
    rows = np.asarray(_batch(True, True, True, np.float64)[:7])  # ordinary, s < 2, contract
    return rows.astype(dtype)


@pytest.mark.parametrize(("dtype", "masked"), [(np.float32, False), (np.float64, True)],
                         ids=["float32-unmasked", "float64-masked"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("temps", list(ROW_TEMPS), ids=lambda t: t.replace(" ", "-"))
def test_per_row_temperatures_match_mpmath_and_the_generic_path(dtype, kind, temps, masked):
    x = jnp.asarray(_row_batch(dtype))
    T = jnp.asarray(ROW_TEMPS[temps], dtype=dtype)
    mask = None
    if masked:  # one masked entry in an ordinary row, one in the nearly certain row
        m = np.ones(x.shape, dtype=bool)
        m[0, 3] = m[2, 5] = False
        mask = jnp.asarray(m)
    f = getattr(ts, kind)
    got = jax.jit(lambda a, t: f(a, t, mask=mask))(x, T)
    _close(got, _generic(kind, x, T, mask=mask), dtype)
    xs, ts_ = np.asarray(x, dtype=np.float64), np.asarray(T, dtype=np.float64)
    for i, row in enumerate(xs):
        if np.all(np.isfinite(row)) and 0 < ts_[i] < np.inf and (mask is None or mask[i].all()):
            np.testing.assert_allclose(
                np.asarray(got[i], dtype=np.float64).ravel(), _mp_row(kind, row, ts_[i]),
                rtol=_tol(dtype)[0], atol=np.finfo(dtype).smallest_normal)
    if kind != "softmax" and temps == "ordinary":  # the exact sum of the nearly certain row
        assert float(np.asarray(got).reshape(x.shape[0], -1)[2, 0]) != 0.0

    g = jnp.asarray(np.random.default_rng(9).normal(size=got.shape), dtype=dtype)

    def loss(fn, a, t):
        r = fn(a, t)
        return jnp.sum(jnp.where(jnp.isfinite(r), r, 0) * g)

    lean = lambda a, t: f(a, t, mask=mask)  # noqa: E731
    ref = lambda a, t: _generic(kind, a, t, mask=mask)  # noqa: E731
    ga = jax.jit(jax.grad(lambda a, t: loss(lean, a, t), argnums=(0, 1)))(x, T)
    gb = jax.grad(lambda a, t: loss(ref, a, t), argnums=(0, 1))(x, T)
    for u, v in zip(ga, gb, strict=True):
        _close(u, v, dtype, grad=True)
    # through x alone and through T alone (the other tangent is a symbolic zero)
    _close(jax.grad(lambda a: loss(lean, a, T))(x), gb[0], dtype, grad=True)
    _close(jax.grad(lambda t: loss(lean, x, t))(T), gb[1], dtype, grad=True)


@pytest.mark.parametrize("kind", KINDS)
def test_per_row_temperatures_in_float64_closed_form(kind):
    # the derivative in T against the closed form d/dT at 50 digits (central differences of
    # the mpmath value) on ordinary finite rows
    mpmath = pytest.importorskip("mpmath")
    x = jnp.asarray(_batch(True, True, False, np.float64))
    T = jnp.asarray([0.7, 1.9, 0.4, 1.2][: x.shape[0]], dtype=jnp.float64)
    f = getattr(ts, kind)
    w = np.random.default_rng(3).normal(size=f(x, T).shape)
    gT = jax.grad(lambda t: jnp.sum(f(x, t) * w))(T)
    for i, row in enumerate(np.asarray(x)):
        def val(t, row=row, i=i):
            return float(np.dot(_mp_row(kind, row, t), np.ravel(w[i])))
        with mpmath.workdps(30):
            h = 1e-6
            ref = (val(float(T[i]) + h) - val(float(T[i]) - h)) / (2 * h)
        np.testing.assert_allclose(float(gT[i]), ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_vmap_over_per_row_batches_that_take_different_branches(kind):
    f = getattr(ts, kind)
    x = _row_batch(np.float32)
    stack = jnp.asarray(np.stack([x, x[::-1], x]))
    temps = jnp.asarray(np.stack([ROW_TEMPS["ordinary"], ROW_TEMPS["a T=0 row"],
                                  ROW_TEMPS["a T=inf row"]]), dtype=jnp.float32)
    got = jax.jit(jax.vmap(f))(stack, temps)
    for i in range(3):
        _close(got[i], _generic(kind, stack[i], temps[i]), np.float32)

    def loss(fn, a, t):
        r = fn(a, t)
        return jnp.sum(jnp.where(jnp.isfinite(r), r, 0) * jnp.arange(r.size).reshape(r.shape))

    gv = jax.jit(jax.vmap(jax.grad(lambda a, t: loss(f, a, t), argnums=(0, 1))))(stack, temps)
    for i in range(3):
        want = jax.grad(lambda a, t: loss(lambda b, u: _generic(kind, b, u), a, t),
                        argnums=(0, 1))(stack[i], temps[i])
        _close(gv[0][i], want[0], np.float32, grad=True)
        _close(gv[1][i], want[1], np.float32, grad=True)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
def test_per_row_infinite_temperature_under_jit(kind):
    """A per-row T = inf is the flat limit also once compiled (it was NaN under jit): uniform
    over the unmasked entries, +inf rows sharing among their maxima, logsumexp +inf for two or
    more entries and the entry itself for one; values against the generic path, zero gradient."""
    import jax
    import jax.numpy as jnp

    import tempscale as ts

    inf, nan = np.inf, np.nan
    x = np.array([[1.0, 2.0, 3.0], [0.5, 0.1, -1.0], [1.0, -inf, -inf], [inf, 1.0, inf],
                  [nan, 1.0, 2.0], [-inf, -inf, -inf], [2.0, 2.0, 2.0]], dtype=np.float32)
    T = np.array([[inf], [1.0], [inf], [inf], [inf], [inf], [inf]], dtype=np.float32)
    f = getattr(ts, kind)
    got = np.asarray(jax.jit(lambda a, t: f(a, t))(jnp.asarray(x), jnp.asarray(T)))
    with ts.config(jax_fast=False):
        want = np.asarray(f(x.astype(np.float64), T.astype(np.float64)))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))
    if kind == "softmax":
        np.testing.assert_array_equal(got[0], np.full(3, 1 / 3, np.float32))

    def loss(a, t):
        y = f(a, t)
        return jnp.sum(jnp.where(jnp.isfinite(y), y, 0.0))

    gx, gt = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(T))
    inf_rows = np.isinf(T[:, 0])
    assert np.all(np.asarray(gx)[inf_rows] == 0) and np.all(np.asarray(gt)[inf_rows] == 0)
