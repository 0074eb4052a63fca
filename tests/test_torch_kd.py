"""Tests for tempscale.torch (KDLoss / fused_kd_loss): the chunked loss equals kd_loss."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import tempscale

torch = pytest.importorskip("torch")

from tempscale.distill import SparseTeacher, kd_loss, kd_loss_generic, sparse_kd_loss  # noqa: E402
from tempscale.torch import KDLoss, fused_kd_loss  # noqa: E402

INF = math.inf
F = torch.nn.functional


def _logits(n=7, v=6, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    t = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    return s.to(dtype), t.to(dtype)


def _both(s, t, *args, grad_out=None, **kwargs):
    """(loss, grad) of fused_kd_loss and of kd_loss on copies of ``s``."""
    out = []
    chunk = kwargs.pop("chunk_size", None)
    for fn in (fused_kd_loss, _generic_kd_loss):
        a = s.detach().clone().requires_grad_()
        extra = {"chunk_size": chunk} if fn is fused_kd_loss else {}
        loss = fn(a, t, *args, **kwargs, **extra)
        go = torch.ones_like(loss) if grad_out is None else grad_out
        loss.backward(go)
        out.append((loss.detach(), a.grad))
    return out


def _generic_kd_loss(*args, **kwargs):
    """kd_loss by its generic Array-API path over torch's own softmax ops (kd_loss itself takes
    the lean path on torch tensors).  native=False: rows whose loss is infinite (a label on a
    class the student masks) have no well-defined gradient, and the CPU kernel's backward may
    define it differently from torch's log_softmax, which the closed form follows."""
    with tempscale.config(native=False):
        return kd_loss_generic(*args, **kwargs)


def _close(a, b, tol):
    a = a.double()
    b = b.double()
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    ok = ~torch.isnan(a)
    torch.testing.assert_close(a[ok], b[ok], rtol=tol, atol=tol)


