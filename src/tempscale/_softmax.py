"""Temperature softmax, log-softmax, logsumexp and re-tempering: one Array-API implementation.

Every function takes the array first, finds its namespace and uses only ``xp.*`` operations, so
NumPy, PyTorch (autograd intact), JAX (``jit``/``grad``/``vmap`` intact), array-api-strict and Dask
arrays all work.  For NumPy float arrays and CPU torch tensors (float16, bfloat16, float32,
float64; zero-copy, with a registered autograd formula and ``torch.compile`` support, see
:mod:`tempscale._torch_ops`) a compiled kernel (see :func:`tempscale.show_config`) computes the
same contract faster; CUDA tensors take the Triton kernels of :mod:`tempscale.triton` where they
apply, other torch tensors torch's fused ops; this generic code is their reference
(``tempscale.config(native=False, torch_fused=False, triton=False)`` selects it).

The numerical contract
----------------------
* ``temperature`` is a float in ``[0, inf]`` or an array of per-row temperatures.
* ``T = 0`` is the exact limit: the mass is shared equally among the row's maxima.
  ``T = inf`` is the uniform distribution over the row's unmasked entries.
* ``-inf`` logits (and ``mask == False`` entries) are masked.  A row with nothing unmasked gives
  zeros (softmax), ``-inf`` (log-softmax, logsumexp), never NaN.
* ``+inf`` logits take the limit: the mass is shared among the ``+inf`` entries (at every T).
* A NaN anywhere in a row makes the whole row NaN.
* No overflow for any finite input and any T: ``(x - max)/T`` is evaluated directly (two
  roundings), as ``(x/2 - max/2)/(T/2)`` where ``x - max`` would overflow, and by powers of two
  for a T below the dtype's smallest normal.
* ``log sum exp`` is ``log k + log1p(r/k)`` (``k`` maxima, ``r`` the rest), exact near 0.
* float16/bfloat16 are computed in float32 and returned in their own dtype; a temperature array
  is never rounded to the logits' narrower dtype (float64 T: computed in float64).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Literal

import numpy as np

from . import _args, _compat, _config
from ._compat import array_namespace, is_concrete, is_python_scalar
from ._compat import quiet as _quiet
from ._typing import Array, ArrayLike, DType, Namespace, Temperature
from ._validation import check_axis, param_error

__all__ = ["softmax", "log_softmax", "logsumexp", "temper"]

Kind = Literal["softmax", "log_softmax", "logsumexp"]


# --------------------------------------------------------------------------------------------
# argument preparation (the rules themselves live in the argument layer)
# --------------------------------------------------------------------------------------------
def _prepare(x: Any, temperature: Any, axis: int | None, mask: Any, dtype: DType | None,
             func: str) -> tuple[Namespace, Any, Any, int, Any, DType, tuple[int, ...] | None,
                                 DType]:
    """Validate and convert; returns ``(xp, x, T, ax, mask, out, shape, compute)``.

    ``compute`` is the dtype the generic and torch paths compute in: float32 for float16/bfloat16,
    else the output dtype, widened to float64 when the temperature is wider (a float64 array T
    with float32 logits is never rounded to float32 before the division) and, on the CPU
    reference libraries (NumPy, array-api-strict), for every float32 computation, so that the
    generic path is as exact as the native kernel.  ``shape`` is x's shape for ``axis=None``
    (x is flattened), else None.
    """
    xp = array_namespace(x)
    x = _compat.as_array(x, xp)
    compute, out = _args.float_dtypes(xp, x, dtype, func)
    mask = _args.entry_mask(mask, x, func)
    if axis is None:
        shape = tuple(x.shape)
        if mask is not None:
            mask = xp.reshape(mask, (-1,))
        x = xp.reshape(x, (-1,))
        ax = 0
    else:
        shape = None
        ax = check_axis(axis, x.ndim, func)
    T = _args.row_temperature(temperature, func, like=x, axis=ax, dtype=compute,
                              flat=axis is None)
    compute = _widen(xp, x, T, compute)
    return xp, x, T, ax, mask, out, shape, compute


def _widen(xp: Namespace, x: Any, T: Any, compute: DType) -> DType:
    """The compute dtype, widened to the temperature's dtype (or float64, see :func:`_prepare`)."""
    if compute == xp.float64 or not hasattr(xp, "float64"):
        return compute
    if is_python_scalar(T):
        if (_compat.is_numpy_namespace(xp) or _compat.is_array_api_strict_namespace(xp)) and \
                _args.has_float64(xp, x):
            return xp.float64
        return compute
    if T.dtype == xp.float64:
        return xp.float64
    return compute


