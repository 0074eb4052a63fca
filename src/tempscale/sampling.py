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

Rules (the same on every backend, and bit for bit the same on the fast and generic paths):

* **Ranking.**  Tokens are ranked by their logit, which is the order of ``x / T`` for every
  ``T`` in ``(0, inf)``, so rounding of ``x / T`` never creates ties and ``T = inf`` keeps the
  set of every large finite ``T`` (the limit), uniform over it.
* **Probabilities** seen by top-p and min-p are the tempered softmax computed without overflow,
  ``exp((x/2 - m/2) / (T/2))`` (``m`` the row maximum), as in :func:`tempscale.softmax`, in
  float32 for float16/bfloat16/float32 logits and float64 for float64 logits, multiplied by
  the reciprocal of a sum that does not depend on the summation order (an exact multi-part sum
  in float64), as torch's softmax multiplies by the reciprocal of its sum.
* **top-k** keeps every token whose logit is ``>=`` the ``k``-th largest, so ties at the
  ``k``-th value are all kept -- transformers' ``TopKLogitsWarper`` rule.  ``top_k >= V``
  keeps everything; ``top_k = 0`` switches the filter off (transformers' and llama.cpp's
  convention), also per row in an array of ``top_k``.
* **top-p** is transformers' ``TopPLogitsWarper`` rule in its own arithmetic: sort ascending,
  take the cumulative sum of the probabilities, remove the tokens whose cumulative sum is
  ``<= 1 - top_p`` (compared in the probabilities' dtype, ``1 - top_p`` computed in float64 and
  rounded to it), never the most probable token.  The cumulative sums are exact sums of the
  probabilities (float64 accumulation, as torch's CPU ``cumsum`` of float32) rounded to the
  probabilities' dtype, so no summation order can change a decision.  Tied logits rank
  ascending by index (a stable ascending sort): at the boundary the *higher* index is kept, as
  transformers does wherever torch's sort is stable (vocabularies of at most 16 tokens on a CPU;
  beyond that torch's own choice among tied tokens is unspecified).  ``top_p = 1`` switches the
  filter off.
* **min-p** removes tokens whose probability is ``< min_p * p_max``, the product computed in
  the probabilities' dtype (transformers' ``MinPLogitsWarper``); ``min_p = 0`` switches it off.
* ``min_tokens_to_keep`` protects the first ``n`` tokens of the ranking from top-p (tied
  logits: higher index first, as above) and from min-p (tied logits: lower index first), and
  raises top-k to at least ``n``.
* **T = 0** is greedy decoding: all the mass on the *first* maximal logit (lowest index among
  ties, like ``argmax``), whatever the filters.  It equals ``top_k=1`` when the maximum is unique
  (top-k keeps tied maxima).  Note :func:`tempscale.softmax` at ``T = 0`` *splits* the mass among
  tied maxima; a sampler must pick one token.  A tiny positive ``T`` is not greedy: it splits
  the mass among tied maxima (the limit ``T -> 0+``).  ``T = inf`` is uniform over the
  survivors.  Every ``T`` in ``[0, inf]`` and every finite logit up to the dtype's maximum are
  exact: no logit overflows into a false ``+-inf``.
* ``-inf`` logits and ``mask == False`` entries are never drawn.  A **fully masked row** gives an
  all-zero distribution (log-probabilities ``-inf``), never NaN, and :func:`sample` returns the
  index ``-1`` (log-probability ``-inf``) for it.  A row containing an unmasked NaN gives a NaN
  distribution and index ``-1`` with log-probability NaN.  Any other row (one finite or ``+inf``
  logit is enough) always has a candidate and never draws ``-1`` with replacement.

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
                 "batch_shape", "ax", "ndim", "B", "V", "func", "wide", "torch_exp")


def _prepare(logits, temperature, top_k, top_p, min_p, order, mtk, axis, mask, func) -> _Args:
    a = _Args()
    a.func = func
    a.torch_exp = False
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
    a.wide = _u64(xp, x)
    # per-row temperatures stay in the wide dtype: T = 1e-50 must not round to 0 (greedy)
    T = _prepare_temperature(temperature, x, ax, xp, a.wide, func)
    if mask is not None:
        mask = _as_mask(mask, x, xp, func)
        if tuple(mask.shape) != tuple(x.shape):
            mask = xp.broadcast_to(mask, x.shape)
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
    a.top_k = _row_param(top_k, "top_k", a, kshape, integer=True, lo=0, hi=math.inf,
                         expect="an int >= 0 (0 switches top-k off) or an array of per-row ints")
    a.top_p = _row_param(top_p, "top_p", a, kshape, lo=0, hi=1, lo_open=True, dtype=a.wide,
                         expect="a float in (0, 1] (1 switches top-p off) or an array of per-row floats")
    a.min_p = _row_param(min_p, "min_p", a, kshape, lo=0, hi=1,
                         expect="a float in [0, 1] (0 switches min-p off) or an array of per-row floats")
    if is_python_scalar(a.top_p) and a.top_p >= 1:
        a.top_p = None  # off
    if is_python_scalar(a.min_p) and a.min_p == 0:
        a.min_p = None  # off
    return a


