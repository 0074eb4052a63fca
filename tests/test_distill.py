"""Tests for tempscale.distill.kd_loss (the Array-API distillation loss)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import rel_entr

from tempscale.distill import kd_loss

from .conftest import assert_close, to_numpy

INF = math.inf


# ---------------------------------------------------------------------------------------------
# an independent float64 reference (SciPy), written row by row
# ---------------------------------------------------------------------------------------------
def _ref_rows(s, t, T, Tt=None, labels=None, alpha=None, divergence="forward", beta=0.5,
              t2=True, ignore_index=-100, mask=None):
    s = np.asarray(s, np.float64)
    t = np.asarray(t, np.float64)
    n, v = s.shape
    T = np.broadcast_to(np.asarray(T, np.float64), (n,))
    Tt = T if Tt is None else np.broadcast_to(np.asarray(Tt, np.float64), (n,))
    if labels is not None and alpha is None:
        alpha = 0.5
    rows = np.zeros(n)
    for i in range(n):
        if mask is not None and not mask[i]:
            continue
        if labels is not None and labels[i] == ignore_index:
            continue
        p = np.exp(sp_log_softmax(t[i] / Tt[i]))
        q = np.exp(sp_log_softmax(s[i] / T[i]))
        div = divergence
        if div == "jsd" and beta == 0:
            div = "forward"
        if div == "jsd" and beta == 1:
            div = "reverse"
        if div == "forward":
            d = rel_entr(p, q).sum()
        elif div == "reverse":
            d = rel_entr(q, p).sum()
        else:
            m = beta * p + (1 - beta) * q
            d = beta * rel_entr(p, m).sum() + (1 - beta) * rel_entr(q, m).sum()
        if t2:
            d *= T[i] ** 2
        if labels is not None:
            ce = -sp_log_softmax(s[i])[labels[i]]
            d = alpha * d + (1 - alpha) * ce
        rows[i] = d
    return rows


def _rng_logits(n=6, v=7, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, v)) * scale, rng.normal(size=(n, v)) * scale


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_matches_reference_on_every_backend(xp, divergence):
    s, t = _rng_logits()
    labels = np.array([0, 3, -100, 6, 2, 1])
    for kw in ({}, {"labels": labels, "alpha": 0.3}):
        lab = kw.get("labels")
        ref = _ref_rows(s, t, 2.5, divergence=divergence, labels=lab, alpha=kw.get("alpha"))
        n_valid = 6 if lab is None else 5
        args = dict(kw)
        if lab is not None:
            args["labels"] = xp.asarray(lab)
        got = kd_loss(xp.asarray(s), xp.asarray(t), 2.5, divergence=divergence, **args)
        assert_close(got, ref.sum() / n_valid, xp=xp, shape=())
        got = kd_loss(xp.asarray(s), xp.asarray(t), 2.5, divergence=divergence, reduction="none",
                      **args)
        assert_close(got, ref, xp=xp)
        got = kd_loss(xp.asarray(s), xp.asarray(t), 2.5, divergence=divergence, reduction="sum",
                      **args)
        assert_close(got, ref.sum(), xp=xp, shape=())


def test_float32_on_every_backend(xp):
    s, t = _rng_logits(seed=3)
    ref = _ref_rows(s, t, 2.0).mean()
    got = kd_loss(xp.asarray(s, dtype=xp.float32), xp.asarray(t, dtype=xp.float32), 2.0)
    assert_close(got, ref, xp=xp, dtype=xp.float32, rtol=1e-5, atol=1e-6)


def test_matches_naive_torch_formulation():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    s, t = _rng_logits(n=16, v=50, seed=1)
    S, Tt = torch.tensor(s), torch.tensor(t)
    T = 3.0
    naive = F.kl_div(F.log_softmax(S / T, -1), F.softmax(Tt / T, -1), reduction="batchmean") * T * T
    assert_close(kd_loss(S, Tt, T), float(naive))
    # the "mean" trap: PyTorch's elementwise mean is the KL divided by the vocabulary size
    with pytest.warns(UserWarning, match="batchmean"):
        trap = F.kl_div(F.log_softmax(S / T, -1), F.softmax(Tt / T, -1), reduction="mean") * T * T
    assert_close(kd_loss(S, Tt, T) / 50, float(trap))
    # hard term: the same as F.cross_entropy with ignore_index
    labels = torch.tensor([1, 2, -100, 4] * 4)
    ce = F.cross_entropy(S, labels, ignore_index=-100)
    keep = labels != -100
    kl = F.kl_div(F.log_softmax(S[keep] / T, -1), F.softmax(Tt[keep] / T, -1),
                  reduction="batchmean") * T * T
    assert_close(kd_loss(S, Tt, T, labels=labels, alpha=0.7), float(0.7 * kl + 0.3 * ce))


def _trl_gkd_jsd(S, Tt, beta, T):
    """TRL's GKD formulation (per-token, summed over the vocabulary), for cross-checking."""
    import torch
    import torch.nn.functional as F

    sl = F.log_softmax(S / T, -1)
    tl = F.log_softmax(Tt / T, -1)
    if beta == 0:
        return F.kl_div(sl, tl, reduction="none", log_target=True).sum(-1)
    if beta == 1:
        return F.kl_div(tl, sl, reduction="none", log_target=True).sum(-1)
    b = torch.tensor(beta, dtype=sl.dtype)
    mix = torch.logsumexp(torch.stack([sl + torch.log(1 - b), tl + torch.log(b)]), dim=0)
    kt = F.kl_div(mix, tl, reduction="none", log_target=True).sum(-1)
    ks = F.kl_div(mix, sl, reduction="none", log_target=True).sum(-1)
    return beta * kt + (1 - beta) * ks


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_jsd_matches_trl_gkd(beta):
    torch = pytest.importorskip("torch")
    s, t = _rng_logits(n=5, v=11, seed=2)
    S, Tt = torch.tensor(s), torch.tensor(t)
    ref = _trl_gkd_jsd(S, Tt, beta, 1.5)
    got = kd_loss(S, Tt, 1.5, divergence="jsd", beta=beta, t2_scale=False, reduction="none")
    assert_close(got, ref.numpy())


