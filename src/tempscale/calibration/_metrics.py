"""Calibration metrics: calibration_error, reliability_curve, brier_score, nll, and binning."""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from .. import _compat
from .._args import binary_columns, check_input, coerce, to_numpy
from .._compat import array_namespace
from .._softmax import log_softmax, softmax
from .._typing import ArrayLike
from .._validation import check_bool, check_choice, check_scalar, param_error
from ._checks import check_labels, check_weights, old_spellings, require_concrete, warn_if_probabilities
from ._dask import any_dask, dask_binned, dask_conf_hit, dask_loss
from ._smooth import debiased_square_error, smooth_ece
from ._types import CalibrationErrorResult, ReliabilityCurve

__all__ = ["brier_score", "calibration_error", "nll", "reliability_curve"]

F64 = NDArray[np.float64]


# ============================================================================================
# inputs
# ============================================================================================
def _logits_of(prediction: Any, func: str) -> Any:
    """Logits as an array of their own namespace, ``(n, k)`` (one column read as ``[0, z]``);
    two columns or more looked at for probabilities."""
    prediction = coerce(prediction)
    require_concrete(prediction, "prediction", func)
    xp = array_namespace(prediction)
    z = _compat.as_array(prediction, xp)
    if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1):
        return binary_columns(z)
    if z.ndim == 2:
        warn_if_probabilities(z, func)
    return z


def _check_rows(p: Any, func: str) -> None:
    if p.ndim != 2:
        raise param_error("prediction", func, "a 2-D array (n_samples, n_classes) or 1-D (binary)",
                          f"an array of shape {tuple(p.shape)}")
    if p.shape[0] == 0:
        raise param_error("prediction", func, "non-empty", "an array with no rows")


def _probabilities_np(prediction: Any, labels: Any, input: str, func: str, *,
                      sample_weight: Any = None) -> tuple[F64, NDArray[np.intp], F64 | None]:
    """(P as (n, k) float64 NumPy, y, w) from probabilities or logits; one column = binary."""
    if input == "logits":
        p = to_numpy(softmax(_logits_of(prediction, func), axis=-1)).astype(np.float64)
    else:
        prediction = coerce(prediction)
        require_concrete(prediction, "prediction", func)
        p = np.asarray(to_numpy(prediction), dtype=np.float64)
        p = binary_columns(p, input="probabilities")
    _check_rows(p, func)
    if input == "probabilities":
        if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
            raise param_error("prediction", func, 'probabilities in [0, 1] (pass input="logits" for '
                              "logits, formerly from_logits=True)", "values outside [0, 1]")
    y = check_labels(labels, p.shape[0], p.shape[1], func)
    w = check_weights(sample_weight, p.shape[0], func)
    return p, y, w


def _one_column(a: Any) -> bool:
    shape = getattr(a, "shape", None)
    if shape is None:
        shape = np.shape(a)
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


# ============================================================================================
# binning
# ============================================================================================
def _bin_ids(conf: F64, edges: F64) -> NDArray[np.intp]:
    """Bin ``b`` holds ``(edges[b], edges[b+1]]``; the first bin also holds ``edges[0]``."""
    return np.searchsorted(edges[1:-1], conf, side="left")


def _edges(conf: F64, n_bins: int, strategy: str, w: F64 | None) -> F64:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    q = np.linspace(0.0, 1.0, n_bins + 1)
    if w is None:
        return np.quantile(conf, q)
    order = np.argsort(conf, kind="stable")
    cw = np.cumsum(w[order])
    cw = cw / cw[-1]
    idx = np.searchsorted(cw, q[1:-1], side="left")
    return np.concatenate([[conf[order[0]]], conf[order[np.minimum(idx, len(order) - 1)]],
                           [conf[order[-1]]]])


def _binned(conf: F64, hit: F64, w: F64 | None, n_bins: int,
            strategy: str) -> tuple[F64, NDArray[Any], NDArray[Any], NDArray[Any], NDArray[np.int64]]:
    """(edges, weight, weighted confidence sum, weighted hit sum, count) per bin."""
    edges = _edges(conf, n_bins, strategy, w)
    ids = _bin_ids(conf, edges)
    ww = np.ones_like(conf) if w is None else w
    wsum = np.bincount(ids, weights=ww, minlength=n_bins)
    csum = np.bincount(ids, weights=ww * conf, minlength=n_bins)
    asum = np.bincount(ids, weights=ww * hit, minlength=n_bins)
    counts = np.bincount(ids, minlength=n_bins).astype(np.int64)
    return edges, wsum, csum, asum, counts


