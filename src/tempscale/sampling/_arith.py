"""The arithmetic both paths share, element for element (so that they decide identically).

Probabilities are the overflow-free tempered softmax of the candidates; every sum a decision
depends on is an exact multi-part sum (order-free) rounded once, so the generic path (full
sorts) and the fast path (partial selection, bisection) compute the same numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _backend, _compat
from .._compat import is_python_scalar
from ._layout import Args, full

#: binary exponent bounding the cumulative sums of probabilities (top-p): below 2**2
CUM_HEAD = 2


def mantissa(xp: Any, dtype: Any) -> int:
    return 53 if _compat.float_bits(xp, dtype) == 64 else 24


def grids(a: Args, head: int, dtype: Any) -> list[int]:
    """Exponents ``g`` of the grids ``2**-g`` of an exact multi-part sum of non-negative numbers.

    Part ``j`` of a value is its remainder after the parts before, rounded down to the grid
    ``2**-g_j``; the grids are chosen so that any sum of up to ``V`` parts ``j`` is exactly
    representable in the wide dtype (values below ``2**head``).  Sums of parts are therefore
    exact in any order, and the total's rounding does not depend on how a row was summed.
    The parts reach about 10 bits below ``dtype``'s precision (the dtype the total is rounded to).
    """
    mant = mantissa(a.xp, a.wide)
    lv = max(1, int(a.V).bit_length())
    g = mant - head - 1
    step = max(1, mant - lv - 1)
    out = [g]
    reach = g + mantissa(a.xp, dtype) + 10
    while g < reach and len(out) < 8:
        g += step
        out.append(g)
    return out


def parts(xp: Any, v: Any, grid: list[int]) -> list[Any]:
    """``v`` (>= 0, wide dtype) split into the parts of :func:`grids` (the tail is dropped)."""
    out = []
    for j, g in enumerate(grid):
        sc = 2.0 ** g
        q = xp.floor(v * sc) / sc
        out.append(q)
        if j + 1 < len(grid):
            v = v - q
    return out


def combine(sums: list[Any]) -> Any:
    """The total of the per-part sums (always added in the same order)."""
    total = sums[-1]
    for s in reversed(sums[:-1]):
        total = s + total
    return total


def exact_sum(xp: Any, ps: list[Any]) -> Any:
    """The row sums (keepdims) of the parts, combined in a fixed order."""
    return combine([xp.sum(q, axis=-1, keepdims=True) for q in ps])


def exp(a: Args, z: Any) -> Any:
    """exp, element for element the same on both paths (one implementation per library)."""
    if a.torch_exp:  # NumPy views of CPU tensors: torch's exp, as on the generic tensor path
        return _backend.torch_exp(z)
    if _compat.is_torch_namespace(a.xp):
        return a.xp.exp(z.contiguous())
    return a.xp.exp(z)


def tempered(a: Args, key: Any, m: Any, on: bool | None = None) -> Any:
    """The max-shifted tempered logits the filters see: ``(x/2 - m/2) / (T/2)``, never overflowing.

    ``key`` holds the logits with ``-inf`` at removed entries; ``m`` the rows' maxima (finite or
    ``-inf``; rows with a ``+inf`` maximum take :func:`inf_rows`).  ``T = 0`` rows (greedy) use
    ``T = 1`` here; ``T = inf`` gives 0 (uniform).  ``on``: whether the temperature applies
    (the filter runs after it in the chain); by default, whether the order is
    ``"temperature-first"``.  float32 arithmetic where the temperature is a
    normal float32 number, else the wide dtype (so that ``T = 1e-50`` or ``5e-324`` is exact).
    """
    xp = a.xp
    m_safe = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    if on is None:  # the named orders: every filter before or every filter after the temperature
        on = a.order == "temperature-first"
    T = a.T if on else 1.0
    narrow = key.dtype != a.wide
    # T and 1/T normal float32 numbers (XLA flushes subnormals: d / T may be d * (1/T))
    lo32, hi32 = 2.0 ** -125, 2.0 ** 125
    if is_python_scalar(T) and T != math.inf:
        # a finite scalar: removed entries give -inf / t = -inf, d = 0 gives 0: no masking pass
        d = key / 2 - m_safe / 2  # in [-max, 0] at kept entries: exact halves, no overflow
        t = 1.0 if T == 0 else T
        if t == 1.0:
            return d * 2
        if narrow and not lo32 <= t <= hi32:
            return xp.astype(xp.astype(d, a.wide) / t * 2, key.dtype)
        return d / t * 2
    ninf = full(xp, key, -math.inf, shape=())
    valid = key > ninf
    d = xp.where(valid, key, m_safe) / 2 - m_safe / 2  # in [-max, 0]: exact halves, no overflow
    if is_python_scalar(T):
        t = 1.0 if T == 0 else T
        if t == 1.0:
            z = d * 2
        elif narrow and not (lo32 <= t <= hi32 or t == math.inf):
            z = xp.astype(xp.astype(d, a.wide) / t * 2, key.dtype)
        else:
            z = d / t * 2
    else:
        Tw = xp.where(T == 0, xp.ones_like(T), T)
        if narrow:
            ok = xp.logical_or(xp.logical_and(Tw >= lo32, Tw <= hi32), Tw == math.inf)
            Tn = xp.astype(xp.where(ok, Tw, xp.ones_like(Tw)), key.dtype)
            z = xp.where(ok, d / Tn * 2, xp.astype(xp.astype(d, a.wide) / Tw * 2, key.dtype))
        else:
            z = d / Tw * 2
    z = xp.where(d == 0, xp.zeros_like(z), z)  # 0 / (T underflowed to 0) would be NaN
    return xp.where(valid, z, ninf)


def inf_rows(a: Args, key: Any, z: Any, m: Any) -> Any:
    """Rows whose maximum is ``+inf``: the mass is shared by their ``+inf`` entries."""
    xp = a.xp
    inf_row = m == math.inf
    tie = xp.where(key == math.inf, xp.zeros_like(z), full(xp, z, -math.inf, shape=()))
    return xp.where(inf_row, tie, z)


def probs(a: Args, e: Any, keep: Any) -> Any:
    """Probabilities over ``keep``: ``e * (1 / s)`` with ``s`` the exact sum of the kept ``e``.

    The reciprocal, as torch's softmax: ``p_max = 1 / s`` exactly (``e = 1`` at the maximum), so
    min-p's ``p < min_p * p_max`` keeps a token whose ``e`` equals ``min_p``, as transformers."""
    xp = a.xp
    ek = xp.where(keep, e, xp.zeros_like(e))
    ew = xp.astype(ek, a.wide) if ek.dtype != a.wide else ek
    s = exact_sum(xp, parts(xp, ew, grids(a, sum_head(a), e.dtype)))
    s = xp.where(s > 0, s, xp.ones_like(s))
    s = xp.astype(s, e.dtype) if s.dtype != e.dtype else s
    return ek * (1 / s)


