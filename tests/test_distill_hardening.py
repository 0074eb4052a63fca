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
    "none+where": dict(reduction="none", where=[True, False, True, True, True, True]),
    "row T": dict(temperature=[1.0, 2.0, 0.5, 3.0, 1.5, 1.0]),
    "teacher T=0": dict(teacher_temperature=0.0, labels=[0, 1, 2, 3, 4, 0], alpha=0.6),
    "masked class": dict(t2_scale=False),
}


def _kd_kwargs(case):
    kw = dict(KD_CASES[case])
    T = kw.pop("temperature", 2.0)
    if isinstance(T, list):
        T = torch.tensor(T, dtype=torch.float64)
    for key in ("labels", "where"):
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
                                      if k not in ("labels", "where", "alpha")},
                                alpha=kw.get("alpha"))(x, t, kw.get("labels"), where=kw.get("where")),
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


# ============================================================================================
# issue 15: row masks are `where` (optax's word); `mask=` is the deprecated spelling
# ============================================================================================
def _where_inputs(seed=21):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.randn(5, 4, generator=g, dtype=torch.float64)
    return s, t, torch.tensor([True, False, True, True, False])


def _ref_where(s, t, T, keep):
    """Independent reference: T^2 KL(p || q) averaged over the kept rows (SciPy, float64)."""
    p = sp_softmax(np.asarray(t) / T, axis=1)
    q = sp_softmax(np.asarray(s) / T, axis=1)
    rows = T * T * np.sum(p * (np.log(p) - np.log(q)), axis=1)
    return rows[np.asarray(keep)].mean()


@pytest.mark.parametrize("fn", ["kd_loss", "fused_kd_loss", "KDLoss"])
def test_where_is_the_row_mask_and_mask_is_deprecated(fn):
    s, t, keep = _where_inputs()
    calls = {
        "kd_loss": lambda **kw: kd_loss(s, t, 2.0, **kw),
        "fused_kd_loss": lambda **kw: fused_kd_loss(s, t, 2.0, **kw),
        "KDLoss": lambda **kw: KDLoss(2.0)(s, t, **kw),
    }
    new = calls[fn](where=keep)
    assert float(new) == pytest.approx(_ref_where(s, t, 2.0, keep), rel=1e-12)
    with pytest.warns(DeprecationWarning, match="'mask' keyword is deprecated.*where="):
        old = calls[fn](mask=keep)
    assert float(old) == float(new)
    with pytest.raises(TypeError, match="both 'mask'.*and 'where'"):
        calls[fn](mask=keep, where=keep)
    # 0/1 integers are read as a bool row mask, as entry masks are
    assert float(calls[fn](where=keep.to(torch.int64))) == float(new)
    with pytest.raises(ValueError, match="'where' parameter of (kd_loss|KDLoss)"):
        calls[fn](where=torch.tensor([1, 0, 2, 1, 1]))


def test_where_on_numpy_and_jax():
    s, t, keep = (a.numpy() for a in _where_inputs(seed=22))
    ref = _ref_where(s, t, 1.5, keep)
    assert float(kd_loss(s, t, 1.5, where=keep)) == pytest.approx(ref, rel=1e-12)
    with pytest.warns(DeprecationWarning):
        assert float(kd_loss(s, t, 1.5, mask=keep)) == pytest.approx(ref, rel=1e-12)
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    got = jax.jit(lambda a, b, w: kd_loss(a, b, 1.5, where=w))(jnp.asarray(s), jnp.asarray(t),
                                                             jnp.asarray(keep))
    assert float(got) == pytest.approx(ref, rel=1e-5)


def test_zero_d_tensor_temperature_on_the_fused_path():
    """A 0-d tensor temperature is one temperature for every row (it used to fail to reshape)."""
    s, t, _ = _where_inputs(seed=23)
    for T in (torch.tensor(2.0, dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64)):
        got = fused_kd_loss(s, t, T)
        assert float(got) == pytest.approx(float(kd_loss(s, t, 2.0)), rel=1e-12)
        assert float(KDLoss(T)(s, t)) == pytest.approx(float(got), rel=1e-12)


def test_distill_and_torch_import_only_the_shared_layer():
    """No private name is imported across modules: only the shared argument/backend layer."""
    import ast
    from pathlib import Path

    import tempscale

    shared = {"_args", "_config", "_typing", "_backend", "_compat", "_validation", "_kd_args", "_io",
              "_version"}
    # the torch backend's entry point, which kd_loss calls lazily on torch tensors (the lean
    # chunked path; issue 12 item 0), is the one other allowed import
    backend_hooks = {("torch._kd", "kd_loss_torch")}
    root = Path(tempscale.__file__).parent
    for name in ("distill.py", "torch/_kd.py", "plot.py",
                 "explorer/__init__.py"):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.module is None:  # from . import _compat: modules of the shared layer
                    assert {a.name for a in node.names} <= shared | {"__version__"}, name
                    continue
                if {(node.module, a.name) for a in node.names} <= backend_hooks:
                    continue
                mod = node.module.split(".")[-1]
                private = [a.name for a in node.names
                           if a.name.startswith("_") and not a.name.endswith("__")]
                assert not private, f"{name} imports private {private} from {node.module}"
                if mod.startswith("_") and mod not in shared:  # public functions only
                    names = {a.name for a in node.names}
                    assert names <= set(tempscale.__all__), f"{name}: {names} from {node.module}"
