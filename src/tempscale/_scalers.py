"""Affine calibration maps on logits, fitted exactly by Newton's method (NumPy, float64).

The maps behind :class:`tempscale.sklearn.VectorScaler`, :class:`~tempscale.sklearn.MatrixScaler`
and :class:`~tempscale.sklearn.DirichletScaler`.  Each calibrated logit is linear in the
parameters ``coef`` (shape ``(k, m)``):

* ``"vector"``: ``u_ic = coef[c, 0] * x_ic + coef[c, 1]`` (a scale and a bias per class);
* ``"matrix"``: ``u_i = coef[:, :k] @ x_i + coef[:, k]`` (a full matrix and a bias).

Dirichlet calibration is the ``"matrix"`` map on log-probabilities ``log_softmax(x)``.  The
objective is the weighted mean negative log-likelihood of ``softmax(u)`` plus the quadratic
penalty ``1/2 sum(penalty * coef**2)``: convex in ``coef``, so Newton's method with a
backtracking line search reaches its minimum.  The Hessian is formed exactly (one pass over the
rows per Newton step) while it has at most :data:`DENSE_MAX` entries per side; above that the
Newton step is solved by conjugate gradients on Hessian-vector products (one pass each).

This module imports NumPy (and SciPy's Cholesky solver when fitting); the estimators live in :mod:`tempscale.sklearn`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["AffineFit", "apply_affine", "fit_affine", "identity_coef", "objective", "odir_penalty"]

F64 = NDArray[np.float64]

#: the most parameters for which the Newton step solves the full Hessian (eigendecomposition)
DENSE_MAX = 400
#: elements of a row chunk's (rows, k, m) feature block
_CHUNK_ELEMENTS = 1 << 20
#: a loss below this ends the iteration (data separated by the map: the infimum 0 is not attained)
SEPARABLE_FLOOR = 1e-10
#: Armijo's sufficient-decrease constant and the most step halvings of the line search
_ARMIJO = 1e-4
_MAX_HALVINGS = 60


class AffineFit(NamedTuple):
    """A fitted map: ``coef`` (k, m), the objective there, Newton steps taken, convergence."""

    coef: F64
    objective: float
    n_iter: int
    converged: bool


def identity_coef(kind: str, k: int) -> F64:
    """The parameters of the identity map (``u = x``): the start of every fit."""
    if kind == "vector":
        return np.column_stack([np.ones(k), np.zeros(k)])
    return np.column_stack([np.eye(k), np.zeros(k)])


def odir_penalty(kind: str, k: int, reg_lambda: float, reg_mu: float) -> F64:
    """Per-parameter weights ``d`` of the penalty ``1/2 sum(d * coef**2)`` equal to ODIR's
    ``reg_lambda / (k (k-1)) * sum(off-diagonal**2) + reg_mu / k * sum(bias**2)``."""
    d = np.zeros((k, 2 if kind == "vector" else k + 1))
    if kind == "matrix" and k > 1:
        off = ~np.eye(k, dtype=bool)
        d[:, :k][off] = 2.0 * reg_lambda / (k * (k - 1))
    d[:, -1] = 2.0 * reg_mu / k
    return d


def _features(kind: str, x: F64) -> F64:
    """The (rows, k, m) features ``F`` with ``u_ic = sum_j coef[c, j] F[i, c, j]``."""
    n, k = x.shape
    if kind == "vector":
        return np.stack([x, np.ones_like(x)], axis=-1)
    a = np.concatenate([x, np.ones((n, 1))], axis=1)
    return np.broadcast_to(a[:, None, :], (n, k, k + 1))


def _map(kind: str, x: F64, coef: F64) -> F64:
    if kind == "vector":
        out: F64 = x * coef[:, 0] + coef[:, 1]
        return out
    k = x.shape[1]
    out = x @ coef[:, :k].T + coef[:, k]
    return out


def apply_affine(kind: str, x: F64, coef: F64) -> F64:
    """The calibrated logits ``u`` of ``x`` (n, k)."""
    return _map(kind, np.asarray(x, dtype=np.float64), np.asarray(coef, dtype=np.float64))


def _log_softmax(u: F64) -> F64:
    m = u.max(axis=1, keepdims=True)
    s = u - m
    out: F64 = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return out


def _value_sum(kind: str, x: F64, y: NDArray[np.intp], w: F64, coef: F64) -> F64:
    """A chunk's weighted NLL sum, as a length-1 vector."""
    lp = _log_softmax(_map(kind, x, coef))
    return np.array([-float(w @ lp[np.arange(len(y)), y])])