def _compute_cast(xp: Namespace, x: Any, compute: DType) -> Any:
    return x if x.dtype == compute else xp.astype(x, compute)


# --------------------------------------------------------------------------------------------
# the one generic kernel
# --------------------------------------------------------------------------------------------
def _core(xp: Namespace, x: Any, T: Any, ax: int, mask: Any) -> tuple[Any, ...]:
    """Shared pieces: (y, e, s, log_s, m, m_safe, empty, tie, nan_row), ``y = (x - m)/T`` made safe.

    ``y`` is the tempered, max-shifted logit (``-inf`` at masked entries, ``0`` at the row's
    maxima), ``e = exp(y)``, ``s = sum(e)`` and ``log_s = log s`` computed as
    ``log k + log1p(r / k)`` with ``k`` the number of maxima and ``r`` the sum over the other
    entries (SciPy's form: exact when ``s`` is close to 1, where ``log(s)`` would round ``r``
    away).  Tie rows (``T == 0`` or a ``+inf`` maximum) keep only their maxima; fully masked rows
    get ``s = 1``, ``log_s = 0``.  Every branch that ``xp.where`` does not select is kept finite,
    so gradients stay NaN-free (the double-``where`` trick).
    """
    dev = _compat.device(x)
    ninf = xp.asarray(-math.inf, dtype=x.dtype, device=dev)
    if mask is not None:
        x = xp.where(mask, x, ninf)
    nan_row = xp.any(xp.isnan(x), axis=ax, keepdims=True)
    valid = x > ninf                                   # False at -inf, masked and NaN entries
    m = xp.max(xp.where(valid, x, ninf), axis=ax, keepdims=True) if x.shape[ax] else \
        xp.full(tuple(1 if i == ax else n for i, n in enumerate(x.shape)), -math.inf,
                dtype=x.dtype, device=dev)
    empty = m == ninf
    m_fin = xp.isfinite(m)
    m_safe = xp.where(m_fin, m, xp.zeros_like(m))
    tiny = float(xp.finfo(x.dtype).smallest_normal)
    if is_python_scalar(T):
        tie = xp.logical_or(m == math.inf, xp.asarray(T == 0, device=dev))
        t = T if T != 0 else 1.0
        # T/2 below the smallest normal would lose bits (or be 0: 0/0 = NaN at the max); there
        # the halved form only serves rows whose span overflows, where it gives -inf anyway
        t_half = max(t / 2, tiny)
    else:
        tie = xp.logical_or(m == math.inf, T == 0)
        t = xp.where(T == 0, xp.ones_like(T), T)
        # a negative or NaN temperature that could not be checked eagerly (traced) gives NaN
        t = xp.where(T >= 0, t, xp.full_like(T, math.nan))
        t_half = xp.maximum(t / 2, xp.full_like(t, tiny))
    use = xp.logical_and(valid, xp.logical_not(tie))
    x_safe = xp.where(use, x, m_safe)
    # (x - m)/T: exact to two roundings; where x - m overflows (a span beyond the dtype's max),
    # (x/2 - m/2)/(T/2) instead, which cannot overflow
    d = x_safe - m_safe
    d_fin = d > ninf
    d_safe = xp.where(d_fin, d, xp.zeros_like(d))
    if is_python_scalar(T) and t < tiny:
        y_direct = _div_subnormal(xp, d_safe, t)
    else:
        y_direct = _div(xp, d_safe, t)
    y_half = _div(xp, x_safe / 2 - m_safe / 2, t_half)
    y_gen = xp.where(d_fin, y_direct, y_half)
    zero = xp.zeros_like(y_gen)
    is_top = xp.logical_and(valid, x == m)            # the row's maxima: y = 0 there
    y_tie = xp.where(is_top, zero, ninf)
    y = xp.where(valid, xp.where(tie, y_tie, y_gen), ninf)
    e = xp.exp(y)
    k = xp.sum(xp.astype(is_top, y.dtype), axis=ax, keepdims=True)
    k = xp.where(k > 0, k, xp.ones_like(k))           # fully masked / NaN rows
    r = xp.sum(xp.where(is_top, zero, e), axis=ax, keepdims=True)
    s = k + r
    log_s = xp.log1p(r / k) + xp.log(k)
    return y, e, s, log_s, m, m_safe, empty, tie, nan_row