def test_jsd_endpoints_are_the_scaled_limits():
    s, t = _rng_logits(n=3, v=5, seed=4)
    fwd = kd_loss(s, t, reduction="none")
    rev = kd_loss(s, t, divergence="reverse", reduction="none")
    eps = 1e-6
    small = kd_loss(s, t, divergence="jsd", beta=eps, reduction="none") / eps
    large = kd_loss(s, t, divergence="jsd", beta=1 - eps, reduction="none") / eps
    np.testing.assert_allclose(small, fwd, rtol=1e-4)
    np.testing.assert_allclose(large, rev, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# temperatures
# ---------------------------------------------------------------------------------------------
def test_per_row_temperatures_match_a_loop(xp):
    s, t = _rng_logits(n=4, v=6, seed=5)
    Ts = np.array([0.5, 1.0, 2.0, 8.0])
    Tts = np.array([1.0, 3.0, 2.0, 0.7])
    ref = _ref_rows(s, t, Ts, Tts)
    got = kd_loss(xp.asarray(s), xp.asarray(t), xp.asarray(Ts), teacher_temperature=xp.asarray(Tts),
                  reduction="none")
    assert_close(got, ref, xp=xp)
    # keepdims form (size-1 class axis kept) is accepted too
    got = kd_loss(xp.asarray(s), xp.asarray(t), xp.asarray(Ts[:, None]), reduction="none")
    assert_close(got, _ref_rows(s, t, Ts), xp=xp)


def test_teacher_temperature_zero_and_inf():
    s, t = _rng_logits(n=4, v=6, seed=6)
    # T_t = 0: the teacher is its argmax, so the forward KL is the CE against the argmax at T
    T = 2.0
    arg = np.argmax(t, axis=-1)
    ce_T = -sp_log_softmax(s / T, axis=-1)[np.arange(4), arg]
    got = kd_loss(s, t, T, teacher_temperature=0.0, reduction="none", t2_scale=False)
    np.testing.assert_allclose(got, ce_T, rtol=1e-12)
    # T_t = inf: the teacher is uniform
    lq = sp_log_softmax(s / T, axis=-1)
    ref = (np.full(6, 1 / 6) * (np.log(1 / 6) - lq)).sum(-1)
    got = kd_loss(s, t, T, teacher_temperature=INF, reduction="none", t2_scale=False)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_t2_scale_and_gradient_identity():
    """d(T^2 KL)/ds = T (q - p) per row (divided by the row count under "batchmean")."""
    torch = pytest.importorskip("torch")
    s, t = _rng_logits(n=5, v=9, seed=7)
    for T in (0.5, 1.0, 4.0, 20.0):
        S = torch.tensor(s, requires_grad=True)
        Tt = torch.tensor(t)
        kd_loss(S, Tt, T).backward()
        q = torch.softmax(S.detach() / T, -1)
        p = torch.softmax(Tt / T, -1)
        assert_close(S.grad, (T * (q - p) / 5).numpy())
        np.testing.assert_allclose(float(kd_loss(s, t, T)),
                                   T * T * float(kd_loss(s, t, T, t2_scale=False)), rtol=1e-12)


def test_gradient_identity_per_row_temperature_jax():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    s, t = _rng_logits(n=3, v=5, seed=8)
    Ts = np.array([0.5, 2.0, 7.0])
    g = jax.grad(lambda a: kd_loss(a, jnp.asarray(t), jnp.asarray(Ts), reduction="sum"))(
        jnp.asarray(s))
    q = np.exp(sp_log_softmax(s / Ts[:, None], axis=-1))
    p = np.exp(sp_log_softmax(t / Ts[:, None], axis=-1))
    np.testing.assert_allclose(np.asarray(g), Ts[:, None] * (q - p), rtol=1e-10, atol=1e-14)


def test_learnable_temperature_gradcheck():
    torch = pytest.importorskip("torch")
    s, t = _rng_logits(n=3, v=4, seed=9)
    S = torch.tensor(s, requires_grad=True)
    Tt = torch.tensor(t, requires_grad=True)
    T = torch.tensor([0.7, 1.3, 2.2], dtype=torch.float64, requires_grad=True)
    lab = torch.tensor([1, -100, 3])
    for div in ("forward", "reverse", "jsd"):
        assert torch.autograd.gradcheck(
            lambda a, b, c, div=div: kd_loss(a, b, c, divergence=div, labels=lab, alpha=0.6), (S, Tt, T))


# ---------------------------------------------------------------------------------------------
# masks, padding, -inf vocabulary, NaN
# ---------------------------------------------------------------------------------------------
def test_mask_and_ignore_index_leave_rows_out(xp):
    s, t = _rng_logits(n=5, v=4, seed=10)
    mask = np.array([True, False, True, True, True])
    labels = np.array([1, 2, -100, 0, 3])
    ref = _ref_rows(s, t, 1.5, labels=labels, mask=mask)
    got = kd_loss(xp.asarray(s), xp.asarray(t), 1.5, labels=xp.asarray(labels),
                  where=xp.asarray(mask))
    assert_close(got, ref.sum() / 3, xp=xp, shape=())
    got = kd_loss(xp.asarray(s), xp.asarray(t), 1.5, labels=xp.asarray(labels),
                  where=xp.asarray(mask), reduction="none")
    assert_close(got, ref, xp=xp)


def test_garbage_in_left_out_rows_is_ignored(xp):
    s, t = _rng_logits(n=3, v=4, seed=11)
    s2, t2 = s.copy(), t.copy()
    s2[1] = np.nan
    t2[1] = -INF
    mask = np.array([True, False, True])
    got = kd_loss(xp.asarray(s2), xp.asarray(t2), where=xp.asarray(mask))
    assert_close(got, _ref_rows(s, t, 1.0, mask=mask).sum() / 2, xp=xp, shape=())


def test_nan_in_a_valid_row_gives_nan():
    s, t = _rng_logits(n=3, v=4, seed=12)
    s[2, 1] = np.nan
    rows = kd_loss(s, t, reduction="none")
    assert np.isnan(rows[2]) and np.all(np.isfinite(rows[:2]))
    t[0, 0] = np.nan
    for div in ("reverse", "jsd"):
        rows = kd_loss(s, t, divergence=div, reduction="none")
        assert np.isnan(rows[0]) and np.isnan(rows[2]) and np.isfinite(rows[1])


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_masked_vocabulary_gives_finite_loss_and_nan_free_gradients(divergence):
    torch = pytest.importorskip("torch")
    s, t = _rng_logits(n=4, v=8, seed=13)
    s[:, -3:] = -INF  # padded vocabulary, masked for both
    t[:, -3:] = -INF
    if divergence != "reverse":
        t[0, 2] = -INF    # the teacher rules a class out: 0 log 0 = 0 in KL(p || q)
    if divergence != "forward":
        s[1, 3] = -INF    # the student rules a class out: 0 log 0 = 0 in KL(q || p)
    ref = _ref_rows(s[:, :5], t[:, :5], 2.0, divergence=divergence)
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        S = torch.tensor(s, dtype=dtype, requires_grad=True)
        Tt = torch.tensor(t, dtype=dtype, requires_grad=True)
        loss = kd_loss(S, Tt, 2.0, divergence=divergence)
        assert loss.dtype == dtype
        loss.backward()
        assert torch.isfinite(S.grad).all() and torch.isfinite(Tt.grad).all()
        assert (S.grad[:, -3:] == 0).all()
        tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 2e-2)
        np.testing.assert_allclose(float(loss.detach()), ref.mean(), rtol=tol, atol=tol)