def _ce_from_bins(wsum: NDArray[Any], csum: NDArray[Any], asum: NDArray[Any], norm: str,
                  total: float) -> float:
    """The binned error before any root: the l1 sum, the l2 sum of squares, or the max gap."""
    nz = wsum > 0
    gap = np.abs(asum[nz] - csum[nz]) / wsum[nz]
    frac = wsum[nz] / total
    if norm == "l1":
        return float(np.sum(frac * gap))
    if norm == "l2":
        return float(np.sum(frac * gap * gap))
    return float(np.max(gap)) if gap.size else 0.0


def _top_label(p: F64, y: NDArray[np.intp]) -> tuple[F64, F64]:
    """(confidence, hit): the largest probability, and whether its class is the label."""
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def _pairs(p: F64, y: NDArray[np.intp], kind: str) -> list[tuple[F64, F64]]:
    """The (confidence, event) pairs of ``kind``: one (top-label) or one per class."""
    if kind == "top-label":
        return [_top_label(p, y)]
    return [(p[:, c], (y == c).astype(np.float64)) for c in range(p.shape[1])]


def _combine(vals: list[float], norm: str) -> float:
    """The per-pair errors (before any root) combined: max, or the mean (then the l2 root)."""
    if norm == "max":
        return float(max(vals))
    v = float(np.mean(vals))
    return math.sqrt(v) if norm == "l2" else v


def _bin_error(wsum: NDArray[Any], csum: NDArray[Any], asum: NDArray[Any], norm: str,
               total: float, debias: bool) -> float:
    if debias:
        # Kumar et al.: each squared error is clipped at 0 before the mean over classes
        return max(debiased_square_error(wsum, csum, asum, total), 0.0)
    return _ce_from_bins(wsum, csum, asum, norm, total)


def _calibration_error_pairs(pairs: list[tuple[F64, F64]], w: F64 | None, n_bins: int,
                             strategy: str, norm: str, method: str = "binned",
                             debias: bool = False) -> float:
    total = float(len(pairs[0][0])) if w is None else float(w.sum())
    vals = []
    for conf, hit in pairs:
        if method == "smooth":
            vals.append(smooth_ece(conf, hit, w))
            continue
        _, wsum, csum, asum, _ = _binned(conf, hit, w, n_bins, strategy)
        vals.append(_bin_error(wsum, csum, asum, norm, total, debias))
    return _combine(vals, norm)


def _calibration_error_np(p: F64, y: NDArray[np.intp], w: F64 | None, n_bins: int, strategy: str,
                          norm: str, kind: str, method: str = "binned",
                          debias: bool = False) -> float:
    return _calibration_error_pairs(_pairs(p, y, kind), w, n_bins, strategy, norm, method, debias)


# ============================================================================================
# the metrics
# ============================================================================================
@overload
def calibration_error(prediction: ArrayLike, labels: ArrayLike, *, n_bins: int = ...,
                      strategy: str = ..., norm: str = ..., kind: str = ...,
                      n_bootstrap: Literal[0] = ..., confidence_level: float = ...,
                      random_state: int | np.random.Generator | None = ...,
                      sample_weight: ArrayLike | None = ..., input: str = ...,
                      method: str = ..., debias: bool = ...) -> float: ...


@overload
def calibration_error(prediction: ArrayLike, labels: ArrayLike, *, n_bins: int = ...,
                      strategy: str = ..., norm: str = ..., kind: str = ..., n_bootstrap: int,
                      confidence_level: float = ...,
                      random_state: int | np.random.Generator | None = ...,
                      sample_weight: ArrayLike | None = ...,
                      input: str = ..., method: str = ...,
                      debias: bool = ...) -> float | CalibrationErrorResult: ...


