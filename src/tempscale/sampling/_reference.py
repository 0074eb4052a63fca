"""The generic (reference) filters: full sorts and Array-API operations only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _backend, _compat
from .._compat import is_python_scalar
from . import _arith
from ._layout import Args, final_T, full, has_extra_rules, is_zero_T


def keep_mask(a: Args, key: Any, valid: Any) -> Any:
    """The keep mask after top-k, top-p, min-p, typical-p, epsilon, eta and greedy rows (generic
    path), each rule on the distribution the ones before leave (transformers' chain order)."""
    xp = a.xp
    B, V = a.B, a.V
    ninf = full(xp, key, -math.inf, shape=())
    keep = valid
    pos = xp.arange(V, device=_compat.device(key))
    if a.top_n_sigma is not None:
        keep = _top_n_sigma(a, key, keep)
    if a.top_k is not None:
        k = a.top_k
        srt = xp.sort(key, axis=-1, descending=True)
        if is_python_scalar(k):
            k = min(max(k, a.mtk), V)
            kth = srt[:, k - 1:k]
        else:
            k = xp.clip(k, a.mtk, V)
            kth = xp.take_along_axis(srt, xp.astype(k - 1, _backend.index_dtype(xp)), axis=-1)
        keep = xp.logical_and(keep, key >= kth)
    e = z = None
    if a.top_p is not None or a.min_p is not None or has_extra_rules(a):
        m = xp.max(key, axis=-1, keepdims=True)
        z = _arith.inf_rows(a, key, _arith.tempered(a, key, m), m)
        e = _arith.exp(a, z)
    if a.top_p is not None:
        p = _arith.probs(a, e, keep)
        kk = xp.where(keep, key, ninf)
        idx = xp.argsort(kk, axis=-1, stable=True)  # ascending; ties by index
        rem = _arith.cum_decide(a, None, xp.take_along_axis(p, idx, axis=-1),
                                _arith.top_p_threshold(a, p.dtype))
        rem = xp.logical_and(rem, pos < V - a.mtk)  # the best min_tokens_to_keep stay
        if not is_python_scalar(a.top_p):
            rem = xp.logical_and(rem, a.top_p < 1)
        inv = xp.argsort(idx, axis=-1)
        keep = xp.logical_and(keep, xp.logical_not(xp.take_along_axis(rem, inv, axis=-1)))
    if a.min_p is not None:
        p = _arith.probs(a, e, keep)
        rem = p < _arith.min_p_threshold(a, p, keep)
        if a.mtk > 1:
            kk = xp.where(keep, key, ninf)
            idx = xp.argsort(kk, axis=-1, descending=True, stable=True)  # ties: lower index first
            inv = xp.argsort(idx, axis=-1)
            prot = xp.take_along_axis(xp.broadcast_to(pos < a.mtk, (B, V)), inv, axis=-1)
            rem = xp.logical_and(rem, xp.logical_not(prot))
        keep = xp.logical_and(keep, xp.logical_not(rem))
    if a.typical_p is not None:
        keep = _typical(a, key, z, keep)
    if a.epsilon is not None:
        p = _arith.probs(a, e, keep)
        keep = _cut(a, key, keep, p < _as(xp, a.epsilon, p.dtype))
    if a.eta is not None:
        p = _arith.probs(a, e, keep)
        keep = _cut(a, key, keep, p < _eta_threshold(a, z, keep, p))
    return greedy_keep(a, keep, key, valid)


def _top_n_sigma(a: Args, key: Any, keep: Any) -> Any:
    """Top-n-sigma (llama.cpp): keep the logits ``>= max - n * sigma``, ``sigma`` the population
    standard deviation of the row's finite kept logits.  The tempered logits ``x / T`` give the
    same set for every ``T`` in ``(0, inf)`` (max and sigma scale by ``1 / T``), so it is
    decided on the logits themselves: the same set for ``T = 0`` and ``T = inf`` (the limit).
    A row with ``+inf`` logits keeps those; ``n = inf`` keeps every kept token."""
    xp = a.xp
    zero = xp.zeros_like(key)
    fin = xp.logical_and(keep, xp.isfinite(key))
    cnt = xp.sum(xp.astype(fin, key.dtype), axis=-1, keepdims=True)
    cnt = xp.where(cnt > 0, cnt, xp.ones_like(cnt))
    xf = xp.where(fin, key, zero)
    mean = xp.sum(xf, axis=-1, keepdims=True) / cnt
    dev = xp.where(fin, key - mean, zero)
    sigma = xp.sqrt(xp.sum(dev * dev, axis=-1, keepdims=True) / cnt)
    ninf = full(xp, key, -math.inf, shape=())
    mfin = xp.max(xp.where(fin, key, ninf), axis=-1, keepdims=True)
    n = _as(xp, a.top_n_sigma, key.dtype)
    thr = mfin - n * sigma
    if is_python_scalar(n):
        if n == math.inf:
            thr = xp.broadcast_to(ninf, thr.shape)
    else:
        thr = xp.where(n == math.inf, ninf, thr)
        thr = xp.where(n == 0, ninf, thr)  # per-row off
    m = xp.max(xp.where(keep, key, ninf), axis=-1, keepdims=True)
    thr = xp.where(m == math.inf, full(xp, key, math.inf, shape=()), thr)
    return _cut(a, key, keep, key < thr)


def _as(xp: Any, v: Any, dtype: Any) -> Any:
    """A Python number as is, a per-row array in ``dtype``."""
    return v if is_python_scalar(v) or v.dtype == dtype else xp.astype(v, dtype)


def _log_probs(a: Args, z: Any, keep: Any) -> Any:
    """``log p`` over ``keep`` (``-inf`` elsewhere): ``z - log(sum of the kept exp z)``, ``z``
    the max-shifted tempered logits."""
    xp = a.xp
    ninf = full(xp, z, -math.inf, shape=())
    zk = xp.where(keep, z, ninf)
    m = xp.max(zk, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    s = xp.sum(_arith.exp(a, zk - m), axis=-1, keepdims=True)
    s = xp.where(s > 0, s, xp.ones_like(s))
    return xp.where(keep, zk - m - xp.log(s), ninf)


def _entropy(a: Args, logp: Any, p: Any, keep: Any) -> Any:
    """The entropy (keepdims) of the kept distribution, ``-sum p log p``."""
    xp = a.xp
    t = xp.where(keep, logp * p, xp.zeros_like(p))
    return -xp.sum(t, axis=-1, keepdims=True)


def _typical(a: Args, key: Any, z: Any, keep: Any) -> Any:
    """Typical-p (transformers' ``TypicalLogitsWarper``): rank the tokens by ``|-log p - H|``
    ascending, keep them until the cumulative probability reaches ``typical_p`` (every token tied
    with the last one kept), the first ``min_tokens_to_keep`` of that ranking always."""
    xp = a.xp
    V = a.V
    logp = _log_probs(a, z, keep)
    p = _arith.exp(a, logp)
    H = _entropy(a, logp, p, keep)
    pinf = full(xp, p, math.inf, shape=())
    shifted = xp.where(keep, xp.abs(-logp - H), pinf)
    idx = xp.argsort(shifted, axis=-1, stable=True)
    ss = xp.take_along_axis(shifted, idx, axis=-1)
    cum = xp.cumulative_sum(xp.take_along_axis(p, idx, axis=-1), axis=-1)
    mass = _as(xp, a.typical_p, cum.dtype)
    last = xp.sum(xp.astype(cum < mass, _backend.index_dtype(xp)), axis=-1, keepdims=True)
    last = xp.clip(last, None, V - 1)
    rem = ss > xp.take_along_axis(ss, last, axis=-1)
    pos = xp.arange(V, device=_compat.device(key))
    rem = xp.logical_and(rem, pos >= min(a.mtk, V))
    if not is_python_scalar(a.typical_p):
        rem = xp.logical_and(rem, a.typical_p < 1)
    inv = xp.argsort(idx, axis=-1)
    return xp.logical_and(keep, xp.logical_not(xp.take_along_axis(rem, inv, axis=-1)))


def _cut(a: Args, key: Any, keep: Any, rem: Any) -> Any:
    """Remove ``rem`` from ``keep`` except the tokens whose logit is ``>=`` the
    ``min_tokens_to_keep``-th largest kept logit (transformers' epsilon / eta protection)."""
    xp = a.xp
    kk = xp.where(keep, key, full(xp, key, -math.inf, shape=()))
    n = min(a.mtk, a.V)
    if n == 1:
        kth = xp.max(kk, axis=-1, keepdims=True)
    else:
        kth = xp.sort(kk, axis=-1, descending=True)[:, n - 1:n]
    rem = xp.logical_and(rem, kk < kth)
    return xp.logical_and(keep, xp.logical_not(rem))


def _eta_threshold(a: Args, z: Any, keep: Any, p: Any) -> Any:
    """``min(eps, sqrt(eps) * exp(-H))`` in transformers' ``EtaLogitsWarper`` arithmetic: ``eps``
    rounded to float32 (its 0-d float32 tensor) and its square root taken in float32."""
    xp = a.xp
    eps = a.eta
    if is_python_scalar(eps):
        e32 = float(np.float32(eps))
        r32 = float(np.sqrt(np.float32(e32)))
    else:
        f32 = xp.float32
        e32v = xp.astype(eps, f32)
        r32v = xp.sqrt(e32v)
        e32, r32 = xp.astype(e32v, p.dtype), xp.astype(r32v, p.dtype)
    logp = _log_probs(a, z, keep)
    H = _entropy(a, logp, _arith.exp(a, logp), keep)
    H = xp.astype(H, p.dtype) if H.dtype != p.dtype else H
    thr = r32 * _arith.exp(a, -H)
    if is_python_scalar(e32):
        return xp.where(thr < e32, thr, full(xp, thr, e32, shape=()))
    return xp.where(thr < e32, thr, e32)


def greedy_keep(a: Args, keep: Any, key: Any, valid: Any) -> Any:
    """Rows with T = 0 keep only their first maximal logit (among the unmasked ones)."""
    xp = a.xp
    zero_T = is_zero_T(a)
    if zero_T is False:
        return keep
    am = xp.argmax(key, axis=-1, keepdims=True)
    pos = xp.arange(a.V, device=_compat.device(key))
    onehot = xp.logical_and(pos == am, valid)
    if zero_T is True:
        return onehot
    return xp.where(zero_T, onehot, keep)


def warp_parts(a: Args) -> tuple[Any, Any, Any, Any]:
    """(logits, T, keep, nan_row) on the full (B, V) layout, generic path: the result is
    ``softmax(logits, T, mask=keep)`` (NaN rows aside)."""
    key, valid, nan_row = _arith.keys(a)
    keep = keep_mask(a, key, valid)
    return a.x, final_T(a), keep, nan_row
