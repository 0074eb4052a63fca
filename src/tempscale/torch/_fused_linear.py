r"""Distillation through the output layer without the logits (:class:`FusedLinearKDLoss`).

The student's (and, optionally, the teacher's) output projection is fused into the loss: the
logits are computed chunk by chunk over the tokens, and each chunk's loss *and* its gradients
for the hidden states, the weight and the bias are computed at once, so that no tokens x
vocabulary buffer is ever held (Liger-Kernel's fused-linear losses and Apple's Cut
Cross-Entropy work the same way).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
from torch import nn

from .._args import check_temperature
from .._compat import is_python_scalar
from .._kd_args import check_num_items, check_options, prepare
from .._typing import ArrayLike, Temperature
from .._validation import check_bool, check_choice, param_error
from ._kd import run_chunks

__all__ = ["FusedLinearKDLoss"]

#: logits elements per chunk (rows x vocabulary): 2**21 float32 = 8 MiB per buffer; a thread
#: holds 4 to 6 such buffers (its workspace)
_CHUNK_ELEMENTS = 1 << 21
#: CPU: walk the chunks on torch's intra-op thread count, one chunk per thread
_CHUNK_THREADS = True
#: fewest rows per chunk (below this the matmuls re-read the weight too often)
_MIN_ROWS = 32


def _auto_chunk(n_rows: int, n_classes: int) -> int:
    """Rows per chunk: about ``_CHUNK_ELEMENTS`` logits, at least ``_MIN_ROWS`` rows."""
    rows = max(_MIN_ROWS, _CHUNK_ELEMENTS // max(n_classes, 1))
    return max(1, min(rows, max(n_rows, 1)))


class _Plan(NamedTuple):
    """Everything one call needs besides the student's differentiable tensors (flattened)."""

    #: teacher logits (N, V), or None when the teacher is given by its hidden states
    t_logits: torch.Tensor | None
    #: teacher hidden states (N, Ht), weight (V, Ht) and bias (V,) or None
    t_hidden: torch.Tensor | None
    t_weight: torch.Tensor | None
    t_bias: torch.Tensor | None
    #: temperatures: Python floats or (N, 1) tensors of the compute dtype
    T: Any
    Tt: Any
    #: labels (N,) (int64, 0 at left-out rows) or None; valid rows (N,) bool or None
    labels: torch.Tensor | None
    valid: torch.Tensor | None
    alpha: float
    divergence: str
    beta: float
    t2_scale: bool
    reduction: str
    chunk: int
    compute: torch.dtype
    #: the reduction's normaliser: a Python number or a 0-d tensor (1 for "sum" and "none")
    norm: Any
    #: a sparse teacher: (indices (N, k), values (N, k)), else None; its ``missing`` mode
    sparse: tuple[torch.Tensor, torch.Tensor] | None = None
    missing: str = "zero"
    ignore_index: int = -100


# --------------------------------------------------------------------------------------------
# the chunk math: per-row loss and d(loss)/d(student logits), closed form
# --------------------------------------------------------------------------------------------
def _log_softmax_(x: torch.Tensor) -> torch.Tensor:
    """``x`` replaced by its log-softmax over the last axis (in place, returns ``x``)."""
    return x.sub_(torch.logsumexp(x, dim=-1, keepdim=True))


def _special(Tt: Any) -> bool:
    """Whether a teacher temperature is 0 or inf somewhere (the careful path handles those)."""
    if is_python_scalar(Tt):
        return bool(Tt == 0 or math.isinf(Tt))
    return bool(torch.any((Tt == 0) | torch.isinf(Tt)))


def _teacher_log_probs(t: torch.Tensor, Tt: Any, own: bool) -> torch.Tensor:
    """The teacher's tempered log-probabilities; ``own``: ``t`` may be overwritten."""
    if _special(Tt):
        from .._softmax import log_softmax

        return cast(torch.Tensor, log_softmax(t, Tt))
    x = t.div_(Tt) if own else t / Tt
    return _log_softmax_(x)