def _shape(x):
    return getattr(x, "shape", np.shape(x))


def _rows(arr, ax, B, xp):
    """A keepdims-shaped per-row array as (B, 1)."""
    return xp.reshape(xp.moveaxis(arr, ax, -1), (B, 1))


def _row_param(value, name, a, kshape, *, lo, hi, expect, integer=False, lo_open=False, dtype=None):
    """None, a Python number, or a (B, 1) array of per-row values (checked when concrete).

    ``top_k = 0`` (scalar or per row) is "off": a scalar 0 becomes None, a per-row 0 becomes the
    vocabulary size.  Float arrays are converted to ``dtype`` (default: the compute dtype).
    """
    if value is None:
        return None
    xp, func = a.xp, a.func
    if isinstance(value, numbers.Real) and not isinstance(value, np.ndarray):
        if isinstance(value, np.generic):
            value = value.item()
        v = check_scalar(value, name, func, lo=lo, hi=hi, lo_open=lo_open, integer=integer)
        if integer:
            v = None if v == 0 else min(v, a.V)
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
    target = a.x.dtype if dtype is None else dtype
    if not integer and arr.dtype != target:
        arr = xp.astype(arr, target)
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
        arr = xp.where(arr == 0, xp.full_like(arr, a.V), xp.clip(arr, None, a.V))
    return arr


def _bcast(src, dst) -> bool:
    return len(src) == len(dst) and all(s in (1, d) for s, d in zip(src, dst, strict=True))


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
# the arithmetic both paths share, element for element (so that they decide identically)
# --------------------------------------------------------------------------------------------
def _mantissa(xp, dtype) -> int:
    return 53 if _compat.float_bits(xp, dtype) == 64 else 24


def _grids(a, head, dtype):
    """Exponents ``g`` of the grids ``2**-g`` of an exact multi-part sum of non-negative numbers.

    Part ``j`` of a value is its remainder after the parts before, rounded down to the grid
    ``2**-g_j``; the grids are chosen so that any sum of up to ``V`` parts ``j`` is exactly
    representable in the wide dtype (values below ``2**head``).  Sums of parts are therefore
    exact in any order, and the total's rounding does not depend on how a row was summed.
    The parts reach about 10 bits below ``dtype``'s precision (the dtype the total is rounded to).
    """
    mant = _mantissa(a.xp, a.wide)
    lv = max(1, int(a.V).bit_length())
    g = mant - head - 1
    step = max(1, mant - lv - 1)
    out = [g]
    reach = g + _mantissa(a.xp, dtype) + 10
    while g < reach and len(out) < 8:
        g += step
        out.append(g)
    return out


def _parts(xp, v, grids):
    """``v`` (>= 0, wide dtype) split into the parts of :func:`_grids` (the tail is dropped)."""
    out = []
    for j, g in enumerate(grids):
        sc = 2.0 ** g
        q = xp.floor(v * sc) / sc
        out.append(q)
        if j + 1 < len(grids):
            v = v - q
    return out


def _combine(sums):
    """The total of the per-part sums (always added in the same order)."""
    total = sums[-1]
    for s in reversed(sums[:-1]):
        total = s + total
    return total


def _exact_sum(xp, parts):
    return _combine([xp.sum(q, axis=-1, keepdims=True) for q in parts])


def _exp(a, z):
    """exp, element for element the same on both paths (one implementation per library)."""
    if a.torch_exp:  # NumPy views of CPU tensors: torch's exp, as on the generic tensor path
        import torch

        return torch.exp(torch.from_numpy(np.ascontiguousarray(z))).numpy()
    if _compat.is_torch_namespace(a.xp):
        return a.xp.exp(z.contiguous())
    return a.xp.exp(z)


def _tempered(a, key, m):
    """The max-shifted tempered logits the filters see: ``(x/2 - m/2) / (T/2)``, never overflowing.

    ``key`` holds the logits with ``-inf`` at removed entries; ``m`` the rows' maxima (finite or
    ``-inf``; rows with a ``+inf`` maximum take :func:`_inf_rows`).  ``T = 0`` rows (greedy) use
    ``T = 1`` here; ``T = inf`` gives 0 (uniform).  float32 arithmetic where the temperature is a
    normal float32 number, else the wide dtype (so that ``T = 1e-50`` or ``5e-324`` is exact).
    """
    xp = a.xp
    ninf = _full(xp, key, -math.inf, shape=())
    valid = key > ninf
    m_safe = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    d = xp.where(valid, key, m_safe) / 2 - m_safe / 2  # in [-max, 0]: exact halves, no overflow
    T = a.T if a.order == "temperature-first" else 1.0
    narrow = key.dtype != a.wide
    # T and 1/T normal float32 numbers (XLA flushes subnormals: d / T may be d * (1/T))
    lo32, hi32 = 2.0 ** -125, 2.0 ** 125
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


