r"""The lean chunked distillation loss (:class:`KDLoss`, :func:`fused_kd_loss`); see :mod:`tempscale.torch`."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from .._args import check_temperature, coerce
from .._compat import is_python_scalar
from .._kd_args import check_num_items, check_options, prepare, where_alias
from .._typing import ArrayLike, Temperature
from .._validation import check_bool, check_scalar, param_error
from ..distill import kd_loss

__all__ = ["KDLoss", "fused_kd_loss"]

#: elements per chunk (float32): 2**20 = 4 MiB on CPU, so a chunk's few temporaries stay in
#: cache; 2**22 on GPUs (fewer kernel launches), capped so the workspace stays small
_CHUNK_ELEMENTS = 1 << 20
_CHUNK_ELEMENTS_GPU = 1 << 22

#: the tests set this to exercise, on CPU, the GPU's deferred check of special chunks
_DEFER_CHECKS = False


class _Config(NamedTuple):
    """The options of one call, as the chunk functions read them."""

    alpha: float
    divergence: str
    beta: float
    t2_scale: bool
    ignore_index: int
    reduction: str
    chunk: int
    compute: torch.dtype
    inplace: bool


#: a temperature as the chunk functions take it: a Python float or a (rows, 1) tensor
_Temp = Any


def _auto_chunk(n_rows: int, n_classes: int, device: torch.device | None = None) -> int:
    """Rows per chunk: about ``_CHUNK_ELEMENTS`` elements (more on GPUs)."""
    elements = _CHUNK_ELEMENTS
    if device is not None and device.type != "cpu":
        elements = max(_CHUNK_ELEMENTS, min(_CHUNK_ELEMENTS_GPU, n_rows * n_classes // 30))
    return max(1, min(max(n_rows, 1), elements // max(n_classes, 1)))


class _FusedKD(torch.autograd.Function):
    """Chunked forward that also computes d(loss)/d(student); backward only rescales it."""

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, t: torch.Tensor, T: _Temp, Tt: _Temp,
                labels: torch.Tensor | None, valid: torch.Tensor | None,
                cfg: _Config) -> torch.Tensor:
        alpha, divergence, beta, t2_scale, ignore_index, reduction, chunk, compute, inplace = cfg
        n, v = s.shape
        need_grad = bool(ctx.needs_input_grad[0])
        grad = torch.empty((n, v), dtype=s.dtype, device=s.device) if need_grad else None
        rows = torch.empty(n, dtype=compute, device=s.device)
        n_valid = n if valid is None else int(valid.sum())
        w = 1.0 / max(n_valid, 1) if reduction == "batchmean" else 1.0
        special_t = _special_teacher_temperature(Tt)
        starts = list(range(0, n, chunk))
        workers = _workers(len(starts), s.device)
        local = threading.local()
        deferred: list[tuple[int, torch.Tensor]] = []   # chunks whose check stays on the device

        def run(i: int, generic: bool = False) -> None:
            with torch.no_grad():  # grad mode is thread-local: worker threads start with it on
                _run(i, generic)

        def _run(i: int, generic: bool) -> None:
            j = min(n, i + chunk)
            Tc = T if is_python_scalar(T) else T[i:j]
            Ttc = Tt if is_python_scalar(Tt) else Tt[i:j]
            lab = None if labels is None else labels[i:j]
            val = None if valid is None else valid[i:j]
            out = None if grad is None else grad[i:j]
            done = False
            if not (special_t or generic):
                ws = getattr(local, "ws", None)
                if ws is None:
                    ws = local.ws = _Workspace(min(chunk, n), v, compute, s.device, divergence)
                flag = _chunk_fast(s[i:j], t[i:j], Tc, Ttc, lab, val, cfg, w, ws, rows[i:j], out)
                if isinstance(flag, torch.Tensor):
                    # GPU: no host sync per chunk; special chunks are redone after the loop
                    deferred.append((i, flag))
                    done = True
                else:
                    done = flag
            if not done:
                r, g = _chunk_generic(s[i:j], t[i:j], Tc, Ttc, lab, val, cfg, w, need_grad)
                rows[i:j] = r
                if out is not None and g is not None:
                    out.copy_(g)

        if workers <= 1:
            for i in starts:
                run(i)
        else:
            # one chunk per thread at a time, single-threaded kernels: no barrier per kernel
            saved = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    list(pool.map(run, starts))
            finally:
                torch.set_num_threads(saved)
        if deferred:
            flags = torch.stack([f for _, f in deferred]).cpu().tolist()
            for (i, _), bad in zip(deferred, flags, strict=True):
                if bad:
                    run(i, generic=True)
        ctx.grad = grad
        ctx.reduction = reduction
        ctx.inplace = inplace
        ctx.cfg = cfg
        # what a differentiable backward (create_graph=True) recomputes from; s and t are the
        # caller's tensors or views of them, so keeping them costs no memory (axis=-1)
        ctx.scalars = (T if is_python_scalar(T) else None, Tt if is_python_scalar(Tt) else None)
        if need_grad:
            opt = [x if isinstance(x, torch.Tensor) else None for x in (T, Tt, labels, valid)]
            ctx.layout = [x is not None for x in opt]
            ctx.save_for_backward(s, t, *[x for x in opt if x is not None])
        if reduction == "none":
            return rows
        total = rows.sum()
        return total * w if reduction == "batchmean" else total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():
            # create_graph=True (gradient penalties, MAML, gradgradcheck): the stored gradient
            # is a constant to autograd, so recompute it differentiably instead (the stored one
            # stays for a later first-order backward through the same graph, e.g. of a penalty)
            return (_differentiable_grad(ctx, grad_out),) + (None,) * 6
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


def _differentiable_grad(ctx: Any, grad_out: torch.Tensor) -> torch.Tensor:
    """d(loss)/d(student) * grad_out as a function of the student logits (and of ``grad_out``),
    through the generic :func:`tempscale.distill.kd_loss`, so that it can be differentiated
    again."""
    alpha, divergence, beta, t2_scale, ignore_index, reduction, _chunk, _compute, _inp = ctx.cfg
    saved = list(ctx.saved_tensors)
    s, t = saved[0], saved[1]
    rest = iter(saved[2:])
    T, Tt, labels, valid = [next(rest) if present else None for present in ctx.layout]
    T = ctx.scalars[0] if T is None else T
    Tt = ctx.scalars[1] if Tt is None else Tt
    with torch.enable_grad():
        loss = kd_loss(
            s, t, T, labels=labels, alpha=None if labels is None else alpha,
            divergence=divergence, beta=beta, teacher_temperature=Tt, t2_scale=t2_scale,
            ignore_index=ignore_index, where=valid, reduction=reduction)
        grads = torch.autograd.grad(loss, s, grad_outputs=grad_out.to(loss.dtype),
                                    create_graph=True)
    g: torch.Tensor = grads[0]
    return g


def _workers(n_chunks: int, device: torch.device) -> int:
    """Threads that walk the chunks: torch's intra-op thread count, on CPU."""
    if device.type != "cpu" or n_chunks < 2:
        return 1
    return max(1, min(torch.get_num_threads(), n_chunks))


