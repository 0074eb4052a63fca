"""FusedLinearKDLoss: equal to kd_loss on materialised logits (values and gradients, float64)."""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

from tempscale.distill import kd_loss  # noqa: E402
from tempscale.torch import FusedLinearKDLoss  # noqa: E402

N, H, V, HT = 7, 3, 11, 5


def _data(seed=0, batch=(N,), dtype=torch.float64, bias=False, teacher="logits"):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*batch, H, generator=g, dtype=dtype, requires_grad=True)
    W = (torch.randn(V, H, generator=g, dtype=dtype) * 1.5).requires_grad_(True)
    b = (torch.randn(V, generator=g, dtype=dtype)).requires_grad_(True) if bias else None
    th = torch.randn(*batch, HT, generator=g, dtype=dtype)
    tw = torch.randn(V, HT, generator=g, dtype=dtype)
    tb = torch.randn(V, generator=g, dtype=dtype)
    if teacher == "logits":
        t_arg, t_logits = th @ tw.T + tb, th @ tw.T + tb
    elif teacher == "pair":
        t_arg, t_logits = (th, tw), th @ tw.T
    else:
        t_arg, t_logits = (th, tw, tb), th @ tw.T + tb
    labels = torch.randint(0, V, batch, generator=g)
    labels.view(-1)[1] = -100
    labels.view(-1)[-2] = -100
    return h, W, b, t_arg, t_logits, labels


def _compare(fused_kwargs, call_kwargs, ref_kwargs, *, seed=0, batch=(N,), bias=False,
             teacher="logits", dtype=torch.float64, rtol=1e-10, atol=1e-12):
    h, W, b, t_arg, t_logits, labels = _data(seed, batch, dtype, bias, teacher)
    use_labels = call_kwargs.pop("labels", False)
    lab = labels if use_labels else None
    loss_fn = FusedLinearKDLoss(**fused_kwargs)
    loss = loss_fn(h, W, t_arg, lab, student_bias=b, **call_kwargs)
    logits = h @ W.T if b is None else h @ W.T + b
    ref = kd_loss(logits, t_logits, fused_kwargs.get("temperature", 1.0), labels=lab,
                  **ref_kwargs)
    assert loss.dtype == ref.dtype and loss.shape == ref.shape
    torch.testing.assert_close(loss, ref, rtol=rtol, atol=atol)
    params = [h, W] + ([b] if b is not None else [])
    go = torch.rand(ref.shape, dtype=ref.dtype, generator=torch.Generator().manual_seed(5)) + 0.5
    got = torch.autograd.grad(loss, params, grad_outputs=go)
    want = torch.autograd.grad(ref, params, grad_outputs=go)
    for a, e in zip(got, want, strict=True):
        assert a.dtype == e.dtype and a.shape == e.shape
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol)


DIVERGENCES = [("forward", 0.5), ("reverse", 0.5), ("jsd", 0.3), ("jsd", 0.0), ("jsd", 1.0)]
LABEL_CASES = [None, "default", 0.0, 0.3, 1.0]


@pytest.mark.parametrize(("divergence", "beta"), DIVERGENCES)
def test_every_option_combination_matches_kd_loss(divergence, beta):
    """Divergence x labels/alpha (with ignore_index rows) x reduction x t2_scale x T."""
    for alpha, reduction, (t2, T) in itertools.product(
            LABEL_CASES, ["batchmean", "sum", "none"], [(True, 2.5), (False, 2.5), (True, 1.0)]):
        fk = dict(temperature=T, divergence=divergence, beta=beta, t2_scale=t2,
                  reduction=reduction, chunk_size=3)
        ck, rk = {}, dict(divergence=divergence, beta=beta, t2_scale=t2, reduction=reduction)
        if alpha is not None:
            ck["labels"] = True
            if alpha != "default":
                fk["alpha"] = rk["alpha"] = alpha
        _compare(fk, ck, rk, bias=reduction == "sum")


@pytest.mark.parametrize("teacher", ["logits", "pair", "triple"])
@pytest.mark.parametrize("bias", [False, True])
def test_teacher_forms_and_bias(teacher, bias):
    for divergence in ("forward", "jsd"):
        _compare(dict(temperature=3.0, divergence=divergence, alpha=0.6, chunk_size=2),
                 dict(labels=True), dict(divergence=divergence, alpha=0.6),
                 teacher=teacher, bias=bias)


