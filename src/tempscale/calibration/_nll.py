"""The NLL of temperature-scaled logits and its derivatives in ``beta = 1/T``, in one pass.

Two evaluators with the same interface (``evaluate``, ``grad0``, ``separable``, ``close``):
:class:`NumpyNLL` streams NumPy logits in cache-sized row chunks over threads (float32
arithmetic while far from the optimum), :class:`ArrayNLL` uses whole-array Array-API
operations on any library's device.  Both see the logits divided by ``2**exp2`` (exactly: a
power of two), with ``exp2`` from :func:`scale_exponent`, so that nothing overflows or
underflows whatever the scale of the logits.
"""

from __future__ import annotations

import importlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .. import _compat
from .._args import to_numpy, work_dtype
from .._compat import is_concrete
from .._typing import Namespace
from .._validation import param_error
from ._solver import Derivatives

__all__ = ["ArrayNLL", "NLLProblem", "NativeNLL", "NumpyNLL", "array_scale_exponent",
           "half_spreads", "native_moments", "scale_exponent"]

#: how NumpyNLL sums rows: "auto", "blas" or "einsum" (a switch for benchmarks)
ROWSUM = "auto"

Float64Array = NDArray[np.float64]


class NLLProblem(Protocol):
    """What the fit asks of an evaluator."""

    def evaluate(self, beta: float, precise: bool) -> Derivatives | None: ...

    def grad0(self) -> float | None: ...

    def separable(self) -> bool: ...


# ============================================================================================
# the scale of the logits
# ============================================================================================
def scale_exponent(spreads: Float64Array, amax: float, emax: int) -> int | None:
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


def half_spreads(z: NDArray[Any]) -> tuple[Float64Array, float]:
    """Half the ``max - min`` of each row's finite entries (overflow-free, float64), and the
    largest finite ``|z|``."""
    z = np.asarray(z)
    finite = np.isfinite(z)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = np.max(np.where(finite, z, -np.inf), axis=1).astype(np.float64)
        lo = np.min(np.where(finite, z, np.inf), axis=1).astype(np.float64)
        amax = float(np.max(np.where(finite, np.abs(z), 0.0))) if z.size else 0.0
        return hi * 0.5 - lo * 0.5, amax


def array_scale_exponent(z: Any, xp: Namespace) -> int:
    """:func:`scale_exponent` of any namespace's logits (their row spreads, brought to NumPy);
    0 for constant rows."""
    finite = xp.logical_and(z > -math.inf, z < math.inf)
    ninf = xp.full_like(z, -math.inf)
    hi = xp.max(xp.where(finite, z, ninf), axis=1)
    lo = xp.min(xp.where(finite, z, -ninf), axis=1)
    amax = xp.max(xp.where(finite, xp.abs(z), xp.zeros_like(z)))
    spreads = np.asarray(to_numpy(hi), dtype=np.float64) * 0.5 - np.asarray(
        to_numpy(lo), dtype=np.float64) * 0.5
    emax = 1024 if _compat.float_bits(xp, work_dtype(xp, z)) >= 64 else 128
    e = scale_exponent(spreads, float(to_numpy(amax)), emax)
    return 0 if e is None else e


def _times_pow2_np(x: NDArray[Any], k: int, dt: type[np.floating[Any]]) -> NDArray[Any]:
    """``x * 2**k`` in dtype ``dt``: exact unless it leaves the dtype's range."""
    fi = np.finfo(dt)
    out: NDArray[Any]
    if fi.minexp <= k < fi.maxexp:
        out = np.multiply(x, math.ldexp(1.0, k), dtype=dt)
    else:
        out = np.ldexp(np.asarray(x, dtype=dt), np.int32(k))
    return out


def _times_pow2_xp(x: Any, k: int) -> Any:
    """``x * 2**k`` for any namespace, in exact power-of-two steps that no float32 overflows."""
    while k:
        step = max(-100, min(100, k))
        x = x * math.ldexp(1.0, step)
        k -= step
    return x


# ============================================================================================
# NumPy: row chunks over threads
# ============================================================================================
class NumpyNLL:
    """The NLL derivatives of NumPy logits, in row chunks (cache-sized), over threads.

    ``z`` must be C-contiguous, ``y`` NumPy ``intp`` labels, ``w`` float64 weights or None.
    :meth:`evaluate` gives ``None`` when a row maximum or a derivative is not finite (``-inf``
    masked entries, NaN, ``+inf``): :class:`ArrayNLL` sorts those out.
    """

    def __init__(self, z: NDArray[Any], y: NDArray[np.intp], w: Float64Array | None, *,
                 threads: int | None = None, exp2: int = 0) -> None:
        self.z = z
        self.y = y
        self.w = w
        self.exp2 = exp2  # the derivatives are those of z / 2**exp2 (see scale_exponent)
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
        self._pool: ThreadPoolExecutor | None = None
        self.ones = {np.dtype(np.float64): np.ones(k, np.float64),
                     np.dtype(np.float32): np.ones(k, np.float32)}

    def _prepare_chunk(self, a: int, b: int) -> None:
        """Row maxima and the label's logit minus the maximum (of the scaled logits)."""
        zc = self.z[a:b]
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

    def _chunk(self, a: int, beta: float, dt: type[np.floating[Any]], prep: bool) -> Float64Array:
        b = min(a + self.rows, self.n)
        zc = self.z[a:b]
        if prep:
            self._prepare_chunk(a, b)
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

    def _rowsum(self, e: NDArray[Any]) -> Float64Array:
        """Row sums as float64: a BLAS matrix-vector product (fast for short rows) when one
        thread runs, else NumPy's own loop (BLAS threads inside our threads oversubscribe)."""
        if ROWSUM == "blas" or (ROWSUM == "auto" and self.threads == 1):
            r = e @ self.ones[e.dtype]
        else:
            r = np.einsum("ij->i", e)
        return np.asarray(r).astype(np.float64, copy=False)

    def evaluate(self, beta: float, precise: bool) -> Derivatives | None:
        dt: type[np.floating[Any]] = np.float64 if (precise or self.z.dtype == np.float64) \
            else np.float32
        prep = not self.prepared
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            if self.threads > 1:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.threads)
                parts = list(self._pool.map(lambda a: self._chunk(a, beta, dt, prep), self.starts))
            else:
                parts = [self._chunk(a, beta, dt, prep) for a in self.starts]
        self.prepared = True
        tot = np.sum(parts, axis=0) / self.W
        if prep and not np.all(np.isfinite(self.m)):
            return None
        if not np.all(np.isfinite(tot)):
            return None
        return float(tot[0]), float(tot[1]), float(tot[2])

    def grad0(self) -> float | None:
        """Mean NLL gradient at beta = 0 (a pass with exp(0) = 1: the row means)."""
        d = self.evaluate(0.0, True)
        return None if d is None else d[0]

    def separable(self) -> bool:
        if self.w is None:
            return bool(np.all(self.dy == 0))
        return bool(np.all(self.dy[self.w > 0] == 0))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