def _emax(fi: Any) -> int:
    """The largest binary exponent of a finfo's dtype (127 for float32, 1023 for float64)."""
    return math.frexp(float(fi.max))[1] - 1


def _barrier(xp: Namespace, a: Any) -> Any:
    """Keep XLA from folding the constants around ``a`` into one (JAX only)."""
    if _compat.is_jax_namespace(xp):
        import jax

        barrier: Any = jax.lax.optimization_barrier  # untyped in jax
        return barrier(a)
    return a


def _div(xp: Namespace, d: Any, t: Any) -> Any:
    """``d / t`` for ``t > 0`` (a Python float or an array).

    XLA's CPU backend divides by multiplying with the reciprocal and flushes subnormals to zero,
    so on JAX ``d / t`` is 0 for every ``t`` above ``1/smallest_normal`` (about 8.5e37 in
    float32).  There, both are scaled by the same normal power of two first (``d``'s underflow
    to 0 is harmless: it leaves ``y`` below 1e-38).  Elsewhere division is IEEE's.
    """
    if not _compat.is_jax_namespace(xp):
        return d / t
    fi = xp.finfo(d.dtype)
    tiny = float(fi.smallest_normal)
    big = 0.25 / tiny
    c = math.ldexp(1.0, -(_emax(fi) - 1))  # a normal power of two
    if is_python_scalar(t):
        return _barrier(xp, d * c) / (t * c) if t > big else d / t
    huge = t > big
    t_s = xp.where(huge, t * c, t)
    return _barrier(xp, xp.where(huge, d * c, d)) / t_s


def _div_subnormal(xp: Namespace, d: Any, t: float) -> Any:
    """``d / t`` for a Python float ``0 < t`` below the smallest normal of ``d``'s dtype.

    Such a ``t`` would be rounded (to 0, giving ``0/0 = NaN`` at the maxima, or to a subnormal
    with few bits) when converted to the dtype.  Scale both by the same power of two instead:
    ``d`` exactly (in steps the dtype can hold; an overflow gives ``-inf``, which is the
    quotient's correct rounding then), ``t`` up to a normal number.
    """
    fi = xp.finfo(d.dtype)
    tiny = float(fi.smallest_normal)
    e = math.ceil(math.log2(tiny / t))
    t_scaled = math.ldexp(t, e)
    if t_scaled < tiny:  # pragma: no cover - log2 rounding
        e += 1
        t_scaled = math.ldexp(t, e)
    step = _emax(fi) - 1
    while e > 0:
        k = min(e, step)
        d = d * float(2.0 ** k)
        e -= k
    return _barrier(xp, d) / t_scaled


