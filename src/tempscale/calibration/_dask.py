"""Dask arrays in the fit and the metrics: map-reduce of per-block sufficient statistics.

Logits (or probabilities), labels and weights may be Dask arrays (any of them; NumPy ones are
wrapped with the logits' row chunks).  Every computation is a ``map_blocks`` over row blocks
(the class axis brought to one chunk per row block: a block of rows with all its classes is what
one task reads) whose function returns a few numbers, summed by Dask's tree reduction:

* the fit: one pass per Newton/Halley step, each block giving the sums of the NLL's first three
  derivatives in ``beta`` from the compiled moments kernel (or the NumPy evaluators);
* ``nll`` / ``brier_score``: the weighted sum of the per-row loss and the total weight;
* ``calibration_error`` / ``reliability_curve`` with uniform bins: per-bin weight, confidence
  sum, hit sum and count.

Only these sums reach the client.  Options that need every sample at once (quantile bins, the
smooth ECE, bootstrap intervals, isotonic curves) compute the per-sample confidences and hits on
the cluster and bring those two vectors (not the logits) to the client.

The caller's :func:`tempscale.config` is captured and re-entered in every task (it is a context
variable, which worker threads and processes do not inherit).
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from .._dask import config_kwargs, in_config
from .._validation import param_error
from ._checks import warn_user
from ._solver import Solution, Status, solve_beta
from ._types import CalibrationWarning

__all__ = ["any_dask", "dask_fit", "dask_binned", "dask_conf_hit", "dask_loss"]


def _modules() -> tuple[Any, Any]:
    """(dask, dask.array), typed as Any (Dask ships no annotations)."""
    return importlib.import_module("dask"), importlib.import_module("dask.array")


def any_dask(*arrays: Any) -> bool:
    """Whether any of ``arrays`` is a Dask array."""
    return any(type(a).__module__.startswith("dask") for a in arrays if a is not None)


def _inputs(prediction: Any, labels: Any, sample_weight: Any, func: str,
            ) -> tuple[Any, Any, Any, int, int, bool]:
    """(z as 2-D Dask with one class chunk, y 1-D Dask, w 1-D Dask or None, n, k, binary)."""
    dask, da = _modules()  # noqa: F841
    z = prediction if isinstance(prediction, da.Array) else da.from_array(np.asarray(prediction))
    if z.dtype.kind not in "fiub":
        raise param_error("prediction", func, "an array of real numbers", f"dtype {z.dtype}",
                          TypeError)
    binary = z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2:
        raise param_error("prediction", func, "a 2-D array (n_samples, n_classes) or 1-D (binary)",
                          f"an array of shape {tuple(z.shape)}")
    n, k = z.shape
    if n == 0:
        raise param_error("prediction", func, "non-empty", "an array with no rows")
    if len(z.chunks[1]) > 1:
        z = z.rechunk({1: -1})
    rows = z.chunks[0]
    y = labels if isinstance(labels, da.Array) else da.from_array(np.asarray(labels))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise param_error("labels", func, "a 1-D array of class indices",
                          f"an array of shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise param_error("labels", func, f"of length n_samples = {n} (one label per row)",
                          f"{y.shape[0]} labels")
    if y.dtype.kind not in "iub":
        raise param_error("labels", func, "integer class indices", f"dtype {y.dtype}", TypeError)
    if y.chunks[0] != rows:
        y = y.rechunk((rows,))
    w = None
    if sample_weight is not None:
        w = (sample_weight if isinstance(sample_weight, da.Array)
             else da.from_array(np.asarray(sample_weight, dtype=np.float64)))
        if w.ndim == 0:
            w = da.full((n,), w, chunks=(rows,))
        if w.shape != (n,):
            raise param_error("sample_weight", func, f"a 1-D array of length n_samples = {n}",
                              f"shape {tuple(w.shape)}")
        w = w.astype(np.float64)
        if w.chunks[0] != rows:
            w = w.rechunk((rows,))
    return z, y, w, n, (2 if binary else k), binary


def _columns(zb: Any, binary: bool, probabilities: bool) -> Any:
    """A block's (n, k) float array: one binary column read as ``[0, z]`` (``[1 - p, p]``)."""
    zb = np.asarray(zb)
    if zb.dtype.kind != "f":
        zb = zb.astype(np.float64)
    if binary:
        c = zb[:, 0]
        first = (1.0 - c) if probabilities else np.zeros_like(c)
        zb = np.stack([first, c], axis=1)
    return zb


