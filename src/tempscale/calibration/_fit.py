"""fit_temperature: the NLL-optimal temperature of held-out logits."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .. import _compat
from .._args import binary_columns, coerce
from .._compat import array_namespace
from .._typing import Array, ArrayLike, Namespace
from .._validation import check_bool, check_scalar, param_error
from ._checks import check_labels, check_weights, require_concrete, warn_if_probabilities, warn_user
from ._dask import any_dask, dask_fit
from ._nll import (
    ArrayNLL,
    NativeNLL,
    NLLProblem,
    NumpyNLL,
    array_scale_exponent,
    half_spreads,
    native_moments,
    scale_exponent,
)
from ._solver import Derivatives, Solution, Status, solve_beta
from ._types import CalibrationWarning

__all__ = ["FitResult", "fit_logits", "fit_temperature"]


class FitResult(NamedTuple):
    """The fitted temperature and the number of passes over the full data it took."""

    temperature: float
    n_iter: int


def fit_temperature(logits: ArrayLike, labels: ArrayLike, *, sample_weight: ArrayLike | None = None,
                    tol: float = 1e-12, max_iter: int = 100, as_array: bool = False,
                    threads: int | None = None) -> Any:
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
        The optimal temperature (a 0-d array with ``as_array=True``).  Degenerate cases return
        a defined value with a :class:`CalibrationWarning`: ``0.0`` when every label is at its
        row's maximum (the NLL falls all the way to ``T = 0``), ``inf`` when the logits are no
        better than uniform (the NLL falls as ``T`` grows), ``1.0`` when every row is constant
        (any ``T`` is optimal).  A single class among the labels is warned about too (the fit
        is usually meaningless).

    Notes
    -----
    The fit is scale-equivariant: ``fit_temperature(c * z, y) == c * fit_temperature(z, y)``
    for every ``c > 0`` that keeps the logits finite and normal (to rounding of ``c * z``;
    exactly for powers of two), from ``1e-300`` to ``1e300``.  The iteration works on
    ``z / 2**e`` with ``2**e`` the median spread (max - min) of the rows, so its start, its
    stopping rule and its intermediate sums never overflow or underflow.

    Dask arrays (the logits, the labels or the weights; NumPy ones are wrapped) are fitted on
    their cluster without gathering them: each step is one ``map_blocks`` pass whose tasks
    return the block's three derivative sums (from the compiled kernel), added by Dask's tree
    reduction; the start and the scale come from a strided sample of at most ~4096 rows, and a
    class axis in several chunks is brought to one chunk per row block.  The result equals the
    NumPy fit (to about 1e-12).

    The fit looks at values, so it cannot run inside ``jax.jit`` (a TypeError says so); call it
    on concrete arrays.

    On NumPy float32/float64 input each pass is one call of a compiled kernel that reads the
    logits once (any strides, no copy), fusing the row maximum, the tempered exponentials and
    the first three moments of the logits under the tempered softmax, and returns only their
    weighted sums (SIMD, rows split over ``threads``); without the extension, or under
    ``tempscale.config(native=False)``, NumPy streams cache-sized row chunks over threads
    instead (the same result to about 1e-12).  A float32 array is first iterated in float32
    arithmetic and finished in float64, so the result is the optimum of the exact (float64) NLL
    of the given float32 values.  On a large input the
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

    T = fit_logits(logits, labels, sample_weight=sample_weight, tol=tol, max_iter=max_iter,
                   threads=threads, func=func).temperature
    if as_array:
        z = coerce(logits)
        xp = array_namespace(z)
        z = _compat.as_array(z, xp)
        if not xp.isdtype(z.dtype, "real floating"):
            z = xp.astype(z, _compat.default_float_dtype(xp, _compat.device(z)))
        return xp.asarray(T, dtype=z.dtype, device=_compat.device(z))
    return T


def fit_logits(logits: ArrayLike, labels: ArrayLike, *, sample_weight: ArrayLike | None,
               tol: float, max_iter: int, threads: int | None, func: str) -> FitResult:
    """The fit behind :func:`fit_temperature` and ``TemperatureScaler.fit``: ``func`` names
    the caller in messages; ``n_iter`` counts the passes over the full data."""
    if any_dask(logits, labels, sample_weight):  # map-reduce on the cluster, one pass per step
        solution, e, n_iter = dask_fit(logits, labels, sample_weight, tol=tol,
                                       max_iter=max_iter, func=func)
        _warn_degenerate(solution, func, max_iter)
        return FitResult(_t_from_beta(solution.beta, e), n_iter)
    xp, z, y, w = _prepare_logits(logits, labels, sample_weight, func)
    labels_used = y if w is None else y[w > 0]
    if labels_used.size and labels_used.min() == labels_used.max():
        warn_user(f"{func}: all labels are the same class ({int(labels_used[0])}); the "
                  "temperature will only sharpen or flatten that class", CalibrationWarning)
    solution, e, n_iter = _fit_beta(xp, z, y, w, tol=tol, max_iter=max_iter, threads=threads,
                                    func=func)
    _warn_degenerate(solution, func, max_iter)
    return FitResult(_t_from_beta(solution.beta, e), n_iter)


def _prepare_logits(logits: ArrayLike, labels: ArrayLike, sample_weight: ArrayLike | None,
                    func: str) -> tuple[Namespace, Array, NDArray[np.intp], NDArray[np.float64] | None]:
    """(xp, z as (n, k) floating, y NumPy intp, w NumPy float64 or None)."""
    logits = coerce(logits)
    require_concrete(logits, "logits", func)
    xp = array_namespace(logits)
    z = _compat.as_array(logits, xp)
    if not xp.isdtype(z.dtype, ("real floating", "integral")):
        raise param_error("logits", func, "an array of real numbers", f"dtype {z.dtype}", TypeError)
    if xp.isdtype(z.dtype, "integral"):
        z = xp.astype(z, _compat.default_float_dtype(xp, _compat.device(z)))
    elif _compat.float_bits(xp, z.dtype) < 32:
        z = xp.astype(z, xp.float32)
    binary = z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1)
    if binary:
        z = binary_columns(z)
    elif z.ndim != 2:
        raise param_error("logits", func, "a 2-D array (n_samples, n_classes) or 1-D (binary)",
                          f"an array of shape {tuple(z.shape)}")
    n, k = z.shape
    if n == 0:
        raise param_error("logits", func, "non-empty", "an array with no rows")
    y = check_labels(labels, n, k, func)
    w = check_weights(sample_weight, n, func)
    if not binary:
        warn_if_probabilities(z, func)
    return xp, z, y, w


def _t_from_beta(beta: float, e: int) -> float:
    """The temperature ``2**e / beta`` of the scaled problem's optimum ``beta``."""
    if beta <= 0:
        return math.inf
    if math.isinf(beta):
        return 0.0
    try:
        return math.ldexp(1.0 / beta, e)
    except OverflowError:
        return math.inf


