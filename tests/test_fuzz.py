"""Differential fuzz test of the core: native kernel vs generic path vs an independent reference.

Every example builds a random NumPy input from a hypothesis-drawn recipe (dtype, shape, axis,
layout, row kinds, mask, temperature) and checks ``softmax``, ``log_softmax``, ``logsumexp``
(``keepdims`` both ways) and ``temper`` against

* an independent reference computed row by row in extended precision (``np.longdouble``: x87
  80-bit on x86-64, binary128 elsewhere; 64-bit mantissa, exponents to 1e4932, so neither
  ``x - max`` nor ``(x - max) / T`` can overflow for any input and any ``T`` down to 5e-324).
  The contract's limit cases are decided by exact reasoning, not by arithmetic: ``T = 0`` and
  ``+inf`` maxima share the mass among the tied maxima, ``T = inf`` is uniform over the unmasked
  entries, fully masked rows give 0 / ``-inf``, NaN rows give NaN.  ``logsumexp`` uses
  ``log1p`` of the sum without one maximal term, so results near 0 are exact too.
  ``test_reference_agrees_with_mpmath`` checks this reference against mpmath at 200 bits;
* on each implementation: the compiled kernel forced to every instruction set this CPU has
  (``avx512f``, ``avx2``, ``baseline``; ``_tskernels.set_isa``) and the generic Array-API path
  (``tempscale.config(native=False)``), float64, float32 and float16.

Inputs cover 1-D to 3-D arrays, every axis (negative too) and ``axis=None``, C / Fortran /
strided (steps 2-3, reversed) / transposed layouts, narrow rows (0-20 columns, the transposed
block kernels and the 16-row register kernel), the 47/48/49 boundary, long rows (to ~4000) and
many rows (66k-140k elements: several tasks on the thread pool); rows that are normal, spread over
the dtype's whole range, constant, tied at the max, nearly tied (a few ulp), partly or fully
masked, with ``+inf`` / NaN entries, subnormal, at ``+-max`` (spans of ``2 * max``), at a huge
offset, with a maximum of exactly 0 far above the rest, or log-probabilities (logsumexp near 0);
random boolean masks broadcast to x's shape; temperatures over the whole accepted range
``[0, inf]`` (0, 5e-324, 1e-310, 1e-300, 1e-45, 1e-39, 1e-30, ..., 1e38, 3.4e38, 1e39, 1e300,
1.7e308, inf and log-uniform values in [1e-320, 1e308]) as Python floats, ``np.float64`` scalars,
0-d arrays and per-row arrays (squeezed, keepdims, broadcast, float32 or float64).

Tolerances (per entry; the contract's special values must match exactly)
----------------------------------------------------------------------
* exact: NaN rows, fully masked rows (0 / ``-inf``), masked entries, the entries of ``T = 0`` /
  ``T = inf`` / ``+inf``-maximum rows (``1/k`` and 0; ``logsumexp`` = the max or ``+inf``), rows
  with a single unmasked entry (1, 0, the max);
* float64: softmax ``1e-12 * ref``, log_softmax ``1e-12 * (|y| + L) + (4 + n) u``, logsumexp
  ``1e-12 * (|max| + T * L)`` (so a result near 0 needs the ``log1p`` form), where
  ``y = (x - max) / T``, ``L = log sum exp(y)``, ``n`` the row length, ``u`` the unit roundoff;
* float32, native kernel: softmax within 4 ulp for entries >= 1e-30 (the documented bound);
  generic path: one rounding of each tempered logit and of the sum, i.e.
  ``u * (8 + 2 (|y_i| + sum_j p_j |y_j|) + n)`` relative (``u = 2**-24``); log_softmax and
  logsumexp as for float64 with ``1e-12`` replaced by ``8u`` (generic: ``(8 + n) u``) and the
  absolute log_softmax term ``4u`` (generic: ``(4 + n) u``: the native kernel sums in double);
  the generic path also gets the rounding of each ``y_j`` inside the sum, ``2u sum_j p_j |y_j|``
  (times ``T`` for logsumexp), as it computes ``y`` in float32;
* ``-log k`` of the limit rows (log_softmax): the correctly rounded value or a neighbour;
* float16: the float32 bound plus one float16 ulp;
* a result that overflows the output dtype must be ``+-inf`` (accepted either way within the
  tolerance of the dtype's maximum).

Running more examples
---------------------
By default every test runs a small, fixed (derandomized) set of examples, so CI is fast and
reproducible.  Set ``TEMPSCALE_FUZZ_EXAMPLES=N`` to run N examples per test with a fresh random
seed each run (pytest's ``--hypothesis-seed=S`` replays one), for example::

    TEMPSCALE_FUZZ_EXAMPLES=2000 python -m pytest -q tests/test_fuzz.py -p no:cacheprovider

Failures print the drawn recipe and a readable description of the first wrong row.
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tempscale  # noqa: E402
from tempscale import _native  # noqa: E402
from tempscale._config import config as tempscale_config  # noqa: E402

INF, NAN = math.inf, math.nan
LD = np.longdouble

if np.finfo(LD).nmant < 63 or np.finfo(LD).maxexp < 16384:  # pragma: no cover - e.g. Windows, macOS arm64
    pytest.skip("the vectorised reference needs an extended-precision long double (x86-64 or "
                "binary128); this platform's long double is plain float64", allow_module_level=True)


# --------------------------------------------------------------------------------------------
# settings: a bounded, reproducible run by default; TEMPSCALE_FUZZ_EXAMPLES=N for long campaigns
# --------------------------------------------------------------------------------------------
def _examples_from_env():
    raw = os.environ.get("TEMPSCALE_FUZZ_EXAMPLES", "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError("The 'TEMPSCALE_FUZZ_EXAMPLES' environment variable must be a positive "
                         f"integer. Got {raw!r} instead.")
    return n


_LONG = _examples_from_env()
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
           HealthCheck.filter_too_much]
settings.register_profile(
    "tempscale-fuzz", max_examples=_LONG or 30, derandomize=_LONG is None, deadline=None,
    database=None, print_blob=True, suppress_health_check=_HEALTH)
FUZZ = settings.get_profile("tempscale-fuzz")


def _scaled(factor):
    """The profile with ``factor`` times as many examples (cheap or secondary tests)."""
    return settings(FUZZ, max_examples=max(5, int(FUZZ.max_examples * factor)))


# --------------------------------------------------------------------------------------------
# implementations: the native kernel per instruction set, and the generic path
# --------------------------------------------------------------------------------------------
if _native.available():
    from tempscale._native import _tskernels as _K

    ISAS = list(_K.supported_isas())
else:  # pragma: no cover - a build without the extension still checks the generic path
    _K = None
    ISAS = []
IMPLS = [*ISAS, "generic"]


@contextlib.contextmanager
def _implementation(impl):
    """Route tempscale's NumPy calls to ``impl``; yields a dict counting native calls."""
    used = {"native": 0}
    if impl == "generic":
        with tempscale_config(native=False, torch_fused=False):
            yield used
        return
    inner = _native.try_compute

    def counting(*args, **kwargs):
        r = inner(*args, **kwargs)
        used["native"] += r is not None
        return r

    _K.set_isa(impl)
    _native.try_compute = counting
    try:
        yield used
    finally:
        _native.try_compute = inner
        _K.set_isa("best")


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
DTYPES = (np.float64, np.float32, np.float16)
T_SPECIAL = (0.0, 5e-324, 1e-310, 1e-300, 1e-45, 1e-39, 1e-30, 1e-8, 0.01, 0.5, 1.0, 2.0, 1e8,
             1e30, 1e38, 3.4e38, 1e39, 1e300, 1.7e308, INF)
