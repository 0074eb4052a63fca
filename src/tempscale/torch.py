r"""PyTorch distillation loss that stays lean in memory for large vocabularies.

:class:`KDLoss` (an ``nn.Module``) and :func:`fused_kd_loss` compute exactly the loss of
:func:`tempscale.distill.kd_loss` -- same options, same numerical contract -- but walk the rows in
chunks and compute the loss *and the student's gradient* chunk by chunk in the forward pass, as
Liger-Kernel and Apple's Cut Cross-Entropy do.  Nothing batch x vocab sized is kept except the
gradient itself, which autograd then receives without a copy, so the extra memory of forward +
backward stays close to one batch x vocab buffer (the naive ``F.kl_div`` formulation keeps
several).

This module imports torch; ``import tempscale`` does not import it.  Use
``from tempscale.torch import KDLoss``.

Gradients flow into the student logits only.  When the teacher logits or a tensor temperature
require gradients (rare: the teacher is usually frozen), the loss falls back to the generic
autograd implementation :func:`tempscale.distill.kd_loss` -- correct, but not memory-lean.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import distill as _distill
from ._compat import is_python_scalar
from ._validation import check_bool, check_scalar, param_error

__all__ = ["KDLoss", "fused_kd_loss"]

#: elements per chunk (float32): 2**20 = 4 MiB, so a chunk's few temporaries stay in cache
_CHUNK_ELEMENTS = 1 << 20


def _auto_chunk(n_rows: int, n_classes: int) -> int:
    return max(1, min(max(n_rows, 1), _CHUNK_ELEMENTS // max(n_classes, 1)))


class _FusedKD(torch.autograd.Function):
    """Chunked forward that also computes d(loss)/d(student); backward only rescales it."""

    @staticmethod
    def forward(ctx, s, t, T, Tt, labels, valid, cfg):
        alpha, divergence, beta, t2_scale, ignore_index, reduction, chunk, compute, inplace = cfg
        n, v = s.shape
        need_grad = bool(ctx.needs_input_grad[0])
        grad = torch.empty_like(s, memory_format=torch.contiguous_format) if need_grad else None
        rows = torch.empty(n, dtype=compute, device=s.device)
        if valid is None:
            n_valid = n
        else:
            n_valid = int(valid.sum())
        w = 1.0 / max(n_valid, 1) if reduction == "batchmean" else 1.0
        special_t = _special_teacher_temperature(Tt)
        for i in range(0, n, chunk):
            j = min(n, i + chunk)
            sc = s[i:j]
            tc = t[i:j]
            Tc = T if is_python_scalar(T) else T[i:j]
            Ttc = Tt if is_python_scalar(Tt) else Tt[i:j]
            lab = None if labels is None else labels[i:j]
            val = None if valid is None else valid[i:j]
            if special_t or not _finite_chunk(sc, tc):
                r, g = _chunk_generic(sc, tc, Tc, Ttc, lab, val, cfg, w, need_grad)
            else:
                r, g = _chunk_fast(sc.to(compute), tc.to(compute), Tc, Ttc, lab, val, cfg, w,
                                   need_grad)
            rows[i:j] = r
            if need_grad:
                grad[i:j] = g
            del g
        ctx.grad = grad
        ctx.reduction = reduction
        ctx.inplace = inplace
        if reduction == "none":
            return rows
        total = rows.sum()
        return total * w if reduction == "batchmean" else total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        g = ctx.grad
        if g is None:
            raise RuntimeError(
                "tempscale.torch.KDLoss hands its stored gradient to autograd without a copy, so "
                "it can be backpropagated only once; pass inplace_backward=False to allow "
                "retain_graph=True (at the cost of one more batch x vocab buffer)")
        if ctx.inplace:
            ctx.grad = None
            if ctx.reduction == "none":
                g.mul_(grad_out.reshape(-1, 1).to(g.dtype))
            elif not bool(grad_out == 1):
                g.mul_(grad_out.to(g.dtype))
        else:
            if ctx.reduction == "none":
                g = g * grad_out.reshape(-1, 1).to(g.dtype)
            else:
                g = g * grad_out.to(g.dtype)
        return g, None, None, None, None, None, None


def _special_teacher_temperature(Tt) -> bool:
    if is_python_scalar(Tt):
        return Tt == 0 or math.isinf(Tt)
    return bool(torch.any((Tt == 0) | torch.isinf(Tt)))


def _finite_chunk(sc, tc) -> bool:
    """Every row has a finite maximum (no NaN, no +inf, not fully masked) in both inputs."""
    return bool(torch.isfinite(sc.amax(dim=-1)).all()) and bool(torch.isfinite(tc.amax(dim=-1)).all())


def _chunk_fast(sc, tc, T, Tt, lab, val, cfg, w, need_grad):
    """Loss rows and weighted gradient of one chunk of ordinary rows (finite maxima)."""
    alpha, divergence, beta, t2_scale, _ii, _red, _chunk, _compute, _inplace = cfg
    if divergence == "jsd" and beta == 0.0:
        divergence = "forward"
    elif divergence == "jsd" and beta == 1.0:
        divergence = "reverse"
    scalar_T = is_python_scalar(T)
    logq = torch.log_softmax(sc if (scalar_T and T == 1.0) else sc / T, dim=-1)
    logp = torch.log_softmax(tc if (is_python_scalar(Tt) and Tt == 1.0) else tc / Tt, dim=-1)
    q = torch.exp(logq)
    p = torch.exp(logp)
    if divergence == "forward":
        # KL(p || q) = sum p (log p - log q); gradient (q * sum p - p) / T
        buf = torch.sub(logp, logq)
        buf.mul_(p).masked_fill_(p == 0, 0.0)
        soft = buf.sum(dim=-1)
        del logp
        if need_grad:
            torch.mul(q, p.sum(dim=-1, keepdim=True), out=buf)
            buf.sub_(p)
        del p
    elif divergence == "reverse":
        # KL(q || p) = sum q (log q - log p); gradient q (f - KL) / T with f = log q - log p
        buf = torch.sub(logq, logp)
        buf.masked_fill_(q == 0, 0.0)
        del logp, p
        soft = torch.linalg.vecdot(q, buf)
        if need_grad:
            buf.sub_(soft.unsqueeze(-1)).mul_(q)
    else:
        # beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q;
        # d/dq = (1 - beta)(log q - log m), so the gradient is (1 - beta) q (g - E_q g) / T
        logm = torch.mul(p, beta)
        logm.add_(q, alpha=1.0 - beta).log_()
        buf = torch.sub(logp, logm)
        buf.mul_(p).masked_fill_(p == 0, 0.0)
        kl_p = buf.sum(dim=-1)
        del logp, p
        torch.sub(logq, logm, out=buf)
        del logm
        buf.masked_fill_(q == 0, 0.0)
        kl_q = torch.linalg.vecdot(q, buf)
        soft = beta * kl_p + (1.0 - beta) * kl_q
        if need_grad:
            buf.sub_(kl_q.unsqueeze(-1)).mul_(q).mul_(1.0 - beta)
    # soft-term weight per row: alpha * (T^2 if t2_scale) ; its gradient carries a 1/T
    if scalar_T:
        k = T * T if t2_scale else 1.0
        gcoef = alpha * k / T * w
    else:
        k = (T * T).squeeze(-1) if t2_scale else torch.ones_like(T).squeeze(-1)
        gcoef = (alpha * w) * (T if t2_scale else 1.0 / T)
    soft = soft * k
    if lab is None:
        r = soft
        if need_grad:
            buf.mul_(gcoef)
    else:
        safe = lab if val is None else torch.where(val, lab, torch.zeros_like(lab))
        idx = safe.unsqueeze(-1)
        if scalar_T and T == 1.0:
            logq1, q1 = logq, q
        else:
            logq1 = torch.log_softmax(sc, dim=-1)
            q1 = torch.exp(logq1)
        hard = -torch.gather(logq1, -1, idx).squeeze(-1)
        if alpha == 1.0:
            r = soft
        elif alpha == 0.0:
            r = hard
        else:
            r = alpha * soft + (1.0 - alpha) * hard
        if need_grad:
            hw = (1.0 - alpha) * w
            if alpha == 0.0:
                buf.copy_(q1).mul_(hw)
            else:
                buf.mul_(gcoef).add_(q1, alpha=hw)
            buf.scatter_add_(-1, idx, torch.full(idx.shape, -hw, dtype=buf.dtype, device=buf.device))
    if val is not None and not bool(val.all()):
        r = torch.where(val, r, torch.zeros_like(r))
        if need_grad:
            buf.masked_fill_(~val.unsqueeze(-1), 0.0)
    return r, (buf if need_grad else None)


def _chunk_generic(sc, tc, T, Tt, lab, val, cfg, w, need_grad):
    """The same via the generic implementation and autograd (NaN/+inf/fully masked rows, T_t in {0, inf})."""
    alpha, divergence, beta, t2_scale, ignore_index, _red, _chunk, compute, _inplace = cfg
    with torch.enable_grad():
        x = sc.detach().to(compute).requires_grad_(need_grad)
        rows = _distill.kd_loss(
            x, tc.detach(), T, labels=lab, alpha=None if lab is None else alpha,
            divergence=divergence, beta=beta, teacher_temperature=Tt, t2_scale=t2_scale,
            ignore_index=ignore_index, mask=val, reduction="none")
        rows = rows.to(compute)
        g = None
        if need_grad:
            (g,) = torch.autograd.grad(rows, x, grad_outputs=torch.full_like(rows, w))
    return rows.detach(), g


def _is_tensor_requiring_grad(x) -> bool:
    return isinstance(x, torch.Tensor) and x.requires_grad


def fused_kd_loss(student_logits, teacher_logits, temperature=1.0, *, labels=None, alpha=None,
                  divergence="forward", beta=0.5, teacher_temperature=None, t2_scale=True,
                  ignore_index=-100, mask=None, reduction="batchmean", axis=-1, chunk_size=None,
                  inplace_backward=True):
    r"""Memory-lean :func:`tempscale.distill.kd_loss` for PyTorch tensors.

    Same parameters, result and numerical contract as :func:`tempscale.distill.kd_loss`
    (forward / reverse KL, generalised JSD, :math:`T^2` scaling, labels with ``ignore_index``,
    row masks, per-row temperatures, ``-inf`` masked classes, float16/bfloat16 computed in
    float32), plus:

    Parameters
    ----------
    chunk_size : int, optional
        Rows per chunk.  Default: about 2**20 elements per chunk (e.g. 32 rows of a 32,000-class
        vocabulary), so that a chunk's few float32 temporaries stay in cache.
    inplace_backward : bool, default True
        Hand the stored gradient to autograd without a copy (the memory-lean default).  The
        graph can then be backpropagated only once; pass False to allow ``retain_graph=True``
        (or ``torch.autograd.gradcheck``) at the cost of one more batch x vocab buffer.

    Notes
    -----
    The forward pass walks the rows in chunks.  For each chunk it computes the row losses and
    the gradient with respect to the student logits in closed form,

    .. math::

        \frac{\partial\, T^2\,\mathrm{KL}(p\|q)}{\partial s} = T\,(q - p),\qquad
        \frac{\partial\, T^2\,\mathrm{KL}(q\|p)}{\partial s} = T\,q \odot (f - \mathrm{KL}),
        \; f = \log q - \log p,

    (and the analogous formula for the JSD, whose derivative in :math:`q` is
    :math:`(1-\beta)(\log q - \log m)`), writes the chunk's gradient into one preallocated
    batch x vocab buffer, and drops the chunk's temporaries.  Backward only multiplies that
    buffer by the incoming gradient, in place.  Chunks with NaN, ``+inf`` or fully masked rows,
    and teacher temperatures 0 or inf, go through the generic implementation with autograd, so
    the contract is identical.  When the teacher logits or a tensor temperature require
    gradients, the whole call falls back to :func:`tempscale.distill.kd_loss`.

    Examples
    --------
    >>> import torch
    >>> from tempscale.torch import fused_kd_loss
    >>> s = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]], requires_grad=True)
    >>> t = torch.tensor([[2.0, 3.0, -1.0], [0.5, 0.0, 2.0]])
    >>> loss = fused_kd_loss(s, t, 2.0)
    >>> round(loss.item(), 4)
    0.2626
    >>> loss.backward()
    >>> q, p = torch.softmax(s.detach() / 2, -1), torch.softmax(t / 2, -1)
    >>> torch.allclose(s.grad, 2.0 * (q - p) / 2)     # T (q - p), averaged over 2 rows
    True
    """
    func = "KDLoss"
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(x, torch.Tensor):
            raise param_error(name, func, "a torch.Tensor", type(x).__name__, TypeError)
    alpha_r, beta_r = _distill._check_options(
        func, alpha=alpha, labels=labels, divergence=divergence, beta=beta, t2_scale=t2_scale,
        ignore_index=ignore_index, reduction=reduction)
    check_bool(inplace_backward, "inplace_backward", func)
    if chunk_size is not None:
        chunk_size = check_scalar(chunk_size, "chunk_size", func, lo=1, integer=True)
    generic = torch.is_grad_enabled() and (
        teacher_logits.requires_grad or _is_tensor_requiring_grad(temperature)
        or _is_tensor_requiring_grad(teacher_temperature))
    if generic:
        return _distill.kd_loss(
            student_logits, teacher_logits, temperature, labels=labels, alpha=alpha,
            divergence=divergence, beta=beta, teacher_temperature=teacher_temperature,
            t2_scale=t2_scale, ignore_index=ignore_index, mask=mask, reduction=reduction,
            axis=axis)
    xp, s, t, _ax, compute, out = _distill._prepare_logits(student_logits, teacher_logits, axis, func)
    batch_shape = tuple(s.shape[:-1])
    v = s.shape[-1]
    labels, valid = _distill._prepare_rows(labels, mask, batch_shape, v, ignore_index, xp, s, func)
    T = _distill._row_temperature(temperature, batch_shape, xp, s, compute, func, "temperature",
                                  allow_edges=False)
    if teacher_temperature is None:
        Tt = T
    else:
        Tt = _distill._row_temperature(teacher_temperature, batch_shape, xp, s, compute, func,
                                       "teacher_temperature", allow_edges=True)
    n = math.prod(batch_shape)
    s2 = s.reshape(n, v)
    t2 = t.detach().reshape(n, v)
    T2 = T if is_python_scalar(T) else T.detach().reshape(n, 1)
    Tt2 = Tt if is_python_scalar(Tt) else Tt.detach().reshape(n, 1)
    lab2 = None if labels is None else labels.reshape(n)
    val2 = None if valid is None else valid.reshape(n)
    chunk = chunk_size if chunk_size is not None else _auto_chunk(n, v)
    cfg = (alpha_r, divergence, beta_r, t2_scale, ignore_index, reduction, chunk, compute,
           inplace_backward)
    if n == 0 or v == 0:
        return _distill.kd_loss(
            student_logits, teacher_logits, temperature, labels=labels, alpha=alpha,
            divergence=divergence, beta=beta, teacher_temperature=teacher_temperature,
            t2_scale=t2_scale, ignore_index=ignore_index, mask=mask, reduction=reduction,
            axis=axis)
    loss = _FusedKD.apply(s2, t2, T2, Tt2, lab2, val2, cfg)
    if reduction == "none":
        loss = loss.reshape(batch_shape)
    return loss.to(out) if loss.dtype != out else loss


class KDLoss(nn.Module):
    r"""Knowledge-distillation loss with temperature, memory-lean for large vocabularies.

    ``KDLoss(T)(student_logits, teacher_logits, labels)`` equals
    :func:`tempscale.distill.kd_loss` with the same options, computed chunk by chunk by
    :func:`fused_kd_loss`: peak extra memory stays close to one batch x vocab buffer (the
    gradient), where the naive ``F.kl_div(F.log_softmax(s / T), F.softmax(t / T)) * T**2``
    keeps several.

    Parameters
    ----------
    temperature : float, default 1.0
        The student's temperature ``T`` in ``(0, inf)``; the soft term is multiplied by
        :math:`T^2` (``t2_scale``), as in Hinton et al. -- see :func:`tempscale.distill.kd_loss`
        for why, and for what torchdistill, Liger-Kernel and TRL's GKD do instead.
    alpha : float in [0, 1], optional
        Soft-term weight when labels are passed (default 0.5); the hard cross-entropy at
        ``T = 1`` gets ``1 - alpha``.
    divergence : {"forward", "reverse", "jsd"}, default "forward"
    beta : float, default 0.5
        Generalised-JSD weight (``0``/``1`` mean forward/reverse KL, as in GKD).
    teacher_temperature : float, optional
        Defaults to ``temperature``.
    t2_scale : bool, default True
    ignore_index : int, default -100
    reduction : {"batchmean", "sum", "none"}, default "batchmean"
        ``"batchmean"`` averages over valid rows (tokens); PyTorch's elementwise ``"mean"``
        (which would divide by the vocabulary size too) is deliberately not offered.
    axis : int, default -1
        The class axis (any other than the last costs a copy of the logits).
    chunk_size : int, optional
        Rows per chunk (default: about 2**20 elements).
    inplace_backward : bool, default True
        See :func:`fused_kd_loss`.

    Notes
    -----
    Gradients flow into the student logits.  The teacher is expected to be frozen (its logits
    detached or computed under ``torch.no_grad()``); if its logits require gradients, or a
    per-call temperature tensor does, the loss falls back to the generic autograd
    implementation (correct, not memory-lean).

    Examples
    --------
    >>> import torch
    >>> from tempscale.torch import KDLoss
    >>> criterion = KDLoss(temperature=4.0, alpha=0.9)
    >>> student = torch.randn(8, 10, requires_grad=True)
    >>> teacher = torch.randn(8, 10)
    >>> labels = torch.randint(0, 10, (8,))
    >>> loss = criterion(student, teacher, labels)
    >>> loss.backward()
    >>> student.grad.shape
    torch.Size([8, 10])
    """

    def __init__(self, temperature=1.0, *, alpha=None, divergence="forward", beta=0.5,
                 teacher_temperature=None, t2_scale=True, ignore_index=-100,
                 reduction="batchmean", axis=-1, chunk_size=None, inplace_backward=True):
        super().__init__()
        func = "KDLoss"
        _distill._check_options(func, alpha=alpha, labels=None if alpha is None else True,
                                divergence=divergence, beta=beta, t2_scale=t2_scale,
                                ignore_index=ignore_index, reduction=reduction)
        if is_python_scalar(temperature):
            check_scalar(temperature, "temperature", func, lo=0.0, hi=math.inf, lo_open=True,
                         hi_open=True)
        if teacher_temperature is not None and is_python_scalar(teacher_temperature):
            check_scalar(teacher_temperature, "teacher_temperature", func, lo=0.0, hi=math.inf)
        self.temperature = temperature
        self.alpha = alpha
        self.divergence = divergence
        self.beta = beta
        self.teacher_temperature = teacher_temperature
        self.t2_scale = t2_scale
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.axis = axis
        self.chunk_size = chunk_size
        self.inplace_backward = inplace_backward

    def forward(self, student_logits, teacher_logits, labels=None, *, mask=None,
                temperature=None, teacher_temperature=None):
        """The loss; ``temperature``/``teacher_temperature`` here override the module's
        (e.g. per-row temperature tensors)."""
        T = self.temperature if temperature is None else temperature
        Tt = self.teacher_temperature if teacher_temperature is None else teacher_temperature
        alpha = self.alpha if labels is not None else None
        return fused_kd_loss(
            student_logits, teacher_logits, T, labels=labels, alpha=alpha,
            divergence=self.divergence, beta=self.beta, teacher_temperature=Tt,
            t2_scale=self.t2_scale, ignore_index=self.ignore_index, mask=mask,
            reduction=self.reduction, axis=self.axis, chunk_size=self.chunk_size,
            inplace_backward=self.inplace_backward)

    def extra_repr(self) -> str:
        parts = [f"temperature={self.temperature}", f"divergence={self.divergence!r}"]
        if self.divergence == "jsd":
            parts.append(f"beta={self.beta}")
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha}")
        if self.teacher_temperature is not None:
            parts.append(f"teacher_temperature={self.teacher_temperature}")
        if not self.t2_scale:
            parts.append("t2_scale=False")
        if self.reduction != "batchmean":
            parts.append(f"reduction={self.reduction!r}")
        return ", ".join(parts)
