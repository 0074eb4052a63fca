"""Tests for tempscale.distill.sparse_kd_loss (top-k teachers) and the Hugging Face options of
kd_loss and sparse_kd_loss (num_items_in_batch, shift_labels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_softmax as sp_log_softmax

from tempscale.distill import SparseTeacher, kd_loss, sparse_kd_loss

from .conftest import assert_close, to_numpy

INF = math.inf


def _topk(rng, n, v, k, *, logprobs=True):
    """Student logits (n, v), teacher logits (n, v), its top-k indices and values."""
    s = rng.normal(size=(n, v)) * 2.0
    t = rng.normal(size=(n, v)) * 2.0
    if logprobs:
        t = sp_log_softmax(t, axis=-1)
    idx = np.argsort(-t, axis=-1)[:, :k]
    rng.shuffle(idx.T)  # the order of the k entries does not matter
    vals = np.take_along_axis(t, idx, axis=-1)
    return s, t, idx, vals


def _dense_zero(idx, vals, v):
    d = np.full(idx.shape[:-1] + (v,), -INF)
    np.put_along_axis(d, idx, vals, axis=-1)
    return d


def _dense_uniform(idx, vals, v):
    """The uniform mode's dense teacher log-probabilities, written independently (float64)."""
    k = idx.shape[-1]
    m = np.clip(1.0 - np.exp(vals).sum(-1, keepdims=True), 0.0, None)
    with np.errstate(divide="ignore"):
        u = np.log(m / (v - k)) if k < v else np.full_like(m, -INF)
    d = np.broadcast_to(u, idx.shape[:-1] + (v,)).copy()
    np.put_along_axis(d, idx, vals, axis=-1)
    return d


def _ref_zero_rows(s, idx, vals, T, Tt):
    """An independent float64 forward KL over the top-k entries (SciPy), times T^2."""
    logq = sp_log_softmax(s / T, axis=-1)
    logp = sp_log_softmax(vals / Tt, axis=-1)
    return T * T * np.sum(np.exp(logp) * (logp - np.take_along_axis(logq, idx, -1)), axis=-1)


# ---------------------------------------------------------------------------------------------
# missing="zero": exactly the dense loss with -inf outside the top-k
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("logprobs", [True, False])
def test_zero_equals_dense_kd_loss(xp, logprobs):
    rng = np.random.default_rng(0)
    s, _, idx, vals = _topk(rng, 6, 11, 4, logprobs=logprobs)
    dense = _dense_zero(idx, vals, 11)
    for kw in ({}, {"teacher_temperature": 3.0}, {"reduction": "none"}, {"reduction": "sum"}):
        got = sparse_kd_loss(xp.asarray(s), xp.asarray(idx), xp.asarray(vals), 2.0, **kw)
        want = kd_loss(xp.asarray(s), xp.asarray(dense), 2.0, **kw)
        assert_close(got, to_numpy(want), xp=xp, rtol=1e-12, atol=1e-12)
    ref = _ref_zero_rows(s, idx, vals, 2.0, 2.0)
    got = sparse_kd_loss(xp.asarray(s), xp.asarray(idx), xp.asarray(vals), 2.0, reduction="none")
    assert_close(got, ref, xp=xp, rtol=1e-12, atol=1e-12)