def test_masked_vocabulary_jax_grad_is_finite():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    s, t = _rng_logits(n=3, v=6, seed=14)
    s[:, -2:] = -INF
    t[:, -2:] = -INF
    for div in ("forward", "reverse", "jsd"):
        f = jax.jit(lambda a, b, d=div: kd_loss(a, b, 3.0, divergence=d))
        g = jax.grad(f, argnums=(0, 1))(jnp.asarray(s), jnp.asarray(t))
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in g)
        np.testing.assert_allclose(float(f(jnp.asarray(s), jnp.asarray(t))),
                                   _ref_rows(s[:, :4], t[:, :4], 3.0, divergence=div).mean(),
                                   rtol=1e-12)


def test_student_masking_a_teacher_class_is_infinite():
    s = np.array([[0.0, -INF, 1.0]])
    t = np.array([[0.0, 0.0, 1.0]])
    assert kd_loss(s, t) == INF
    # the reverse KL does not care: the student puts no mass there
    assert np.isfinite(kd_loss(s, t, divergence="reverse"))


def test_no_valid_row_gives_zero_and_zero_gradient():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    s, t = _rng_logits(n=3, v=4, seed=15)
    s[0] = -INF
    labels = np.full(3, -100)
    for div in ("forward", "reverse", "jsd"):
        S = torch.tensor(s, requires_grad=True)
        T = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
        loss = kd_loss(S, torch.tensor(t), T, labels=torch.tensor(labels), divergence=div)
        loss.backward()
        assert float(loss.detach()) == 0.0
        assert (S.grad == 0).all() and (T.grad == 0).all()
        g = jax.grad(lambda a, d=div: kd_loss(a, jax.numpy.asarray(t),
                                              where=jax.numpy.zeros(3, dtype=bool), divergence=d))(
            jax.numpy.asarray(s))
        assert bool((g == 0).all())
    assert kd_loss(np.zeros((0, 4)), np.zeros((0, 4))) == 0.0


