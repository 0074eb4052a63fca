r"""Sampling with temperature: top-k / top-p / min-p truncation, greedy at ``T = 0``, Gumbel-softmax.

Three public functions, one implementation over the Python Array API (NumPy, PyTorch, JAX,
array-api-strict), with exact fast paths for NumPy and PyTorch:

* :func:`warp` -- the final sampling distribution after temperature and truncation;
* :func:`sample` -- draws token indices from it (with or without replacement), reproducibly;
* :func:`gumbel_softmax` -- the relaxed (and straight-through) categorical sample.

The sampler chain
-----------------
``order="temperature-first"`` (Hugging Face transformers, vLLM) divides the logits by ``T`` and
then applies top-k, top-p and min-p, in that order, each on the distribution left by the one
before (renormalised over the survivors).  ``order="temperature-last"`` (llama.cpp's default
chain) applies the same three filters to the ``T = 1`` distribution and then the temperature to
the survivors only: the set of candidate tokens does not depend on ``T``, only their weights do.

Rules (the same on every backend, and on the fast and generic paths):

* **top-k** keeps every token whose (tempered) logit is ``>=`` the ``k``-th largest, so ties at
  the ``k``-th value are all kept -- transformers' ``TopKLogitsWarper`` rule.  ``top_k >= V``
  keeps everything.
* **top-p** keeps the smallest set of most probable tokens whose mass reaches ``top_p``: a token
  is kept when the mass of the tokens ranked strictly before it is ``< top_p``.  This is
  transformers' ``TopPLogitsWarper`` (ascending sort, remove ``cumsum <= 1 - top_p``) written
  from the other end.  Tokens ranked by logit, ties by *lower index first* (as ``argmax``):
  transformers' CPU sort leaves the order of tied logits unspecified, so only which of several
  *tied* tokens survives at the boundary can differ from it.  ``top_p = 1`` disables the filter.
* **min-p** removes tokens whose probability is ``< min_p`` times the largest probability
  (transformers' ``MinPLogitsWarper``); ``min_p = 0`` disables it.
* ``min_tokens_to_keep`` protects the first ``n`` tokens of that ranking from top-p and min-p,
  and raises top-k to at least ``n``.
* **T = 0** is greedy decoding: all the mass on the *first* maximal logit (lowest index among
  ties, like ``argmax``), whatever the filters.  It equals ``top_k=1`` when the maximum is unique
  (top-k keeps tied maxima).  Note :func:`tempscale.softmax` at ``T = 0`` *splits* the mass among
  tied maxima; a sampler must pick one token.  ``T = inf`` is uniform (over the survivors).
* ``-inf`` logits and ``mask == False`` entries are never drawn.  A **fully masked row** gives an
  all-zero distribution (log-probabilities ``-inf``), never NaN, and :func:`sample` returns the
  index ``-1`` (log-probability ``-inf``) for it.  A row containing NaN gives a NaN distribution
  and index ``-1`` with log-probability NaN.

Random numbers
--------------
Pass ``seed=`` (a non-negative int) for reproducible draws on any backend, or ``rng=`` with the
library's own generator: a :class:`numpy.random.Generator` for NumPy (and array-api-strict), a
:class:`torch.Generator` (on the tensor's device) for PyTorch, a PRNG key
(``jax.random.key(0)`` or ``jax.random.PRNGKey(0)``) for JAX.  With neither, NumPy and PyTorch use
fresh OS entropy / the global torch generator and JAX draws a fresh key from OS entropy (pass a key
under ``jax.jit``).  The same seed gives the same draws; the fast and the generic path use the
same uniforms and agree draw for draw except where rounding of the CDF differs.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _compat
from ._compat import array_namespace, is_concrete, is_python_scalar
from ._compat import quiet as _quiet
from ._compat import to_numpy as _to_numpy
from ._softmax import _as_mask, _float_dtypes, _prepare_temperature, log_softmax, softmax
from ._validation import check_axis, check_bool, check_choice, check_scalar, param_error

__all__ = ["warp", "sample", "gumbel_softmax"]

ORDERS = ("temperature-first", "temperature-last")

#: the fast top-p search stops bisecting once a row's undecided band holds at most this many tokens
_GAP = 256
_FAST_OK = True  # tests switch this off to compare the fast paths against the generic one


# --------------------------------------------------------------------------------------------
# argument preparation
# --------------------------------------------------------------------------------------------
class _Args:
    """Validated arguments in the (rows, vocabulary) layout every kernel works on."""

    __slots__ = ("xp", "x", "mask", "T", "top_k", "top_p", "min_p", "order", "mtk", "out",
                 "batch_shape", "ax", "ndim", "B", "V", "func")


def _prepare(logits, temperature, top_k, top_p, min_p, order, mtk, axis, mask, func) -> _Args:
    a = _Args()
    a.func = func
    xp = array_namespace(logits)
    if _compat.is_dask_namespace(xp):
        raise param_error("logits", func, "an in-memory array (call .compute() on a Dask array; "
                          "sampling needs take_along_axis)", "a Dask array", TypeError)
    x = _compat.as_array(logits, xp)
    if x.ndim == 0:
        raise param_error("logits", func, "an array with at least one dimension", "a 0-d array")
    compute, out = _float_dtypes(xp, x, None, func)
    ax = check_axis(axis, x.ndim, func)
    a.order = check_choice(order, ORDERS, "order", func)
    a.mtk = check_scalar(mtk, "min_tokens_to_keep", func, lo=1, integer=True)
    if x.dtype != compute:
        x = xp.astype(x, compute)
    T = _prepare_temperature(temperature, x, ax, xp, compute, func)
    if mask is not None:
        mask = xp.broadcast_to(_as_mask(mask, x, xp, func), x.shape)
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
    a.top_k = _row_param(top_k, "top_k", a, kshape, integer=True, lo=1, hi=math.inf,
                         expect="an int >= 1 or an array of per-row ints")
    a.top_p = _row_param(top_p, "top_p", a, kshape, lo=0, hi=1, lo_open=True,
                         expect="a float in (0, 1] or an array of per-row floats")
    a.min_p = _row_param(min_p, "min_p", a, kshape, lo=0, hi=1,
                         expect="a float in [0, 1] or an array of per-row floats")
    return a


def _shape(x):
    return getattr(x, "shape", np.shape(x))


def _rows(arr, ax, B, xp):
    """A keepdims-shaped per-row array as (B, 1)."""
    return xp.reshape(xp.moveaxis(arr, ax, -1), (B, 1))


def _row_param(value, name, a, kshape, *, lo, hi, expect, integer=False, lo_open=False):
    """None, a Python number, or a (B, 1) array of per-row values (checked when concrete)."""
    if value is None:
        return None
    xp, func = a.xp, a.func
    if isinstance(value, numbers.Real) and not isinstance(value, np.ndarray):
        if isinstance(value, np.generic):
            value = value.item()
        v = check_scalar(value, name, func, lo=lo, hi=hi, lo_open=lo_open, integer=integer)
        if integer:
            v = min(v, a.V)
        return v
    arr = _compat.as_array(value, xp, like=a.x)
    kind = "integral" if integer else ("real floating", "integral")
    if not xp.isdtype(arr.dtype, kind):
        raise param_error(name, func, expect, f"an array of dtype {arr.dtype}", TypeError)
    batch = kshape[:a.ax] + kshape[a.ax + 1:]
    if arr.ndim == 0:
        arr = xp.reshape(arr, (1,) * len(kshape))
    elif arr.ndim == len(kshape) - 1 and _bcast(arr.shape, batch):
        arr = xp.expand_dims(arr, axis=a.ax)
    elif not (arr.ndim == len(kshape) and _bcast(arr.shape, kshape)):
        raise param_error(name, func, f"{expect} of shape {batch} or {kshape}",
                          f"an array of shape {tuple(arr.shape)}")
    arr = _rows(xp.broadcast_to(arr, kshape), a.ax, a.B, xp)
    if not integer and arr.dtype != a.x.dtype:
        arr = xp.astype(arr, a.x.dtype)
    if is_concrete(arr):
        if integer:
            bad = arr < lo
        else:
            bad = xp.logical_or(xp.isnan(arr), xp.logical_or(arr < lo, arr > hi))
            if lo_open:
                bad = xp.logical_or(bad, arr == lo)
        if bool(xp.any(bad)):
            got = np.asarray(_to_numpy(arr)).reshape(-1)[np.asarray(_to_numpy(bad)).reshape(-1)][0]
            raise param_error(name, func, expect, got.item())
    if integer:
        arr = xp.clip(arr, None, a.V)
    return arr


def _bcast(src, dst) -> bool:
    return len(src) == len(dst) and all(s in (1, d) for s, d in zip(src, dst))


def _full(xp, like, value, shape=None, dtype=None):
    return xp.full(like.shape if shape is None else shape, value,
                   dtype=like.dtype if dtype is None else dtype, device=_compat.device(like))


def _is_zero_T(a):
    """Greedy rows: a Python bool for a scalar temperature, else a (B, 1) bool array."""
    return a.T == 0


def _restore(a, r):
    """(B, V) or (B, n) back to the user's layout (the axis moved back into place)."""
    xp = a.xp
    r = xp.reshape(r, a.batch_shape + (r.shape[-1],))
    return xp.moveaxis(r, -1, a.ax) if r.ndim > 1 else r


