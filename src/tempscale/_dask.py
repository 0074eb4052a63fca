"""Dask arrays: block-wise kernels, and a (max, sum) tree reduction over a chunked class axis.

``compute`` returns ``None`` for the cases it does not take; the generic path computes them.
"""

from __future__ import annotations

from typing import Any

from ._typing import DType, Namespace


def compute(kind: str, xp: Namespace, x: Any, T: Any, ax: int, mask: Any, out: DType) -> Any:
    """``kind`` of the Dask array ``x``, or ``None`` when the generic path should compute it."""
    return None