def _check_stats(y: Any, w: Any, n_classes: int, func: str) -> tuple[float, int]:
    """The labels' range and the weights' rules (one small pass over labels and weights);
    returns (total weight, 1 when every label is the same class)."""
    dask, da = _modules()  # noqa: F841
    parts: list[Any] = [y.min(), y.max()]
    if w is not None:
        parts += [w.sum(), w.min(), (~da_isfinite(w)).any(), (w > 0).any()]
    vals = dask.compute(*parts)
    lo, hi = int(vals[0]), int(vals[1])
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise param_error("labels", func, f"class indices in [0, {n_classes})",
                          f"a label {bad}")
    W = float(y.shape[0])
    if w is not None:
        W, wmin, nonfinite, anypos = float(vals[2]), float(vals[3]), bool(vals[4]), bool(vals[5])
        if nonfinite or wmin < 0:
            raise param_error("sample_weight", func, "finite and non-negative",
                              "a negative or non-finite weight")
        if not anypos:
            raise param_error("sample_weight", func, "positive somewhere", "all zeros")
    return W, int(lo == hi)


def da_isfinite(a: Any) -> Any:
    return _modules()[1].isfinite(a)


# ============================================================================================
# the fit
# ============================================================================================
def _block_derivatives(zb: Any, yb: Any, wb: Any, beta: float, exp2: int, precise: bool,
                       binary: bool, cfg: dict[str, bool]) -> Any:
    """One block's (sum w g, sum w h, sum w k3, bad, nonmax, nonfinite) as a (1, 6) array."""
    def run() -> Any:
        from ._nll import ArrayNLL, NativeNLL, NumpyNLL, native_moments

        z = _columns(zb, binary, False)
        y = np.asarray(yb).reshape(-1).astype(np.intp)
        w = None if wb is None else np.asarray(wb, dtype=np.float64).reshape(-1)
        out = np.zeros((1, 6))
        if z.shape[0] == 0:
            return out
        Wb = float(z.shape[0]) if w is None else float(w.sum())
        if Wb == 0.0:
            return out
        kernel = native_moments() if z.dtype in (np.float32, np.float64) else None
        prob: Any
        if kernel is not None:
            prob = NativeNLL(kernel, z, y, w, threads=1, exp2=exp2)
        else:
            prob = NumpyNLL(np.ascontiguousarray(z), y, w, threads=1, exp2=exp2)
        d = prob.evaluate(beta, precise)
        if d is None:  # -inf masked entries (or NaN/+inf: ArrayNLL raises)
            prob = ArrayNLL(z, y.astype(np.int64), w, np, "fit_temperature", exp2=exp2)
            d = prob.evaluate(beta, precise)
        if d is None or not all(math.isfinite(v) for v in d):
            out[0, 5] = 1
            return out
        out[0, :3] = np.asarray(d) * Wb
        out[0, 4] = 0 if prob.separable() else 1
        return out

    return in_config(cfg, run)


def _block_spreads(zb: Any, binary: bool) -> Any:
    """Half spreads of every ``step``-th row and the largest finite |z| (for the scale)."""
    from ._nll import half_spreads

    z = _columns(zb, binary, False)
    sp, amax = half_spreads(z)
    return sp, amax