def top_p_threshold(a: Args, dtype: Any) -> Any:
    """``1 - top_p`` computed in the wide dtype, rounded to the probabilities' dtype."""
    xp, tp = a.xp, a.top_p
    if is_python_scalar(tp):
        t = 1.0 - tp
        return float(np.float32(t)) if _compat.float_bits(xp, dtype) == 32 else t
    t = 1 - tp
    return xp.astype(t, dtype) if t.dtype != dtype else t


def min_p_threshold(a: Args, p: Any, keep: Any) -> Any:
    """``min_p * max p`` in the probabilities' dtype."""
    xp = a.xp
    pmax = xp.max(xp.where(keep, p, xp.zeros_like(p)), axis=-1, keepdims=True)
    mp = a.min_p
    if not is_python_scalar(mp) and mp.dtype != p.dtype:
        mp = xp.astype(mp, p.dtype)
    return pmax * mp


def cum_decide(a: Args, base: list[Any] | None, p_sorted: Any, thr: Any) -> Any:
    """Top-p removals of tokens sorted ascending: ``fl(base + cumsum p) <= thr`` (exact sums).

    ``base`` is None or the per-part masses below the sorted tokens.
    """
    xp = a.xp
    pw = xp.astype(p_sorted, a.wide) if p_sorted.dtype != a.wide else p_sorted
    cs = [xp.cumulative_sum(q, axis=-1) for q in parts(xp, pw, grids(a, CUM_HEAD, p_sorted.dtype))]
    if base is not None:
        cs = [b + c for b, c in zip(base, cs, strict=True)]
    C = combine(cs)
    C = xp.astype(C, p_sorted.dtype) if C.dtype != p_sorted.dtype else C
    return C <= thr


def keys(a: Args) -> tuple[Any, Any, Any]:
    """(key, valid, nan_row): the logits with ``-inf`` at removed entries."""
    xp, x = a.xp, a.x
    ninf = full(xp, x, -math.inf, shape=())
    valid = x > ninf  # False at -inf and NaN
    nan = xp.isnan(x)
    if a.mask is not None:
        valid = xp.logical_and(valid, a.mask)
        nan = xp.logical_and(nan, a.mask)  # a masked NaN is masked, as in softmax
    nan_row = xp.any(nan, axis=-1, keepdims=True)
    return xp.where(valid, x, ninf), valid, nan_row


def sum_head(a: Args) -> int:
    """Binary exponent bounding a row sum of values in [0, 1]: the bit length of ``V``."""
    return max(1, int(a.V).bit_length())
