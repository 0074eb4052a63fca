"""The counter-based generator of ``generator="hash"``: uniforms from a hash of
``(seed, row id, stream, counter)``, the same whatever the batch, the library or the thread count.

Each uniform is SplitMix64's output function (Steele, Lea & Flood 2014; the finaliser of
``java.util.SplittableRandom``) chained over the seed, the row id and the counter, in 64-bit
unsigned NumPy arithmetic, and its top 53 bits scaled to ``[0, 1)``.  The numbers are computed
on the host with NumPy for every array library and then moved to the array's library and
device, so NumPy, PyTorch (CPU or GPU) and JAX read exactly the same uniforms.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _compat
from .._validation import param_error

#: the golden-ratio increment of SplitMix64
GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1

#: streams: the draws with replacement, the XTC coins, the Gumbel noise without replacement
TOKENS, XTC, GUMBEL = 0, 1, 2


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    out: np.ndarray = z ^ (z >> np.uint64(31))
    return out


def _seed_key(seed: int) -> np.ndarray:
    """The seed folded 64 bits at a time into one uint64 key (0-d array)."""
    s = int(seed)
    k = np.zeros((), dtype=np.uint64)
    while True:
        k = _mix(k ^ np.uint64(s & _MASK) + np.uint64(GAMMA))
        s >>= 64
        if s == 0:
            return k


def bits(seed: int, rows: np.ndarray, stream: int, n: int) -> np.ndarray:
    """(B, n) uint64 hashes of ``(seed, rows[b], stream, j)`` for ``j < n``."""
    with np.errstate(over="ignore"):
        k = _mix(_seed_key(seed) + np.uint64((stream + 1) * GAMMA & _MASK))
        r = _mix(k ^ (rows.astype(np.uint64) * np.uint64(GAMMA)))
        j = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GAMMA)
        out: np.ndarray = _mix(r[:, None] + j[None, :])
        return out


def uniforms(seed: int, rows: np.ndarray, stream: int, n: int, open_: bool = False) -> np.ndarray:
    """(B, n) float64 uniforms in ``[0, 1)`` (``(0, 1)`` with ``open_``): the top 53 bits."""
    h = bits(seed, rows, stream, n) >> np.uint64(11)
    u = h.astype(np.float64)
    if open_:
        u = u + 0.5
    out: np.ndarray = u * 2.0 ** -53
    return out


def to_namespace(u: np.ndarray, xp: Any, like: Any, dtype: Any) -> Any:
    """``u`` on ``like``'s library and device in ``dtype`` (float32 where JAX runs without x64)."""
    if _compat.is_torch_namespace(xp):
        import torch

        return torch.from_numpy(u).to(device=like.device, dtype=dtype)
    if not _compat.is_numpy_namespace(xp):
        return xp.astype(xp.asarray(u), dtype) if dtype != xp.float64 else xp.asarray(u)
    return u


def row_keys(row_ids: Any, batch_shape: tuple[int, ...], func: str) -> np.ndarray:
    """The rows' keys as a flat int64 NumPy array: ``row_ids`` (batch shape, integers, on the
    host) or the row indices ``0 .. B - 1``."""
    B = int(np.prod(batch_shape)) if batch_shape else 1
    if row_ids is None:
        return np.arange(B, dtype=np.int64)
    expect = f"an array of integer row keys of the batch shape {batch_shape}"
    if isinstance(row_ids, numbers.Integral) and not isinstance(row_ids, bool) and B == 1:
        return np.asarray([int(row_ids)], dtype=np.int64)
    if isinstance(row_ids, (str, bytes, bool, float)):
        raise param_error("row_ids", func, expect, row_ids, TypeError)
    try:
        if hasattr(row_ids, "detach"):
            arr = row_ids.detach().cpu().numpy()
        else:
            arr = np.asarray(row_ids)
    except Exception as err:  # a traced JAX value, for example
        raise param_error("row_ids", func, expect + " with concrete values (not traced)",
                          type(row_ids).__name__, TypeError) from err
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise param_error("row_ids", func, expect, f"an array of dtype {arr.dtype}", TypeError)
    if tuple(arr.shape) not in (tuple(batch_shape), (B,)):
        raise param_error("row_ids", func, expect, f"an array of shape {tuple(arr.shape)}")
    flat: np.ndarray = arr.reshape(B).astype(np.int64)
    return flat
