"""Dask arrays: block-wise kernels, and a (max, sum) tree reduction over a chunked class axis.

``compute`` returns ``None`` for the cases it does not take; the generic path computes them.

* The class axis in one chunk: every block is an independent set of rows, so
  ``softmax``/``log_softmax``/``logsumexp`` run block by block (``map_blocks``) through
  tempscale's own NumPy path (the compiled kernel where it applies), with the caller's
  :func:`tempscale.config` re-entered inside each task (it is a context variable: worker threads
  and processes do not see the caller's).
* The class axis in several chunks (scalar temperature, no mask): each block's ``logsumexp`` of
  ``x / T`` is computed by the kernel, the per-block values are combined by a tree reduction
  (``dask.array.reduction``: a log-sum-exp of log-sum-exps, at the same temperature, is the
  (max, sum) combination, with
  the contract's ``-inf``/``+inf``/NaN rules), and softmax / log-softmax are formed block-wise
  from the row's total.  Nothing is gathered to the client.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any

import numpy as np

from . import _config
from ._typing import DType, Namespace

__all__ = ["compute", "config_kwargs", "in_config"]


def config_kwargs() -> dict[str, bool]:
    """The caller's configuration, as keywords of :func:`tempscale.config` (picklable)."""
    return dataclasses.asdict(_config.current())


def in_config(cfg: dict[str, bool], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` under the configuration ``cfg`` (inside a Dask task)."""
    with _config.config(**cfg):
        return fn(*args, **kwargs)


def _np_kind(kind: str) -> Any:
    from . import _softmax

    fns: dict[str, Any] = {"softmax": _softmax.softmax, "log_softmax": _softmax.log_softmax,
                           "logsumexp": _softmax.logsumexp}
    return fns[kind]


def _block(x: Any, kind: str, T: float, ax: int, out: Any, cfg: dict[str, bool],
           keepdims: bool) -> Any:
    fn = _np_kind(kind)
    kw: dict[str, Any] = {"axis": ax}
    if kind == "logsumexp":
        kw["keepdims"] = keepdims
    else:
        kw["dtype"] = out
    return np.asarray(in_config(cfg, fn, np.asarray(x), T, **kw)).astype(out, copy=False)


def _pack(lse: Any, cnt: Any) -> Any:
    """Row totals as one complex array: the log-sum-exp (real) and the number of ``+inf``
    entries (imaginary), so that a single tree reduction carries both."""
    r = np.empty(lse.shape, np.complex128)
    r.real = lse
    r.imag = cnt
    return r


def _lse_chunk(x: Any, axis: Any, keepdims: bool, *, T: float, out: Any,
               cfg: dict[str, bool]) -> Any:
    (ax,) = axis
    x = np.asarray(x)
    lse = _block(x, "logsumexp", T, ax, out, cfg, True)
    return _pack(lse, np.sum(x == np.inf, axis=ax, keepdims=True))


def _lse_combine(x: Any, axis: Any, keepdims: bool, *, T: float, cfg: dict[str, bool]) -> Any:
    (ax,) = axis
    x = np.asarray(x)
    lse = _block(np.ascontiguousarray(x.real), "logsumexp", T, ax, np.dtype(np.float64), cfg,
                 True)
    r = _pack(lse, np.sum(x.imag, axis=ax, keepdims=True))
    return r if keepdims else np.squeeze(r, axis=ax)


def compute(kind: str, xp: Namespace, x: Any, T: Any, ax: int, mask: Any, out: DType) -> Any:
    """``kind`` of the Dask array ``x``, or ``None`` when the generic path should compute it."""
    da: Any = importlib.import_module("dask.array")
    if not isinstance(x, da.Array) or mask is not None:
        return None
    if not isinstance(T, float):  # per-row temperatures: the generic path
        return None
    if x.dtype.kind not in "fiub":
        return None
    ax = ax % x.ndim
    cfg = config_kwargs()
    odt = np.dtype(out)
    if len(x.chunks[ax]) == 1:
        if kind == "logsumexp":
            chunks = tuple((1,) * len(c) if i == ax else c for i, c in enumerate(x.chunks))
            return x.map_blocks(_block, kind, T, ax, odt, cfg, True, chunks=chunks, dtype=odt,
                                meta=np.empty((0,) * x.ndim, odt))
        return x.map_blocks(_block, kind, T, ax, odt, cfg, False, dtype=odt,
                            meta=np.empty((0,) * x.ndim, odt))
    if not (0.0 < T < math.inf):  # T = 0 / inf on a chunked class axis: the generic path
        return None
    from functools import partial

    tot = da.reduction(x, partial(_lse_chunk, T=T, out=np.dtype(np.float64), cfg=cfg),
                       partial(_lse_combine, T=T, cfg=cfg), axis=ax, keepdims=True,
                       dtype=np.complex128, combine=partial(_lse_combine, T=T, cfg=cfg),
                       concatenate=True)
    if kind == "logsumexp":
        return tot.real.astype(odt)
    return da.map_blocks(_from_total, x, tot, kind, T, odt, dtype=odt,
                         meta=np.empty((0,) * x.ndim, odt))


def _from_total(x: Any, tot: Any, kind: str, T: float, out: Any) -> Any:
    """softmax / log_softmax of one block from its rows' totals (see :func:`_pack`).

    ``x / T - lse`` is the log-probability (in float64, then cast); rows whose total is ``-inf``
    (all masked) give probability 0; rows with ``+inf`` entries share the mass equally among
    them (the contract's limit); NaN rows stay NaN.
    """
    lse, cnt = tot.real / T, tot.imag  # logsumexp(x, T) is T log sum exp(x / T)
    z = np.asarray(x).astype(np.float64) / T
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        lp = z - lse
        lp = np.where(lse == -np.inf, -np.inf, lp)
        if np.any(cnt > 0):
            share = np.where(z == np.inf, -np.log(np.where(cnt > 0, cnt, 1.0)), -np.inf)
            lp = np.where((cnt > 0) & ~np.isnan(lse), share, lp)
    r = lp if kind == "log_softmax" else np.exp(lp)
    return r.astype(out, copy=False)