CASES = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"labels": [1, -100, 3, 0, 2, -100, 5], "alpha": 0.3},
    {"labels": [1, -100, 3, 0, 2, -100, 5], "alpha": 0.0},
    {"labels": [1, -100, 3, 0, 2, -100, 5], "alpha": 1.0, "reduction": "none"},
    {"where": [True, True, False, True, False, True, True]},
    {"t2_scale": False},
    {"teacher_temperature": 0.7},
]


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("T", [1.0, 2.5, "rows"])
def test_matches_kd_loss_float64(divergence, case, T):
    kw = dict(CASES[case])
    if "labels" in kw:
        kw["labels"] = torch.tensor(kw["labels"])
    if "where" in kw:
        kw["where"] = torch.tensor(kw["where"])
    s, t = _logits(seed=case)
    s[:, -1] = -INF  # a masked class
    t[:, -1] = -INF
    if T == "rows":
        T = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 8.0, 1.5], dtype=torch.float64)
    go = torch.rand(7, dtype=torch.float64) if kw.get("reduction") == "none" else None
    (l1, g1), (l2, g2) = _both(s, t, T, divergence=divergence, chunk_size=3, grad_out=go, **kw)
    _close(l1, l2, 1e-12)
    # a label on the masked class makes that row's loss +inf: its gradient is not defined (the
    # paths may differ there); every other row must agree
    finite = torch.ones(7, dtype=torch.bool)
    if "labels" in kw:
        finite = kw["labels"] != s.shape[1] - 1
    _close(g1[finite], g2[finite], 1e-12)


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_matches_kd_loss_float32_to_1e6(divergence):
    s, t = _logits(n=40, v=1000, seed=1, dtype=torch.float32)
    labels = torch.randint(0, 1000, (40,), generator=torch.Generator().manual_seed(2))
    labels[::7] = -100
    (l1, g1), (l2, g2) = _both(s, t, 2.0, divergence=divergence, labels=labels, alpha=0.8,
                               chunk_size=16)
    # float64 reference of the same float32 inputs
    (l3, g3), _ = _both(s.double(), t.double(), 2.0, divergence=divergence, labels=labels,
                        alpha=0.8)
    assert l1.dtype == g1.dtype == torch.float32
    for got, ref in ((l1, l2), (l1, l3)):
        torch.testing.assert_close(got.double(), ref.double(), rtol=1e-6, atol=1e-6)
    for got, ref in ((g1, g2), (g1, g3)):
        torch.testing.assert_close(got.double(), ref.double(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    s, t = _logits(n=9, v=300, seed=3, dtype=dtype)
    s[:, 250:] = -INF
    t[:, 250:] = -INF
    (l1, g1), (l2, g2) = _both(s, t, 2.0, divergence="jsd", chunk_size=4)
    assert l1.dtype == g1.dtype == dtype
    assert torch.isfinite(g1).all()
    (l3, g3), _ = _both(s.double(), t.double(), 2.0, divergence="jsd")
    tol = 2e-3 if dtype == torch.float16 else 1e-2
    torch.testing.assert_close(l1.double(), l3, rtol=tol, atol=tol)
    torch.testing.assert_close(g1.double(), g3, rtol=tol, atol=tol * 1e-2)
    torch.testing.assert_close(g1, g2, rtol=tol, atol=tol * 1e-2)


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_gradcheck_float64(divergence):
    s, t = _logits(n=5, v=4, seed=4)
    s.requires_grad_()
    labels = torch.tensor([0, 3, -100, 1, 2])

    def f(x):
        return fused_kd_loss(x, t, 1.7, divergence=divergence, labels=labels, alpha=0.4,
                             chunk_size=2, inplace_backward=False)

    def g(x):
        return fused_kd_loss(x, t, torch.tensor([0.5, 1.0, 2.0, 3.0, 9.0], dtype=torch.float64),
                             divergence=divergence, reduction="none", chunk_size=2,
                             inplace_backward=False)

    assert torch.autograd.gradcheck(f, (s,))
    assert torch.autograd.gradcheck(g, (s,))


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 4.0, 16.0])
def test_gradient_identity(T):
    """d(T^2 KL(p || q))/ds = T (q - p); "sum" keeps it per row."""
    s, t = _logits(n=6, v=11, seed=5)
    a = s.clone().requires_grad_()
    KDLoss(T, reduction="sum", chunk_size=4)(a, t).backward()
    q = torch.softmax(s / T, -1)
    p = torch.softmax(t / T, -1)
    torch.testing.assert_close(a.grad, T * (q - p), rtol=1e-12, atol=1e-14)
    a.grad = None
    KDLoss(T, t2_scale=False, reduction="sum")(a, t).backward()
    torch.testing.assert_close(a.grad, (q - p) / T, rtol=1e-12, atol=1e-14)