@old_spellings("calibration_error")
def calibration_error(prediction: ArrayLike, labels: ArrayLike, *, n_bins: int = 15,
                      strategy: str = "uniform", norm: str = "l1", kind: str = "top-label",
                      n_bootstrap: int = 0, confidence_level: float = 0.95,
                      random_state: int | np.random.Generator | None = None,
                      sample_weight: ArrayLike | None = None,
                      input: str = "probabilities", method: str = "binned",
                      debias: bool = False) -> float | CalibrationErrorResult:
    r"""Expected (``l1``), root-mean-square (``l2``) or maximum (``max``) calibration error.

    Confidences are grouped into ``n_bins`` bins; in each bin ``b`` the gap between the observed
    frequency and the mean confidence is :math:`|\mathrm{acc}_b - \mathrm{conf}_b|`, and

    .. math:: \mathrm{ECE} = \sum_b \frac{n_b}{n} |\mathrm{acc}_b - \mathrm{conf}_b|, \quad
              \mathrm{RMSCE} = \Big(\sum_b \frac{n_b}{n} (\mathrm{acc}_b - \mathrm{conf}_b)^2
              \Big)^{1/2}, \quad \mathrm{MCE} = \max_{b:\,n_b>0} |\mathrm{acc}_b -
              \mathrm{conf}_b|.

    Parameters
    ----------
    prediction : array_like, shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities (or logits with ``input="logits"``).  A 1-D array is the
        probability (logit) of class 1 of a binary problem (read as ``[1 - p, p]``).
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
    input : {"probabilities", "logits"}, default "probabilities"
        What ``prediction`` holds; logits go through the softmax first.  The deprecated
        ``from_logits=True`` (and ``probs=`` for ``prediction``) still work, with a
        DeprecationWarning.
    method : {"binned", "smooth"}, default "binned"
        ``"binned"``: the binned errors above.  ``"smooth"``: the smooth ECE (smECE) of Błasiok
        & Nakkiran (2023): the residual ``confidence - outcome`` is smoothed with a Gaussian
        kernel reflected at 0 and 1, and the bandwidth is the fixed point where the error equals
        it; equal to the ``relplot`` package's ``smECE`` (same discretisation).  It is an
        ``l1`` error (``norm="l1"`` only) and has no bins (``n_bins`` and ``strategy`` are not
        used); ``kind="classwise"`` averages it over the classes.
    debias : bool, default False
        With ``norm="l2"`` and binned errors, the debiased estimator of Kumar et al. (2019):
        in each bin with :math:`n_b \ge 2`, the plug-in squared gap minus the estimated variance
        :math:`\bar y_b (1 - \bar y_b) / (n_b - 1)` of the bin's frequency (bins with fewer
        points count zero), summed with weights :math:`n_b / n`, clipped at 0, then the root
        (classwise: clipped per class, averaged, then the root).  Equal to
        ``uncertainty-calibration``'s ``lower_bound_scaling_ce(..., p=2, debias=True)`` with the
        same bins.  Not with ``sample_weight``.

    Returns
    -------
    float or CalibrationErrorResult
        The error, in ``[0, 1]``; with ``n_bootstrap > 0`` a named tuple
        ``(estimate, low, high)`` (for every ``method`` and ``debias``).

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
    .. [3] J. Błasiok and P. Nakkiran, "Smooth ECE: Principled Reliability Diagrams via Kernel
       Smoothing", 2023.
    .. [4] A. Kumar, P. Liang and T. Ma, "Verified Uncertainty Calibration", NeurIPS 2019.

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
    >>> rng = np.random.default_rng(0)
    >>> conf = rng.uniform(0.5, 1.0, 2000)
    >>> hit = (rng.uniform(size=2000) < conf).astype(int)    # calibrated by construction
    >>> round(calibration_error(conf, hit, method="smooth"), 4)
    0.0169
    >>> round(calibration_error(conf, hit, norm="l2", debias=True), 4)
    0.0
    """
    func = "calibration_error"
    n_bins = check_scalar(n_bins, "n_bins", func, lo=1, integer=True)
    check_choice(strategy, ("uniform", "quantile"), "strategy", func)
    check_choice(norm, ("l1", "l2", "max"), "norm", func)
    check_choice(kind, ("top-label", "classwise"), "kind", func)
    n_bootstrap = check_scalar(n_bootstrap, "n_bootstrap", func, lo=0, integer=True)
    level = check_scalar(confidence_level, "confidence_level", func, lo=0.0, hi=1.0,
                         lo_open=True, hi_open=True)
    input = check_input(input, func)
    check_choice(method, ("binned", "smooth"), "method", func)
    debias = check_bool(debias, "debias", func)
    if method == "smooth" and norm != "l1":
        raise param_error("norm", func, '"l1" with method="smooth" (the smooth ECE is an l1 '
                          "error)", norm)
    if debias and (method != "binned" or norm != "l2"):
        raise param_error("debias", func, 'False unless method="binned" and norm="l2" (the '
                          "debiased estimator is the l2 one)", debias)
    if debias and sample_weight is not None:
        raise param_error("sample_weight", func, "None with debias=True (the debiased estimator "
                          "counts samples)", "an array")
    if any_dask(prediction, labels, sample_weight):
        if method == "binned" and strategy == "uniform" and n_bootstrap == 0:
            # per-bin sums, map-reduced on the cluster: only (C, 4, n_bins) numbers come back
            stats, total, _ = dask_binned(prediction, labels, sample_weight, input, n_bins, kind,
                                          None, func)
            return _combine([_bin_error(st[0], st[1], st[2], norm, total, debias)
                             for st in stats], norm)
        pairs, w, _ = dask_conf_hit(prediction, labels, sample_weight, input, kind, None, func)
    else:
        p, y, w = _probabilities_np(prediction, labels, input, func, sample_weight=sample_weight)
        pairs = _pairs(p, y, kind)
    est = _calibration_error_pairs(pairs, w, n_bins, strategy, norm, method, debias)
    if n_bootstrap == 0:
        return est
    rng = np.random.default_rng(random_state)
    n = len(pairs[0][0])
    reps = np.empty(n_bootstrap)
    for i in range(n_bootstrap):
        idx = rng.integers(0, n, size=n)
        wi = None if w is None else w[idx]
        if wi is not None and not np.any(wi > 0):
            reps[i] = np.nan
            continue
        reps[i] = _calibration_error_pairs([(c[idx], h[idx]) for c, h in pairs], wi, n_bins,
                                           strategy, norm, method, debias)
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(reps, [alpha, 1.0 - alpha])
    return CalibrationErrorResult(est, float(low), float(high))