@pytest.mark.parametrize("chunk_size", [None, 1, 4, N, 100])
def test_chunk_sizes(chunk_size):
    _compare(dict(temperature=2.0, alpha=0.5, chunk_size=chunk_size), dict(labels=True),
             dict(alpha=0.5), bias=True)


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_per_row_temperatures(divergence):
    g = torch.Generator().manual_seed(3)
    T = torch.rand(N, generator=g, dtype=torch.float64) * 3 + 0.3
    Tt = torch.rand(N, 1, generator=g, dtype=torch.float64) * 3 + 0.3
    for labels in (False, True):
        h, W, b, t_arg, t_logits, lab = _data(1, bias=True)
        loss = FusedLinearKDLoss(divergence=divergence, chunk_size=3)(
            h, W, t_arg, lab if labels else None, student_bias=b, temperature=T,
            teacher_temperature=Tt)
        ref = kd_loss(h @ W.T + b, t_logits, T, labels=lab if labels else None,
                      divergence=divergence, teacher_temperature=Tt)
        torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
        for a, e in zip(torch.autograd.grad(loss, (h, W, b)), torch.autograd.grad(ref, (h, W, b)),
                        strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("Tt", [0.0, float("inf"), 0.5])
def test_teacher_temperature_including_limits(Tt):
    for divergence in ("forward", "jsd"):
        _compare(dict(temperature=2.0, teacher_temperature=Tt, divergence=divergence,
                      chunk_size=3), {}, dict(teacher_temperature=Tt, divergence=divergence))


def test_num_items_in_batch_and_accumulation():
    """num_items_in_batch (number or 0-d tensor) equals kd_loss's; micro-batches add up."""
    for num in (5, 12.5, torch.tensor(9)):
        _compare(dict(temperature=2.0, alpha=0.4, chunk_size=2),
                 dict(labels=True, num_items_in_batch=num), dict(alpha=0.4, num_items_in_batch=num))
    h, W, b, t_arg, t_logits, labels = _data(2)
    fn = FusedLinearKDLoss(2.0, alpha=0.4, chunk_size=2)
    n_valid = int((labels != -100).sum())
    parts = [fn(h[i:j], W, t_arg[i:j], labels[i:j], num_items_in_batch=n_valid)
             for i, j in ((0, 3), (3, N))]
    whole = fn(h, W, t_arg, labels)
    torch.testing.assert_close(parts[0] + parts[1], whole, rtol=1e-12, atol=1e-12)


def test_where_rows_batch_axes_and_shift_labels():
    batch = (2, 4)
    _compare(dict(temperature=2.0, alpha=0.5, chunk_size=3),
             dict(labels=True, shift_labels=True), dict(alpha=0.5, shift_labels=True),
             batch=batch)
    where = torch.tensor([[True, False, True, True], [False, True, True, True]])
    _compare(dict(temperature=1.5, reduction="none", chunk_size=3), dict(where=where),
             dict(where=where, reduction="none"), batch=batch, teacher="triple")
    _compare(dict(temperature=1.5, chunk_size=3), dict(where=where.to(torch.int64)),
             dict(where=where), batch=batch)


def test_all_rows_left_out_is_zero():
    h, W, b, t_arg, t_logits, labels = _data(0)
    loss = FusedLinearKDLoss(2.0)(h, W, t_arg, torch.full((N,), -100))
    assert float(loss.detach()) == 0.0
    gh, gW = torch.autograd.grad(loss, (h, W))
    assert not gh.any() and not gW.any()


def test_float32_close_to_float64_reference():
    h, W, b, t_arg, t_logits, labels = _data(4, dtype=torch.float32, bias=True)
    loss = FusedLinearKDLoss(2.0, divergence="jsd", alpha=0.5)(h, W, t_arg, labels,
                                                                student_bias=b)
    ref = kd_loss((h @ W.T + b).double(), t_logits.double(), 2.0, labels=labels, alpha=0.5,
                  divergence="jsd")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-6)


def test_bfloat16_inputs_give_their_dtype_and_float32_accuracy():
    h, W, b, t_arg, t_logits, labels = _data(4, dtype=torch.bfloat16)
    loss = FusedLinearKDLoss(2.0)(h, W, t_arg, labels)
    ref = kd_loss((h @ W.T).float(), t_logits.float(), 2.0, labels=labels)
    assert loss.dtype == torch.bfloat16
    torch.testing.assert_close(loss.float(), ref, rtol=2e-2, atol=1e-2)
    gW, = torch.autograd.grad(loss, (W,))
    assert gW.dtype == torch.bfloat16 and torch.isfinite(gW).all()


def test_frozen_teacher_gets_no_gradient_and_a_warning():
    h, W, b, t_arg, t_logits, labels = _data(0)
    t = t_logits.clone().requires_grad_(True)
    with pytest.warns(UserWarning, match="teacher requires grad"):
        loss = FusedLinearKDLoss(2.0)(h, W, t)
    loss.backward()
    assert t.grad is None and W.grad is not None


