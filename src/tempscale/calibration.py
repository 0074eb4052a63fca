"""Temperature scaling and calibration metrics.

* :func:`fit_temperature` -- the NLL-optimal temperature of held-out logits (Guo et al. 2017),
  found exactly: the negative log-likelihood is convex in :math:`\\beta = 1/T`, so a safeguarded
  Halley/Newton iteration on :math:`\\beta` reaches the optimum in a few passes over the data.
* :class:`TemperatureScaler` -- the same as a scikit-learn estimator on logits (scikit-learn is
  imported only when the class is first used).
* :class:`ProbabilitiesAsLogitsWarning` -- probabilities were given where logits are expected.
* :func:`calibration_error` (ECE / RMSCE / MCE, top-label or classwise, with a bootstrap interval),
  :func:`reliability_curve` (per-bin data for reliability diagrams), :func:`brier_score`,
  :func:`nll`.  Every metric takes probabilities, or logits with ``from_logits=True``.

Shapes: logits/probabilities are ``(n_samples, n_classes)``; a binary problem may be given as one
column (or a 1-D array) holding the logit (probability) of class 1, read as the two columns
``[0, z]`` (``[1 - p, p]``).  Labels are integers in ``[0, n_classes)``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import namedtuple

import numpy as np

from . import _compat
from ._compat import array_namespace, is_concrete
from ._compat import to_numpy as _to_numpy
from ._softmax import log_softmax, softmax
from ._validation import check_bool, check_choice, check_scalar, param_error

__all__ = [
    "CalibrationErrorResult",
    "CalibrationWarning",
    "ProbabilitiesAsLogitsWarning",
    "ReliabilityCurve",
    "TemperatureScaler",
    "brier_score",
    "calibration_error",
    "fit_temperature",
    "nll",
    "reliability_curve",
]


class CalibrationWarning(UserWarning):
    """A temperature fit hit a degenerate case (separable data, constant logits, one class...).

    The fit still returns a defined temperature; the message says which one and why.
    """


class ProbabilitiesAsLogitsWarning(UserWarning):
    """Probabilities (rows in [0, 1] summing to 1) were passed where logits are expected.

    Softmax of probabilities is not the identity: they would be read as (nearly uniform) logits.
    Pass logits or log-probabilities, temper probabilities with :func:`tempscale.temper`, or use
    ``from_logits=False`` with the metrics.
    """


ReliabilityCurve = namedtuple("ReliabilityCurve", ["bin_edges", "confidence", "accuracy", "counts"])
ReliabilityCurve.__doc__ = """Per-bin data of a reliability diagram (see :func:`reliability_curve`).

Fields
------
bin_edges : ndarray, shape (n_bins + 1,)
    Bin ``b`` holds confidences in ``(bin_edges[b], bin_edges[b + 1]]`` (the first bin also holds
    ``bin_edges[0]``).
confidence : ndarray, shape (n_bins,)
    Mean (weighted) confidence in each bin; NaN for an empty bin.
accuracy : ndarray, shape (n_bins,)
    Observed frequency of the event (top-label: the prediction is right) in each bin; NaN for an
    empty bin.
counts : ndarray of int64, shape (n_bins,)
    Number of samples in each bin.
"""

CalibrationErrorResult = namedtuple("CalibrationErrorResult", ["estimate", "low", "high"])
CalibrationErrorResult.__doc__ = """A calibration error with a bootstrap confidence interval.

Returned by :func:`calibration_error` when ``n_bootstrap > 0``: ``estimate`` is the error on the
full data, ``(low, high)`` the percentile interval of the bootstrap replicates.
"""


# ============================================================================================
# small helpers
# ============================================================================================


def _work_dtype(xp, like):
    """float64 where the backend offers it on ``like``'s device, else float32."""
    try:
        probe = xp.zeros((1,), dtype=xp.float64, device=_compat.device(like))
        _ = probe + probe
        return xp.float64
    except Exception:  # e.g. JAX without x64, torch on MPS
        return xp.float32


def _coerce(x):
    """``x`` itself if it is an array of a supported library, else NumPy's view of it.

    pandas DataFrames/Series, lists and any object with ``__array__`` are read as NumPy arrays.
    """
    if x is None or isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, np.generic)):
        return np.asarray(x)
    try:
        xp = array_namespace(x)
    except TypeError:
        if hasattr(x, "__array__"):
            return np.asarray(x)
        raise
    # an array-like that the namespace lookup reads as NumPy (pandas, __array__ objects)
    return np.asarray(x) if _compat.is_numpy_namespace(xp) else x


def _require_concrete(x, name, func):
    """A traced array (inside ``jax.jit``, ``torch.compile``...) cannot be fitted or binned."""
    if x is None or is_concrete(x) or type(x).__module__.startswith("dask"):
        return
    raise param_error(name, func, f"a concrete array ({func} works on the values, eagerly: "
                      "call it outside jax.jit / torch.compile, e.g. on jax.device_get(...))",
                      f"a traced {type(x).__name__}", TypeError)


def _py(v):
    """A NumPy scalar as the Python number it holds (for error messages)."""
    return v.item() if isinstance(v, np.generic) else v


def _check_labels_np(labels, n, n_classes, func, *, name="labels"):
    _require_concrete(labels, name, func)
    y = _to_numpy(_coerce(labels))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise param_error(name, func, "a 1-D array of class indices", f"an array of shape {y.shape}")
    if y.shape[0] != n:
        raise param_error(name, func, f"of length n_samples = {n} (one label per row)",
                          f"{y.shape[0]} labels")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(y) | (y != np.round(y))
        if np.any(bad):
            raise param_error(name, func, "integer class indices (whole numbers)",
                              float(y[bad][0]), TypeError)
    elif y.dtype.kind not in "iu":
        raise param_error(name, func, "integer class indices", f"dtype {y.dtype}", TypeError)
    if n:
        # checked in the received dtype, so the message shows the value received (1e+300, not
        # what a cast to int64 would make of it)
        out = (y < 0) | (y >= n_classes)
        if np.any(out):
            raise param_error(name, func, f"class indices in [0, {n_classes - 1}]",
                              _py(y[out][0]))
    return y.astype(np.intp, copy=False)