# ---------------------------------------------------------------------------------------------
# shapes, dtypes, axis
# ---------------------------------------------------------------------------------------------
def test_token_shaped_input_and_axis(xp):
    rng = np.random.default_rng(16)
    s = rng.normal(size=(2, 3, 5))
    t = rng.normal(size=(2, 3, 5))
    labels = np.array([[0, 1, -100], [4, -100, 2]])
    flat = _ref_rows(s.reshape(6, 5), t.reshape(6, 5), 2.0, labels=labels.reshape(6))
    got = kd_loss(xp.asarray(s), xp.asarray(t), 2.0, labels=xp.asarray(labels), reduction="none")
    assert_close(got, flat.reshape(2, 3), xp=xp)
    # the class axis first
    sa = np.moveaxis(s, -1, 0)
    ta = np.moveaxis(t, -1, 0)
    got = kd_loss(xp.asarray(sa), xp.asarray(ta), 2.0, labels=xp.asarray(labels), axis=0)
    assert_close(got, flat.sum() / 4, xp=xp, shape=())
    # per-row temperatures with the class axis first: row shape, or keepdims form
    Ts = np.array([[0.5, 1.0, 2.0], [3.0, 4.0, 5.0]])
    ref = _ref_rows(s.reshape(6, 5), t.reshape(6, 5), Ts.reshape(6), labels=labels.reshape(6))
    for T in (Ts, Ts[None]):
        got = kd_loss(xp.asarray(sa), xp.asarray(ta), xp.asarray(T), labels=xp.asarray(labels),
                      axis=0, reduction="none")
        assert_close(got, ref.reshape(2, 3), xp=xp)
    # a single row
    got = kd_loss(xp.asarray(s[0, 0]), xp.asarray(t[0, 0]), 2.0)
    assert_close(got, _ref_rows(s[0, :1], t[0, :1], 2.0)[0], xp=xp, shape=())