def _inf_rows(a, key, z, m):
    """Rows whose maximum is ``+inf``: the mass is shared by their ``+inf`` entries."""
    xp = a.xp
    inf_row = m == math.inf
    tie = xp.where(key == math.inf, xp.zeros_like(z), _full(xp, z, -math.inf, shape=()))
    return xp.where(inf_row, tie, z)


def _probs(a, e, keep):
    """Probabilities over ``keep``: ``e * (1 / s)`` with ``s`` the exact sum of the kept ``e``.

    The reciprocal, as torch's softmax: ``p_max = 1 / s`` exactly (``e = 1`` at the maximum), so
    min-p's ``p < min_p * p_max`` keeps a token whose ``e`` equals ``min_p``, as transformers."""
    xp = a.xp
    ek = xp.where(keep, e, xp.zeros_like(e))
    ew = xp.astype(ek, a.wide) if ek.dtype != a.wide else ek
    s = _exact_sum(xp, _parts(xp, ew, _grids(a, max(1, int(a.V).bit_length()), e.dtype)))
    s = xp.where(s > 0, s, xp.ones_like(s))
    s = xp.astype(s, e.dtype) if s.dtype != e.dtype else s
    return ek * (1 / s)


def _top_p_threshold(a, dtype):
    """``1 - top_p`` computed in the wide dtype, rounded to the probabilities' dtype."""
    xp, tp = a.xp, a.top_p
    if is_python_scalar(tp):
        t = 1.0 - tp
        return float(np.float32(t)) if _compat.float_bits(xp, dtype) == 32 else t
    t = 1 - tp
    return xp.astype(t, dtype) if t.dtype != dtype else t


def _min_p_threshold(a, p, keep):
    """``min_p * max p`` in the probabilities' dtype."""
    xp = a.xp
    pmax = xp.max(xp.where(keep, p, xp.zeros_like(p)), axis=-1, keepdims=True)
    mp = a.min_p
    if not is_python_scalar(mp) and mp.dtype != p.dtype:
        mp = xp.astype(mp, p.dtype)
    return pmax * mp


def _cum_decide(a, base, p_sorted, thr):
    """Top-p removals of tokens sorted ascending: ``fl(base + cumsum p) <= thr`` (exact sums).

    ``base`` is None or the per-part masses below the sorted tokens.
    """
    xp = a.xp
    pw = xp.astype(p_sorted, a.wide) if p_sorted.dtype != a.wide else p_sorted
    parts = _parts(xp, pw, _grids(a, 2, p_sorted.dtype))
    cs = [xp.cumulative_sum(q, axis=-1) for q in parts]
    if base is not None:
        cs = [b + c for b, c in zip(base, cs, strict=True)]
    C = _combine(cs)
    C = xp.astype(C, p_sorted.dtype) if C.dtype != p_sorted.dtype else C
    return C <= thr


def _keys(a):
    """(key, valid, nan_row): the logits with ``-inf`` at removed entries."""
    xp, x = a.xp, a.x
    ninf = _full(xp, x, -math.inf, shape=())
    valid = x > ninf  # False at -inf and NaN
    nan = xp.isnan(x)
    if a.mask is not None:
        valid = xp.logical_and(valid, a.mask)
        nan = xp.logical_and(nan, a.mask)  # a masked NaN is masked, as in softmax
    nan_row = xp.any(nan, axis=-1, keepdims=True)
    return xp.where(valid, x, ninf), valid, nan_row