def _special_teacher_temperature(Tt: _Temp) -> bool:
    """Whether a teacher temperature is 0 or inf somewhere (the generic path handles those)."""
    if is_python_scalar(Tt):
        return Tt == 0 or math.isinf(Tt)
    return bool(torch.any((Tt == 0) | torch.isinf(Tt)))


class _Workspace:
    """Chunk-sized float buffers, allocated once per call and reused by every chunk."""

    def __init__(self, rows: int, v: int, dtype: torch.dtype, device: torch.device,
                 divergence: str) -> None:
        k = 6 if divergence == "jsd" else 5
        self._bufs = torch.empty((k, rows, v), dtype=dtype, device=device)
        self.max_neg = -torch.finfo(dtype).max

    def take(self, c: int) -> list[torch.Tensor]:
        return [b[:c] for b in self._bufs]


def _chunk_fast(sc: torch.Tensor, tc: torch.Tensor, T: _Temp, Tt: _Temp,
                lab: torch.Tensor | None, val: torch.Tensor | None, cfg: _Config, w: float,
                ws: _Workspace, rows_out: torch.Tensor,
                grad_out: torch.Tensor | None) -> bool | torch.Tensor:
    """Loss rows (into ``rows_out``) and weighted gradient (into ``grad_out``) of one chunk.

    Uses only torch's vectorised kernels and the workspace buffers.  A row is special (NaN,
    +inf, fully masked) when its log-softmax is NaN; the generic path must then redo the chunk.
    On CPU this returns False at once (having written nothing that matters) or True; on other
    devices it finishes the chunk and returns the flag as a device tensor, so that the caller
    can check all chunks with one host synchronisation.
    """
    alpha, divergence, beta, t2_scale, _ii, _red, _chunk, compute, _inplace = cfg
    if divergence == "jsd" and beta == 0.0:
        divergence = "forward"
    elif divergence == "jsd" and beta == 1.0:
        divergence = "reverse"
    c = sc.shape[0]
    bufs = ws.take(c)
    Z, LQ, LP, Q, B = bufs[:5]
    need_grad = grad_out is not None
    if grad_out is not None and grad_out.dtype == compute:
        B = grad_out                       # write the gradient in place
    scalar_T = is_python_scalar(T)
    # log q = log_softmax(s / T), log p = log_softmax(t / T_t), in the compute dtype
    for x, temp, dst in ((sc, T, LQ), (tc, Tt, LP)):
        src = x
        if x.dtype != compute:
            Z.copy_(x)
            src = Z
        if not (is_python_scalar(temp) and temp == 1.0):
            torch.div(src, temp, out=Z)
            src = Z
        torch.log_softmax(src, -1, out=dst)
    on_cpu = sc.device.type == "cpu" and not _DEFER_CHECKS
    bad = torch.isnan(LQ[:, 0]).any() | torch.isnan(LP[:, 0]).any()
    if on_cpu and bool(bad):
        return False
    torch.exp(LQ, out=Q)
    P = torch.exp(LP, out=Z)
    if divergence == "forward":
        # KL(p || q) = sum p (log p - log q); gradient (q * sum p - p) / T
        torch.sub(LP, LQ, out=B)
        B.mul_(P).nan_to_num_(0.0, math.inf, -math.inf)      # 0 log 0 = 0
        soft = B.sum(dim=-1)
        if need_grad:
            torch.mul(Q, P.sum(dim=-1, keepdim=True), out=B)
            B.sub_(P)
    elif divergence == "reverse":
        # KL(q || p) = sum q f, f = log q - log p; gradient q (f - KL) / T
        torch.sub(LQ, LP, out=B)
        B.nan_to_num_(0.0, math.inf, ws.max_neg)             # q = 0 entries carry no weight
        soft = torch.linalg.vecdot(Q, B)
        if need_grad:
            B.sub_(soft.unsqueeze(-1)).mul_(Q)
    else:
        # beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q;
        # d/dq = (1 - beta)(log q - log m), so the gradient is (1 - beta) q (g - E_q g) / T
        LM = bufs[5]
        torch.mul(P, beta, out=LM)
        LM.add_(Q, alpha=1.0 - beta).log_()
        torch.sub(LP, LM, out=B)
        B.mul_(P).nan_to_num_(0.0, math.inf, -math.inf)
        kl_p = B.sum(dim=-1)
        torch.sub(LQ, LM, out=B)
        B.nan_to_num_(0.0, math.inf, ws.max_neg)
        kl_q = torch.linalg.vecdot(Q, B)
        soft = beta * kl_p + (1.0 - beta) * kl_q
        if need_grad:
            B.sub_(kl_q.unsqueeze(-1)).mul_(Q)
    # soft-term weight per row: alpha * (T^2 if t2_scale); its gradient carries a 1/T
    jsd_f = (1.0 - beta) if divergence == "jsd" else 1.0
    if scalar_T:
        k = T * T if t2_scale else 1.0
        gcoef = alpha * k / T * w * jsd_f
    else:
        k = (T * T).squeeze(-1) if t2_scale else 1.0
        gcoef = (alpha * w * jsd_f) * (T if t2_scale else 1.0 / T)
    soft = soft * k
    if lab is None:
        r = soft
        if need_grad:
            B.mul_(gcoef)
    else:
        safe = lab if val is None else torch.where(val, lab, torch.zeros_like(lab))
        idx = safe.unsqueeze(-1)
        Q1: torch.Tensor | None
        if scalar_T and T == 1.0:
            LQ1, Q1 = LQ, Q
        else:
            src = sc
            if sc.dtype != compute:
                Z.copy_(sc)
                src = Z
            LQ1 = torch.log_softmax(src, -1, out=LP)
            Q1 = torch.exp(LQ1, out=Z) if need_grad else None
        hard = -torch.gather(LQ1, -1, idx).squeeze(-1)
        if alpha == 1.0:
            r = soft
        elif alpha == 0.0:
            r = hard
        else:
            r = alpha * soft + (1.0 - alpha) * hard
        if need_grad and Q1 is not None:
            hw = (1.0 - alpha) * w
            if alpha == 0.0:
                torch.mul(Q1, hw, out=B)
            else:
                B.mul_(gcoef).add_(Q1, alpha=hw)
            B.scatter_add_(-1, idx, torch.full(idx.shape, -hw, dtype=B.dtype, device=B.device))
    if val is not None and (not on_cpu or not bool(val.all())):
        r = torch.where(val, r, torch.zeros_like(r))
        if need_grad:
            B.masked_fill_(~val.unsqueeze(-1), 0.0)
    rows_out.copy_(r)
    if grad_out is not None and B is not grad_out:
        grad_out.copy_(B)
    return True if on_cpu else bad