@old_spellings("reliability_curve")
def reliability_curve(prediction: ArrayLike, labels: ArrayLike, *, n_bins: int = 15,
                      strategy: str = "uniform", class_index: int | None = None,
                      sample_weight: ArrayLike | None = None,
                      input: str = "probabilities") -> ReliabilityCurve:
    """Per-bin confidence, accuracy and counts: the data of a reliability diagram.

    Parameters
    ----------
    prediction : array_like, shape (n_samples, n_classes) or (n_samples,)
        Probabilities (or logits with ``input="logits"``); 1-D is the probability (logit) of
        class 1.
    labels : array_like of int, shape (n_samples,)
    n_bins : int, default 15
    strategy : {"uniform", "quantile", "isotonic"}, default "uniform"
        Equal-width bins, bins of equal (weighted) mass, or ``"isotonic"``: the CORP reliability
        diagram of Dimitriadis, Gneiting & Jordan (2021): the accuracy is the isotonic
        (non-decreasing) regression of the event on the confidence, fitted by
        pool-adjacent-violators (weighted; equal confidences, to 1e-15 as in scikit-learn's
        ``IsotonicRegression``, are pooled into one block before the fit, so the curve is a
        function of the confidence), and every "bin" is one block of
        the fit.  ``n_bins`` is then not used: the data decide the number of blocks.
    class_index : int, optional
        ``None`` (default): the top-label curve (confidence = largest probability, accuracy = the
        argmax is right).  An int ``c``: the one-vs-rest curve of class ``c`` (confidence =
        ``prediction[:, c]``, accuracy = frequency of label ``c``); ``class_index=1`` on a
        binary problem is scikit-learn's ``calibration_curve``.
    sample_weight : array_like, optional
    input : {"probabilities", "logits"}, default "probabilities"
        What ``prediction`` holds (the deprecated ``from_logits=True`` means ``"logits"``).

    Returns
    -------
    ReliabilityCurve
        Named tuple ``(bin_edges, confidence, accuracy, counts)``: ``bin_edges`` has
        ``n_bins + 1`` entries, the others ``n_bins`` (bin ``b`` is
        ``(bin_edges[b], bin_edges[b+1]]``).  Empty bins have ``counts == 0`` and NaN
        confidence/accuracy (drop them with ``counts > 0`` before plotting lines).
        ``calibration_error(..., norm="l1")`` equals
        ``sum(counts * |accuracy - confidence|) / sum(counts)`` over the non-empty bins
        (without sample weights).  With ``strategy="isotonic"`` the tuple has one entry per
        isotonic block (and ``bin_edges`` one more): block ``b`` holds the confidences in
        ``(bin_edges[b], bin_edges[b+1]]`` (the first block from ``bin_edges[0]``, its smallest
        confidence), ``confidence`` is the block's (weighted) mean confidence, ``accuracy`` the
        fitted isotonic value (the block's weighted event frequency, non-decreasing), ``counts``
        its number of samples (samples of zero weight are left out); no block is empty.

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
    >>> corp = reliability_curve(probs, np.array([0, 1, 1, 1]), strategy="isotonic")
    >>> corp.bin_edges
    array([0.6, 0.6, 0.8, 0.9])
    >>> corp.accuracy
    array([0. , 0.5, 1. ])
    >>> corp.counts
    array([1, 2, 1])
    """
    func = "reliability_curve"
    n_bins = check_scalar(n_bins, "n_bins", func, lo=1, integer=True)
    check_choice(strategy, ("uniform", "quantile", "isotonic"), "strategy", func)
    input = check_input(input, func)
    if any_dask(prediction, labels, sample_weight):
        k = 2 if _one_column(prediction) else int(np.shape(prediction)[1])
        c = None if class_index is None else check_scalar(class_index, "class_index", func, lo=0,
                                                          hi=k - 1, integer=True)
        if strategy == "uniform":
            stats, _, _ = dask_binned(prediction, labels, sample_weight, input, n_bins,
                                      "top-label", c, func)
            wsum, csum, asum, counts = stats[0][0], stats[0][1], stats[0][2], stats[0][3]
            edges = np.linspace(0.0, 1.0, n_bins + 1)
            counts = counts.astype(np.int64)
            return _curve(edges, wsum, csum, asum, counts)
        pairs, w, _ = dask_conf_hit(prediction, labels, sample_weight, input, "top-label", c,
                                    func)
        conf, hit = pairs[0]
    else:
        p, y, w = _probabilities_np(prediction, labels, input, func,
                                    sample_weight=sample_weight)
        if class_index is None:
            conf, hit = _top_label(p, y)
        else:
            c = check_scalar(class_index, "class_index", func, lo=0, hi=p.shape[1] - 1,
                             integer=True)
            conf = p[:, c]
            hit = (y == c).astype(np.float64)
    if strategy == "isotonic":
        return _isotonic_curve(conf, hit, w)
    edges, wsum, csum, asum, counts = _binned(conf, hit, w, n_bins, strategy)
    return _curve(edges, wsum, csum, asum, counts)