def _check_weights_np(sample_weight, n, func):
    if sample_weight is None:
        return None
    _require_concrete(sample_weight, "sample_weight", func)
    w = np.asarray(_to_numpy(_coerce(sample_weight)), dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise param_error("sample_weight", func, f"a 1-D array of length n_samples = {n}",
                          f"shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise param_error("sample_weight", func, "finite and non-negative", "a negative or non-finite weight")
    if not np.any(w > 0):
        raise param_error("sample_weight", func, "positive somewhere", "all zeros")
    return w


#: how far from 1 a row sum may be for the row to count as probabilities, per column (values
#: rounded to 3 decimals, as in a CSV, are off by at most 5e-4 each)
_PROB_TOL = 5e-4


def _looks_like_probabilities(p, xp=None) -> bool:
    """Every row in [0, 1] summing to 1 (within rounding), more than one column.

    Cheap: a sample of rows is looked at first, the whole array only if the sample passes.
    """
    if xp is None or _compat.is_numpy_namespace(xp):
        p = np.asarray(p)
        if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] == 0 or p.dtype.kind != "f":
            return False
        n = p.shape[0]
        parts = [p[:: max(1, n // 256)]] if n > 512 else []
        parts.append(p)
        tol = _PROB_TOL * (p.shape[1] + 1)
        with np.errstate(invalid="ignore"):
            for q in parts:
                if not (np.all(q >= 0) and np.all(q <= 1)):
                    return False
                if not np.all(np.abs(q.sum(axis=1, dtype=np.float64) - 1.0) <= tol):
                    return False
        return True
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] == 0 or not is_concrete(p):
        return False
    if not xp.isdtype(p.dtype, "real floating"):
        return False
    tol = _PROB_TOL * (p.shape[1] + 1)
    ok = xp.logical_and(xp.all(p >= 0), xp.all(p <= 1))
    ok = xp.logical_and(ok, xp.all(xp.abs(xp.sum(p, axis=1) - 1.0) <= tol))
    return bool(_to_numpy(ok))


def _warn_if_probabilities(z, xp, func, stacklevel):
    if _looks_like_probabilities(z, xp):
        warnings.warn(
            f"{func}: every row of the logits lies in [0, 1] and sums to 1, so these look like "
            "probabilities, which would be read as logits (softmax of probabilities is not the "
            "identity). Pass logits or log-probabilities (np.log(p)) instead, use "
            "tempscale.temper(p, T) to temper probabilities, or from_logits=False for the metrics.",
            ProbabilitiesAsLogitsWarning, stacklevel=stacklevel + 1)


# ============================================================================================
# fit_temperature
# ============================================================================================
def _scale_exponent(spreads, amax, emax):
    """``e`` such that ``2**e`` is the typical spread of a row (its median over the rows).

    The fit works on ``z / 2**e`` (exact: a power of two) and returns ``2**e`` times the
    temperature found there, so ``fit(c z) = c fit(z)`` for every ``c`` that keeps the logits
    finite: the iteration, its start (``beta = 1``) and its stopping rule see the same numbers
    whatever the scale, and the NLL derivatives (powers of the logits up to the third) cannot
    overflow or underflow.  ``spreads`` are half the ``max - min`` of the finite entries of some
    rows (NumPy float64); ``amax`` the largest finite ``|z|`` seen; ``emax`` the exponent range of
    the dtype the logits are computed in (``z / 2**e`` stays below ``2**(emax - 24)``).  ``None``
    when every spread is 0 (constant rows).
    """
    sp = spreads[np.isfinite(spreads) & (spreads > 0)]
    if sp.size == 0:
        return None
    med = float(np.partition(sp, sp.size // 2)[sp.size // 2])
    e = math.frexp(med)[1] + 1          # 2**e >= twice the half-spread: scaled spreads in [1, 2)
    if amax > 0 and math.isfinite(amax):
        e = max(e, math.frexp(amax)[1] - (emax - 24))
    return e


def _half_spreads_np(z):
    """Half the ``max - min`` of each row's finite entries (overflow-free), float64."""
    z = np.asarray(z)
    finite = np.isfinite(z)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = np.max(np.where(finite, z, -np.inf), axis=1).astype(np.float64)
        lo = np.min(np.where(finite, z, np.inf), axis=1).astype(np.float64)
        amax = float(np.max(np.where(finite, np.abs(z), 0.0))) if z.size else 0.0
        return hi * 0.5 - lo * 0.5, amax


def _times_pow2_np(x, k, dt):
    """``x * 2**k`` in dtype ``dt``: exact unless it leaves the dtype's range."""
    fi = np.finfo(dt)
    if fi.minexp <= k < fi.maxexp:
        return np.multiply(x, math.ldexp(1.0, k), dtype=dt)
    return np.ldexp(np.asarray(x, dtype=dt), np.int32(k))


def _times_pow2_xp(x, k):
    """``x * 2**k`` for any namespace, in exact power-of-two steps that no float32 overflows."""
    while k:
        step = max(-100, min(100, k))
        x = x * math.ldexp(1.0, step)
        k -= step
    return x


def _t_from_beta(beta, e):
    """The temperature ``2**e / beta`` of the scaled problem's optimum ``beta``."""
    if beta <= 0:
        return math.inf
    if math.isinf(beta):
        return 0.0
    try:
        return math.ldexp(1.0 / beta, e)
    except OverflowError:
        return math.inf


class _Outcome(Exception):
    """Raised inside the solver to return a degenerate-case temperature."""

    def __init__(self, beta: float):
        self.beta = beta


def _solve_beta(evaluate, beta0, *, tol, max_iter, precise_from, checks, loose=None,
                grad0=None, func="fit_temperature"):
    """Safeguarded Halley iteration for the root of the (increasing) NLL gradient in beta.

    ``evaluate(beta, precise) -> (g, h, k3)`` returns the mean gradient, curvature and third
    derivative of the NLL at ``beta``; ``precise=False`` may use float32 arithmetic (only to get
    close).  ``checks(g, h)`` runs after the first evaluation (degenerate cases raise _Outcome).
    The bracket ``[lo, hi]`` always holds the root; a step leaving it becomes a bisection (in log
    beta) or, while no upper end is known, an expansion.  Stops when a float64 Halley step is
    below ``tol ** (1/3)`` relative (the error after a Halley step is cubic in the step);
    ``loose`` stops at that relative step whatever the precision (for the subsample's start).
    """
    lo, hi = 0.0, math.inf
    g0 = None  # gradient at beta = 0, computed only if needed
    step_tol = max(tol ** (1.0 / 3.0), 4e-16)
    beta = beta0
    precise = precise_from <= 0
    downhill = 0
    for it in range(max_iter):
        g, h, k3 = evaluate(beta, precise)
        if it == 0:
            checks(g, h)
        if not (math.isfinite(g) and math.isfinite(h)):
            raise FloatingPointError("non-finite NLL derivatives")
        if g < 0:
            lo = beta
        elif g > 0:
            hi = beta
            downhill += 1
            if lo == 0.0 and g0 is None and (downhill >= 3 or beta < 1e-6):
                # still no point with a negative gradient: is the optimum above beta = 0 at all?
                g0 = grad0() if grad0 is not None else evaluate(0.0, True)[0]
                if g0 >= 0:
                    raise _Outcome(0.0)
        elif precise:
            return beta
        new = math.nan
        if h > 0:
            newton = -g / h
            denom = 1.0 + 0.5 * newton * k3 / h  # Halley: (-g/h) / (1 - g k3 / (2 h^2))
            step = newton / denom if (math.isfinite(denom) and 0.5 < denom < 2.0) else newton
            new = beta + step
            if beta > 0 and (g > 0 or not lo < new < hi):
                # downhill (g is concave in beta) a step overshoots: take Halley's step in
                # u = log(beta) instead, which overshoots less and never crosses 0.
                # G(u) = g(e^u): G' = beta h, G'' = beta h + beta^2 k3
                g1 = beta * h
                g2 = g1 + beta * beta * k3
                nu = -g / g1
                den = 1.0 + 0.5 * nu * g2 / g1
                du = nu / den if (math.isfinite(den) and 0.5 < den < 2.0) else nu
                new = beta * math.exp(max(-4.0, min(4.0, du)))
        if not (lo < new < hi and math.isfinite(new)):
            if hi == math.inf:  # the root is above every point seen: expand
                new = beta * 8.0 if beta > 0 else 1.0
                if new > 1e300:
                    raise _Outcome(math.inf)
            elif lo == 0.0:  # the root is below every point seen (and above 0: checked)
                new = hi / 8.0
            else:
                new = math.sqrt(lo * hi)
        rel = abs(new - beta) / beta if beta > 0 else math.inf
        if precise and rel <= step_tol:
            return new
        if loose is not None and rel <= loose:
            return new
        if hi < math.inf and lo > 0 and (hi - lo) <= 1e-15 * hi:
            return new
        if not precise and it + 1 >= precise_from and (rel <= 5e-2 or it >= 5):
            precise = True
        beta = new
    warnings.warn(f"{func}: no convergence in max_iter={max_iter} iterations; returning the last "
                  "iterate", CalibrationWarning, stacklevel=6)
    return beta


def _degenerate_checks(separable, single_class, func):
    def checks(g, h):
        if h == 0.0:
            warnings.warn(f"{func}: every row of logits is constant, so the NLL does not depend on "
                          "T; returning T = 1.0", CalibrationWarning, stacklevel=7)
            raise _Outcome(1.0)
        if separable():
            warnings.warn(f"{func}: every label is at its row's maximum logit (perfectly separable "
                          "data); the NLL decreases all the way to T = 0, returning T = 0.0",
                          CalibrationWarning, stacklevel=7)
            raise _Outcome(math.inf)
    return checks


#: how _NumpyProblem sums rows: "auto", "blas" or "einsum" (a switch for benchmarks)
ROWSUM = "auto"


class _NumpyProblem:
    """The NLL derivatives of NumPy logits, in row chunks (cache-sized), over threads."""

    def __init__(self, z, y, w, *, threads=None, exp2=0):
        self.z = z
        self.y = y
        self.w = w
        self.exp2 = exp2  # the derivatives are those of z / 2**exp2 (see _scale_exponent)
        n, k = z.shape
        self.n, self.k = n, k
        self.m = np.empty(n, np.float64)
        self.dy = np.empty(n, np.float64)
        self.prepared = False
        self.rows = max(8, (1 << 17) // max(k, 1))  # ~1 MiB float64 chunks (measured best)
        self.starts = list(range(0, n, self.rows))
        self.W = float(n) if w is None else float(w.sum())
        if threads is None:
            threads = min(os.cpu_count() or 1, 4)  # measured: no gain beyond 4 (GIL, memory)
        self.threads = max(1, min(threads, len(self.starts)))
        self._pool = None
        self.ones = {np.dtype(np.float64): np.ones(k, np.float64),
                     np.dtype(np.float32): np.ones(k, np.float32)}

    def _chunk(self, a, beta, dt, prep):
        b = min(a + self.rows, self.n)
        zc = self.z[a:b]
        if prep:
            if self.k <= 16:  # a reduction over a short last axis is slow in NumPy
                mc = zc[:, 0].copy()
                for j in range(1, self.k):
                    np.maximum(mc, zc[:, j], out=mc)
            else:
                mc = zc.max(axis=1)
            self.m[a:b] = mc
            self.dy[a:b] = zc[np.arange(b - a), self.y[a:b]]
            if self.exp2:
                np.ldexp(self.m[a:b], -self.exp2, out=self.m[a:b])
                np.ldexp(self.dy[a:b], -self.exp2, out=self.dy[a:b])
            self.dy[a:b] -= self.m[a:b]
        mc = self.m[a:b, None]
        if dt == np.float32:
            mc = mc.astype(np.float32)
        if self.exp2:
            d = _times_pow2_np(zc, -self.exp2, dt)
            d -= mc
        else:
            d = np.subtract(zc, mc, dtype=dt)
        e = np.multiply(d, dt(beta))
        np.exp(e, out=e)
        rowsum = self._rowsum
        s = rowsum(e)
        np.multiply(e, d, out=e)
        a1 = rowsum(e)
        np.multiply(e, d, out=e)
        a2 = rowsum(e)
        np.multiply(e, d, out=e)
        a3 = rowsum(e)
        mu = a1 / s
        m2 = a2 / s
        var = m2 - mu * mu
        k3 = a3 / s - mu * (3.0 * m2 - 2.0 * mu * mu)
        g = mu - self.dy[a:b]
        if self.w is None:
            return np.array([g.sum(), var.sum(), k3.sum()])
        wc = self.w[a:b]
        return np.array([wc @ g, wc @ var, wc @ k3])

    def _rowsum(self, e):
        """Row sums as float64: a BLAS matrix-vector product (fast for short rows) when one
        thread runs, else NumPy's own loop (BLAS threads inside our threads oversubscribe)."""
        if ROWSUM == "blas" or (ROWSUM == "auto" and self.threads == 1):
            r = e @ self.ones[e.dtype]
        else:
            r = np.einsum("ij->i", e)
        return r.astype(np.float64, copy=False)

    def evaluate(self, beta, precise):
        dt = np.float64 if (precise or self.z.dtype == np.float64) else np.float32
        prep = not self.prepared
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            if self.threads > 1:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(self.threads)
                parts = list(self._pool.map(lambda a: self._chunk(a, beta, dt, prep), self.starts))
            else:
                parts = [self._chunk(a, beta, dt, prep) for a in self.starts]
        self.prepared = True
        tot = np.sum(parts, axis=0) / self.W
        if prep and not np.all(np.isfinite(self.m)):
            raise _NonFinite()
        if not np.all(np.isfinite(tot)):
            raise _NonFinite()
        return float(tot[0]), float(tot[1]), float(tot[2])

    def grad0(self):
        """Mean NLL gradient at beta = 0 (a pass with exp(0) = 1: the row means)."""
        return self.evaluate(0.0, True)[0]

    def separable(self):
        if self.w is None:
            return bool(np.all(self.dy == 0))
        return bool(np.all(self.dy[self.w > 0] == 0))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class _NonFinite(Exception):
    pass


class _XpProblem:
    """The same derivatives with whole-array Array-API operations (torch, JAX, Dask, ...)."""

    def __init__(self, z, y, w, xp, func, exp2=0):
        self.xp = xp
        dt = _work_dtype(xp, z)
        z = xp.astype(z, dt) if z.dtype != dt else z
        n, k = z.shape
        dev = _compat.device(z)
        ninf = -math.inf
        valid = z > ninf
        if is_concrete(z) and bool(xp.any(xp.logical_or(xp.isnan(z), z == math.inf))):
            raise param_error("logits", func, "finite or -inf (masked) values",
                              "an array with NaN or +inf entries")
        onehot = xp.reshape(y, (n, 1)) == xp.reshape(xp.arange(k, device=dev), (1, k))
        if exp2:
            z = _times_pow2_xp(z, -exp2)
        zmax = xp.max(z, axis=1, keepdims=True)
        zmax = xp.where(zmax > ninf, zmax, xp.zeros_like(zmax))
        d = xp.where(valid, z - zmax, xp.zeros_like(z))
        self.dy = xp.sum(xp.where(onehot, d, xp.zeros_like(d)), axis=1)
        label_ok = xp.any(xp.logical_and(onehot, valid), axis=1)
        if is_concrete(z) and not bool(xp.all(label_ok)):
            rows = np.flatnonzero(~_to_numpy(label_ok))[:5].tolist()
            raise param_error("logits", func, "finite at each row's label",
                              f"-inf at the label of rows {rows}")
        self.d = d
        nvalid = xp.sum(xp.astype(valid, dt), axis=1)
        self.g0r = xp.sum(d, axis=1) / nvalid - self.dy   # gradient at beta = 0, per row
        self.neg = xp.where(valid, xp.zeros_like(z), xp.full_like(z, ninf))
        self.w = None if w is None else xp.astype(w, dt)
        self.W = float(n) if w is None else float(_to_numpy(xp.sum(self.w)))
        self.dt = dt

    def evaluate(self, beta, precise):
        xp = self.xp
        d = self.d
        e = xp.exp(beta * d + self.neg)
        s = xp.sum(e, axis=1)
        ed = e * d
        a1 = xp.sum(ed, axis=1)
        ed2 = ed * d
        a2 = xp.sum(ed2, axis=1)
        a3 = xp.sum(ed2 * d, axis=1)
        mu = a1 / s
        m2 = a2 / s
        var = m2 - mu * mu
        k3 = a3 / s - 3.0 * mu * m2 + 2.0 * mu * mu * mu
        g = mu - self.dy
        parts = xp.stack([g, var, k3], axis=0)
        if self.w is None:
            tot = xp.sum(parts, axis=1)
        else:
            tot = xp.sum(parts * xp.reshape(self.w, (1, -1)), axis=1)
        t = np.asarray(_to_numpy(tot), dtype=np.float64) / self.W
        return float(t[0]), float(t[1]), float(t[2])

    def grad0(self):
        xp = self.xp
        g = self.g0r if self.w is None else self.g0r * self.w
        return float(_to_numpy(xp.sum(g))) / self.W

    def separable(self):
        xp = self.xp
        nz = self.dy != 0
        if self.w is not None:
            nz = xp.logical_and(nz, self.w > 0)
        return not bool(_to_numpy(xp.any(nz)))


def _prepare_logits(logits, labels, sample_weight, func, *, stacklevel=3):
    """(xp, z as (n, k), y NumPy intp, w NumPy float64 or None, binary)."""
    logits = _coerce(logits)
    _require_concrete(logits, "logits", func)
    xp = array_namespace(logits)
    z = _compat.as_array(logits, xp)
    if not xp.isdtype(z.dtype, ("real floating", "integral")):
        raise param_error("logits", func, "an array of real numbers", f"dtype {z.dtype}", TypeError)
    if xp.isdtype(z.dtype, "integral"):
        z = xp.astype(z, _compat.default_float_dtype(xp, _compat.device(z)))
    elif _compat.float_bits(xp, z.dtype) < 32:
        z = xp.astype(z, xp.float32)
    binary = False
    if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1):
        binary = True
        z1 = xp.reshape(z, (-1, 1))
        z = xp.concat([xp.zeros_like(z1), z1], axis=1)
    elif z.ndim != 2:
        raise param_error("logits", func, "a 2-D array (n_samples, n_classes) or 1-D (binary)",
                          f"an array of shape {tuple(z.shape)}")
    n, k = z.shape
    if n == 0:
        raise param_error("logits", func, "non-empty", "an array with no rows")
    y = _check_labels_np(labels, n, k, func)
    w = _check_weights_np(sample_weight, n, func)
    if not binary:
        _warn_if_probabilities(z, xp, func, stacklevel)
    return xp, z, y, w, binary


def fit_temperature(logits, labels, *, sample_weight=None, tol=1e-12, max_iter=100,
                    as_array=False, threads=None):
    r"""The temperature that minimises the negative log-likelihood of held-out logits.

    Temperature scaling (Guo et al. 2017) divides every logit by one scalar ``T`` fitted on a
    validation set; accuracy is unchanged, confidence is calibrated.  The NLL

    .. math:: L(\beta) = \frac{1}{\sum_i w_i} \sum_i w_i \Big(\log \sum_k e^{\beta z_{ik}}
              - \beta z_{i y_i}\Big), \qquad \beta = 1/T,

    is convex in :math:`\beta` (its second derivative is the mean variance of the logit under the
    tempered softmax), so a safeguarded Halley iteration on :math:`\beta` (Newton with the third
    derivative, inside a bracket that always holds the root, bisection when a step leaves it)
    finds the exact optimum in a few passes over the data; there is no learning rate, no bound
    and no negative ``T``.

    Parameters
    ----------
    logits : array_like, shape (n_samples, n_classes) or (n_samples,)
        Held-out logits (NumPy, PyTorch, JAX, Dask, array-api-strict; pandas objects and other
        array-likes are read as NumPy).  One column, or a 1-D array, is a binary problem: the
        logit of class 1 (as from ``decision_function``), read as the two columns ``[0, z]``.
        ``-inf`` entries are masked classes.  Probabilities given here (every row in [0, 1]
        summing to 1) are warned about with :class:`ProbabilitiesAsLogitsWarning`: pass
        ``np.log(p)`` instead.
    labels : array_like of int, shape (n_samples,)
        Class indices in ``[0, n_classes)`` (``{0, 1}`` for a binary problem).
    sample_weight : array_like, shape (n_samples,), optional
        Non-negative weights.
    tol : float, default 1e-12
        Relative accuracy of ``T``.  The iteration stops after a float64 Halley step shorter than
        ``tol ** (1/3) / 10`` of ``beta``: the error of a Halley step is cubic in its length.
    max_iter : int, default 100
        At most this many passes over the data (a warning if reached).
    as_array : bool, default False
        Return a 0-d array in the namespace and floating dtype of ``logits`` instead of a float.
    threads : int, optional
        Threads for the NumPy path (default: the number of CPUs, at most 4, beyond which the
        passes stopped getting faster on a 16-core machine).

    Returns
    -------
    float
        The optimal temperature.  Degenerate cases return a defined value with a
        :class:`CalibrationWarning`: ``0.0`` when every label is at its row's maximum (the NLL
        falls all the way to ``T = 0``), ``inf`` when the logits are no better than uniform
        (the NLL falls as ``T`` grows), ``1.0`` when every row is constant (any ``T`` is optimal).
        A single class among the labels is warned about too (the fit is usually meaningless).

    Notes
    -----
    The fit is scale-equivariant: ``fit_temperature(c * z, y) == c * fit_temperature(z, y)``
    for every ``c > 0`` that keeps the logits finite and normal (to rounding of ``c * z``;
    exactly for powers of two), from ``1e-300`` to ``1e300``.  The iteration works on
    ``z / 2**e`` with ``2**e`` the median spread (max - min) of the rows, so its start, its
    stopping rule and its intermediate sums never overflow or underflow.

    The fit looks at values, so it cannot run inside ``jax.jit`` (a TypeError says so); call it
    on concrete arrays.

    On NumPy input the logits are streamed in cache-sized row chunks over threads; a float32
    array is first iterated in float32 arithmetic and finished in float64, so the result is the
    optimum of the exact (float64) NLL of the given float32 values.  On a large input the
    iteration starts from the fit of an evenly spaced subsample of rows.  Typically two full
    passes over the data are needed.  Other libraries use whole-array operations (on their
    device) and return the same value.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
       Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.calibration import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 5, size=2000)
    >>> logits = rng.normal(size=(2000, 5)) + 2.0 * np.eye(5)[labels]
    >>> T = fit_temperature(3.0 * logits, labels)     # over-confident logits: T > 1
    >>> round(T, 4)
    1.4567
    >>> two = labels < 2                              # a binary problem, one logit per sample
    >>> round(fit_temperature(3.0 * (logits[two, 1] - logits[two, 0]), labels[two]), 3)
    1.528
    """
    func = "fit_temperature"
    tol = check_scalar(tol, "tol", func, lo=0.0, lo_open=True, hi=1.0)
    max_iter = check_scalar(max_iter, "max_iter", func, lo=1, integer=True)
    check_bool(as_array, "as_array", func)

    T, _info = _fit(logits, labels, sample_weight, tol, max_iter, threads, func)
    if as_array:
        xp = array_namespace(_coerce(logits))
        z = _compat.as_array(_coerce(logits), xp)
        if not xp.isdtype(z.dtype, "real floating"):
            z = xp.astype(z, _compat.default_float_dtype(xp, _compat.device(z)))
        return xp.asarray(T, dtype=z.dtype, device=_compat.device(z))
    return T


def _fit(logits, labels, sample_weight, tol, max_iter, threads, func):
    """(T, info) with info["n_iter"] the passes over the full data."""
    xp, z, y, w, _binary = _prepare_logits(logits, labels, sample_weight, func, stacklevel=4)
    labels_used = y if w is None else y[w > 0]
    if labels_used.size and labels_used.min() == labels_used.max():
        warnings.warn(f"{func}: all labels are the same class ({int(labels_used[0])}); the "
                      "temperature will only sharpen or flatten that class", CalibrationWarning,
                      stacklevel=3)
    info: dict = {}
    beta, e = _fit_beta(xp, z, y, w, tol=tol, max_iter=max_iter, threads=threads, func=func,
                        info=info)
    return _t_from_beta(beta, e), info


def _fit_beta(xp, z, y, w, *, tol, max_iter, threads, func, info):
    """(beta, e): the optimum ``beta`` of the logits ``z / 2**e`` (see _scale_exponent)."""
    n, k = z.shape
    if _compat.is_numpy_namespace(xp):
        zn = np.ascontiguousarray(z)
        emax = np.finfo(zn.dtype).maxexp
        e = _scale_exponent(*_half_spreads_np(zn[:: max(1, n // 4096)]), emax)
        if e is None and n > 4096:
            e = _scale_exponent(*_half_spreads_np(zn), emax)
        if e is None:
            e = 0                         # constant rows: the check below warns
        beta0 = 1.0
        sub_rows = max(2000, (1 << 18) // k)
        if n >= 2 * sub_rows:  # start from the fit of an evenly spaced subsample of rows
            stride = max(1, n // sub_rows)
            sub = _NumpyProblem(np.ascontiguousarray(zn[::stride]), y[::stride],
                                None if w is None else np.ascontiguousarray(w[::stride]),
                                threads=1, exp2=e)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    beta0 = _solve_beta(sub.evaluate, 1.0, tol=1e-6, max_iter=30, precise_from=99,
                                        checks=lambda g, h: None, loose=1e-3, func=func)
            except (_Outcome, _NonFinite, FloatingPointError):
                beta0 = 1.0
            if not (math.isfinite(beta0) and beta0 > 0):
                beta0 = 1.0
        prob = _NumpyProblem(zn, y, w, threads=threads, exp2=e)
        try:
            return _run(prob, beta0, tol, max_iter, precise_from=1 if zn.dtype == np.float32 else 0,
                        func=func, info=info), e
        except _NonFinite:
            pass  # -inf (masked) entries, NaN or +inf: the generic path sorts them out
        finally:
            prob.close()
    yx = _compat.as_array(y.astype(np.int64), xp, like=z)
    wx = None if w is None else _compat.as_array(w, xp, like=z)
    e = _xp_scale_exponent(z, xp)
    prob = _XpProblem(z, yx, wx, xp, func, exp2=e)
    info["n_iter"] = 0
    return _run(prob, 1.0, tol, max_iter, precise_from=0, func=func, info=info), e


def _xp_scale_exponent(z, xp):
    """_scale_exponent of any namespace's logits (their row spreads, brought to NumPy)."""
    finite = xp.logical_and(z > -math.inf, z < math.inf)
    ninf = xp.full_like(z, -math.inf)
    hi = xp.max(xp.where(finite, z, ninf), axis=1)
    lo = xp.min(xp.where(finite, z, -ninf), axis=1)
    amax = xp.max(xp.where(finite, xp.abs(z), xp.zeros_like(z)))
    spreads = np.asarray(_to_numpy(hi), dtype=np.float64) * 0.5 - np.asarray(
        _to_numpy(lo), dtype=np.float64) * 0.5
    emax = 1024 if _compat.float_bits(xp, _work_dtype(xp, z)) >= 64 else 128
    e = _scale_exponent(spreads, float(_to_numpy(amax)), emax)
    return 0 if e is None else e


def _run(prob, beta0, tol, max_iter, *, precise_from, func, info):
    checks = _degenerate_checks(prob.separable, None, func)

    def evaluate(beta, precise):
        info["n_iter"] = info.get("n_iter", 0) + 1
        return prob.evaluate(beta, precise)

    try:
        return _solve_beta(evaluate, beta0, tol=tol, max_iter=max_iter,
                           precise_from=precise_from, checks=checks, grad0=prob.grad0, func=func)
    except _Outcome as out:
        if out.beta == 0.0:
            warnings.warn(f"{func}: the logits do no better than a uniform guess (the NLL falls as "
                          "T grows); returning T = inf", CalibrationWarning, stacklevel=5)
        return out.beta


# ============================================================================================
# metrics
# ============================================================================================
def _probs_np(probs, labels, from_logits, func, *, sample_weight=None):
    """(P as (n, k) float64 NumPy, y, w) from probabilities or logits; 1-D = binary."""
    name = "logits" if from_logits else "probs"
    check_bool(from_logits, "from_logits", func)
    probs = _coerce(probs)
    _require_concrete(probs, name, func)
    if from_logits:
        xp = array_namespace(probs)
        z = _compat.as_array(probs, xp)
        if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1):
            z1 = xp.reshape(z, (-1, 1))
            z = xp.concat([xp.zeros_like(z1), z1], axis=1)
        else:
            _warn_if_probabilities(z, xp, func, 3)
        p = _to_numpy(softmax(z, axis=-1)).astype(np.float64)
    else:
        p = np.asarray(_to_numpy(probs), dtype=np.float64)
        if p.ndim == 2 and p.shape[1] == 1:
            p = p[:, 0]
        if p.ndim == 1:
            p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2:
        raise param_error(name, func, "a 2-D array (n_samples, n_classes) or 1-D (binary)",
                          f"an array of shape {p.shape}")
    if p.shape[0] == 0:
        raise param_error(name, func, "non-empty", "an array with no rows")
    if not from_logits:
        if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
            raise param_error(name, func, "probabilities in [0, 1] (pass from_logits=True for logits)",
                              "values outside [0, 1]")
    y = _check_labels_np(labels, p.shape[0], p.shape[1], func)
    w = _check_weights_np(sample_weight, p.shape[0], func)
    return p, y, w


def _bin_ids(conf, edges):
    """Bin ``b`` holds ``(edges[b], edges[b+1]]``; the first bin also holds ``edges[0]``."""
    return np.searchsorted(edges[1:-1], conf, side="left")


def _edges(conf, n_bins, strategy, w):
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    q = np.linspace(0.0, 1.0, n_bins + 1)
    if w is None:
        e = np.quantile(conf, q)
    else:
        order = np.argsort(conf, kind="stable")
        cw = np.cumsum(w[order])
        cw = cw / cw[-1]
        idx = np.searchsorted(cw, q[1:-1], side="left")
        e = np.concatenate([[conf[order[0]]], conf[order[np.minimum(idx, len(order) - 1)]],
                            [conf[order[-1]]]])
    return e


def _binned(conf, hit, w, n_bins, strategy):
    edges = _edges(conf, n_bins, strategy, w)
    ids = _bin_ids(conf, edges)
    ww = np.ones_like(conf) if w is None else w
    wsum = np.bincount(ids, weights=ww, minlength=n_bins)
    csum = np.bincount(ids, weights=ww * conf, minlength=n_bins)
    asum = np.bincount(ids, weights=ww * hit, minlength=n_bins)
    counts = np.bincount(ids, minlength=n_bins).astype(np.int64)
    return edges, wsum, csum, asum, counts


def _ce_from_bins(wsum, csum, asum, norm, total):
    nz = wsum > 0
    gap = np.abs(asum[nz] - csum[nz]) / wsum[nz]
    frac = wsum[nz] / total
    if norm == "l1":
        return float(np.sum(frac * gap)), None
    if norm == "l2":
        return float(np.sum(frac * gap * gap)), "sqrt"
    return float(np.max(gap)) if gap.size else 0.0, None


def _calibration_error_np(p, y, w, n_bins, strategy, norm, kind):
    total = float(len(y)) if w is None else float(w.sum())
    if kind == "top-label":
        conf = p.max(axis=1)
        hit = (p.argmax(axis=1) == y).astype(np.float64)
        _, wsum, csum, asum, _ = _binned(conf, hit, w, n_bins, strategy)
        v, post = _ce_from_bins(wsum, csum, asum, norm, total)
        return math.sqrt(v) if post else v
    vals = []
    for c in range(p.shape[1]):
        _, wsum, csum, asum, _ = _binned(p[:, c], (y == c).astype(np.float64), w, n_bins, strategy)
        vals.append(_ce_from_bins(wsum, csum, asum, norm, total)[0])
    if norm == "max":
        return float(max(vals))
    v = float(np.mean(vals))
    return math.sqrt(v) if norm == "l2" else v


def calibration_error(probs, labels, *, n_bins=15, strategy="uniform", norm="l1",
                      kind="top-label", n_bootstrap=0, confidence_level=0.95, random_state=None,
                      sample_weight=None, from_logits=False):
    r"""Expected (``l1``), root-mean-square (``l2``) or maximum (``max``) calibration error.

    Confidences are grouped into ``n_bins`` bins; in each bin ``b`` the gap between the observed
    frequency and the mean confidence is :math:`|\mathrm{acc}_b - \mathrm{conf}_b|`, and

    .. math:: \mathrm{ECE} = \sum_b \frac{n_b}{n} |\mathrm{acc}_b - \mathrm{conf}_b|, \quad
              \mathrm{RMSCE} = \Big(\sum_b \frac{n_b}{n} (\mathrm{acc}_b - \mathrm{conf}_b)^2
              \Big)^{1/2}, \quad \mathrm{MCE} = \max_{b:\,n_b>0} |\mathrm{acc}_b -
              \mathrm{conf}_b|.

    Parameters
    ----------
    probs : array_like, shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities (or logits with ``from_logits=True``).  A 1-D array is the
        probability of class 1 of a binary problem (read as ``[1 - p, p]``).
    labels : array_like of int, shape (n_samples,)
        True classes in ``[0, n_classes)``.
    n_bins : int, default 15
    strategy : {"uniform", "quantile"}, default "uniform"
        Equal-width bins on ``[0, 1]``, or bins holding equal (weighted) numbers of samples.
    norm : {"l1", "l2", "max"}, default "l1"
        ECE, RMSCE or MCE.
    kind : {"top-label", "classwise"}, default "top-label"
        ``top-label``: confidence is the largest probability, the event is "the argmax is the
        label" (Guo et al. 2017).  ``classwise``: every class's probability against the event
        "the label is this class", averaged over classes (Kull et al. 2019; ``l2`` averages the
        squared errors before the root, ``max`` takes the largest over classes).
    n_bootstrap : int, default 0
        With ``n_bootstrap > 0``, also a percentile bootstrap interval from this many resamples
        of the rows (the bins are recomputed on each resample).
    confidence_level : float, default 0.95
    random_state : int, numpy Generator or None
        Seed of the bootstrap.
    sample_weight : array_like, shape (n_samples,), optional
    from_logits : bool, default False
        ``probs`` holds logits (1-D: the logit of class 1); the softmax is applied first.

    Returns
    -------
    float or CalibrationErrorResult
        The error, in ``[0, 1]``; with ``n_bootstrap > 0`` a named tuple
        ``(estimate, low, high)``.

    Notes
    -----
    Bin ``b`` holds confidences in ``(edges[b], edges[b+1]]`` (as in Guo et al.).  Empty bins
    contribute nothing.  With ``strategy="quantile"`` the edges are the (weighted) quantiles of
    the confidences, as in scikit-learn's ``calibration_curve``.

    References
    ----------
    .. [1] C. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    .. [2] M. Kull et al., "Beyond temperature scaling: Obtaining well-calibrated multi-class
       probabilities with Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.calibration import calibration_error
    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> labels = np.array([0, 1, 1, 1])
    >>> round(calibration_error(probs, labels, n_bins=5), 4)
    0.3
    >>> round(calibration_error(probs, labels, n_bins=5, norm="max"), 4)
    0.6
    >>> r = calibration_error(probs, labels, n_bins=5, n_bootstrap=200, random_state=0)
    >>> r.low <= r.estimate <= r.high
    True
    """
    func = "calibration_error"
    n_bins = check_scalar(n_bins, "n_bins", func, lo=1, integer=True)
    check_choice(strategy, ("uniform", "quantile"), "strategy", func)
    check_choice(norm, ("l1", "l2", "max"), "norm", func)
    check_choice(kind, ("top-label", "classwise"), "kind", func)
    n_bootstrap = check_scalar(n_bootstrap, "n_bootstrap", func, lo=0, integer=True)
    level = check_scalar(confidence_level, "confidence_level", func, lo=0.0, hi=1.0,
                         lo_open=True, hi_open=True)
    p, y, w = _probs_np(probs, labels, from_logits, func, sample_weight=sample_weight)
    est = _calibration_error_np(p, y, w, n_bins, strategy, norm, kind)
    if n_bootstrap == 0:
        return est
    rng = np.random.default_rng(random_state)
    n = len(y)
    reps = np.empty(n_bootstrap)
    for i in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        wi = None if w is None else w[idx]
        if wi is not None and not np.any(wi > 0):
            reps[i] = np.nan
            continue
        reps[i] = _calibration_error_np(p[idx], y[idx], wi, n_bins, strategy, norm, kind)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(reps, [alpha, 1.0 - alpha])
    return CalibrationErrorResult(est, float(low), float(high))


def reliability_curve(probs, labels, *, n_bins=15, strategy="uniform", class_index=None,
                      sample_weight=None, from_logits=False):
    """Per-bin confidence, accuracy and counts: the data of a reliability diagram.

    Parameters
    ----------
    probs : array_like, shape (n_samples, n_classes) or (n_samples,)
        Probabilities (or logits with ``from_logits=True``); 1-D is the probability of class 1.
    labels : array_like of int, shape (n_samples,)
    n_bins : int, default 15
    strategy : {"uniform", "quantile"}, default "uniform"
    class_index : int, optional
        ``None`` (default): the top-label curve (confidence = largest probability, accuracy = the
        argmax is right).  An int ``c``: the one-vs-rest curve of class ``c`` (confidence =
        ``probs[:, c]``, accuracy = frequency of label ``c``); ``class_index=1`` on a binary
        problem is scikit-learn's ``calibration_curve``.
    sample_weight : array_like, optional
    from_logits : bool, default False

    Returns
    -------
    ReliabilityCurve
        Named tuple ``(bin_edges, confidence, accuracy, counts)``: ``bin_edges`` has
        ``n_bins + 1`` entries, the others ``n_bins`` (bin ``b`` is
        ``(bin_edges[b], bin_edges[b+1]]``).  Empty bins have ``counts == 0`` and NaN
        confidence/accuracy (drop them with ``counts > 0`` before plotting lines).
        ``calibration_error(..., norm="l1")`` equals
        ``sum(counts * |accuracy - confidence|) / sum(counts)`` over the non-empty bins
        (without sample weights).

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.calibration import reliability_curve
    >>> np.set_printoptions(precision=4)
    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> curve = reliability_curve(probs, np.array([0, 1, 1, 1]), n_bins=5)
    >>> curve.bin_edges
    array([0. , 0.2, 0.4, 0.6, 0.8, 1. ])
    >>> curve.counts
    array([0, 0, 1, 2, 1])
    >>> curve.accuracy
    array([nan, nan, 0. , 0.5, 1. ])
    """
    func = "reliability_curve"
    n_bins = check_scalar(n_bins, "n_bins", func, lo=1, integer=True)
    check_choice(strategy, ("uniform", "quantile"), "strategy", func)
    p, y, w = _probs_np(probs, labels, from_logits, func, sample_weight=sample_weight)
    if class_index is None:
        conf = p.max(axis=1)
        hit = (p.argmax(axis=1) == y).astype(np.float64)
    else:
        c = check_scalar(class_index, "class_index", func, lo=0, hi=p.shape[1] - 1, integer=True)
        conf = p[:, c]
        hit = (y == c).astype(np.float64)
    edges, wsum, csum, asum, counts = _binned(conf, hit, w, n_bins, strategy)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(wsum > 0, csum / np.where(wsum > 0, wsum, 1.0), np.nan)
        accuracy = np.where(wsum > 0, asum / np.where(wsum > 0, wsum, 1.0), np.nan)
    return ReliabilityCurve(edges, confidence, accuracy, counts)


def brier_score(probs, labels, *, sample_weight=None, from_logits=False):
    r"""Mean squared error of the probability vector, :math:`\frac1n\sum_i \sum_k (p_{ik} -
    [y_i = k])^2`.

    For a binary problem given as one column (the probability of class 1) the score is
    :math:`\frac1n\sum_i (p_i - y_i)^2`, which is half the two-column score; this matches
    :func:`sklearn.metrics.brier_score_loss` in both cases (two or more columns: its
    ``scale_by_half=False``).

    Parameters
    ----------
    probs : array_like, shape (n_samples, n_classes) or (n_samples,)
        Probabilities (or logits with ``from_logits=True``).
    labels : array_like of int, shape (n_samples,)
    sample_weight : array_like, optional
    from_logits : bool, default False

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.calibration import brier_score
    >>> brier_score(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
    0.65
    >>> brier_score(np.array([0.1, 0.8]), np.array([0, 0]))   # binary, probability of class 1
    0.325
    """
    func = "brier_score"
    one_col = _is_one_column(probs)
    p, y, w = _probs_np(probs, labels, from_logits, func, sample_weight=sample_weight)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    per = np.sum((p - onehot) ** 2, axis=1)
    if one_col:
        per = per / 2.0
    return float(np.average(per, weights=w))


def nll(probs, labels, *, sample_weight=None, from_logits=False):
    r"""Mean negative log-likelihood (cross-entropy, log loss), :math:`-\frac1n\sum_i \log
    p_{i y_i}`, in nats.

    With ``from_logits=True`` it is computed from ``log_softmax`` (exact for any logit size); from
    probabilities a zero probability on the true class gives ``inf`` (no clipping).

    Parameters
    ----------
    probs : array_like, shape (n_samples, n_classes) or (n_samples,)
        Probabilities (or logits with ``from_logits=True``); 1-D is the probability (logit) of
        class 1 of a binary problem.
    labels : array_like of int, shape (n_samples,)
    sample_weight : array_like, optional
    from_logits : bool, default False

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.calibration import nll
    >>> round(nll(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1])), 6)
    0.164252
    >>> round(nll(np.log(np.array([[0.9, 0.1], [0.2, 0.8]])), np.array([0, 1]), from_logits=True), 6)
    0.164252
    """
    func = "nll"
    check_bool(from_logits, "from_logits", func)
    if from_logits:
        probs = _coerce(probs)
        _require_concrete(probs, "logits", func)
        xp = array_namespace(probs)
        z = _compat.as_array(probs, xp)
        if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1):
            z1 = xp.reshape(z, (-1, 1))
            z = xp.concat([xp.zeros_like(z1), z1], axis=1)
        elif z.ndim == 2:
            _warn_if_probabilities(z, xp, func, 2)
        if z.ndim != 2 or z.shape[0] == 0:
            raise param_error("logits", func, "a non-empty 2-D array (n_samples, n_classes) or 1-D",
                              f"an array of shape {tuple(z.shape)}")
        lp = _to_numpy(log_softmax(z, axis=-1)).astype(np.float64)
        y = _check_labels_np(labels, lp.shape[0], lp.shape[1], func)
        w = _check_weights_np(sample_weight, lp.shape[0], func)
        return float(np.average(-lp[np.arange(len(y)), y], weights=w))
    p, y, w = _probs_np(probs, labels, False, func, sample_weight=sample_weight)
    py = p[np.arange(len(y)), y]
    with np.errstate(divide="ignore"):
        return float(np.average(-np.log(py), weights=w))


def _is_one_column(a) -> bool:
    shape = getattr(a, "shape", None)
    if shape is None:
        shape = np.shape(a)
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


# ============================================================================================
# TemperatureScaler (scikit-learn is imported on first use)
# ============================================================================================
_LAZY: dict = {}

_SCALER_DOC = '''Temperature scaling as a scikit-learn classifier on logits.

``fit(logits, y)`` finds the NLL-optimal temperature with :func:`fit_temperature`;
``predict_proba`` returns ``softmax(logits / T)``, ``transform`` the calibrated
log-probabilities, ``predict`` the argmax class (unchanged by ``T``).

Parameters
----------
tol : float, default 1e-12
    Relative accuracy of the temperature (see :func:`fit_temperature`).
max_iter : int, default 100

Attributes
----------
temperature_ : float
    The fitted temperature.
classes_ : ndarray, shape (n_classes,)
    Class labels, in column order of the logits.
n_features_in_ : int
    Number of logit columns seen in ``fit``.
n_iter_ : int
    Passes over the data the fit took.

Notes
-----
The input ``X`` is logits, one column per class in the order of ``classes_`` (or, for a
binary problem, the logit of the second class as one column or a 1-D array of shape
``(n_samples,)``, as a binary classifier's ``decision_function`` returns).  If ``y`` holds integers in ``[0, n_columns)`` the columns are the classes
``0 .. n_columns-1`` (a class absent from the validation set is fine); otherwise the
sorted distinct labels of ``y`` must match the columns one to one.

:meth:`score` is the **negative mean NLL** (higher is better, as scikit-learn's
model selection expects), not the accuracy that :class:`~sklearn.base.ClassifierMixin`
would give: accuracy does not change with ``T``.

In a :class:`~sklearn.pipeline.Pipeline` put it after a step that outputs logits, e.g.
``make_pipeline(FunctionTransformer(clf.decision_function), TemperatureScaler())`` for a
fitted ``clf``.

Examples
--------
>>> import numpy as np
>>> from tempscale.calibration import TemperatureScaler
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 3, size=500)
>>> logits = 4.0 * (rng.normal(size=(500, 3)) + 1.5 * np.eye(3)[y])
>>> scaler = TemperatureScaler().fit(logits, y)
>>> round(scaler.temperature_, 4)
2.4403
>>> scaler.predict_proba(logits[:2]).round(3)
array([[0.002, 0.001, 0.998],
       [0.165, 0.444, 0.391]])
>>> round(scaler.score(logits, y), 4)          # the negative mean NLL
-0.5234
'''

__test__ = {"TemperatureScaler": _SCALER_DOC}


def _scores_2d(X):
    """A binary classifier's 1-D decision scores as one column; anything else unchanged."""
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        ndim = np.ndim(X)
    if ndim == 1:
        return np.reshape(np.asarray(_coerce(X)), (-1, 1))
    return X


def _make_scaler_class():
    from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
    from sklearn.utils.validation import check_is_fitted, validate_data

    class TemperatureScaler(ClassifierMixin, TransformerMixin, BaseEstimator):
        __doc__ = _SCALER_DOC

        def __init__(self, *, tol=1e-12, max_iter=100):
            self.tol = tol
            self.max_iter = max_iter

        def fit(self, X, y, sample_weight=None):
            """Fit the temperature on logits ``X`` and labels ``y``; returns ``self``."""
            from sklearn.utils.multiclass import check_classification_targets

            X = _scores_2d(X)
            y = _coerce(y)
            X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=False,
                                 multi_output=False)
            check_classification_targets(y)
            k = X.shape[1]
            classes = np.unique(y)
            if (y.dtype.kind in "iub" and classes.min() >= 0 and classes.max() < max(k, 2)):
                self.classes_ = np.arange(max(k, 2))
                codes = y.astype(np.intp)
            else:
                if len(classes) != max(k, 2):
                    raise ValueError(
                        f"TemperatureScaler: X has {k} logit column(s) but y has {len(classes)} "
                        f"distinct classes; give one column per class (or one column for 2 "
                        "classes)")
                self.classes_ = classes
                codes = np.searchsorted(classes, y)
            if k == 1 and codes.max() > 1:
                raise ValueError("TemperatureScaler: one logit column is a binary problem, but y "
                                 f"has {len(classes)} classes")
            self.temperature_, info = _fit(X, codes, sample_weight, self.tol, self.max_iter,
                                           None, "TemperatureScaler.fit")
            self.n_iter_ = max(1, int(info.get("n_iter", 1)))
            return self

        def _tempered(self, X, log):
            check_is_fitted(self)
            if getattr(self, "n_features_in_", None) == 1:  # fitted on one decision column
                X = _scores_2d(X)
            X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
            if X.shape[1] == 1:
                X = np.concatenate([np.zeros_like(X), X], axis=1)
            f = log_softmax if log else softmax
            return np.asarray(f(X, self.temperature_, axis=-1))

        def predict_proba(self, X):
            """Calibrated probabilities ``softmax(X / temperature_)``, shape (n, n_classes)."""
            return self._tempered(X, False)

        def predict_log_proba(self, X):
            """Calibrated log-probabilities (the same as :meth:`transform`)."""
            return self._tempered(X, True)

        def transform(self, X):
            """Calibrated log-probabilities ``log_softmax(X / temperature_)``."""
            return self._tempered(X, True)

        def predict(self, X):
            """The most probable class (temperature scaling never changes it)."""
            lp = self._tempered(X, True)
            return self.classes_[np.argmax(lp, axis=1)]

        def score(self, X, y, sample_weight=None):
            """The negative mean negative log-likelihood of ``y`` (higher is better).

            Not the accuracy: see the class Notes.
            """
            lp = self._tempered(X, True)
            y = np.asarray(_coerce(y))
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            idx = np.searchsorted(self.classes_, y)
            idx = np.clip(idx, 0, len(self.classes_) - 1)
            if not np.all(self.classes_[idx] == y):
                raise ValueError("TemperatureScaler.score: y holds labels not seen in fit")
            w = None if sample_weight is None else np.asarray(_coerce(sample_weight),
                                                              dtype=np.float64)
            return -float(np.average(-lp[np.arange(len(idx)), idx], weights=w))

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.classifier_tags.poor_score = True
            return tags

    TemperatureScaler.__module__ = __name__
    TemperatureScaler.__qualname__ = "TemperatureScaler"
    return TemperatureScaler


def __getattr__(name):
    if name == "TemperatureScaler":
        if name not in _LAZY:
            _LAZY[name] = _make_scaler_class()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + ["TemperatureScaler"])
