"""The fast path (NumPy and PyTorch): the generic path's decisions without a full sort.

Top-k comes from a partial selection; top-p from a bisection on the logit value that leaves a
band of at most :data:`GAP` undecided tokens to sort.  Every sum a decision depends on is first
estimated in float64 (one pass, with a proven error bound) and recomputed with the generic
path's exact multi-part arithmetic only for the rows where an estimate lies within rounding
distance of a decision edge: the kept sets are the generic path's, bit for bit.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from .. import _compat
from .._compat import is_python_scalar
from . import _arith, _reference
from ._layout import ORDERS, Args, final_T, full, is_zero_T
from ._ops import Ops, TorchOps, ops_for

#: the fast top-p search stops bisecting once a row's undecided band holds at most this many tokens
GAP = 256

Candidates = tuple[Any, Any, Any, Any, Any]
"""(ci, cx, T, keepc, nan_row): see :func:`candidates`."""

_U64 = 2.0 ** -53  # the unit roundoff of float64


def candidates(a: Args, via_numpy: bool = True) -> tuple[Args, Candidates] | None:
    """The warped distribution on a compact candidate set, without a full sort.

    Returns ``(args, (ci, cx, T, keepc, nan_row))``: per row the candidate token indices ``ci``
    (B, W) in increasing order, their logits ``cx`` and keep mask ``keepc`` (the result is
    ``softmax(cx, T, mask=keepc)`` scattered back), in the namespace of ``args`` (NumPy views for
    CPU tensors when ``via_numpy``); or None when the generic path must run.  Exact and identical
    to the generic path: top-k from the k largest values (ties at the k-th value are collected
    too), top-p by bisecting for a logit band around the boundary so that only a few hundred
    tokens are sorted (the cumulative sums are those of the full sort), min-p from the same
    probabilities.
    """
    ops = ops_for(a)
    if ops is None or a.B == 0 or (a.mtk != 1 and not _cutoffs_only(a)):
        return None
    if ops is TorchOps and via_numpy and a.x.device.type == "cpu":
        return candidates(a.numpy_view())
    xp, x = a.xp, a.x
    key, valid, nan_row = _keys(a)
    ninf = full(xp, key, -math.inf, shape=())
    m = xp.max(key, axis=-1, keepdims=True)
    if bool(xp.any(m == math.inf)):
        return None  # +inf logits: the limit rules live in the generic path
    if a.top_h is not None:  # first in both named orders: the tokens it removes become -inf
        key = _top_h(a, ops, key, m)
        valid = key > ninf
    ci, ck = _top_k(a, ops, key, valid)
    if ci is None:
        ck = key  # full rows: positions are the token indices
    keep = ck > ninf
    keep0 = keep  # every finite candidate: the tempered logits are -inf exactly where not kept
    e = z_full = None  # exp of the tempered candidates; the tempered full rows (when computed)
    if a.top_p is not None or a.min_p is not None:
        z = _arith.tempered(a, ck, m)
        if ci is None:
            z_full = z
        e = _arith.exp(a, z)
        if a.top_p is not None:
            p = probs(a, ops, e, keep)
            sub = _top_p_subset(a, ops, ck, p) if ci is None else None
            if sub is None:
                keep = _top_p(a, ops, ck, p, keep, m)
            else:  # every token outside ``ci`` is removed: go on with the compact candidates
                full_rows = (ck, p)
                ci, ck, base = sub
                keep = ck > ninf
                e = xp.where(keep, xp.take_along_axis(e, ci, axis=-1), xp.zeros_like(e[:, :1]))
                pc = xp.where(keep, xp.take_along_axis(p, ci, axis=-1), xp.zeros_like(p[:, :1]))
                keep = _top_p(a, ops, ck, pc, keep, m, base, full_rows, ci)
        if a.min_p is not None:
            p = probs(a, ops, e, keep)  # zero outside keep: its row maximum is p_max
            mp = a.min_p if is_python_scalar(a.min_p) else xp.astype(a.min_p, p.dtype)
            keep = xp.logical_and(keep, xp.logical_not(p < xp.max(p, axis=-1, keepdims=True) * mp))
    if a.typical_p is not None:  # after min-p, before epsilon and eta in both named orders
        if z_full is None:
            z_full = _arith.tempered(a, key, m)
        kf = _typical(a, ops, key, m, z_full, keep if ci is None else scatter_keep(a, ci, keep))
        keep = kf if ci is None else xp.logical_and(keep, xp.take_along_axis(kf, ci, axis=-1))
    if a.epsilon is not None or a.eta is not None:
        keep = _cutoffs(a, ops, key, m, ci, ck, keep, e, z_full, ci is None and keep is keep0)
    zero_T = is_zero_T(a)
    if zero_T is not False:  # greedy rows: the candidate holding the first maximum
        W = ck.shape[-1]
        posn = xp.arange(W, device=_compat.device(ck))
        first = xp.min(xp.where(ck == m, posn, full(xp, posn, W, shape=())), axis=-1, keepdims=True)
        onehot = xp.logical_and(posn == first, ck > ninf)
        keep = onehot if zero_T is True else xp.where(zero_T, onehot, keep)
    if ci is None:
        ci, cx, keep = _maybe_compact(a, ops, keep)
    else:
        cx = xp.take_along_axis(x, ci, axis=-1)
    return a, (ci, cx, final_T(a), keep, nan_row)


def supported(a: Args) -> bool:
    """Whether the fast path covers the rules ``a`` sets: temperature, top-H, top-k, top-p, min-p,
    typical-p, epsilon and eta in a named order (the others run on the generic path)."""
    if a.typical_p is not None and _compat.is_torch_namespace(a.xp) and a.x.device.type != "cpu":
        return False  # its cumulative sums must be summed one after another (CPU)
    return (a.top_n_sigma is None and a.dyn_range is None and a.xtc_threshold is None
            and a.order in ORDERS)


def _cutoffs_only(a: Args) -> bool:
    """Whether epsilon and eta are the only truncation rules (``min_tokens_to_keep > 1`` is then
    on the fast path: it needs only the row's ``min_tokens_to_keep``-th largest logit)."""
    return (a.top_k is None and a.top_p is None and a.min_p is None and a.typical_p is None
            and a.top_h is None)


def _cutoffs(a: Args, ops: type[Ops], key: Any, m: Any, ci: Any, ck: Any, keep: Any, e: Any,
             z_full: Any, plain: bool) -> Any:
    """Epsilon and eta on the candidates, in the chain's order: the generic path's rules
    (``_reference.keep_mask``) without a sort.

    Both remove the kept tokens of probability below a threshold except the row's most probable
    one.  The probabilities are :func:`probs` (the generic path's numbers exactly); eta's
    threshold needs the entropy of the kept distribution, which the generic path sums over full
    rows: it is computed by the generic path's own function on the full rows (the tempered logits
    and the keep mask scattered back), in the generic path's library (PyTorch for NumPy views of
    CPU tensors), so that it is the same number bit for bit.
    """
    xp = a.xp
    ninf = full(xp, ck, -math.inf, shape=())
    if e is None:
        z = _arith.tempered(a, ck, m)
        if ci is None:
            z_full = z
        e = _arith.exp(a, z)
    for rule in a.chain:
        if rule == "epsilon" and a.epsilon is not None:
            p = probs(a, ops, e, keep)
            rem = p < _reference._as(xp, a.epsilon, p.dtype)
        elif rule == "eta" and a.eta is not None:
            p = probs(a, ops, e, keep)
            if z_full is None:
                z_full = _arith.tempered(a, key, m)
            keep_full = keep if ci is None else scatter_keep(a, ci, keep)
            # -inf wherever not kept: the removed tokens' logits (-inf keys are -inf already)
            zk = z_full if plain else xp.where(keep_full, z_full, ninf)
            rem = p < _eta_threshold(a, zk, keep_full, p)
        else:
            continue
        if a.mtk > 1:  # protect the logits >= the min_tokens_to_keep-th largest kept one
            kk = xp.where(keep, ck, ninf)
            n = min(a.mtk, ck.shape[-1])
            rem = xp.logical_and(rem, kk < ops.topk(kk, n)[0][:, n - 1:n])
        elif a.typical_p is None:  # the rules before keep the row's maximum m (if any token)
            rem = xp.logical_and(rem, ck < m)
        else:
            kk = xp.where(keep, ck, ninf)
            rem = xp.logical_and(rem, kk < xp.max(kk, axis=-1, keepdims=True))
        keep = xp.logical_and(keep, xp.logical_not(rem))
        plain = False
    return keep


def _eta_threshold(a: Args, z: Any, keep: Any, p: Any) -> Any:
    """``_reference._eta_threshold`` in the generic path's library (``z`` is ``-inf`` wherever
    ``keep`` is False: see ``_reference._log_probs``)."""
    return _in_generic_library(a, _eta_fast, z, keep, p)


def _eta_fast(b: Args, z: Any, keep: Any, p: Any) -> Any:
    return _reference._eta_threshold(b, z, keep, p, fast=True)


def _in_generic_library(a: Args, f: Any, *arrays: Any) -> Any:
    """``f(a, *arrays)`` run in the library the generic path would use: NumPy views of CPU tensors
    go back to (zero-copy) tensors, so that sums and cumulative sums (whose rounding depends on
    the order of the additions) are PyTorch's, bit for bit."""
    if not a.torch_exp:
        return f(a, *arrays)
    import array_api_compat.torch as tx
    import torch

    b = copy.copy(a)
    b.xp, b.wide, b.torch_exp = tx, torch.float64, False
    for name in ("eta", "top_h", "typical_p"):
        v = getattr(a, name)
        if v is not None and not is_python_scalar(v):
            setattr(b, name, torch.from_numpy(np.ascontiguousarray(v)))
    r = f(b, *(torch.from_numpy(np.ascontiguousarray(v)) for v in arrays))
    return tuple(t.numpy() for t in r) if isinstance(r, tuple) else r.numpy()


def _cumsum(b: Args, v: Any) -> Any:
    return b.xp.cumulative_sum(v, axis=-1)


def _typical_bound(a: Args, ops: type[Ops], p: Any, shifted: Any, keep: Any, mass: Any) -> Any:
    """Per row a bound ``t`` on ``|-log p - H|`` whose tokens hold (float64 estimate) at least
    ``typical_p`` plus a margin, by bisection (``inf``: every kept token)."""
    xp = a.xp
    pinf = full(xp, shifted, math.inf, shape=())
    fin = xp.logical_and(keep, shifted < pinf)
    hi = xp.max(xp.where(fin, shifted, xp.zeros_like(shifted)), axis=-1, keepdims=True)
    if a.V <= 4 * GAP:
        return pinf * xp.ones_like(hi)
    mass64 = (mass if is_python_scalar(mass) else ops.f64(mass)) + 1e-3
    total = ops.msum(p, fin)
    hi = xp.where(total >= mass64, hi, pinf * xp.ones_like(hi))  # short rows: every kept token
    lo = xp.zeros_like(hi)
    Wp, Ws = p, shifted
    for it in range(24):
        if it == 4:  # work on the tokens below hi from here on
            cnt = int(xp.max(ops.count(xp.logical_and(fin, shifted <= hi))))
            if cnt * 4 > a.V:
                break
            ci, Ws = ops.compact(-shifted, xp.logical_and(fin, shifted <= hi))
            real = Ws > full(xp, Ws, -math.inf, shape=())
            Ws = xp.where(real, -Ws, pinf)
            Wp = xp.where(real, xp.take_along_axis(p, ci, axis=-1), xp.zeros_like(Ws))
        mid = lo / 2 + hi / 2
        M = ops.msum(Wp, Ws <= mid)
        good = M >= mass64
        hi = xp.where(good, mid, hi)
        lo = xp.where(good, lo, mid)
        if it >= 4 and int(xp.max(ops.count(Ws <= hi))) <= GAP:
            break
    return hi


def _typical(a: Args, ops: type[Ops], key: Any, m: Any, z_full: Any, keep_full: Any) -> Any:
    """Typical-p (``_reference._typical``) on full rows, sorting only the candidates that could be
    kept: the tokens whose ``|-log p - H|`` is at most a threshold ``t`` estimated from a strided
    sample.  The cumulative sums of the generic path's full sort start with those of the
    candidates' sort (a prefix: the same tokens in the same order, summed one after another in
    the generic path's library), so where they reach ``typical_p`` among the candidates the
    decision is the generic path's; other rows take ``t = inf`` (every kept token)."""
    xp = a.xp
    if z_full is None:
        z_full = _arith.tempered(a, key, m)
    p, shifted = _in_generic_library(a, _reference.typical_parts, z_full, keep_full)
    mass = _reference._as(xp, a.typical_p, p.dtype)
    pinf = full(xp, shifted, math.inf, shape=())
    ninf = full(xp, shifted, -math.inf, shape=())
    t = _typical_bound(a, ops, p, shifted, keep_full, mass)
    for _ in range(2):
        cand = xp.logical_and(keep_full, shifted <= t)
        ci, cneg = ops.compact(-shifted, cand)  # index order, -inf padding
        real = cneg > ninf
        cs = xp.where(real, -cneg, pinf)
        o = ops.argsort_values(cs)  # ascending, ties in index order: the generic path's order
        cs = xp.take_along_axis(cs, o, axis=-1)
        real = xp.take_along_axis(real, o, axis=-1)
        pc = xp.where(real, xp.take_along_axis(p, xp.take_along_axis(ci, o, axis=-1), axis=-1),
                      xp.zeros_like(p[:, :1]))
        cum = _in_generic_library(a, _cumsum, pc)
        nreal = ops.count(real)
        last = ops.count(xp.logical_and(cum < mass, real))
        short = xp.logical_and(last >= nreal, t < pinf)  # not reached among the candidates
        if not bool(xp.any(short)):
            break
        t = xp.where(short, pinf, t)
    last = xp.clip(xp.minimum(last, nreal - 1), 0, None)
    thr = xp.take_along_axis(cs, xp.astype(last, xp.int64), axis=-1)
    rem = shifted > thr
    if not is_python_scalar(a.typical_p):
        rem = xp.logical_and(rem, a.typical_p < 1)
    return xp.logical_and(keep_full, xp.logical_not(rem))


def _top_h(a: Args, ops: type[Ops], key: Any, m: Any) -> Any:
    """Top-H (``_reference._top_h``) without a full sort: the first ``min(100, V)`` tokens of the
    ranking (descending logit, ties lower index first) from a partial selection, the generic
    path's own arithmetic on them, and ``key`` with ``-inf`` at the tokens it removes."""
    xp = a.xp
    n = min(_reference.TOP_H_N, a.V)
    ninf = full(xp, key, -math.inf, shape=())
    if n == a.V:
        top = ops.argsort_values(-key)
    else:
        kth = ops.topk(key, n)[0][:, n - 1:n]
        ci, ck = ops.compact(key, key >= kth)  # the n largest and every tie, in index order
        top = xp.take_along_axis(ci, ops.argsort_values(-ck)[:, :n], axis=-1)
    kt = xp.take_along_axis(key, top, axis=-1) > ninf
    zt = _arith.tempered(a, xp.take_along_axis(key, top, axis=-1), m)  # -inf where not kept
    c = _in_generic_library(a, _reference.top_h_count, kt, zt)
    keep = _reference.ranking_prefix(a, key, key > ninf, xp.take_along_axis(top, c - 1, axis=-1))
    return xp.where(keep, key, ninf)


def _keys(a: Args) -> tuple[Any, Any, Any]:
    """:func:`_arith.keys`; without a mask or a NaN the logits themselves are the keys."""
    xp, x = a.xp, a.x
    if a.mask is None:
        nan = xp.isnan(x)
        if not bool(xp.any(nan)):
            return x, x > full(xp, x, -math.inf, shape=()), xp.zeros((a.B, 1), dtype=xp.bool,
                                                                    device=_compat.device(x))
    return _arith.keys(a)


def _top_k(a: Args, ops: type[Ops], key: Any, valid: Any) -> tuple[Any, Any]:
    """(indices, logits) of the top-k candidates in index order (-inf padded), or (None, None)
    when top-k keeps every token."""
    xp = a.xp
    V = a.V
    ninf = full(xp, key, -math.inf, shape=())
    k = a.top_k
    kmax = None if k is None else (k if is_python_scalar(k) else int(xp.max(k)))
    if kmax is None:
        return None, None
    if kmax >= V:
        if is_python_scalar(k):
            return None, None
        small = k < V  # rows that truncate; the others keep everything
        km = int(xp.max(xp.where(small, k, xp.zeros_like(k))))
        if km == 0:
            return None, None
        vals = ops.topk(key, km)[0]
        kth = xp.take_along_axis(vals, xp.astype(xp.clip(k, 1, km) - 1, xp.int64), axis=-1)
        kth = xp.where(small, kth, ninf)
        return ops.compact(key, xp.logical_and(valid, key >= kth))
    sup = ops.topk_superset(key, kmax)
    if sup is not None:
        ci, ck = sup  # every token >= the k-th largest (and a few more), in index order
        vals = ops.topk(ck, kmax)[0]
        kth = vals[:, kmax - 1:kmax] if is_python_scalar(k) else \
            xp.take_along_axis(vals, xp.astype(k - 1, xp.int64), axis=-1)
        return ci, xp.where(ck >= kth, ck, ninf)
    vals, idx = ops.topk(key, kmax)  # descending
    kth = vals[:, kmax - 1:kmax] if is_python_scalar(k) else \
        xp.take_along_axis(vals, xp.astype(k - 1, xp.int64), axis=-1)
    if bool(xp.any(vals[:, -1:] == kth)) and \
            bool(xp.any(ops.count(key >= kth) > ops.count(vals >= kth))):
        return ops.compact(key, xp.logical_and(valid, key >= kth))  # ties beyond the k largest
    ck = xp.where(vals >= kth, vals, ninf)
    order_ = ops.argsort(idx)
    return xp.take_along_axis(idx, order_, axis=-1), xp.take_along_axis(ck, order_, axis=-1)


def _maybe_compact(a: Args, ops: type[Ops], keep: Any) -> tuple[Any, Any, Any]:
    """(indices, logits, keep) of the kept tokens, compacted when they are few."""
    xp = a.xp
    if int(xp.max(ops.count(keep))) * 4 <= a.V:
        ci, cx = ops.compact(a.x, keep)  # kept logits are finite: the padding is -inf
        return ci, cx, cx > full(xp, cx, -math.inf, shape=())
    ci = xp.broadcast_to(xp.arange(a.V, device=_compat.device(keep))[None, :], (a.B, a.V))
    return ci, a.x, keep


def scatter_keep(a: Args, ci: Any, keepc: Any) -> Any:
    """The (B, V) keep mask from the compact candidate arrays."""
    xp = a.xp
    B, V = a.B, a.V
    if ci.shape[-1] == V and keepc.shape[-1] == V and \
            bool(xp.all(ci == xp.arange(V, device=_compat.device(ci))[None, :])):
        return keepc
    pos = xp.where(keepc, ci, full(xp, ci, V, shape=()))
    if _compat.is_torch_namespace(xp):
        import torch

        t = torch.zeros((B, V + 1), dtype=torch.bool, device=keepc.device)
        t.scatter_(1, pos, keepc)
        return t[:, :V]
    out = np.zeros((B, V + 1), dtype=bool)
    np.put_along_axis(out, pos, keepc, axis=-1)
    return out[:, :V]


# --------------------------------------------------------------------------------------------
# probabilities: the generic path's numbers, from a float64 estimate of the row sum
# --------------------------------------------------------------------------------------------
def probs(a: Args, ops: type[Ops], e: Any, keep: Any) -> Any:
    """:func:`_arith.probs` (``e`` over the exact sum of the kept ``e``), exactly, in one pass.

    The exact rule rounds ``R``, a multi-part sum within ``(V + 8) u S + V 2**-g`` of the true
    sum ``S`` (``u`` = 2**-53, ``g`` the finest grid), to ``e``'s dtype; a float64 sum in any
    order is within ``(V - 1) u S`` of ``S``.  Where both ends of that interval round to the same
    float32 number, that number is the exact rule's; the other rows (about ``V / 2**28`` of them)
    take the multi-part sum.  float64 probabilities always take it (no wider estimate exists).
    """
    xp = a.xp
    if e.dtype == a.wide or _compat.float_bits(xp, e.dtype) != 32:
        return _arith.probs(a, e, keep)
    ek = ops.zero_outside(e, keep)
    s_est = ops.sum64(ek)
    tail = a.V * 2.0 ** (1 - _arith.grids(a, _arith.sum_head(a), e.dtype)[-1])
    delta = xp.where(s_est > 0, s_est * ((a.V + 16) * 2 * _U64) + tail, xp.zeros_like(s_est))
    s = xp.astype(s_est - delta, e.dtype)
    amb = s != xp.astype(s_est + delta, e.dtype)
    if bool(xp.any(amb)):
        rows = xp.nonzero(amb[:, 0])[0]
        ew = ops.f64(ek[rows])
        exact = _arith.exact_sum(xp, _arith.parts(xp, ew, _arith.grids(a, _arith.sum_head(a), e.dtype)))
        s = xp.asarray(s, copy=True)
        s[rows] = xp.astype(exact, e.dtype)
    s = xp.where(s > 0, s, xp.ones_like(s))
    return ek * (1 / s)


# --------------------------------------------------------------------------------------------
# top-p
# --------------------------------------------------------------------------------------------
def _edges(a: Args, ops: type[Ops], thr: Any, dtype: Any) -> tuple[Any, Any]:
    """``(lo, hi)`` around the float64 edge ``E`` of the decision ``fl(R) <= thr``.

    ``R`` is the exact rule's cumulative sum before its rounding to ``dtype``: float32
    probabilities are removed below the midpoint ``E`` of ``thr`` and the next float32 number
    and kept above it; float64 ones at ``E = thr``.  An estimate ``c`` of ``R`` with
    ``|c - R| <= delta`` decides when ``c < E - delta`` (removed) or ``c > E + delta`` (kept).
    ``delta`` bounds the float64 estimates (three sums of at most ``V`` terms below 2) and the
    exact rule's dropped tails and final combination, with a factor 2 to spare.
    """
    xp = a.xp
    tail = a.V * 2.0 ** (1 - _arith.grids(a, _arith.CUM_HEAD, dtype)[-1])
    delta = (3 * a.V + 64) * 4 * _U64 + tail
    if _compat.float_bits(xp, dtype) == 32:
        if is_python_scalar(thr):
            nxt = float(np.nextafter(np.float32(thr), np.float32(np.inf)))
            E = (thr + nxt) / 2  # exact: two neighbouring float32 numbers
        else:
            nxt = xp.nextafter(thr, full(xp, thr, math.inf, shape=()))
            E = (ops.f64(thr) + ops.f64(nxt)) / 2
    else:
        E = thr
    return E - delta, E + delta


def _guess(a: Args, key: Any, p: Any, thr: Any, n: Any) -> Any:
    """Per row the smallest logit of probability ``>= thr / (2 n)`` (``n`` tokens): the tokens
    below it hold less than ``thr / 2``, so they are usually all removed (``inf`` if none)."""
    xp = a.xp
    thr_w = thr if is_python_scalar(thr) else xp.astype(thr, n.dtype)
    bound = xp.astype(thr_w / (2.0 * xp.where(n > 0, n, xp.ones_like(n))), p.dtype)
    pinf = full(xp, key, math.inf, shape=())
    return xp.min(xp.where(p >= bound, key, pinf), axis=-1, keepdims=True)


def _sample_bracket(a: Args, ops: type[Ops], key: Any, p: Any, thr: Any, margin: int) -> tuple[Any, Any]:
    """Per row two logits around the top-p boundary, estimated from a strided sample: the mass
    below the first is about ``thr`` less ``margin`` samples, below the second ``margin`` more."""
    xp = a.xp
    stride = max(1, key.shape[-1] // 4096)
    ks = key[:, ::stride]
    o = ops.argsort_values(ks)  # ascending
    ks = xp.take_along_axis(ks, o, axis=-1)
    est = ops.cumsum64(xp.take_along_axis(p[:, ::stride], o, axis=-1)) * stride
    pos = ops.count(est <= (thr if is_python_scalar(thr) else ops.f64(thr)))
    n = ks.shape[-1]

    def at(i: Any) -> Any:
        return xp.take_along_axis(ks, xp.astype(xp.clip(i, 0, n - 1), xp.int64), axis=-1)

    return at(pos - margin), at(pos + margin)


def _top_p_subset(a: Args, ops: type[Ops], key: Any, p: Any) -> tuple[Any, Any, Any] | None:
    """``(ci, ck, L)``: compact candidates (index order, ``-inf`` padded) outside which every
    token is surely removed by top-p, and the float64 mass ``L`` below them; or None.

    Taken when ``top_p`` is one number, every row has a candidate and the candidates are at most
    a quarter of the row (peaked rows): the rest of the search then runs on the compact set.
    """
    xp = a.xp
    W = key.shape[-1]
    if not is_python_scalar(a.top_p) or W <= 4 * GAP:
        return None
    thr = _arith.top_p_threshold(a, p.dtype)
    lo_edge, _ = _edges(a, ops, thr, p.dtype)
    # a strided sample estimates the logit below which the mass is about thr / 2
    lo = _sample_bracket(a, ops, key, p, thr / 2, 0)[0]
    if not bool(xp.all(lo > full(xp, lo, -math.inf, shape=()))):
        return None
    below = key < lo
    if int(xp.max(ops.count(below))) * 4 < 3 * W:
        return None  # more than a quarter of a row above lo
    L = ops.msum(p, below)
    if not bool(xp.all(L < lo_edge)):
        return None
    ci, ck = ops.compact(key, xp.logical_not(below))
    return ci, ck, L


def _top_p(a: Args, ops: type[Ops], key: Any, p: Any, keep: Any, m: Any, base: Any = None,
           full_rows: tuple[Any, Any] | None = None, ci: Any = None) -> Any:
    """The top-p keep mask of the rows of ``key`` (positions in index order), by bisection.

    With ``L(t)`` the mass of the tokens with ``key < t`` (the cumulative sum of the last of
    them), the invariant per row is: every token below ``lo`` is removed (``L(lo)`` surely below
    the edge) and every token at or above ``hi`` is kept (``L(hi)`` surely above it, or ``hi``
    above the maximum).  The band ``[lo, hi)`` is halved until it holds at most :data:`GAP`
    tokens, on a compacted copy once it is small; then only the band is sorted and its
    cumulative sums start from ``L(lo)``.  Masses are float64 estimates; a row where one lies
    within rounding distance of the edge is decided by the exact rule on its full sort.

    ``key`` may be compact candidates ``ci`` of the rows ``full_rows = (key, p)`` with every
    other token removed and mass ``base`` (see :func:`_top_p_subset`).
    """
    xp = a.xp
    W = key.shape[-1]
    ninf = full(xp, key, -math.inf, shape=())
    pinf = full(xp, key, math.inf, shape=())
    thr = _arith.top_p_threshold(a, p.dtype)
    lo_edge, hi_edge = _edges(a, ops, thr, p.dtype)
    finite = key > ninf
    nonempty = m > ninf
    active = nonempty if is_python_scalar(a.top_p) else xp.logical_and(nonempty, a.top_p < 1)
    exact = xp.zeros_like(nonempty)  # rows the estimates cannot decide
    zero = xp.zeros((), dtype=xp.float64, device=_compat.device(key))

    def below(Wk: Any, Wp: Any, t: Any, base: Any) -> Any:
        """The mass below ``t`` (plus ``base``)."""
        L = ops.msum(Wp, Wk < t)
        return L if base is None else base + L

    hi = xp.where(nonempty, xp.nextafter(m, pinf), xp.zeros_like(m))  # nothing is above the maximum
    if base is not None:
        # compact candidates: everything below them is removed
        lo = xp.min(xp.where(finite, key, pinf), axis=-1, keepdims=True)
        Llo = base
    else:
        hi_c = None
        if W > 4 * GAP:  # start: a bracket estimated from a strided sample (checked below)
            lo, hi_c = _sample_bracket(a, ops, key, p, thr, 64)
            L = below(key, p, lo, None)
            ok = xp.logical_and(L < lo_edge, lo > ninf)
        else:  # start: the tokens below every token of probability >= thr / (2 n) are removed
            lo = _guess(a, key, p, thr, ops.f64(ops.count(finite)))
            L = below(key, p, lo, None)
            ok = xp.logical_and(L < lo_edge, lo < pinf)
        Llo = xp.where(ok, L, zero)
        if not bool(xp.all(xp.logical_or(ok, xp.logical_not(active)))):
            kmin = xp.min(xp.where(finite, key, pinf), axis=-1, keepdims=True)
            lo = xp.where(ok, lo, xp.where(nonempty, kmin, xp.zeros_like(kmin)))
        if hi_c is not None:
            L = below(key, p, hi_c, None)
            ok = xp.logical_and(xp.logical_and(L > hi_edge, hi_c < hi), hi_c > lo)
            hi = xp.where(ok, hi_c, hi)

    def band_count(Wk: Any) -> Any:
        return ops.count(xp.logical_and(xp.logical_and(Wk >= lo, Wk < hi), active))

    Wk, Wp, Wi, wbase = key, p, None, base  # the working set (full rows, later compacted)
    for _ in range(80):
        cnt = band_count(Wk)
        mid = lo / 2 + hi / 2
        go = xp.logical_and(xp.logical_and(active, cnt > GAP), xp.logical_and(mid > lo, mid < hi))
        go = xp.logical_and(go, xp.logical_not(exact))
        if not bool(xp.any(go)):
            break
        if Wi is None and int(xp.max(cnt)) * 4 <= W:
            # compact the band; the mass below it is L(lo)
            band = xp.logical_and(xp.logical_and(key >= lo, key < hi), active)
            Wi, Wk = ops.compact(key, xp.logical_and(band, xp.logical_not(exact)))
            Wp = xp.where(Wk > ninf, xp.take_along_axis(p, Wi, axis=-1), xp.zeros_like(p[:, :1]))
            wbase = Llo
        L = below(Wk, Wp, mid, wbase)
        up = xp.logical_and(go, L < lo_edge)
        down = xp.logical_and(go, L > hi_edge)
        exact = xp.logical_or(exact, xp.logical_and(go, xp.logical_not(xp.logical_or(up, down))))
        lo = xp.where(up, mid, lo)
        Llo = xp.where(up, L, Llo)
        hi = xp.where(down, mid, hi)
    # the band, sorted ascending by (logit, index), with cumulative sums from L(lo)
    band = xp.logical_and(xp.logical_and(xp.logical_and(Wk >= lo, Wk < hi), active),
                          xp.logical_not(exact))
    bi, bk = ops.compact(Wk, band)  # positions in the working set, in index order
    o = ops.argsort_values(bk)  # stable: ties stay in index order
    bi = xp.take_along_axis(bi, o, axis=-1)
    bk = xp.take_along_axis(bk, o, axis=-1)
    real = bk > ninf
    C = Llo + ops.cumsum64(xp.where(real, xp.take_along_axis(Wp, bi, axis=-1), xp.zeros_like(bk)))
    rem_b = xp.logical_and(C < lo_edge, real)
    undecided = xp.logical_and(real, xp.logical_not(xp.logical_or(rem_b, C > hi_edge)))
    exact = xp.logical_or(exact, xp.any(undecided, axis=-1, keepdims=True))
    # the most probable token (the highest index among tied maxima: the band's last, when the
    # band reaches the maximum) is never removed; tokens below lo are below the maximum
    last = xp.arange(bk.shape[-1], device=_compat.device(bk)) == bk.shape[-1] - 1
    rem_b = xp.logical_and(rem_b, xp.logical_not(xp.logical_and(last, bk == m)))
    cols = bi if Wi is None else xp.take_along_axis(Wi, bi, axis=-1)
    rem = ops.scatter_bool(cols, rem_b, W)
    rem = xp.logical_or(rem, xp.logical_and(key < lo, finite))
    if bool(xp.any(exact)):
        rem = _exact_rows(a, ops, key, p, thr, rem, exact, full_rows, ci)
    return xp.logical_and(keep, xp.logical_not(xp.logical_and(rem, active)))


def _exact_rows(a: Args, ops: type[Ops], key: Any, p: Any, thr: Any, rem: Any, exact: Any,
                full_rows: tuple[Any, Any] | None, ci: Any) -> Any:
    """``rem`` with the rows ``exact`` replaced by the generic path's rule on their full sort."""
    xp = a.xp
    rows = xp.nonzero(exact[:, 0])[0]
    kr, pr = (key, p) if full_rows is None else full_rows
    kr, pr = kr[rows], pr[rows]
    W = kr.shape[-1]
    idx = ops.argsort_values(kr)  # ascending, ties by index: the generic path's order
    thr_r = thr if is_python_scalar(thr) else thr[rows]
    rs = _arith.cum_decide(a, None, xp.take_along_axis(pr, idx, axis=-1), thr_r)
    rs = xp.logical_and(rs, xp.arange(W, device=_compat.device(rs)) < W - 1)  # the top stays
    rr = ops.scatter_bool(idx, rs, W)
    if ci is not None:
        rr = xp.take_along_axis(rr, ci[rows], axis=-1)
    rem = xp.asarray(rem, copy=True)
    rem[rows] = rr
    return rem