ROW_KINDS = ("normal", "wide", "constant", "ties", "near_ties", "masked", "all_masked", "posinf",
             "nan", "subnormal", "extreme", "offset", "int", "zero_max", "logprobs")
P_KINDS = ("probs", "zeros", "all_zero", "subnormal", "huge", "posinf", "nan", "int")

_t_value = st.one_of(st.sampled_from(T_SPECIAL),
                     st.floats(-320.0, 308.0).map(lambda e: 10.0 ** e))


def _rows_of_kind(kind, rng, k, n, dtype):
    """``k`` rows of ``n`` float64 values of one kind, representable (after a cast) in ``dtype``."""
    fi = np.finfo(dtype)
    big, sub = float(fi.max), float(fi.smallest_subnormal)
    lmax = math.log10(big)
    shape = (k, n)
    if kind == "normal":
        return rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, min(4, lmax - 1), (k, 1))
    if kind == "wide":
        mag = 10.0 ** rng.uniform(math.log10(sub), lmax, shape)
        return np.minimum(mag, big) * rng.choice([-1.0, 1.0], shape)
    if kind == "constant":
        c = rng.choice([0.0, 1.0, -3.5, big, -big, float(fi.tiny), sub, 1e4], (k, 1))
        return np.broadcast_to(c, shape).copy()
    if kind == "ties":
        x = rng.standard_normal(shape) * 3
        tied = rng.random(shape) < rng.uniform(0.1, 0.9, (k, 1))
        return np.where(tied, x.max(1, keepdims=True) if n else x, x)
    if kind == "near_ties":  # the max and entries a few ulp below it: T-sensitive at tiny T
        base = (rng.standard_normal((k, 1)) * 10.0 ** rng.uniform(-3, min(6, lmax - 1), (k, 1)))
        base = base.astype(dtype)
        ulp = np.spacing(np.abs(base)).astype(np.float64)
        return base.astype(np.float64) - rng.integers(0, 5, shape) * ulp
    if kind == "masked":
        x = rng.standard_normal(shape) * 5
        return np.where(rng.random(shape) < rng.uniform(0.1, 0.95, (k, 1)), -INF, x)
    if kind == "all_masked":
        return np.full(shape, -INF)
    if kind == "posinf":
        x = rng.standard_normal(shape) * 5
        x = np.where(rng.random(shape) < 0.2, -INF, x)
        x = np.where(rng.random(shape) < 0.2, INF, x)
        if n:
            x[np.arange(k), rng.integers(0, n, k)] = INF
        return x
    if kind == "nan":
        x = rng.standard_normal(shape) * 5
        x = np.where(rng.random(shape) < 0.1, rng.choice([INF, -INF], shape), x)
        if n:
            x[np.arange(k), rng.integers(0, n, k)] = NAN
        return x
    if kind == "subnormal":  # gaps of a few subnormal steps, zeros and signed subnormals
        return rng.integers(-6, 7, shape) * sub * rng.choice([1.0, 1.0, 1000.0], (k, 1))
    if kind == "extreme":  # +-max and huge spans in one row
        pick = rng.choice([big, -big, big / 2, -big / 2, big * 0.999, 0.0, 1.0, -1.0], shape)
        x = np.where(rng.random(shape) < 0.8, pick, rng.standard_normal(shape))
        if n >= 2:
            x[:, 0], x[:, -1] = big, -big
        return x
    if kind == "offset":  # a huge common offset plus differences of a few ulp of it
        off = rng.choice([-1.0, 1.0], (k, 1)) * 10.0 ** rng.uniform(0, lmax - 0.5, (k, 1))
        off = off.astype(dtype).astype(np.float64)
        step = np.spacing(np.abs(off.astype(dtype))).astype(np.float64)
        return off + rng.integers(-20, 21, shape) * step
    if kind == "int":
        return rng.integers(-5, 6, shape).astype(np.float64)
    if kind == "zero_max":  # max exactly 0, the rest far below: logsumexp is tiny (log1p territory)
        x = -(10.0 ** rng.uniform(0, min(4, lmax - 1), shape))
        if n:
            x[np.arange(k), rng.integers(0, n, k)] = 0.0
        return x
    if kind == "logprobs":  # log-probabilities: logsumexp near 0 at T = 1
        w = rng.random(shape) ** rng.uniform(0.5, 30, (k, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = np.log(w / w.sum(1, keepdims=True)).astype(dtype).astype(np.float64)
        return np.maximum(lp, -float(fi.max))
    raise AssertionError(kind)


def _p_rows_of_kind(kind, rng, k, n, dtype):
    """Non-negative weights for ``temper``."""
    fi = np.finfo(dtype)
    big, sub = float(fi.max), float(fi.smallest_subnormal)
    shape = (k, n)
    if kind == "probs":
        return rng.random(shape) ** rng.uniform(0.3, 8, (k, 1))
    if kind == "zeros":
        return np.where(rng.random(shape) < 0.5, 0.0, rng.random(shape))
    if kind == "all_zero":
        return np.zeros(shape)
    if kind == "subnormal":
        return rng.integers(0, 7, shape) * sub
    if kind == "huge":
        return np.minimum(10.0 ** rng.uniform(0, math.log10(big), shape), big)
    if kind == "posinf":
        x = rng.random(shape)
        if n:
            x[np.arange(k), rng.integers(0, n, k)] = INF
        return x
    if kind == "nan":
        x = rng.random(shape)
        if n:
            x[np.arange(k), rng.integers(0, n, k)] = NAN
        return x
    if kind == "int":
        return rng.integers(0, 4, shape).astype(np.float64)
    raise AssertionError(kind)


def _layout(a, how, rng):
    """``a``'s values in the memory layout ``how`` (same logical array)."""
    if how == "C" or a.ndim == 0:
        return np.ascontiguousarray(a)
    if how == "F":
        return np.asfortranarray(a)
    if how == "strided":
        steps = [int(s) for s in rng.integers(1, 4, a.ndim)]
        big = np.zeros([max(n, 1) * s for n, s in zip(a.shape, steps, strict=True)], dtype=a.dtype)
        sl = tuple(slice(None, n * s, s) if rng.random() < 0.6 else slice(n * s - 1 if n else 0, None, -s)
                   for n, s in zip(a.shape, steps, strict=True))
        view = big[sl][tuple(slice(0, n) for n in a.shape)]
        view[...] = a
        return view
    if how == "transposed":
        perm = rng.permutation(a.ndim)
        b = np.ascontiguousarray(np.transpose(a, perm))
        return np.transpose(b, np.argsort(perm))
    raise AssertionError(how)


class Case:
    """One drawn input: everything a call needs plus a description for failure messages."""

    def __repr__(self):
        return (f"Case(dtype={np.dtype(self.x.dtype).name}, shape={self.x.shape}, axis={self.axis}, "
                f"layout={self.layout}, regime={self.regime}, kinds={self.kinds_used}, "
                f"mask={self.mask_kind}, T={self.t_desc}, seed={self.seed})")


@st.composite
def cases(draw, *, for_temper=False, small=False):
    c = Case()
    dtype = draw(st.sampled_from(DTYPES))
    c.seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(c.seed)
    regimes = ["narrow", "narrow", "block", "wide", "long"] + ([] if small else ["many"])
    c.regime = draw(st.sampled_from(regimes))
    if c.regime == "narrow":
        n, R = draw(st.integers(0, 20)), draw(st.integers(1, 40))
    elif c.regime == "block":  # full 16-row blocks (the register-resident AVX-512 kernel)
        n, R = draw(st.integers(1, 17)), draw(st.sampled_from([16, 32, 48, 17, 31, 64]))
    elif c.regime == "wide":
        n = draw(st.sampled_from([21, 31, 32, 33, 47, 48, 49, 63, 64, 65, 100, 129]))
        R = draw(st.integers(1, 20))
    elif c.regime == "long":
        n, R = draw(st.integers(100, 200 if small else 4000)), draw(st.integers(1, 2 if small else 6))
    else:  # many rows: more than one 64k-element task, so the thread pool splits the rows
        n = draw(st.integers(1, 24))
        R = -(-int(rng.integers(66_000, 140_000)) // n)
    ndim = draw(st.integers(1, 3) if R == 1 else st.integers(2, 3))
    if ndim == 3:
        a = draw(st.integers(1, min(R, 8)))
        batch = (a, -(-R // a))
    else:
        batch = (R,) if ndim == 2 else ()
    R = math.prod(batch)
    ax = draw(st.integers(0, ndim - 1))
    kinds = draw(st.lists(st.sampled_from(P_KINDS if for_temper else ROW_KINDS),
                          min_size=1, max_size=4, unique=True))
    c.kinds_used = kinds
    # rows in the (batch..., n) order, then the row axis moved to ``ax``
    row_kind = rng.integers(0, len(kinds), R)
    vals = np.empty((R, n))
    make = _p_rows_of_kind if for_temper else _rows_of_kind
    for i, kind in enumerate(kinds):
        sel = np.flatnonzero(row_kind == i)
        if sel.size:
            vals[sel] = make(kind, rng, sel.size, n, dtype)
    with np.errstate(over="ignore"):
        logical = np.moveaxis(vals.reshape(batch + (n,)), -1, ax).astype(dtype)
    c.row_kinds = np.array(kinds, dtype=object)[row_kind]
    c.layout = draw(st.sampled_from(["C", "C", "F", "strided", "transposed"]))
    c.x = _layout(logical, c.layout, rng)
    flat = not for_temper and draw(st.integers(0, 9)) == 0
    c.axis = None if flat else (ax if draw(st.booleans()) else ax - ndim)
    # mask (broadcast to x's shape)
    c.mask, c.mask_kind = None, None
    if not for_temper:
        mk = draw(st.sampled_from([None, None, "full", "per-column", "per-row", "trailing"]))
        if mk == "per-row" and flat:
            mk = "full"
        if mk is not None:
            keep = draw(st.sampled_from([0.05, 0.5, 0.9, 1.0]))
            shape = list(c.x.shape)
            if mk == "per-column":
                shape = [1 if i != ax else s for i, s in enumerate(shape)]
            elif mk == "per-row":
                shape[ax] = 1
            elif mk == "trailing":
                shape = shape[-1:]
            c.mask = rng.random(shape) < keep
            c.mask_kind = f"{mk}@{keep}"
    # temperature
    modes = ["py", "py", "py", "np64", "np0d"]
    if not flat and ndim >= 2:
        modes += ["rows", "rows-keepdims", "rows-float32", "rows-broadcast"]
    mode = draw(st.sampled_from(modes))
    if mode in ("py", "np64", "np0d"):
        t = draw(_t_value)
        c.T = {"py": t, "np64": np.float64(t), "np0d": np.array(t)}[mode]
        c.t_desc = f"{mode}:{t!r}"
    else:
        palette = draw(st.lists(_t_value, min_size=1, max_size=4))
        kshape = [1 if i == ax else s for i, s in enumerate(c.x.shape)]
        if mode == "rows-broadcast":
            kshape = [1 if rng.random() < 0.5 else s for s in kshape]
        tv = np.asarray(palette)[rng.integers(0, len(palette), kshape)]
        if mode == "rows-float32":
            with np.errstate(over="ignore"):
                tv = tv.astype(np.float32)
        if mode in ("rows", "rows-float32"):
            tv = np.squeeze(tv, axis=ax)
        c.T = tv
        c.t_desc = f"{mode}:{palette!r}"
    return c


# --------------------------------------------------------------------------------------------
# the reference
# --------------------------------------------------------------------------------------------
def _as_rows(a, axis):
    """An array of x's shape as (rows, n), rows in C order of the other axes."""
    if axis is None:
        return a.reshape(1, a.size)
    b = np.moveaxis(a, axis, -1)
    return b.reshape(math.prod(b.shape[:-1]), b.shape[-1])


def _row_temperatures(T, x, axis):
    if axis is None or np.ndim(T) == 0:
        R = 1 if axis is None else math.prod(s for i, s in enumerate(x.shape) if i != axis % x.ndim)
        return np.full(R, float(T))
    ax = axis % x.ndim
    T = np.asarray(T, dtype=np.float64)
    if T.ndim == x.ndim - 1:
        T = np.expand_dims(T, ax)
    kshape = tuple(1 if i == ax else s for i, s in enumerate(x.shape))
    return np.moveaxis(np.broadcast_to(T, kshape), ax, -1).reshape(-1)


class Ref:
    """Reference values on (rows, n) (``lse``: rows) in long double, with what the checks need."""


def reference(kind, X, Tr):
    """The contract on rows ``X`` ((R, n) long double, masked entries already -inf), per-row T."""
    R, n = X.shape
    r = Ref()
    with np.errstate(all="ignore"):
        nan_row = np.isnan(X).any(1)
        valid = X > -INF
        Xv = np.where(valid, X, LD(-INF))
        m = Xv.max(1, initial=LD(-INF))
        empty = ~nan_row & (m == -INF)
        live = ~nan_row & ~empty
        tie = live & ((m == INF) | (Tr == 0))
        uni = live & ~tie & (Tr == INF)
        fin = live & ~tie & ~uni
        lim = tie | uni
        on = np.where(tie[:, None], X == m[:, None], valid)
        cnt = on.sum(1)
        nvalid = valid.sum(1)
        mf = np.where(fin, m, LD(0))
        Tf = np.where(fin, Tr, 1.0).astype(LD)
        y = np.where(valid & fin[:, None], (X - mf[:, None]) / Tf[:, None], LD(-INF))
        e = np.exp(y)
        e_rest = e.copy()
        if n:
            e_rest[np.arange(R), np.argmax(Xv, axis=1)] = 0  # one maximal term (e = 1) left out
        s_rest = e_rest.sum(1)
        L = np.log1p(s_rest)
        s = 1 + s_rest
        p = e / s[:, None]
        ay = np.abs(np.where(valid & fin[:, None], y, LD(0)))
        wy = np.where(valid & fin[:, None], p * ay, LD(0)).sum(1)  # sum_j p_j |y_j|
        cond = ay + wy[:, None]
        single = fin & (nvalid == 1)
        exact_row = nan_row | empty | lim | single
        if kind == "logsumexp":
            v = np.where(fin, m + Tf * L, m)
            v = np.where(uni & (cnt > 1), LD(INF), v)
            v = np.where(nan_row, LD(NAN), v)
            r.value, r.exact = v, exact_row
            r.scale = np.abs(mf) + Tf * L  # |max| + T L: the condition of m + T L
        else:
            if kind == "softmax":
                lim_v = np.where(on, 1 / np.maximum(cnt, 1)[:, None].astype(LD), LD(0))
                v = np.where(fin[:, None], p, np.where(lim[:, None], lim_v, LD(0)))
            else:
                lim_v = np.where(on, -np.log(np.maximum(cnt, 1)[:, None].astype(LD)), LD(-INF))
                v = np.where(fin[:, None], y - L[:, None], np.where(lim[:, None], lim_v, LD(-INF)))
            v = np.where(nan_row[:, None], LD(NAN), v)
            r.value = v
            r.exact = exact_row[:, None] | ~valid
            if kind == "log_softmax":  # -log k of T = 0 / inf / +inf rows: 1 ulp, not exact
                r.exact = r.exact & ~(lim[:, None] & on & (cnt[:, None] > 1))
            r.cond = cond
            r.scale = ay + L[:, None]  # |y| + L
        r.n = n
        r.L, r.m, r.on_count, r.wy, r.T = L, m, cnt, wy, Tf
        r.row_class = np.select([nan_row, empty, tie, uni, single], ["nan", "empty", "tie", "uniform",
                                                                     "single"], "finite")
    return r


# --------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------
U32 = 2.0 ** -24


def _tolerance(kind, r, out_dtype, impl):
    """Per-entry absolute tolerance (long double), see the module docstring."""
    ref = np.abs(r.value)
    n = r.n
    out = np.dtype(out_dtype)
    f64 = out == np.float64
    native = impl != "generic"
    sub = float(np.finfo(out).smallest_subnormal)
    with np.errstate(all="ignore"):
        if kind == "softmax":
            if f64:
                tol = 1e-12 * ref + 4 * sub
            elif native:
                sp = _spacing(ref, np.float32)
                tol = np.where(ref >= 1e-30, 4 * sp, 1e-37 + 4 * ref * 2.0 ** -23)
            else:
                tol = ref * U32 * (8 + 2 * r.cond + n) + 1e-37
        else:
            rel = 1e-12 if f64 else U32 * (8 + (0 if native else n))
            if kind == "log_softmax":  # + the rounding of the sum (>= 1): absolute, (4 + n) u
                tol = rel * r.scale + (2.0 ** -53 * (4 + n) if f64 else U32 * (4 + (0 if native else n)))
            else:
                tol = rel * r.scale + 4 * sub
        if out == np.float16:
            tol = tol + _spacing(ref, np.float16)
        if not native:  # the sum's terms exp(y_j) carry the rounding of y_j: u sum_j p_j |y_j|
            u_c = 2.0 ** -53 if f64 else U32
            if kind == "log_softmax":
                tol = tol + 2 * u_c * r.wy[:, None]
            elif kind == "logsumexp":
                tol = tol + 2 * u_c * r.T * r.wy
        if kind == "log_softmax":  # -log k of limit rows: the rounded value +- 1 ulp
            lim_k = np.broadcast_to((r.on_count > 1)[:, None], ref.shape) & ~r.exact & np.isfinite(ref) \
                & np.isin(r.row_class, ["tie", "uniform"])[:, None]
            tol = np.where(lim_k, 1.5 * _spacing(ref, out), tol)
    return tol


def _spacing(a, dtype):
    """ulp of ``|a|`` rounded to ``dtype`` (the dtype's max ulp beyond its range)."""
    big = LD(float(np.finfo(dtype).max))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.spacing(np.minimum(np.abs(a), big).astype(dtype)).astype(LD)


def _exact_ok(got, want_ld, out_dtype, kind, r):
    """Entries that must match exactly: equal after rounding (1/k also after a float32 step)."""
    with np.errstate(over="ignore"):
        want = want_ld.astype(out_dtype)
        alt = want_ld.astype(np.float32).astype(out_dtype)
    same = (got == want) | (got == alt) | (np.isnan(got) & np.isnan(want))
    return same


def check(kind, got_rows, r, out_dtype, impl):
    """Indices (flat over the rows array) of wrong entries, and the tolerance array."""
    got = np.asarray(got_rows)
    val = r.value
    tol = _tolerance(kind, r, out_dtype, impl)
    maxv = LD(float(np.finfo(out_dtype).max))
    with np.errstate(all="ignore"):
        g = got.astype(LD)
        nan_ok = np.isnan(g) == np.isnan(val)
        exact = r.exact
        ok_exact = _exact_ok(got, val, out_dtype, kind, r)
        both_inf = np.isinf(g) & (g == val)
        ok_close = np.isfinite(g) & np.isfinite(val) & (np.abs(g - val) <= tol)
        ok_over = np.isinf(g) & (np.sign(g) == np.sign(val)) & (np.abs(val) + tol >= maxv)
        ok_approx = both_inf | ok_close | ok_over
        ok = nan_ok & np.where(exact, ok_exact, ok_approx | (np.isnan(g) & np.isnan(val)))
    return np.flatnonzero(~ok.reshape(-1)), tol


def _fmt(v):
    with np.errstate(all="ignore"):  # long double beyond float64's range prints as inf
        return np.array2string(np.asarray(v, dtype=np.float64), precision=6, max_line_width=200,
                               threshold=24, edgeitems=6)


def _report(kind, impl, case, got_rows, r, bad, tol, X, Tr, generic_rows, used, extra=""):
    rows = np.asarray(r.value).reshape(len(Tr), -1) if kind != "logsumexp" else None
    nbad = bad.size
    if kind == "logsumexp":
        i, j = int(bad[0]), None
    else:
        i, j = divmod(int(bad[0]), max(X.shape[1], 1))
    lines = [f"{kind} on {impl} ({'native kernel' if used.get('native') else 'generic path'} ran): "
             f"{nbad} wrong entries; {case!r}{extra}",
             f"first wrong row {i}: row class {r.row_class[i]}, input kind "
             f"{case.row_kinds[i] if case.axis is not None and i < len(case.row_kinds) else 'flattened'}, "
             f"T = {Tr[i]!r}",
             f"  x     = {_fmt(X[i])}"]
    if kind == "logsumexp":
        lines += [f"  got   = {float(np.asarray(got_rows)[i])!r}",
                  f"  ref   = {r.value[i]!r} (tol {tol[i]!r})"]
        if generic_rows is not None:
            lines.append(f"  generic = {float(np.asarray(generic_rows)[i])!r}")
    else:
        lines += [f"  entry {j}: got {float(got_rows[i, j])!r}, ref {rows[i, j]!r}, "
                  f"tol {tol[i, j]!r}",
                  f"  got   = {_fmt(got_rows[i])}",
                  f"  ref   = {_fmt(rows[i])}"]
        if generic_rows is not None:
            lines.append(f"  generic = {_fmt(generic_rows[i])}")
    classes = sorted({str(r.row_class[b if kind == 'logsumexp' else b // max(X.shape[1], 1)])
                      for b in bad})
    lines.append(f"row classes with wrong entries: {classes}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# running one case
# --------------------------------------------------------------------------------------------
def _call(kind, case, keepdims):
    fn = getattr(tempscale, kind)  # no np.errstate: the library itself must not warn
    if kind == "logsumexp":
        return fn(case.x, case.T, axis=case.axis, mask=case.mask, keepdims=keepdims)
    if kind == "temper":
        return fn(case.x, case.T, axis=case.axis)
    return fn(case.x, case.T, axis=case.axis, mask=case.mask)


def _expected_shape(kind, case, keepdims):
    shape = case.x.shape
    if kind != "logsumexp":
        return shape
    if case.axis is None:
        return (1,) * len(shape) if keepdims else ()
    ax = case.axis % len(shape)
    return shape[:ax] + ((1,) if keepdims else ()) + shape[ax + 1:]


def _run_case(kind, impl, case, keepdims=False):
    x, axis = case.x, case.axis
    ref_kind = "softmax" if kind == "temper" else kind
    with np.errstate(all="ignore"):
        src = np.log(x) if kind == "temper" else x  # temper(p, T) == softmax(log p, T), log in p's dtype
        X = _as_rows(np.asarray(src).astype(LD), axis)
        if case.mask is not None:
            X = np.where(_as_rows(np.broadcast_to(case.mask, x.shape), axis), X, LD(-INF))
    Tr = _row_temperatures(case.T, x, axis)
    r = reference(ref_kind, X, Tr)
    with _implementation(impl) as used:
        got = _call(kind, case, keepdims)
    assert isinstance(got, np.ndarray), type(got)
    if impl != "generic" and isinstance(case.T, float) and 1e-30 <= case.T <= 1e30 and x.size \
            and (x.dtype != np.float16 or _K.has_float16):
        assert used["native"], f"the native kernel did not run: {case!r}"  # not the generic path
    assert got.dtype == x.dtype, (kind, got.dtype, x.dtype)
    assert got.shape == _expected_shape(kind, case, keepdims), (got.shape, case)
    if kind == "logsumexp":
        got_rows = got.reshape(-1)
    else:
        got_rows = _as_rows(got, axis)
    bad, tol = check(ref_kind, got_rows, r, x.dtype, impl)
    if bad.size:
        generic_rows = None
        if impl != "generic":
            with _implementation("generic"):
                gen = _call(kind, case, keepdims)
            generic_rows = gen.reshape(-1) if kind == "logsumexp" else _as_rows(gen, axis)
        pytest.fail(_report(ref_kind, impl, case, got_rows, r, bad, tol, X, Tr, generic_rows, used),
                    pytrace=False)


# --------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@FUZZ
@given(case=cases())
def test_softmax_fuzz(impl, case):
    _run_case("softmax", impl, case)


@pytest.mark.parametrize("impl", IMPLS)
@FUZZ
@given(case=cases())
def test_log_softmax_fuzz(impl, case):
    _run_case("log_softmax", impl, case)


@pytest.mark.parametrize("impl", IMPLS)
@FUZZ
@given(case=cases(), keepdims=st.booleans())
def test_logsumexp_fuzz(impl, case, keepdims):
    _run_case("logsumexp", impl, case, keepdims)


@pytest.mark.parametrize("impl", IMPLS)
@_scaled(0.5)
@given(case=cases(for_temper=True))
def test_temper_fuzz(impl, case):
    _run_case("temper", impl, case)


# --------------------------------------------------------------------------------------------
# the reference itself, against mpmath
# --------------------------------------------------------------------------------------------
@_scaled(0.5)
@given(case=cases(small=True), kind=st.sampled_from(["softmax", "log_softmax", "logsumexp"]))
def test_reference_agrees_with_mpmath(case, kind):
    """The long-double reference equals a 200-bit mpmath evaluation (finite rows, 0 < T < inf)."""
    mpmath = pytest.importorskip("mpmath")
    x, axis = case.x, case.axis
    with np.errstate(all="ignore"):
        X = _as_rows(np.asarray(x).astype(LD), axis)
        if case.mask is not None:
            X = np.where(_as_rows(np.broadcast_to(case.mask, x.shape), axis), X, LD(-INF))
    Tr = _row_temperatures(case.T, x, axis)
    r = reference(kind, X, Tr)
    rows = np.flatnonzero(r.row_class == "finite")[:4]
    mpf = mpmath.mpf

    def exact(v):  # a long double as an mpf (its shortest round-trip decimal: within 2**-64)
        return mpf(np.format_float_scientific(v, unique=True))

    with mpmath.workprec(200):
        for i in rows:
            idx = [j for j in range(X.shape[1]) if X[i, j] > -INF]
            xs = [mpf(float(X[i, j])) for j in idx]  # exact: x is a float16/32/64 value
            t, n = mpf(float(Tr[i])), len(idx)
            m = max(xs)
            ys = [(v - m) / t for v in xs]
            top = ys.index(0)  # one maximal term, exp(0) = 1, left out: log S = log1p(rest)
            rest = mpmath.fsum(mpmath.exp(v) for k, v in enumerate(ys) if k != top)
            S, logS = 1 + rest, mpmath.log1p(rest)
            slack = mpf(2) ** -60 * (8 + n)
            if kind == "logsumexp":
                want = m + t * logS
                got = exact(r.value[i])
                assert abs(got - want) <= slack * (abs(m) + t * logS) + mpf(10) ** -4900, (i, got, want)
                continue
            for j, yv in zip(idx, ys, strict=True):
                got = exact(r.value[i, j])
                if kind == "softmax":
                    want = mpmath.exp(yv) / S
                    bound = slack * want * (1 + 2 * abs(yv)) + mpf(10) ** -4900
                else:
                    want = yv - logS
                    bound = slack * (abs(yv) + logS + 1)
                assert abs(got - want) <= bound, (i, j, got, want)


# --------------------------------------------------------------------------------------------
# sampling: the warp fast path against its generic path
# --------------------------------------------------------------------------------------------
@st.composite
def warp_cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    R = draw(st.integers(1, 6))
    V = draw(st.sampled_from([1, 2, 5, 17, 64, 300, 3000]))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 1e3, 1e30]))
    boundary = draw(st.booleans())
    if boundary:  # log of "round" probabilities, top-p at an exact partial sum (issue: 0.5 + 0.3)
        tenths = draw(st.booleans())  # probabilities in tenths (0.3, 0.5, ...) or in k / sum
        if tenths:  # V positive integers summing to 10: differences of sorted distinct cuts
            V = min(V, 10)
            cuts = np.stack([np.sort(rng.choice(np.arange(1, 10), V - 1, replace=False)) for _ in range(R)])
            w = np.diff(np.concatenate([np.zeros((R, 1)), cuts, np.full((R, 1), 10.0)], 1), axis=1)
        else:
            w = rng.integers(1, 6, (R, V)).astype(np.float64)
        probs = w / w.sum(1, keepdims=True)
        x = np.log(probs)
    else:
        x = rng.standard_normal((R, V)) * scale
    if draw(st.booleans()):  # ties
        x = np.round(x / scale * 2) * scale / 2
    if draw(st.booleans()):
        x = np.where(rng.random((R, V)) < 0.2, -INF, x)
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    T = 1.0 if boundary else draw(st.one_of(st.sampled_from([0.0, 1e-30, 0.3, 1.0, 2.5, 1e30, INF]),
                                            st.floats(-3, 3).map(lambda e: 10.0 ** e)))
    kw = {}
    if draw(st.booleans()):
        kw["top_k"] = draw(st.integers(1, V + 2))
    if boundary:
        csum = np.cumsum(-np.sort(-probs[0]))
        kw["top_p"] = min(1.0, float(csum[draw(st.integers(0, V - 1))]))
        if tenths:  # the decimal a user would type: 0.8, not the partial sum's rounding
            kw["top_p"] = round(kw["top_p"], 1)
    elif draw(st.booleans()):
        kw["top_p"] = draw(st.sampled_from([0.1, 0.5, 0.8, 0.9, 0.95, 0.999, 1.0]))
    if draw(st.booleans()):
        kw["min_p"] = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]))
    kw["order"] = draw(st.sampled_from(["temperature-first", "temperature-last"]))
    return x, T, kw, seed


@_scaled(2)
@given(case=warp_cases())
def test_warp_fast_path_keeps_the_generic_set(case):
    from tempscale import sampling as S

    x, T, kw, seed = case
    with tempscale_config(fast_sampling=True):
        fast = S.warp(x, T, **kw)
    with tempscale_config(fast_sampling=False):
        gen = S.warp(x, T, **kw)
    np.testing.assert_array_equal(fast > 0, gen > 0, err_msg=f"kept sets differ: T={T!r} {kw}")
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(gen))
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fast, gen, rtol=tol, atol=tol, err_msg=f"T={T!r} {kw}")
