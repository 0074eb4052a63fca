"""The draws: inverse CDF (generic and blocked) with replacement, Gumbel-top-k without."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _args, _backend, _compat
from .._compat import array_namespace
from .._softmax import log_softmax, softmax
from .._validation import check_axis, param_error
from . import _fast, _hash, _reference
from ._layout import Args, full
from ._ops import Ops, ops_for
from ._paths import fast_candidates


def draw(a: Args, n: int, replacement: bool, seed: Any, rng: Any, func: str,
         rows: Any = None) -> tuple[Any, Any]:
    """(indices, log-probabilities), both (B, n), in ``a``'s namespace.

    ``rows`` (the rows' int64 keys) selects the counter-based generator (``generator="hash"``,
    with ``seed``); otherwise the library's generator draws."""
    fast = fast_candidates(a)
    c = a  # the arguments (and namespace) the draws run in
    if fast is not None:
        c, (ci, cx, Tf, keep, nan_row) = fast
    else:
        cx, Tf, keep, nan_row = _reference.warp_parts(a)
    if rows is not None:
        if replacement:
            u = _hash.uniforms(seed, rows, _hash.TOKENS, n)
            idx, lp = hashed_inverse_cdf(c, cx, Tf, keep, u)
            if fast is not None:
                idx = c.xp.take_along_axis(ci, idx, axis=-1)
        else:
            if fast is not None:
                keep = _fast.scatter_keep(c, ci, keep)
                cx = c.x
            idx, lp = hashed_without(c, cx, Tf, keep, n, seed, rows)
    elif replacement:
        logp = log_softmax(cx, Tf, axis=-1, mask=keep)  # the core's overflow-free tempered form
        u = _backend.uniform(a.xp, (a.B, n), _backend.widest_float(a.xp), a.x, seed, rng, func)
        if c is not a:
            u = _backend.numpy_view(u)
        ops = ops_for(c)
        if fast is None or ops is None:
            idx, lp = inverse_cdf(c, logp, keep, u)
        else:
            idx, lp = blocked(c, ops, logp, keep, u)
            idx = c.xp.take_along_axis(ci, idx, axis=-1)
    else:
        if fast is not None:
            keep = _fast.scatter_keep(c, ci, keep)
            cx = c.x
            if c is not a:
                Tf, keep, nan_row = map(_backend.to_torch, (Tf, keep, nan_row))
                cx, c = a.x, a
        logp = log_softmax(cx, Tf, axis=-1, mask=keep)
        idx, lp = without(c, logp, n, seed, rng, func)
    xp = c.xp
    bad = xp.logical_or(nan_row, xp.logical_not(xp.any(keep, axis=-1, keepdims=True)))
    idx = xp.where(bad, -xp.ones_like(idx), idx)
    lp = xp.where(xp.logical_and(bad, xp.logical_not(nan_row)), full(xp, lp, -math.inf, shape=()), lp)
    lp = xp.where(nan_row, full(xp, lp, math.nan, shape=()), lp)
    if c is not a:
        idx, lp = _backend.to_torch(idx), _backend.to_torch(lp)
    return idx, lp


def _T_wide(a: Args, Tf: Any) -> Any:
    """The final temperature with ``T = 0`` (greedy: one kept token) read as 1: a Python float or
    a (B, 1) array in the wide dtype."""
    xp = a.xp
    if _compat.is_python_scalar(Tf):
        return 1.0 if Tf == 0 else float(Tf)
    Tw = xp.astype(Tf, a.wide) if Tf.dtype != a.wide else Tf
    return xp.where(Tw == 0, xp.ones_like(Tw), Tw)


