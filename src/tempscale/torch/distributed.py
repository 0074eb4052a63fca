r"""Distillation with the vocabulary sharded over processes (tensor parallelism).

:func:`vocab_parallel_kd_loss` computes :func:`tempscale.distill.kd_loss` when each process
holds a contiguous slice of the vocabulary (the output layer split column-wise, as in
Megatron-LM's vocab-parallel cross-entropy): the row maxima are all-reduced with ``MAX`` and
the row sums with ``SUM``, and the sum all-reduces are autograd functions, so the loss and the
gradients for each process's slice equal those of the single-process loss on the gathered
logits.  This module imports ``torch.distributed``; ``import tempscale`` does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.distributed as dist

from .._compat import is_python_scalar
from .._kd_args import check_num_items, check_options, prepare
from .._typing import ArrayLike, Temperature
from .._validation import param_error

__all__ = ["vocab_parallel_kd_loss"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over the group; the result is replicated, so every process computes the same loss
    from it and the gradient of each process's term is the incoming gradient itself."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class _Broadcast(torch.autograd.Function):
    """A replicated tensor entering this process's slice computation: the identity, whose
    backward sums the slices' gradient contributions over the group."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM, group=ctx.group)
        return g, None


def _shared(x: Any, group: Any) -> Any:
    """A replicated value used with this process's slice (see :class:`_Broadcast`)."""
    if isinstance(x, torch.Tensor) and x.requires_grad:
        return cast(Callable[..., torch.Tensor], _Broadcast.apply)(x, group)
    return x


def _all_sum(x: torch.Tensor, group: Any) -> torch.Tensor:
    """Differentiable sum over the group."""
    out: torch.Tensor = cast(Callable[..., torch.Tensor], _AllReduceSum.apply)(x, group)
    return out


def _all_max(x: torch.Tensor, group: Any) -> torch.Tensor:
    """Maximum over the group (no gradient: it only shifts a log-sum-exp)."""
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.MAX, group=group)
    return y


def _sum(x: torch.Tensor, group: Any) -> torch.Tensor:
    """Row sums over the whole vocabulary (the last axis of each shard)."""
    return _all_sum(x.sum(dim=-1), group)


def _log_softmax(x: torch.Tensor, group: Any) -> torch.Tensor:
    """The log-softmax of the gathered rows, for this shard's columns."""
    m = _all_max(x.amax(dim=-1, keepdim=True), group)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    lse = torch.log(_sum(torch.exp(x - m), group))[..., None] + m
    out: torch.Tensor = x - _shared(lse, group)
    return out


