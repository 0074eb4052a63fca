"""Argument checks and launch configuration shared by the Triton entry points.

Everything here looks only at shapes, dtypes, devices and Python numbers: no tensor value is
read on the host (no synchronisation with the GPU).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

from .._args import check_temperature
from .._validation import param_error

#: per kernel (forward, backward: x and the gradient on chip, KD: two rows): the widest row one
#: program keeps on chip in a single pass (longer rows take the online pass, whose second read
#: of a row mostly hits L2), the online pass's block, and the elements of one tile when several
#: short rows share a program.  Chosen from ptxas's register report for sm_90 (spills appear
#: beyond these: at 32768 classes in one pass, or 4096-element KD tiles of short rows)
MAX_SINGLE = {"fwd": 16384, "bwd": 16384, "kd": 8192}
ONLINE_BLOCK = {"fwd": 8192, "bwd": 8192, "kd": 4096}
TILE = {"fwd": 4096, "bwd": 4096, "kd": 1024}

#: float32's smallest normal and largest finite numbers
FLT_TINY = 1.1754943508222875e-38
FLT_MAX = 3.4028234663852886e38


def interpreting() -> bool:
    """Whether the kernels were built for Triton's interpreter: they then run on CPU tensors.

    Triton decides when a kernel is defined: ``TRITON_INTERPRET=1`` in the environment when
    :mod:`tempscale._triton._kernels` is first imported (the variable may be unset afterwards).
    """
    from . import _kernels

    return type(_kernels._softmax_fwd).__name__ == "InterpretedFunction"


def check_logits(x: Any, func: str, param: str = "x") -> Any:
    """``x`` if it is a 2-D float32/float16/bfloat16 torch tensor on a CUDA device.

    CPU tensors are accepted when Triton's interpreter is on.
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise param_error(param, func, "a 2-D torch tensor (rows x classes)", type(x).__name__,
                          TypeError)
    if x.ndim != 2:
        raise param_error(param, func, "a 2-D torch tensor (rows x classes)",
                          f"a tensor of shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise param_error(param, func, "a tensor of dtype float32, float16 or bfloat16",
                          f"a tensor of dtype {x.dtype}", TypeError)
    if not (x.device.type == "cuda" or (x.device.type == "cpu" and interpreting())):
        raise param_error(param, func, "a CUDA tensor (a CPU tensor only under "
                          "TRITON_INTERPRET=1)", f"a tensor on {x.device}")
    return x


class Temp(NamedTuple):
    """A temperature as the kernels take it: a Python float, or a tensor read with a stride."""

    scalar: float
    tensor: Any  # None, or a 1-D view of the per-row values (float32 or float64)
    stride: int
    original: Any  # the user's tensor (gradients are returned in its shape), or None


def check_temp(value: Any, func: str, *, rows: int, device: Any,
               param: str = "temperature") -> Temp:
    """A Python float in ``[0, inf]`` or a per-row tensor of shape (rows,) or (rows, 1) (or one
    value for every row: shape (), (1,) or (1, 1)).

    A tensor's values are not checked (that would synchronise with the GPU): a negative or NaN
    entry gives that row NaN, as on the generic path inside a trace.
    """
    import torch

    expect = "a float in [0, inf] or a tensor of per-row temperatures"
    if isinstance(value, torch.Tensor):
        if value.device != device:
            raise param_error(param, func, f"a tensor on the logits' device ({device})",
                              f"a tensor on {value.device}")
        if value.dtype == torch.bool or value.is_complex():
            raise param_error(param, func, expect, f"a tensor of dtype {value.dtype}", TypeError)
        shape = tuple(value.shape)
        if shape not in ((), (1,), (1, 1), (rows,), (rows, 1)):
            raise param_error(param, func, f"{expect} of shape ({rows},) or ({rows}, 1)",
                              f"a tensor of shape {shape}")
        t = value.detach().reshape(-1)
        if t.dtype != torch.float64:
            t = t.to(torch.float32)
        stride = 0 if t.numel() == 1 else t.stride(0)
        return Temp(1.0, t, stride, value)
    if isinstance(value, (str, bytes)) or not isinstance(value, numbers.Real):
        raise param_error(param, func, expect, value, TypeError)
    T = check_temperature(value, func, param=param, expect=expect)
    if 0 < T < FLT_TINY or FLT_MAX < T < math.inf:
        # beyond float32's normal range: divide in float64 (no bits lost, no 0/0 at the maxima)
        return Temp(1.0, torch.full((1,), T, dtype=torch.float64, device=device), 0, None)
    return Temp(T, None, 0, None)


def check_mask(mask: Any, x: Any, func: str) -> Any:
    """``mask`` expanded (a view) to ``x``'s shape; a bool tensor broadcastable to it."""
    import torch

    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = f"a tensor of dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else \
            type(mask).__name__
        raise param_error("mask", func, "a bool torch tensor broadcastable to x", got, TypeError)
    if mask.device != x.device:
        raise param_error("mask", func, f"a tensor on x's device ({x.device})",
                          f"a tensor on {mask.device}")
    try:
        shape = torch.broadcast_shapes(mask.shape, x.shape)  # type: ignore[no-untyped-call]
        ok = tuple(shape) == tuple(x.shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise param_error("mask", func, f"broadcastable to x's shape {tuple(x.shape)}",
                          f"a mask of shape {tuple(mask.shape)}")
    return mask.expand(x.shape)


class Launch(NamedTuple):
    """Tile shape of one launch: ``R`` rows by ``BLOCK`` classes, single pass or online."""

    R: int
    BLOCK: int
    single: bool
    num_warps: int
    grid: tuple[int]


def launch_config(rows: int, n: int, block: int | None = None, kernel: str = "fwd") -> Launch:
    """The tile for ``rows`` rows of ``n`` classes (``block`` forces the block size: tests)."""
    full = max(16, 1 << max(n - 1, 0).bit_length())
    if block is not None:
        if block < 16 or block & (block - 1):
            raise param_error("_block", "the Triton launch", "a power of two >= 16", block)
        BLOCK, single = block, block >= n
    elif full <= MAX_SINGLE[kernel]:
        BLOCK, single = full, True
    else:
        BLOCK, single = ONLINE_BLOCK[kernel], False
    R = max(1, min(TILE[kernel] // BLOCK, 1 << max(rows - 1, 0).bit_length()))
    elements = R * BLOCK
    num_warps = 4 if elements <= 2048 else 8 if elements <= 8192 else 16 if elements <= 16384 \
        else 32
    return Launch(R, BLOCK, single, num_warps, ((rows + R - 1) // R,))
