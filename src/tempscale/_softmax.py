"""Temperature softmax, log-softmax, logsumexp and re-tempering: one Array-API implementation.

Every function takes the array first, finds its namespace and uses only ``xp.*`` operations, so
NumPy, PyTorch (autograd intact), JAX (``jit``/``grad``/``vmap`` intact), array-api-strict and Dask
arrays all work.  For NumPy float arrays a compiled kernel (:mod:`tempscale._native`) computes the
same contract faster; this module is its reference.

The numerical contract
----------------------
* ``temperature`` is a float in ``[0, inf]`` or an array of per-row temperatures.
* ``T = 0`` is the exact limit: the mass is shared equally among the row's maxima.
  ``T = inf`` is the uniform distribution over the row's unmasked entries.
* ``-inf`` logits (and ``mask == False`` entries) are masked.  A row with nothing unmasked gives
  zeros (softmax), ``-inf`` (log-softmax, logsumexp), never NaN.
* ``+inf`` logits take the limit: the mass is shared among the ``+inf`` entries (at every T).
* A NaN anywhere in a row makes the whole row NaN.
* No overflow for any finite input: ``(x - max)/T`` is evaluated as ``(x/2 - max/2)/(T/2)``.
* float16/bfloat16 are computed in float32 and returned in their own dtype.
"""

from __future__ import annotations

import math

import numpy as np

from . import _compat
from ._compat import array_namespace, is_concrete, is_python_scalar
from ._compat import quiet as _quiet
from ._validation import check_axis, param_error

__all__ = ["softmax", "log_softmax", "logsumexp", "temper"]

_T_EXPECT = "a float in [0, inf] or an array of per-row temperatures"


# --------------------------------------------------------------------------------------------
# argument preparation
# --------------------------------------------------------------------------------------------
def _float_dtypes(xp, x, dtype, func):
    """(compute dtype, output dtype) for input ``x`` and the user's ``dtype=``."""
    dev = _compat.device(x)
    if dtype is not None:
        try:
            ok = xp.isdtype(dtype, "real floating")
        except Exception:
            ok = False
        if not ok:
            raise param_error("dtype", func, "a real floating dtype or None", dtype, TypeError)
        out = dtype
    elif xp.isdtype(x.dtype, "real floating"):
        out = x.dtype
    elif xp.isdtype(x.dtype, ("integral", "bool")):
        out = _compat.default_float_dtype(xp, dev)
    else:
        raise param_error("x", func, "an array of real numbers", f"dtype {x.dtype}", TypeError)
    compute = xp.float32 if _compat.float_bits(xp, out) < 32 else out
    return compute, out


def _prepare(x, temperature, axis, mask, dtype, func):
    """Validate and convert; returns everything the kernels need."""
    xp = array_namespace(x)
    x = _compat.as_array(x, xp)
    compute, out = _float_dtypes(xp, x, dtype, func)
    if axis is None:
        shape = x.shape
        if mask is not None:
            mask = _as_mask(mask, x, xp, func)
            mask = xp.reshape(xp.broadcast_to(mask, shape), (-1,))
        x = xp.reshape(x, (-1,))
        ax = 0
    else:
        shape = None
        ax = check_axis(axis, x.ndim, func)
        if mask is not None:
            mask = _as_mask(mask, x, xp, func)
    T = _prepare_temperature(temperature, x, ax, xp, compute, func, flat=axis is None)
    return xp, x, T, ax, mask, out, shape, compute


def _compute_cast(xp, x, compute):
    return x if x.dtype == compute else xp.astype(x, compute)


def _as_mask(mask, x, xp, func):
    mask = _compat.as_array(mask, xp, like=x)
    if mask.dtype != xp.bool:
        raise param_error("mask", func, "a boolean array (True = keep)", f"dtype {mask.dtype}", TypeError)
    try:
        xp.broadcast_shapes(mask.shape, x.shape)
    except (ValueError, RuntimeError):
        raise param_error(
            "mask", func, f"broadcastable to the input's shape {tuple(x.shape)}",
            f"shape {tuple(mask.shape)}") from None
    return mask