def _derivative_sums(kind: str, x: F64, y: NDArray[np.intp], w: F64, coef: F64,
                     dense: bool) -> F64:
    """A chunk's sums of the NLL, its gradient (k, m), its Hessian's diagonal (k, m) and, if
    ``dense``, the upper triangle of its Hessian (P, P), flattened into one vector."""
    from scipy.linalg.blas import dsyrk as syrk  # half the flops of B2.T @ B2

    k, m = coef.shape
    rows = np.arange(len(y))
    lp = _log_softmax(_map(kind, x, coef))
    p = np.exp(lp)
    f = -float(w @ lp[rows, y])
    r = p * w[:, None]
    r[rows, y] -= w
    F = _features(kind, x)
    g = np.einsum("ic,icj->cj", r, F)
    wp = p * w[:, None]
    diag = np.einsum("ic,icj->cj", wp * (1.0 - p), F * F)
    parts = [np.array([f]), g.ravel(), diag.ravel()]
    if dense:
        # sum_i w_i (diag(p_i) - p_i p_i^T) (x) F_i F_i^T, as a block diagonal minus B^T B
        blocks = np.matmul((wp[:, :, None] * F).transpose(1, 2, 0), F.transpose(1, 0, 2))
        B = (np.sqrt(w)[:, None] * p)[:, :, None] * F
        B2 = B.reshape(len(y), k * m)
        H = -syrk(1.0, B2.T, trans=0, lower=0)  # the upper triangle of B2^T B2
        for c in range(k):
            H[c * m:(c + 1) * m, c * m:(c + 1) * m] += blocks[c]
        parts.append(H.ravel())
    return np.concatenate(parts)


def _hessp_sum(kind: str, x: F64, y: NDArray[np.intp], w: F64, coef: F64, v: F64) -> F64:
    """A chunk's sum of the Hessian times the direction ``v``, flattened."""
    p = np.exp(_log_softmax(_map(kind, x, coef)))
    F = _features(kind, x)
    du = np.einsum("cj,icj->ic", v, F)
    dp = p * (du - np.sum(p * du, axis=1, keepdims=True))
    out: F64 = np.einsum("ic,icj->cj", dp * w[:, None], F).ravel()
    return out


