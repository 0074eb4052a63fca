"""Backend detection and array-namespace helpers.

This is the ONLY module that imports :mod:`array_api_compat` or inspects which array library
an array belongs to.  Nothing here imports torch, jax or dask: a backend is touched only when
the user hands us one of its arrays.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import array_api_compat
import array_api_compat.numpy  # noqa: F401  (a submodule: not loaded by ``import array_api_compat``)
import numpy as np

from ._typing import DType, Namespace

_P = ParamSpec("_P")
_R = TypeVar("_R")

__all__ = [
    "array_namespace",
    "as_array",
    "as_numpy_input",
    "device",
    "default_float_dtype",
    "is_concrete",
    "is_jax_namespace",
    "is_numpy_namespace",
    "is_torch_namespace",
    "is_dask_namespace",
    "is_array_api_strict_namespace",
    "is_python_scalar",
    "float_bits",
    "quiet",
]


def is_python_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def array_namespace(*arrays: Any) -> Namespace:
    """The array-API namespace of ``arrays`` (Python scalars and ``None`` are ignored).

    Lists, tuples, NumPy scalars and array-likes that are not array-API arrays (pandas
    ``DataFrame``/``Series``, anything with ``__array__``) resolve to NumPy, so
    ``softmax([1, 2, 3])`` and ``softmax(df)`` work.
    """
    arrs: list[Any] = [as_numpy_input(a) for a in arrays if a is not None and not is_python_scalar(a)]
    if not arrs:
        return array_api_compat.numpy
    return array_api_compat.array_namespace(*arrs)


def _is_array_like(x: Any) -> bool:
    """Whether ``x`` is read as NumPy: a list/tuple, a NumPy scalar, or a non-array-API array-like."""
    if isinstance(x, (list, tuple, np.generic)):
        return True
    if isinstance(x, np.ndarray) or array_api_compat.is_array_api_obj(x):
        return False
    return (hasattr(x, "__array__") or hasattr(x, "__array_interface__")
            or hasattr(x, "__array_struct__"))


def as_numpy_input(x: Any, param: str = "x") -> Any:
    """``x`` as a NumPy array when it is read as NumPy (see :func:`_is_array_like`), else ``x``.

    Object arrays are refused with a TypeError naming the public function that was called.
    """
    if not _is_array_like(x):
        return x
    arr = np.asarray(x)
    if arr.dtype == object:
        what = type(x).__name__
        from ._validation import param_error

        raise param_error(param, _public_caller(),
                          "an array of numbers (an object array cannot be computed with; convert "
                          "it to a numeric dtype first, e.g. with .astype(float))",
                          f"a {what} of dtype object", TypeError)
    return arr


def _public_caller() -> str:
    """The outermost public tempscale function on the call stack (for error messages)."""
    name = "tempscale"
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        mod = frame.f_globals.get("__name__", "")
        if not mod.startswith("tempscale"):
            if name != "tempscale":
                break
        else:
            code = frame.f_code.co_name
            if not code.startswith("_") and code not in ("wrapper", "<module>"):
                name = code
        frame = frame.f_back
    return name


def as_array(x: Any, xp: Namespace, *, like: Any = None, dtype: DType | None = None,
             param: str = "x") -> Any:
    """``x`` as an array of namespace ``xp`` (on ``like``'s device when given); no copy if it is one.

    ``param`` names the argument in the error raised for an object array.
    """
    x = as_numpy_input(x, param)
    dev = device(like) if like is not None else None
    if array_api_compat.is_array_api_obj(x) and array_namespace(x) is xp:
        if dtype is not None and x.dtype != dtype:
            x = xp.astype(x, dtype)
        if dev is not None and device(x) != dev:
            x = array_api_compat.to_device(x, dev)
        return x
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if dev is not None:
        kwargs["device"] = dev
    if isinstance(x, np.ndarray) and array_api_compat.is_array_api_strict_namespace(xp):
        x = x.tolist() if x.ndim else x.item()
    return xp.asarray(x, **kwargs)


def device(x: Any) -> Any:
    """The device ``x`` lives on (``"cpu"`` for NumPy)."""
    return array_api_compat.device(x)


def is_numpy_namespace(xp: Namespace) -> bool:
    return bool(array_api_compat.is_numpy_namespace(xp))


def is_torch_namespace(xp: Namespace) -> bool:
    return bool(array_api_compat.is_torch_namespace(xp))


def is_jax_namespace(xp: Namespace) -> bool:
    return bool(array_api_compat.is_jax_namespace(xp))


def is_dask_namespace(xp: Namespace) -> bool:
    return bool(array_api_compat.is_dask_namespace(xp))


def is_array_api_strict_namespace(xp: Namespace) -> bool:
    return bool(array_api_compat.is_array_api_strict_namespace(xp))


def default_float_dtype(xp: Namespace, dev: Any = None) -> DType:
    """The namespace's default real floating dtype (float64 for NumPy, float32 for torch/JAX)."""
    if is_torch_namespace(xp):
        import torch

        return torch.get_default_dtype()
    try:
        info = xp.__array_namespace_info__()
        return info.default_dtypes(device=dev)["real floating"]
    except Exception:  # pragma: no cover - namespaces without the inspection API
        return xp.asarray(0.0).dtype


def float_bits(xp: Namespace, dtype: DType) -> int:
    """The number of bits of a floating dtype (16, 32, 64)."""
    return int(xp.finfo(dtype).bits)


def is_concrete(x: Any) -> bool:
    """Whether ``x`` holds values we may inspect eagerly (not a JAX tracer, not lazy Dask)."""
    if is_python_scalar(x) or isinstance(x, (np.ndarray, np.generic)):
        return True
    if "jax" in sys.modules:
        import jax

        if isinstance(x, jax.core.Tracer):
            return False
    if "dask" in sys.modules and type(x).__module__.startswith("dask"):
        return False
    if "torch" in sys.modules:
        import torch

        if isinstance(x, torch.Tensor):
            # meta / fake tensors (torch.compile tracing) carry no values
            return bool(x.device.type != "meta") and not _is_torch_fake(x)
    return True


def _is_torch_fake(x: Any) -> bool:
    try:
        from torch._subclasses.fake_tensor import FakeTensor

        return bool(isinstance(x, FakeTensor))
    except Exception:  # pragma: no cover
        return False


def quiet(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``func`` with NumPy's floating-point warnings off (its signature kept visible).

    The contract relies on IEEE overflow to ``-inf`` and on ``exp(-inf) = 0``; NumPy-backed
    namespaces would warn about both.
    """

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        torch = sys.modules.get("torch")
        if torch is not None and args and isinstance(args[0], torch.Tensor):
            # torch computes without NumPy's flags (and np.errstate would stop torch.compile)
            return func(*args, **kwargs)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            return func(*args, **kwargs)

    return wrapper