# --------------------------------------------------------------------------------------------
# the generic (reference) implementation: full sorts, xp operations only
# --------------------------------------------------------------------------------------------
def _generic_keep(a, key, valid):
    """The keep mask after top-k, top-p, min-p and greedy rows (generic path)."""
    xp = a.xp
    B, V = a.B, a.V
    ninf = _full(xp, key, -math.inf, shape=())
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
            kth = xp.take_along_axis(srt, xp.astype(k - 1, _idx(xp)), axis=-1)
        keep = xp.logical_and(keep, key >= kth)
    e = None
    if a.top_p is not None or a.min_p is not None:
        m = xp.max(key, axis=-1, keepdims=True)
        z = _inf_rows(a, key, _tempered(a, key, m), m)
        e = _exp(a, z)
    if a.top_p is not None:
        p = _probs(a, e, keep)
        kk = xp.where(keep, key, ninf)
        idx = xp.argsort(kk, axis=-1, stable=True)  # ascending; ties by index
        rem = _cum_decide(a, None, xp.take_along_axis(p, idx, axis=-1), _top_p_threshold(a, p.dtype))
        rem = xp.logical_and(rem, pos < V - a.mtk)  # the best min_tokens_to_keep stay
        if not is_python_scalar(a.top_p):
            rem = xp.logical_and(rem, a.top_p < 1)
        inv = xp.argsort(idx, axis=-1)
        keep = xp.logical_and(keep, xp.logical_not(xp.take_along_axis(rem, inv, axis=-1)))
    if a.min_p is not None:
        p = _probs(a, e, keep)
        rem = p < _min_p_threshold(a, p, keep)
        if a.mtk > 1:
            kk = xp.where(keep, key, ninf)
            idx = xp.argsort(kk, axis=-1, descending=True, stable=True)  # ties: lower index first
            inv = xp.argsort(idx, axis=-1)
            prot = xp.take_along_axis(xp.broadcast_to(pos < a.mtk, (B, V)), inv, axis=-1)
            rem = xp.logical_and(rem, xp.logical_not(prot))
        keep = xp.logical_and(keep, xp.logical_not(rem))
    return _greedy_keep(a, keep, key, valid)


def _greedy_keep(a, keep, key, valid):
    """Rows with T = 0 keep only their first maximal logit (among the unmasked ones)."""
    xp = a.xp
    zero_T = _is_zero_T(a)
    if zero_T is False:
        return keep
    am = xp.argmax(key, axis=-1, keepdims=True)
    pos = xp.arange(a.V, device=_compat.device(key))
    onehot = xp.logical_and(pos == am, valid)
    if zero_T is True:
        return onehot
    return xp.where(zero_T, onehot, keep)


def _final_T(a):
    """The temperature of the final distribution (the greedy rows hold one token).

    A Python float beyond the compute dtype's range (``T = 1e39`` on float32 logits) is passed
    as a per-row array in the wide dtype, so that no path rounds it to ``inf``."""
    T, xp = a.T, a.xp
    if is_python_scalar(T) and math.isfinite(T) and a.x.dtype != a.wide and \
            T > float(xp.finfo(a.x.dtype).max):
        return _full(xp, a.x, T, shape=(a.B, 1), dtype=a.wide)
    return T


def _warp_parts(a):
    """(logits, T, keep, nan_row) on the full (B, V) layout, generic path: the result is
    ``softmax(logits, T, mask=keep)`` (NaN rows aside)."""
    key, valid, nan_row = _keys(a)
    keep = _generic_keep(a, key, valid)
    return a.x, _final_T(a), keep, nan_row