def test_matches_naive_formulation_float32():
    s, t = _logits(n=64, v=5000, seed=6, dtype=torch.float32)
    a = s.clone().requires_grad_()
    b = s.clone().requires_grad_()
    T = 2.0
    naive = F.kl_div(F.log_softmax(b / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
    naive.backward()
    loss = KDLoss(T)(a, t)
    loss.backward()
    torch.testing.assert_close(loss, naive.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# the contract's edge cases go through the generic path chunk by chunk
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deferred", [False, True])
@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_special_rows(divergence, deferred, monkeypatch):
    import tempscale.torch._kd as tt

    # deferred=True: the GPU code path (one host sync after the loop), run on CPU
    monkeypatch.setattr(tt, "_DEFER_CHECKS", deferred)
    s, t = _logits(n=8, v=5, seed=7)
    s[1] = -INF                  # a fully masked student row (masked out below)
    t[2, 0] = INF                # +inf logits take the limit (one-hot here)
    s[2, 0] = INF
    s[3, 1] = INF
    s[5, 2] = float("nan")       # NaN row -> NaN loss
    mask = torch.ones(8, dtype=torch.bool)
    mask[1] = False
    (l1, g1), (l2, g2) = _both(s, t, 2.0, divergence=divergence, where=mask, reduction="none",
                               chunk_size=3)
    _close(l1, l2, 1e-12)
    _close(g1, g2, 1e-12)
    assert torch.isnan(l1[5]) and l1[1] == 0


@pytest.mark.parametrize("Tt", [0.0, INF])
def test_teacher_temperature_limits(Tt):
    s, t = _logits(n=6, v=5, seed=8)
    (l1, g1), (l2, g2) = _both(s, t, 2.0, teacher_temperature=Tt, chunk_size=4)
    _close(l1, l2, 1e-12)
    _close(g1, g2, 1e-12)


def test_no_valid_row_gives_zero_and_zero_gradient():
    s, t = _logits(n=4, v=5, seed=9)
    a = s.clone().requires_grad_()
    loss = KDLoss(3.0, alpha=0.5)(a, t, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0 and (a.grad == 0).all()
    b = s.clone().requires_grad_()
    loss = KDLoss(3.0, divergence="reverse")(b, t, where=torch.zeros(4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and (b.grad == 0).all()


def test_shapes_axis_and_scaled_backward():
    g = torch.Generator().manual_seed(10)
    s = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    t = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    labels = torch.tensor([[0, 1, 2, -100, 4], [6, -100, 5, 4, 3]])
    (l1, g1), (l2, g2) = _both(s, t, 2.0, labels=labels, alpha=0.5, reduction="none",
                               grad_out=torch.rand(2, 5, dtype=torch.float64))
    assert l1.shape == (2, 5)
    _close(l1, l2, 1e-12)
    _close(g1, g2, 1e-12)
    # the class axis in the middle
    sm, tm = s.movedim(-1, 1), t.movedim(-1, 1)
    (l1, g1), (l2, g2) = _both(sm, tm, 2.0, labels=labels, alpha=0.5, axis=1)
    _close(l1, l2, 1e-12)
    _close(g1, g2, 1e-12)
    Tk = torch.rand(2, 1, 5, dtype=torch.float64) + 0.5      # keepdims form at axis 1
    (l1, g1), (l2, g2) = _both(sm, tm, Tk, axis=1, reduction="none")
    (l3, g3), _ = _both(s, t, Tk[:, 0, :], reduction="none")
    _close(l1, l2, 1e-12)
    _close(l1, l3, 1e-12)
    _close(g1, g2, 1e-12)
    # the incoming gradient scales the stored one
    a = s.clone().requires_grad_()
    (3.0 * KDLoss(2.0)(a, t)).backward()
    b = s.clone().requires_grad_()
    (3.0 * kd_loss(b, t, 2.0)).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)


def test_per_row_temperature_at_call_time():
    s, t = _logits(n=4, v=6, seed=11)
    Ts = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    crit = KDLoss(1.0)
    a = s.clone().requires_grad_()
    loss = crit(a, t, temperature=Ts, teacher_temperature=2.0)
    loss.backward()
    b = s.clone().requires_grad_()
    ref = kd_loss(b, t, Ts, teacher_temperature=2.0)
    ref.backward()
    _close(loss.detach(), ref.detach(), 1e-12)
    _close(a.grad, b.grad, 1e-12)


def test_teacher_or_temperature_gradients_fall_back_to_autograd():
    s, t = _logits(n=4, v=6, seed=12)
    grads = []
    for fn in (fused_kd_loss, kd_loss):
        a = s.clone().requires_grad_()
        b = t.clone().requires_grad_()
        T = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
        fn(a, b, T, divergence="jsd").backward()
        grads.append((a.grad, b.grad, T.grad))
    for x, y in zip(*grads, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_backward_twice():
    s, t = _logits(n=3, v=4, seed=13)
    a = s.clone().requires_grad_()
    loss = KDLoss(2.0)(a, t)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace_backward=False"):
        loss.backward()
    b = s.clone().requires_grad_()
    loss = KDLoss(2.0, inplace_backward=False)(b, t)
    loss.backward(retain_graph=True)
    loss.backward()
    torch.testing.assert_close(b.grad, 2 * a.grad)


def test_no_grad_and_eval():
    s, t = _logits(n=5, v=4, seed=14)
    with torch.no_grad():
        loss = KDLoss(2.0, divergence="reverse")(s.clone().requires_grad_(), t)
    assert not loss.requires_grad
    _close(loss, kd_loss(s, t, 2.0, divergence="reverse"), 1e-12)


def test_module_options_and_errors():
    crit = KDLoss(4.0, alpha=0.9, divergence="jsd", beta=0.3)
    assert "temperature=4.0" in repr(crit) and "beta=0.3" in repr(crit)
    with pytest.raises(ValueError, match="'divergence' parameter of KDLoss"):
        KDLoss(2.0, divergence="kl")
    with pytest.raises(ValueError, match="'temperature' parameter of KDLoss"):
        KDLoss(0.0)
    with pytest.raises(ValueError, match="'alpha' parameter of KDLoss"):
        KDLoss(2.0, alpha=1.5)
    with pytest.raises(ValueError, match="'reduction' parameter of KDLoss"):
        KDLoss(2.0, reduction="mean")
    with pytest.raises(TypeError, match="'student_logits' parameter of KDLoss must be a torch.Tensor"):
        fused_kd_loss(np.zeros((2, 3)), torch.zeros(2, 3))
    with pytest.raises(IndexError, match="'labels' parameter of KDLoss"):
        KDLoss(2.0, alpha=0.5)(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="'chunk_size'"):
        fused_kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), chunk_size=1.5)
    # alpha weighs the soft term against the hard one: without labels it is an error, in the
    # module as in kd_loss (issue 12 item 4: one rule for both); alpha=None gives the soft term
    s, t = _logits(n=3, v=4, seed=15)
    with pytest.raises(ValueError, match="'alpha' parameter of KDLoss must be None when no labels"):
        crit(s, t)
    with pytest.raises(ValueError, match="'alpha' parameter of kd_loss must be None when no labels"):
        kd_loss(s, t, 4.0, alpha=0.9, divergence="jsd", beta=0.3)
    soft = KDLoss(4.0, divergence="jsd", beta=0.3)
    _close(soft(s, t), kd_loss(s, t, 4.0, divergence="jsd", beta=0.3), 1e-12)


def test_empty_batch():
    a = torch.zeros(0, 5, requires_grad=True)
    loss = KDLoss(2.0)(a, torch.zeros(0, 5))
    loss.backward()
    assert loss.item() == 0.0 and a.grad.shape == (0, 5)


def test_import_tempscale_does_not_import_torch():
    code = ("import sys, tempscale, tempscale.distill; "
            "assert 'torch' not in sys.modules and 'jax' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'jax')))")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# the end-to-end example through the CLI (one seed, one temperature: a few seconds)
# ---------------------------------------------------------------------------------------------
def test_cli_distill_quick(capsys, tmp_path):
    pytest.importorskip("sklearn")
    from tempscale.cli import main

    out = tmp_path / "kd.json"
    rc = main(["distill", "--quick", "--seeds", "1", "--temperatures", "4", "--no-progress",
               "--json", str(out), "--markdown"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "student: KD T=4" in text and "| model |" in text
    import json

    res = json.loads(out.read_text())["results"]
    assert set(res) == {"teacher", "student: hard labels", "student: KD T=4"}
    for vals in res.values():
        acc, nll = vals[0]
        assert 0.5 < acc <= 1.0 and 0.0 < nll < 2.0   # all models learn something
    # refuses to overwrite; bad options are one-line errors with exit status 2
    assert main(["distill", "--quick", "--json", str(out)]) == 2
    assert main(["distill", "--quick", "--alpha", "2"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--alpha must be in [0, 1]" in err


# ---------------------------------------------------------------------------------------------
# issue 12 item 0: kd_loss on torch tensors takes the lean chunked path
# ---------------------------------------------------------------------------------------------
def _is_lean(loss):
    """Whether the chunked autograd function is in ``loss``'s graph (a few nodes up)."""
    todo, seen = [loss.grad_fn], 0
    while todo and seen < 20:
        node = todo.pop()
        seen += 1
        if node is None:
            continue
        if "FusedKD" in type(node).__name__:
            return True
        todo.extend(f for f, _ in node.next_functions)
    return False


LEAN_CASES = [
    {},
    {"divergence": "reverse", "labels": [1, -100, 3, 0, 2, -100, 5], "alpha": 0.3},
    {"divergence": "jsd", "beta": 0.3, "where": [1, 1, 0, 1, 0, 1, 1]},
    {"reduction": "none", "teacher_temperature": 0.7},
    {"reduction": "sum", "t2_scale": False},
    {"num_items_in_batch": 11},
]


@pytest.mark.parametrize("case", range(len(LEAN_CASES)))
def test_kd_loss_on_torch_is_lean_and_equals_generic(case):
    kw = {k: (torch.tensor(v) if isinstance(v, list) else v) for k, v in LEAN_CASES[case].items()}
    s, t = _logits(seed=40 + case)
    for T in (2.0, torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 8.0, 1.5], dtype=torch.float64)):
        a = s.clone().requires_grad_()
        loss = kd_loss(a, t, T, **kw)
        assert _is_lean(loss)
        go = torch.rand(loss.shape, dtype=torch.float64) if loss.ndim else None
        loss.backward(go)
        b = s.clone().requires_grad_()
        ref = _generic_kd_loss(b, t, T, **kw)
        ref.backward(go)
        _close(loss.detach(), ref.detach(), 1e-12)
        _close(a.grad, b.grad, 1e-12)


def test_kd_loss_lean_axis_shift_labels_and_switch():
    s, t = _logits(n=12, v=5, seed=50)
    s3, t3 = s.reshape(2, 6, 5), t.reshape(2, 6, 5)
    tokens = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(0))
    a = s3.clone().requires_grad_()
    loss = kd_loss(a, t3, 2.0, labels=tokens, shift_labels=True, alpha=0.6)
    assert _is_lean(loss)
    loss.backward()
    b = s3.clone().requires_grad_()
    kd_loss_generic(b, t3, 2.0, labels=tokens, shift_labels=True, alpha=0.6).backward()
    _close(a.grad, b.grad, 1e-12)
    # the class axis first (a copy), the same values
    a0 = s.T.clone().requires_grad_()
    l0 = kd_loss(a0, t.T, 2.0, axis=0)
    l0.backward()
    _close(l0.detach(), kd_loss_generic(s, t, 2.0), 1e-12)
    with tempscale.config(torch_fused=False):
        assert not _is_lean(kd_loss(s.clone().requires_grad_(), t, 2.0))


def test_kd_loss_lean_backward_twice_gradcheck_and_torch_func():
    s, t = _logits(n=5, v=4, seed=51)
    a = s.clone().requires_grad_()
    loss = kd_loss(a, t, 2.0, divergence="reverse")
    loss.backward(retain_graph=True)
    first = a.grad.clone()
    loss.backward()  # the second backward recomputes: kd_loss never refuses it
    _close(a.grad, 2 * first, 1e-12)
    assert torch.autograd.gradcheck(lambda x: kd_loss(x, t, 1.5, divergence="jsd"),
                                    (s.clone().requires_grad_(),))
    # torch.func transforms take the generic path (native=False: this checks that routing, not
    # the CPU softmax kernel's own torch.func support)
    with tempscale.config(native=False):
        g = torch.func.grad(lambda x: kd_loss(x, t, 2.0))(s)
    b = s.clone().requires_grad_()
    kd_loss_generic(b, t, 2.0).backward()
    _close(g, b.grad, 1e-12)


# ---------------------------------------------------------------------------------------------
# issue 12 item 2: KDLoss / fused_kd_loss take a SparseTeacher
# ---------------------------------------------------------------------------------------------
def _sparse(n=9, v=7, k=3, seed=60, logprobs=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(v, generator=g)[:k] for _ in range(n)])
    full = torch.randn(n, v, generator=g, dtype=torch.float64) * 2
    if logprobs:
        full = torch.log_softmax(full, -1)
    return idx, full.gather(-1, idx).to(dtype)


@pytest.mark.parametrize("missing", ["zero", "uniform"])
@pytest.mark.parametrize("kw", [{}, {"labels": [1, -100, 3, 0, 2, -100, 5, 6, 0], "alpha": 0.4},
                                {"where": [1, 1, 0, 1, 1, 1, 0, 1, 1], "reduction": "none"},
                                {"num_items_in_batch": 20, "teacher_temperature": 1.5}])
def test_kdloss_sparse_teacher_equals_sparse_kd_loss(missing, kw):
    kw = {k: (torch.tensor(v) if isinstance(v, list) else v) for k, v in kw.items()}
    s, _ = _logits(n=9, v=7, seed=61)
    idx, vals = _sparse(logprobs=missing == "uniform")
    st = SparseTeacher(idx, vals)
    for T in (2.0, torch.linspace(0.5, 3.0, 9, dtype=torch.float64)):
        a = s.clone().requires_grad_()
        loss = fused_kd_loss(a, st, T, missing=missing, chunk_size=2, **kw)
        assert _is_lean(loss)
        go = torch.rand(loss.shape, dtype=torch.float64) if loss.ndim else None
        loss.backward(go)
        b = s.clone().requires_grad_()
        ref = sparse_kd_loss(b, teacher=st, temperature=T, missing=missing, **kw)
        ref.backward(go)
        _close(loss.detach(), ref.detach(), 1e-12)
        _close(a.grad, b.grad, 1e-12)
    # the module, with labels, and k = V equals the dense loss
    crit = KDLoss(2.0, missing=missing)
    full_idx = torch.argsort(torch.rand(9, 7, generator=torch.Generator().manual_seed(1)), -1)
    dense_t = torch.log_softmax(_logits(n=9, v=7, seed=62)[1], -1)
    _close(crit(s, SparseTeacher(full_idx, dense_t.gather(-1, full_idx))),
           kd_loss_generic(s, dense_t, 2.0), 1e-12)


def test_kdloss_sparse_teacher_special_cases():
    s, _ = _logits(n=6, v=5, seed=63)
    idx, vals = _sparse(n=6, v=5, k=2, seed=64)
    st = SparseTeacher(idx, vals)
    # teacher temperature 0 (argmax of the top-k) goes through the generic chunk
    a = s.clone().requires_grad_()
    loss = fused_kd_loss(a, st, 2.0, teacher_temperature=0.0)
    loss.backward()
    b = s.clone().requires_grad_()
    sparse_kd_loss(b, teacher=st, temperature=2.0, teacher_temperature=0.0).backward()
    _close(loss.detach(), sparse_kd_loss(s, teacher=st, temperature=2.0,
                                         teacher_temperature=0.0), 1e-12)
    _close(a.grad, b.grad, 1e-12)
    # values that require grad: the generic sparse loss (gradients for the values too)
    v1 = vals.clone().requires_grad_()
    fused_kd_loss(s, SparseTeacher(idx, v1), 2.0).backward()
    v2 = vals.clone().requires_grad_()
    sparse_kd_loss(s, teacher=SparseTeacher(idx, v2), temperature=2.0).backward()
    _close(v1.grad, v2.grad, 1e-12)
    # float32 student, NumPy values; errors
    s32 = s.float().requires_grad_()
    l32 = KDLoss(2.0)(s32, SparseTeacher(idx.numpy(), vals.numpy()))
    _close(l32.detach(), sparse_kd_loss(s, teacher=st, temperature=2.0), 1e-6)
    with pytest.raises(ValueError, match="'divergence' parameter of KDLoss"):
        KDLoss(2.0, divergence="reverse")(s, st)
    with pytest.raises(ValueError, match="'missing' parameter of KDLoss"):
        KDLoss(2.0, missing="spread")
    with pytest.raises(IndexError, match="'teacher_indices' parameter of KDLoss"):
        KDLoss(2.0)(s, SparseTeacher(idx + 5, vals))


# ---------------------------------------------------------------------------------------------
# issue 12 item 4: integer masks, teacher gradients on the lean path, alpha, a float32 loss
# ---------------------------------------------------------------------------------------------
def test_integer_row_masks_everywhere():
    s, t = _logits(n=7, v=6, seed=70)
    ints = [1, 0, 1, 1, 0, 1, 1]
    for m in (torch.tensor(ints), torch.tensor(ints, dtype=torch.uint8),
              torch.tensor(ints, dtype=torch.int32), np.array(ints)):
        ref = kd_loss_generic(s, t, 2.0, where=torch.tensor(ints, dtype=torch.bool))
        _close(kd_loss(s, t, 2.0, where=m), ref, 1e-12)
        _close(KDLoss(2.0)(s, t, where=m), ref, 1e-12)
        _close(fused_kd_loss(s, t, 2.0, where=m), ref, 1e-12)
        with pytest.warns(DeprecationWarning):
            _close(fused_kd_loss(s, t, 2.0, mask=m), ref, 1e-12)
    idx, vals = _sparse(n=7, v=6, k=2, seed=71)
    st = SparseTeacher(idx, vals)
    ref = sparse_kd_loss(s, teacher=st, temperature=2.0, where=torch.tensor(ints).bool())
    _close(sparse_kd_loss(s, teacher=st, temperature=2.0, where=torch.tensor(ints)), ref, 1e-12)
    _close(KDLoss(2.0)(s, st, where=torch.tensor(ints)), ref, 1e-12)
    with pytest.raises(ValueError, match="'where' parameter of kd_loss"):
        kd_loss(s, t, 2.0, where=torch.tensor([2, 0, 1, 1, 0, 1, 1]))


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
@pytest.mark.parametrize("kw", [{}, {"labels": [1, -100, 3, 0, 2, -100, 5], "alpha": 0.3},
                                {"where": [1, 1, 0, 1, 0, 1, 1], "teacher_temperature": 0.8},
                                {"reduction": "none"}])
def test_teacher_gradient_on_the_lean_path(divergence, kw):
    kw = {k: (torch.tensor(v) if isinstance(v, list) else v) for k, v in kw.items()}
    s, t = _logits(seed=72)
    for T in (2.0, torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0, 8.0, 1.5], dtype=torch.float64)):
        for fn in (kd_loss, fused_kd_loss):
            a, b = s.clone().requires_grad_(), t.clone().requires_grad_()
            loss = fn(a, b, T, divergence=divergence, beta=0.3, **kw)
            assert _is_lean(loss)   # no silent fallback, no warning (filterwarnings=error)
            go = torch.rand(loss.shape, dtype=torch.float64) if loss.ndim else None
            loss.backward(go)
            c, d = s.clone().requires_grad_(), t.clone().requires_grad_()
            ref = _generic_kd_loss(c, d, T, divergence=divergence, beta=0.3, **kw)
            ref.backward(go)
            _close(loss.detach(), ref.detach(), 1e-12)
            _close(a.grad, c.grad, 1e-12)
            _close(b.grad, d.grad, 1e-12)


def test_teacher_gradient_gradcheck_and_double_backward():
    s, t = _logits(n=4, v=5, seed=73)
    a, b = s.clone().requires_grad_(), t.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, y: fused_kd_loss(x, y, 1.7, divergence="jsd", inplace_backward=False), (a, b))
    assert torch.autograd.gradgradcheck(lambda x, y: kd_loss(x, y, 1.7), (a, b))


def test_alpha_is_handled_the_same_way():
    s, t = _logits(n=4, v=5, seed=74)
    y = torch.tensor([0, 1, -100, 4])
    for call in (lambda: kd_loss(s, t, 2.0, alpha=0.7),
                 lambda: fused_kd_loss(s, t, 2.0, alpha=0.7),
                 lambda: KDLoss(2.0, alpha=0.7)(s, t)):
        with pytest.raises(ValueError, match="'alpha' parameter of (kd_loss|KDLoss) must be "
                                             "None when no labels"):
            call()
    ref = kd_loss_generic(s, t, 2.0, labels=y, alpha=0.7)
    for got in (kd_loss(s, t, 2.0, labels=y, alpha=0.7), KDLoss(2.0, alpha=0.7)(s, t, y)):
        _close(got, ref, 1e-12)
    # default alpha with labels is 0.5 in both
    _close(KDLoss(2.0)(s, t, y), kd_loss(s, t, 2.0, labels=y, alpha=0.5), 1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_float32_loss_from_half_inputs(dtype):
    s, t = _logits(n=6, v=50, seed=75, dtype=dtype)
    ref = kd_loss_generic(s.double(), t.double(), 2.0)      # the half values, exactly
    for fn in (kd_loss, fused_kd_loss, lambda *a, **k: KDLoss(2.0, dtype=k["dtype"])(a[0], a[1])):
        a = s.clone().requires_grad_()
        loss = fn(a, t, 2.0, dtype=torch.float32)
        assert loss.dtype == torch.float32
        assert abs(loss.item() - ref.item()) <= 1e-5 * abs(ref.item())
        loss.backward()
        assert a.grad.dtype == dtype
        assert fn(s, t, 2.0, dtype=None).dtype == dtype          # the default: the inputs' dtype
    np_loss = kd_loss(s.float().numpy().astype(np.float16), t.float().numpy().astype(np.float16),
                      2.0, dtype=np.float32)
    assert np_loss.dtype == np.float32
    with pytest.raises(TypeError, match="'dtype' parameter of kd_loss"):
        kd_loss(s, t, 2.0, dtype=torch.int32)