def dask_fit(logits: Any, labels: Any, sample_weight: Any, *, tol: float, max_iter: int,
             func: str) -> tuple[Solution, int, int]:
    """(solution, exp2, passes) of the fit on Dask arrays: one pass over the data per step."""
    dask, da = _modules()  # noqa: F841
    from ._nll import NativeNLL, NumpyNLL, native_moments, scale_exponent

    z, y, w, n, k, binary = _inputs(logits, labels, sample_weight, func)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    elif z.dtype.itemsize < 4:
        z = z.astype(np.float32)
    W, one_class = _check_stats(y, w, k, func)
    if one_class:
        warn_user(f"{func}: all labels are the same class; the temperature will only sharpen or "
                  "flatten that class", CalibrationWarning)
    # the scale 2**e and the start: from an evenly spaced sample of rows (small, to the client)
    stride = max(1, n // 4096)
    zs_, ys_ = dask.compute(z[::stride], y[::stride])
    zs = _columns(zs_, binary, False)
    from ._nll import half_spreads

    emax = np.finfo(zs.dtype).maxexp
    e = scale_exponent(*half_spreads(zs), emax)
    if e is None and n > len(zs):  # every sampled row constant: look at all of them
        sp = da.map_blocks(lambda b: _block_spreads(b, binary)[0], z, drop_axis=[1],
                           dtype=np.float64, meta=np.empty((0,))).compute()
        e = scale_exponent(np.asarray(sp), 0.0, emax)
    if e is None:
        e = 0
    beta0 = 1.0
    if n >= 4000 and np.all(np.isfinite(zs)):
        ysi = np.asarray(ys_).astype(np.intp)
        ws_ = None if w is None else np.asarray(w[::stride].compute(), dtype=np.float64)
        kernel = native_moments() if zs.dtype in (np.float32, np.float64) else None
        sub: Any = (NativeNLL(kernel, zs, ysi, ws_, threads=1, exp2=e) if kernel is not None
                    else NumpyNLL(np.ascontiguousarray(zs), ysi, ws_, threads=1, exp2=e))
        if ws_ is None or ws_.sum() > 0:
            s0 = solve_beta(sub.evaluate, 1.0, tol=1e-6, max_iter=30, precise_from=99, loose=1e-3)
            if s0.status in (Status.CONVERGED, Status.MAX_ITER) and math.isfinite(s0.beta) \
                    and s0.beta > 0:
                beta0 = s0.beta
    cfg = config_kwargs()
    state = {"nonmax": 1.0, "passes": 0}

    args: list[Any] = [z, y[:, None]] + ([w[:, None]] if w is not None else [])

    def evaluate(beta: float, precise: bool) -> tuple[float, float, float] | None:

        def fn(zb: Any, yb: Any, wb: Any = None) -> Any:
            return _block_derivatives(zb, yb, wb, beta, e, precise, binary, cfg)

        parts = da.map_blocks(fn, *args, dtype=np.float64, chunks=((1,) * len(z.chunks[0]), (6,)),
                              meta=np.empty((0, 0)))
        tot = np.asarray(parts.sum(axis=0).compute(), dtype=np.float64)
        state["passes"] += 1
        state["nonmax"] = float(tot[4])
        if tot[5] > 0:
            raise FloatingPointError(f"{func}: non-finite NLL derivatives")
        return float(tot[0] / W), float(tot[1] / W), float(tot[2] / W)

    def degenerate(g: float, h: float) -> Status | None:
        if h == 0.0:
            return Status.CONSTANT
        if state["nonmax"] == 0:
            return Status.SEPARABLE
        return None

    def grad0() -> float | None:
        d = evaluate(0.0, True)
        return None if d is None else d[0]

    precise_from = 1 if z.dtype == np.float32 else 0
    solution = solve_beta(evaluate, beta0, tol=tol, max_iter=max_iter, precise_from=precise_from,
                          degenerate=degenerate, grad0=grad0)
    return solution, e, int(state["passes"])


# ============================================================================================
# the metrics
# ============================================================================================
def _probabilities_block(zb: Any, binary: bool, input: str, cfg: dict[str, bool]) -> Any:
    """A block's probabilities (float64, (n, k)) from probabilities or logits."""
    if input == "logits":
        from .._softmax import softmax

        p = np.asarray(in_config(cfg, softmax, _columns(zb, binary, False), axis=-1))
        return p.astype(np.float64, copy=False)
    p = _columns(zb, binary, True).astype(np.float64, copy=False)
    if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("The 'prediction' parameter must be probabilities in [0, 1] (pass "
                         'input="logits" for logits). Got values outside [0, 1] instead.')
    return p


def _loss_block(zb: Any, yb: Any, wb: Any = None, *, which: str, binary: bool, input: str,
                cfg: dict[str, bool]) -> Any:
    y = np.asarray(yb).reshape(-1).astype(np.intp)
    w = np.ones(len(y)) if wb is None else np.asarray(wb, dtype=np.float64).reshape(-1)
    if which == "nll" and input == "logits":
        from .._softmax import log_softmax

        lp = np.asarray(in_config(cfg, log_softmax, _columns(zb, binary, False), axis=-1))
        per = -lp.astype(np.float64)[np.arange(len(y)), y]
    else:
        p = _probabilities_block(zb, binary, input, cfg)
        if which == "nll":
            with np.errstate(divide="ignore"):
                per = -np.log(p[np.arange(len(y)), y])
        else:
            onehot = np.zeros_like(p)
            onehot[np.arange(len(y)), y] = 1.0
            per = np.sum((p - onehot) ** 2, axis=1)
            if binary:
                per = per / 2.0
    with np.errstate(invalid="ignore"):
        s = float(np.sum(np.where(w > 0, w * per, 0.0)))
    return np.array([[s, float(w.sum())]])


def dask_loss(which: str, prediction: Any, labels: Any, sample_weight: Any, input: str,
              func: str) -> float:
    """``nll`` or ``brier`` on Dask arrays: the weighted mean of the per-row loss."""
    dask, da = _modules()  # noqa: F841
    z, y, w, n, k, binary = _inputs(prediction, labels, sample_weight, func)
    _check_stats(y, w, k, func)
    cfg = config_kwargs()
    args: list[Any] = [z, y[:, None]] + ([w[:, None]] if w is not None else [])

    def fn(zb: Any, yb: Any, wb: Any = None) -> Any:
        return _loss_block(zb, yb, wb, which=which, binary=binary, input=input, cfg=cfg)

    parts = da.map_blocks(fn, *args, dtype=np.float64, chunks=((1,) * len(z.chunks[0]), (2,)),
                          meta=np.empty((0, 0)))
    s, W = np.asarray(parts.sum(axis=0).compute())
    return float(s / W)


def _conf_hit(p: Any, y: Any, classes: Any) -> list[tuple[Any, Any]]:
    if classes is None:
        return [(p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64))]
    return [(p[:, c], (y == c).astype(np.float64)) for c in classes]