# ============================================================================================
# NumPy: the compiled moments kernel (one fused pass per evaluation)
# ============================================================================================
def native_moments() -> Any:
    """The compiled ``_tsmoments`` module, or ``None`` (not built, or ``native=False``)."""
    from .. import _config

    if not _config.current().native:
        return None
    try:
        return importlib.import_module("tempscale._native._tsmoments")
    except ImportError:
        return None


class NativeNLL:
    """The NLL derivatives of NumPy float32/float64 logits from the compiled kernel.

    One call of ``_tsmoments.moments`` per evaluation reads the logits once (any strides, no
    copy) and returns the weighted sums of the per-row gradient, curvature and third derivative;
    nothing per row is kept.  ``precise=False`` on float32 logits computes in float32 (to get
    close), otherwise in float64.  Same interface and same ``None`` cases as :class:`NumpyNLL`.
    """

    def __init__(self, kernel: Any, z: NDArray[Any], y: NDArray[np.intp], w: Float64Array | None,
                 *, threads: int | None = None, exp2: int = 0) -> None:
        self.kernel = kernel
        self.z = z
        self.y = np.ascontiguousarray(y, dtype=np.intp)
        self.w = None if w is None else np.ascontiguousarray(w, dtype=np.float64)
        self.exp2 = exp2
        self.n, self.k = z.shape
        self.W = float(self.n) if w is None else float(self.w.sum())  # type: ignore[union-attr]
        if threads is None:
            threads = min(os.cpu_count() or 1, 4)
        self.threads = max(1, int(threads))
        self._nonmax: int | None = None

    def evaluate(self, beta: float, precise: bool) -> Derivatives | None:
        fast = not precise and self.z.dtype == np.float32
        g, h, k3, bad, nonmax = self.kernel.moments(self.z, self.y, self.w, beta, self.exp2,
                                                    not fast, self.threads)
        self._nonmax = nonmax
        if bad:
            return None
        tot = (g / self.W, h / self.W, k3 / self.W)
        if not all(math.isfinite(v) for v in tot):
            return self.evaluate(beta, True) if fast else None
        return tot

    def grad0(self) -> float | None:
        """Mean NLL gradient at beta = 0 (a pass with exp(0) = 1: the row means)."""
        d = self.evaluate(0.0, True)
        return None if d is None else d[0]

    def separable(self) -> bool:
        if self._nonmax is None:
            self.evaluate(1.0, True)
        return self._nonmax == 0

    def close(self) -> None:
        """Nothing to release (for the common interface)."""


# ============================================================================================
# any Array-API library: whole-array operations
# ============================================================================================
class ArrayNLL:
    """The same derivatives with whole-array Array-API operations (torch, JAX, Dask, ...).

    Checks the logits (no NaN or ``+inf``; finite at each row's label) where concrete.
    """

    def __init__(self, z: Any, y: Any, w: Any, xp: Namespace, func: str, exp2: int = 0) -> None:
        self.xp = xp
        dt = work_dtype(xp, z)
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
            rows = np.flatnonzero(~to_numpy(label_ok))[:5].tolist()
            raise param_error("logits", func, "finite at each row's label",
                              f"-inf at the label of rows {rows}")
        self.d = d
        nvalid = xp.sum(xp.astype(valid, dt), axis=1)
        self.g0r = xp.sum(d, axis=1) / nvalid - self.dy   # gradient at beta = 0, per row
        self.neg = xp.where(valid, xp.zeros_like(z), xp.full_like(z, ninf))
        self.w = None if w is None else xp.astype(w, dt)
        self.W = float(n) if w is None else float(to_numpy(xp.sum(self.w)))
        self.dt = dt

    def evaluate(self, beta: float, precise: bool) -> Derivatives | None:
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
        t = np.asarray(to_numpy(tot), dtype=np.float64) / self.W
        return float(t[0]), float(t[1]), float(t[2])

    def grad0(self) -> float | None:
        xp = self.xp
        g = self.g0r if self.w is None else self.g0r * self.w
        return float(to_numpy(xp.sum(g))) / self.W

    def separable(self) -> bool:
        xp = self.xp
        nz = self.dy != 0
        if self.w is not None:
            nz = xp.logical_and(nz, self.w > 0)
        return not bool(to_numpy(xp.any(nz)))

    def close(self) -> None:
        """Nothing to release (for the common interface)."""