def _xlogratio(w: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    r""":math:`w (\log a - \log b)` with :math:`0 \cdot (\cdot) = 0` and NaN-free gradients."""
    nz = w != 0
    zero = torch.zeros_like(log_a)
    return torch.where(nz, w * (torch.where(nz, log_a, zero) - torch.where(nz, log_b, zero)), zero)


def vocab_parallel_kd_loss(student_shard: torch.Tensor, teacher_shard: torch.Tensor,
                           temperature: Temperature = 1.0, *, group: Any = None,
                           labels: ArrayLike | None = None, alpha: float | None = None,
                           ignore_index: int = -100, divergence: str = "forward",
                           beta: float = 0.5, t2_scale: bool = True,
                           reduction: str = "batchmean", num_items_in_batch: Any = None,
                           where: ArrayLike | None = None,
                           vocab_start: int | None = None) -> torch.Tensor:
    r"""Knowledge-distillation loss over a vocabulary split across processes.

    Every process of ``group`` calls this with its own contiguous slice of the classes:
    process ``r`` holds the columns ``[start_r, start_r + V_r)`` of the student's and the
    teacher's logits, the slices in rank order (process 0 first).  The result, on every
    process, is :func:`tempscale.distill.kd_loss` of the gathered logits with the same options,
    and backpropagating it gives each process the gradient of its own slice (to float
    rounding), without gathering the logits: the row maxima are all-reduced with ``MAX`` and
    the row sums (normalisers, divergence sums, the picked label logit) with ``SUM``.

    Parameters
    ----------
    student_shard, teacher_shard : Tensor
        This process's slice of the student's and the teacher's logits, ``(..., V_r)``, the
        same leading shape on every process.  The teacher gets no gradient.
    temperature : float or Tensor, default 1.0
        The temperature ``T`` in ``(0, inf)``, or one per row (the leading shape), the same on
        every process; a tensor gets its full gradient on every process.
    group : ProcessGroup, optional
        The processes that share the vocabulary (default: the whole world).
    labels : int tensor, optional
        Global class indices (in ``[0, V)``, ``V`` the whole vocabulary), the same on every
        process; a label lives on one process only, and its term is all-reduced.
    alpha, ignore_index, divergence, beta, t2_scale, reduction, num_items_in_batch, where
        As in :func:`tempscale.distill.kd_loss` (one teacher temperature, the student's).
    vocab_start : int, optional
        The first global class of this process's slice.  Default: found by all-gathering the
        slice widths (one small collective).

    Returns
    -------
    Tensor
        The loss, the same on every process (a scalar, or the leading shape for
        ``reduction="none"``).

    Notes
    -----
    The collectives are autograd functions, as Megatron-LM's pair of tensor-parallel region
    operators: a sum all-reduce passes the gradient through unchanged (what follows it is
    replicated, the same on every process), and a replicated value (a row's log-sum-exp, a
    temperature tensor) entering a process's slice computation sums its gradient over the
    group in the backward pass.  So each process must call ``backward`` on its (identical)
    loss, as in tensor-parallel training; every process then holds the gradient of its own
    slice, and a temperature tensor's gradient is complete (the same on every process).

    Examples
    --------
    With a single process (``world_size=1``) the loss is :func:`tempscale.distill.kd_loss`:

    >>> import os, torch, torch.distributed as dist
    >>> from tempscale.distill import kd_loss
    >>> from tempscale.torch.distributed import vocab_parallel_kd_loss
    >>> os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    '127.0.0.1'
    >>> store = dist.HashStore()
    >>> dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> loss = vocab_parallel_kd_loss(s, t, 2.0)
    >>> bool(torch.allclose(loss, kd_loss(s, t, 2.0)))
    True
    >>> dist.destroy_process_group()
    """
    func = "vocab_parallel_kd_loss"
    for name, x in (("student_shard", student_shard), ("teacher_shard", teacher_shard)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0:
            got = (f"a {x.ndim}-d tensor of dtype {x.dtype}" if isinstance(x, torch.Tensor)
                   else type(x).__name__)
            raise param_error(name, func, "a floating-point torch.Tensor with a class axis",
                              got, TypeError)
    if tuple(teacher_shard.shape) != tuple(student_shard.shape):
        raise param_error("teacher_shard", func, f"a tensor of the student shard's shape "
                          f"{tuple(student_shard.shape)}", f"shape {tuple(teacher_shard.shape)}")
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(f"{func} needs an initialised torch.distributed process group "
                           "(torch.distributed.init_process_group)")
    alpha_r, beta_r = check_options(func, alpha=alpha, labels=labels, divergence=divergence,
                                    beta=beta, t2_scale=t2_scale, ignore_index=ignore_index,
                                    reduction=reduction)
    num_items = check_num_items(num_items_in_batch, reduction, func)
    width = int(student_shard.shape[-1])
    start, n_classes = _offsets(width, vocab_start, group, student_shard.device, func)
    batch = tuple(student_shard.shape[:-1])
    # the arguments checked against the whole vocabulary (zero-cost stand-ins of its shape)
    like_s = torch.zeros((), dtype=student_shard.dtype, device=student_shard.device).expand(
        batch + (n_classes,))
    like_t = torch.zeros((), dtype=teacher_shard.dtype, device=student_shard.device).expand(
        batch + (n_classes,))
    args = prepare(like_s, like_t, temperature, teacher_temperature=None, labels=labels,
                   where=where, ignore_index=ignore_index, axis=-1, func=func)
    compute = args.compute
    s = student_shard.to(compute)
    t = teacher_shard.detach().to(compute)
    valid = args.valid
    if valid is not None:
        valid = valid.expand(batch)
        keep = valid[..., None]
        s = torch.where(keep, s, torch.zeros_like(s))
        t = torch.where(keep, t, torch.zeros_like(t))
    T = args.T
    T_here = _shared(T, group)   # the teacher's temperature is the student's (kd_loss's default)
    logq = _log_softmax(s / T_here, group)
    logp = _log_softmax(t / T_here, group)
    soft: torch.Tensor | None = None
    if not (labels is not None and alpha_r == 0.0):
        soft = _soft(logq, logp, divergence, beta_r, group)
        if t2_scale:
            soft = soft * (T * T if is_python_scalar(T) else (T * T)[..., 0])
    rows: torch.Tensor
    if labels is None:
        assert soft is not None
        rows = soft
    else:
        y = args.labels.expand(batch).to(torch.int64)
        if valid is not None:
            y = torch.where(valid, y, torch.zeros_like(y))
        logq1 = logq if (is_python_scalar(T) and T == 1.0) else _log_softmax(s, group)
        local = y - start
        here = (local >= 0) & (local < width)
        idx = torch.where(here, local, torch.zeros_like(local))[..., None]
        picked = torch.where(here, logq1.gather(-1, idx)[..., 0], torch.zeros_like(logq1[..., 0]))
        hard = -_all_sum(picked, group)
        if alpha_r == 1.0:
            assert soft is not None
            rows = soft
        elif alpha_r == 0.0:
            rows = hard
        else:
            assert soft is not None
            rows = alpha_r * soft + (1.0 - alpha_r) * hard
    if valid is not None:
        rows = torch.where(valid, rows, torch.zeros_like(rows))
    loss = _reduce(rows, valid, reduction, num_items, compute)
    return loss if loss.dtype == args.out else loss.to(args.out)


def _offsets(width: int, vocab_start: int | None, group: Any, device: torch.device,
             func: str) -> tuple[int, int]:
    """(first global class of this slice, whole vocabulary size)."""
    widths = torch.tensor([width], dtype=torch.int64, device=device)
    n_classes = _all_sum(widths, group).detach()
    if vocab_start is not None:
        if isinstance(vocab_start, bool) or not isinstance(vocab_start, int) or vocab_start < 0:
            raise param_error("vocab_start", func, "a non-negative int or None", vocab_start,
                              TypeError if not isinstance(vocab_start, int) else ValueError)
        return vocab_start, int(n_classes)
    size = dist.get_world_size(group)
    gathered = [torch.zeros_like(widths) for _ in range(size)]
    dist.all_gather(gathered, widths, group=group)
    rank = dist.get_rank(group)
    start = int(sum(int(g) for g in gathered[:rank]))
    return start, int(n_classes)


def _soft(logq: torch.Tensor, logp: torch.Tensor, divergence: str, beta: float,
          group: Any) -> torch.Tensor:
    """Per-row divergence, summed over the whole vocabulary."""
    if divergence == "jsd" and beta == 0.0:
        divergence = "forward"
    elif divergence == "jsd" and beta == 1.0:
        divergence = "reverse"
    p = torch.exp(logp)
    if divergence == "forward":
        return _sum(_xlogratio(p, logp, logq), group)
    q = torch.exp(logq)
    if divergence == "reverse":
        return _sum(_xlogratio(q, logq, logp), group)
    m = beta * p + (1.0 - beta) * q
    logm = torch.log(torch.where(m > 0, m, torch.ones_like(m)))
    return (beta * _sum(_xlogratio(p, logp, logm), group)
            + (1.0 - beta) * _sum(_xlogratio(q, logq, logm), group))


def _reduce(rows: torch.Tensor, valid: torch.Tensor | None, reduction: str, num_items: Any,
            compute: torch.dtype) -> torch.Tensor:
    """The per-row losses reduced as :func:`tempscale.distill.kd_loss` reduces them."""
    if reduction == "none":
        return rows
    total = rows.sum()
    if reduction == "sum":
        return total
    if num_items is not None:
        if is_python_scalar(num_items):
            return total / float(num_items)
        return total / torch.as_tensor(num_items).to(device=total.device,
                                                     dtype=compute).reshape(())
    if valid is None:
        return total / max(math.prod(rows.shape), 1)
    n = valid.to(compute).sum()
    return total / torch.clamp(n, min=1.0)