class _Problem:
    """The penalised mean NLL of the map on (x, y, w), in units where ``x`` is ``x / scale``.

    ``x`` may be any array with rows (a memory-mapped file included): each pass reads it in row
    chunks through ``prepare`` (the chunk as float64 (rows, k) inputs of the map)."""

    def __init__(self, kind: str, x: Any, y: NDArray[np.intp], w: F64 | None, penalty: F64,
                 scale: float, prepare: Callable[[Any], F64]) -> None:
        self.kind, self.x, self.y, self.scale, self.prepare = kind, x, y, scale, prepare
        n = len(y)
        self.w = np.ones(n) if w is None else w
        self.total = float(self.w.sum())
        self._setup(penalty, scale)

    def _setup(self, penalty: F64, scale: float) -> None:
        k = penalty.shape[0]
        self.k, self.m = k, (2 if self.kind == "vector" else k + 1)
        # internal coef' = coef * scale on the columns that multiply x: the penalty follows
        self.unit = np.ones((k, self.m))
        self.unit[:, : (1 if self.kind == "vector" else k)] = scale
        self.penalty = penalty / self.unit**2
        self.rows = max(1, _CHUNK_ELEMENTS // (k * self.m))

    def chunks(self) -> Any:
        n = len(self.y)
        for s in range(0, n, self.rows):
            x = self.prepare(self.x[s:s + self.rows])
            yield x / self.scale, self.y[s:s + self.rows], self.w[s:s + self.rows]

    def _sum(self, fn: Callable[..., F64], *args: Any) -> F64:
        """``fn(kind, x, y, w, *args)`` summed over the row chunks: one pass over the data."""
        total: F64 | None = None
        for x, y, w in self.chunks():
            part = fn(self.kind, x, y, w, *args)
            total = part if total is None else total + part
        assert total is not None  # there is at least one row
        return total

    def value(self, coef: F64) -> float:
        f = float(self._sum(_value_sum, coef)[0])
        return f / self.total + 0.5 * float(np.sum(self.penalty * coef**2))

    def derivatives(self, coef: F64, dense: bool) -> tuple[float, F64, F64 | None, F64]:
        """(value, gradient (k, m), Hessian (P, P) if dense, Hessian diagonal (k, m))."""
        k, m = self.k, self.m
        P = k * m
        sums = self._sum(_derivative_sums, coef, dense)
        f = float(sums[0])
        g = sums[1:1 + P].reshape(k, m)
        diag = sums[1 + P:1 + 2 * P].reshape(k, m)
        H = sums[1 + 2 * P:].reshape(P, P) if dense else None
        scale = 1.0 / self.total
        f = f * scale + 0.5 * float(np.sum(self.penalty * coef**2))
        g = g * scale + self.penalty * coef
        diag = diag * scale + self.penalty
        if H is not None:
            H = np.triu(H)
            H = (H + np.triu(H, 1).T) * scale
            H[np.diag_indices_from(H)] += self.penalty.ravel()
        return f, g, H, diag

    def hessp(self, coef: F64, v: F64) -> F64:
        """The Hessian at ``coef`` times the direction ``v`` (k, m): one pass over the rows."""
        out = self._sum(_hessp_sum, coef, v).reshape(self.k, self.m)
        res: F64 = out / self.total + self.penalty * v
        return res


def _block_sum(x: Any, y: Any, *rest: Any, kind: str, scale: float, rows: int, size: int,
               fn: Callable[..., F64], args: tuple[Any, ...]) -> F64:
    """One Dask block's ``fn`` sums (its rows in chunks of ``rows``), as a (1, size) array."""
    x = np.asarray(x, dtype=np.float64) / scale
    yy = np.asarray(y)[:, 0].astype(np.intp)
    w = np.asarray(rest[0], dtype=np.float64)[:, 0] if rest else np.ones(len(yy))
    total: F64 = np.zeros(size)
    for s in range(0, len(yy), rows):
        total = total + fn(kind, x[s:s + rows], yy[s:s + rows], w[s:s + rows], *args)
    return total[None, :]


class _DaskProblem(_Problem):
    """:class:`_Problem` on Dask arrays: each pass is one ``map_blocks`` over the row blocks
    whose function returns the block's sums (value, gradient, Hessian), added by Dask's tree
    reduction; only those sums reach the client.

    ``x`` is the map's float64 input (n, k) with the class axis in one chunk, ``y`` the class
    indices (n,) and ``w`` the weights (n,) or None, with ``x``'s row chunks."""

    def __init__(self, kind: str, x: Any, y: Any, w: Any, penalty: F64, scale: float,
                 total: float) -> None:
        self.kind, self.x, self.y, self.w, self.scale = kind, x, y, w, scale
        self.total = total
        self._setup(penalty, scale)

    def _sum(self, fn: Callable[..., F64], *args: Any) -> F64:
        import functools
        import importlib

        da: Any = importlib.import_module("dask.array")
        P = self.k * self.m
        size = (1 if fn is _value_sum else P if fn is _hessp_sum
                else 1 + 2 * P + (P * P if args[1] else 0))
        arrays = [self.x, self.y[:, None]] + ([] if self.w is None else [self.w[:, None]])
        block = functools.partial(_block_sum, kind=self.kind, scale=self.scale,
                                  rows=self.rows, size=size, fn=fn, args=args)
        # a fresh name per pass: Dask's hash of the partial need not see the coefficients,
        # and a reused key would hand back an earlier pass's sums
        parts = da.map_blocks(block, *arrays, chunks=((1,) * self.x.numblocks[0], (size,)),
                              dtype=np.float64, meta=np.empty((0, 0)),
                              name=f"tempscale-affine-{uuid.uuid4().hex}")
        out: F64 = np.asarray(parts.sum(axis=0).compute(), dtype=np.float64)
        return out


def dask_scale(x: Any) -> float:
    """:func:`_scale_of` for a Dask ``x`` (one reduction on the cluster)."""
    total = float((x * x).sum().compute())
    rms = math.sqrt(total / x.size) if x.size else 0.0
    if not math.isfinite(rms) or rms == 0.0:
        return 1.0
    return math.ldexp(1.0, round(math.log2(rms)))


def gauge_columns(kind: str, penalty: F64) -> list[int]:
    """The parameter columns ``j`` along which ``coef[:, j] += t`` (the same for every class)
    changes no softmax and no penalty: the bias without ``reg_mu``, and for the matrix map
    every column of the matrix without ``reg_lambda``."""
    k, m = penalty.shape
    cols = [m - 1] if not np.any(penalty[:, -1] > 0) else []
    if kind == "matrix" and not np.any(penalty[:, : m - 1] > 0):
        cols = list(range(m - 1)) + cols
    return cols


def _dense_step(H: F64, g: F64, gauge: list[int]) -> F64:
    """``-H⁺ g``: the Newton step on the Hessian's range (its null directions, such as a
    constant added to every class, left alone).

    The known null directions (``gauge``: a column of ``coef`` shifted for every class, where
    the gradient is zero) are given unit curvature, which makes the Hessian positive definite
    without changing the step; then a Cholesky solve of it plus ``1e-13 max(diag H) I``; an
    eigendecomposition (the pseudo-inverse) if that fails, e.g. for a constant logit column.
    """
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    P = H.shape[0]
    top = float(np.max(np.diag(H))) if P else 0.0
    if not top > 0.0:
        return np.zeros_like(g)
    k, m = g.shape
    A = H + (1e-13 * top) * np.eye(P)
    for j in gauge:
        idx = np.arange(k) * m + j
        A[np.ix_(idx, idx)] += top / k
    try:
        factor = cho_factor(A, lower=True, check_finite=False)
        step: F64 = -cho_solve(factor, g.ravel(), check_finite=False)
    except LinAlgError:
        evals, V = np.linalg.eigh(H)
        keep = evals > max(float(evals[-1]), 0.0) * 1e-13
        if not np.any(keep):
            return np.zeros_like(g)
        step = -(V[:, keep] @ ((V[:, keep].T @ g.ravel()) / evals[keep]))
    return step.reshape(g.shape)


def _cg_step(problem: _Problem, coef: F64, g: F64, diag: F64, rtol: float) -> F64:
    """An approximate Newton step by Jacobi-preconditioned conjugate gradients."""
    M = np.where(diag > 0, 1.0 / np.where(diag > 0, diag, 1.0), 0.0)
    b = -g
    x = np.zeros_like(g)
    r = b.copy()
    z = M * r
    d = z.copy()
    rz = float(np.sum(r * z))
    target = rtol * math.sqrt(float(np.sum(b * b)))
    for _ in range(max(20, 2 * g.size)):
        if math.sqrt(float(np.sum(r * r))) <= target:
            break
        Hd = problem.hessp(coef, d)
        dHd = float(np.sum(d * Hd))
        if dHd <= 0:
            break
        alpha = rz / dHd
        x += alpha * d
        r -= alpha * Hd
        z = M * r
        rz_new = float(np.sum(r * z))
        d = z + (rz_new / rz) * d
        rz = rz_new
    return x


def _scale_of(x: Any, prepare: Callable[[Any], F64], rows: int) -> float:
    """A power of two near the root-mean-square input (exact to divide by); one pass."""
    total, count = 0.0, 0
    for s in range(0, len(x), rows):
        c = prepare(x[s:s + rows])
        total += float(np.sum(c * c))
        count += c.size
    rms = math.sqrt(total / count) if count else 0.0
    if not math.isfinite(rms) or rms == 0.0:
        return 1.0
    return math.ldexp(1.0, round(math.log2(rms)))


def _as_float64(x: Any) -> F64:
    out: F64 = np.asarray(x, dtype=np.float64)
    return out


def canonical(kind: str, coef: F64, penalty: F64) -> F64:
    """The representative of ``coef``'s equivalence class that the estimators report.

    Adding a constant to every class's logit leaves the softmax unchanged, so unpenalised
    parameters along those directions are not determined by the data: the biases' mean
    (when the bias is not penalised) is set to 0 and, for the matrix map without off-diagonal
    penalty, the vector added to every row of the matrix is chosen so that each column's
    off-diagonal entries have mean 0 (the limit of a vanishing ODIR penalty: a temperature map
    ``I / T`` stays diagonal)."""
    out = np.array(coef, dtype=np.float64, copy=True)
    k = out.shape[0]
    if not np.any(penalty[:, -1] > 0):
        out[:, -1] -= out[:, -1].mean()
    if kind == "matrix" and k > 1 and not np.any(penalty[:, :k] > 0):
        W = out[:, :k]
        off_mean = (W.sum(axis=0) - np.diag(W)) / (k - 1)
        W -= off_mean[None, :]
    return out


def objective(kind: str, x: Any, y: NDArray[np.intp], w: F64 | None, coef: F64,
              penalty: F64, prepare: Callable[[Any], F64] = _as_float64) -> float:
    """The fitted objective at ``coef``: the (weighted) mean NLL plus ``1/2 sum(penalty coef²)``."""
    return _Problem(kind, x, np.asarray(y, dtype=np.intp), w, penalty, 1.0, prepare).value(
        np.asarray(coef, dtype=np.float64))


def fit_affine(kind: str, x: Any, y: NDArray[np.intp], w: F64 | None, penalty: F64, *,
               tol: float, max_iter: int, dense_max: int | None = None,
               prepare: Callable[[Any], F64] = _as_float64) -> AffineFit:
    """Minimise the penalised NLL of the ``kind`` map from the identity by damped Newton steps.

    The iteration stops after a step whose Newton decrement ``g·H⁺g / 2`` (a quadratic model's
    estimate of the remaining excess objective) was at most ``tol * max(1, |f|)``; the step
    itself is taken, so the excess after it is of the order of the decrement squared.  A loss
    below :data:`SEPARABLE_FLOOR` also ends it (separable data: the infimum 0 is approached only
    as the parameters grow without bound).
    ``converged`` is False when ``max_iter`` steps were not enough, or when the line search could
    not decrease the objective before reaching that accuracy (for example when no finite minimum
    exists: separable data without a penalty).

    ``x`` is read in row chunks through ``prepare`` (default: as float64), one pass per Newton
    step and line-search trial, so it may be a memory-mapped array larger than memory; or
    ``x`` (float64, the class axis in one chunk), ``y`` and ``w`` are Dask arrays with the same
    row chunks (``prepare`` is not used): each pass is then a ``map_blocks`` of per-block sums
    on the cluster (:class:`_DaskProblem`);
    ``penalty`` (k, m) gives the number of classes.  ``dense_max`` defaults to
    :data:`DENSE_MAX`.
    """
    k = penalty.shape[0]
    rows = max(1, _CHUNK_ELEMENTS // (k * penalty.shape[1]))
    dask_input = type(x).__module__.startswith("dask")
    problem: _Problem
    if dask_input:  # x (n, k) float64 with one class chunk; y, w with x's row chunks
        total = float(len(y)) if w is None else float(w.sum().compute())
        scale = dask_scale(x)
        problem = _DaskProblem(kind, x, y, w, penalty, scale, total)
    else:
        scale = _scale_of(x, prepare, rows)
        problem = _Problem(kind, x, y, w, penalty, scale, prepare)
    coef = identity_coef(kind, k) * problem.unit
    dense = coef.size <= (DENSE_MAX if dense_max is None else dense_max)
    gauge = gauge_columns(kind, penalty)
    converged = False
    n_iter = 0
    f = problem.value(coef)
    for _ in range(max_iter):
        f, g, H, diag = problem.derivatives(coef, dense)
        gnorm = math.sqrt(float(np.sum(g * g)))
        if H is not None:
            step = _dense_step(H, g, gauge)
        else:
            step = _cg_step(problem, coef, g, diag, min(0.1, math.sqrt(gnorm)))
        dec = -float(np.sum(g * step))
        small = dec / 2 <= tol * max(1.0, abs(f))
        if dec <= 0 or not math.isfinite(dec):
            converged = dec == 0.0 or gnorm == 0.0
            break
        t = 1.0
        for _ in range(_MAX_HALVINGS):
            trial = coef + t * step
            f_new = problem.value(trial)
            if f_new <= f - _ARMIJO * t * dec:
                break
            t *= 0.5
        else:
            converged = small  # no decrease left at rounding level: done when the model says so
            break
        coef, f = trial, f_new
        n_iter += 1
        if small or f < SEPARABLE_FLOOR:  # below the floor: separable data, no finite minimum
            converged = True
            break
    coef = canonical(kind, coef / problem.unit, penalty)
    if dask_input:
        fitted = _DaskProblem(kind, x, y, w, penalty, 1.0, problem.total).value(coef)
    else:
        fitted = objective(kind, x, y, w, coef, penalty, prepare)
    return AffineFit(coef, fitted, n_iter, converged)
