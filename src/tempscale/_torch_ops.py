"""PyTorch CPU tensors through the native kernel: ``torch.library`` custom ops with autograd.

:func:`dispatch` is the first thing :func:`tempscale._softmax.dispatch` tries for a torch tensor.
On a CPU tensor (float16, bfloat16, float32, float64) it runs the compiled kernel of
:mod:`tempscale._native` on zero-copy NumPy views of the tensor, its mask and its per-row
temperatures, writing into a torch-allocated output (bfloat16 data travels as ``uint16`` views;
the kernel converts on the fly and computes in float32).  A CUDA tensor goes to
:mod:`tempscale.triton` when that is importable (2-D after moving the axis last).  Anything else
(other dtypes or devices, ``dtype=`` conversions, integer masks, NumPy temperatures) returns
``None``: the generic path computes it.

The kernels are registered as custom ops ``tempscale::softmax``, ``tempscale::log_softmax``,
``tempscale::logsumexp`` (and ``tempscale::backward``), with fake implementations and a registered
autograd formula, so ``torch.compile(fullgraph=True)`` treats them as opaque calls.  Nothing on the
traced path inspects tensor values: a temperature tensor is validated inside the op, when it runs.

Backward (``y = (x - m) / T``, ``p`` the softmax, ``g`` the incoming gradient):

* softmax: ``dx = p (g - sum g p) / T``;
* log_softmax: ``dx = (g - p sum g) / T``, the sum over unmasked entries (a masked output is
  the constant ``-inf``: its ``g`` does not flow back), 0 at masked entries;
* logsumexp: ``dx = g p``;
* a temperature tensor: ``dT = -sum_i dx_i (x_i - m) / T`` (softmax, log_softmax) and
  ``dT = g (lse - m - sum_i p_i (x_i - m)) / T`` (logsumexp), masked entries contributing 0.

Contract rows are defined as the generic path's autograd defines them: rows at ``T = 0``,
``T = inf``, with a ``+inf`` maximum, fully masked or holding a NaN have zero gradient for softmax
and log_softmax; logsumexp's gradient is ``g`` times the row's softmax (shared among ties at
``T = 0`` / ``+inf`` maxima), 0 on NaN and fully masked rows, and NaN on the unmasked entries of
a ``T = inf`` row without ``+inf`` (where the value itself is ``+inf``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import torch

from . import _config
from ._args import check_temperature, entry_mask
from ._validation import check_axis, param_error

__all__ = ["dispatch", "native_forward", "native_backward"]

_KINDS = {"softmax": 0, "log_softmax": 1, "logsumexp": 2}
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_F32_TINY = float(torch.finfo(torch.float32).tiny)
_F32_MAX = float(torch.finfo(torch.float32).max)
_EXPECT = "a float in [0, inf] or an array of per-row temperatures"


_F = TypeVar("_F", bound=Callable[..., Any])
# a function whose result torch.compile treats as a constant (called once, at trace time)
_constant = cast(Callable[[_F], _F], torch.compiler.assume_constant_result)


def _kernels() -> Any:
    """The compiled module, or None (missing, disabled)."""
    try:
        from . import _native as nat
    except ImportError:  # pragma: no cover - broken installs
        return None
    if not nat.available():
        return None
    return nat._k


@_constant
def _native_ok(half: bool) -> bool:
    """Whether the native kernel takes CPU tensors (``half``: float16 ones) now.

    A constant to ``torch.compile`` (``ContextVar.get`` cannot be traced): a compiled function
    keeps the configuration it was compiled under.
    """
    k = _kernels()
    return bool(_config.current().native and k is not None and (not half or k.has_float16))


@_constant
def _triton_on() -> bool:
    """``tempscale.config(triton=...)`` (a constant to ``torch.compile``, as above)."""
    return bool(_config.current().triton)


def _np_view(t: torch.Tensor) -> tuple[np.ndarray[Any, Any], int]:
    """A NumPy view of a CPU tensor (no copy) and whether it holds bfloat16 (as uint16)."""
    t = t.detach()
    if t.is_neg():
        t = t.resolve_neg()
    if t.dtype == torch.bfloat16:
        return t.view(torch.uint16).numpy(), 1
    return t.numpy(), 0


# --------------------------------------------------------------------------------------------
# forward
_CACHE_MIN = 1 << 20  # the smallest block the output cache keeps (``_native._CACHE_MIN``)
_NP_STORAGE = {torch.float16: np.float16, torch.bfloat16: np.uint16, torch.float32: np.float32,
               torch.float64: np.float64}


def _new_tensor(k: Any, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor, from the kernels' block cache when it is large.

    A fresh multi-megabyte ``torch.empty`` pays a page fault and the kernel's zeroing for every
    4 KiB page when first written: on wide rows as much time as the softmax itself.  Outputs of
    1 MiB or more come from the same cache as NumPy outputs (``_memcache.c``): the tensor wraps
    a NumPy array whose block goes back to the cache when the tensor dies, and a later output of
    the same size reuses it.  bfloat16 data is allocated as ``uint16`` and viewed.
    """
    npdt = _NP_STORAGE.get(dtype)
    if npdt is None or math.prod(shape) * dtype.itemsize < _CACHE_MIN:
        return torch.empty(shape, dtype=dtype)
    t = torch.from_numpy(k.empty(shape, npdt))
    return t.view(dtype) if dtype == torch.bfloat16 else t