def test_only_needed_gradients_and_no_grad_mode():
    h, W, b, t_arg, t_logits, labels = _data(0)
    with torch.no_grad():
        loss = FusedLinearKDLoss(2.0, alpha=0.3)(h, W, t_arg, labels)
    ref = kd_loss(h @ W.T, t_logits, 2.0, labels=labels, alpha=0.3)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-12)
    Wf = W.detach()
    loss = FusedLinearKDLoss(2.0)(h, Wf, t_arg)
    gh, = torch.autograd.grad(loss, (h,))
    gh_ref, = torch.autograd.grad(kd_loss(h @ Wf.T, t_logits, 2.0), (h,))
    torch.testing.assert_close(gh, gh_ref, rtol=1e-12, atol=1e-12)


def test_second_order_and_double_backward_are_refused():
    h, W, b, t_arg, t_logits, labels = _data(0)
    loss = FusedLinearKDLoss(2.0)(h, W, t_arg)
    with pytest.raises(RuntimeError, match="second-order"):
        torch.autograd.grad(loss, (h,), create_graph=True)
    loss = FusedLinearKDLoss(2.0)(h, W, t_arg)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    (dict(temperature=0.0), ValueError, "'temperature' parameter of FusedLinearKDLoss"),
    (dict(divergence="kl"), ValueError, "'divergence' parameter"),
    (dict(beta=2.0), ValueError, "'beta' parameter"),
    (dict(alpha=1.5), ValueError, "'alpha' parameter"),
    (dict(reduction="mean"), ValueError, "'reduction' parameter"),
    (dict(chunk_size=0), ValueError, "'chunk_size' parameter"),
    (dict(chunk_size=2.5), TypeError, "'chunk_size' parameter"),
    (dict(ignore_index=1.5), TypeError, "'ignore_index' parameter"),
])
def test_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        FusedLinearKDLoss(**kwargs)


