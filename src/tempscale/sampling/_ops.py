"""The few operations of the fast path that the Array API lacks, for NumPy and for PyTorch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _compat
from ._layout import Args


class Ops:
    """The interface: every method works row by row on (B, W) arrays."""

    @staticmethod
    def topk(z: Any, k: int) -> tuple[Any, Any]:
        """The ``k`` largest values per row, descending, and their positions."""
        raise NotImplementedError

    @classmethod
    def topk_superset(cls, z: Any, k: int) -> tuple[Any, Any] | None:
        """A compact set holding every token >= the k-th largest of its row, or None."""
        return None

    @staticmethod
    def argsort(i: Any) -> Any:
        """Ascending argsort of distinct values (an index permutation)."""
        raise NotImplementedError

    @staticmethod
    def argsort_values(v: Any) -> Any:
        """Ascending, stable (ties keep their order)."""
        raise NotImplementedError

    @staticmethod
    def scatter_bool(cols: Any, vals: Any, W: int) -> Any:
        """A (B, W) bool array, True at ``cols`` where ``vals``."""
        raise NotImplementedError

    @staticmethod
    def count(m: Any) -> Any:
        """The number of True entries per row, (B, 1)."""
        raise NotImplementedError

    @staticmethod
    def msum(e: Any, m: Any) -> Any:
        """The float64 row sums of ``e`` (finite) where ``m``, (B, 1)."""
        raise NotImplementedError

    @staticmethod
    def zero_outside(e: Any, m: Any) -> Any:
        """``e`` (finite) with zeros where not ``m``: ``where(m, e, 0)``, branch-free."""
        return e * m

    @staticmethod
    def sum64(v: Any) -> Any:
        """The row sums of ``v`` accumulated in float64, (B, 1)."""
        raise NotImplementedError

    @staticmethod
    def compact(z: Any, mask: Any) -> tuple[Any, Any]:
        """Per row the indices and values where ``mask``, in index order, padded with (0, -inf)."""
        raise NotImplementedError

    @staticmethod
    def cumsum64(v: Any) -> Any:
        """Row cumulative sums accumulated in float64."""
        raise NotImplementedError

    @staticmethod
    def f64(v: Any) -> Any:
        """``v`` as float64."""
        raise NotImplementedError

    @staticmethod
    def searchsorted(cdf: Any, t: Any) -> Any:
        """Row-wise right-sided search of ``t`` (B, n) in the nondecreasing rows of ``cdf`` (B, W)."""
        raise NotImplementedError


class NumpyOps(Ops):
    """NumPy (single-threaded; on CPU tensors through zero-copy views)."""

    @staticmethod
    def topk(z: Any, k: int) -> tuple[Any, Any]:
        V = z.shape[-1]
        idx = np.argpartition(z, V - k, axis=-1)[:, V - k:]
        vals = np.take_along_axis(z, idx, axis=-1)
        o = np.argsort(-vals, axis=-1, kind="stable")
        return np.take_along_axis(vals, o, axis=-1), np.take_along_axis(idx, o, axis=-1)

    @classmethod
    def topk_superset(cls, z: Any, k: int) -> tuple[Any, Any] | None:
        """A strided sample of each row gives a threshold whose count is checked exactly, so no
        partition of the whole vocabulary is needed: one comparison pass and one compaction.
        """
        V = z.shape[-1]
        stride = max(1, V // 2048)
        smp = z[:, ::stride]
        j = min(smp.shape[-1], 2 * (-(-k // stride)) + 8)
        if stride == 1 or j >= smp.shape[-1]:
            return None
        t = np.partition(smp, smp.shape[-1] - j, axis=-1)[:, smp.shape[-1] - j:smp.shape[-1] - j + 1]
        sel = z >= t
        cnt = np.count_nonzero(sel, axis=-1)
        if cnt.min() < k or cnt.max() > 64 * (k + 2 * stride):
            return None
        return cls.compact(z, sel)

    @staticmethod
    def argsort(i: Any) -> Any:
        return np.argsort(i, axis=-1)

    @staticmethod
    def argsort_values(v: Any) -> Any:
        return np.argsort(v, axis=-1, kind="stable")

    @staticmethod
    def scatter_bool(cols: Any, vals: Any, W: int) -> Any:
        out = np.zeros((cols.shape[0], W + 1), dtype=bool)
        np.put_along_axis(out, np.where(vals, cols, W), vals, axis=-1)
        return out[:, :W]

    @staticmethod
    def count(m: Any) -> Any:
        return np.count_nonzero(m, axis=-1, keepdims=True)

    @staticmethod
    def msum(e: Any, m: Any) -> Any:
        return np.sum(e * m, axis=-1, keepdims=True, dtype=np.float64)  # np.where is branchy

    @staticmethod
    def sum64(v: Any) -> Any:
        return np.sum(v, axis=-1, keepdims=True, dtype=np.float64)

    @staticmethod
    def compact(z: Any, mask: Any) -> tuple[Any, Any]:
        B, W = z.shape
        flat = np.flatnonzero(mask)  # row-major: rows in order, indices increasing in a row
        rows = flat // W
        counts = np.bincount(rows, minlength=B)
        width = max(int(counts.max()) if counts.size else 0, 1)
        at = np.arange(flat.size) - (np.cumsum(counts) - counts)[rows] + rows * width
        ci = np.zeros(B * width, dtype=np.int64)
        cz = np.full(B * width, -np.inf, dtype=z.dtype)
        ci[at] = flat - rows * W
        cz[at] = np.ravel(z)[flat]
        return ci.reshape(B, width), cz.reshape(B, width)

    @staticmethod
    def cumsum64(v: Any) -> Any:
        return np.cumsum(v, axis=-1, dtype=np.float64)

    @staticmethod
    def f64(v: Any) -> Any:
        return np.asarray(v, dtype=np.float64)

    @staticmethod
    def searchsorted(cdf: Any, t: Any) -> Any:
        B, W = cdf.shape
        off = np.arange(B, dtype=np.float64)[:, None] * 2.0  # rows lie in [0, 1]: shift apart
        pos = np.searchsorted((cdf + off).reshape(-1), (t + off).reshape(-1), side="right")
        return np.clip(pos.reshape(t.shape) - np.arange(B)[:, None] * W, 0, W)


class TorchOps(Ops):
    """PyTorch on any device (only torch operations: no host copies of the data)."""

    @staticmethod
    def topk(z: Any, k: int) -> tuple[Any, Any]:
        import torch

        r = torch.topk(z, k, dim=-1)
        return r.values, r.indices

    @staticmethod
    def argsort(i: Any) -> Any:
        import torch

        return torch.argsort(i, dim=-1)

    @staticmethod
    def argsort_values(v: Any) -> Any:
        import torch

        return torch.argsort(v, dim=-1, stable=True)

    @staticmethod
    def scatter_bool(cols: Any, vals: Any, W: int) -> Any:
        import torch

        out = torch.zeros((cols.shape[0], W + 1), dtype=torch.bool, device=cols.device)
        out.scatter_(1, torch.where(vals, cols, W), vals)
        return out[:, :W]

    @staticmethod
    def count(m: Any) -> Any:
        import torch

        return torch.count_nonzero(m, dim=-1)[:, None]

    @staticmethod
    def msum(e: Any, m: Any) -> Any:
        import torch

        return (e * m).sum(dim=-1, keepdim=True, dtype=torch.float64)

    @staticmethod
    def sum64(v: Any) -> Any:
        import torch

        return v.sum(dim=-1, keepdim=True, dtype=torch.float64)

    @staticmethod
    def compact(z: Any, mask: Any) -> tuple[Any, Any]:
        import torch

        B = z.shape[0]
        rows, cols = mask.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=B)
        width = max(int(counts.max()) if B else 0, 1)
        at = torch.arange(rows.shape[0], device=z.device) - (torch.cumsum(counts, 0) - counts)[rows]
        ci = torch.zeros((B, width), dtype=torch.int64, device=z.device)
        cz = torch.full((B, width), -math.inf, dtype=z.dtype, device=z.device)
        ci[rows, at] = cols
        cz[rows, at] = z[rows, cols]
        return ci, cz

    @staticmethod
    def cumsum64(v: Any) -> Any:
        import torch

        return torch.cumsum(v, dim=-1, dtype=torch.float64)

    @staticmethod
    def f64(v: Any) -> Any:
        import torch

        return v.to(torch.float64)

    @staticmethod
    def searchsorted(cdf: Any, t: Any) -> Any:
        import torch

        return torch.searchsorted(cdf.contiguous(), t.contiguous(), right=True)


def ops_for(a: Args) -> type[Ops] | None:
    """The operations of ``a``'s library, or None where the generic path must run."""
    if _compat.is_numpy_namespace(a.xp) and isinstance(a.x, np.ndarray):
        return NumpyOps
    if _compat.is_torch_namespace(a.xp):
        if a.x.requires_grad:
            return None
        return TorchOps
    return None
