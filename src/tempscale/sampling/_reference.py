"""The generic (reference) filters: full sorts and Array-API operations only."""

from __future__ import annotations

import math
from typing import Any

from .. import _backend, _compat
from .._compat import is_python_scalar
from . import _arith
from ._layout import Args, final_T, full, is_zero_T


def keep_mask(a: Args, key: Any, valid: Any) -> Any:
    """The keep mask after top-k, top-p, min-p and greedy rows (generic path)."""
    xp = a.xp
    B, V = a.B, a.V
    ninf = full(xp, key, -math.inf, shape=())
    keep = valid
    pos = xp.arange(V, device=_compat.device(key))
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
    e = None
    if a.top_p is not None or a.min_p is not None:
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
    return greedy_keep(a, keep, key, valid)


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
