"""Types of the public signatures.

``Array`` is any array-API array (NumPy, PyTorch, JAX, CuPy, Dask, array-api-strict): anything
with a ``shape``, a ``dtype`` and an ``ndim``.  ``ArrayLike`` adds what the functions read as
NumPy (Python numbers, nested lists and tuples, pandas objects and anything with ``__array__``).
A string is neither, so ``softmax(x, temperature="hot")`` is a type error.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = ["Array", "SupportsArray", "ArrayLike", "Temperature", "Namespace", "DType"]


@runtime_checkable
class Array(Protocol):
    """An array of any array-API library: ``shape``, ``dtype`` and ``ndim``."""

    @property
    def shape(self) -> tuple[Any, ...]: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def ndim(self) -> int: ...


@runtime_checkable
class SupportsArray(Protocol):
    """An object NumPy can convert (pandas ``DataFrame``/``Series``, ``__array__`` holders)."""

    def __array__(self) -> Any: ...


ArrayLike: TypeAlias = Array | SupportsArray | float | int | bool | list[Any] | tuple[Any, ...]
"""What a function reads as an array: an array, a Python number, a nested list or tuple."""

Temperature: TypeAlias = float | Array
"""A temperature: a Python (or NumPy) number, or an array of per-row temperatures."""

Namespace: TypeAlias = Any
"""An array-API namespace (``array_api_compat.numpy``, ``jax.numpy``...)."""

DType: TypeAlias = Any
"""A dtype of some namespace (``numpy.float32``, ``torch.float64``...)."""