def _generic_kernel(kind: Kind, xp: Namespace, x: Any, T: Any, ax: int, mask: Any) -> Any:
    """``kind`` on the generic Array-API path, keepdims form for logsumexp."""
    y, e, s, log_s, m, m_safe, empty, tie, nan_row = _core(xp, x, T, ax, mask)
    if kind == "softmax":
        r = e / s  # exp(y)/s: fewer roundings than exp(y - log s)
    elif kind == "log_softmax":
        # masked entries (y = -inf) are the constant -inf: no gradient flows from them into the
        # row's sum (y - log s would pass one to every other entry)
        r = xp.where(y == -math.inf, y, y - log_s)
    else:
        # T log s, with T log 1 = 0 also at T = inf and no inf * 0 in either branch's gradient
        zero = xp.zeros_like(log_s)
        if is_python_scalar(T):
            t = 0.0 if T == 0 else T
            log_s1 = xp.where(log_s == 0, zero + 1, log_s)
            scaled = xp.where(log_s == 0, zero, t * log_s1)
            scaled_half = xp.where(log_s == 0, zero, (t / 2) * log_s1)
        else:
            t_safe = xp.where(xp.logical_or(log_s == 0, T == 0), zero + 1, T + zero)
            scaled = xp.where(log_s == 0, zero, t_safe * log_s)
            scaled_half = xp.where(log_s == 0, zero, (t_safe / 2) * log_s)
        # m + T log s; where T log s alone overflows but the sum does not (m < 0, huge T), the
        # halved form 2 (m/2 + T/2 log s) is exact
        total = m_safe + scaled
        total = xp.where(xp.isinf(total), 2 * (m_safe / 2 + scaled_half), total)
        # T = 0 and +inf rows: the max; fully masked rows: m = -inf
        r = xp.where(xp.logical_or(tie, empty), m, total)
    return xp.where(nan_row, xp.asarray(math.nan, dtype=r.dtype, device=_compat.device(r)), r)


