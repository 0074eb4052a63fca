"""Regression tests of issue 10 for kd_loss and the torch losses (moved from
tests/test_hardening_calib_distill.py), and of issue 15's vocabulary for them.

Items: 7 (KDLoss double backward), 10 (labels and tracers under jax.jit, NumPy teachers with
JAX/torch students), 13 (label messages).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tempscale.distill import kd_loss

scipy = pytest.importorskip("scipy")
from scipy.special import softmax as sp_softmax  # noqa: E402


# ============================================================================================
# item 13: label messages show the value received
# ============================================================================================
def test_kd_loss_label_messages():
    s = np.zeros((3, 4))
    with pytest.raises(IndexError, match=r"Got 4 instead"):
        kd_loss(s, s, labels=np.array([0, 4, 1]))
    with pytest.raises(IndexError, match=r"Got -5 instead"):
        kd_loss(s, s, labels=np.array([0, -5, 1]))
    with pytest.raises(TypeError, match="'labels' parameter of kd_loss.*dtype float64"):
        kd_loss(s, s, labels=np.array([0.0, 1e300, 1.0]))
    with pytest.raises(TypeError, match="'labels' parameter of kd_loss.*dtype bool"):
        kd_loss(s, s, labels=np.array([True, False, True]))


# ============================================================================================
# item 10: labels and tracers under jax.jit, NumPy teachers with JAX/torch students
# ============================================================================================
def _kd_inputs(seed=13, n=5, k=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)), rng.normal(size=(n, k))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.0])
def test_jit_kd_loss_out_of_range_labels_are_nan_not_another_class(alpha):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    s, t = _kd_inputs()
    labels = np.array([0, -5, 4, -100, 2])            # -5 and 4 are out of range (4 classes)
    f = jax.jit(lambda a, b, y: kd_loss(a, b, 2.0, labels=y, alpha=alpha, reduction="none"))
    rows = np.asarray(f(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels)))
    assert np.isnan(rows[1]) and np.isnan(rows[2])
    assert rows[3] == 0.0                             # ignore_index: left out, as eagerly
    ok = np.array([0, 3, 2])
    eager = kd_loss(s[[0, 3, 4]], t[[0, 3, 4]], 2.0, labels=np.array([0, -100, 2]), alpha=alpha,
                    reduction="none")
    np.testing.assert_allclose(rows[[0, 3, 4]], eager, rtol=1e-5)
    assert ok.size == 3
    g = jax.jit(lambda a, b, y: kd_loss(a, b, 2.0, labels=y, alpha=alpha))
    assert np.isnan(float(g(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels))))
    # in-range labels under jit: the eager value
    good = np.array([0, 1, 3, -100, 2])
    assert float(g(jnp.asarray(s), jnp.asarray(t), jnp.asarray(good))) == pytest.approx(
        float(kd_loss(s, t, 2.0, labels=good, alpha=alpha)), rel=1e-5)
    # eagerly the same labels raise
    with pytest.raises(IndexError, match="Got -5 instead"):
        kd_loss(s, t, 2.0, labels=labels, alpha=alpha)


def test_jax_grad_and_jit_with_numpy_teacher():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    s, t = _kd_inputs(seed=14)
    s32 = jnp.asarray(s, dtype=jnp.float32)
    t32 = jnp.asarray(t, dtype=jnp.float32)
    ref = jax.grad(lambda a: kd_loss(a, t32, 2.0))(s32)
    got = jax.grad(lambda a: kd_loss(a, t, 2.0))(s32)       # NumPy float64 teacher
    assert got.dtype == s32.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6)
    v = jax.jit(lambda a: kd_loss(a, t, 2.0, labels=jnp.array([0, 1, 2, 3, 0]), alpha=0.3))(s32)
    assert float(v) == pytest.approx(float(kd_loss(s, t, 2.0, labels=np.array([0, 1, 2, 3, 0]),
                                                   alpha=0.3)), rel=1e-5)
    # independent reference of the soft gradient: T (q - p) / n
    q, p = sp_softmax(s / 2.0, axis=1), sp_softmax(t / 2.0, axis=1)
    np.testing.assert_allclose(np.asarray(got), 2.0 * (q - p) / len(s), rtol=1e-5, atol=1e-7)


def test_torch_student_with_numpy_teacher():
    torch = pytest.importorskip("torch")
    from tempscale.torch import KDLoss

    s, t = _kd_inputs(seed=15)
    st_ = torch.tensor(s, dtype=torch.float32, requires_grad=True)
    for loss_fn in (lambda a, b: kd_loss(a, b, 2.0), lambda a, b: KDLoss(2.0)(a, b)):
        out = loss_fn(st_, t)
        assert out.dtype == torch.float32
        ref = loss_fn(st_, torch.tensor(t, dtype=torch.float32))
        assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    pd = pytest.importorskip("pandas")
    assert KDLoss(2.0)(st_, pd.DataFrame(t)).item() == pytest.approx(
        float(kd_loss(s, t, 2.0)), rel=1e-6)


def test_two_libraries_refused_clearly():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    s, t = _kd_inputs(seed=16)
    with pytest.raises(TypeError, match="'teacher_logits' parameter of kd_loss.*student's library"):
        kd_loss(torch.tensor(s), jax.numpy.asarray(t))


# ============================================================================================
# item 7: KDLoss second-order gradients
# ============================================================================================
torch = pytest.importorskip("torch")
from tempscale.torch import KDLoss, fused_kd_loss  # noqa: E402

KD_CASES = {
    "forward": dict(),
    "reverse+labels": dict(divergence="reverse", labels=[0, 1, -100, 3, 4, 2], alpha=0.3),
    "jsd+sum": dict(divergence="jsd", beta=0.3, reduction="sum"),
    "none+mask": dict(reduction="none", mask=[True, False, True, True, True, True]),
    "row T": dict(temperature=[1.0, 2.0, 0.5, 3.0, 1.5, 1.0]),
    "teacher T=0": dict(teacher_temperature=0.0, labels=[0, 1, 2, 3, 4, 0], alpha=0.6),
    "masked class": dict(t2_scale=False),
}


def _kd_kwargs(case):
    kw = dict(KD_CASES[case])
    T = kw.pop("temperature", 2.0)
    if isinstance(T, list):
        T = torch.tensor(T, dtype=torch.float64)
    for key in ("labels", "mask"):
        if key in kw:
            kw[key] = torch.tensor(kw[key])
    return T, kw


def _kd_tensors(case, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.randn(6, 5, generator=g, dtype=torch.float64)
    if case == "masked class":
        s[:, 4] = -math.inf
        t[:, 4] = -math.inf
        s[0, 3] = -math.inf
        t[0, 3] = -math.inf
    return s.requires_grad_(True), t


@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("case", sorted(KD_CASES))
def test_kdloss_gradgradcheck(case, inplace):
    s, t = _kd_tensors(case)
    T, kw = _kd_kwargs(case)
    if case == "masked class":
        # gradgradcheck perturbs every entry, -inf ones too; check the finite block instead
        def f(x):
            full = torch.cat([x, torch.full((6, 1), -math.inf, dtype=x.dtype)], dim=1)
            return fused_kd_loss(full, t, T, inplace_backward=inplace, **kw)
        x = s.detach()[:, :4].clone()
        x[0, 3] = 0.0
        t = t.clone()
        t[0, 3] = 0.0
        assert torch.autograd.gradgradcheck(f, (x.requires_grad_(True),))
        return
    assert torch.autograd.gradgradcheck(
        lambda x: fused_kd_loss(x, t, T, inplace_backward=inplace, **kw), (s,))


@pytest.mark.parametrize("case", sorted(KD_CASES))
def test_gradient_penalty_equals_kd_loss(case):
    s, t = _kd_tensors(case, seed=1)
    T, kw = _kd_kwargs(case)
    results = []
    for fn in (lambda x: KDLoss(T, **{k: v for k, v in kw.items()
                                      if k not in ("labels", "mask", "alpha")},
                                alpha=kw.get("alpha"))(x, t, kw.get("labels"), mask=kw.get("mask")),
               lambda x: kd_loss(x, t, T, **kw)):
        x = s.detach().clone().requires_grad_(True)
        loss = fn(x)
        if loss.ndim:
            loss = (loss * torch.arange(1, 7, dtype=loss.dtype)).sum()
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        assert g.grad_fn is not None
        g = torch.where(torch.isfinite(x), g, torch.zeros_like(g))
        penalty = loss + 0.5 * (g ** 2).sum()
        penalty.backward()
        results.append((penalty.detach().item(), x.grad.clone()))
    (p1, g1), (p2, g2) = results
    assert p1 == pytest.approx(p2, rel=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
    # the penalty's second-order part (Hessian times gradient) is really there: without it
    # (what a gradient with no grad_fn gave) the result differs
    x = s.detach().clone().requires_grad_(True)
    loss = kd_loss(x, t, T, **kw)
    if loss.ndim:
        loss = (loss * torch.arange(1, 7, dtype=loss.dtype)).sum()
    (first,) = torch.autograd.grad(loss, x)
    first = torch.where(torch.isfinite(x), first, torch.zeros_like(first))
    assert float((g1 - first).abs().max()) > 1e-6


def test_maml_inner_step_equals_kd_loss():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(16, 8, generator=g, dtype=torch.float64)
    teacher = torch.randn(16, 10, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (16,), generator=g)
    W0 = torch.randn(8, 10, generator=g, dtype=torch.float64)
    outs = []
    for fn in (lambda z: KDLoss(3.0, alpha=0.8)(z, teacher, labels),
               lambda z: kd_loss(z, teacher, 3.0, labels=labels, alpha=0.8)):
        W = W0.clone().requires_grad_(True)
        (gW,) = torch.autograd.grad(fn(X @ W), W, create_graph=True)
        W1 = W - 0.5 * gW                                   # inner step, kept differentiable
        outer = fn(X @ W1)
        (meta,) = torch.autograd.grad(outer, W)
        outs.append(meta)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    # first-order MAML (dropping the Hessian term) differs: the second order matters here
    W = W0.clone().requires_grad_(True)
    (gW,) = torch.autograd.grad(kd_loss(X @ W, teacher, 3.0, labels=labels, alpha=0.8), W)
    W1 = (W0 - 0.5 * gW).requires_grad_(True)
    (fo,) = torch.autograd.grad(kd_loss(X @ W1, teacher, 3.0, labels=labels, alpha=0.8), W1)
    assert float((fo - outs[1]).abs().max()) > 1e-3


def test_kdloss_first_order_path_unchanged():
    s, t = _kd_tensors("forward", seed=4)
    loss = KDLoss(2.0)(s, t)
    loss.backward()
    q, p = torch.softmax(s.detach() / 2, -1), torch.softmax(t / 2, -1)
    torch.testing.assert_close(s.grad, 2.0 * (q - p) / 6, rtol=1e-12, atol=1e-14)