_TIE = float(np.finfo(np.float64).resolution)


def _isotonic_curve(conf: F64, hit: F64, w: F64 | None) -> ReliabilityCurve:
    """The CORP curve: pool-adjacent-violators on the confidence-sorted events, with equal
    confidences pooled first; one "bin" per isotonic block.  Samples of zero weight are left
    out."""
    if w is not None:
        keep = w > 0
        conf, hit, w = conf[keep], hit[keep], w[keep]
    ww = np.ones_like(conf) if w is None else w
    order = np.argsort(conf, kind="stable")
    c, h, ww = conf[order], hit[order], ww[order]
    # ties in confidence form one starting block (CORP: the fit is a function of confidence);
    # confidences closer than 1e-15 (float64's resolution: one forecast computed with different
    # rounding) are ties, as in scikit-learn's IsotonicRegression
    starts = np.flatnonzero(np.r_[True, np.diff(c) >= _TIE])
    wsum = np.add.reduceat(ww, starts)
    asum = np.add.reduceat(ww * h, starts)
    csum = np.add.reduceat(ww * c, starts)
    cnt = np.diff(np.r_[starts, len(c)]).astype(np.int64)
    lo_c = c[starts]
    hi_c = c[np.r_[starts[1:], len(c)] - 1]
    # pool adjacent violators: a stack of blocks whose means increase strictly
    bw: list[float] = []
    ba: list[float] = []
    bc: list[float] = []
    bn: list[int] = []
    blo: list[float] = []
    bhi: list[float] = []
    for i in range(len(starts)):
        wi, ai, ci, ni, li, hi_ = float(wsum[i]), float(asum[i]), float(csum[i]), int(cnt[i]), \
            float(lo_c[i]), float(hi_c[i])
        while bw and ba[-1] * wi >= ai * bw[-1]:  # previous mean >= this mean: pool them
            wi += bw.pop()
            ai += ba.pop()
            ci += bc.pop()
            ni += bn.pop()
            li = blo.pop()
            bhi.pop()
        bw.append(wi)
        ba.append(ai)
        bc.append(ci)
        bn.append(ni)
        blo.append(li)
        bhi.append(hi_)
    W = np.asarray(bw)
    edges = np.asarray([blo[0], *bhi], dtype=np.float64) if bw else np.zeros(1)
    return ReliabilityCurve(edges, np.asarray(bc) / W, np.asarray(ba) / W,
                            np.asarray(bn, dtype=np.int64))