def _prepare_temperature(temperature, x, ax, xp, compute, func, *, flat=False):
    """A Python float, or an array of shape ``x.shape`` with 1 at ``ax`` (keepdims form)."""
    if is_python_scalar(temperature):
        t = float(temperature)
        if math.isnan(t) or t < 0:
            raise param_error("temperature", func, _T_EXPECT, temperature)
        return t
    T = _compat.as_array(temperature, xp, like=x)
    if not xp.isdtype(T.dtype, ("real floating", "integral")):
        raise param_error("temperature", func, _T_EXPECT, f"an array of dtype {T.dtype}", TypeError)
    if T.dtype != compute:
        T = xp.astype(T, compute)
    kshape = tuple(1 if i == ax else n for i, n in enumerate(x.shape))
    if T.ndim == 0:
        pass
    elif flat:
        if math.prod(T.shape) != 1:
            raise param_error("temperature", func, "a scalar when axis=None", f"shape {tuple(T.shape)}")
        T = xp.reshape(T, ())
    elif T.ndim == x.ndim - 1 and tuple(T.shape) == kshape[:ax] + kshape[ax + 1:]:
        T = xp.expand_dims(T, axis=ax)
    elif T.ndim == x.ndim and _broadcasts(T.shape, kshape):
        pass
    elif T.ndim == x.ndim - 1 and _broadcasts(T.shape, kshape[:ax] + kshape[ax + 1:]):
        T = xp.expand_dims(T, axis=ax)
    else:
        expect = (f"a float or an array of per-row temperatures of shape "
                  f"{kshape[:ax] + kshape[ax + 1:]} or {kshape}")
        raise param_error("temperature", func, expect, f"an array of shape {tuple(T.shape)}")
    if is_concrete(T):
        bad = xp.logical_or(xp.isnan(T), T < 0)
        if bool(xp.any(bad)):
            got = _first_bad(T, bad, xp)
            raise param_error("temperature", func, _T_EXPECT, got)
    return T


def _broadcasts(src, dst) -> bool:
    return len(src) == len(dst) and all(s in (1, d) for s, d in zip(src, dst))


def _first_bad(T, bad, xp):
    """The first negative or NaN temperature, for the error message."""
    t = _compat.to_numpy(T).reshape(-1)
    b = _compat.to_numpy(bad).reshape(-1)
    return float(t[b][0])


# --------------------------------------------------------------------------------------------
# the one generic kernel
# --------------------------------------------------------------------------------------------
def _core(xp, x, T, ax, mask):
    """Shared pieces: (y, s, log_s, m, m_safe, empty, tie, nan_row) with ``y = (x - m)/T`` made safe.

    ``y`` is the tempered, max-shifted logit (``-inf`` at masked entries, ``0`` at the maxima of
    "tie" rows, i.e. rows with ``T == 0`` or a ``+inf`` maximum); ``log_s`` is ``log sum exp(y)``
    with fully masked rows given ``log_s = 0``.  Every branch that ``xp.where`` does not select is
    kept finite, so gradients stay NaN-free (the double-``where`` trick).
    """
    ninf = xp.asarray(-math.inf, dtype=x.dtype, device=_compat.device(x))
    if mask is not None:
        x = xp.where(mask, x, ninf)
    nan_row = xp.any(xp.isnan(x), axis=ax, keepdims=True)
    valid = x > ninf                                   # False at -inf, masked and NaN entries
    m = xp.max(xp.where(valid, x, ninf), axis=ax, keepdims=True) if x.shape[ax] else \
        xp.full(tuple(1 if i == ax else n for i, n in enumerate(x.shape)), -math.inf,
                dtype=x.dtype, device=_compat.device(x))
    empty = m == ninf
    m_fin = xp.isfinite(m)
    m_safe = xp.where(m_fin, m, xp.zeros_like(m))
    if is_python_scalar(T):
        tie = xp.logical_or(m == math.inf, xp.asarray(T == 0, device=_compat.device(x)))
        # below the dtype's smallest normal, T/2 would underflow to 0 (0/0 = NaN at the max):
        # clamp there; the result is already the argmax limit for every representable gap
        t_half = max(T / 2, float(xp.finfo(x.dtype).smallest_normal)) if T != 0 else 0.5
    else:
        tie = xp.logical_or(m == math.inf, T == 0)
        t_half = xp.where(T == 0, xp.ones_like(T), T) / 2
        # a negative or NaN temperature that could not be checked eagerly (traced) gives NaN
        t_half = xp.where(T >= 0, t_half, xp.full_like(T, math.nan))
        t_half = xp.maximum(t_half, xp.full_like(t_half, float(xp.finfo(x.dtype).smallest_normal)))
    use = xp.logical_and(valid, xp.logical_not(tie))
    x_safe = xp.where(use, x, m_safe)
    y_gen = (x_safe / 2 - m_safe / 2) / t_half
    zero = xp.zeros_like(y_gen)
    y_tie = xp.where(x == m, zero, ninf)
    y = xp.where(valid, xp.where(tie, y_tie, y_gen), ninf)
    s = xp.sum(xp.exp(y), axis=ax, keepdims=True)
    s_safe = xp.where(empty, xp.ones_like(s), s)
    log_s = xp.log(s_safe)
    return y, s_safe, log_s, m, m_safe, empty, tie, nan_row