# --------------------------------------------------------------------------------------------
def _check_t_values(t: torch.Tensor, func: str) -> None:
    """Raise the temperature error for a NaN or negative entry (the op's run-time check)."""
    if t.numel() == 0:
        return
    bad = torch.isnan(t) | (t < 0)
    if bool(bad.any()):
        first = float(t.detach().reshape(-1)[bad.reshape(-1)][0])
        raise param_error("temperature", func, _EXPECT, first)


def native_forward(kind: int, x: torch.Tensor, t: torch.Tensor | None, tf: float,
                   mask: torch.Tensor | None, dim: int,
                   out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Run the kernel: ``kind`` 0/1/2 over ``dim`` of the CPU tensor ``x``.

    ``t`` (float32/float64, keepdims-broadcastable) or the scalar ``tf``; ``mask`` a bool tensor
    broadcastable to ``x``.  The result has ``x``'s dtype (or ``out_dtype``: float32 for a
    float16/bfloat16 ``x``); logsumexp drops ``dim``.
    """
    k = _kernels()
    if k is None:  # pragma: no cover - the wrapper checks first
        raise RuntimeError("tempscale's native kernels are not available")
    odt = x.dtype if out_dtype is None else out_dtype
    shape = tuple(x.shape)
    if kind == 2:
        out = _new_tensor(k, shape[:dim] + shape[dim + 1:], odt)
        oview = out.unsqueeze(dim).expand(shape)
    else:
        out = oview = _new_tensor(k, shape, odt)
    if x.numel() == 0:
        if kind == 2:
            out.fill_(-math.inf)  # empty rows
        return out
    xn, xb = _np_view(x)
    on, ob = _np_view(oview)
    T: Any = tf
    if t is not None and shape[dim] > 0:
        T = np.broadcast_to(_np_view(t)[0], shape)
    elif t is not None:
        T = 1.0  # no entries: the temperature is never read
    mn = None if mask is None else np.broadcast_to(mask.detach().numpy(), shape)
    k.compute(kind, xn, T, mn, on, dim, 0, xb | (ob << 1))
    return out


def _forward(kind: int, x: torch.Tensor, t: torch.Tensor | None, tf: float,
             mask: torch.Tensor | None, dim: int, func: str) -> torch.Tensor:
    if t is not None:
        _check_t_values(t, func)
    return native_forward(kind, x, t, tf, mask, dim)


def _fake(kind: int, x: torch.Tensor, dim: int) -> torch.Tensor:
    shape = tuple(x.shape)
    if kind == 2:
        shape = shape[:dim] + shape[dim + 1:]
    return x.new_empty(shape)


@torch.library.custom_op("tempscale::softmax", mutates_args=())
def _softmax_op(x: torch.Tensor, t: torch.Tensor | None, tf: float, mask: torch.Tensor | None,
                dim: int, func: str) -> torch.Tensor:
    return _forward(0, x, t, tf, mask, dim, func)


@torch.library.custom_op("tempscale::log_softmax", mutates_args=())
def _log_softmax_op(x: torch.Tensor, t: torch.Tensor | None, tf: float,
                    mask: torch.Tensor | None, dim: int, func: str) -> torch.Tensor:
    return _forward(1, x, t, tf, mask, dim, func)


@torch.library.custom_op("tempscale::logsumexp", mutates_args=())
def _logsumexp_op(x: torch.Tensor, t: torch.Tensor | None, tf: float,
                  mask: torch.Tensor | None, dim: int, func: str) -> torch.Tensor:
    return _forward(2, x, t, tf, mask, dim, func)


@_softmax_op.register_fake
def _softmax_fake(x: torch.Tensor, t: torch.Tensor | None, tf: float,
                  mask: torch.Tensor | None, dim: int, func: str) -> torch.Tensor:
    return _fake(0, x, dim)


@_log_softmax_op.register_fake
def _log_softmax_fake(x: torch.Tensor, t: torch.Tensor | None, tf: float,
                      mask: torch.Tensor | None, dim: int, func: str) -> torch.Tensor:
    return _fake(1, x, dim)


@_logsumexp_op.register_fake
def _logsumexp_fake(x: torch.Tensor, t: torch.Tensor | None, tf: float,
                    mask: torch.Tensor | None, dim: int, func: str) -> torch.Tensor:
    return _fake(2, x, dim)


# --------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------
def native_backward(kind: int, g: torch.Tensor, out: torch.Tensor, x: torch.Tensor,
                    t: torch.Tensor | None, tf: float, mask: torch.Tensor | None, dim: int,
                    need_t: bool, differentiable: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dx, dT)`` of ``kind`` (see the module docstring); ``dT`` is empty unless ``need_t``.

    Written in torch ops, so that with ``differentiable`` (``create_graph=True``: logsumexp's
    softmax then comes from the differentiable op) it is itself differentiated for second
    derivatives.
    """
    if kind != 2 and not differentiable and g.dtype == x.dtype == out.dtype and x.numel():
        k = _kernels()
        if k is not None and (x.dtype != torch.float16 or k.has_float16):
            return _c_backward(k, kind, g, out, x, t, tf, mask, dim, need_t)
    wide = x.dtype == torch.float64 or (t is not None and t.dtype == torch.float64) or \
        (t is None and 0 < tf < math.inf and not _F32_TINY <= tf <= _F32_MAX)
    cd = torch.float64 if wide else torch.float32
    T: Any = tf if t is None else t.to(cd)
    xv = x.to(cd)
    if mask is not None:
        xv = xv.masked_fill(~mask, -math.inf)
    if x.shape[dim] == 0:
        dt0 = torch.zeros_like(t) if need_t and t is not None else x.new_empty(0)
        return torch.zeros_like(x), dt0
    valid = xv > -math.inf  # False at -inf, masked and NaN entries
    m = torch.amax(torch.where(valid, xv, -math.inf), dim=dim, keepdim=True)
    nan_row = torch.isnan(xv).any(dim=dim, keepdim=True)
    empty = m == -math.inf
    tie = m == math.inf
    if t is None:
        if tf == 0:
            tie = torch.ones_like(tie)
        tinf = torch.full_like(tie, tf == math.inf) & ~tie
        tsafe: Any = tf if 0 < tf < math.inf else 1.0
    else:
        tie = tie | (T == 0)
        tinf = torch.isinf(T) & ~tie
        tsafe = torch.where((T > 0) & ~torch.isinf(T), T, 1.0)
    # (x - m) / 2, 0 where masked: halved, so that x - m cannot overflow
    d = torch.where(valid & ~tie, xv * 0.5 - torch.where(empty | tie, 0.0, m) * 0.5, 0.0)
    gc = g.to(cd)
    if kind == 2:
        gk = gc.unsqueeze(dim)
        if differentiable:
            p = _softmax_op(x, t, tf, mask, dim, "logsumexp").to(cd)
        else:
            p = native_forward(0, x, t, tf, mask, dim, out_dtype=torch.float32 if not wide
                               and x.dtype != torch.float64 else None).to(cd)
        dxc = torch.where(nan_row, 0.0, gk * p)
        # T = inf: the value is +inf (a NaN gradient) once two entries are unmasked
        tinf = tinf & (valid.sum(dim=dim, keepdim=True) >= 2)
        dxc = torch.where(tinf & valid, math.nan, dxc)
        if need_t:
            lse = out.to(cd).unsqueeze(dim)
            m0 = torch.where(empty | tie, 0.0, m)
            inner = (lse * 0.5 - m0 * 0.5) - (p * d).sum(dim=dim, keepdim=True)
            dT = gk * (inner / tsafe) * 2
            dT = torch.where(tie | empty | nan_row, 0.0, dT)
            dT = torch.where(tinf, math.nan, dT)
    else:
        special = tie | tinf | empty | nan_row
        if kind == 0:
            p = out.to(cd)
            gp = torch.where(p != 0, gc * p, 0.0)
            dy = gp - p * gp.sum(dim=dim, keepdim=True)
        else:
            p = torch.exp(out.to(cd))
            # masked outputs are the constant -inf: their g does not flow back
            gv = torch.where(valid, gc, 0.0)
            dy = torch.where(valid, gc - p * gv.sum(dim=dim, keepdim=True), 0.0)
        dy = torch.where(special, 0.0, dy)
        dxc = dy / tsafe
        if need_t:
            dT = torch.where(special, 0.0, -((dxc * d).sum(dim=dim, keepdim=True) / tsafe) * 2)
    dx = dxc.to(x.dtype).contiguous()
    if need_t and t is not None:
        dt = dT.sum_to_size(t.shape).to(t.dtype).contiguous()
    else:
        dt = x.new_empty(0)
    return dx, dt


