"""softmax / log_softmax / logsumexp on the Triton kernels, with autograd (see :mod:`tempscale.triton`)."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from . import _kernels as K
from ._common import Temp, check_logits, check_mask, check_temp, interpreting, launch_config

KINDS = {"softmax": K.KIND_SOFTMAX, "log_softmax": K.KIND_LOG_SOFTMAX,
         "logsumexp": K.KIND_LOGSUMEXP}


def quiet() -> Any:
    """The interpreter runs kernels on NumPy: silence its inf/NaN warnings (they are the contract)."""
    return np.errstate(all="ignore") if interpreting() else contextlib.nullcontext()


def _mask_args(mask: Any) -> tuple[Any, int, int]:
    if mask is None:
        return None, 0, 0
    return mask, mask.stride(0), mask.stride(1)


def forward(kind: int, x: torch.Tensor, temp: Temp, mask: Any,
            block: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the forward kernel: ``(result, stats)`` (stats (4, rows) float32, for the backward)."""
    rows, n = x.shape
    out_shape = (rows,) if kind == K.KIND_LOGSUMEXP else (rows, n)
    y = torch.empty(out_shape, dtype=x.dtype, device=x.device)
    stats = torch.empty((4, rows), dtype=torch.float32, device=x.device)
    if rows == 0:
        return y, stats
    if n == 0:  # an empty row is a fully masked one (a shape decision, not a data one)
        y.fill_(-float("inf"))
        stats[0].fill_(-float("inf"))
        stats[1:].fill_(1.0)
        stats[2].fill_(0.0)
        return y, stats
    cfg = launch_config(rows, n, block)
    m, smr, smc = _mask_args(mask)
    with quiet():
        K._softmax_fwd[cfg.grid](
            x, m, y, stats, temp.tensor, temp.scalar, rows, n, x.stride(0), x.stride(1), smr, smc,
            n, temp.stride,
            KIND=kind, HAS_MASK=mask is not None, HAS_T=temp.tensor is not None,
            SINGLE=cfg.single, R=cfg.R, BLOCK=cfg.BLOCK, num_warps=cfg.num_warps, enable_fp_fusion=False)
    return y, stats


def backward(kind: int, x: torch.Tensor, temp: Temp, mask: Any, stats: torch.Tensor,
             g: torch.Tensor, need_dx: bool, need_dt: bool,
             block: int | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Run the backward kernel: ``(dx in x's dtype, dT per row float32)`` (None where not needed)."""
    rows, n = x.shape
    dx = torch.empty((rows, n), dtype=x.dtype, device=x.device) if need_dx else None
    dt = torch.zeros((rows,), dtype=torch.float32, device=x.device) if need_dt else None
    if rows == 0 or n == 0 or not (need_dx or need_dt):
        return dx, dt
    cfg = launch_config(rows, n, block, "bwd")
    m, smr, smc = _mask_args(mask)
    sgr, sgc = (g.stride(0), 0) if kind == K.KIND_LOGSUMEXP else (g.stride(0), g.stride(1))
    with quiet():
        K._softmax_bwd[cfg.grid](
            x, m, g, dx, dt, stats, temp.tensor, temp.scalar, rows, n, x.stride(0), x.stride(1),
            smr, smc, sgr, sgc, temp.stride,
            KIND=kind, HAS_MASK=mask is not None, HAS_T=temp.tensor is not None,
            NEED_DX=need_dx, NEED_DT=need_dt,
            SINGLE=cfg.single, R=cfg.R, BLOCK=cfg.BLOCK, num_warps=cfg.num_warps, enable_fp_fusion=False)
    return dx, dt


def temperature_grad(dt: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per-row ``dT`` in the shape and dtype of the user's temperature tensor."""
    if original.numel() == 1 and dt.numel() != 1:
        dt = dt.sum()
    return dt.reshape(original.shape).to(original.dtype)


class _Fn(torch.autograd.Function):
    """Autograd for the three kinds: the backward kernels recompute ``p`` from ``x`` and the
    saved row statistics (no probabilities-sized buffer is kept)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t_in: Any, kind: int, temp: Temp, mask: Any,
                block: int | None) -> torch.Tensor:
        y, stats = forward(kind, x, temp, mask, block)
        ctx.kind, ctx.temp, ctx.block = kind, temp, block
        ctx.save_for_backward(x, stats, mask)
        return y

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        x, stats, mask = ctx.saved_tensors
        temp: Temp = ctx.temp
        need_dt = temp.original is not None and ctx.needs_input_grad[1]
        dx, dt = backward(ctx.kind, x, temp, mask, stats, g, ctx.needs_input_grad[0], need_dt,
                          ctx.block)
        dT = temperature_grad(dt, temp.original) if dt is not None else None
        return dx, dT, None, None, None, None


def apply(name: str, x: Any, temperature: Any, mask: Any, block: int | None) -> torch.Tensor:
    """Check the arguments and run ``name`` (``softmax``, ``log_softmax`` or ``logsumexp``)."""
    check_logits(x, name)
    temp = check_temp(temperature, name, rows=x.shape[0], device=x.device)
    m = check_mask(mask, x, name)
    kind = KINDS[name]
    t_in = temp.original
    if torch.is_grad_enabled() and (x.requires_grad or (t_in is not None and t_in.requires_grad)):
        result: torch.Tensor = _Fn.apply(x, t_in, kind, temp, m, block)  # type: ignore[no-untyped-call]
        return result
    return forward(kind, x, temp, m, block)[0]