def _binned_block(zb: Any, yb: Any, wb: Any = None, *, n_bins: int, classes: Any, binary: bool,
                  input: str, cfg: dict[str, bool]) -> Any:
    from ._metrics import _bin_ids

    p = _probabilities_block(zb, binary, input, cfg)
    y = np.asarray(yb).reshape(-1).astype(np.intp)
    w = np.ones(len(y)) if wb is None else np.asarray(wb, dtype=np.float64).reshape(-1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    pairs = _conf_hit(p, y, classes)
    out = np.zeros((1, len(pairs), 4, n_bins))
    for i, (conf, hit) in enumerate(pairs):
        ids = _bin_ids(conf, edges)
        out[0, i, 0] = np.bincount(ids, weights=w, minlength=n_bins)
        out[0, i, 1] = np.bincount(ids, weights=w * conf, minlength=n_bins)
        out[0, i, 2] = np.bincount(ids, weights=w * hit, minlength=n_bins)
        out[0, i, 3] = np.bincount(ids, minlength=n_bins)
    return out


def dask_binned(prediction: Any, labels: Any, sample_weight: Any, input: str, n_bins: int,
                kind: str, class_index: int | None, func: str) -> tuple[Any, float, int]:
    """Per-bin (weight, confidence sum, hit sum, count) of uniform bins, shape (C, 4, n_bins):
    C = 1 (top-label or one class) or n_classes (classwise); with the total weight and k."""
    dask, da = _modules()  # noqa: F841
    z, y, w, n, k, binary = _inputs(prediction, labels, sample_weight, func)
    W, _ = _check_stats(y, w, k, func)
    if class_index is not None:
        classes: Any = [class_index]
    elif kind == "classwise":
        classes = list(range(k))
    else:
        classes = None
    nc = 1 if classes is None else len(classes)
    cfg = config_kwargs()
    args: list[Any] = [z, y[:, None]] + ([w[:, None]] if w is not None else [])

    def fn(zb: Any, yb: Any, wb: Any = None) -> Any:
        return _binned_block(zb, yb, wb, n_bins=n_bins, classes=classes, binary=binary,
                             input=input, cfg=cfg)

    parts = da.map_blocks(fn, *args, dtype=np.float64,
                          chunks=((1,) * len(z.chunks[0]), (nc,), (4,), (n_bins,)),
                          new_axis=[2, 3], meta=np.empty((0, 0, 0, 0)))
    return np.asarray(parts.sum(axis=0).compute()), W, k


def _conf_hit_block(zb: Any, yb: Any, *, classes: Any, binary: bool, input: str,
                    cfg: dict[str, bool]) -> Any:
    p = _probabilities_block(zb, binary, input, cfg)
    y = np.asarray(yb).reshape(-1).astype(np.intp)
    pairs = _conf_hit(p, y, classes)
    return np.stack([np.stack([c, h], axis=1) for c, h in pairs], axis=1)  # (rows, C, 2)


def dask_conf_hit(prediction: Any, labels: Any, sample_weight: Any, input: str, kind: str,
                  class_index: int | None, func: str) -> tuple[Any, Any, int]:
    """(pairs, w, k): per-sample confidences and hits computed on the cluster and brought to
    the client (for estimators that need every sample): ``pairs`` is a list of (conf, hit)."""
    dask, da = _modules()  # noqa: F841
    z, y, w, n, k, binary = _inputs(prediction, labels, sample_weight, func)
    _check_stats(y, w, k, func)
    if class_index is not None:
        classes: Any = [class_index]
    elif kind == "classwise":
        classes = list(range(k))
    else:
        classes = None
    nc = 1 if classes is None else len(classes)
    cfg = config_kwargs()

    def fn(zb: Any, yb: Any) -> Any:
        return _conf_hit_block(zb, yb, classes=classes, binary=binary, input=input, cfg=cfg)

    ch = da.map_blocks(fn, z, y[:, None], dtype=np.float64,
                       chunks=(z.chunks[0], (nc,), (2,)), new_axis=[2],
                       meta=np.empty((0, 0, 0)))
    arr, wn = dask.compute(ch, w)
    pairs = [(np.ascontiguousarray(arr[:, i, 0]), np.ascontiguousarray(arr[:, i, 1]))
             for i in range(nc)]
    return pairs, (None if wn is None else np.asarray(wn, dtype=np.float64)), k