def test_bad_shapes_and_types():
    h, W, b, t_arg, t_logits, labels = _data(0)
    fn = FusedLinearKDLoss(2.0)
    cases = [
        ((h, W[:, :2], t_logits), ValueError, "'student_weight' parameter"),
        ((h, W.float(), t_logits), TypeError, "'student_weight' parameter"),
        ((h.detach().numpy(), W, t_logits), TypeError, "'student_hidden' parameter"),
        ((h, W, t_logits[:, :5]), ValueError, "'teacher' parameter"),
        ((h, W, t_logits[:3]), ValueError, "'teacher' parameter"),
        ((h, W, (t_logits,)), TypeError, "'teacher' parameter"),
        ((h, W, "teacher"), TypeError, "'teacher' parameter"),
        ((h, W, (torch.randn(N, HT, dtype=torch.float64), torch.randn(V + 1, HT,
                                                                       dtype=torch.float64))),
         ValueError, r"'teacher\[1\] \(teacher_weight\)' parameter"),
        ((h, W, (torch.randn(N + 1, HT, dtype=torch.float64), torch.randn(V, HT,
                                                                           dtype=torch.float64))),
         ValueError, r"'teacher\[0\] \(teacher_hidden\)' parameter"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn(*args)
    with pytest.raises(ValueError, match="'student_bias' parameter"):
        fn(h, W, t_logits, student_bias=torch.zeros(V + 1, dtype=torch.float64))
    with pytest.raises(IndexError, match="'labels' parameter"):
        fn(h, W, t_logits, torch.full((N,), V))
    with pytest.raises(ValueError, match="'num_items_in_batch' parameter"):
        fn(h, W, t_logits, num_items_in_batch=0)
    with pytest.raises(ValueError, match="'num_items_in_batch' parameter"):
        FusedLinearKDLoss(reduction="sum")(h, W, t_logits, num_items_in_batch=3)
    with pytest.raises(ValueError, match="'temperature' parameter"):
        fn(h, W, t_logits, temperature=torch.ones(N, dtype=torch.float64, requires_grad=True))


def test_alpha_applies_only_with_labels():
    """As in KDLoss: the module's alpha weighs the terms when a call passes labels."""
    h, W, b, t_arg, t_logits, labels = _data(0)
    loss = FusedLinearKDLoss(2.0, alpha=0.5)(h, W, t_arg)
    torch.testing.assert_close(loss, kd_loss(h @ W.T, t_logits, 2.0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("divergence", "beta"), DIVERGENCES)
def test_non_finite_logits_take_the_careful_path(divergence, beta):
    """-inf teacher logits (masked classes), a -inf student bias entry, and NaN hidden states
    in a left-out row: the same loss and gradients as kd_loss."""
    h, W, b, t_arg, t_logits, labels = _data(6, bias=True)
    t = t_logits.clone()
    t[0, 3] = t[4, :5] = float("-inf")
    with torch.no_grad():
        h[1] = float("nan")          # row 1 has label -100: left out
    for alpha in (None, 0.4):
        kw = dict(divergence=divergence, beta=beta)
        lab = labels if alpha is not None else torch.where(labels == -100, -100, 0)
        loss = FusedLinearKDLoss(2.0, alpha=alpha, chunk_size=3, **kw)(h, W, t, lab,
                                                                       student_bias=b)
        ref = kd_loss(h @ W.T + b, t, 2.0, labels=lab, alpha=alpha, **kw)
        torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
        for a, e in zip(torch.autograd.grad(loss, (h, W, b)),
                        torch.autograd.grad(ref, (h, W, b)), strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12, equal_nan=True)
    bm = b.detach().clone()
    bm[2] = float("-inf")            # a class the student masks
    loss = FusedLinearKDLoss(2.0, divergence=divergence, beta=beta)(h[2:], W, t[2:],
                                                                     student_bias=bm)
    ref = kd_loss(h[2:] @ W.T + bm, t[2:], 2.0, divergence=divergence, beta=beta)
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12, equal_nan=True)


def _sparse(seed, batch=(N,), k=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*batch, V, generator=g, dtype=torch.float64) * 2
    vals, idx = torch.topk(torch.log_softmax(logits, -1), k, dim=-1)
    return idx, vals


@pytest.mark.parametrize("missing", ["zero", "uniform"])
def test_sparse_teacher_matches_sparse_kd_loss(missing):
    from tempscale.distill import SparseTeacher, sparse_kd_loss

    idx, vals = _sparse(8)
    g = torch.Generator().manual_seed(9)
    T_rows = torch.rand(N, generator=g, dtype=torch.float64) + 0.5
    cases = [dict(T=2.0), dict(T=2.0, labels=True, alpha=0.3), dict(T=T_rows, labels=True),
             dict(T=1.0, reduction="none"), dict(T=2.0, reduction="sum", t2_scale=False),
             dict(T=2.0, labels=True, num_items_in_batch=11)]
    for case in cases:
        case = dict(case)
        T = case.pop("T")
        use_labels = case.pop("labels", False)
        alpha = case.pop("alpha", None)
        num = case.pop("num_items_in_batch", None)
        h, W, b, _, _, labels = _data(3, bias=True)
        lab = labels if use_labels else None
        fn = FusedLinearKDLoss(2.0, alpha=alpha, missing=missing, chunk_size=3, **case)
        loss = fn(h, W, SparseTeacher(idx, vals), lab, student_bias=b, temperature=T,
                  num_items_in_batch=num)
        ref = sparse_kd_loss(h @ W.T + b, teacher=SparseTeacher(idx, vals), temperature=T,
                             missing=missing, labels=lab, alpha=alpha, num_items_in_batch=num,
                             **case)
        torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-12)
        go = torch.rand(ref.shape, dtype=ref.dtype, generator=g) + 0.5
        for a, e in zip(torch.autograd.grad(loss, (h, W, b), grad_outputs=go),
                        torch.autograd.grad(ref, (h, W, b), grad_outputs=go), strict=True):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_sparse_teacher_with_k_equal_v_is_the_dense_loss():
    from tempscale.distill import SparseTeacher

    h, W, b, t_arg, t_logits, labels = _data(2)
    vals, idx = torch.sort(t_logits, dim=-1, descending=True)
    fn = FusedLinearKDLoss(2.0, alpha=0.5, chunk_size=4)
    torch.testing.assert_close(fn(h, W, SparseTeacher(idx, vals), labels),
                               fn(h, W, t_logits, labels), rtol=1e-10, atol=1e-12)


def test_sparse_teacher_errors():
    from tempscale.distill import SparseTeacher

    h, W, b, t_arg, t_logits, labels = _data(0)
    idx, vals = _sparse(1)
    with pytest.raises(ValueError, match="'teacher' parameter of FusedLinearKDLoss"):
        FusedLinearKDLoss(divergence="jsd")(h, W, SparseTeacher(idx, vals))
    with pytest.raises(ValueError, match="'teacher' parameter"):
        FusedLinearKDLoss()(h, W, SparseTeacher(idx[:3], vals[:3]))
    with pytest.raises(TypeError, match="'teacher.indices' parameter"):
        FusedLinearKDLoss()(h, W, SparseTeacher(idx.double(), vals))
    with pytest.raises(ValueError, match="'missing' parameter"):
        FusedLinearKDLoss(missing="spread")