def dispatch(kind: Kind, x: ArrayLike, temperature: Temperature, axis: int | None,
             mask: ArrayLike | None, dtype: DType | None, keepdims: bool = True, *,
             func: str | None = None) -> Array:
    """Validate, then the first path that takes the case: native, fused torch, generic.

    ``kind`` is the computation; ``func`` the public function named in error messages
    (default ``kind``; ``entropy`` or ``temper`` when they call this).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        # torch tensors first, without array_namespace (torch.compile traces this call)
        from . import _torch_ops

        t = _torch_ops.dispatch(kind, x, temperature, axis, mask, dtype, keepdims, func or kind)
        if t is not None:
            return t
    xp, a, T, ax, m, out, shape, compute = _prepare(x, temperature, axis, mask, dtype,
                                                     func or kind)
    r = _native(kind, xp, a, T, ax, m, out)  # converts float16 itself
    if r is None and _compat.is_dask_namespace(xp):
        from . import _dask  # block-wise kernels and a (max, sum) tree over chunked class axes

        r = _dask.compute(kind, xp, a, T, ax, m, out)
    if r is None and _compat.is_jax_namespace(xp) and _config.current().jax_fast:
        from . import _jax  # the lean forward with a closed-form custom_vjp backward

        r = _jax.compute(kind, xp, _compute_cast(xp, a, compute), T, ax, m, out)
    if r is not None and r.ndim < a.ndim:  # the kernel's logsumexp drops the axis
        r = xp.expand_dims(r, axis=ax)
    if r is None:
        a = _compute_cast(xp, a, compute)
        r = _torch_fused(kind, xp, a, T, ax, m, out)
    if r is None:
        r = _generic_kernel(kind, xp, a, T, ax, m)
    if r.dtype != out:
        r = xp.astype(r, out)
    if kind == "logsumexp":
        if not keepdims:
            r = xp.squeeze(r, axis=ax)
        if shape is not None:  # axis=None
            r = xp.reshape(r, (1,) * len(shape) if keepdims else ())
    elif shape is not None:
        r = xp.reshape(r, shape)
    result: Array = r
    return result


def _native(kind: Kind, xp: Namespace, x: Any, T: Any, ax: int, mask: Any, out: DType) -> Any:
    """Run the compiled kernel for NumPy inputs when it handles the case (else ``None``)."""
    if not _compat.is_numpy_namespace(xp) or not _config.current().native:
        return None
    try:
        from . import _native as nat
    except ImportError:
        return None
    try_compute = getattr(nat, "try_compute", None)
    if try_compute is None:
        return None
    if x.dtype.kind != "f":  # integers and bools: the kernel takes floats
        x = x.astype(out)
    if T is not None and not isinstance(T, float):
        T = np.broadcast_to(T, tuple(1 if i == ax else n for i, n in enumerate(x.shape)))
    return try_compute(kind, x, T, ax, mask, np.dtype(out))



def _torch_fused(kind: Kind, xp: Namespace, x: Any, T: Any, ax: int, mask: Any,
                 out: DType) -> Any:
    """PyTorch fast path: torch's fused (log_)softmax/logsumexp on ``(x - m)/T``.

    Handles finite positive temperatures and rows whose maximum is finite or ``-inf`` (fully
    masked); returns ``None`` for anything else (T = 0/inf, +inf or NaN maxima), which the generic
    path then computes.  softmax takes about 3 passes over the data instead of the generic
    path's dozen; log_softmax and logsumexp a few more, for the exact ``log1p`` form of the sum.
    """
    if not _compat.is_torch_namespace(xp) or not _config.current().torch_fused:
        return None
    import torch

    fi = torch.finfo(x.dtype)
    if isinstance(T, float):
        # beyond the dtype's max, T itself would round to inf in the division (-inf/inf = NaN
        # at masked entries): the generic path computes such T in a wider form
        if not fi.smallest_normal <= T <= fi.max:
            return None
    elif T.requires_grad:
        # d/dT of a masked entry is 0 * inf in the fused form: learnable T takes the generic path
        return None
    z = x if mask is None else x.masked_fill(~mask, -math.inf)
    if not z.shape[ax]:
        return None
    m = torch.amax(z, dim=ax, keepdim=True)
    empty = m == -math.inf
    # z - m (z >= -max) overflows only where the row maximum m exceeds a quarter of the
    # spacing of floats at the dtype's max: one flag decides whether to halve first
    big = math.ldexp(float(fi.eps), _emax(fi) - 2)
    flags = [torch.all((m < math.inf) & ~torch.isnan(m)), torch.any(empty), torch.any(m >= big)]
    if not isinstance(T, float):
        flags.append(torch.all(torch.isfinite(T) & (T >= fi.smallest_normal)))
    # one host sync for every question (each sync stalls a GPU stream)
    ok, has_empty, has_big, *t_ok = torch.stack(flags).tolist()
    if not ok or not all(t_ok):
        return None
    m0 = torch.where(empty, torch.zeros_like(m), m) if has_empty else m
    if not has_big:
        # (z - m)/T: exact to two roundings, and no overflow (an underflow to -inf is the
        # correctly rounded value there)
        y = torch.sub(z, m0)
        if not (isinstance(T, float) and T == 1.0):
            y = y.div_(T)
    else:
        y = torch.sub(z * 0.5, m0, alpha=0.5).div_(T * 0.5 if isinstance(T, float) else T / 2)
    if has_empty:
        y = torch.where(empty, torch.zeros_like(y), y)
    if kind == "softmax":
        r = torch.softmax(y, dim=ax)
    else:
        # log sum exp(y) = log k + log1p(rest / k), k the maxima (y = 0), rest the others: exact
        # when the sum is close to 1 (torch.logsumexp rounds rest away there)
        top = z == m
        k = top.sum(dim=ax, keepdim=True, dtype=y.dtype).clamp_(min=1)
        grad = torch.is_grad_enabled() and y.requires_grad
        e = torch.exp(y)
        e = e.masked_fill(top, 0.0) if grad else e.masked_fill_(top, 0.0)  # exp saves its output
        log_s = torch.log1p(e.sum(dim=ax, keepdim=True) / k) + torch.log(k)
        if kind == "logsumexp":
            r = m0 + T * log_s
            # T log s alone may overflow where the sum does not (m < 0, huge T): halve
            r = torch.where(torch.isinf(r), 2 * (m0 / 2 + (T / 2) * log_s), r)
        else:
            # without autograd, y is ours to reuse; with it, masked entries (the constant -inf)
            # pass no gradient into the row's sum
            r = torch.where(y == -math.inf, y.detach(), y - log_s) if grad else y.sub_(log_s)
    if has_empty:  # fully masked rows: 0 (softmax), -inf (log_softmax and logsumexp, i.e. m)
        fill = torch.zeros_like(r) if kind == "softmax" else m.detach().expand_as(r)  # no gradient
        r = torch.where(empty, fill, r)
    return r if r.dtype == out else r.to(out)


def _generic(kind: Kind, x: ArrayLike, temperature: Temperature = 1.0, *, axis: int | None = -1,
             mask: ArrayLike | None = None, dtype: DType | None = None,
             keepdims: bool = False) -> Array:
    """The reference implementation of ``kind``: every fast path off (see ``tempscale.config``)."""
    with _config.config(native=False, torch_fused=False, jax_fast=False, triton=False):
        if kind == "logsumexp":
            return logsumexp(x, temperature, axis=axis, mask=mask, keepdims=keepdims)
        if kind == "log_softmax":
            return log_softmax(x, temperature, axis=axis, mask=mask, dtype=dtype)
        return softmax(x, temperature, axis=axis, mask=mask, dtype=dtype)


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------
@_quiet
def softmax(x: ArrayLike, temperature: Temperature = 1.0, *, axis: int | None = -1,
            mask: ArrayLike | None = None, dtype: DType | None = None) -> Array:
    r"""Softmax with temperature, :math:`S(x)_i = e^{x_i/T} / \sum_k e^{x_k/T}`.

    Parameters
    ----------
    x : array_like
        Logits.  Any array-API array (NumPy, PyTorch, JAX, CuPy, Dask, array-api-strict), or a
        nested list (read as NumPy).
    temperature : float or array, default 1.0
        ``T`` in ``[0, inf]``.  ``T < 1`` sharpens toward the largest logit, ``T > 1`` flattens;
        ``T = 0`` is the argmax limit (mass split equally among tied maxima) and ``T = inf`` is
        uniform over the unmasked entries.  An array gives one temperature per row: its shape is
        ``x.shape`` without ``axis``, or with a size-1 ``axis`` kept.  Gradients flow through an
        array temperature (learnable temperatures).
    axis : int or None, default -1
        The axis the probabilities sum over.  ``None`` treats the whole array as one distribution.
        Note: SciPy's ``softmax`` defaults to the whole array and Chainer's to axis 1; tempscale,
        like PyTorch and JAX, defaults to the last axis.
    mask : array of bool, optional
        Broadcastable to ``x``'s shape (it never enlarges the result); ``False`` (or ``0``)
        entries are excluded, exactly like ``-inf`` logits.  Integer masks may hold only 0 and 1.
    dtype : dtype, optional
        The result's dtype.  By default the input's floating dtype (integers and bools promote to
        the library's default float).  float16/bfloat16 are always accumulated in float32.

    Returns
    -------
    array
        Probabilities, same shape, namespace and device as ``x``.  A row with no unmasked entry
        is all zeros; a row holding a NaN is all NaN.

    Notes
    -----
    Computed as ``exp(y) / sum exp(y)`` with ``y = (x - m) / T``, ``m`` the row maximum (halved
    first, ``(x/2 - m/2) / (T/2)``, where ``x - m`` would overflow), so no overflow occurs for
    ``|x|`` up to the dtype's maximum and any ``T`` in ``[0, inf]``.  A temperature array wider
    than the logits (float64 with float32 logits) is not rounded before the division; on NumPy,
    float32 input is computed in float64 on the generic path.  For NumPy float
    arrays a compiled multi-threaded kernel computes the same result (see
    :func:`tempscale.show_config`).

    References
    ----------
    .. [1] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", 2015.
    .. [2] C. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale import softmax
    >>> np.set_printoptions(precision=4)
    >>> softmax(np.array([-1.0, 0.0, 1.0]), 0.5)
    array([0.0159, 0.1173, 0.8668])
    >>> softmax(np.array([1.0, 3.0, 3.0]), 0)          # T = 0: ties share the mass
    array([0. , 0.5, 0.5])
    >>> softmax(np.array([1.0, 2.0, -np.inf]), np.inf) # T = inf: uniform over unmasked
    array([0.5, 0.5, 0. ])
    >>> softmax(np.array([[-np.inf, -np.inf]]))        # fully masked: zeros, not NaN
    array([[0., 0.]])
    """
    return dispatch("softmax", x, temperature, axis, mask, dtype)


@_quiet
def log_softmax(x: ArrayLike, temperature: Temperature = 1.0, *, axis: int | None = -1,
                mask: ArrayLike | None = None, dtype: DType | None = None) -> Array:
    r"""Logarithm of the temperature softmax, :math:`x_i/T - \log\sum_k e^{x_k/T}`.

    Same parameters and contract as :func:`softmax`.  Masked entries, the non-maximal entries at
    ``T = 0`` and every entry of a fully masked row are ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale import log_softmax
    >>> np.set_printoptions(precision=4)
    >>> log_softmax(np.array([-1.0, 0.0, 1.0]), 2.0)
    array([-1.6803, -1.1803, -0.6803])
    >>> log_softmax(np.array([0.0, 5.0, 5.0]), 0)
    array([   -inf, -0.6931, -0.6931])
    """
    return dispatch("log_softmax", x, temperature, axis, mask, dtype)


@_quiet
def logsumexp(x: ArrayLike, temperature: Temperature = 1.0, *, axis: int | None = -1,
              mask: ArrayLike | None = None, keepdims: bool = False) -> Array:
    r"""The smooth maximum :math:`T \log \sum_i e^{x_i/T}`.

    It equals ``max(x)`` at ``T = 0`` and the ordinary logsumexp at ``T = 1``; as ``T`` grows it
    tends to ``+inf`` for rows with two or more unmasked entries (``T log n`` plus the mean).
    A fully masked (or empty) row gives ``-inf``; a NaN makes the row NaN.

    Parameters
    ----------
    x, temperature, axis, mask
        As in :func:`softmax`.
    keepdims : bool, default False
        Keep the reduced axis with size 1.

    Returns
    -------
    array
        ``x``'s floating dtype (float16/bfloat16 accumulate in float32); integer input promotes
        to the default float dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale import logsumexp
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> float(logsumexp(x))
    3.40760596...
    >>> float(logsumexp(x, 0)), float(logsumexp(x, 0.1))
    (3.0, 3.0000045...)
    """
    return dispatch("logsumexp", x, temperature, axis, mask, None, keepdims)


@_quiet
def temper(p: ArrayLike, temperature: Temperature, *, axis: int | None = -1) -> Array:
    r"""Re-temper probabilities: :math:`p_i^{1/T} / \sum_k p_k^{1/T}`, computed in log space.

    Use this when you hold probabilities, not logits.  Feeding probabilities to :func:`softmax`
    as if they were logits is a classic mistake: probabilities live in ``[0, 1]``, so
    ``softmax(p)`` is already nearly uniform at ``T = 1`` and barely reacts to ``T``.
    ``temper(p, T)`` equals ``softmax(log(p), T)``: ``T = 1`` returns ``p`` (normalised),
    ``T < 1`` sharpens, ``T > 1`` flattens, ``T = 0`` puts the mass on the argmax (split among
    ties) and ``T = inf`` is uniform over the support.  Zeros stay zero.

    Parameters
    ----------
    p : array_like
        Non-negative weights along ``axis`` (they need not sum to 1).
    temperature : float or array
        As in :func:`softmax`.
    axis : int or None, default -1
        ``None`` (or a 0-d ``p``) treats the whole array as one distribution.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale import temper
    >>> np.set_printoptions(precision=4)
    >>> p = np.array([0.1, 0.2, 0.7, 0.0])
    >>> temper(p, 1.0)
    array([0.1, 0.2, 0.7, 0. ])
    >>> temper(p, 0.5)
    array([0.0185, 0.0741, 0.9074, 0.    ])
    >>> temper(p, np.inf)
    array([0.3333, 0.3333, 0.3333, 0.    ])
    """
    xp = array_namespace(p)
    q = _compat.as_array(p, xp)
    if xp.isdtype(q.dtype, ("integral", "bool")):
        q = xp.astype(q, _compat.default_float_dtype(xp, _compat.device(q)))
    if is_concrete(q) and q.ndim and math.prod(q.shape) and bool(xp.any(q < 0)):
        raise param_error("p", "temper", "an array of non-negative probabilities",
                          "an array with negative entries")
    if q.ndim == 0 or axis is None:
        axis = None  # a 0-d p is one distribution of one entry
    else:
        check_axis(axis, q.ndim, "temper")
    pos = q > 0
    logp = xp.where(pos, xp.log(xp.where(pos, q, xp.ones_like(q))),
                    xp.asarray(-math.inf, dtype=q.dtype, device=_compat.device(q)))
    logp = xp.where(xp.isnan(q), q, logp)
    return dispatch("softmax", logp, temperature, axis, None, None, func="temper")