def _distribution(a, log):
    f = log_softmax if log else softmax
    fast = _fast_parts(a) if _FAST_OK else None
    c = a  # the arguments (and namespace) the computation runs in
    if fast is not None:
        c, (ci, cx, Tf, keepc, nan_row) = fast
        keep = _scatter_keep(c, ci, keepc)
        xf = c.x
    else:
        xf, Tf, keep, nan_row = _warp_parts(a)
    r = f(xf, Tf, axis=-1, mask=keep)
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
    def argsort_values(v):
        """Ascending, stable (ties keep their order)."""
        return np.argsort(v, axis=-1, kind="stable")

    @staticmethod
    def scatter_bool(cols, vals, W):
        """A (B, W) bool array, True at ``cols`` where ``vals``."""
        out = np.zeros((cols.shape[0], W + 1), dtype=bool)
        np.put_along_axis(out, np.where(vals, cols, W), vals, axis=-1)
        return out[:, :W]

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
    def argsort_values(v):
        import torch

        return torch.argsort(v, dim=-1, stable=True)

    @staticmethod
    def scatter_bool(cols, vals, W):
        import torch

        out = torch.zeros((cols.shape[0], W + 1), dtype=torch.bool, device=cols.device)
        out.scatter_(1, torch.where(vals, cols, W), vals)
        return out[:, :W]

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

    Returns ``(args, (ci, cx, T, keepc, nan_row))``: per row the candidate token indices ``ci``
    (B, W) in increasing order, their logits ``cx`` and keep mask ``keepc`` (the result is
    ``softmax(cx, T, mask=keepc)`` scattered back), in the namespace of ``args`` (NumPy views for
    CPU tensors); or None when the generic path must run.  Exact and identical to the generic
    path: top-k from the k largest values (ties at the k-th value are collected too), top-p by
    bisecting for a logit band around the boundary so that only a few hundred tokens are sorted
    (the masses below the band are exact sums, so the cumulative sums are those of the full
    sort), min-p from the same probabilities.
    """
    ops = _fast_ops(a)
    if ops is None or a.mtk != 1 or a.B == 0:
        return None
    if ops is _TorchOps and _TORCH_CPU_VIA_NUMPY and a.x.device.type == "cpu":
        return _fast_parts(_numpy_view(a))
    xp, x = a.xp, a.x
    V = a.V
    key, valid, nan_row = _keys(a)
    ninf = _full(xp, key, -math.inf, shape=())
    m = xp.max(key, axis=-1, keepdims=True)
    if bool(xp.any(m == math.inf)):
        return None  # +inf logits: the limit rules live in the generic path
    k = a.top_k
    kmax = None if k is None else (k if is_python_scalar(k) else int(xp.max(k)))
    ci = ck = None
    if kmax is not None and kmax >= V:
        if is_python_scalar(k):
            kmax = None
        else:
            small = k < V  # rows that truncate; the others keep everything
            km = int(xp.max(xp.where(small, k, xp.zeros_like(k))))
            if km == 0:
                kmax = None
            else:
                vals = ops.topk(key, km)[0]
                kth = xp.take_along_axis(vals, xp.astype(xp.clip(k, 1, km) - 1, xp.int64), axis=-1)
                kth = xp.where(small, kth, ninf)
                ci, ck = ops.compact(key, xp.logical_and(valid, key >= kth))
    elif kmax is not None and (sup := ops.topk_superset(key, kmax)) is not None:
        ci, ck = sup  # every token >= the k-th largest (and a few more), in index order
        vals = ops.topk(ck, kmax)[0]
        kth = vals[:, kmax - 1:kmax] if is_python_scalar(k) else \
            xp.take_along_axis(vals, xp.astype(k - 1, xp.int64), axis=-1)
        ck = xp.where(ck >= kth, ck, ninf)
    elif kmax is not None:
        vals, idx = ops.topk(key, kmax)  # descending
        kth = vals[:, kmax - 1:kmax] if is_python_scalar(k) else \
            xp.take_along_axis(vals, xp.astype(k - 1, xp.int64), axis=-1)
        if bool(xp.any(vals[:, -1:] == kth)) and \
                bool(xp.any(ops.count(key >= kth) > ops.count(vals >= kth))):
            ci, ck = ops.compact(key, xp.logical_and(valid, key >= kth))  # ties beyond the k largest
        else:
            ck = xp.where(vals >= kth, vals, ninf)
            order_ = ops.argsort(idx)
            ci = xp.take_along_axis(idx, order_, axis=-1)
            ck = xp.take_along_axis(ck, order_, axis=-1)
    if ci is None:
        ck = key  # full rows: positions are the token indices
    keep = ck > ninf
    if a.top_p is not None or a.min_p is not None:
        e = _exp(a, _tempered(a, ck, m))
        if a.top_p is not None:
            keep = _fast_top_p(a, ops, ck, _probs(a, e, keep), keep, m)
        if a.min_p is not None:
            p = _probs(a, e, keep)
            keep = xp.logical_and(keep, xp.logical_not(p < _min_p_threshold(a, p, keep)))
    zero_T = _is_zero_T(a)
    if zero_T is not False:  # greedy rows: the candidate holding the first maximum
        W = ck.shape[-1]
        posn = xp.arange(W, device=_compat.device(ck))
        first = xp.min(xp.where(ck == m, posn, _full(xp, posn, W, shape=())), axis=-1, keepdims=True)
        onehot = xp.logical_and(posn == first, ck > ninf)
        keep = onehot if zero_T is True else xp.where(zero_T, onehot, keep)
    if ci is None:
        ci, cx, keep = _maybe_compact(a, ops, keep)
    else:
        cx = xp.take_along_axis(x, ci, axis=-1)
    return a, (ci, cx, _final_T(a), keep, nan_row)


def _maybe_compact(a, ops, keep):
    """(indices, logits, keep) of the kept tokens, compacted when they are few."""
    xp = a.xp
    if int(xp.max(ops.count(keep))) * 4 <= a.V:
        ci, cx = ops.compact(a.x, keep)  # kept logits are finite: the padding is -inf
        return ci, cx, cx > _full(xp, cx, -math.inf, shape=())
    ci = xp.broadcast_to(xp.arange(a.V, device=_compat.device(keep))[None, :], (a.B, a.V))
    return ci, a.x, keep


def _numpy_view(a):
    """CPU tensors: the same arguments as zero-copy NumPy views.  The selection's elementwise and
    boolean passes run faster through NumPy on a CPU; exp is torch's (the generic path's) and the
    draws still use the torch generator."""
    import copy

    import array_api_compat.numpy as npx

    b = copy.copy(a)
    b.xp = npx
    b.x = a.x.detach().numpy()
    b.mask = None if a.mask is None else a.mask.numpy()
    b.wide = np.float64
    b.torch_exp = True
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


def _scatter_keep(a, ci, keepc):
    """The (B, V) keep mask from the compact candidate arrays."""
    xp = a.xp
    B, V = a.B, a.V
    if ci.shape[-1] == V and keepc.shape[-1] == V and _is_arange(a, ci):
        return keepc
    pos = xp.where(keepc, ci, _full(xp, ci, V, shape=()))
    if _compat.is_torch_namespace(xp):
        import torch

        full = torch.zeros((B, V + 1), dtype=torch.bool, device=keepc.device)
        full.scatter_(1, pos, keepc)
    else:
        full = np.zeros((B, V + 1), dtype=bool)
        np.put_along_axis(full, pos, keepc, axis=-1)
    return full[:, :V]


def _is_arange(a, ci):
    xp = a.xp
    return bool(xp.all(ci == xp.arange(a.V, device=_compat.device(ci))[None, :]))


def _fast_top_p(a, ops, key, p, keep, m):
    """The top-p keep mask of the rows of ``key`` (positions in index order), by bisection.

    With ``L(t)`` the exact mass of the tokens with ``key < t``, the invariant per row is:
    ``fl(L(lo)) <= thr`` (every token below ``lo`` is removed: its cumulative sum is at most
    ``L(lo)``) and ``fl(L(hi)) > thr`` or ``hi`` above the maximum (every token at or above ``hi``
    is kept).  The band ``[lo, hi)`` is halved until it holds at most ``_GAP`` tokens, on a
    compacted copy once it is small; then only the band is sorted, and its cumulative sums start
    from the exact parts of ``L(lo)``: the same numbers as the generic path's full cumulative sum.
    """
    xp = a.xp
    ninf = _full(xp, key, -math.inf, shape=())
    pinf = _full(xp, key, math.inf, shape=())
    thr = _top_p_threshold(a, p.dtype)
    grids = _grids(a, 2, p.dtype)
    P = _parts(xp, xp.astype(p, a.wide) if p.dtype != a.wide else p, grids)
    finite = key > ninf
    nonempty = m > ninf
    active = nonempty if is_python_scalar(a.top_p) else xp.logical_and(nonempty, a.top_p < 1)

    def below(Wk, WP, t, base):
        """Exact parts of the mass below ``t`` (plus ``base``) and its rounded total."""
        sel = Wk < t
        parts = [xp.sum(xp.where(sel, q, xp.zeros_like(q)), axis=-1, keepdims=True) for q in WP]
        if base is not None:
            parts = [b + s for b, s in zip(base, parts, strict=True)]
        tot = _combine(parts)
        return parts, (xp.astype(tot, p.dtype) if tot.dtype != p.dtype else tot) <= thr

    zero_parts = [xp.zeros_like(q[:, :1]) for q in P]
    kmin = xp.min(xp.where(finite, key, pinf), axis=-1, keepdims=True)
    lo = xp.where(nonempty, kmin, xp.zeros_like(kmin))  # nothing is below the minimum
    Llo = zero_parts
    hi = xp.where(nonempty, xp.nextafter(m, pinf), xp.zeros_like(m))  # nothing is above the maximum
    # start: the tokens ranked below every token of probability >= thr / (2 n) are removed
    n = ops.count(finite)
    thr_w = thr if is_python_scalar(thr) else ops.f64(thr)
    bound = thr_w / (2.0 * xp.where(n > 0, ops.f64(n), xp.ones_like(ops.f64(n))))
    big = xp.logical_and(finite, ops.f64(p) >= bound)
    guess = xp.min(xp.where(big, key, pinf), axis=-1, keepdims=True)
    parts, ok = below(key, P, guess, None)
    ok = xp.logical_and(xp.logical_and(ok, guess > lo), guess < pinf)
    lo = xp.where(ok, guess, lo)
    Llo = [xp.where(ok, s, z) for s, z in zip(parts, Llo, strict=True)]
    band_count = lambda Wk: ops.count(xp.logical_and(xp.logical_and(Wk >= lo, Wk < hi), active))  # noqa: E731
    if int(xp.max(band_count(key))) * 4 > key.shape[-1] and key.shape[-1] > 4 * _GAP:
        # a wide band (flat rows): a bracket estimated from a strided sample, each edge checked
        # exactly (a row whose check fails keeps its old edge)
        stride = max(1, key.shape[-1] // 4096)
        ks = key[:, ::stride]
        o = ops.argsort_values(ks)  # ascending
        ks = xp.take_along_axis(ks, o, axis=-1)
        est = ops.cumsum64(ops.f64(xp.take_along_axis(p[:, ::stride], o, axis=-1))) * stride
        pos = ops.count(est <= thr_w)
        Ls = ks.shape[-1]
        at = lambda i: xp.take_along_axis(  # noqa: E731
            ks, xp.astype(xp.clip(i, 0, Ls - 1), xp.int64), axis=-1)
        lo_c, hi_c = at(pos - 16), at(pos + 16)
        parts, ok = below(key, P, lo_c, None)
        ok = xp.logical_and(xp.logical_and(ok, lo_c > lo), lo_c > ninf)
        lo = xp.where(ok, lo_c, lo)
        Llo = [xp.where(ok, s, z) for s, z in zip(parts, Llo, strict=True)]
        _, ok = below(key, P, hi_c, None)
        ok = xp.logical_and(xp.logical_and(xp.logical_not(ok), hi_c < hi), hi_c > lo)
        hi = xp.where(ok, hi_c, hi)
    Wk, WP, Wi, base = key, P, None, None  # the working set (full rows, later compacted)
    for _ in range(80):
        cnt = band_count(Wk)
        mid = lo / 2 + hi / 2
        go = xp.logical_and(xp.logical_and(active, cnt > _GAP), xp.logical_and(mid > lo, mid < hi))
        if not bool(xp.any(go)):
            break
        if Wi is None and int(xp.max(cnt)) * 4 <= key.shape[-1]:
            # compact the band; the mass below it is the exact parts of L(lo)
            band = xp.logical_and(xp.logical_and(key >= lo, key < hi), active)
            Wi, Wk = ops.compact(key, band)
            WP = [xp.where(Wk > ninf, xp.take_along_axis(q, Wi, axis=-1), xp.zeros_like(Wk, dtype=q.dtype))
                  for q in P]
            base = Llo
        parts, ok = below(Wk, WP, mid, base)
        up = xp.logical_and(go, ok)
        down = xp.logical_and(go, xp.logical_not(ok))
        lo = xp.where(up, mid, lo)
        Llo = [xp.where(up, s, z) for s, z in zip(parts, Llo, strict=True)]
        hi = xp.where(down, mid, hi)
    # the band, sorted ascending by (logit, index), with cumulative sums from the exact L(lo)
    band = xp.logical_and(xp.logical_and(Wk >= lo, Wk < hi), active)
    bi, bk = ops.compact(Wk, band)  # positions in the working set, in index order
    o = ops.argsort_values(bk)  # stable: ties stay in index order
    bi = xp.take_along_axis(bi, o, axis=-1)
    bk = xp.take_along_axis(bk, o, axis=-1)
    bP = [xp.where(bk > ninf, xp.take_along_axis(q, bi, axis=-1), xp.zeros_like(bk, dtype=q.dtype))
          for q in WP]
    cs = [xp.cumulative_sum(q, axis=-1) for q in bP]
    C = _combine([b + c for b, c in zip(Llo, cs, strict=True)])
    C = xp.astype(C, p.dtype) if C.dtype != p.dtype else C
    rem_b = xp.logical_and(C <= thr, bk > ninf)
    cols = bi if Wi is None else xp.take_along_axis(Wi, bi, axis=-1)
    rem = ops.scatter_bool(cols, rem_b, key.shape[-1])
    rem = xp.logical_or(rem, xp.logical_and(key < lo, finite))
    rem = xp.logical_and(rem, active)
    # the most probable token (the highest index among tied maxima) is never removed
    posn = xp.arange(key.shape[-1], device=_compat.device(key))
    top = xp.max(xp.where(key == m, posn, -xp.ones_like(posn)), axis=-1, keepdims=True)
    rem = xp.logical_and(rem, posn != top)
    return xp.logical_and(keep, xp.logical_not(rem))


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
        Every ``T`` is exact for every finite logit (no overflow: tiny ``T`` tends to the
        argmax, huge ``T`` to the uniform distribution over the kept tokens).
    top_k : int or array of int, optional
        Keep the tokens whose logit is ``>=`` the ``k``-th largest (ties kept).  ``0`` (or
        None) switches top-k off, as in transformers and llama.cpp; in a per-row array a ``0``
        switches it off for that row.
    top_p : float or array, optional
        In ``(0, 1]``: keep the smallest set of most probable tokens with mass ``>= top_p``
        (transformers' rule and arithmetic, see the module docstring).  ``1`` (or None)
        switches top-p off, also per row.
    min_p : float or array, optional
        In ``[0, 1]``: drop tokens with probability ``< min_p * max probability``.  ``0`` (or
        None) switches min-p off, also per row.
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
    The rules (tie handling, ``T = 0``, masked rows, the arithmetic of each decision) are
    listed in the module docstring; they match transformers' ``TemperatureLogitsWarper`` →
    ``TopKLogitsWarper`` → ``TopPLogitsWarper`` → ``MinPLogitsWarper`` chain for
    ``order="temperature-first"`` (float16/bfloat16 logits are decided in float32, as
    transformers' generation loop casts its scores to float32).  For NumPy and PyTorch inputs
    an exact path avoids sorting the vocabulary: top-k uses a partial selection and top-p a
    bisection on the logit value that leaves only a few hundred undecided tokens to sort; it
    computes the same numbers as the generic path and keeps exactly the same tokens.

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
    >>> warp(x, 0.5, top_k=0, top_p=1.0, min_p=0.0)  # every filter off
    array([0.865 , 0.1171, 0.0158, 0.0021])
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
        ``-1`` for rows without candidates (fully masked) or containing NaN; a row with at
        least one finite (or ``+inf``) unmasked logit always has a candidate.  Without
        replacement, draws beyond a row's tokens of nonzero probability are ``-1``.
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
        c, (ci, cx, Tf, keep, nan_row) = fast
    else:
        cx, Tf, keep, nan_row = _warp_parts(a)
    if replacement:
        logp = log_softmax(cx, Tf, axis=-1, mask=keep)  # the core's overflow-free tempered form
        u = _uniform(a.xp, (a.B, n), _u64(a.xp, a.x), a.x, seed, rng, func)
        if c is not a:
            u = u.numpy()
        if fast is None:
            idx, lp = _draw_inverse_cdf(c, logp, keep, u)
        else:
            idx, lp = _draw_blocked(c, logp, keep, u)
            idx = c.xp.take_along_axis(ci, idx, axis=-1)
    else:
        if fast is not None:
            keep = _scatter_keep(c, ci, keep)
            cx = c.x
            if c is not a:
                Tf, keep, nan_row = map(_to_torch, (Tf, keep, nan_row))
                cx, c = a.x, a
        logp = log_softmax(cx, Tf, axis=-1, mask=keep)
        idx, lp = _draw_without(c, logp, n, seed, rng, func)
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




def _draw_inverse_cdf(a, logp, keep, u):
    """Inverse CDF with xp operations: per draw, the number of CDF entries <= ``u * total``.

    ``logp``/``keep`` are (B, W); positions along that axis are returned (chunked over draws to
    bound the (B, n, W) comparison).
    """
    xp = a.xp
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


def _draw_blocked(a, logp, keep, u, bs=1024):
    """The same inverse CDF for NumPy / torch in two levels: block sums locate each draw's
    block, a cumulative sum inside that block only locates the token (one pass over the row)."""
    xp = a.xp
    ops = _fast_ops(a)
    B, W = logp.shape
    ninf = _full(xp, logp, -math.inf, shape=())
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


def _draw_without(a, logp, n, seed, rng, func):
    """Gumbel-top-k: the n largest of log p + Gumbel noise, without replacement."""
    xp = a.xp
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
        Return the one-hot argmax of the perturbed logits ``x + g`` (the argmax of the soft
        sample for every ``T``, also where the soft sample rounds to a uniform row at huge ``T``:
        the Gumbel-max sample, distributed as ``softmax(x)`` whatever ``T``).  On PyTorch and JAX
        the gradient is the soft sample's (straight-through estimator: ``y_hard - stop_gradient(y_soft) + y_soft``).
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
    xg = x + g  # finite logits stay finite: |g| is far below the spacing of floats near the max
    y = softmax(xg, temperature, axis=ax, mask=mask)
    if hard:
        nan_row = xp.any(xp.isnan(y), axis=ax, keepdims=True)
        # the argmax of the perturbed logits, which is the argmax of the soft sample for every
        # T in (0, inf), also where y rounds to a uniform row (huge T) or to 0 (tiny T)
        ninf = _full(xp, xg, -math.inf, shape=())
        valid = xg > ninf
        if mask is not None:
            valid = xp.logical_and(valid, _compat.as_array(mask, xp, like=x))
        xk = xp.where(valid, _stop_gradient(xp, xg) if _stop_gradient(xp, xg) is not None else xg, ninf)
        am = xp.argmax(xk, axis=ax, keepdims=True)
        shape = [1] * x.ndim
        shape[ax] = x.shape[ax]
        pos = xp.reshape(xp.arange(x.shape[ax], device=_compat.device(x)), tuple(shape))
        hit = xp.logical_and(pos == am, xp.any(valid, axis=ax, keepdims=True))
        y_hard = xp.astype(hit, y.dtype)
        sg = _stop_gradient(xp, y)
        if sg is None:
            y = xp.where(nan_row, _full(xp, y, math.nan, shape=()), y_hard)
        else:
            y = y_hard - sg + y
    if y.dtype != out:
        y = xp.astype(y, out)
    return y