def _generic_kernel(kind, xp, x, T, ax, mask):
    """``kind`` on the generic Array-API path, keepdims form for logsumexp."""
    y, s, log_s, m, m_safe, empty, tie, nan_row = _core(xp, x, T, ax, mask)
    if kind == "softmax":
        r = xp.exp(y) / s  # exp(y)/s: fewer roundings than exp(y - log s)
    elif kind == "log_softmax":
        r = y - log_s
    else:
        # T log s, with T log 1 = 0 also at T = inf and no inf * 0 in either branch's gradient
        zero = xp.zeros_like(log_s)
        if is_python_scalar(T):
            t = 0.0 if T == 0 else T
            scaled = xp.where(log_s == 0, zero, t * xp.where(log_s == 0, zero + 1, log_s))
        else:
            t_safe = xp.where(xp.logical_or(log_s == 0, T == 0), zero + 1, T + zero)
            scaled = xp.where(log_s == 0, zero, t_safe * log_s)
        # T = 0 and +inf rows: the max; fully masked rows: m = -inf
        r = xp.where(xp.logical_or(tie, empty), m, m_safe + scaled)
    return xp.where(nan_row, xp.asarray(math.nan, dtype=r.dtype, device=_compat.device(r)), r)


def _compute(kind, x, temperature, axis, mask, dtype, keepdims=True):
    """Validate, then the first path that takes the case: native, fused torch, generic.

    ``kind`` is the public function's name (also used in error messages).
    """
    xp, x, T, ax, mask, out, shape, compute = _prepare(x, temperature, axis, mask, dtype, kind)
    r = _native(kind, xp, x, T, ax, mask, out)  # converts float16 itself
    if r is not None and r.ndim < x.ndim:  # the kernel's logsumexp drops the axis
        r = xp.expand_dims(r, axis=ax)
    if r is None:
        x = _compute_cast(xp, x, compute)
        r = _torch_fused(kind, xp, x, T, ax, mask, out)
    if r is None:
        r = _generic_kernel(kind, xp, x, T, ax, mask)
    if r.dtype != out:
        r = xp.astype(r, out)
    if kind == "logsumexp":
        if not keepdims:
            r = xp.squeeze(r, axis=ax)
        if shape is not None:  # axis=None
            r = xp.reshape(r, (1,) * len(shape) if keepdims else ())
    elif shape is not None:
        r = xp.reshape(r, shape)
    return r


def _native(kind, xp, x, T, ax, mask, out):
    """Run the compiled kernel for NumPy inputs when it handles the case (else ``None``)."""
    if not _compat.is_numpy_namespace(xp) or not _NATIVE_OK:
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


_NATIVE_OK = True  # the test suite switches this off to compare against the generic path