# --------------------------------------------------------------------------------------------
# the generic (reference) implementation: one full sort per filter, xp operations only
# --------------------------------------------------------------------------------------------
def _filter_logits(a):
    """(z, valid, nan_row): the logits the filters see (tempered first or not), masked with -inf."""
    xp, x = a.xp, a.x
    ninf = _full(xp, x, -math.inf, shape=())
    valid = x > ninf
    if a.mask is not None:
        valid = xp.logical_and(valid, a.mask)
    nan = xp.isnan(x)
    if a.mask is not None:
        nan = xp.logical_and(nan, a.mask)  # a masked NaN is masked, as in softmax
    nan_row = xp.any(nan, axis=-1, keepdims=True)
    if a.order == "temperature-first":
        T = a.T
        if is_python_scalar(T):
            z = x if T in (0.0, 1.0) else x / T
        else:
            z = x / xp.where(T == 0, xp.ones_like(T), T)
        z = xp.where(x == math.inf, x, z)  # +inf / inf would be NaN; +inf logits keep the limit
    else:
        z = x
    z = xp.where(valid, z, ninf)
    return z, valid, nan_row


def _generic_keep(a, z, valid):
    """The keep mask after top-k, top-p, min-p (generic path)."""
    xp = a.xp
    B, V = a.B, a.V
    ninf = _full(xp, z, -math.inf, shape=())
    keep = valid
    need_order = a.top_p is not None or (a.min_p is not None and a.mtk > 1)
    if a.top_k is not None:
        k = a.top_k
        srt = xp.sort(z, axis=-1, descending=True)
        if is_python_scalar(k):
            k = max(k, a.mtk)
            kth = srt[:, k - 1:k]
        else:
            k = xp.clip(k, a.mtk, V)
            kth = xp.take_along_axis(srt, xp.astype(k - 1, _idx(xp)), axis=-1)
        keep = xp.logical_and(keep, z >= kth)
        z = xp.where(keep, z, ninf)
    if need_order:
        pos = xp.arange(V, device=_compat.device(z))
    if a.top_p is not None:
        idx = xp.argsort(z, axis=-1, descending=True, stable=True)  # value desc, index asc
        zs = xp.take_along_axis(z, idx, axis=-1)
        wide = _u64(xp, z)
        ps = softmax(xp.astype(zs, wide) if zs.dtype != wide else zs, axis=-1)
        before = xp.cumulative_sum(ps, axis=-1) - ps  # mass ranked strictly before each token
        tp = a.top_p
        rem = before >= tp
        if not is_python_scalar(tp):
            rem = xp.logical_and(rem, tp < 1)
        elif tp >= 1:
            rem = xp.zeros_like(rem)
        inv = xp.argsort(idx, axis=-1)
        protected = xp.take_along_axis(xp.broadcast_to(pos < a.mtk, (B, V)), inv, axis=-1)
        rem = xp.logical_and(xp.take_along_axis(rem, inv, axis=-1), xp.logical_not(protected))
        keep = xp.logical_and(keep, xp.logical_not(rem))
        z = xp.where(keep, z, ninf)
    if a.min_p is not None:
        p = softmax(z, axis=-1)
        pmax = xp.max(p, axis=-1, keepdims=True)
        rem = p < a.min_p * pmax
        if a.mtk > 1:
            idx = xp.argsort(z, axis=-1, descending=True, stable=True)
            inv = xp.argsort(idx, axis=-1)
            prot = xp.take_along_axis(xp.broadcast_to(pos < a.mtk, (B, V)), inv, axis=-1)
            rem = xp.logical_and(rem, xp.logical_not(prot))
        keep = xp.logical_and(keep, xp.logical_not(rem))
    return keep


def _greedy_keep(a, keep, valid):
    """Rows with T = 0 keep only their first maximal logit (among the unmasked ones)."""
    xp = a.xp
    zero_T = _is_zero_T(a)
    if zero_T is False:
        return keep
    ninf = _full(xp, a.x, -math.inf, shape=())
    xm = xp.where(valid, a.x, ninf)
    am = xp.argmax(xm, axis=-1, keepdims=True)
    pos = xp.arange(a.V, device=_compat.device(a.x))
    onehot = xp.logical_and(pos == am, valid)
    if zero_T is True:
        return onehot
    return xp.where(zero_T, onehot, keep)