def _z_wide(a: Args, cx: Any, Tf: Any, keep: Any) -> Any:
    """The final distribution's max-shifted tempered logits over ``keep`` (``-inf`` elsewhere),
    element by element in the wide dtype, ``(x/2 - m/2) / T * 2`` (no overflow; ``m`` the row's
    kept maximum): they depend on the row's own values only.  ``+inf`` rows share the mass among
    their ``+inf`` entries; ``T = 0`` rows hold one kept token; ``T = inf`` is uniform."""
    xp = a.xp
    x = xp.astype(cx, a.wide) if cx.dtype != a.wide else cx
    ninf = full(xp, x, -math.inf, shape=())
    key = xp.where(keep, x, ninf)
    m = xp.max(key, axis=-1, keepdims=True)
    m_safe = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    z = (key / 2 - m_safe / 2) / _T_wide(a, Tf) * 2
    z = xp.where(m == math.inf, xp.where(key == math.inf, xp.zeros_like(z), ninf), z)
    return xp.where(keep, z, ninf)  # T = inf: -inf / inf is NaN


def _cdf_numpy(cx: Any, T: Any, keep: Any) -> tuple[Any, Any]:
    """NumPy (and NumPy views of CPU tensors): :func:`_z_wide`'s numbers, then ``exp`` and the
    cumulative sum, in place in one float64 buffer.  Returns (cdf, row maxima)."""
    w = np.array(cx, dtype=np.float64)
    if not keep.all():
        np.copyto(w, -np.inf, where=~keep)
    m = w.max(axis=-1, keepdims=True) if w.shape[-1] else np.full((w.shape[0], 1), -np.inf)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    w /= 2
    w -= m_safe / 2
    w /= T
    w *= 2
    tinf = np.broadcast_to(np.asarray(T) == np.inf, m.shape)
    infr = m == np.inf
    if tinf.any() or infr.any():
        rows = np.flatnonzero(tinf[:, 0] | infr[:, 0])
        kr = keep[rows]
        w[rows] = np.where(kr, 0.0, -np.inf)
        ir = infr[rows, 0]
        if ir.any():
            w[rows[ir]] = np.where(kr[ir] & (np.asarray(cx)[rows[ir]] == np.inf), 0.0, -np.inf)
    np.exp(w, out=w)
    np.cumsum(w, axis=-1, out=w)
    return w, m