def _torch_fused(kind, xp, x, T, ax, mask, out):
    """PyTorch fast path: torch's fused (log_)softmax/logsumexp on ``(x - m)/T``.

    Handles finite positive temperatures and rows whose maximum is finite or ``-inf`` (fully
    masked); returns ``None`` for anything else (T = 0/inf, +inf or NaN maxima), which the generic
    path then computes.  About 3 passes over the data instead of the generic path's dozen.
    """
    if not _NATIVE_OK or not _compat.is_torch_namespace(xp):
        return None
    import torch

    if isinstance(T, float):
        if not torch.finfo(x.dtype).smallest_normal <= T < math.inf:
            return None
    elif T.requires_grad or not bool(torch.all(torch.isfinite(T) & (T > 0))):
        # d/dT of a masked entry is 0 * inf in the fused form: learnable T takes the generic path
        return None
    z = x if mask is None else x.masked_fill(~mask, -math.inf)
    if not z.shape[ax]:
        return None
    m = torch.amax(z, dim=ax, keepdim=True)
    empty = m == -math.inf
    # one host sync for both questions (each sync stalls a GPU stream)
    ok, has_empty = torch.stack([torch.all((m < math.inf) & ~torch.isnan(m)), torch.any(empty)]).tolist()
    if not ok:
        return None
    m0 = torch.where(empty, torch.zeros_like(m), m) if has_empty else m
    if isinstance(T, float):
        # T < 1: (z - m)/T cannot overflow upward (and overflows downward only to a true -inf);
        # T >= 1: z/T cannot overflow at all and torch's softmax shifts by the max itself
        y = torch.sub(z, m0).div_(T) if T < 1 else z / T
    else:
        y = (z / 2 - m0 / 2) / (T / 2)
    if has_empty:
        y = torch.where(empty, torch.zeros_like(y), y)
    if kind == "softmax":
        r = torch.softmax(y, dim=ax)
    elif kind == "log_softmax":
        r = torch.log_softmax(y, dim=ax)
    else:
        shift = m0 if (not isinstance(T, float) or T < 1) else torch.zeros_like(m0)
        r = shift + T * torch.logsumexp(y, dim=ax, keepdim=True)
    if has_empty:  # fully masked rows: 0 (softmax), -inf (log_softmax and logsumexp, i.e. m)
        fill = torch.zeros_like(r) if kind == "softmax" else m.detach().expand_as(r)  # no gradient
        r = torch.where(empty, fill, r)
    return r if r.dtype == out else r.to(out)


def _generic(kind, x, temperature=1.0, *, axis=-1, mask=None, dtype=None, keepdims=False):
    """The reference implementation of ``kind`` with the native kernel switched off."""
    global _NATIVE_OK
    func = {"softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp}[kind]
    saved, _NATIVE_OK = _NATIVE_OK, False
    try:
        if kind == "logsumexp":
            return func(x, temperature, axis=axis, mask=mask, keepdims=keepdims)
        return func(x, temperature, axis=axis, mask=mask, dtype=dtype)
    finally:
        _NATIVE_OK = saved


# --------------------------------------------------------------------------------------------
# public functions
# --------------------------------------------------------------------------------------------
@_quiet
def softmax(x, temperature=1.0, *, axis=-1, mask=None, dtype=None):
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
        Broadcastable to ``x``; ``False`` entries are excluded, exactly like ``-inf`` logits.
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
    Computed as ``exp(y - log sum exp(y))`` with ``y = (x/2 - m/2) / (T/2)``, ``m`` the row
    maximum: the halving keeps ``x - m`` finite for every finite input, so no overflow occurs for
    ``|x|`` up to the dtype's maximum and ``T`` anywhere in ``[1e-30, 1e30]``.  For NumPy float
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
    return _compute("softmax", x, temperature, axis, mask, dtype)


@_quiet
def log_softmax(x, temperature=1.0, *, axis=-1, mask=None, dtype=None):
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
    return _compute("log_softmax", x, temperature, axis, mask, dtype)


@_quiet
def logsumexp(x, temperature=1.0, *, axis=-1, mask=None, keepdims=False):
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
    return _compute("logsumexp", x, temperature, axis, mask, None, keepdims)


@_quiet
def temper(p, temperature, *, axis=-1):
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
    axis : int, default -1

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
    p = _compat.as_array(p, xp)
    if xp.isdtype(p.dtype, ("integral", "bool")):
        p = xp.astype(p, _compat.default_float_dtype(xp, _compat.device(p)))
    if is_concrete(p) and p.ndim and math.prod(p.shape) and bool(xp.any(p < 0)):
        raise param_error("p", "temper", "an array of non-negative probabilities",
                          "an array with negative entries")
    if p.ndim:
        check_axis(axis, p.ndim, "temper")
    pos = p > 0
    logp = xp.where(pos, xp.log(xp.where(pos, p, xp.ones_like(p))),
                    xp.asarray(-math.inf, dtype=p.dtype, device=_compat.device(p)))
    logp = xp.where(xp.isnan(p), p, logp)
    return softmax(logp, temperature, axis=axis)