def _warn_degenerate(solution: Solution, func: str, max_iter: int) -> None:
    """The CalibrationWarning of a fit that ended in a degenerate case, if it did."""
    messages = {
        Status.CONSTANT: "every row of logits is constant, so the NLL does not depend on T; "
                         "returning T = 1.0",
        Status.SEPARABLE: "every label is at its row's maximum logit (perfectly separable data); "
                          "the NLL decreases all the way to T = 0, returning T = 0.0",
        Status.UNIFORM: "the logits do no better than a uniform guess (the NLL falls as T "
                        "grows); returning T = inf",
        Status.MAX_ITER: f"no convergence in max_iter={max_iter} iterations; returning the last "
                         "iterate",
    }
    if solution.status in messages:
        warn_user(f"{func}: {messages[solution.status]}", CalibrationWarning)


def _degenerate(problem: NLLProblem) -> Callable[[float, float], Status | None]:
    """The start's degenerate cases: zero curvature (constant rows), then separable data."""
    def degenerate(g: float, h: float) -> Status | None:
        if h == 0.0:
            return Status.CONSTANT
        if problem.separable():
            return Status.SEPARABLE
        return None
    return degenerate


class _Counted:
    """``problem.evaluate`` counting its calls (the passes over the data)."""

    def __init__(self, problem: NLLProblem) -> None:
        self.problem = problem
        self.calls = 0

    def __call__(self, beta: float, precise: bool) -> Derivatives | None:
        self.calls += 1
        return self.problem.evaluate(beta, precise)


