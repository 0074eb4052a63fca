"""Which path computes a call (fast or generic), and the warped distribution."""

from __future__ import annotations

import math
from typing import Any

from .. import _backend, _config
from .._softmax import log_softmax, softmax
from . import _fast, _reference
from ._layout import Args, full


def switches() -> tuple[bool, bool]:
    """(fast paths allowed, CPU tensors through NumPy views): the one place the switches are read.

    Both come from :func:`tempscale.config`: ``fast_sampling``, and ``sampling_numpy_views``
    (CPU tensors select their candidates through zero-copy NumPy views; off, they take the
    torch-operations path that GPU tensors take).
    """
    cfg = _config.current()
    return cfg.fast_sampling, cfg.sampling_numpy_views


def fast_candidates(a: Args) -> tuple[Args, _fast.Candidates] | None:
    """The fast path's compact candidates (``_fast.candidates``), or None
    where the generic path runs (switched off, an unsupported library, ``min_tokens_to_keep >
    1``, ``+inf`` logits, a rule it does not cover (typical-p, top-nσ, top-H, XTC, dynamic
    temperature, explicit chains: ``_fast.supported``): those are decided in one place,
    ``_reference.keep_mask``)."""
    fast_ok, via_numpy = switches()
    if not fast_ok or not _fast.supported(a):
        return None
    return _fast.candidates(a, via_numpy)


def distribution(a: Args, log: bool) -> Any:
    """The warped distribution (B, V) in ``a``'s namespace (probabilities or log-probabilities)."""
    f = log_softmax if log else softmax
    fast = fast_candidates(a)
    c = a  # the arguments (and namespace) the computation runs in
    if fast is not None:
        c, (ci, _cx, Tf, keepc, nan_row) = fast
        keep = _fast.scatter_keep(c, ci, keepc)
        xf = c.x
    else:
        xf, Tf, keep, nan_row = _reference.warp_parts(a)
    r = f(xf, Tf, axis=-1, mask=keep)
    r = c.xp.where(nan_row, full(c.xp, r, math.nan, shape=()), r)
    return r if c is a else _backend.to_torch(r)