def _final(a, z, keep):
    """(final logits, final temperature) whose softmax under ``mask=keep`` is the result."""
    xp = a.xp
    if a.order == "temperature-first":
        return z, 1.0
    T = a.T
    if is_python_scalar(T):
        return a.x, (1.0 if T == 0 else T)
    return a.x, xp.where(T == 0, xp.ones_like(T), T)


def _warp_parts(a):
    """(final logits, final T, keep, nan_row) on the full (B, V) layout, generic path."""
    z, valid, nan_row = _filter_logits(a)
    keep = _greedy_keep(a, _generic_keep(a, z, valid), valid)
    zf, Tf = _final(a, z, keep)
    return zf, Tf, keep, nan_row


def _distribution(a, log):
    f = log_softmax if log else softmax
    fast = _fast_parts(a) if _FAST_OK else None
    c = a  # the arguments (and namespace) the computation runs in
    if fast is not None:
        c, (ci, cf, Tf, keepc, nan_row) = fast
        zf, keep = _scatter_full(c, ci, cf, keepc)
    else:
        zf, Tf, keep, nan_row = _warp_parts(a)
    r = f(zf, Tf, axis=-1, mask=keep)
    r = c.xp.where(nan_row, _full(c.xp, r, math.nan, shape=()), r)
    return r if c is a else _to_torch(r)