def test_half_precision_accumulates_in_float32():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    s = rng.normal(size=(8, 4000)) * 3
    t = rng.normal(size=(8, 4000)) * 3
    ref = _ref_rows(s, t, 2.0).mean()
    for dtype in (torch.float16, torch.bfloat16):
        S = torch.tensor(s, dtype=dtype)
        Tt = torch.tensor(t, dtype=dtype)
        # the reference from the *rounded* inputs, so only the accumulation is tested
        ref = _ref_rows(S.double().numpy(), Tt.double().numpy(), 2.0).mean()
        got = kd_loss(S, Tt, 2.0)
        assert got.dtype == dtype
        np.testing.assert_allclose(float(got), ref, rtol=4e-3)


def test_integer_logits_promote(xp):
    s = np.array([[1, 2, 3], [0, 0, 1]])
    t = np.array([[3, 2, 1], [1, 0, 0]])
    got = kd_loss(xp.asarray(s), xp.asarray(t))
    assert xp.isdtype(got.dtype, "real floating")
    assert_close(got, _ref_rows(s, t, 1.0).mean(), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(2, 7), st.floats(0.05, 50.0), st.integers(0, 2**31 - 1),
       st.sampled_from(["forward", "reverse", "jsd"]), st.floats(0.0, 1.0))
