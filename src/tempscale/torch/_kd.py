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

from .. import _config
from .._args import check_temperature, coerce
from .._compat import is_python_scalar
from .._kd_args import check_num_items, check_options, prepare, prepare_sparse, where_alias
from .._typing import ArrayLike, Temperature
from .._validation import check_axis, check_bool, check_choice, check_scalar, param_error
from ..distill import MISSING, SparseTeacher, kd_loss_generic, sparse_kd_loss

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
    #: hand the stored gradient over in place (True), copy it (False), or in place with a
    #: recomputation on a second backward ("recompute", what kd_loss uses)
    inplace: bool | str


#: a temperature as the chunk functions take it: a Python float or a (rows, 1) tensor
_Temp = Any


def _auto_chunk(n_rows: int, n_classes: int, device: torch.device | None = None) -> int:
    """Rows per chunk: about ``_CHUNK_ELEMENTS`` elements (more on GPUs)."""
    elements = _CHUNK_ELEMENTS
    if device is not None and device.type != "cpu":
        elements = max(_CHUNK_ELEMENTS, min(_CHUNK_ELEMENTS_GPU, n_rows * n_classes // 30))
    return max(1, min(max(n_rows, 1), elements // max(n_classes, 1)))


class _SparseChunks:
    """A sparse (top-k) teacher, made dense one chunk of rows at a time.

    ``idx`` (rows, k) int64 and ``v`` (rows, k) in the compute dtype; ``u`` (rows, 1): the
    value every class outside the top-k gets (``-inf`` for ``missing="zero"``, the flat share
    of the missing mass for ``missing="uniform"``), so that the dense chunk is exactly the
    teacher that :func:`tempscale.distill.sparse_kd_loss` describes.
    """

    def __init__(self, idx: torch.Tensor, v: torch.Tensor, u: torch.Tensor | None,
                 n_classes: int) -> None:
        self.idx, self.v, self.u, self.n_classes = idx, v, u, n_classes
        self.shape = (idx.shape[0], n_classes)
        self.dtype = v.dtype
        self.device = v.device

    def dense(self, i: int, j: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``i:j`` as dense teacher logits (written into ``out`` when given)."""
        c = j - i
        if out is None:
            out = torch.empty((c, self.n_classes), dtype=self.dtype, device=self.device)
        else:
            out = out[:c]
        if self.u is None:
            out.fill_(-math.inf)
        else:
            out.copy_(self.u[i:j].expand(c, self.n_classes))
        out.scatter_(-1, self.idx[i:j], self.v[i:j])
        return out


def _chunk_loop(s: torch.Tensor, t: torch.Tensor | _SparseChunks, T: _Temp, Tt: _Temp,
                labels: torch.Tensor | None, valid: torch.Tensor | None, cfg: _Config, w: float,
                need_grad: bool, need_tgrad: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Row losses and the (weighted by ``w``) gradients of the student and of the teacher.

    Walks the rows in chunks of ``cfg.chunk``; each chunk goes through :func:`_chunk_fast` (the
    closed form) or, for special rows and teacher temperatures 0/inf, :func:`_chunk_generic`.
    """
    chunk, compute, divergence = cfg.chunk, cfg.compute, cfg.divergence
    n, v = s.shape
    grad = torch.empty((n, v), dtype=s.dtype, device=s.device) if need_grad else None
    t_dtype = t.dtype if isinstance(t, torch.Tensor) else compute
    tgrad = torch.empty((n, v), dtype=t_dtype, device=s.device) if need_tgrad else None
    rows = torch.empty(n, dtype=compute, device=s.device)
    special_t = _special_teacher_temperature(Tt)
    starts = list(range(0, n, chunk))
    workers = _workers(len(starts), s.device)
    local = threading.local()
    deferred: list[tuple[int, torch.Tensor]] = []   # chunks whose check stays on the device

    def run(i: int, generic: bool = False) -> None:
        with torch.no_grad():  # grad mode is thread-local: worker threads start with it on
            _run(i, generic)

    def teacher_chunk(i: int, j: int) -> torch.Tensor:
        if isinstance(t, torch.Tensor):
            return t[i:j]
        buf = getattr(local, "tbuf", None)
        if buf is None:
            buf = local.tbuf = torch.empty((min(chunk, n), v), dtype=compute, device=s.device)
        return t.dense(i, j, buf)

    def _run(i: int, generic: bool) -> None:
        j = min(n, i + chunk)
        Tc = T if is_python_scalar(T) else T[i:j]
        Ttc = Tt if is_python_scalar(Tt) else Tt[i:j]
        lab = None if labels is None else labels[i:j]
        val = None if valid is None else valid[i:j]
        out = None if grad is None else grad[i:j]
        tout = None if tgrad is None else tgrad[i:j]
        tc = teacher_chunk(i, j)
        done = False
        if not (special_t or generic):
            ws = getattr(local, "ws", None)
            if ws is None:
                ws = local.ws = _Workspace(min(chunk, n), v, compute, s.device, divergence,
                                           extra=need_tgrad)
            flag = _chunk_fast(s[i:j], tc, Tc, Ttc, lab, val, cfg, w, ws, rows[i:j], out,
                               tout)
            if isinstance(flag, torch.Tensor):
                # GPU: no host sync per chunk; special chunks are redone after the loop
                deferred.append((i, flag))
                done = True
            else:
                done = flag
        if not done:
            r, g, gt = _chunk_generic(s[i:j], tc, Tc, Ttc, lab, val, cfg, w, need_grad,
                                      need_tgrad)
            rows[i:j] = r
            if out is not None and g is not None:
                out.copy_(g)
            if tout is not None and gt is not None:
                tout.copy_(gt)

    run_chunks(run, starts, workers)
    if deferred:
        flags = torch.stack([f for _, f in deferred]).cpu().tolist()
        for (i, _), bad in zip(deferred, flags, strict=True):
            if bad:
                run(i, generic=True)
    return rows, grad, tgrad


class _FusedKD(torch.autograd.Function):
    """Chunked forward that also computes d(loss)/d(student) (and d(loss)/d(teacher) when the
    teacher requires grad); backward only rescales them."""

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, t: torch.Tensor | _SparseChunks, T: _Temp, Tt: _Temp,
                labels: torch.Tensor | None, valid: torch.Tensor | None,
                cfg: _Config) -> torch.Tensor:
        reduction = cfg.reduction
        n = s.shape[0]
        need_grad = bool(ctx.needs_input_grad[0])
        need_tgrad = isinstance(t, torch.Tensor) and bool(ctx.needs_input_grad[1])
        n_valid = n if valid is None else int(valid.sum())
        w = 1.0 / max(n_valid, 1) if reduction == "batchmean" else 1.0
        rows, grad, tgrad = _chunk_loop(s, t, T, Tt, labels, valid, cfg, w, need_grad,
                                        need_tgrad)
        ctx.grads = [grad, tgrad]
        ctx.w = w
        ctx.reduction = reduction
        ctx.inplace = cfg.inplace
        ctx.cfg = cfg
        ctx.sparse = None if isinstance(t, torch.Tensor) else t
        # what a differentiable backward (create_graph=True) recomputes from; s and t are the
        # caller's tensors or views of them, so keeping them costs no memory (axis=-1)
        ctx.scalars = (T if is_python_scalar(T) else None, Tt if is_python_scalar(Tt) else None)
        if need_grad or need_tgrad:
            opt = [x if isinstance(x, torch.Tensor) else None for x in (T, Tt, labels, valid)]
            ctx.layout = [x is not None for x in opt]
            tt = t if isinstance(t, torch.Tensor) else s.new_empty(0)
            ctx.save_for_backward(s, tt, *[x for x in opt if x is not None])
        if reduction == "none":
            return rows
        total = rows.sum()
        return total * w if reduction == "batchmean" else total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        need = (bool(ctx.needs_input_grad[0]), ctx.sparse is None and bool(ctx.needs_input_grad[1]))
        if torch.is_grad_enabled():
            # create_graph=True (gradient penalties, MAML, gradgradcheck): the stored gradient
            # is a constant to autograd, so recompute it differentiably instead (the stored one
            # stays for a later first-order backward through the same graph, e.g. of a penalty)
            gs, gt = _differentiable_grads(ctx, grad_out, need)
            return (gs, gt) + (None,) * 5
        out: list[torch.Tensor | None] = [None, None]
        if ctx.inplace == "recompute" and any(
                need[k] and ctx.grads[k] is None for k in (0, 1)):
            # a second backward through a retained graph: the same chunked pass again (the
            # same bits as the first time, so gradcheck's reentrancy check holds)
            ctx.grads = list(_recompute(ctx, need))
        for k in (0, 1):
            if not need[k]:
                continue
            g = ctx.grads[k]
            if g is None:
                raise RuntimeError(
                    "tempscale.torch.KDLoss hands its stored gradient to autograd without a "
                    "copy, so it can be backpropagated only once; pass inplace_backward=False to "
                    "allow retain_graph=True (at the cost of one more batch x vocab buffer)")
            if ctx.inplace:
                ctx.grads[k] = None
                if ctx.reduction == "none":
                    g.mul_(grad_out.reshape(-1, 1).to(g.dtype))
                elif not bool(grad_out == 1):
                    g.mul_(grad_out.to(g.dtype))
            else:
                if ctx.reduction == "none":
                    g = g * grad_out.reshape(-1, 1).to(g.dtype)
                else:
                    g = g * grad_out.to(g.dtype)
            out[k] = g
        return out[0], out[1], None, None, None, None, None


def _recompute(ctx: Any, need: tuple[bool, bool]
               ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The chunked pass of the forward again, for the stored gradients (weighted as then)."""
    saved = list(ctx.saved_tensors)
    s, t = saved[0], saved[1]
    t_in = ctx.sparse if ctx.sparse is not None else t
    rest = iter(saved[2:])
    T, Tt, labels, valid = [next(rest) if present else None for present in ctx.layout]
    T = ctx.scalars[0] if T is None else T
    Tt = ctx.scalars[1] if Tt is None else Tt
    _rows, g, gt = _chunk_loop(s.detach(), t_in if ctx.sparse is not None else t.detach(), T,
                               Tt, labels, valid, ctx.cfg, ctx.w, need[0], need[1])
    return g, gt


def _differentiable_grads(ctx: Any, grad_out: torch.Tensor, need: tuple[bool, bool]
                          ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """d(loss)/d(student) and d(loss)/d(teacher), times ``grad_out``, as functions of the
    logits (and of ``grad_out``), through the generic :func:`tempscale.distill.kd_loss`, so
    that they can be differentiated again."""
    alpha, divergence, beta, t2_scale, ignore_index, reduction, _chunk, _compute, _inp = ctx.cfg
    saved = list(ctx.saved_tensors)
    s, t = saved[0], saved[1]
    if ctx.sparse is not None:
        t = ctx.sparse.dense(0, s.shape[0])
    rest = iter(saved[2:])
    T, Tt, labels, valid = [next(rest) if present else None for present in ctx.layout]
    T = ctx.scalars[0] if T is None else T
    Tt = ctx.scalars[1] if Tt is None else Tt
    # native=False: torch's own twice-differentiable softmax ops, whatever the CPU kernel offers
    with torch.enable_grad(), _config.config(native=False):
        inputs = [x for x, k in ((s, need[0]), (t, need[1])) if k]
        loss = kd_loss_generic(
            s, t, T, labels=labels, alpha=None if labels is None else alpha,
            divergence=divergence, beta=beta, teacher_temperature=Tt, t2_scale=t2_scale,
            ignore_index=ignore_index, where=valid, reduction=reduction)
        grads = list(torch.autograd.grad(loss, inputs, grad_outputs=grad_out.to(loss.dtype),
                                         create_graph=True, allow_unused=True))
    gs = grads.pop(0) if need[0] else None
    gt = grads.pop(0) if need[1] else None
    return gs, gt



def run_chunks(run: Callable[[int], Any], starts: list[int], workers: int) -> None:
    """``run(i)`` for every chunk start: in order, or one chunk per thread at a time with
    single-threaded torch kernels (no barrier per kernel), restoring torch's thread count."""
    if workers <= 1:
        for i in starts:
            run(i)
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, starts))
    finally:
        torch.set_num_threads(saved)

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
                 divergence: str, extra: bool = False) -> None:
        k = (6 if divergence == "jsd" else 5) + (1 if extra else 0)
        self._bufs = torch.empty((k, rows, v), dtype=dtype, device=device)
        self.max_neg = -torch.finfo(dtype).max

    def take(self, c: int) -> list[torch.Tensor]:
        return [b[:c] for b in self._bufs]


def _chunk_fast(sc: torch.Tensor, tc: torch.Tensor, T: _Temp, Tt: _Temp,
                lab: torch.Tensor | None, val: torch.Tensor | None, cfg: _Config, w: float,
                ws: _Workspace, rows_out: torch.Tensor,
                grad_out: torch.Tensor | None,
                tgrad_out: torch.Tensor | None = None) -> bool | torch.Tensor:
    """Loss rows (into ``rows_out``) and weighted gradients (into ``grad_out`` for the student,
    ``tgrad_out`` for the teacher) of one chunk.

    Uses only torch's vectorised kernels and the workspace buffers.  A row is special (NaN,
    +inf, fully masked) when its log-softmax is NaN; the generic path must then redo the chunk.
    On CPU this returns False at once (having written nothing that matters) or True; on other
    devices it finishes the chunk and returns the flag as a device tensor, so that the caller
    can check all chunks with one host synchronisation.

    The teacher's gradient: for a divergence :math:`D(p)` of :math:`p = \\mathrm{softmax}(t/T_t)`,
    :math:`\\partial D/\\partial t = p \\odot (g - \\mathbb{E}_p g) / T_t` with
    :math:`g = \\partial D / \\partial p`: :math:`g = \\log p - \\log q` (forward KL),
    :math:`-q/p` (reverse KL, giving :math:`(p - q)/T_t`), :math:`\\beta(\\log p - \\log m)` (JSD).
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
    C: torch.Tensor | None = None
    if tgrad_out is not None:
        C = tgrad_out if tgrad_out.dtype == compute else bufs[-1]
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
    # soft-term weight per row: alpha * (T^2 if t2_scale); its student gradient carries a 1/T,
    # its teacher gradient a 1/T_t
    if scalar_T:
        k = T * T if t2_scale else 1.0
    else:
        k = (T * T).squeeze(-1) if t2_scale else 1.0
    if C is not None:
        kk = k if scalar_T else (T * T if t2_scale else 1.0)
        tcoef = alpha * w * kk / Tt           # scalar or (c, 1)
    if divergence == "forward":
        # KL(p || q) = sum p (log p - log q); gradient (q * sum p - p) / T
        torch.sub(LP, LQ, out=B)
        if C is not None:
            torch.sub(LP, LQ, out=C)
        B.mul_(P).nan_to_num_(0.0, math.inf, -math.inf)      # 0 log 0 = 0
        soft = B.sum(dim=-1)
        if C is not None:
            # p (f - KL) / T_t, f = log p - log q (p = 0 entries carry no weight)
            C.nan_to_num_(0.0, math.inf, ws.max_neg).sub_(soft.unsqueeze(-1)).mul_(P)
            C.mul_(tcoef)
        if need_grad:
            torch.mul(Q, P.sum(dim=-1, keepdim=True), out=B)
            B.sub_(P)
    elif divergence == "reverse":
        # KL(q || p) = sum q f, f = log q - log p; gradient q (f - KL) / T
        torch.sub(LQ, LP, out=B)
        B.nan_to_num_(0.0, math.inf, ws.max_neg)             # q = 0 entries carry no weight
        soft = torch.linalg.vecdot(Q, B)
        if C is not None:
            torch.sub(P, Q, out=C).mul_(tcoef)                # (p - q) / T_t
        if need_grad:
            B.sub_(soft.unsqueeze(-1)).mul_(Q)
    else:
        # beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q;
        # d/dq = (1 - beta)(log q - log m), so the gradient is (1 - beta) q (g - E_q g) / T
        LM = bufs[5]
        torch.mul(P, beta, out=LM)
        LM.add_(Q, alpha=1.0 - beta).log_()
        torch.sub(LP, LM, out=B)
        if C is not None:
            torch.sub(LP, LM, out=C)
        B.mul_(P).nan_to_num_(0.0, math.inf, -math.inf)
        kl_p = B.sum(dim=-1)
        if C is not None:
            # d/dp = beta (log p - log m): beta p (h - KL(p || m)) / T_t
            C.nan_to_num_(0.0, math.inf, ws.max_neg).sub_(kl_p.unsqueeze(-1)).mul_(P)
            C.mul_(tcoef * beta if is_python_scalar(tcoef) else tcoef * beta)
        torch.sub(LQ, LM, out=B)
        B.nan_to_num_(0.0, math.inf, ws.max_neg)
        kl_q = torch.linalg.vecdot(Q, B)
        soft = beta * kl_p + (1.0 - beta) * kl_q
        if need_grad:
            B.sub_(kl_q.unsqueeze(-1)).mul_(Q)
    jsd_f = (1.0 - beta) if divergence == "jsd" else 1.0
    if scalar_T:
        gcoef = alpha * k / T * w * jsd_f
    else:
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
        if C is not None:
            C.masked_fill_(~val.unsqueeze(-1), 0.0)
    rows_out.copy_(r)
    if grad_out is not None and B is not grad_out:
        grad_out.copy_(B)
    if tgrad_out is not None and C is not None and C is not tgrad_out:
        tgrad_out.copy_(C)
    return True if on_cpu else bad


def _chunk_generic(sc: torch.Tensor, tc: torch.Tensor, T: _Temp, Tt: _Temp,
                   lab: torch.Tensor | None, val: torch.Tensor | None, cfg: _Config, w: float,
                   need_grad: bool, need_tgrad: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The same via the generic implementation and autograd (NaN/+inf/fully masked rows, T_t in {0, inf})."""
    alpha, divergence, beta, t2_scale, ignore_index, _red, _chunk, compute, _inplace = cfg
    with torch.enable_grad():
        x = sc.detach().to(compute).requires_grad_(need_grad)
        y = tc.detach().to(compute).requires_grad_(need_tgrad)
        rows = kd_loss_generic(
            x, y, T, labels=lab, alpha=None if lab is None else alpha,
            divergence=divergence, beta=beta, teacher_temperature=Tt, t2_scale=t2_scale,
            ignore_index=ignore_index, where=val, reduction="none")
        rows = rows.to(compute)
        g = gt = None
        inputs = [a for a, k in ((x, need_grad), (y, need_tgrad)) if k]
        if inputs:
            grads = list(torch.autograd.grad(rows, inputs, grad_outputs=torch.full_like(rows, w),
                                             allow_unused=True))
            g = grads.pop(0) if need_grad else None
            gt = grads.pop(0) if need_tgrad else None
            if need_tgrad and gt is None:
                gt = torch.zeros_like(y)
    return rows.detach(), g, gt


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


def _functorch_active() -> bool:
    """Whether a torch.func transform (grad, vmap, jacrev, ...) is running: the chunked
    autograd.Function does not support them, the generic implementation does."""
    try:
        return bool(torch._C._are_functorch_transforms_active())
    except AttributeError:  # pragma: no cover - older torch
        return False


def _scale_items(loss: torch.Tensor, num_items: Any) -> torch.Tensor:
    """``loss / num_items_in_batch`` (a number or a 0-d array)."""
    if is_python_scalar(num_items):
        scaled: torch.Tensor = loss / num_items
        return scaled
    n_all = (num_items if isinstance(num_items, torch.Tensor)
             else torch.as_tensor(coerce(num_items))).detach()
    return loss / n_all.to(device=loss.device, dtype=loss.dtype).reshape(())


def kd_loss_torch(student_logits: torch.Tensor, teacher: Any, temperature: Temperature, *,
                  labels: ArrayLike | None, alpha: float | None, divergence: str, beta: float,
                  teacher_temperature: Temperature | None, t2_scale: bool, ignore_index: int,
                  where: ArrayLike | None, reduction: str, axis: int, chunk_size: int | None,
                  inplace: bool | str, num_items_in_batch: Any, shift_labels: bool,
                  dtype: Any, missing: str, func: str) -> torch.Tensor:
    """The distillation loss of a torch student: the lean chunked path whenever it applies.

    Called by :func:`fused_kd_loss` (and :class:`KDLoss`) and by
    :func:`tempscale.distill.kd_loss` on torch tensors.  ``teacher``: dense logits (a tensor or
    a NumPy array) or a :class:`tempscale.distill.SparseTeacher`.  What the lean path cannot do
    goes to the generic implementation: a ``torch.func`` transform, a temperature tensor that
    requires grad, empty inputs, a sparse teacher whose values require grad.  Under
    ``torch.compile`` the loss goes through a ``torch.library`` custom op instead.
    """
    sparse = isinstance(teacher, SparseTeacher)
    if not isinstance(student_logits, torch.Tensor):
        raise param_error("student_logits", func, "a torch.Tensor", type(student_logits).__name__,
                          TypeError)
    alpha_r, beta_r = check_options(
        func, alpha=alpha, labels=labels, divergence=divergence, beta=beta, t2_scale=t2_scale,
        ignore_index=ignore_index, reduction=reduction)
    check_bool(shift_labels, "shift_labels", func)
    if sparse:
        check_choice(missing, MISSING, "missing", func)
        if divergence != "forward":
            raise param_error("divergence", func, '"forward" with a SparseTeacher (a sparse '
                              "teacher gives only the forward KL)", divergence)
    num_items = check_num_items(num_items_in_batch, reduction, func)
    if chunk_size is not None:
        chunk_size = check_scalar(chunk_size, "chunk_size", func, lo=1, integer=True)
    if torch.compiler.is_compiling() and not sparse:
        return _compiled_kd(student_logits, teacher, temperature, labels=labels, alpha=alpha_r,
                            divergence=divergence, beta=beta_r,
                            teacher_temperature=teacher_temperature, t2_scale=t2_scale,
                            ignore_index=ignore_index, where=where, reduction=reduction,
                            axis=axis, num_items=num_items, shift_labels=shift_labels,
                            dtype=dtype, func=func)
    def generic() -> torch.Tensor:
        """The same loss by the generic autograd implementation."""
        result: torch.Tensor
        if sparse:
            result = sparse_kd_loss(
                student_logits, temperature=temperature, teacher=teacher, missing=missing,
                labels=labels, alpha=alpha, ignore_index=ignore_index, reduction=reduction,
                t2_scale=t2_scale, num_items_in_batch=num_items, where=where,
                teacher_temperature=teacher_temperature, shift_labels=shift_labels,
                dtype=dtype)
        else:
            result = kd_loss_generic(
                student_logits, teacher, temperature, labels=labels, alpha=alpha,
                divergence=divergence, beta=beta, teacher_temperature=teacher_temperature,
                t2_scale=t2_scale, ignore_index=ignore_index, where=where, reduction=reduction,
                axis=axis, num_items_in_batch=num_items, shift_labels=shift_labels, dtype=dtype)
        return result

    if not sparse and not isinstance(teacher, torch.Tensor):
        if not isinstance(coerce(teacher), np.ndarray):
            return generic()  # the generic path names what it cannot take
        teacher = _teacher_tensor(teacher, student_logits, func)
    grad_on = torch.is_grad_enabled()
    if _functorch_active() or (grad_on and (
            _is_tensor_requiring_grad(temperature)
            or _is_tensor_requiring_grad(teacher_temperature)
            or (sparse and _is_tensor_requiring_grad(teacher.values)))):
        return generic()
    t_in: torch.Tensor | _SparseChunks
    if sparse:
        if axis not in (-1, student_logits.ndim - 1):
            raise param_error("axis", func, "-1 with a SparseTeacher (classes along the last "
                              "axis)", axis)
        sargs = prepare_sparse(student_logits, teacher.indices, teacher.values, temperature,
                               teacher_temperature=teacher_temperature,
                               teacher_edges=missing == "zero", labels=labels, where=where,
                               ignore_index=ignore_index, shift_labels=shift_labels, func=func,
                               dtype=dtype)
        s, T, Tt, y, valid, compute, out = (sargs.s, sargs.T, sargs.Tt, sargs.labels,
                                            sargs.valid, sargs.compute, sargs.out)
    else:
        args = prepare(student_logits, teacher, temperature,
                       teacher_temperature=teacher_temperature, labels=labels, where=where,
                       ignore_index=ignore_index, axis=axis, func=func,
                       shift_labels=shift_labels, dtype=dtype)
        s, T, Tt, y, valid, compute, out = (args.s, args.T, args.Tt, args.labels, args.valid,
                                            args.compute, args.out)
    batch_shape = tuple(s.shape[:-1])
    v = s.shape[-1]
    n = math.prod(batch_shape)
    if n == 0 or v == 0:
        return generic()
    s2 = s.reshape(n, v)
    if sparse:
        t_in = _sparse_chunks(sargs, n, v, missing)
    else:
        t_full = args.t if grad_on else args.t.detach()
        t_in = t_full.reshape(n, v)
    T2 = T if is_python_scalar(T) else T.detach().reshape(n, 1)
    Tt2 = Tt if is_python_scalar(Tt) else Tt.detach().reshape(n, 1)
    lab2 = None if y is None else y.reshape(n)
    val2 = None if valid is None else valid.reshape(n)
    chunk = chunk_size if chunk_size is not None else _auto_chunk(n, v, s.device)
    # with num_items_in_batch: the sum over the valid rows, divided by that count below
    cfg = _Config(alpha_r, divergence, beta_r, t2_scale, ignore_index,
                  "sum" if num_items is not None else reduction, chunk, compute, inplace)
    apply = cast(Callable[..., torch.Tensor], _FusedKD.apply)
    loss = apply(s2, t_in, T2, Tt2, lab2, val2, cfg)
    if num_items is not None:
        loss = _scale_items(loss, num_items)
    if reduction == "none":
        loss = loss.reshape(batch_shape)
    return loss.to(out) if loss.dtype != out else loss


def _sparse_chunks(sargs: Any, n: int, v: int, missing: str) -> _SparseChunks:
    """The prepared sparse teacher as a :class:`_SparseChunks` (the tail's value per row)."""
    compute = sargs.compute
    vals = sargs.v.detach().reshape(n, -1).to(compute)
    idx = sargs.idx.reshape(n, -1).to(torch.int64)
    k = vals.shape[-1]
    u = None
    if missing == "uniform" and k < v:
        # the untempered missing mass m = 1 - sum(exp(values)), spread flat: log(m / (V - k))
        lse = torch.logsumexp(vals, -1, keepdim=True)
        m = torch.clamp(-torch.expm1(lse), min=0.0)
        u = torch.log(m) - math.log(v - k)
        # a NaN in a row's values makes its tail NaN too (the row is special either way)
    return _SparseChunks(idx, vals, u, v)


# --------------------------------------------------------------------------------------------
# torch.compile: one custom op for the chunked loss and its gradients
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("tempscale::kd_rows", mutates_args=())
def _kd_rows_op(s: torch.Tensor, t: torch.Tensor, T: torch.Tensor | None, T_f: float,
                Tt: torch.Tensor | None, Tt_f: float, labels: torch.Tensor | None,
                valid: torch.Tensor | None, alpha: float, divergence: str, beta: float,
                t2_scale: bool, need_grad: bool, need_tgrad: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row losses (0 at left-out rows) and the unweighted gradients of their sum with respect to
    the student and the teacher logits (empty when not needed), for 2-D ``(rows, classes)``."""
    n, v = s.shape
    compute = torch.float32 if s.dtype in (torch.float16, torch.bfloat16) else s.dtype
    cfg = _Config(alpha, divergence, beta, t2_scale, -100, "none", _auto_chunk(n, v, s.device),
                  compute, False)
    T_in: _Temp = T_f if T is None else T.to(compute)
    Tt_in: _Temp = Tt_f if Tt is None else Tt.to(compute)
    rows, g, gt = _chunk_loop(s.detach(), t.detach(), T_in, Tt_in, labels, valid, cfg, 1.0,
                              need_grad, need_tgrad)
    # distinct empty outputs: a custom op's outputs must not alias each other
    return rows, s.new_empty(0) if g is None else g, s.new_empty(0) if gt is None else gt


@_kd_rows_op.register_fake
def _(s: torch.Tensor, t: torch.Tensor, T: torch.Tensor | None, T_f: float,
      Tt: torch.Tensor | None, Tt_f: float, labels: torch.Tensor | None,
      valid: torch.Tensor | None, alpha: float, divergence: str, beta: float, t2_scale: bool,
      need_grad: bool, need_tgrad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    compute = torch.float32 if s.dtype in (torch.float16, torch.bfloat16) else s.dtype
    rows = s.new_empty((s.shape[0],), dtype=compute)
    g = s.new_empty(s.shape) if need_grad else s.new_empty(0)
    gt = t.new_empty(t.shape) if need_tgrad else s.new_empty(0)
    return rows, g, gt


def _kd_rows_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
    ctx.save_for_backward(output[1], output[2])
    ctx.need = (inputs[12], inputs[13])


def _kd_rows_backward(ctx: Any, d_rows: torch.Tensor, _dg: Any, _dgt: Any
                      ) -> tuple[torch.Tensor | None, ...]:
    g, gt = ctx.saved_tensors
    scale = d_rows.unsqueeze(-1)
    ds = (g * scale.to(g.dtype)) if ctx.need[0] else None
    dt = (gt * scale.to(gt.dtype)) if ctx.need[1] else None
    return (ds, dt) + (None,) * 12


_kd_rows_op.register_autograd(_kd_rows_backward, setup_context=_kd_rows_setup)


def _compiled_kd(s: torch.Tensor, t: Any, temperature: Any, *, labels: Any, alpha: float,
                 divergence: str, beta: float, teacher_temperature: Any, t2_scale: bool,
                 ignore_index: int, where: Any, reduction: str, axis: int, num_items: Any,
                 shift_labels: bool, dtype: Any, func: str) -> torch.Tensor:
    """The loss as :func:`torch.compile` traces it: plain torch operations around the custom op
    ``tempscale::kd_rows``, no data-dependent Python branch, no host synchronisation.

    Shapes, dtypes and Python options are checked as in eager mode; values inside tensors
    (temperature ranges, label ranges) cannot be looked at while tracing: a label outside
    ``[0, n_classes)`` makes its row NaN, as in :func:`tempscale.distill.kd_loss` under a trace.
    """
    if not isinstance(t, torch.Tensor):
        raise param_error("teacher_logits", func, "a torch.Tensor under torch.compile",
                          type(t).__name__, TypeError)
    if tuple(s.shape) != tuple(t.shape) or s.ndim == 0:
        raise param_error("teacher_logits", func, f"an array of the student's shape "
                          f"{tuple(s.shape)}", f"shape {tuple(t.shape)}")
    ax = check_axis(axis, s.ndim, func)
    if ax != s.ndim - 1:
        s, t = torch.movedim(s, ax, -1), torch.movedim(t, ax, -1)
    batch_shape = tuple(s.shape[:-1])
    n, v = math.prod(batch_shape), s.shape[-1]
    float_in = [x.dtype for x in (s, t) if x.is_floating_point()]
    out = dtype if dtype is not None else (
        torch.promote_types(*float_in) if len(float_in) == 2 else
        float_in[0] if float_in else torch.get_default_dtype())
    compute = torch.float32 if out in (torch.float16, torch.bfloat16) else out
    if not s.is_floating_point():
        s = s.to(compute)
    if not t.is_floating_point():
        t = t.to(compute)

    def temp(value: Any, param: str, edges: bool) -> tuple[torch.Tensor | None, float]:
        if not isinstance(value, torch.Tensor):
            return None, check_temperature(value, func, param=param, edges=edges)
        x = value.to(compute)
        if ax != s.ndim - 1 and x.ndim == s.ndim:
            x = torch.movedim(x, ax, -1)
        if x.ndim == len(batch_shape) + 1:
            x = x.squeeze(-1) if x.shape[-1] == 1 else x
        return torch.broadcast_to(x, batch_shape).reshape(n, 1), 1.0

    T, T_f = temp(temperature, "temperature", False)
    if teacher_temperature is None:
        Tt, Tt_f = T, T_f
    else:
        Tt, Tt_f = temp(teacher_temperature, "teacher_temperature", True)
    valid: torch.Tensor | None = None
    lab: torch.Tensor | None = None
    unchecked: torch.Tensor | None = None
    if labels is not None:
        y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
        y = y.to(device=s.device)
        if y.dtype == torch.bool or y.is_floating_point():
            raise param_error("labels", func, "an array of integer class indices",
                              f"dtype {y.dtype}", TypeError)
        if shift_labels:
            pad = torch.full((*y.shape[:-1], 1), ignore_index, dtype=y.dtype, device=y.device)
            y = torch.cat([y[..., 1:], pad], dim=-1)
        y = y.reshape(n)
        valid = y != ignore_index
        inside = (y >= 0) & (y < v)
        unchecked = valid & ~inside
        valid = valid & inside
        lab = torch.where(valid, y, torch.zeros_like(y))
    if where is not None:
        keep = where if isinstance(where, torch.Tensor) else torch.as_tensor(where)
        keep = torch.broadcast_to(keep.to(device=s.device) != 0, batch_shape).reshape(n)
        valid = keep if valid is None else valid & keep
        if unchecked is not None:
            unchecked = unchecked & keep
    need_grad = torch.is_grad_enabled() and s.requires_grad
    need_tgrad = torch.is_grad_enabled() and t.requires_grad
    rows, _g, _gt = _kd_rows_op(s.reshape(n, v), t.reshape(n, v), T, T_f, Tt, Tt_f, lab, valid,
                                alpha, divergence, beta, t2_scale, need_grad, need_tgrad)
    if unchecked is not None:
        rows = torch.where(unchecked, torch.full_like(rows, math.nan), rows)
    loss: torch.Tensor
    if reduction == "none":
        loss = rows.reshape(batch_shape)
    elif reduction == "sum":
        loss = rows.sum()
    elif num_items is not None:
        loss = _scale_items(rows.sum(), num_items)
    elif valid is None:
        loss = rows.sum() / max(n, 1)
    else:
        loss = rows.sum() / torch.clamp(valid.sum().to(rows.dtype), min=1.0)
    return loss.to(out)


def fused_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | ArrayLike | SparseTeacher,
                  temperature: Temperature = 1.0, *, labels: ArrayLike | None = None,
                  alpha: float | None = None, divergence: str = "forward", beta: float = 0.5,
                  teacher_temperature: Temperature | None = None, t2_scale: bool = True,
                  ignore_index: int = -100, where: ArrayLike | None = None,
                  reduction: str = "batchmean", axis: int = -1, chunk_size: int | None = None,
                  inplace_backward: bool = True, mask: ArrayLike | None = None,
                  num_items_in_batch: Any = None, shift_labels: bool = False,
                  dtype: Any = None, missing: str = "zero") -> torch.Tensor:
    r"""Memory-lean :func:`tempscale.distill.kd_loss` for PyTorch tensors.

    Same parameters, result and numerical contract as :func:`tempscale.distill.kd_loss`
    (forward / reverse KL, generalised JSD, :math:`T^2` scaling, labels with ``ignore_index``,
    row masks, per-row temperatures, ``-inf`` masked classes, float16/bfloat16 computed in
    float32), plus:

    Parameters
    ----------
    teacher_logits : tensor, NumPy array or SparseTeacher
        Dense teacher logits, or a :class:`tempscale.distill.SparseTeacher` (the teacher's
        top-k classes and their logits or log-probabilities): the loss is then
        :func:`tempscale.distill.sparse_kd_loss` (forward KL only), computed chunk by chunk
        with the teacher made dense one chunk at a time (``missing`` says what the classes
        outside the top-k get).
    where : bool (or 0/1 integer) tensor, optional
        Rows to keep, as in :func:`tempscale.distill.kd_loss` (``mask=`` is its deprecated
        spelling: a DeprecationWarning).
    num_items_in_batch, shift_labels, dtype
        Hugging Face's gradient-accumulation normaliser, the causal-model label shift and the
        loss's dtype (e.g. ``torch.float32`` from bfloat16 logits), as in
        :func:`tempscale.distill.kd_loss`.
    chunk_size : int, optional
        Rows per chunk.  Default: about 2**20 elements per chunk (e.g. 32 rows of a 32,000-class
        vocabulary), so that a chunk's few float32 temporaries stay in cache.
    inplace_backward : bool, default True
        Hand the stored gradient to autograd without a copy (the memory-lean default).  The
        graph can then be backpropagated only once; pass False to allow ``retain_graph=True``
        (or ``torch.autograd.gradcheck``) at the cost of one more batch x vocab buffer.
    missing : {"zero", "uniform"}, default "zero"
        With a SparseTeacher: as in :func:`tempscale.distill.sparse_kd_loss`.

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
    the contract is identical.

    When the teacher logits require gradients (online or mutual distillation), the teacher's
    gradient is computed in the same pass, in closed form too,
    :math:`\partial D/\partial t = p \odot (g - \mathbb{E}_p g) / T_t` with
    :math:`g = \log p - \log q` (forward KL), giving :math:`(p - q)/T_t` for the reverse KL and
    :math:`\beta\,p \odot (h - \mathrm{KL}(p\|m))/T_t`, :math:`h = \log p - \log m`, for the
    JSD: one more batch x vocab buffer, no fallback.  A temperature tensor that requires
    gradients, a ``torch.func`` transform (``grad``, ``vmap``), and a sparse teacher whose
    values require gradients take the generic autograd implementation (correct, not lean).
    Under ``torch.compile`` the loss is a ``torch.library`` custom op (``tempscale::kd_rows``)
    with a fake implementation and a registered backward, so ``fullgraph=True`` traces it.

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
    check_bool(inplace_backward, "inplace_backward", func)
    return kd_loss_torch(
        student_logits, teacher_logits, temperature, labels=labels, alpha=alpha,
        divergence=divergence, beta=beta, teacher_temperature=teacher_temperature,
        t2_scale=t2_scale, ignore_index=ignore_index, where=where, reduction=reduction,
        axis=axis, chunk_size=chunk_size, inplace=inplace_backward,
        num_items_in_batch=num_items_in_batch, shift_labels=shift_labels, dtype=dtype,
        missing=missing, func=func)


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
        ``T = 1`` gets ``1 - alpha``.  As in :func:`tempscale.distill.kd_loss`, a module with
        an ``alpha`` must be called with labels (a ValueError otherwise: without labels there
        is no hard term to weigh the soft term against, and a forgotten ``labels`` argument
        must not silently change the loss); leave ``alpha=None`` for the soft term alone.
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
    dtype : torch.dtype, optional
        The loss's dtype: ``torch.float32`` gives a float32 loss from bfloat16/float16 logits
        (computed in float32 either way; the gradients keep the logits' dtypes).
    missing : {"zero", "uniform"}, default "zero"
        For a :class:`tempscale.distill.SparseTeacher` teacher, as in
        :func:`tempscale.distill.sparse_kd_loss`.

    Notes
    -----
    Gradients flow into the student logits, and into the teacher logits when they require
    gradients (computed in the same chunked pass, in closed form: see :func:`fused_kd_loss`).
    The teacher may also be a :class:`tempscale.distill.SparseTeacher` (top-k indices and
    values, forward KL), made dense one chunk at a time.  A per-call temperature tensor that
    requires gradients takes the generic autograd implementation (correct, not memory-lean).
    A NumPy (or pandas) teacher is converted to a tensor on the student's device, in its
    dtype.

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
                 chunk_size: int | None = None, inplace_backward: bool = True,
                 dtype: Any = None, missing: str = "zero") -> None:
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
        check_choice(missing, MISSING, "missing", func)
        self.dtype = dtype
        self.missing = missing

    def forward(self, student_logits: torch.Tensor,
                teacher_logits: torch.Tensor | ArrayLike | SparseTeacher,
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
        return fused_kd_loss(
            student_logits, teacher_logits, T, labels=labels, alpha=self.alpha,
            divergence=self.divergence, beta=self.beta, teacher_temperature=Tt,
            t2_scale=self.t2_scale, ignore_index=self.ignore_index, where=where, mask=mask,
            reduction=self.reduction, axis=self.axis, chunk_size=self.chunk_size,
            inplace_backward=self.inplace_backward, num_items_in_batch=num_items_in_batch,
            shift_labels=shift_labels, dtype=self.dtype, missing=self.missing)

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