def _curve(edges: F64, wsum: NDArray[Any], csum: NDArray[Any], asum: NDArray[Any],
           counts: NDArray[np.int64]) -> ReliabilityCurve:
    """The curve of per-bin sums (NaN confidence and accuracy in empty bins)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(wsum > 0, csum / np.where(wsum > 0, wsum, 1.0), np.nan)
        accuracy = np.where(wsum > 0, asum / np.where(wsum > 0, wsum, 1.0), np.nan)
    return ReliabilityCurve(edges, confidence, accuracy, counts)


@old_spellings("brier_score")
def brier_score(prediction: ArrayLike, labels: ArrayLike, *, sample_weight: ArrayLike | None = None,
                input: str = "probabilities") -> float:
    r"""Mean squared error of the probability vector, :math:`\frac1n\sum_i \sum_k (p_{ik} -
    [y_i = k])^2`.

    For a binary problem given as one column (the probability of class 1) the score is
    :math:`\frac1n\sum_i (p_i - y_i)^2`, which is half the two-column score; this matches
    :func:`sklearn.metrics.brier_score_loss` in both cases (two or more columns: its
    ``scale_by_half=False``).

    Parameters
    ----------
    prediction : array_like, shape (n_samples, n_classes) or (n_samples,)
        Probabilities (or logits with ``input="logits"``).
    labels : array_like of int, shape (n_samples,)
    sample_weight : array_like, optional
    input : {"probabilities", "logits"}, default "probabilities"
        What ``prediction`` holds (the deprecated ``from_logits=True`` means ``"logits"``).

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
    input = check_input(input, func)
    if any_dask(prediction, labels, sample_weight):
        return dask_loss("brier", prediction, labels, sample_weight, input, func)
    one_col = _one_column(prediction)
    p, y, w = _probabilities_np(prediction, labels, input, func, sample_weight=sample_weight)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    per = np.sum((p - onehot) ** 2, axis=1)
    if one_col:
        per = per / 2.0
    return float(np.average(per, weights=w))


@old_spellings("nll")
def nll(prediction: ArrayLike, labels: ArrayLike, *, sample_weight: ArrayLike | None = None,
        input: str = "probabilities") -> float:
    r"""Mean negative log-likelihood (cross-entropy, log loss), :math:`-\frac1n\sum_i \log
    p_{i y_i}`, in nats.

    With ``input="logits"`` it is computed from ``log_softmax`` (exact for any logit size); from
    probabilities a zero probability on the true class gives ``inf`` (no clipping).

    Parameters
    ----------
    prediction : array_like, shape (n_samples, n_classes) or (n_samples,)
        Probabilities (or logits with ``input="logits"``); 1-D is the probability (logit) of
        class 1 of a binary problem.
    labels : array_like of int, shape (n_samples,)
    sample_weight : array_like, optional
    input : {"probabilities", "logits"}, default "probabilities"
        What ``prediction`` holds (the deprecated ``from_logits=True`` means ``"logits"``).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.calibration import nll
    >>> round(nll(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1])), 6)
    0.164252
    >>> round(nll(np.log(np.array([[0.9, 0.1], [0.2, 0.8]])), np.array([0, 1]), input="logits"), 6)
    0.164252
    """
    func = "nll"
    input = check_input(input, func)
    if any_dask(prediction, labels, sample_weight):
        return dask_loss("nll", prediction, labels, sample_weight, input, func)
    if input == "logits":
        z = _logits_of(prediction, func)
        if z.ndim != 2 or z.shape[0] == 0:
            raise param_error("prediction", func, "a non-empty 2-D array (n_samples, n_classes) or "
                              "1-D", f"an array of shape {tuple(z.shape)}")
        lp = to_numpy(log_softmax(z, axis=-1)).astype(np.float64)
        y = check_labels(labels, lp.shape[0], lp.shape[1], func)
        w = check_weights(sample_weight, lp.shape[0], func)
        return float(np.average(-lp[np.arange(len(y)), y], weights=w))
    p, y, w = _probabilities_np(prediction, labels, input, func, sample_weight=sample_weight)
    py = p[np.arange(len(y)), y]
    with np.errstate(divide="ignore"):
        return float(np.average(-np.log(py), weights=w))
