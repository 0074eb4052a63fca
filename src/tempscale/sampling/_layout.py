"""Argument layout: the logits as (rows, vocabulary), per-row parameters as (rows, 1)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from .. import _args, _backend, _compat
from .._compat import array_namespace, is_python_scalar
from .._validation import check_axis, check_scalar, param_error
from . import _chain

ORDERS = ("temperature-first", "temperature-last")


class Args:
    """Validated arguments in the (rows, vocabulary) layout every kernel works on.

    ``x`` is (B, V) in the compute dtype, ``mask`` (B, V) or None; ``T``, ``top_k``, ``top_p``,
    ``min_p``, ``typical_p``, ``epsilon``, ``eta`` and ``top_n_sigma`` are None (off), Python numbers, or (B, 1)
    arrays.  ``wide`` is the widest
    float of the namespace; ``torch_exp`` is set on NumPy views of CPU tensors (exp is torch's).
    """

    __slots__ = ("xp", "x", "mask", "T", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta",
                 "top_n_sigma", "top_h", "dyn_range", "dyn_exp", "xtc_threshold", "xtc_probability",
                 "order", "chain", "mtk", "out",
                 "batch_shape", "ax", "ndim", "B", "V", "func", "wide", "torch_exp")

    xp: Any
    x: Any
    mask: Any
    T: Any
    top_k: Any
    top_p: Any
    min_p: Any
    typical_p: Any
    epsilon: Any
    eta: Any
    top_n_sigma: Any
    top_h: Any
    dyn_range: Any
    dyn_exp: Any
    xtc_threshold: Any
    xtc_probability: Any
    order: str
    chain: tuple[str, ...]
    mtk: int
    out: Any
    batch_shape: tuple[int, ...]
    ax: int
    ndim: int
    B: int
    V: int
    func: str
    wide: Any
    torch_exp: bool

    def numpy_view(self) -> Args:
        """CPU tensors: the same arguments as zero-copy NumPy views (exp stays torch's)."""
        import array_api_compat.numpy as npx

        b = copy.copy(self)
        b.xp = npx
        b.x = _backend.numpy_view(self.x)
        b.mask = None if self.mask is None else _backend.numpy_view(self.mask)
        b.wide = np.float64
        b.torch_exp = True
        for name in PER_ROW:
            v = getattr(self, name)
            if v is not None and not is_python_scalar(v):
                setattr(b, name, _backend.numpy_view(v))
        return b


PER_ROW = ("T", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta", "top_n_sigma", "top_h",
           "dyn_range", "dyn_exp", "xtc_threshold", "xtc_probability")


def prepare(logits: Any, temperature: Any, top_k: Any, top_p: Any, min_p: Any, order: Any,
            mtk: Any, axis: Any, mask: Any, func: str, typical_p: Any = None, epsilon: Any = None,
            eta: Any = None, top_n_sigma: Any = None, top_h: Any = None,
            dynatemp_range: Any = None, dynatemp_exponent: Any = 1.0, xtc_threshold: Any = None,
            xtc_probability: Any = None) -> Args:
    """Check every argument and lay the logits out as (rows, vocabulary)."""
    a = Args()
    a.func = func
    a.torch_exp = False
    xp = array_namespace(logits)
    if _compat.is_dask_namespace(xp):
        raise param_error("logits", func, "an in-memory array (call .compute() on a Dask array; "
                          "sampling needs take_along_axis)", "a Dask array", TypeError)
    x = _compat.as_array(logits, xp)
    if x.ndim == 0:
        raise param_error("logits", func, "an array with at least one dimension", "a 0-d array")
    compute, out = _args.float_dtypes(xp, x, None, func)
    ax = check_axis(axis, x.ndim, func)
    a.order, a.chain = _chain.parse(order, func)
    a.mtk = check_scalar(mtk, "min_tokens_to_keep", func, lo=1, integer=True)
    if x.dtype != compute:
        x = xp.astype(x, compute)
    a.wide = _backend.widest_float(xp)
    # per-row temperatures stay in the wide dtype: T = 1e-50 must not round to 0 (greedy)
    T = _args.row_temperature(temperature, func, like=x, axis=ax, dtype=a.wide)
    mask = _args.entry_mask(mask, x, func)
    xk = x  # the logits in the user's layout: per-row parameters are checked against it
    kshape = tuple(1 if i == ax else n for i, n in enumerate(x.shape))
    x = xp.moveaxis(x, ax, -1)
    batch_shape = tuple(x.shape[:-1])
    V = int(x.shape[-1])
    B = math.prod(batch_shape)
    if V == 0:
        raise param_error("logits", func, "non-empty along axis", f"shape {tuple(_shape(logits))}")
    x = xp.reshape(x, (B, V))
    if mask is not None:
        mask = xp.reshape(xp.moveaxis(mask, ax, -1), (B, V))
    if not is_python_scalar(T):
        T = _rows(xp.broadcast_to(T, kshape), ax, B, xp)
    a.xp, a.x, a.mask, a.T, a.out = xp, x, mask, T, out
    a.batch_shape, a.ax, a.ndim, a.B, a.V = batch_shape, ax, len(kshape), B, V
    a.top_k = _row_param(a, top_k, "top_k", xk, integer=True, lo=0, hi=math.inf,
                         expect="an int >= 0 (0 switches top-k off) or an array of per-row ints")
    a.top_p = _row_param(a, top_p, "top_p", xk, lo=0, hi=1, lo_open=True, dtype=a.wide,
                         expect="a float in (0, 1] (1 switches top-p off) or an array of per-row floats")
    a.min_p = _row_param(a, min_p, "min_p", xk, lo=0, hi=1,
                         expect="a float in [0, 1] (0 switches min-p off) or an array of per-row floats")
    a.typical_p = _row_param(a, typical_p, "typical_p", xk, lo=0, hi=1, lo_open=True, dtype=a.wide,
                             expect="a float in (0, 1] (1 switches typical-p off) or an array of "
                                    "per-row floats")
    a.epsilon = _row_param(a, epsilon, "epsilon", xk, lo=0, hi=1, dtype=a.wide,
                           expect="a float in [0, 1] (0 switches epsilon-sampling off) or an array "
                                  "of per-row floats")
    a.eta = _row_param(a, eta, "eta", xk, lo=0, hi=1, dtype=a.wide,
                       expect="a float in [0, 1] (0 switches eta-sampling off) or an array of "
                              "per-row floats")
    a.top_n_sigma = _row_param(a, top_n_sigma, "top_n_sigma", xk, lo=0, hi=math.inf, dtype=a.wide,
                               expect="a float in [0, inf] (0 switches top-n-sigma off) or an "
                                      "array of per-row floats")
    if is_python_scalar(a.top_n_sigma) and a.top_n_sigma == 0:
        a.top_n_sigma = None  # off
    if is_python_scalar(a.typical_p) and a.typical_p >= 1:
        a.typical_p = None  # off
    if is_python_scalar(a.epsilon) and a.epsilon == 0:
        a.epsilon = None  # off
    if is_python_scalar(a.eta) and a.eta == 0:
        a.eta = None  # off
    if is_python_scalar(a.top_p) and a.top_p >= 1:
        a.top_p = None  # off
    if is_python_scalar(a.min_p) and a.min_p == 0:
        a.min_p = None  # off
    a.top_h = _row_param(a, top_h, "top_h", xk, lo=0, hi=1, lo_open=True, dtype=a.wide,
                         expect="a float in (0, 1] (None switches top-H off) or an array of "
                                "per-row floats")
    a.dyn_range = _row_param(a, dynatemp_range, "dynatemp_range", xk, lo=0, hi=_FMAX, dtype=a.wide,
                             expect="a finite float >= 0 (0 switches dynamic temperature off) or "
                                    "an array of per-row floats")
    if dynatemp_exponent is None:
        dynatemp_exponent = 1.0
    a.dyn_exp = _row_param(a, dynatemp_exponent, "dynatemp_exponent", xk, lo=0, hi=_FMAX,
                           dtype=a.wide, expect="a finite float >= 0 or an array of per-row floats")
    if is_python_scalar(a.dyn_range) and a.dyn_range == 0:
        a.dyn_range = None  # off
    a.xtc_threshold = _row_param(a, xtc_threshold, "xtc_threshold", xk, lo=0, hi=1, dtype=a.wide,
                                 expect="a float in [0, 1] (above 0.5 XTC never applies) or an "
                                        "array of per-row floats")
    a.xtc_probability = _row_param(a, xtc_probability, "xtc_probability", xk, lo=0, hi=1,
                                   dtype=a.wide, expect="a float in [0, 1] or an array of per-row "
                                                        "floats")
    if a.xtc_threshold is None:
        if a.xtc_probability is not None and not (is_python_scalar(a.xtc_probability)
                                                  and a.xtc_probability == 0):
            raise param_error("xtc_threshold", func, "a float in [0, 1] when xtc_probability is "
                              "given", None)
        a.xtc_probability = None
    elif a.xtc_probability is None:
        a.xtc_probability = 1.0  # deterministic XTC
    if is_python_scalar(a.xtc_probability) and a.xtc_probability == 0:
        a.xtc_threshold = a.xtc_probability = None  # off
    if is_python_scalar(a.xtc_threshold) and a.xtc_threshold > 0.5:
        a.xtc_threshold = a.xtc_probability = None  # off (llama.cpp)
    active = {k: v for k, v in (("top_n_sigma", a.top_n_sigma), ("top_h", a.top_h),
                                ("top_k", a.top_k), ("top_p", a.top_p), ("min_p", a.min_p),
                                ("typical_p", a.typical_p), ("epsilon", a.epsilon),
                                ("eta", a.eta), ("xtc", a.xtc_threshold)) if v is not None}
    if not (is_python_scalar(a.T) and a.T == 1) or a.dyn_range is not None:
        active["temperature"] = temperature if a.dyn_range is None else \
            f"{temperature!r} with dynatemp_range={dynatemp_range!r}"
    if a.order == "custom":
        _chain.check_active(a.chain, {k: _show(v) for k, v in active.items()}, order, func)
        a.order = _chain.reduce(a.chain, set(active))
        if a.order != "custom":
            a.chain = _chain.NAMED[a.order]
    return a


_FMAX = float(np.finfo(np.float64).max)


def _show(v: Any) -> Any:
    """A parameter value for an error message (arrays as "an array")."""
    return v if is_python_scalar(v) or isinstance(v, str) else "an array of per-row values"


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", np.shape(x)))


def _rows(arr: Any, ax: int, B: int, xp: Any) -> Any:
    """A keepdims-shaped per-row array as (B, 1)."""
    return xp.reshape(xp.moveaxis(arr, ax, -1), (B, 1))


def _row_param(a: Args, value: Any, name: str, like: Any, *, lo: float, hi: float, expect: str,
               integer: bool = False, lo_open: bool = False, dtype: Any = None) -> Any:
    """None, a Python number, or a (B, 1) array of per-row values (checked when concrete).

    ``top_k = 0`` (scalar or per row) is "off": a scalar 0 becomes None, a per-row 0 becomes the
    vocabulary size; larger values are clipped to it.
    """
    v: Any = _args.row_param(value, a.func, param=name, like=like, axis=a.ax, lo=lo, hi=hi,
                        lo_open=lo_open, integer=integer, dtype=dtype, expect=expect)
    if v is None or is_python_scalar(v):
        if integer and v is not None:
            return None if v == 0 else min(int(v), a.V)
        return v
    xp = a.xp
    arr = _rows(v, a.ax, a.B, xp)
    if integer:
        arr = xp.where(arr == 0, xp.full_like(arr, a.V), xp.clip(arr, None, a.V))
    return arr


def full(xp: Any, like: Any, value: float, shape: tuple[int, ...] | None = None,
         dtype: Any = None) -> Any:
    """``xp.full`` on ``like``'s device (``like``'s shape and dtype unless given)."""
    return xp.full(like.shape if shape is None else shape, value,
                   dtype=like.dtype if dtype is None else dtype, device=_compat.device(like))


def is_zero_T(a: Args) -> Any:
    """Greedy rows: a Python bool for a scalar temperature, else a (B, 1) bool array."""
    return a.T == 0


def final_T(a: Args) -> Any:
    """The temperature of the final distribution (the greedy rows hold one token).

    A Python float beyond the compute dtype's range (``T = 1e39`` on float32 logits) is passed
    as a per-row array in the wide dtype, so that no path rounds it to ``inf``."""
    T, xp = a.T, a.xp
    if is_python_scalar(T) and math.isfinite(T) and a.x.dtype != a.wide and \
            T > float(xp.finfo(a.x.dtype).max):
        return full(xp, a.x, T, shape=(a.B, 1), dtype=a.wide)
    return T


def restore(a: Args, r: Any) -> Any:
    """(B, V) or (B, n) back to the user's layout (the axis moved back into place)."""
    xp = a.xp
    r = xp.reshape(r, a.batch_shape + (r.shape[-1],))
    return xp.moveaxis(r, -1, a.ax) if r.ndim > 1 else r