def _rows(a: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """``a`` with ``dim`` moved last, as (rows, n) with contiguous rows (a view when it can)."""
    if dim != a.ndim - 1:
        a = torch.movedim(a, dim, -1)
    a = a.reshape(-1, n)
    return a if n <= 1 or a.stride(-1) == 1 else a.contiguous()


def _c_backward(k: Any, kind: int, g: torch.Tensor, out: torch.Tensor, x: torch.Tensor,
                t: torch.Tensor | None, tf: float, mask: torch.Tensor | None, dim: int,
                need_t: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax / log_softmax backward in the C kernel (threaded; float32 and 16-bit rows through
    the instruction set's vector passes, converting 16-bit data on the fly, which measured
    faster than torch's own fused ``_softmax_backward_data`` for bfloat16 / float16)."""
    shape = tuple(x.shape)
    n = shape[dim]
    moved = shape[:dim] + shape[dim + 1:] + (n,)
    g2, o2, x2 = _rows(g, dim, n), _rows(out, dim, n), _rows(x, dim, n)
    dx2 = _new_tensor(k, tuple(g2.shape), x.dtype)
    m2 = None if mask is None else _rows(mask.expand(shape), dim, n)
    T: Any = tf
    kshape = shape[:dim] + (1,) + shape[dim + 1:]
    if t is not None:
        T = _np_view(_rows(t.expand(kshape), dim, 1).reshape(-1))[0]
    dT = torch.empty(g2.shape[0], dtype=torch.float64) if need_t and t is not None else None
    views = [_np_view(a) for a in (g2, o2, x2, dx2)]
    k.backward(kind, views[0][0], views[1][0], views[2][0], T,
               None if m2 is None else m2.numpy(), views[3][0],
               None if dT is None else dT.numpy(), 0, views[0][1])
    dx = dx2.reshape(moved)
    if dim != len(shape) - 1:
        dx = torch.movedim(dx, -1, dim).contiguous()  # the layout the fake implementation gives
    if dT is None or t is None:
        return dx, x.new_empty(0)
    kmoved = shape[:dim] + shape[dim + 1:] + (1,)
    dt = torch.movedim(dT.reshape(kmoved), -1, dim)
    return dx, dt.sum_to_size(t.shape).to(t.dtype).contiguous()


@torch.library.custom_op("tempscale::backward", mutates_args=())
def _backward_op(kind: int, g: torch.Tensor, out: torch.Tensor, x: torch.Tensor,
                 t: torch.Tensor | None, tf: float, mask: torch.Tensor | None, dim: int,
                 need_t: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return native_backward(kind, g, out, x, t, tf, mask, dim, need_t)


@_backward_op.register_fake
def _backward_fake(kind: int, g: torch.Tensor, out: torch.Tensor, x: torch.Tensor,
                   t: torch.Tensor | None, tf: float, mask: torch.Tensor | None, dim: int,
                   need_t: bool) -> tuple[torch.Tensor, torch.Tensor]:
    dt = t.new_empty(t.shape) if need_t and t is not None else x.new_empty(0)
    return x.new_empty(x.shape), dt


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, t, tf, mask, dim, _func = inputs
    ctx.save_for_backward(x, t, mask, output)
    ctx.tf = tf
    ctx.dim = dim


def _make_backward(kind: int) -> Any:
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        x, t, mask, out = ctx.saved_tensors
        need_t = t is not None and bool(ctx.needs_input_grad[1])
        if torch.is_grad_enabled():  # create_graph=True: a backward that is differentiable
            dx, dt = native_backward(kind, g, out, x, t, ctx.tf, mask, ctx.dim, need_t, True)
        else:
            dx, dt = torch.ops.tempscale.backward(kind, g, out, x, t, ctx.tf, mask, ctx.dim,
                                                  need_t)
        return dx, (dt if need_t else None), None, None, None, None

    return backward


_OPS = {0: _softmax_op, 1: _log_softmax_op, 2: _logsumexp_op}
for _kind, _op in _OPS.items():
    _op.register_autograd(_make_backward(_kind), setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# the wrapper (traced by torch.compile: no data-dependent Python here)
# --------------------------------------------------------------------------------------------
def _row_t(value: torch.Tensor, x: torch.Tensor, ax: int, flat: bool) -> torch.Tensor | None:
    """A temperature tensor in keepdims form (float32/float64), or None (the generic path)."""
    if value.device != x.device:
        return None
    if value.dtype.is_floating_point:
        if value.dtype not in (torch.float32, torch.float64):
            value = value.to(torch.float32)  # float16 / bfloat16: exactly
    elif value.dtype.is_complex or value.dtype == torch.bool:
        return None
    else:
        value = value.to(torch.float64)  # integers, exactly (as the generic path)
    nd = x.ndim
    kshape = tuple(1 if i == ax else n for i, n in enumerate(x.shape))
    bshape = kshape[:ax] + kshape[ax + 1:]
    if value.ndim == 0:
        return value.reshape((1,) * nd)
    if flat:
        return value.reshape((1,) * nd) if value.numel() == 1 else None
    if value.ndim == nd - 1 and all(s in (1, b) for s, b in zip(value.shape, bshape, strict=True)):
        return value.unsqueeze(ax)
    if value.ndim == nd and all(s in (1, b) for s, b in zip(value.shape, kshape, strict=True)):
        return value
    return None


def _broadcasts(src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    """Whether ``src`` broadcasts to ``dst`` without enlarging it."""
    if len(src) > len(dst):
        return False
    return all(s in (1, d) for s, d in zip(src[::-1], dst[::-1], strict=False))


def _route_triton(kind: str, x: torch.Tensor, tf: float, t: torch.Tensor | None,
                  mask: torch.Tensor | None, ax: int) -> torch.Tensor | None:
    """CUDA tensors: tempscale.triton's 2-D kernels (axis moved last), or None."""
    if not _triton_on():
        return None
    try:
        import triton  # noqa: F401

        from . import triton as tt
    except ImportError:
        return None
    fn = getattr(tt, kind, None)
    if fn is None:
        return None
    xm = torch.movedim(x, ax, -1)
    lead = tuple(xm.shape[:-1])
    n = xm.shape[-1]
    x2 = xm.reshape(-1, n)
    T: Any = tf
    if t is not None:
        T = torch.movedim(t.expand(tuple(1 if i == ax else s for i, s in enumerate(x.shape))),
                          ax, -1).reshape(-1)
    m2 = None
    if mask is not None:
        m2 = torch.movedim(mask.expand(x.shape), ax, -1).reshape(-1, n)
    r = cast(torch.Tensor, fn(x2, T, mask=m2))
    if kind == "logsumexp":
        return r.reshape(lead)
    return torch.movedim(r.reshape(xm.shape), -1, ax)


def dispatch(kind: str, x: torch.Tensor, temperature: Any, axis: int | None, mask: Any,
             dtype: Any, keepdims: bool, func: str) -> torch.Tensor | None:
    """The native (CPU) or Triton (CUDA) result for a torch tensor, or None (generic path).

    Same arguments as :func:`tempscale._softmax.dispatch`; validation errors are the generic
    path's (a temperature tensor's values are checked inside the op).
    """
    if x.dtype not in _FLOATS or x.ndim == 0 or (dtype is not None and dtype != x.dtype):
        return None
    cpu = x.device.type == "cpu"
    if cpu:
        if not _native_ok(x.dtype == torch.float16):
            return None
    elif x.device.type != "cuda" or x.dtype == torch.float64:  # Triton: 16/32-bit floats
        return None
    shape = tuple(x.shape)
    if mask is not None and not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool):
        if torch.compiler.is_compiling():
            return None
        # integer 0/1 masks, NumPy masks, lists: the argument layer's rules (and errors)
        mask = entry_mask(mask, x, func)
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or \
                mask.device != x.device or mask.ndim > x.ndim or \
                not _broadcasts(tuple(mask.shape), shape):
            return None
    flat = axis is None
    if flat:
        if mask is not None:
            mask = mask.expand(shape).reshape(-1)
        x = x.reshape(-1)
        ax = 0
    else:
        ax = check_axis(axis, x.ndim, func)
    t: torch.Tensor | None = None
    tf = 1.0
    if isinstance(temperature, torch.Tensor):
        t = _row_t(temperature, x, ax, flat)
        if t is None:
            return None
    elif isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        tf = check_temperature(temperature, func, expect=_EXPECT)
    else:
        return None
    if cpu:
        op = _OPS[_KINDS[kind]]
        r = op(x, t, tf, mask, ax, func)
    else:
        r = _route_triton(kind, x, tf, t, mask, ax)
        if r is None:
            return None
    if kind == "logsumexp":
        if keepdims:
            r = r.unsqueeze(ax)
        if flat:
            r = r.reshape((1,) * len(shape) if keepdims else ())
    elif flat:
        r = r.reshape(shape)
    return cast(torch.Tensor, r)