def _xlogratio_sum(w: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    r"""Row sums of :math:`w (\log a - \log b)` with :math:`0 \cdot (\cdot) = 0`."""
    r = (log_a - log_b).mul_(w)
    return r.masked_fill_(w == 0, 0.0).sum(dim=-1)


def _chunk(z: torch.Tensor, tz: torch.Tensor, own_t: bool, T: Any, Tt: Any,
           labels: torch.Tensor | None, valid: torch.Tensor | None, weight: Any, plan: _Plan,
           need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row loss of one chunk (0 at left-out rows) and, with ``need_grad``, the gradient of
    ``sum(rows * weight)`` with respect to the student logits ``z`` (overwritten: the gradient
    is returned in ``z``'s memory).  ``tz``: the teacher's logits (``own_t``: may be
    overwritten).  ``weight``: a number, a 0-d tensor or a (rows,) tensor."""
    alpha, divergence, beta = plan.alpha, plan.divergence, plan.beta
    if divergence == "jsd" and beta == 0.0:
        divergence = "forward"
    elif divergence == "jsd" and beta == 1.0:
        divergence = "reverse"
    rows_n = z.shape[0]
    scalar_T = is_python_scalar(T)
    hard: torch.Tensor | None = None
    g_hard: torch.Tensor | None = None
    if labels is not None and alpha != 1.0:
        lse1 = torch.logsumexp(z, dim=-1, keepdim=True)
        hard = (lse1 - z.gather(1, labels[:, None]))[:, 0]
        if need_grad:
            # softmax(z) - onehot(label); in z's memory when there is no soft term
            g_hard = z.sub_(lse1).exp_() if alpha == 0.0 else torch.exp(z - lse1)
            g_hard.scatter_add_(1, labels[:, None],
                                torch.full((rows_n, 1), -1.0, dtype=z.dtype, device=z.device))
    soft: torch.Tensor | None = None
    g: torch.Tensor | None = None
    if alpha != 0.0:
        logq = _log_softmax_(z.div_(T))             # z now holds log q
        logp = _teacher_log_probs(tz, Tt, own_t)
        if divergence == "forward":
            p = torch.exp(logp)
            soft = _xlogratio_sum(p, logp, logq)
            if need_grad:
                g = logq.exp_().sub_(p)              # (q - p), d/d(s/T)
        elif divergence == "reverse":
            q = torch.exp(logq)
            soft = _xlogratio_sum(q, logq, logp)
            if need_grad:
                # q (log q - log p - KL), 0 where q = 0
                g = logq.sub_(logp).sub_(soft[:, None]).mul_(q).masked_fill_(q == 0, 0.0)
        else:
            p = torch.exp(logp)
            q = torch.exp(logq)
            m = p * beta + q * (1.0 - beta)
            logm = torch.log(torch.where(m > 0, m, torch.ones_like(m)))
            kl_p = _xlogratio_sum(p, logp, logm)
            kl_q = _xlogratio_sum(q, logq, logm)
            soft = beta * kl_p + (1.0 - beta) * kl_q
            if need_grad:
                # (1 - beta) q (log q - log m - KL(q || m))
                g = logq.sub_(logm).sub_(kl_q[:, None]).mul_(q).masked_fill_(q == 0, 0.0)
                g.mul_(1.0 - beta)
        t2 = (T * T) if scalar_T else (T * T)[:, 0]
        if plan.t2_scale:
            soft = soft * t2
        if g is not None:
            # d/ds = d/d(s/T) / T; times T^2 with t2_scale
            factor = T if plan.t2_scale else 1.0 / T
            g.mul_(factor * alpha)
    if hard is None:
        assert soft is not None
        rows = soft
    elif alpha == 0.0:
        rows = hard
    else:
        assert soft is not None
        rows = alpha * soft + (1.0 - alpha) * hard
    if need_grad and g_hard is not None:
        if g is None:
            g = g_hard
        else:
            g.add_(g_hard, alpha=1.0 - alpha)
    if valid is not None:
        rows = torch.where(valid, rows, torch.zeros_like(rows))
    if need_grad:
        assert g is not None
        w = weight
        if isinstance(w, torch.Tensor) and w.ndim == 1:
            w = w[:, None]
        if valid is not None:
            g = torch.where(valid[:, None], g, torch.zeros((), dtype=g.dtype, device=g.device))
        if not (is_python_scalar(w) and w == 1.0):
            g.mul_(w)
    return rows, g


class _Workspace:
    """One thread's chunk buffers (rows x V, the compute dtype), reused from chunk to chunk, so
    that no chunk allocates (and page-faults) fresh memory."""

    def __init__(self, rows: int, n_classes: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.shape = (rows, n_classes)
        self.dtype = dtype
        self.device = device
        self.buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, rows: int) -> torch.Tensor:
        """Buffer ``name``, its first ``rows`` rows (contiguous)."""
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = torch.empty(self.shape, dtype=self.dtype,
                                                   device=self.device)
        return buf[:rows]


def _log_softmax_into(x: torch.Tensor, probs: torch.Tensor) -> None:
    """``x`` replaced by its log-softmax (rows), ``probs`` filled with the softmax."""
    mx = x.amax(dim=-1, keepdim=True)
    x.sub_(mx)
    torch.exp(x, out=probs)
    total = probs.sum(dim=-1, keepdim=True)
    x.sub_(torch.log(total))
    probs.div_(total)


def _rowdot(a: torch.Tensor, b: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products, the products written to ``scratch`` (may be ``a`` or ``b``)."""
    return torch.mul(a, b, out=scratch).sum(dim=-1)


def _chunk_fast(z: torch.Tensor, tz: torch.Tensor, T: Any, Tt: Any,
                labels: torch.Tensor | None, valid: torch.Tensor | None, weight: Any,
                plan: _Plan, need_grad: bool,
                ws: _Workspace) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """:func:`_chunk` for finite logits and temperatures in ``(0, inf)``, in the thread's
    workspace ``ws``: ``z`` and ``tz`` (the student's and the teacher's logits, the chunk's own
    buffers) are overwritten, and the gradient is returned
    in a workspace buffer (valid until the thread's next chunk).  Returns None when a row came
    out non-finite (a ``-inf`` mask, a NaN, an overflow): the caller redoes the chunk with
    :func:`_chunk`."""
    alpha, divergence, beta = plan.alpha, plan.divergence, plan.beta
    if divergence == "jsd" and beta == 0.0:
        divergence = "forward"
    elif divergence == "jsd" and beta == 1.0:
        divergence = "reverse"
    c = z.shape[0]
    scalar_T = is_python_scalar(T)
    hard_sm: torch.Tensor | None = None       # softmax(z) at T = 1, for the hard gradient
    hard: torch.Tensor | None = None
    with_hard = labels is not None and alpha != 1.0
    shared_q = False                          # T == 1: softmax(z) is q itself
    if with_hard and not (scalar_T and T == 1.0 and alpha != 0.0):
        assert labels is not None
        picked = z.gather(1, labels[:, None])[:, 0]
        sm = ws.get("h", c)
        mx = z.amax(dim=-1, keepdim=True)
        torch.sub(z, mx, out=sm).exp_()
        total = sm.sum(dim=-1, keepdim=True)
        hard = (mx + torch.log(total))[:, 0] - picked
        hard_sm = sm.div_(total) if need_grad else None
    soft: torch.Tensor | None = None
    g: torch.Tensor | None = None
    q = ws.get("q", c)
    p = ws.get("p", c)
    if alpha != 0.0:
        logq = z.div_(T)
        _log_softmax_into(logq, q)
        logp = tz.div_(Tt)
        _log_softmax_into(logp, p)
        if with_hard and hard is None:
            assert labels is not None
            hard = -logq.gather(1, labels[:, None])[:, 0]
            shared_q = True
        if divergence == "forward":
            soft = _rowdot(p, logp.sub_(logq), logp)  # sum p (log p - log q)
            if need_grad:
                g = q if shared_q else q.sub_(p)      # q - p (or q, assembled below)
        elif divergence == "reverse":
            d = logq.sub_(logp)                       # log q - log p
            soft = _rowdot(q, d, logp)
            if need_grad:
                if shared_q:
                    hard_sm = q
                g = d.sub_(soft[:, None]).mul_(q)     # q (log q - log p - KL)
        else:
            logm = torch.lerp(q, p, beta, out=ws.get("m", c))
            logm.clamp_min_(torch.finfo(q.dtype).tiny).log_()
            kl_p = _rowdot(p, logp.sub_(logm), logp)
            dq = logq.sub_(logm)                      # log q - log m
            kl_q = _rowdot(q, dq, logm)
            soft = beta * kl_p + (1.0 - beta) * kl_q
            if need_grad:
                if shared_q:
                    hard_sm = q
                # (1 - beta) q (log q - log m - KL(q || m))
                g = dq.sub_(kl_q[:, None]).mul_(q).mul_(1.0 - beta)
        if plan.t2_scale:
            soft = soft * ((T * T) if scalar_T else (T * T)[:, 0])
    if hard is None:
        assert soft is not None
        rows = soft
    elif alpha == 0.0:
        rows = hard
    else:
        assert soft is not None
        rows = alpha * soft + (1.0 - alpha) * hard
    if not bool(torch.isfinite(rows).all()):
        return None
    if valid is not None:
        rows = torch.where(valid, rows, torch.zeros_like(rows))
    if not need_grad:
        return rows, None
    # per-row multipliers: the reduction's weight, 0 at left-out rows; the soft term's
    # alpha T (t2_scale) or alpha / T, the hard term's 1 - alpha
    w = weight
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        w = w[:, None]
    keep: Any = 1.0 if valid is None else valid[:, None].to(z.dtype)
    base: Any = keep * w
    h_scale: Any = base * (1.0 - alpha)
    s_scale: Any = base * (alpha * T if plan.t2_scale else alpha / T)
    if alpha == 0.0:
        assert hard_sm is not None
        g = hard_sm.mul_(h_scale)
    elif shared_q and divergence == "forward":
        # alpha (q - p) + (1 - alpha) (q - onehot), scaled: q (s + h) - s p - h onehot
        assert g is not None
        g.mul_(s_scale + h_scale)
        if isinstance(s_scale, torch.Tensor):
            g.addcmul_(p, s_scale, value=-1.0)
        else:
            g.sub_(p, alpha=s_scale)
    else:
        assert g is not None
        g.mul_(s_scale)
        if hard_sm is not None:
            if isinstance(h_scale, torch.Tensor):
                g.addcmul_(hard_sm, h_scale)
            else:
                g.add_(hard_sm, alpha=h_scale)
    if with_hard:
        assert labels is not None
        hs = h_scale if isinstance(h_scale, torch.Tensor) else torch.tensor(
            float(h_scale), dtype=g.dtype, device=g.device)
        g.scatter_add_(1, labels[:, None], (-hs).to(g.dtype).expand(c, 1))
    return rows, g


def _chunk_sparse(z: torch.Tensor, idx: torch.Tensor, vals: torch.Tensor, T: Any, Tt: Any,
                  labels: torch.Tensor | None, valid: torch.Tensor | None, weight: Any,
                  plan: _Plan, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_chunk` for a sparse (top-k) teacher: the chunk's loss is
    :func:`tempscale.distill.sparse_kd_loss` of its logits, differentiated by autograd (the
    chunk's logits are the only batch x vocabulary tensors involved)."""
    from ..distill import SparseTeacher, sparse_kd_loss

    with torch.enable_grad():
        zz = z.detach().requires_grad_(need_grad)
        rows = sparse_kd_loss(
            zz, teacher=SparseTeacher(idx, vals), temperature=T, teacher_temperature=Tt,
            missing=plan.missing, labels=labels,
            alpha=None if labels is None else plan.alpha, ignore_index=plan.ignore_index,
            where=valid, reduction="none", t2_scale=plan.t2_scale)
        if not need_grad:
            return rows.detach(), None
        w = weight
        total = (rows * w).sum() if not (is_python_scalar(w) and w == 1.0) else rows.sum()
        (g,) = torch.autograd.grad(total, zz)
    return rows.detach(), g


# --------------------------------------------------------------------------------------------
# the walk over the chunks
# --------------------------------------------------------------------------------------------
def _walk(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, plan: _Plan,
          row_weight: Any, grads: tuple[bool, bool, bool]
          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Per-row losses (N,) and the gradients of ``sum(rows * row_weight)`` for ``h``, ``W``
    and ``b`` (those asked for in ``grads``), one chunk of rows at a time."""
    n = h.shape[0]
    compute = plan.compute
    need = any(grads)
    rows = torch.empty(n, dtype=compute, device=h.device)
    gh = torch.empty(h.shape, dtype=h.dtype, device=h.device) if grads[0] else None
    # the weight's gradient accumulates in the compute dtype (float32 for half weights)
    gW = torch.zeros(W.shape, dtype=compute, device=W.device) if grads[1] else None
    gb = (torch.zeros(b.shape, dtype=compute, device=b.device)
          if grads[2] and b is not None else None)
    special_t = _special(plan.Tt)

    def logits(i: int, j: int, ws: _Workspace | None, student_only: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The chunk's student logits and teacher logits (in ``ws``'s buffers "s" and "t"
        when given; else fresh tensors, the teacher's possibly a view: ``own`` False)."""
        hc = h[i:j]
        zo = ws.get("s", j - i) if ws is not None and h.dtype == compute else None
        if zo is not None:
            z = torch.mm(hc, W.T, out=zo) if b is None else torch.addmm(b, hc, W.T, out=zo)
        else:
            z = hc @ W.T if b is None else torch.addmm(b, hc, W.T)
            z = z if z.dtype == compute else z.to(compute)
        if student_only:
            return z, z, False
        if plan.t_logits is not None:
            tz = plan.t_logits[i:j]
            if ws is not None:
                return z, ws.get("t", j - i).copy_(tz), True
            return z, (tz if tz.dtype == compute else tz.to(compute)), tz.dtype != compute
        assert plan.t_hidden is not None and plan.t_weight is not None
        th = plan.t_hidden[i:j]
        to = (ws.get("t", j - i) if ws is not None and th.dtype == compute else None)
        if to is not None:
            tz = (torch.mm(th, plan.t_weight.T, out=to) if plan.t_bias is None else
                  torch.addmm(plan.t_bias, th, plan.t_weight.T, out=to))
            return z, tz, True
        tz = th @ plan.t_weight.T if plan.t_bias is None else torch.addmm(
            plan.t_bias, th, plan.t_weight.T)
        if ws is not None:
            return z, ws.get("t", j - i).copy_(tz), True
        return z, (tz if tz.dtype == compute else tz.to(compute)), True

    local = threading.local()

    lock = threading.Lock()

    def run(i: int) -> None:
        with torch.no_grad():   # grad mode is thread-local: worker threads start with it on
            one(i)

    def one(i: int) -> None:
        j = min(n, i + plan.chunk)
        T = plan.T if is_python_scalar(plan.T) else plan.T[i:j]
        Tt = plan.Tt if is_python_scalar(plan.Tt) else plan.Tt[i:j]
        lab = None if plan.labels is None else plan.labels[i:j]
        val = None if plan.valid is None else plan.valid[i:j]
        w = row_weight
        if isinstance(w, torch.Tensor) and w.ndim == 1:
            w = w[i:j]
        done = None
        if plan.sparse is not None:
            z = logits(i, j, None, student_only=True)[0]
            done = _chunk_sparse(z, plan.sparse[0][i:j], plan.sparse[1][i:j], T, Tt, lab, val,
                                 w, plan, need)
        elif not special_t:
            ws = getattr(local, "ws", None)
            if ws is None:
                ws = local.ws = _Workspace(min(plan.chunk, n), W.shape[0], compute, h.device)
            z, tz, _ = logits(i, j, ws)
            if z.dtype != compute:
                z = ws.get("s", j - i).copy_(z)
            done = _chunk_fast(z, tz, T, Tt, lab, val, w, plan, need, ws)
        if done is None:
            z, tz, own_t = logits(i, j, None)
            done = _chunk(z, tz, own_t, T, Tt, lab, val, w, plan, need)
        r, g = done
        rows[i:j] = r
        if g is None:
            return
        hc = h[i:j]
        if gh is not None:
            torch.mm(g if g.dtype == h.dtype else g.to(h.dtype), W, out=gh[i:j])
        if gW is not None or gb is not None:
            hc_c = hc if hc.dtype == compute else hc.to(compute)
            gsum = g.sum(dim=0) if gb is not None else None
            with lock:
                if gW is not None:
                    gW.addmm_(g.T, hc_c)
                if gb is not None and gsum is not None:
                    gb.add_(gsum)

    starts = list(range(0, n, plan.chunk))
    workers = 1 if h.device.type != "cpu" or not _CHUNK_THREADS else max(
        1, min(torch.get_num_threads(), len(starts)))
    run_chunks(run, starts, workers)
    return rows, gh, gW, gb


class _FusedLinearKD(torch.autograd.Function):
    """Chunked forward computing the gradients too; backward only rescales them (or, for
    ``reduction="none"``, walks the chunks again with the per-row output gradients)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
                plan: _Plan) -> torch.Tensor:
        grads = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]),
                 b is not None and bool(ctx.needs_input_grad[2]))
        ctx.plan = plan
        ctx.grads = grads
        ctx.dtypes = (W.dtype, None if b is None else b.dtype)
        if plan.reduction == "none":
            rows, _, _, _ = _walk(h, W, b, plan, 1.0, (False, False, False))
            if any(grads):
                ctx.save_for_backward(h, W, b)
            return rows
        w = plan.norm
        weight = 1.0 / w if is_python_scalar(w) else torch.reciprocal(w)
        rows, gh, gW, gb = _walk(h, W, b, plan, weight, grads)
        ctx.stored = (gh, gW, gb)
        total = rows.sum()
        return total / w if plan.reduction == "batchmean" else total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "tempscale.torch.FusedLinearKDLoss computes its gradients in the forward pass "
                "and does not support second-order gradients (create_graph=True); materialise "
                "the logits and use tempscale.distill.kd_loss for those")
        plan: _Plan = ctx.plan
        if plan.reduction == "none":
            h, W, b = ctx.saved_tensors
            _, gh, gW, gb = _walk(h, W, b, plan, grad_out.to(plan.compute), ctx.grads)
        else:
            stored = ctx.stored
            if stored is None:
                raise RuntimeError(
                    "tempscale.torch.FusedLinearKDLoss hands its stored gradients to autograd "
                    "without a copy, so it can be backpropagated only once")
            ctx.stored = None
            gh, gW, gb = stored
            if not bool(grad_out == 1):
                for g in (gh, gW, gb):
                    if g is not None:
                        g.mul_(grad_out.to(g.dtype))
        dtypes = ctx.dtypes
        if gW is not None and gW.dtype != dtypes[0]:
            gW = gW.to(dtypes[0])
        if gb is not None and gb.dtype != dtypes[1]:
            gb = gb.to(dtypes[1])
        return gh, gW, gb, None


# --------------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------------
def _tensor(x: Any, param: str, func: str, *, ndim: int | None = None,
            min_ndim: int = 1) -> torch.Tensor:
    """``x`` if it is a floating torch tensor of the right rank (else a clear error)."""
    if not isinstance(x, torch.Tensor):
        raise param_error(param, func, "a torch.Tensor", type(x).__name__, TypeError)
    if not x.is_floating_point():
        raise param_error(param, func, "a floating-point tensor", f"dtype {x.dtype}", TypeError)
    if (ndim is not None and x.ndim != ndim) or x.ndim < min_ndim:
        want = f"a {ndim}-d tensor" if ndim is not None else f"a tensor of at least {min_ndim} dims"
        raise param_error(param, func, want, f"shape {tuple(x.shape)}")
    return x


def _frozen(x: torch.Tensor, param: str, func: str) -> torch.Tensor:
    """The teacher's tensor, detached (with a warning when it asked for a gradient)."""
    if x.requires_grad:
        warnings.warn(f"{func}: {param} requires grad, but the teacher gets no gradient "
                      f"(it is detached); pass a detached tensor (or compute it under "
                      f"torch.no_grad()) to silence this warning", UserWarning, stacklevel=4)
        return x.detach()
    return x


class FusedLinearKDLoss(nn.Module):
    r"""Distillation loss fused with the student's output layer: the logits are never held.

    ``FusedLinearKDLoss(T)(student_hidden, student_weight, teacher, labels)`` equals
    :func:`tempscale.distill.kd_loss` on the logits ``student_hidden @ student_weight.T (+
    student_bias)`` with the same options (to float rounding), for the loss and for its
    gradients, but it computes the logits in chunks of tokens and the gradients of each chunk
    during the forward pass, so that its extra memory is a few chunks of logits instead of
    several tokens x vocabulary buffers (the teacher's logits too, when the teacher is given by
    its hidden states and output weight).  The backward pass only rescales the stored
    gradients (no second matmul pass).

    Parameters
    ----------
    temperature : float, default 1.0
        The student's temperature ``T`` in ``(0, inf)`` (per-row tensors can be passed to
        :meth:`forward`); the soft term is multiplied by :math:`T^2` unless ``t2_scale=False``.
    divergence : {"forward", "reverse", "jsd"}, default "forward"
        As in :func:`tempscale.distill.kd_loss`.
    beta : float in [0, 1], default 0.5
        The JSD weight (``divergence="jsd"``).
    alpha : float in [0, 1], optional
        Weight of the soft term when ``labels`` are given (default 0.5); the hard-label
        cross-entropy (at ``T = 1``) gets ``1 - alpha``.  Without labels the loss is the soft
        term alone.
    t2_scale : bool, default True
        Multiply the soft term by :math:`T^2`.
    ignore_index : int, default -100
        Rows whose label equals it are left out of the loss and of its normaliser.
    teacher_temperature : float, optional
        The teacher's temperature (default: ``temperature``); ``0`` and ``inf`` allowed.
    chunk_size : int, optional
        Tokens per chunk (default: about 2 million logits per chunk, at least 32 tokens).
        On CPU the chunks are shared among torch's intra-op threads (one chunk per thread at
        a time, single-threaded kernels), and each thread keeps 4 to 6 chunk-sized buffers,
        so the extra memory is about ``threads x 6 x chunk_size x V`` elements of the
        compute dtype.
    reduction : {"batchmean", "sum", "none"}, default "batchmean"
        As in :func:`tempscale.distill.kd_loss`.  With ``"none"`` the per-row weights of the
        backward pass are known only then, so the backward pass computes the logits again
        (chunk by chunk).

    missing : {"zero", "uniform"}, default "zero"
        For a sparse teacher (``teacher=SparseTeacher(indices, values)``): where the mass its
        top-k leaves goes, as in :func:`tempscale.distill.sparse_kd_loss`.

    Notes
    -----
    A sparse teacher (its top-k class indices and logits or log-probabilities per token,
    :class:`tempscale.distill.SparseTeacher`) gives, chunk by chunk,
    :func:`tempscale.distill.sparse_kd_loss` on the student's logits (forward KL only); the
    chunk's gradient is then taken by autograd through that function (a few chunk-sized
    temporaries, never the whole logits).

    The teacher receives no gradient: its logits, hidden states, weight and bias are
    detached (with a UserWarning when one of them requires grad, as an ``nn.Parameter`` of an
    unfrozen teacher does).  A temperature tensor gets no gradient either (a learned
    temperature needs :func:`tempscale.distill.kd_loss` on materialised logits).  Second-order
    gradients (``create_graph=True``) are not supported, and the graph can be backpropagated
    once (the stored gradients are handed over without a copy).  Half-precision inputs are
    multiplied in their dtype and the loss is computed in float32; the weight's gradient is
    accumulated in float32.

    Examples
    --------
    >>> import torch
    >>> from tempscale.torch import FusedLinearKDLoss
    >>> from tempscale.distill import kd_loss
    >>> g = torch.Generator().manual_seed(0)
    >>> hidden = torch.randn(6, 4, generator=g, requires_grad=True)
    >>> weight = torch.randn(10, 4, generator=g, requires_grad=True)
    >>> teacher = torch.randn(6, 10, generator=g)
    >>> labels = torch.tensor([1, 2, 3, -100, 5, 6])
    >>> loss_fn = FusedLinearKDLoss(2.0, alpha=0.7, chunk_size=4)
    >>> loss = loss_fn(hidden, weight, teacher, labels)
    >>> ref = kd_loss(hidden @ weight.T, teacher, 2.0, labels=labels, alpha=0.7)
    >>> bool(torch.allclose(loss, ref))
    True
    >>> loss.backward()
    >>> weight.grad.shape
    torch.Size([10, 4])

    The teacher may be given by its own hidden states and output weight (and bias):

    >>> t_hidden, t_weight = torch.randn(6, 8, generator=g), torch.randn(10, 8, generator=g)
    >>> loss = loss_fn(hidden, weight, (t_hidden, t_weight), labels)
    """

    def __init__(self, temperature: Temperature = 1.0, *, divergence: str = "forward",
                 beta: float = 0.5, alpha: float | None = None, t2_scale: bool = True,
                 ignore_index: int = -100, teacher_temperature: Temperature | None = None,
                 chunk_size: int | None = None, reduction: str = "batchmean",
                 missing: str = "zero") -> None:
        super().__init__()
        func = "FusedLinearKDLoss"
        check_choice(missing, ("zero", "uniform"), "missing", func)
        check_options(func, alpha=alpha, labels=None if alpha is None else True,
                      divergence=divergence, beta=beta, t2_scale=t2_scale,
                      ignore_index=ignore_index, reduction=reduction)
        if is_python_scalar(temperature):
            check_temperature(temperature, func, edges=False)
        if teacher_temperature is not None and is_python_scalar(teacher_temperature):
            check_temperature(teacher_temperature, func, param="teacher_temperature")
        if chunk_size is not None and (isinstance(chunk_size, bool)
                                       or not isinstance(chunk_size, int) or chunk_size < 1):
            raise param_error("chunk_size", func, "a positive int or None", chunk_size,
                              TypeError if not isinstance(chunk_size, int) else ValueError)
        self.temperature = temperature
        self.divergence = divergence
        self.beta = beta
        self.alpha = alpha
        self.t2_scale = t2_scale
        self.ignore_index = ignore_index
        self.teacher_temperature = teacher_temperature
        self.chunk_size = chunk_size
        self.reduction = reduction
        self.missing = missing

    def forward(self, student_hidden: torch.Tensor, student_weight: torch.Tensor,
                teacher: torch.Tensor | tuple[torch.Tensor, ...],
                labels: ArrayLike | None = None, *, student_bias: torch.Tensor | None = None,
                num_items_in_batch: Any = None, where: ArrayLike | None = None,
                shift_labels: bool = False, temperature: Temperature | None = None,
                teacher_temperature: Temperature | None = None) -> torch.Tensor:
        """The loss.

        Parameters
        ----------
        student_hidden : Tensor
            The student's last hidden states, ``(..., H)`` (any leading shape: tokens, or
            batch x sequence).
        student_weight : Tensor
            The student's output weight ``(V, H)`` (``nn.Linear.weight``), same dtype.
        teacher : Tensor, tuple or SparseTeacher
            The teacher's logits ``(..., V)``, or ``(teacher_hidden, teacher_weight)`` or
            ``(teacher_hidden, teacher_weight, teacher_bias)`` with hidden states ``(..., Ht)``,
            weight ``(V, Ht)`` and bias ``(V,)``, or a
            :class:`tempscale.distill.SparseTeacher` of top-k ``indices`` and ``values``
            ``(..., k)``.  Detached (the teacher is frozen).
        labels : int tensor, optional
            Hard labels of the leading shape; ``ignore_index`` rows are left out.
        student_bias : Tensor, optional
            The output layer's bias ``(V,)``.
        num_items_in_batch : int, float or 0-d tensor, optional
            With ``reduction="batchmean"``: divide the sum over the valid rows by this count
            (Hugging Face's gradient-accumulation convention), as in
            :func:`tempscale.distill.kd_loss`.
        where : bool tensor, optional
            Rows to keep (True) or leave out, broadcastable to the leading shape.
        shift_labels : bool, default False
            Labels ``(..., S)`` of a causal model: position ``t`` predicts label ``t + 1``.
        temperature, teacher_temperature : float or tensor, optional
            Override the module's (per-row tensors of the leading shape allowed).

        Returns
        -------
        Tensor
            A scalar, or the leading shape for ``reduction="none"``.
        """
        func = "FusedLinearKDLoss"
        h = _tensor(student_hidden, "student_hidden", func)
        W = _tensor(student_weight, "student_weight", func, ndim=2)
        H = int(h.shape[-1])
        V = int(W.shape[0])
        batch = tuple(h.shape[:-1])
        if int(W.shape[1]) != H:
            raise param_error("student_weight", func, f"a (V, {H}) tensor (H = "
                              "student_hidden.shape[-1])", f"shape {tuple(W.shape)}")
        if W.dtype != h.dtype:
            raise param_error("student_weight", func, f"a tensor of student_hidden's dtype "
                              f"{h.dtype}", f"dtype {W.dtype}", TypeError)
        b = None
        if student_bias is not None:
            b = _tensor(student_bias, "student_bias", func, ndim=1)
            if int(b.shape[0]) != V or b.dtype != h.dtype:
                raise param_error("student_bias", func, f"a ({V},) tensor of dtype {h.dtype}",
                                  f"shape {tuple(b.shape)}, dtype {b.dtype}")
        from ..distill import SparseTeacher

        sparse = None
        t_logits = t_hidden = t_weight = t_bias = None
        if isinstance(teacher, SparseTeacher):
            sparse = self._sparse_teacher(teacher, batch, V, func)
            t_dtype = sparse[1].dtype
        else:
            t_logits, t_hidden, t_weight, t_bias = self._teacher(teacher, batch, V, func)
            t_dtype = (t_logits if t_logits is not None else t_hidden).dtype  # type: ignore[union-attr]
        alpha = self.alpha if labels is not None else None
        alpha_r, beta_r = check_options(func, alpha=alpha, labels=labels,
                                        divergence=self.divergence, beta=self.beta,
                                        t2_scale=self.t2_scale, ignore_index=self.ignore_index,
                                        reduction=self.reduction)
        check_bool(shift_labels, "shift_labels", func)
        num_items = check_num_items(num_items_in_batch, self.reduction, func)
        T = self.temperature if temperature is None else temperature
        Tt = self.teacher_temperature if teacher_temperature is None else teacher_temperature
        for name, value in (("temperature", T), ("teacher_temperature", Tt)):
            if isinstance(value, torch.Tensor) and value.requires_grad:
                raise param_error(name, func, "a float or a tensor that does not require grad "
                                  "(no temperature gradient is computed)",
                                  "a tensor that requires grad")
        zero_s = torch.zeros((), dtype=h.dtype, device=h.device).expand(batch + (V,))
        zero_t = torch.zeros((), dtype=t_dtype, device=h.device).expand(batch + (V,))
        args = prepare(zero_s, zero_t, T, teacher_temperature=Tt, labels=labels, where=where,
                       ignore_index=self.ignore_index, axis=-1, func=func,
                       shift_labels=shift_labels)
        compute = args.compute
        n = math.prod(batch)
        Tf = args.T if is_python_scalar(args.T) else args.T.expand(batch + (1,)).reshape(n, 1)
        Ttf = args.Tt if is_python_scalar(args.Tt) else args.Tt.expand(batch + (1,)).reshape(n, 1)
        valid = None if args.valid is None else args.valid.expand(batch).reshape(n)
        y = None
        if args.labels is not None:
            y = args.labels.reshape(n).to(torch.int64)
            y = torch.where(valid, y, torch.zeros_like(y)) if valid is not None else y
        if self.reduction != "batchmean":
            norm: Any = 1.0
        elif num_items is not None:
            norm = (float(num_items) if is_python_scalar(num_items) else
                    torch.as_tensor(num_items).to(device=h.device, dtype=compute).reshape(()))
        else:
            norm = max(int(valid.sum()) if valid is not None else n, 1)
        plan = _Plan(
            t_logits=None if t_logits is None else t_logits.reshape(n, V),
            t_hidden=None if t_hidden is None else t_hidden.reshape(n, -1),
            t_weight=t_weight, t_bias=t_bias, T=Tf, Tt=Ttf, labels=y, valid=valid,
            alpha=alpha_r, divergence=self.divergence, beta=beta_r, t2_scale=self.t2_scale,
            reduction=self.reduction,
            chunk=self.chunk_size if self.chunk_size is not None else _auto_chunk(n, V),
            compute=compute, norm=norm,
            sparse=None if sparse is None else (sparse[0].reshape(n, -1), sparse[1].reshape(n, -1)),
            missing=self.missing, ignore_index=self.ignore_index)
        apply = cast(Callable[..., torch.Tensor], _FusedLinearKD.apply)
        loss = apply(h.reshape(n, H), W, b, plan)
        if self.reduction == "none":
            loss = loss.reshape(batch)
        return loss if loss.dtype == args.out else loss.to(args.out)

    def _sparse_teacher(self, teacher: Any, batch: tuple[int, ...], V: int,
                        func: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, values) of a sparse teacher, their shapes and dtypes checked (the class
        indices themselves are checked chunk by chunk by sparse_kd_loss)."""
        if self.divergence != "forward":
            raise param_error("teacher", func, f"dense teacher logits or hidden states with "
                              f"divergence={self.divergence!r} (a sparse teacher supports "
                              f"the forward KL only)", "a SparseTeacher")
        idx, vals = teacher
        if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex():
            raise param_error("teacher.indices", func, "an integer torch.Tensor",
                              getattr(idx, "dtype", type(idx).__name__), TypeError)
        vals = _tensor(vals, "teacher.values", func)
        k = int(vals.shape[-1])
        if tuple(vals.shape[:-1]) != batch or not 1 <= k <= V or idx.shape != vals.shape:
            raise param_error("teacher", func, f"a SparseTeacher of indices and values of one "
                              f"shape {batch + ('k',)} with 1 <= k <= {V}",
                              f"shapes {tuple(idx.shape)} and {tuple(vals.shape)}")
        return idx, _frozen(vals, "teacher.values", func)

    @staticmethod
    def _teacher(teacher: Any, batch: tuple[int, ...], V: int, func: str
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None,
                            torch.Tensor | None]:
        """(logits, hidden, weight, bias) of the teacher, checked and detached."""
        if isinstance(teacher, torch.Tensor):
            t = _tensor(teacher, "teacher", func)
            if tuple(t.shape) != batch + (V,):
                raise param_error("teacher", func, f"teacher logits of shape {batch + (V,)} "
                                  "(the student's leading shape, V classes) or a tuple "
                                  "(teacher_hidden, teacher_weight[, teacher_bias])",
                                  f"shape {tuple(t.shape)}")
            return _frozen(t, "teacher", func), None, None, None
        if not isinstance(teacher, (tuple, list)) or len(teacher) not in (2, 3):
            raise param_error("teacher", func, "teacher logits (a tensor) or a tuple "
                              "(teacher_hidden, teacher_weight[, teacher_bias])",
                              type(teacher).__name__ if not isinstance(teacher, (tuple, list))
                              else f"a {type(teacher).__name__} of {len(teacher)} items",
                              TypeError)
        th = _tensor(teacher[0], "teacher[0] (teacher_hidden)", func)
        tw = _tensor(teacher[1], "teacher[1] (teacher_weight)", func, ndim=2)
        if tuple(th.shape[:-1]) != batch:
            raise param_error("teacher[0] (teacher_hidden)", func, f"a tensor of shape "
                              f"{batch + ('Ht',)}", f"shape {tuple(th.shape)}")
        if tuple(tw.shape) != (V, th.shape[-1]):
            raise param_error("teacher[1] (teacher_weight)", func,
                              f"a tensor of shape {(V, int(th.shape[-1]))}",
                              f"shape {tuple(tw.shape)}")
        if tw.dtype != th.dtype:
            raise param_error("teacher[1] (teacher_weight)", func, f"a tensor of "
                              f"teacher_hidden's dtype {th.dtype}", f"dtype {tw.dtype}", TypeError)
        tb = None
        if len(teacher) == 3 and teacher[2] is not None:
            tb = _tensor(teacher[2], "teacher[2] (teacher_bias)", func, ndim=1)
            if int(tb.shape[0]) != V or tb.dtype != th.dtype:
                raise param_error("teacher[2] (teacher_bias)", func,
                                  f"a ({V},) tensor of dtype {th.dtype}",
                                  f"shape {tuple(tb.shape)}, dtype {tb.dtype}")
            tb = _frozen(tb, "teacher_bias", func)
        return (None, _frozen(th, "teacher_hidden", func), _frozen(tw, "teacher_weight", func), tb)

    def extra_repr(self) -> str:
        """The options, for ``repr``."""
        parts = [f"temperature={self.temperature}", f"divergence={self.divergence!r}"]
        if self.divergence == "jsd":
            parts.append(f"beta={self.beta}")
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha}")
        if self.teacher_temperature is not None:
            parts.append(f"teacher_temperature={self.teacher_temperature}")
        if not self.t2_scale:
            parts.append("t2_scale=False")
        if self.chunk_size is not None:
            parts.append(f"chunk_size={self.chunk_size}")
        if self.reduction != "batchmean":
            parts.append(f"reduction={self.reduction!r}")
        if self.missing != "zero":
            parts.append(f"missing={self.missing!r}")
        return ", ".join(parts)