def hashed_inverse_cdf(a: Args, cx: Any, Tf: Any, keep: Any, u_np: Any) -> tuple[Any, Any]:
    """Inverse CDF on the counter-based uniforms ``u_np`` (B, n), batch-invariant.

    The weights ``exp(z)`` (:func:`_z_wide`) are summed by one sequential cumulative sum in the
    wide dtype over the positions in index order; removed tokens add exact zeros, so the CDF at
    every kept token is the same for the full row and for any compact candidate set (whatever
    the batch around the row).  The draw is the first position whose CDF exceeds ``u * total``
    (the last token with mass at most).  The log-probability is ``z - log(total)`` of the token."""
    xp = a.xp
    T = _T_wide(a, Tf)
    if isinstance(cx, np.ndarray):
        C, m = _cdf_numpy(cx, T, keep)
        u = u_np
    else:
        z = _z_wide(a, cx, Tf, keep)
        C = xp.cumulative_sum(xp.exp(z), axis=-1)
        u = _hash.to_namespace(u_np, xp, a.x, a.wide)
    total = C[:, -1:]
    t = u * total
    idx: Any
    if isinstance(C, np.ndarray):
        idx = np.stack([np.searchsorted(C[b], t[b], side="right") for b in range(C.shape[0])]) \
            if C.shape[0] else np.zeros(t.shape, dtype=np.int64)
    elif _compat.is_torch_namespace(xp):
        import torch

        idx = torch.searchsorted(C.contiguous(), t.contiguous(), right=True)
    else:
        n, W = t.shape[-1], C.shape[-1]
        step = max(1, (1 << 23) // max(1, a.B * W))
        outs = []
        for s0 in range(0, n, step):
            tt = t[:, s0:min(n, s0 + step)]
            outs.append(xp.sum(xp.astype(C[:, None, :] <= tt[:, :, None], _backend.index_dtype(xp)),
                               axis=-1))
        idx = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
    idx = xp.astype(idx, _backend.index_dtype(xp))
    last = xp.astype(xp.argmax(C, axis=-1, keepdims=True), idx.dtype)
    idx = xp.where(idx > last, xp.broadcast_to(last, idx.shape), idx)
    logtot = xp.log(xp.where(total > 0, total, xp.ones_like(total)))
    if isinstance(C, np.ndarray):  # z of the drawn tokens only, from their logits
        xd = np.take_along_axis(np.asarray(cx), idx, axis=-1).astype(np.float64)
        kd = np.take_along_axis(keep, idx, axis=-1)
        m_safe = np.where(np.isfinite(m), m, 0.0)
        zd = (xd / 2 - m_safe / 2) / T * 2
        zd = np.where(np.broadcast_to(np.asarray(T) == np.inf, m.shape), 0.0, zd)
        zd = np.where(m == np.inf, np.where(xd == np.inf, 0.0, -np.inf), zd)
        zd = np.where(kd, zd, -np.inf)
        return idx, zd - logtot
    return idx, xp.take_along_axis(z, idx, axis=-1) - logtot


def hashed_without(a: Args, cx: Any, Tf: Any, keep: Any, n: int, seed: int,
                   rows: Any) -> tuple[Any, Any]:
    """Gumbel-top-k on the full rows with counter-based noise: token ``i`` of row ``r`` gets
    ``-log(-log u)``, ``u`` the hash of ``(seed, r, i)`` in ``(0, 1)``."""
    xp = a.xp
    z = _z_wide(a, cx, Tf, keep)
    g_np = -np.log(-np.log(_hash.uniforms(seed, rows, _hash.GUMBEL, a.V, open_=True)))
    g = _hash.to_namespace(g_np, xp, a.x, a.wide)
    ninf = full(xp, z, -math.inf, shape=())
    keys = xp.where(keep, z + g, ninf)
    order_ = xp.argsort(keys, axis=-1, descending=True, stable=True)[:, :n]
    s = xp.sum(xp.exp(z), axis=-1, keepdims=True)
    lz = xp.take_along_axis(z, order_, axis=-1)
    lp = lz - xp.log(xp.where(s > 0, s, xp.ones_like(s)))
    idx = xp.where(lz > -math.inf, order_, -xp.ones_like(order_))
    return xp.astype(idx, _backend.index_dtype(xp)), lp


def inverse_cdf(a: Args, logp: Any, keep: Any, u: Any) -> tuple[Any, Any]:
    """Inverse CDF with xp operations: per draw, the number of CDF entries <= ``u * total``.

    ``logp``/``keep`` are (B, W); positions along that axis are returned (chunked over draws to
    bound the (B, n, W) comparison).
    """
    xp = a.xp
    p = xp.exp(logp)
    wide = u.dtype
    cdf = xp.cumulative_sum(xp.astype(p, wide) if p.dtype != wide else p, axis=-1)
    total = cdf[:, -1:]
    last = xp.astype(xp.argmax(cdf, axis=-1, keepdims=True), _backend.index_dtype(xp))  # last token with mass
    n, W = u.shape[-1], cdf.shape[-1]
    step = max(1, (1 << 23) // max(1, a.B * W))
    outs = []
    for s0 in range(0, n, step):
        t = u[:, s0:min(n, s0 + step)] * total
        outs.append(xp.sum(xp.astype(cdf[:, None, :] <= t[:, :, None], _backend.index_dtype(xp)), axis=-1))
    idx = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
    idx = xp.where(idx > last, xp.broadcast_to(last, idx.shape), idx)
    lp = xp.take_along_axis(logp, idx, axis=-1)
    return idx, lp


def blocked(a: Args, ops: type[Ops], logp: Any, keep: Any, u: Any,
            bs: int = 1024) -> tuple[Any, Any]:
    """The same inverse CDF for NumPy / torch in two levels: block sums locate each draw's
    block, a cumulative sum inside that block only locates the token (one pass over the row)."""
    xp = a.xp
    B, W = logp.shape
    ninf = full(xp, logp, -math.inf, shape=())
    M = xp.max(xp.where(keep, logp, ninf), axis=-1, keepdims=True)
    M = xp.where(M > ninf, M, xp.zeros_like(M))
    w = xp.where(keep, xp.exp(logp - M), xp.zeros_like(logp))
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
    idx = xp.astype(blk * bs + pos, xp.int64)
    return idx, xp.take_along_axis(logp, idx, axis=-1)


def without(a: Args, logp: Any, n: int, seed: Any, rng: Any, func: str) -> tuple[Any, Any]:
    """Gumbel-top-k: the n largest of log p + Gumbel noise, without replacement."""
    xp = a.xp
    g = _backend.gumbel(xp, (a.B, a.V), logp.dtype, logp, seed, rng, func)
    keys = logp + g
    order_ = xp.argsort(keys, axis=-1, descending=True, stable=True)[:, :n]
    lp = xp.take_along_axis(logp, order_, axis=-1)
    idx = xp.where(lp > -math.inf, order_, -xp.ones_like(order_))
    return xp.astype(idx, _backend.index_dtype(xp)), lp


def gumbel_sample(logits: Any, temperature: Any, hard: bool, seed: Any, rng: Any, axis: Any,
                  mask: Any, func: str) -> Any:
    """:func:`tempscale.sampling.gumbel_softmax` after its argument checks."""
    xp = array_namespace(logits)
    x = _compat.as_array(logits, xp)
    if x.ndim == 0:
        raise param_error("logits", func, "an array with at least one dimension", "a 0-d array")
    compute, out = _args.float_dtypes(xp, x, None, func)
    ax = check_axis(axis, x.ndim, func)
    if x.dtype != compute:
        x = xp.astype(x, compute)
    mask = _args.entry_mask(mask, x, func)
    g = _backend.gumbel(xp, tuple(x.shape), compute, x, seed, rng, func)
    xg = x + g  # finite logits stay finite: |g| is far below the spacing of floats near the max
    y = softmax(xg, temperature, axis=ax, mask=mask)
    if hard:
        y = _straight_through(xp, x, xg, y, ax, mask)
    if y.dtype != out:
        y = xp.astype(y, out)
    return y


def _straight_through(xp: Any, x: Any, xg: Any, y: Any, ax: int, mask: Any) -> Any:
    """The one-hot argmax of the perturbed logits ``xg``, with ``y``'s gradient where there are
    gradients (``y_hard - stop_gradient(y) + y``).

    The argmax of the perturbed logits is the argmax of the soft sample for every ``T`` in
    ``(0, inf)``, also where ``y`` rounds to a uniform row (huge ``T``) or to 0 (tiny ``T``).
    """
    nan_row = xp.any(xp.isnan(y), axis=ax, keepdims=True)
    ninf = full(xp, xg, -math.inf, shape=())
    valid = xg > ninf
    if mask is not None:
        valid = xp.logical_and(valid, mask)
    xk = xp.where(valid, _backend.stop_gradient(xp, xg), ninf)
    am = xp.argmax(xk, axis=ax, keepdims=True)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    pos = xp.reshape(xp.arange(x.shape[ax], device=_compat.device(x)), tuple(shape))
    hit = xp.logical_and(pos == am, xp.any(valid, axis=ax, keepdims=True))
    y_hard = xp.astype(hit, y.dtype)
    if not _backend.has_autodiff(xp):
        return xp.where(nan_row, full(xp, y, math.nan, shape=()), y_hard)
    return y_hard - _backend.stop_gradient(xp, y) + y