def _solve(problem: NLLProblem, beta0: float, tol: float, max_iter: int, *,
           precise_from: int) -> tuple[Solution, int]:
    """The full problem's solution and its number of passes."""
    evaluate = _Counted(problem)
    solution = solve_beta(evaluate, beta0, tol=tol, max_iter=max_iter, precise_from=precise_from,
                          degenerate=_degenerate(problem), grad0=problem.grad0)
    return solution, evaluate.calls


def _numpy_start(zn: NDArray[Any], y: NDArray[np.intp], w: NDArray[np.float64] | None,
                 e: int, kernel: Any = None) -> float:
    """The start ``beta``: 1, or on a large input the loose fit of an evenly spaced subsample
    of rows (1 again when that fit ends anywhere but at a finite positive root)."""
    n, k = zn.shape
    sub_rows = max(2000, (1 << 18) // k)
    if n < 2 * sub_rows:
        return 1.0
    stride = max(1, n // sub_rows)
    ws = None if w is None else np.ascontiguousarray(w[::stride])
    sub: NLLProblem
    if kernel is not None:
        sub = NativeNLL(kernel, zn[::stride], y[::stride], ws, threads=1, exp2=e)
    else:
        sub = NumpyNLL(np.ascontiguousarray(zn[::stride]), y[::stride], ws, threads=1, exp2=e)
    solution = solve_beta(sub.evaluate, 1.0, tol=1e-6, max_iter=30, precise_from=99, loose=1e-3)
    beta = solution.beta
    if solution.status not in (Status.CONVERGED, Status.MAX_ITER):
        return 1.0
    return beta if (math.isfinite(beta) and beta > 0) else 1.0


def _fit_beta(xp: Namespace, z: Array, y: NDArray[np.intp], w: NDArray[np.float64] | None, *,
              tol: float, max_iter: int, threads: int | None,
              func: str) -> tuple[Solution, int, int]:
    """(solution, e, passes): the optimum ``beta`` of the logits ``z / 2**e`` (see
    :func:`scale_exponent`).  NumPy logits take the chunked path; when it meets non-finite
    values (``-inf`` masked entries, NaN, ``+inf``) the whole-array path sorts them out."""
    n = z.shape[0]
    if _compat.is_numpy_namespace(xp):
        kernel = native_moments() if z.dtype in (np.float32, np.float64) else None
        zn: NDArray[Any] = np.asarray(z) if kernel is not None else np.ascontiguousarray(z)
        emax = np.finfo(zn.dtype).maxexp
        e = scale_exponent(*half_spreads(zn[:: max(1, n // 4096)]), emax)
        if e is None and n > 4096:
            e = scale_exponent(*half_spreads(zn), emax)
        if e is None:
            e = 0                         # constant rows: the degenerate check warns
        prob: NumpyNLL | NativeNLL
        if kernel is not None:
            prob = NativeNLL(kernel, zn, y, w, threads=threads, exp2=e)
        else:
            prob = NumpyNLL(zn, y, w, threads=threads, exp2=e)
        try:
            solution, passes = _solve(prob, _numpy_start(zn, y, w, e, kernel), tol, max_iter,
                                      precise_from=1 if zn.dtype == np.float32 else 0)
        finally:
            prob.close()
        if solution.status is not Status.NONFINITE:
            return solution, e, passes
    yx = _compat.as_array(y.astype(np.int64), xp, like=z)
    wx = None if w is None else _compat.as_array(w, xp, like=z)
    e = array_scale_exponent(z, xp)
    solution, passes = _solve(ArrayNLL(z, yx, wx, xp, func, exp2=e), 1.0, tol, max_iter,
                              precise_from=0)
    if solution.status is Status.NONFINITE:
        raise FloatingPointError(f"{func}: non-finite NLL derivatives")
    return solution, e, passes
