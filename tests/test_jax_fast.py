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