def test_zero_equals_dense_with_labels_where_per_row_temperature(xp):
    rng = np.random.default_rng(1)
    s, _, idx, vals = _topk(rng, 8, 9, 3)
    dense = _dense_zero(idx, vals, 9)
    y = rng.integers(0, 9, size=8)
    y[2] = -100
    where = np.array([1, 1, 1, 0, 1, 1, 1, 1], bool)
    T = rng.uniform(0.5, 4.0, size=8)
    kw = dict(labels=xp.asarray(y), alpha=0.3, where=xp.asarray(where))
    got = sparse_kd_loss(xp.asarray(s), xp.asarray(idx), xp.asarray(vals), xp.asarray(T), **kw)
    want = kd_loss(xp.asarray(s), xp.asarray(dense), xp.asarray(T), **kw)
    assert_close(got, to_numpy(want), xp=xp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("Tt", [0.0, INF])
def test_zero_teacher_temperature_edges(Tt):
    rng = np.random.default_rng(2)
    s, _, idx, vals = _topk(rng, 4, 7, 3)
    got = sparse_kd_loss(s, idx, vals, 2.0, teacher_temperature=Tt)
    want = kd_loss(s, _dense_zero(idx, vals, 7), 2.0, teacher_temperature=Tt)
    assert abs(float(got) - float(want)) <= 1e-12


@pytest.mark.parametrize(("dtype", "tol"), [("float64", 1e-12), ("float32", 1e-6)])
@pytest.mark.parametrize("missing", ["zero", "uniform"])
def test_torch_values_and_gradients_equal_dense(dtype, tol, missing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    n, v, k = 16, 50, 7
    s, _, idx, vals = _topk(rng, n, v, k)
    dense = (_dense_zero if missing == "zero" else _dense_uniform)(idx, vals, v)
    y = rng.integers(0, v, size=n)
    dt = getattr(torch, dtype)
    s1 = torch.tensor(s, dtype=dt, requires_grad=True)
    s2 = torch.tensor(s, dtype=dt, requires_grad=True)
    T = torch.tensor(rng.uniform(0.5, 3.0, size=n), dtype=dt)
    a = sparse_kd_loss(s1, torch.tensor(idx), torch.tensor(vals, dtype=dt), T, missing=missing,
                       labels=torch.tensor(y), alpha=0.7)
    b = kd_loss(s2, torch.tensor(dense, dtype=dt), T, labels=torch.tensor(y), alpha=0.7)
    a.backward()
    b.backward()
    assert a.dtype == dt
    assert abs(a.item() - b.item()) <= tol * max(1.0, abs(b.item()))
    assert torch.isfinite(s1.grad).all()
    assert (s1.grad - s2.grad).abs().max().item() <= tol


def test_jax_grad_and_jit_equal_dense():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(4)
    s, _, idx, vals = _topk(rng, 5, 12, 4)
    dense = _dense_uniform(idx, vals, 12)

    def f(x):
        return sparse_kd_loss(x, idx, vals, 1.5, missing="uniform")

    def g(x):
        return kd_loss(x, dense, 1.5)

    ga = jax.jit(jax.grad(f))(jnp.asarray(s))
    gb = jax.grad(g)(jnp.asarray(s))
    np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=0, atol=1e-12)
    np.testing.assert_allclose(float(jax.jit(f)(jnp.asarray(s))), float(g(jnp.asarray(s))),
                               rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# missing="uniform"
# ---------------------------------------------------------------------------------------------
def test_uniform_equals_dense_reconstruction(xp):
    rng = np.random.default_rng(5)
    s, _, idx, vals = _topk(rng, 6, 13, 5)
    dense = _dense_uniform(idx, vals, 13)
    for T, Tt in ((1.0, None), (2.0, None), (2.0, 0.5), (0.7, 4.0)):
        got = sparse_kd_loss(xp.asarray(s), xp.asarray(idx), xp.asarray(vals), T,
                             teacher_temperature=Tt, missing="uniform", reduction="none")
        want = kd_loss(xp.asarray(s), xp.asarray(dense), T, teacher_temperature=Tt,
                       reduction="none")
        assert_close(got, to_numpy(want), xp=xp, rtol=1e-12, atol=1e-12)


def test_uniform_differs_from_zero_and_rejects_edge_teacher_temperature():
    rng = np.random.default_rng(6)
    s, _, idx, vals = _topk(rng, 3, 10, 2)
    z = float(sparse_kd_loss(s, idx, vals, 2.0))
    u = float(sparse_kd_loss(s, idx, vals, 2.0, missing="uniform"))
    assert z != u
    with pytest.raises(ValueError, match="'teacher_temperature' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, idx, vals, 2.0, missing="uniform", teacher_temperature=0.0)


@pytest.mark.parametrize("missing", ["zero", "uniform"])
def test_full_k_equals_dense(xp, missing):
    rng = np.random.default_rng(7)
    v = 8
    s, t, idx, vals = _topk(rng, 5, v, v)  # k = V, in shuffled order
    for T in (1.0, 2.5):
        got = sparse_kd_loss(xp.asarray(s), xp.asarray(idx), xp.asarray(vals), T,
                             missing=missing, reduction="none")
        want = kd_loss(xp.asarray(s), xp.asarray(t), T, reduction="none")
        assert_close(got, to_numpy(want), xp=xp, rtol=1e-12, atol=1e-12)


def test_sparse_teacher_container_and_numpy_teacher_with_torch_student():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    s, _, idx, vals = _topk(rng, 4, 9, 3)
    a = sparse_kd_loss(s, teacher=SparseTeacher(idx, vals), temperature=2.0)
    b = sparse_kd_loss(s, idx, vals, 2.0)
    assert float(a) == float(b)
    c = sparse_kd_loss(torch.tensor(s), teacher=SparseTeacher(idx, vals), temperature=2.0)
    assert isinstance(c, torch.Tensor)
    assert abs(c.item() - float(b)) <= 1e-12


# ---------------------------------------------------------------------------------------------
# num_items_in_batch: micro-batches add up to the full batch
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sparse", [False, True])
def test_num_items_in_batch_gradient_accumulation(sparse):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    n, v = 10, 15
    s, t, idx, vals = _topk(rng, n, v, 4)
    y = rng.integers(0, v, size=n)
    y[[1, 2, 7]] = -100  # the halves hold 3 and 4 valid rows: plain means would not add up
    n_valid = int((y != -100).sum())

    def loss(x, rows, num_items=None):
        kw = dict(labels=torch.tensor(y[rows]), alpha=0.4, num_items_in_batch=num_items)
        if sparse:
            return sparse_kd_loss(x, torch.tensor(idx[rows]), torch.tensor(vals[rows]), 2.0, **kw)
        return kd_loss(x, torch.tensor(t[rows]), 2.0, **kw)

    full = torch.tensor(s, requires_grad=True)
    ref = loss(full, slice(None))
    ref.backward()
    acc = torch.tensor(s, requires_grad=True)
    total = loss(acc[:5], slice(0, 5), n_valid) + loss(acc[5:], slice(5, n), torch.tensor(n_valid))
    total.backward()
    assert abs(total.item() - ref.item()) <= 1e-12
    assert (acc.grad - full.grad).abs().max().item() <= 1e-12
    # a plain per-call batchmean over the halves does not give the full-batch loss
    assert abs((loss(acc[:5], slice(0, 5)) + loss(acc[5:], slice(5, n))).item() - ref.item()) > 1e-3


def test_num_items_in_batch_on_every_backend(xp):
    rng = np.random.default_rng(10)
    s, t, idx, vals = _topk(rng, 6, 7, 3)
    got = kd_loss(xp.asarray(s), xp.asarray(t), 2.0, num_items_in_batch=4)
    want = kd_loss(s, t, 2.0, reduction="sum") / 4
    assert_close(got, float(want), xp=xp, rtol=1e-12)
    got = sparse_kd_loss(xp.asarray(s), xp.asarray(idx), xp.asarray(vals), 2.0,
                         num_items_in_batch=xp.asarray(4.0))
    want = sparse_kd_loss(s, idx, vals, 2.0, reduction="sum") / 4
    assert_close(got, float(want), xp=xp, rtol=1e-12)


@pytest.mark.parametrize("func", ["kd_loss", "sparse_kd_loss"])
def test_num_items_in_batch_errors(func):
    rng = np.random.default_rng(11)
    s, t, idx, vals = _topk(rng, 3, 5, 2)

    def call(**kw):
        if func == "kd_loss":
            return kd_loss(s, t, **kw)
        return sparse_kd_loss(s, idx, vals, **kw)

    with pytest.raises(ValueError, match=f"'num_items_in_batch' parameter of {func}"):
        call(num_items_in_batch=0)
    with pytest.raises(ValueError, match=f"'num_items_in_batch' parameter of {func}"):
        call(num_items_in_batch=np.array(-2.0))
    with pytest.raises(ValueError, match="reduction"):
        call(num_items_in_batch=3, reduction="sum")
    with pytest.raises(TypeError, match=f"'num_items_in_batch' parameter of {func}"):
        call(num_items_in_batch="3")


# ---------------------------------------------------------------------------------------------
# shift_labels: causal language models (labels of the tokens, position t predicts t + 1)
# ---------------------------------------------------------------------------------------------
def test_shift_labels_equals_manual_shift(xp):
    rng = np.random.default_rng(12)
    b, seq, v = 3, 6, 9
    s = rng.normal(size=(b, seq, v))
    t = rng.normal(size=(b, seq, v))
    y = rng.integers(0, v, size=(b, seq))
    y[0, 4] = -100
    T = rng.uniform(0.5, 3.0, size=(b, seq))
    for kw in ({"alpha": 0.5}, {"alpha": 0.0}, {"alpha": 1.0, "reduction": "sum"}):
        got = kd_loss(xp.asarray(s), xp.asarray(t), xp.asarray(T), labels=xp.asarray(y),
                      shift_labels=True, **kw)
        want = kd_loss(s[:, :-1], t[:, :-1], T[:, :-1], labels=y[:, 1:], **kw)
        assert_close(got, float(want), xp=xp, rtol=1e-12, atol=1e-12)
    rows = kd_loss(xp.asarray(s), xp.asarray(t), 2.0, labels=xp.asarray(y), shift_labels=True,
                   reduction="none")
    want = kd_loss(s[:, :-1], t[:, :-1], 2.0, labels=y[:, 1:], reduction="none")
    assert tuple(rows.shape) == (b, seq)
    assert_close(rows[:, :-1], want, xp=xp, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(to_numpy(rows[:, -1]), 0.0)


def test_shift_labels_sparse_and_where(xp):
    rng = np.random.default_rng(13)
    b, seq, v, k = 2, 5, 8, 3
    s = rng.normal(size=(b, seq, v))
    t = sp_log_softmax(rng.normal(size=(b, seq, v)), axis=-1)
    idx = np.argsort(-t, axis=-1)[..., :k]
    vals = np.take_along_axis(t, idx, axis=-1)
    y = rng.integers(0, v, size=(b, seq))
    where = np.ones((b, seq), bool)
    where[1, 1] = False  # the row mask refers to the logits' positions
    got = sparse_kd_loss(xp.asarray(s), xp.asarray(idx), xp.asarray(vals), 2.0,
                         labels=xp.asarray(y), shift_labels=True, where=xp.asarray(where),
                         missing="uniform")
    want = sparse_kd_loss(s[:, :-1], idx[:, :-1], vals[:, :-1], 2.0, labels=y[:, 1:],
                          where=where[:, :-1], missing="uniform")
    assert_close(got, float(want), xp=xp, rtol=1e-12, atol=1e-12)


def test_shift_labels_torch_gradient_matches_manual_shift():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    s = rng.normal(size=(2, 5, 7))
    t = rng.normal(size=(2, 5, 7))
    y = rng.integers(0, 7, size=(2, 5))
    a = torch.tensor(s, requires_grad=True)
    b = torch.tensor(s, requires_grad=True)
    kd_loss(a, torch.tensor(t), 2.0, labels=torch.tensor(y), shift_labels=True).backward()
    kd_loss(b[:, :-1], torch.tensor(t[:, :-1]), 2.0, labels=torch.tensor(y[:, 1:])).backward()
    assert (a.grad - b.grad).abs().max().item() <= 1e-12
    assert a.grad[:, -1].abs().max().item() == 0.0


def test_shift_labels_errors():
    s = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="'shift_labels' parameter of kd_loss"):
        kd_loss(s, s, shift_labels=True)
    with pytest.raises(ValueError, match="'shift_labels' parameter of kd_loss"):
        kd_loss(np.zeros(4), np.zeros(4), labels=np.array(1), shift_labels=True)
    with pytest.raises(TypeError, match="'shift_labels' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, np.zeros((2, 3, 1), int), np.zeros((2, 3, 1)), shift_labels=1)


# ---------------------------------------------------------------------------------------------
# argument errors
# ---------------------------------------------------------------------------------------------
def test_sparse_argument_errors():
    s = np.zeros((2, 5))
    idx = np.array([[0, 1], [2, 3]])
    vals = np.zeros((2, 2))
    with pytest.raises(IndexError, match="'teacher_indices' parameter of sparse_kd_loss.*Got 5"):
        sparse_kd_loss(s, np.array([[0, 5], [2, 3]]), vals)
    with pytest.raises(ValueError, match="distinct"):
        sparse_kd_loss(s, np.array([[1, 1], [2, 3]]), vals)
    with pytest.raises(ValueError, match="'teacher_values' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, np.zeros((2, 6), int), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="'teacher_indices' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, idx[:, :1], vals)
    with pytest.raises(TypeError, match="'teacher_indices' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, idx.astype(float), vals)
    with pytest.raises(ValueError, match="'missing' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, idx, vals, missing="spread")
    with pytest.raises(ValueError, match="'divergence' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, idx, vals, divergence="reverse")
    with pytest.raises(TypeError, match="'teacher' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, idx, vals, teacher=SparseTeacher(idx, vals))
    with pytest.raises(TypeError, match="'teacher_indices' parameter of sparse_kd_loss"):
        sparse_kd_loss(s)
    with pytest.raises(ValueError, match="'alpha' parameter of sparse_kd_loss"):
        sparse_kd_loss(s, idx, vals, alpha=0.5)


# ---------------------------------------------------------------------------------------------
# the same options in tempscale.torch.KDLoss (the chunked path and its generic fallback)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_kdloss_module_num_items_and_shift_labels_equal_kd_loss(dtype, divergence):
    torch = pytest.importorskip("torch")
    from tempscale.torch import KDLoss

    tol = 1e-12 if dtype == "float64" else 1e-6
    dt = getattr(torch, dtype)
    rng = np.random.default_rng(15)
    b, seq, v = 3, 7, 11
    s = rng.normal(size=(b, seq, v)) * 2
    t = torch.tensor(rng.normal(size=(b, seq, v)) * 2, dtype=dt)
    y = rng.integers(0, v, size=(b, seq))
    y[1, 3] = -100
    y = torch.tensor(y)
    crit = KDLoss(2.0, alpha=0.6, divergence=divergence, chunk_size=4)
    for kw in ({"num_items_in_batch": 13}, {"shift_labels": True},
               {"shift_labels": True, "num_items_in_batch": torch.tensor(9)}):
        a = torch.tensor(s, dtype=dt, requires_grad=True)
        c = torch.tensor(s, dtype=dt, requires_grad=True)
        la = crit(a, t, y, **kw)
        lc = kd_loss(c, t, 2.0, labels=y, alpha=0.6, divergence=divergence, **kw)
        la.backward()
        lc.backward()
        assert abs(la.item() - lc.item()) <= tol * max(1.0, abs(lc.item()))
        assert (a.grad - c.grad).abs().max().item() <= tol


def test_kdloss_module_gradient_accumulation_and_fallback():
    torch = pytest.importorskip("torch")
    from tempscale.torch import KDLoss

    rng = np.random.default_rng(16)
    n, v = 12, 9
    s = rng.normal(size=(n, v))
    t = torch.tensor(rng.normal(size=(n, v)))
    y = rng.integers(0, v, size=n)
    y[[0, 1, 2, 3]] = -100
    y = torch.tensor(y)
    n_valid = int((y != -100).sum())
    crit = KDLoss(3.0, alpha=0.5, chunk_size=5)
    full = torch.tensor(s, requires_grad=True)
    ref = crit(full, t, y)
    ref.backward()
    acc = torch.tensor(s, requires_grad=True)
    total = (crit(acc[:6], t[:6], y[:6], num_items_in_batch=n_valid)
             + crit(acc[6:], t[6:], y[6:], num_items_in_batch=n_valid))
    total.backward()
    assert abs(total.item() - ref.item()) <= 1e-12
    assert (acc.grad - full.grad).abs().max().item() <= 1e-12
    # a teacher that requires grad takes the generic path: same value
    tg = t.clone().requires_grad_(True)
    g = crit(torch.tensor(s[:6]), tg[:6], y[:6], num_items_in_batch=n_valid)
    f = crit(torch.tensor(s[:6]), t[:6], y[:6], num_items_in_batch=n_valid)
    assert abs(g.item() - f.item()) <= 1e-12
    with pytest.raises(ValueError, match="'num_items_in_batch' parameter of KDLoss"):
        crit(full, t, y, num_items_in_batch=-1)


# ---------------------------------------------------------------------------------------------
# PyTorch: sparse_kd_loss takes the lean chunked path of KDLoss whenever it can
# ---------------------------------------------------------------------------------------------
def _spy_paths(monkeypatch):
    """Count the calls of the lean chunked autograd.Function and of the generic path."""
    from tempscale import distill
    from tempscale.torch import _kd

    calls = {"lean": 0, "generic": 0}
    lean, generic = _kd._FusedKD.apply, distill.sparse_kd_loss_generic

    def spy_lean(*a, **k):
        calls["lean"] += 1
        return lean(*a, **k)

    def spy_generic(*a, **k):
        calls["generic"] += 1
        return generic(*a, **k)

    monkeypatch.setattr(_kd._FusedKD, "apply", spy_lean)
    monkeypatch.setattr(distill, "sparse_kd_loss_generic", spy_generic)
    return calls


_LEAN_CASES = {
    "plain": {},
    "labels_alpha": {"labels": True, "alpha": 0.3},
    "where_sum": {"where": True, "reduction": "sum"},
    "labels_where_none": {"labels": True, "where": True, "reduction": "none"},
    "num_items": {"labels": True, "num_items_in_batch": 11},
    "per_row_T_teacher_T": {"per_row_T": True, "teacher_temperature": 1.5},
    "no_t2": {"t2_scale": False, "labels": True, "alpha": 0.9},
}


@pytest.mark.parametrize("missing", ["zero", "uniform"])
@pytest.mark.parametrize("case", sorted(_LEAN_CASES))
def test_torch_lean_path_equals_generic(monkeypatch, missing, case):
    torch = pytest.importorskip("torch")
    from tempscale.distill import sparse_kd_loss_generic

    opts = dict(_LEAN_CASES[case])
    rng = np.random.default_rng(21)
    n, v, k = 14, 40, 6
    s, _, idx, vals = _topk(rng, n, v, k)
    y = rng.integers(0, v, size=n)
    y[[2, 5]] = -100
    kw = {key: val for key, val in opts.items() if key not in ("labels", "where", "per_row_T")}
    if opts.get("labels"):
        kw["labels"] = torch.tensor(y)
    if opts.get("where"):
        kw["where"] = torch.tensor(rng.random(n) < 0.7)
    T = torch.tensor(rng.uniform(0.5, 3.0, size=n)) if opts.get("per_row_T") else 2.0
    t_idx, t_vals = torch.tensor(idx), torch.tensor(vals)
    a = torch.tensor(s, requires_grad=True)
    b = torch.tensor(s, requires_grad=True)
    calls = _spy_paths(monkeypatch)
    got = sparse_kd_loss(a, t_idx, t_vals, T, missing=missing, **kw)
    assert calls == {"lean": 1, "generic": 0}
    want = sparse_kd_loss_generic(b, t_idx, t_vals, T, missing=missing, **kw)
    # the generic path is an independent float64 computation (no chunks, autograd)
    assert got.dtype == want.dtype == torch.float64
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.tensor(rng.normal(size=tuple(got.shape)))
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("missing", ["zero", "uniform"])
def test_torch_lean_path_shift_labels_equals_generic(monkeypatch, missing):
    torch = pytest.importorskip("torch")
    from tempscale.distill import sparse_kd_loss_generic

    rng = np.random.default_rng(22)
    b_, seq, v, k = 2, 5, 30, 4
    s, _, idx, vals = _topk(rng, b_ * seq, v, k)
    s, idx, vals = (x.reshape(b_, seq, -1) for x in (s, idx, vals))
    tokens = torch.tensor(rng.integers(0, v, size=(b_, seq)))
    a = torch.tensor(s, requires_grad=True)
    c = torch.tensor(s, requires_grad=True)
    calls = _spy_paths(monkeypatch)
    kw = {"labels": tokens, "shift_labels": True, "alpha": 0.4, "missing": missing,
          "num_items_in_batch": torch.tensor(7)}
    got = sparse_kd_loss(a, torch.tensor(idx), torch.tensor(vals), 1.7, **kw)
    assert calls["lean"] == 1
    want = sparse_kd_loss_generic(c, torch.tensor(idx), torch.tensor(vals), 1.7, **kw)
    assert abs(got.item() - want.item()) <= 1e-12 * max(1.0, abs(want.item()))
    got.backward()
    want.backward()
    assert torch.allclose(a.grad, c.grad, rtol=1e-12, atol=1e-13)


def test_torch_generic_path_where_the_lean_one_cannot(monkeypatch):
    """torch.func transforms, values or temperatures requiring grad, torch_fused=False: the
    generic implementation, with the same values (and gradients) as the lean path."""
    torch = pytest.importorskip("torch")
    import tempscale

    rng = np.random.default_rng(23)
    n, v, k = 6, 20, 5
    s, _, idx, vals = _topk(rng, n, v, k)
    st, it, vt = torch.tensor(s), torch.tensor(idx), torch.tensor(vals)
    calls = _spy_paths(monkeypatch)
    lean_s = st.clone().requires_grad_(True)
    lean = sparse_kd_loss(lean_s, it, vt, 2.0, missing="uniform")
    lean.backward()
    assert calls == {"lean": 1, "generic": 0}

    # torch.func.grad: the chunked autograd.Function does not support transforms, so the
    # generic path is taken (stubbed here by a known function: only the route is checked)
    from tempscale import distill

    def stub(x, *a, **k):
        calls["generic"] += 1
        return (x * x).sum()

    with monkeypatch.context() as m:
        m.setattr(distill, "sparse_kd_loss_generic", stub)
        g = torch.func.grad(lambda x: sparse_kd_loss(x, it, vt, 2.0, missing="uniform"))(st)
    assert calls == {"lean": 1, "generic": 1}
    assert torch.allclose(g, 2 * st)

    # teacher values that require grad: the generic path, and their gradient flows
    vg = vt.clone().requires_grad_(True)
    out = sparse_kd_loss(st, it, vg, 2.0, missing="uniform")
    assert calls["generic"] == 2 and calls["lean"] == 1
    out.backward()
    assert vg.grad is not None and torch.isfinite(vg.grad).all()
    assert abs(out.item() - lean.item()) <= 1e-12

    # a learned temperature
    T = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    out = sparse_kd_loss(st, it, vt, T, missing="uniform")
    assert calls["generic"] == 3 and calls["lean"] == 1
    out.backward()
    assert T.grad is not None and abs(out.item() - lean.item()) <= 1e-12

    # switched off
    with tempscale.config(torch_fused=False):
        out = sparse_kd_loss(st, it, vt, 2.0, missing="uniform")
    assert calls["generic"] == 4 and calls["lean"] == 1
    assert abs(out.item() - lean.item()) <= 1e-12

    # NumPy inputs never touch the torch path
    out = sparse_kd_loss(s, idx, vals, 2.0, missing="uniform")
    assert calls["generic"] == 5 and calls["lean"] == 1
    assert abs(float(out) - lean.item()) <= 1e-12


def test_torch_lean_path_float32_and_errors(monkeypatch):
    """float32 on the lean path stays close to a float64 reference; the lean path reports the
    same argument errors as the generic one."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(24)
    n, v, k = 8, 25, 4
    s, _, idx, vals = _topk(rng, n, v, k)
    calls = _spy_paths(monkeypatch)
    got = sparse_kd_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(idx),
                         torch.tensor(vals, dtype=torch.float32), 2.0, reduction="none")
    assert calls["lean"] == 1 and got.dtype == torch.float32
    assert_close(got, _ref_zero_rows(s, idx, vals, 2.0, 2.0), rtol=1e-5, atol=1e-6)
    bad = idx.copy()
    bad[0, 0] = v
    with pytest.raises(IndexError, match="sparse_kd_loss"):
        sparse_kd_loss(torch.tensor(s), torch.tensor(bad), torch.tensor(vals))
    with pytest.raises(ValueError, match="'missing' parameter of sparse_kd_loss"):
        sparse_kd_loss(torch.tensor(s), torch.tensor(idx), torch.tensor(vals), missing="flat")