def test_divergences_are_nonnegative_and_zero_at_equality(n, v, T, seed, divergence, beta):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, v)) * 5
    t = rng.normal(size=(n, v)) * 5
    rows = kd_loss(s, t, T, divergence=divergence, beta=beta, reduction="none")
    assert np.all(rows >= -1e-12)
    np.testing.assert_allclose(rows, _ref_rows(s, t, T, divergence=divergence, beta=beta),
                               rtol=1e-8, atol=1e-12)
    same = kd_loss(s, s, T, divergence=divergence, beta=beta, reduction="none")
    np.testing.assert_allclose(same, 0.0, atol=1e-12)
    # a shift of either input changes nothing
    shifted = kd_loss(s + 3.0, t - 7.0, T, divergence=divergence, beta=beta, reduction="none")
    np.testing.assert_allclose(shifted, rows, rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, text", [
    ({"temperature": 0.0}, ValueError, "'temperature' parameter of kd_loss must be a float in (0, inf)"),
    ({"temperature": -1.0}, ValueError, "Got -1.0 instead"),
    ({"temperature": INF}, ValueError, "'temperature'"),
    ({"temperature": np.array([1.0, 0.0])}, ValueError, "Got 0.0 instead"),
    ({"temperature": np.ones(3)}, ValueError, "shape (2,) or (2, 1)"),
    ({"teacher_temperature": -0.5}, ValueError, "'teacher_temperature'"),
    ({"divergence": "kl"}, ValueError, "'divergence' parameter of kd_loss must be one of"),
    ({"reduction": "mean"}, ValueError, "'reduction' parameter of kd_loss must be one of"),
    ({"beta": 1.5}, ValueError, "'beta'"),
    ({"alpha": 0.5}, ValueError, "'alpha' parameter of kd_loss must be None when no labels"),
    ({"labels": np.array([0, 1]), "alpha": 2.0}, ValueError, "'alpha'"),
    ({"labels": np.array([0, 3])}, IndexError, "Got 3 instead"),
    ({"labels": np.array([0.0, 1.0])}, TypeError, "'labels'"),
    ({"labels": np.array([0, 1, 2])}, ValueError, "'labels'"),
    ({"where": np.array([1.0, 0.0])}, TypeError, "'where'"),
    ({"where": np.array([1, 2])}, ValueError, "'where'"),
    ({"where": np.ones(3, dtype=bool)}, ValueError, "'where'"),
    ({"t2_scale": 1}, TypeError, "'t2_scale'"),
    ({"ignore_index": 1.5}, TypeError, "'ignore_index'"),
    ({"axis": 2}, ValueError, "axis 2 is out of bounds"),
])
def test_bad_arguments(kwargs, exc, text):
    s = np.zeros((2, 3))
    kw = dict(kwargs)
    T = kw.pop("temperature", 1.0)
    with pytest.raises(exc) as info:
        kd_loss(s, s, T, **kw)
    assert text in str(info.value)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="'teacher_logits' parameter of kd_loss"):
        kd_loss(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="'student_logits'"):
        kd_loss(np.float64(1.0), np.float64(1.0))


def test_inputs_are_not_modified():
    s, t = _rng_logits(seed=18)
    s0, t0 = s.copy(), t.copy()
    kd_loss(s, t, 2.0, labels=np.array([0, 1, 2, -100, 3, 4]), where=np.ones(6, dtype=bool))
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(t, t0)
    assert to_numpy(s).shape == (6, 7)


def test_integer_row_masks_on_every_backend(xp):
    """0/1 integer row masks (Hugging Face's attention masks) are read as booleans, in kd_loss
    and sparse_kd_loss alike, on every library (issue 12 item 4)."""
    from tempscale.distill import sparse_kd_loss

    rng = np.random.default_rng(7)
    s, t = rng.normal(size=(2, 3, 5)) * 2, rng.normal(size=(2, 3, 5)) * 2
    keep = np.array([[1, 1, 0], [0, 1, 1]])
    idx = np.argsort(-t, axis=-1)[..., :2]
    vals = np.take_along_axis(t, idx, axis=-1)
    S, Tl, V = xp.asarray(s), xp.asarray(t), xp.asarray(vals)
    I = xp.asarray(idx)
    for ints in (xp.asarray(keep), xp.asarray(keep.astype(np.int32))):
        dense = kd_loss(S, Tl, 2.0, where=ints)
        ref = _ref_rows(s.reshape(6, 5), t.reshape(6, 5), 2.0, mask=keep.reshape(6).astype(bool))
        assert_close(dense, ref.sum() / keep.sum(), xp=xp)
        assert_close(sparse_kd_loss(S, I, V, 2.0, where=ints),
                     to_numpy(sparse_kd_loss(S, I, V, 2.0, where=xp.asarray(keep.astype(bool)))),
                     xp=xp)