def _chunk_generic(sc: torch.Tensor, tc: torch.Tensor, T: _Temp, Tt: _Temp,
                   lab: torch.Tensor | None, val: torch.Tensor | None, cfg: _Config, w: float,
                   need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The same via the generic implementation and autograd (NaN/+inf/fully masked rows, T_t in {0, inf})."""
    alpha, divergence, beta, t2_scale, ignore_index, _red, _chunk, compute, _inplace = cfg
    with torch.enable_grad():
        x = sc.detach().to(compute).requires_grad_(need_grad)
        rows = kd_loss(
            x, tc.detach(), T, labels=lab, alpha=None if lab is None else alpha,
            divergence=divergence, beta=beta, teacher_temperature=Tt, t2_scale=t2_scale,
            ignore_index=ignore_index, where=val, reduction="none")
        rows = rows.to(compute)
        g = None
        if need_grad:
            (g,) = torch.autograd.grad(rows, x, grad_outputs=torch.full_like(rows, w))
    return rows.detach(), g


def _teacher_tensor(teacher: Any, student: torch.Tensor, func: str) -> torch.Tensor:
    """A NumPy (pandas, array-like) teacher as a tensor on the student's device and dtype."""
    arr = coerce(teacher)
    if not isinstance(arr, np.ndarray):
        raise param_error("teacher_logits", func, "a torch.Tensor or a NumPy array",
                          type(teacher).__name__, TypeError)
    if not arr.flags.writeable:
        arr = arr.copy()
    dt = student.dtype if student.is_floating_point() else None
    return torch.as_tensor(arr, device=student.device, dtype=dt)


def _is_tensor_requiring_grad(x: object) -> bool:
    return isinstance(x, torch.Tensor) and x.requires_grad


def fused_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | ArrayLike,
                  temperature: Temperature = 1.0, *, labels: ArrayLike | None = None,
                  alpha: float | None = None, divergence: str = "forward", beta: float = 0.5,
                  teacher_temperature: Temperature | None = None, t2_scale: bool = True,
                  ignore_index: int = -100, where: ArrayLike | None = None,
                  reduction: str = "batchmean", axis: int = -1, chunk_size: int | None = None,
                  inplace_backward: bool = True, mask: ArrayLike | None = None,
                  num_items_in_batch: Any = None, shift_labels: bool = False) -> torch.Tensor:
    r"""Memory-lean :func:`tempscale.distill.kd_loss` for PyTorch tensors.

    Same parameters, result and numerical contract as :func:`tempscale.distill.kd_loss`
    (forward / reverse KL, generalised JSD, :math:`T^2` scaling, labels with ``ignore_index``,
    row masks, per-row temperatures, ``-inf`` masked classes, float16/bfloat16 computed in
    float32), plus:

    Parameters
    ----------
    where : bool tensor, optional
        Rows to keep, as in :func:`tempscale.distill.kd_loss` (``mask=`` is its deprecated
        spelling: a DeprecationWarning).
    num_items_in_batch, shift_labels
        Hugging Face's gradient-accumulation normaliser and causal-model label shift, as in
        :func:`tempscale.distill.kd_loss`.
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
    where = where_alias(where, mask, func)
    if not isinstance(student_logits, torch.Tensor):
        raise param_error("student_logits", func, "a torch.Tensor", type(student_logits).__name__,
                          TypeError)
    if not isinstance(teacher_logits, torch.Tensor):
        teacher_logits = _teacher_tensor(teacher_logits, student_logits, func)
    alpha_r, beta_r = check_options(
        func, alpha=alpha, labels=labels, divergence=divergence, beta=beta, t2_scale=t2_scale,
        ignore_index=ignore_index, reduction=reduction)
    check_bool(inplace_backward, "inplace_backward", func)
    check_bool(shift_labels, "shift_labels", func)
    num_items = check_num_items(num_items_in_batch, reduction, func)
    if chunk_size is not None:
        chunk_size = check_scalar(chunk_size, "chunk_size", func, lo=1, integer=True)

    def generic() -> torch.Tensor:
        """The same loss by the generic autograd implementation."""
        result: torch.Tensor = kd_loss(
            student_logits, teacher_logits, temperature, labels=labels, alpha=alpha,
            divergence=divergence, beta=beta, teacher_temperature=teacher_temperature,
            t2_scale=t2_scale, ignore_index=ignore_index, where=where, reduction=reduction,
            axis=axis, num_items_in_batch=num_items, shift_labels=shift_labels)
        return result

    if torch.is_grad_enabled() and (
            teacher_logits.requires_grad or _is_tensor_requiring_grad(temperature)
            or _is_tensor_requiring_grad(teacher_temperature)):
        return generic()
    args = prepare(student_logits, teacher_logits, temperature,
                   teacher_temperature=teacher_temperature, labels=labels, where=where,
                   ignore_index=ignore_index, axis=axis, func=func, shift_labels=shift_labels)
    s, T, Tt, out = args.s, args.T, args.Tt, args.out
    batch_shape = args.batch_shape
    v = s.shape[-1]
    n = math.prod(batch_shape)
    s2 = s.reshape(n, v)
    t2 = args.t.detach().reshape(n, v)
    T2 = T if is_python_scalar(T) else T.detach().reshape(n, 1)
    Tt2 = Tt if is_python_scalar(Tt) else Tt.detach().reshape(n, 1)
    lab2 = None if args.labels is None else args.labels.reshape(n)
    val2 = None if args.valid is None else args.valid.reshape(n)
    chunk = chunk_size if chunk_size is not None else _auto_chunk(n, v, s.device)
    # with num_items_in_batch: the sum over the valid rows, divided by that count below
    cfg = _Config(alpha_r, divergence, beta_r, t2_scale, ignore_index,
                  "sum" if num_items is not None else reduction, chunk, args.compute,
                  inplace_backward)
    if n == 0 or v == 0:
        return generic()
    apply = cast(Callable[..., torch.Tensor], _FusedKD.apply)
    loss = apply(s2, t2, T2, Tt2, lab2, val2, cfg)
    if num_items is not None:
        if is_python_scalar(num_items):
            loss = loss / num_items
        else:
            n_all = torch.as_tensor(coerce(num_items)).detach()
            loss = loss / n_all.to(device=loss.device, dtype=loss.dtype).reshape(())
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
    implementation (correct, not memory-lean).  A NumPy (or pandas) teacher is converted to a
    tensor on the student's device, in its dtype.

    Higher-order gradients work: a backward pass with ``create_graph=True`` (a gradient
    penalty, a MAML inner step) recomputes the gradient through the differentiable
    :func:`tempscale.distill.kd_loss` (not memory-lean, but exact), so the gradient has a
    ``grad_fn`` and can be differentiated again.

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

    def __init__(self, temperature: Temperature = 1.0, *, alpha: float | None = None,
                 divergence: str = "forward", beta: float = 0.5,
                 teacher_temperature: Temperature | None = None, t2_scale: bool = True,
                 ignore_index: int = -100, reduction: str = "batchmean", axis: int = -1,
                 chunk_size: int | None = None, inplace_backward: bool = True) -> None:
        super().__init__()
        func = "KDLoss"
        check_options(func, alpha=alpha, labels=None if alpha is None else True,
                      divergence=divergence, beta=beta, t2_scale=t2_scale,
                      ignore_index=ignore_index, reduction=reduction)
        if is_python_scalar(temperature):  # tensors are checked where the loss is computed
            check_temperature(temperature, func, edges=False)
        if teacher_temperature is not None and is_python_scalar(teacher_temperature):
            check_temperature(teacher_temperature, func, param="teacher_temperature")
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

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor | ArrayLike,
                labels: ArrayLike | None = None, *, where: ArrayLike | None = None,
                temperature: Temperature | None = None,
                teacher_temperature: Temperature | None = None,
                mask: ArrayLike | None = None, num_items_in_batch: Any = None,
                shift_labels: bool = False) -> torch.Tensor:
        """The loss; ``temperature``/``teacher_temperature`` here override the module's
        (e.g. per-row temperature tensors).  ``where``: the rows to keep (``mask=`` is its
        deprecated spelling).  ``num_items_in_batch``: the valid rows of the whole accumulated
        batch (the loss is the sum over this call's valid rows divided by it, as Hugging Face's
        trainers expect); ``shift_labels``: labels ``(..., S)`` of a causal model, position
        ``t`` predicting label ``t + 1`` -- both as in :func:`tempscale.distill.kd_loss`."""
        T = self.temperature if temperature is None else temperature
        Tt = self.teacher_temperature if teacher_temperature is None else teacher_temperature
        alpha = self.alpha if labels is not None else None
        return fused_kd_loss(
            student_logits, teacher_logits, T, labels=labels, alpha=alpha,
            divergence=self.divergence, beta=self.beta, teacher_temperature=Tt,
            t2_scale=self.t2_scale, ignore_index=self.ignore_index, where=where, mask=mask,
            reduction=self.reduction, axis=self.axis, chunk_size=self.chunk_size,
            inplace_backward=self.inplace_backward, num_items_in_batch=num_items_in_batch,
            shift_labels=shift_labels)

    def extra_repr(self) -> str:
        """The options that differ from the defaults, for ``repr``."""
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
