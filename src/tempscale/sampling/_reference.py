"""The generic (reference) filters: full sorts and Array-API operations only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _backend, _compat
from .._compat import is_python_scalar
from . import _arith
from ._layout import Args, final_T, full, is_zero_T


def keep_mask(a: Args, key: Any, valid: Any) -> Any:
    """The keep mask after the chain's rules and greedy rows (generic path), each rule on the
    distribution the ones before leave, in the order of ``a.chain`` (for the named orders,
    transformers' chain order).  A filter after ``"temperature"`` sees ``softmax(x / T)``, one
    before it ``softmax(x)``; dynamic temperature replaces ``a.T`` by the per-row ``T`` it
    computes at its place in the chain."""
    xp = a.xp
    keep = valid
    cache: dict[bool, tuple[Any, Any]] = {}

    def ze(on: bool) -> tuple[Any, Any]:
        """(z, exp z): the max-shifted logits, tempered when ``on``."""
        if on not in cache:
            m = xp.max(key, axis=-1, keepdims=True)
            z = _arith.inf_rows(a, key, _arith.tempered(a, key, m, on), m)
            cache[on] = (z, _arith.exp(a, z))
        return cache[on]

    on = False
    for rule in a.chain:
        if rule == "temperature":
            if a.dyn_range is not None:
                a.T = _dynamic_T(a, keep, ze(False)[0])
            on = True
        elif rule == "top_n_sigma" and a.top_n_sigma is not None:
            keep = _top_n_sigma(a, key, keep)
        elif rule == "top_k" and a.top_k is not None:
            keep = _top_k(a, key, keep)
        elif rule == "top_p" and a.top_p is not None:
            keep = _top_p(a, key, keep, ze(on)[1])
        elif rule == "min_p" and a.min_p is not None:
            keep = _min_p(a, key, keep, ze(on)[1])
        elif rule == "typical_p" and a.typical_p is not None:
            keep = _typical(a, key, ze(on)[0], keep)
        elif rule == "epsilon" and a.epsilon is not None:
            p = _arith.probs(a, ze(on)[1], keep)
            keep = _cut(a, key, keep, p < _as(xp, a.epsilon, p.dtype))
        elif rule == "eta" and a.eta is not None:
            z, e = ze(on)
            p = _arith.probs(a, e, keep)
            keep = _cut(a, key, keep, p < _eta_threshold(a, z, keep, p))
        elif rule == "top_h" and a.top_h is not None:
            keep = _top_h(a, key, keep, ze(on)[0])
        elif rule == "xtc" and a.xtc_threshold is not None:
            keep = _xtc(a, key, keep, ze(on)[1])
    return greedy_keep(a, keep, key, valid)


def _top_k(a: Args, key: Any, keep: Any) -> Any:
    """Keep the logits ``>=`` the ``k``-th largest kept one (ties kept), ``k >= min_tokens_to_keep``."""
    xp = a.xp
    V = a.V
    k = a.top_k
    kk = xp.where(keep, key, full(xp, key, -math.inf, shape=()))
    srt = xp.sort(kk, axis=-1, descending=True)
    if is_python_scalar(k):
        k = min(max(k, a.mtk), V)
        kth = srt[:, k - 1:k]
    else:
        k = xp.clip(k, a.mtk, V)
        kth = xp.take_along_axis(srt, xp.astype(k - 1, _backend.index_dtype(xp)), axis=-1)
    return xp.logical_and(keep, key >= kth)


def _top_p(a: Args, key: Any, keep: Any, e: Any) -> Any:
    """transformers' ``TopPLogitsWarper`` in its own arithmetic (exact cumulative sums)."""
    xp = a.xp
    V = a.V
    ninf = full(xp, key, -math.inf, shape=())
    pos = xp.arange(V, device=_compat.device(key))
    p = _arith.probs(a, e, keep)
    kk = xp.where(keep, key, ninf)
    idx = xp.argsort(kk, axis=-1, stable=True)  # ascending; ties by index
    rem = _arith.cum_decide(a, None, xp.take_along_axis(p, idx, axis=-1),
                            _arith.top_p_threshold(a, p.dtype))
    rem = xp.logical_and(rem, pos < V - a.mtk)  # the best min_tokens_to_keep stay
    if not is_python_scalar(a.top_p):
        rem = xp.logical_and(rem, a.top_p < 1)
    inv = xp.argsort(idx, axis=-1)
    return xp.logical_and(keep, xp.logical_not(xp.take_along_axis(rem, inv, axis=-1)))


def _min_p(a: Args, key: Any, keep: Any, e: Any) -> Any:
    """transformers' ``MinPLogitsWarper``: remove ``p < min_p * p_max``."""
    xp = a.xp
    B, V = a.B, a.V
    p = _arith.probs(a, e, keep)
    rem = p < _arith.min_p_threshold(a, p, keep)
    if a.mtk > 1:
        prot = _rank(a, key, keep) < a.mtk  # ties: lower index first
        rem = xp.logical_and(rem, xp.logical_not(xp.broadcast_to(prot, (B, V))))
    return xp.logical_and(keep, xp.logical_not(rem))


def _rank(a: Args, key: Any, keep: Any) -> Any:
    """Each token's position in the descending logit ranking of the kept tokens (ties: lower
    index first; removed tokens after every kept one)."""
    xp = a.xp
    kk = xp.where(keep, key, full(xp, key, -math.inf, shape=()))
    idx = xp.argsort(kk, axis=-1, descending=True, stable=True)
    return xp.argsort(idx, axis=-1)


def _count(xp: Any, m: Any) -> Any:
    """The number of True entries per row (keepdims), in the index dtype."""
    return xp.sum(xp.astype(m, _backend.index_dtype(xp)), axis=-1, keepdims=True)


#: transformers' ``TopHLogitsWarper`` looks at this many most probable tokens
TOP_H_N = 100


def _top_h(a: Args, key: Any, keep: Any, z: Any) -> Any:
    """Top-H (transformers' ``TopHLogitsWarper``): over the ``min(100, V)`` most probable kept
    tokens, renormalised, keep the longest prefix of the ranking whose cumulative entropy terms
    ``-p log p`` stay ``<= top_h * H`` (``H`` their entropy), at least the first
    ``max(1, min_tokens_to_keep)`` tokens; every other token is removed."""
    xp = a.xp
    V = a.V
    n = min(TOP_H_N, V)
    ninf = full(xp, z, -math.inf, shape=())
    kk = xp.where(keep, key, full(xp, key, -math.inf, shape=()))
    idx = xp.argsort(kk, axis=-1, descending=True, stable=True)
    top = idx[:, :n]
    kt = xp.take_along_axis(keep, top, axis=-1)
    zt = xp.where(kt, xp.take_along_axis(z, top, axis=-1), ninf)
    c = top_h_count(a, kt, zt)
    # the first c tokens of the ranking: above the c-th one's logit, or tied with it at an index
    # up to its own (ties rank lower index first)
    return ranking_prefix(a, kk, keep, xp.take_along_axis(idx, c - 1, axis=-1))


def top_h_count(a: Args, kt: Any, zt: Any) -> Any:
    """How many of the ranking's first tokens top-H keeps (B, 1), from the first ``n`` of the
    ranking: ``kt`` whether each is kept, ``zt`` its max-shifted tempered logit (``-inf`` where
    not kept)."""
    xp = a.xp
    lz = _log_probs(a, zt, kt)  # the renormalised log-probabilities of the top n
    p = _arith.exp(a, lz)
    zero = xp.zeros_like(p)
    H = -xp.sum(xp.where(kt, lz * p, zero), axis=-1, keepdims=True)
    lp = xp.log(xp.where(kt, p, xp.ones_like(p)))
    terms = xp.where(kt, -p * lp, zero)
    cum = xp.cumulative_sum(terms, axis=-1)
    th = _as(xp, a.top_h, cum.dtype)
    sel = xp.logical_and(cum <= H * th, kt)  # a prefix: the terms are >= 0
    c = _count(xp, sel)
    return xp.clip(xp.where(c > a.mtk, c, xp.full_like(c, a.mtk)), None, a.V)


def ranking_prefix(a: Args, kk: Any, keep: Any, L: Any) -> Any:
    """``keep`` less the tokens after the token ``L`` (B, 1) in the descending logit ranking of
    ``kk`` (ties: lower index first)."""
    xp = a.xp
    v = xp.take_along_axis(kk, L, axis=-1)
    pos = xp.arange(a.V, device=_compat.device(kk))
    first = xp.logical_or(kk > v, xp.logical_and(kk == v, pos <= L))
    return xp.logical_and(keep, first)


def _xtc(a: Args, key: Any, keep: Any, e: Any) -> Any:
    """XTC (llama.cpp's "exclude top choices"): where at least two kept tokens have probability
    ``>= xtc_threshold``, remove all of them but the least probable (the last of them in the
    logit ranking, ties by lower index first), unless fewer than ``min_tokens_to_keep`` tokens
    would be left.  Rows whose ``xtc_probability`` is 0 (or threshold above 0.5) are left alone."""
    xp = a.xp
    p = _arith.probs(a, e, keep)
    thr = _as(xp, a.xtc_threshold, p.dtype)
    above = _count(xp, xp.logical_and(keep, p >= thr))
    n = _count(xp, keep)
    go = xp.logical_and(above >= 2, n - (above - 1) >= a.mtk)
    if not is_python_scalar(thr):
        go = xp.logical_and(go, thr <= 0.5)
    pr = a.xtc_probability
    if not is_python_scalar(pr):
        go = xp.logical_and(go, pr >= 1)
    # the tokens >= the threshold are the top ``above`` of the ranking; the one kept is the last
    # of them: the smallest logit among them, the highest index among its ties (no sort)
    top = xp.logical_and(keep, p >= thr)
    pinf = full(xp, key, math.inf, shape=())
    kmin = xp.min(xp.where(top, key, pinf), axis=-1, keepdims=True)
    pos = xp.arange(a.V, device=_compat.device(key))
    last = xp.max(xp.where(xp.logical_and(top, key == kmin), pos, -xp.ones_like(pos)), axis=-1,
                  keepdims=True)
    rem = xp.logical_and(xp.logical_and(top, pos != last), go)
    return xp.logical_and(keep, xp.logical_not(rem))


def _dynamic_T(a: Args, keep: Any, z1: Any) -> Any:
    """llama.cpp's dynamic temperature (``temp_ext``), per row in the wide dtype:
    ``T_dyn = lo + (hi - lo) * (H / log n) ** exponent`` with ``lo = max(0, T - range)``,
    ``hi = T + range``, ``H`` the entropy of ``softmax(x)`` over the ``n`` tokens kept so far;
    ``T`` unchanged where ``n <= 1``, ``T = 0`` (greedy) and ``T = inf`` rows unchanged."""
    xp = a.xp
    wide = a.wide
    logp = _log_probs(a, z1, keep)
    H = _entropy(a, logp, _arith.exp(a, logp), keep)
    H = xp.astype(H, wide) if H.dtype != wide else H
    n = xp.astype(_count(xp, keep), wide)
    one = xp.ones_like(n)
    norm = H / xp.log(xp.where(n > 1, n, one + one))
    T = a.T if not is_python_scalar(a.T) else full(xp, n, a.T)
    r = a.dyn_range if is_python_scalar(a.dyn_range) else xp.astype(a.dyn_range, wide)
    ex = a.dyn_exp if is_python_scalar(a.dyn_exp) else xp.astype(a.dyn_exp, wide)
    lo = T - r
    lo = xp.where(lo > 0, lo, xp.zeros_like(lo))
    hi = T + r
    Td = lo + (hi - lo) * norm ** ex
    ok = xp.logical_and(n > 1, xp.logical_and(T > 0, T < math.inf))
    ok = xp.logical_and(ok, xp.logical_not(xp.isnan(Td)))
    if not is_python_scalar(a.dyn_range):
        ok = xp.logical_and(ok, r > 0)
    return xp.where(ok, Td, T)


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


def _log_probs(a: Args, z: Any, keep: Any, fast: bool = False) -> Any:
    """``log p`` over ``keep`` (``-inf`` elsewhere): ``z - log(sum of the kept exp z)``, ``z``
    the max-shifted tempered logits.

    ``fast`` (concrete arrays only, the fast path): ``z`` is already ``-inf`` wherever ``keep`` is
    False, and where every row's kept maximum is ``+0`` the subtraction ``z - 0`` (the identity)
    is skipped: the same numbers, two passes fewer.
    """
    xp = a.xp
    ninf = full(xp, z, -math.inf, shape=())
    zk = z if fast else xp.where(keep, z, ninf)
    m = xp.max(zk, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    if fast and bool(xp.all(xp.logical_and(m == 0, xp.logical_not(xp.signbit(m))))):
        zm = zk
    else:
        zm = zk - m
    s = xp.sum(_arith.exp(a, zm), axis=-1, keepdims=True)
    s = xp.where(s > 0, s, xp.ones_like(s))
    return zm - xp.log(s)  # m and log(s) are finite: -inf stays -inf where not kept


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
    p, shifted = typical_parts(a, z, keep)
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


def typical_parts(a: Args, z: Any, keep: Any) -> tuple[Any, Any]:
    """``(p, |-log p - H|)`` of typical-p over ``keep`` (``inf`` elsewhere), ``z`` the max-shifted
    tempered logits, ``H`` the entropy of the kept distribution."""
    xp = a.xp
    logp = _log_probs(a, z, keep)
    p = _arith.exp(a, logp)
    H = _entropy(a, logp, p, keep)
    pinf = full(xp, p, math.inf, shape=())
    return p, xp.where(keep, xp.abs(-logp - H), pinf)


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


def _eta_threshold(a: Args, z: Any, keep: Any, p: Any, fast: bool = False) -> Any:
    """``min(eps, sqrt(eps) * exp(-H))`` in transformers' ``EtaLogitsWarper`` arithmetic: ``eps``
    rounded to float32 (its 0-d float32 tensor) and its square root taken in float32 (``fast``:
    see :func:`_log_probs`)."""
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
    logp = _log_probs(a, z, keep, fast)
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