# --------------------------------------------------------------------------------------------
# the fast path (NumPy and PyTorch): no full sort
# --------------------------------------------------------------------------------------------
class _NumpyOps:
    """The few operations of the fast path that the Array API lacks, for NumPy."""

    @staticmethod
    def topk(z, k):
        V = z.shape[-1]
        idx = np.argpartition(z, V - k, axis=-1)[:, V - k:]
        vals = np.take_along_axis(z, idx, axis=-1)
        o = np.argsort(-vals, axis=-1, kind="stable")
        return np.take_along_axis(vals, o, axis=-1), np.take_along_axis(idx, o, axis=-1)

    @classmethod
    def topk_superset(cls, z, k):
        """A compact set holding every token >= the k-th largest of its row, or None.

        A strided sample of each row gives a threshold whose count is checked exactly, so no
        partition of the whole vocabulary is needed: one comparison pass and one compaction.
        """
        B, V = z.shape
        stride = max(1, V // 2048)
        smp = z[:, ::stride]
        j = min(smp.shape[-1], 2 * (-(-k // stride)) + 8)
        if stride == 1 or j >= smp.shape[-1]:
            return None
        t = np.partition(smp, smp.shape[-1] - j, axis=-1)[:, smp.shape[-1] - j:smp.shape[-1] - j + 1]
        sel = z >= t
        cnt = np.count_nonzero(sel, axis=-1)
        if cnt.min() < k or cnt.max() > 64 * (k + 2 * stride):
            return None
        return cls.compact(z, sel)

    @staticmethod
    def argsort(i):
        return np.argsort(i, axis=-1)

    @staticmethod
    def count(m):
        return np.count_nonzero(m, axis=-1, keepdims=True)

    @staticmethod
    def msum(e, m):
        return np.sum(e * m, axis=-1, keepdims=True).astype(np.float64)

    @staticmethod
    def compact(z, mask):
        """Per row the indices and values where ``mask``, in index order, padded with (0, -inf)."""
        rows, cols = np.nonzero(mask)
        B = z.shape[0]
        counts = np.bincount(rows, minlength=B)
        width = max(int(counts.max()) if counts.size else 0, 1)
        at = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
        ci = np.zeros((B, width), dtype=np.int64)
        cz = np.full((B, width), -np.inf, dtype=z.dtype)
        ci[rows, at] = cols
        cz[rows, at] = z[rows, cols]
        return ci, cz

    @classmethod
    def band_values(cls, z, band, sort=True):
        """Values of z inside ``band`` per row (sorted descending if ``sort``), padded with -inf."""
        out = cls.compact(z, band)[1]
        if sort:
            out = -out
            out.sort(axis=-1)
            out = -out
        return out

    @staticmethod
    def cumsum64(v):
        return np.cumsum(v, axis=-1, dtype=np.float64)

    @staticmethod
    def f64(v):
        return np.asarray(v, dtype=np.float64)

    @staticmethod
    def searchsorted(cdf, t):
        """Row-wise right-sided search of ``t`` (B, n) in the nondecreasing rows of ``cdf`` (B, W)."""
        B, W = cdf.shape
        off = np.arange(B, dtype=np.float64)[:, None] * 2.0  # rows lie in [0, 1]: shift apart
        pos = np.searchsorted((cdf + off).reshape(-1), (t + off).reshape(-1), side="right")
        return np.clip(pos.reshape(t.shape) - np.arange(B)[:, None] * W, 0, W)


class _TorchOps:
    """The same for PyTorch (any device)."""

    @staticmethod
    def topk(z, k):
        import torch

        r = torch.topk(z, k, dim=-1)
        return r.values, r.indices

    @staticmethod
    def argsort(i):
        import torch

        return torch.argsort(i, dim=-1)

    @staticmethod
    def count(m):
        import torch

        return torch.count_nonzero(m, dim=-1)[:, None]

    @staticmethod
    def msum(e, m):
        import torch

        return (e * m).sum(dim=-1, keepdim=True).to(torch.float64)

    @staticmethod
    def topk_superset(z, k):
        return None

    @staticmethod
    def compact(z, mask):
        import torch

        B = z.shape[0]
        rows, cols = mask.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=B)
        width = max(int(counts.max()) if B else 0, 1)
        at = torch.arange(rows.shape[0], device=z.device) - (torch.cumsum(counts, 0) - counts)[rows]
        ci = torch.zeros((B, width), dtype=torch.int64, device=z.device)
        cz = torch.full((B, width), -math.inf, dtype=z.dtype, device=z.device)
        ci[rows, at] = cols
        cz[rows, at] = z[rows, cols]
        return ci, cz

    @classmethod
    def band_values(cls, z, band, sort=True):
        import torch

        out = cls.compact(z, band)[1]
        return torch.sort(out, dim=-1, descending=True).values if sort else out

    @staticmethod
    def cumsum64(v):
        import torch

        return torch.cumsum(v, dim=-1, dtype=torch.float64)

    @staticmethod
    def f64(v):
        import torch

        return v.to(torch.float64)

    @staticmethod
    def searchsorted(cdf, t):
        import torch

        return torch.searchsorted(cdf.contiguous(), t.contiguous(), right=True)


def _fast_ops(a):
    if _compat.is_numpy_namespace(a.xp) and isinstance(a.x, np.ndarray):
        return _NumpyOps
    if _compat.is_torch_namespace(a.xp):
        if a.x.requires_grad:
            return None
        return _TorchOps
    return None


def _fast_parts(a):
    """The warped distribution on a compact candidate set, without a full sort.

    Returns ``(args, (ci, cf, Tf, keepc, nan_row))``: per row the candidate token indices ``ci``
    (B, W) in increasing order, their final logits ``cf`` (softmax at ``Tf`` under ``mask=keepc``
    is the result), in the namespace of ``args`` (NumPy views for CPU tensors); or None when the
    generic path must run.  Exact: top-k from the k largest values
    (ties at the k-th value are collected too), top-p by bisecting for a logit band that brackets
    the boundary so that only a few hundred tokens are sorted, min-p from the ratio to the maximum.
    """
    ops = _fast_ops(a)
    if ops is None or a.mtk != 1 or a.B == 0:
        return None
    if ops is _TorchOps and _TORCH_CPU_VIA_NUMPY and a.x.device.type == "cpu":
        return _fast_parts(_numpy_view(a))
    xp, x, T = a.xp, a.x, a.T
    if is_python_scalar(T) and math.isinf(T) or not is_python_scalar(T) and bool(xp.any(T == math.inf)):
        return None  # T = inf: the limit rules live in the generic path
    B, V = a.B, a.V
    ninf = _full(xp, x, -math.inf, shape=())
    z = x  # -inf stays -inf under x / T for finite T > 0
    if a.order == "temperature-first":
        if is_python_scalar(T):
            z = x if T in (0.0, 1.0) else x / T
        else:
            z = x / xp.where(T == 0, xp.ones_like(T), T)
    if a.mask is not None:
        z = xp.where(a.mask, z, ninf)
    m = xp.max(z, axis=-1, keepdims=True)
    nan_row = xp.isnan(m)  # max propagates NaN in NumPy and torch
    if bool(xp.any(m == math.inf)):
        return None  # +inf logits: the limit rules live in the generic path
    valid = z > ninf
    nonempty = m > ninf
    m_safe = xp.where(nonempty, m, xp.zeros_like(m))
    tp = a.top_p
    if tp is not None and is_python_scalar(tp) and tp >= 1:
        tp = None
    mp = a.min_p
    k = a.top_k
    kmax = None if k is None else (k if is_python_scalar(k) else int(xp.max(k)))
    ci = cz = None
    if kmax is not None and kmax >= V:
        if is_python_scalar(k):
            kmax = None
        else:
            small = k < V  # rows that truncate; the others keep everything
            km = int(xp.max(xp.where(small, k, xp.zeros_like(k))))
            if km == 0:
                kmax = None
            else:
                vals = ops.topk(z, km)[0]
                kth = xp.take_along_axis(vals, xp.astype(xp.clip(k, 1, km) - 1, xp.int64), axis=-1)
                kth = xp.where(small, kth, ninf)
                ci, cz = ops.compact(z, xp.logical_and(valid, z >= kth))
    elif kmax is not None and (sup := ops.topk_superset(z, kmax)) is not None:
        ci, cz = sup  # every token >= the k-th largest (and a few more), in index order
        vals = ops.topk(cz, kmax)[0]
        kth = vals[:, kmax - 1:kmax] if is_python_scalar(k) else \
            xp.take_along_axis(vals, xp.astype(k - 1, xp.int64), axis=-1)
        cz = xp.where(cz >= kth, cz, ninf)
    elif kmax is not None:
        vals, idx = ops.topk(z, kmax)  # descending
        kth = vals[:, kmax - 1:kmax] if is_python_scalar(k) else \
            xp.take_along_axis(vals, xp.astype(k - 1, xp.int64), axis=-1)
        if bool(xp.any(vals[:, -1:] == kth)) and bool(xp.any(ops.count(z >= kth) > ops.count(vals >= kth))):
            ci, cz = ops.compact(z, xp.logical_and(valid, z >= kth))  # ties reach beyond the k largest
        else:
            cz = xp.where(vals >= kth, vals, ninf)
            order_ = ops.argsort(idx)
            ci = xp.take_along_axis(idx, order_, axis=-1)
            cz = xp.take_along_axis(cz, order_, axis=-1)
    if ci is None:
        if tp is not None:
            ci, cz = _maybe_compact(a, ops, z, _fast_top_p(a, ops, z, m_safe, nonempty, tp))
            tp = None
        elif mp is not None:
            ci, cz = _maybe_compact(a, ops, z, xp.logical_not(xp.exp(z - m_safe) < mp))
            mp = None
        else:
            ci, cz = _maybe_compact(a, ops, z, valid)
    if tp is not None:
        cz = xp.where(_fast_top_p(a, ops, cz, m_safe, nonempty, tp), cz, ninf)
    if mp is not None:
        cz = xp.where(xp.exp(cz - m_safe) < mp, ninf, cz)
    keepc = cz > ninf
    zero_T = _is_zero_T(a)
    if zero_T is not False:  # greedy rows: the candidate holding the first maximum
        first = xp.min(xp.where(cz == m, ci, _full(xp, ci, V, shape=())), axis=-1, keepdims=True)
        onehot = xp.logical_and(ci == first, keepc)
        keepc = onehot if zero_T is True else xp.where(zero_T, onehot, keepc)
    if a.order == "temperature-first":
        cf, Tf = cz, 1.0
    else:
        cf = xp.take_along_axis(a.x, ci, axis=-1)
        cf = xp.where(keepc, cf, ninf)
        _zf, Tf = _final(a, None, None)
    return a, (ci, cf, Tf, keepc, nan_row)


def _maybe_compact(a, ops, z, keep):
    """Compact the kept tokens when they are few; otherwise keep the full rows."""
    xp = a.xp
    if int(xp.max(ops.count(keep))) * 4 <= a.V:
        return ops.compact(z, keep)
    ci = xp.broadcast_to(xp.arange(a.V, device=_compat.device(z))[None, :], (a.B, a.V))
    return ci, xp.where(keep, z, _full(xp, z, -math.inf, shape=()))


def _numpy_view(a):
    """CPU tensors: the same arguments as zero-copy NumPy views.  The selection's elementwise and
    boolean passes run faster through NumPy on a CPU; the draws still use the torch generator."""
    import copy

    import array_api_compat.numpy as npx

    b = copy.copy(a)
    b.xp = npx
    b.x = a.x.detach().numpy()
    b.mask = None if a.mask is None else a.mask.numpy()
    for name in ("T", "top_k", "top_p", "min_p"):
        v = getattr(a, name)
        if v is not None and not is_python_scalar(v):
            setattr(b, name, v.detach().numpy())
    return b


def _to_torch(v):
    import torch

    if not isinstance(v, np.ndarray):
        return v
    if not v.flags.writeable or not v.flags.c_contiguous:
        v = np.array(v)
    return torch.from_numpy(v)


_TORCH_CPU_VIA_NUMPY = True  # the torch-only path (used on GPUs) is tested by switching this off


def _scatter_full(a, ci, cf, keepc):
    """The (B, V) final logits and keep mask from the compact candidate arrays."""
    xp = a.xp
    B, V = a.B, a.V
    pos = xp.where(keepc, ci, _full(xp, ci, V, shape=()))
    if _compat.is_torch_namespace(xp):
        import torch

        zf = torch.full((B, V + 1), -math.inf, dtype=cf.dtype, device=cf.device)
        zf.scatter_(1, pos, cf)
    else:
        zf = np.full((B, V + 1), -np.inf, dtype=cf.dtype)
        np.put_along_axis(zf, pos, cf, axis=-1)
    zf = zf[:, :V]
    return zf, zf > -math.inf


def _fast_top_p(a, ops, z, m_safe, nonempty, tp):
    """The top-p keep mask of the rows of ``z`` (max ``m``), by bisection on a logit band.

    Invariant per row: the mass of the tokens with ``z >= lo`` reaches the target (so every token
    below ``lo`` is removed) and the mass of those with ``z >= hi`` does not (so every token at or
    above ``hi`` is kept).  The band ``[lo, hi)`` is halved until it holds at most ``_GAP``
    tokens, working on a compacted copy once it is small; then only the band is sorted.
    """
    xp = a.xp
    ninf = _full(xp, z, -math.inf, shape=())
    e = xp.exp(z - m_safe)  # 0 at removed tokens, 1 at the maximum
    s = ops.f64(xp.sum(e, axis=-1, keepdims=True))
    tp64 = tp if is_python_scalar(tp) else ops.f64(tp)
    target = tp64 * s  # a token is kept iff the mass ranked before it is < target
    active = nonempty if is_python_scalar(tp) else xp.logical_and(nonempty, tp < 1)
    finite = z > ninf
    n = ops.count(finite)
    # start: tokens with p < (1 - top_p) / n are surely removed
    lo = m_safe + xp.astype(xp.log((1 - tp64) * s / xp.where(n > 0, ops.f64(n), 1.0)), z.dtype)
    lo = xp.where(lo < m_safe, lo, m_safe)
    above = z >= lo
    mass_lo = ops.msum(e, above)
    cnt_lo = ops.count(above)
    ok = mass_lo >= target
    if not bool(xp.all(xp.logical_or(ok, xp.logical_not(active)))):
        zmin = xp.min(xp.where(finite, z, _full(xp, z, math.inf, shape=())), axis=-1, keepdims=True)
        lo = xp.where(ok, lo, zmin)
        cnt_lo = xp.where(ok, cnt_lo, n)
    hi = xp.where(nonempty, xp.nextafter(m_safe, _full(xp, m_safe, math.inf, shape=())), m_safe)
    cnt_hi = xp.zeros_like(cnt_lo)
    mass_hi = xp.zeros_like(s)
    if int(xp.max(xp.where(active, cnt_lo, xp.zeros_like(cnt_lo)))) * 4 > z.shape[-1]:
        # a wide band (flat rows): narrow it with a bracket estimated from a strided sample,
        # each edge checked exactly (a row whose check fails keeps its old edge)
        stride = max(1, z.shape[-1] // 4096)
        zs = xp.sort(z[:, ::stride], axis=-1, descending=True)
        est = ops.cumsum64(xp.exp(zs - m_safe)) * stride  # ~ mass of the tokens >= each value
        pos = ops.count(est < target)
        L = zs.shape[-1]
        at = lambda i: xp.take_along_axis(  # noqa: E731
            zs, xp.astype(xp.clip(i, 0, L - 1), xp.int64), axis=-1)
        lo_c, hi_c = at(pos + 16), at(pos - 16)
        sel = z >= lo_c
        ok = xp.logical_and(xp.logical_and(lo_c > lo, lo_c > ninf), ops.msum(e, sel) >= target)
        lo = xp.where(ok, lo_c, lo)
        cnt_lo = xp.where(ok, ops.count(sel), cnt_lo)
        sel = z >= hi_c
        ms = ops.msum(e, sel)
        ok = xp.logical_and(xp.logical_and(hi_c < hi, hi_c > lo), ms < target)
        hi = xp.where(ok, hi_c, hi)
        cnt_hi = xp.where(ok, ops.count(sel), cnt_hi)
        mass_hi = xp.where(ok, ms, mass_hi)
    W, We, base_m, base_c = z, e, None, None  # the working set (full rows, later compacted)
    for _ in range(80):
        cnt = cnt_lo - cnt_hi
        mid = lo / 2 + hi / 2
        go = xp.logical_and(xp.logical_and(active, cnt > _GAP), xp.logical_and(mid > lo, mid < hi))
        if not bool(xp.any(go)):
            break
        if base_m is None and int(xp.max(xp.where(go, cnt, xp.zeros_like(cnt)))) * 4 <= z.shape[-1]:
            band = xp.logical_and(xp.logical_and(z >= lo, z < hi), active)
            W = ops.band_values(z, band, sort=False)
            We = xp.exp(W - m_safe)
            base_m, base_c = mass_hi, cnt_hi
        sel = W >= mid
        ms, c = ops.msum(We, sel), ops.count(sel)
        if base_m is not None:
            ms, c = ms + base_m, c + base_c
        up = xp.logical_and(go, ms >= target)
        down = xp.logical_and(go, xp.logical_not(ms >= target))
        lo = xp.where(up, mid, lo)
        cnt_lo = xp.where(up, c, cnt_lo)
        hi = xp.where(down, mid, hi)
        cnt_hi = xp.where(down, c, cnt_hi)
        mass_hi = xp.where(down, ms, mass_hi)
    src = W if base_m is not None else z
    band = xp.logical_and(xp.logical_and(src >= lo, src < hi), active)
    g = ops.band_values(src, band, sort=True)  # (B, width) descending, -inf padded
    eg = ops.f64(xp.exp(g - m_safe))
    before = mass_hi + ops.cumsum64(eg) - eg
    kin = xp.logical_and(before < target, g > ninf)
    kcount = ops.count(kin)
    idx = xp.where(kcount > 0, kcount - 1, xp.zeros_like(kcount))
    v = xp.take_along_axis(g, xp.astype(idx, xp.int64), axis=-1)
    has = kcount > 0
    strict = xp.where(has, z > v, z >= hi)
    # ties at v: j of the c tied tokens are kept, the lowest indices first
    j = kcount - ops.count(xp.logical_and(kin, g > v))
    c = ops.count(g == v)
    partial = xp.logical_and(j < c, has)
    tie = xp.logical_and(z == v, has)
    if bool(xp.any(partial)):
        rank = xp.cumulative_sum(xp.astype(tie, xp.int32), axis=-1)
        tie = xp.logical_and(tie, xp.logical_or(xp.logical_not(partial), rank <= j))
    keep = xp.logical_or(strict, tie)
    return xp.logical_or(keep, xp.logical_not(active))


# --------------------------------------------------------------------------------------------
# random numbers
# --------------------------------------------------------------------------------------------
def _check_seed(seed, rng, func):
    if seed is not None and rng is not None:
        raise param_error("seed", func, "None when rng is given", seed)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise param_error("seed", func, "a non-negative int or None", seed,
                              ValueError if isinstance(seed, numbers.Integral) else TypeError)


def _uniform(xp, shape, dtype, like, seed, rng, func):
    """Uniform numbers in [0, 1) of ``shape`` from the backend's own generator."""
    _check_seed(seed, rng, func)
    if _compat.is_torch_namespace(xp):
        import torch

        dev = like.device
        if rng is not None and not isinstance(rng, torch.Generator):
            raise param_error("rng", func, "a torch.Generator for torch tensors", type(rng).__name__,
                              TypeError)
        gen = rng
        if seed is not None:
            gen = torch.Generator(device=dev)
            gen.manual_seed(int(seed))
        return torch.rand(shape, generator=gen, dtype=dtype, device=dev)
    if _compat.is_jax_namespace(xp):
        import jax

        key = rng
        if key is None:
            s = int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
            key = jax.random.key(s)
        elif not _is_jax_key(key):
            raise param_error("rng", func, "a JAX PRNG key for JAX arrays", type(rng).__name__, TypeError)
        return jax.random.uniform(key, shape, dtype=dtype)
    gen = rng
    if gen is None:
        gen = np.random.default_rng(seed)
    elif not isinstance(gen, np.random.Generator):
        raise param_error("rng", func, "a numpy.random.Generator", type(rng).__name__, TypeError)
    np_dtype = np.float32 if _compat.float_bits(xp, dtype) == 32 else np.float64
    u = gen.random(shape, dtype=np_dtype)
    return _compat.as_array(u, xp, like=like)


def _is_jax_key(key) -> bool:
    import jax

    if not isinstance(key, jax.Array):
        return False
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return True
    return key.dtype == np.uint32 and key.shape == (2,)


def _idx(xp):
    """The index dtype: int64, or int32 where JAX runs without x64."""
    if _compat.is_jax_namespace(xp):
        import jax

        return xp.int64 if jax.config.jax_enable_x64 else xp.int32
    return xp.int64


def _u64(xp, like):
    """The widest float the backend draws in (float64 unless JAX runs without x64)."""
    if _compat.is_jax_namespace(xp):
        import jax

        return xp.float64 if jax.config.jax_enable_x64 else xp.float32
    return xp.float64


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
@_quiet
def warp(logits, temperature=1.0, *, top_k=None, top_p=None, min_p=None,
         order="temperature-first", min_tokens_to_keep=1, axis=-1, mask=None, log=False):
    r"""The sampling distribution after temperature and top-k / top-p / min-p truncation.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores; any array-API array or a nested list (read as NumPy).
    temperature : float or array, default 1.0
        ``T`` in ``[0, inf]``, or one per row (shape ``logits.shape`` without ``axis``, or with
        a size-1 ``axis``).  ``T = 0`` is greedy: all the mass on the first maximal logit.
    top_k : int or array of int, optional
        Keep the tokens whose logit is ``>=`` the ``k``-th largest (ties kept).
    top_p : float or array, optional
        In ``(0, 1]``: keep the smallest set of most probable tokens with mass ``>= top_p``.
    min_p : float or array, optional
        In ``[0, 1]``: drop tokens with probability ``< min_p * max probability``.
    order : {"temperature-first", "temperature-last"}, default "temperature-first"
        ``"temperature-first"``: the filters see ``softmax(x / T)`` (transformers, vLLM).
        ``"temperature-last"``: the filters see ``softmax(x)`` and ``T`` reshapes only the
        survivors (llama.cpp).
    min_tokens_to_keep : int, default 1
        Never truncate below this many tokens (top-k is raised to it; the best ``n`` tokens are
        protected from top-p and min-p).
    axis : int, default -1
        The vocabulary axis.
    mask : array of bool, optional
        Broadcastable to ``logits``; ``False`` entries are never kept (like ``-inf`` logits).
    log : bool, default False
        Return log-probabilities (``-inf`` for removed tokens) instead of probabilities.

    Returns
    -------
    array
        Same shape, namespace and floating dtype as ``logits`` (integers promote to the default
        float).  A fully masked row is all zeros (``-inf`` with ``log=True``); a row with a NaN is
        all NaN.

    Notes
    -----
    The rules (tie handling, ``T = 0``, masked rows) are listed in the module docstring; they
    match transformers' ``TemperatureLogitsWarper`` → ``TopKLogitsWarper`` →
    ``TopPLogitsWarper`` → ``MinPLogitsWarper`` chain for ``order="temperature-first"``.  For
    NumPy and PyTorch inputs an exact path avoids sorting the vocabulary: top-k uses a partial
    selection and top-p a bisection on the logit value that leaves only a few hundred undecided
    tokens to sort.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sampling import warp
    >>> np.set_printoptions(precision=4)
    >>> x = np.array([2.0, 1.0, 0.0, -1.0])
    >>> warp(x, 0.5, top_k=2)
    array([0.8808, 0.1192, 0.    , 0.    ])
    >>> warp(x, top_p=0.8)                       # 0.644 + 0.237 >= 0.8
    array([0.7311, 0.2689, 0.    , 0.    ])
    >>> warp(x, 10.0, top_p=0.8, order="temperature-last")  # same survivors, flattened
    array([0.525, 0.475, 0.   , 0.   ])
    >>> warp(np.array([1.0, 3.0, 3.0]), 0)      # greedy: the first maximum
    array([0., 1., 0.])
    """
    func = "warp"
    check_bool(log, "log", func)
    a = _prepare(logits, temperature, top_k, top_p, min_p, order, min_tokens_to_keep, axis, mask, func)
    r = _distribution(a, log)
    if r.dtype != a.out:
        r = a.xp.astype(r, a.out)
    return _restore(a, r)


@_quiet
def sample(logits, temperature=1.0, *, top_k=None, top_p=None, min_p=None,
           order="temperature-first", min_tokens_to_keep=1, num_samples=None, replacement=True,
           seed=None, rng=None, axis=-1, mask=None, return_logprobs=False):
    r"""Draw token indices from :func:`warp`'s distribution.

    Parameters
    ----------
    logits, temperature, top_k, top_p, min_p, order, min_tokens_to_keep, axis, mask
        As in :func:`warp`.  ``T = 0`` is greedy decoding (``argmax``, lowest index among ties).
    num_samples : int, optional
        ``None`` (default): one draw per row, the result has ``logits``' shape without ``axis``
        (like :func:`jax.random.categorical`).  An int ``n >= 1``: ``n`` draws per row on a new
        last axis (like :func:`torch.multinomial`).
    replacement : bool, default True
        Draw with replacement (inverse CDF on one uniform per draw) or without (Gumbel-top-k,
        ``n <= vocabulary size``; positions beyond a row's number of candidates get ``-1``).
    seed : int, optional
        Seed for a fresh generator of the array's library.
    rng : numpy.random.Generator, torch.Generator or JAX PRNG key, optional
        The library's own generator (advanced in place for NumPy and torch).
    return_logprobs : bool, default False
        Also return the log-probability of each draw under the warped distribution.

    Returns
    -------
    indices : integer array
        ``-1`` for rows without candidates (fully masked) or containing NaN.
    logprobs : array, only with ``return_logprobs=True``
        ``-inf`` where the index is ``-1`` (NaN for NaN rows).

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sampling import sample
    >>> x = np.array([[2.0, 1.0, 0.0, -1.0], [0.0, 5.0, 5.0, 1.0]])
    >>> sample(x, 0)                                       # greedy
    array([0, 1])
    >>> idx = sample(x, 0.7, top_k=2, num_samples=5, seed=0)
    >>> idx.shape, bool(np.all(idx[0] < 2))
    ((2, 5), True)
    >>> bool(np.all(sample(x, 0.7, top_k=2, num_samples=5, seed=0) == idx))
    True
    """
    func = "sample"
    check_bool(replacement, "replacement", func)
    check_bool(return_logprobs, "return_logprobs", func)
    if num_samples is not None:
        check_scalar(num_samples, "num_samples", func, lo=1, integer=True)
        num_samples = int(num_samples)
    _check_seed(seed, rng, func)
    a = _prepare(logits, temperature, top_k, top_p, min_p, order, min_tokens_to_keep, axis, mask, func)
    n = 1 if num_samples is None else num_samples
    if not replacement and n > a.V:
        raise param_error("num_samples", func,
                          f"at most the vocabulary size {a.V} when replacement=False", n)
    fast = _fast_parts(a) if _FAST_OK else None
    c = a  # the arguments (and namespace) the draws run in
    if fast is not None:
        c, (ci, zf, Tf, keep, nan_row) = fast
    else:
        zf, Tf, keep, nan_row = _warp_parts(a)
    if replacement:
        u = _uniform(a.xp, (a.B, n), _u64(a.xp, a.x), a.x, seed, rng, func)
        if c is not a:
            u = u.numpy()
        if fast is None:
            idx, lp = _draw_inverse_cdf(c, zf, Tf, keep, u)
        else:
            idx, lp = _draw_blocked(c, zf, Tf, keep, u)
        if fast is not None:
            idx = c.xp.take_along_axis(ci, idx, axis=-1)
    else:
        if fast is not None:
            zf, keep = _scatter_full(c, ci, zf, keep)
            if c is not a:
                zf, Tf, keep, nan_row = map(_to_torch, (zf, Tf, keep, nan_row))
                c = a
        idx, lp = _draw_without(c, zf, Tf, keep, n, seed, rng, func)
    xp = c.xp
    bad = xp.logical_or(nan_row, xp.logical_not(xp.any(keep, axis=-1, keepdims=True)))
    idx = xp.where(bad, -xp.ones_like(idx), idx)
    lp = xp.where(xp.logical_and(bad, xp.logical_not(nan_row)), _full(xp, lp, -math.inf, shape=()), lp)
    lp = xp.where(nan_row, _full(xp, lp, math.nan, shape=()), lp)
    if c is not a:
        idx, lp = _to_torch(idx), _to_torch(lp)
    xp = a.xp
    if lp.dtype != a.out:
        lp = xp.astype(lp, a.out)
    idx = xp.reshape(idx, a.batch_shape + (n,))
    lp = xp.reshape(lp, a.batch_shape + (n,))
    if num_samples is None:
        idx, lp = idx[..., 0], lp[..., 0]
    return (idx, lp) if return_logprobs else idx


def _draw_inverse_cdf(a, zf, Tf, keep, u):
    """Inverse CDF with xp operations: per draw, the number of CDF entries <= ``u * total``.

    ``zf``/``keep`` are (B, W); positions along that axis are returned (chunked over draws to
    bound the (B, n, W) comparison).
    """
    xp = a.xp
    logp = log_softmax(zf, Tf, axis=-1, mask=keep)
    p = xp.exp(logp)
    wide = u.dtype
    cdf = xp.cumulative_sum(xp.astype(p, wide) if p.dtype != wide else p, axis=-1)
    total = cdf[:, -1:]
    last = xp.astype(xp.argmax(cdf, axis=-1, keepdims=True), _idx(xp))  # last token with mass
    n, W = u.shape[-1], cdf.shape[-1]
    step = max(1, (1 << 23) // max(1, a.B * W))
    outs = []
    for s0 in range(0, n, step):
        t = u[:, s0:min(n, s0 + step)] * total
        outs.append(xp.sum(xp.astype(cdf[:, None, :] <= t[:, :, None], _idx(xp)), axis=-1))
    idx = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
    idx = xp.where(idx > last, xp.broadcast_to(last, idx.shape), idx)
    lp = xp.take_along_axis(logp, idx, axis=-1)
    return idx, lp


def _draw_blocked(a, zf, Tf, keep, u, bs=1024):
    """The same inverse CDF for NumPy / torch in two levels: block sums locate each draw's
    block, a cumulative sum inside that block only locates the token (one pass over the row)."""
    xp = a.xp
    ops = _fast_ops(a)
    B, W = zf.shape
    ninf = _full(xp, zf, -math.inf, shape=())
    M = xp.max(xp.where(keep, zf, ninf), axis=-1, keepdims=True)
    M = xp.where(M > ninf, M, xp.zeros_like(M))
    y = zf - M if is_python_scalar(Tf) and Tf == 1 else (zf - M) / Tf
    w = xp.exp(y) * xp.astype(keep, y.dtype)
    bs = min(bs, W)
    for d in range(bs, bs // 2, -1):  # a block size dividing W avoids padding
        if W % d == 0:
            bs = d
            break
    nb = -(-W // bs)
    if nb * bs != W:
        w = xp.concat([w, xp.zeros((B, nb * bs - W), dtype=w.dtype, device=_compat.device(w))], axis=-1)
    w3 = xp.reshape(w, (B, nb, bs))
    cb = ops.cumsum64(ops.f64(xp.sum(w3, axis=-1)))  # (B, nb)
    cb = xp.where(xp.isnan(cb), xp.zeros_like(cb), cb)  # NaN rows: answered by the caller
    total = cb[:, -1:]
    t = u * total
    blk = ops.searchsorted(cb / xp.where(total > 0, total, xp.ones_like(total)), u)
    last_blk = xp.argmax(cb, axis=-1, keepdims=True)  # the last block with mass
    blk = xp.where(blk > last_blk, xp.broadcast_to(last_blk, blk.shape), blk)
    prev = xp.take_along_axis(cb, xp.where(blk > 0, blk - 1, xp.zeros_like(blk)), axis=-1)
    rem = t - xp.where(blk > 0, prev, xp.zeros_like(prev))
    rows = xp.reshape(xp.arange(B, device=_compat.device(w)), (B, 1))
    wb = ops.f64(w3[rows, blk])  # (B, n, bs): the chosen blocks
    cw = ops.cumsum64(wb)
    pos = xp.sum(xp.astype(cw <= rem[..., None], xp.int64), axis=-1)
    last = xp.argmax(cw, axis=-1)  # the last token with mass in the block
    pos = xp.where(pos > last, last, pos)
    idx = blk * bs + pos
    wsel = xp.take_along_axis(xp.reshape(wb, (-1, bs)), xp.reshape(pos, (-1, 1)), axis=-1)
    lp = xp.log(xp.reshape(wsel, pos.shape)) - xp.log(xp.where(total > 0, total, xp.ones_like(total)))
    return xp.astype(idx, xp.int64), xp.astype(lp, zf.dtype)


def _draw_without(a, zf, Tf, keep, n, seed, rng, func):
    """Gumbel-top-k: the n largest of log p + Gumbel noise, without replacement."""
    xp = a.xp
    logp = log_softmax(zf, Tf, axis=-1, mask=keep)
    g = _gumbel(xp, (a.B, a.V), logp.dtype, logp, seed, rng, func)
    keys = logp + g
    order_ = xp.argsort(keys, axis=-1, descending=True, stable=True)[:, :n]
    lp = xp.take_along_axis(logp, order_, axis=-1)
    idx = xp.where(lp > -math.inf, order_, -xp.ones_like(order_))
    return xp.astype(idx, _idx(xp)), lp


def _gumbel(xp, shape, dtype, like, seed, rng, func):
    """Standard Gumbel noise -log(-log u) with u in [tiny, 1): always finite."""
    u = _uniform(xp, shape, dtype, like, seed, rng, func)
    tiny = float(xp.finfo(dtype).smallest_normal)
    u = xp.where(u < tiny, _full(xp, u, tiny, shape=()), u)
    return -xp.log(-xp.log(u))


def _stop_gradient(xp, y):
    """The backend's stop-gradient (identity where there are no gradients)."""
    if _compat.is_torch_namespace(xp):
        return y.detach()
    if _compat.is_jax_namespace(xp):
        import jax

        return jax.lax.stop_gradient(y)
    return None


@_quiet
def gumbel_softmax(logits, temperature=1.0, *, hard=False, seed=None, rng=None, axis=-1, mask=None):
    r"""A relaxed categorical sample, :math:`\mathrm{softmax}((x + g) / T)` with Gumbel noise ``g``.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities.
    temperature : float or array, default 1.0
        ``tau`` in ``[0, inf]`` or one per row (``logits.shape`` without ``axis``, or with a size-1
        ``axis``); an array temperature receives gradients.  ``T = 0`` gives the one-hot argmax of
        the perturbed logits.
    hard : bool, default False
        Return the one-hot argmax of the soft sample.  On PyTorch and JAX the gradient is the soft
        sample's (straight-through estimator: ``y_hard - stop_gradient(y_soft) + y_soft``).
    seed, rng
        As in :func:`sample`.
    axis : int, default -1
        The category axis.
    mask : array of bool, optional
        ``False`` entries (like ``-inf`` logits) get exactly zero weight.

    Returns
    -------
    array
        Same shape, namespace and floating dtype as ``logits``.  A fully masked row is all zeros;
        a NaN row is NaN.

    Notes
    -----
    The noise is ``-log(-log u)`` with ``u`` drawn in ``[0, 1)`` and raised to the smallest normal
    number, so it is finite (never ``log 0``): no NaN or inf comes from the noise, unlike
    implementations that take ``log`` of an exponential draw that can be zero.

    References
    ----------
    .. [1] E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax", 2017.
    .. [2] C. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution", 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sampling import gumbel_softmax
    >>> y = gumbel_softmax(np.array([1.0, 2.0, 3.0]), 0.5, seed=0)
    >>> y.shape, bool(abs(y.sum() - 1) < 1e-12)
    ((3,), True)
    >>> gumbel_softmax(np.array([1.0, 2.0, 3.0]), 0.5, hard=True, seed=0)
    array([0., 0., 1.])
    """
    func = "gumbel_softmax"
    check_bool(hard, "hard", func)
    _check_seed(seed, rng, func)
    xp = array_namespace(logits)
    x = _compat.as_array(logits, xp)
    if x.ndim == 0:
        raise param_error("logits", func, "an array with at least one dimension", "a 0-d array")
    compute, out = _float_dtypes(xp, x, None, func)
    ax = check_axis(axis, x.ndim, func)
    if x.dtype != compute:
        x = xp.astype(x, compute)
    g = _gumbel(xp, tuple(x.shape), compute, x, seed, rng, func)
    y = softmax(x + g, temperature, axis=ax, mask=mask)
    if hard:
        nan_row = xp.any(xp.isnan(y), axis=ax, keepdims=True)
        am = xp.argmax(y, axis=ax, keepdims=True)
        shape = [1] * x.ndim
        shape[ax] = x.shape[ax]
        pos = xp.reshape(xp.arange(x.shape[ax], device=_compat.device(x)), tuple(shape))
        hit = xp.logical_and(pos == am, xp.any(y > 0, axis=ax, keepdims=True))
        y_hard = xp.astype(hit, y.dtype)
        sg = _stop_gradient(xp, y)
        if sg is None:
            y = xp.where(nan_row, _full(xp, y, math.nan, shape=()), y_hard)
        else:
            y = y_hard - sg + y
    if y.dtype != out:
        y = xp.astype(y, out)
    return y
