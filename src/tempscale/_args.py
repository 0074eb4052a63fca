"""The argument layer: the one place where the library's argument rules are written.

Every public module calls these helpers for temperatures (scalars, lists of scalars, per-row
arrays), other per-row parameters, entry masks (``mask``) and row masks (``where``), class
labels, the dtype policy, conversion to NumPy, the binary one-column expansion, the
logits-or-probabilities switch and deprecated keyword spellings.  Errors are built with
:func:`tempscale._validation.param_error`, the library's one message template: "The
'temperature' parameter of softmax must be a float in [0, inf]. Got -1.0 instead."

Conventions
-----------
* ``func`` is the public function named in messages; ``param`` the argument's public name.
* "keepdims form": a per-row array with ``x``'s number of dimensions and size 1 at ``axis``.
* Values are checked eagerly only where they are concrete (not JAX tracers, not lazy Dask,
  not torch meta/fake tensors); shapes and dtypes are always checked.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, cast

import numpy as np

from . import _compat
from ._compat import array_namespace, is_concrete, is_python_scalar
from ._typing import Array, DType, Namespace
from ._validation import check_axis, check_choice, check_scalar, param_error

__all__ = [
    "to_numpy", "coerce", "check_temperature", "check_temperatures", "row_temperature",
    "row_param", "entry_mask", "row_where", "labels", "float_dtypes", "work_dtype",
    "has_float64", "binary_columns", "looks_like_probabilities", "check_input",
    "deprecated_alias", "INPUTS", "PROB_TOL",
]

INPUTS = ("logits", "probabilities")
"""The values of the logits-or-probabilities switch ``input=``."""

#: how far from 1 a row sum may be, per column, for the row to count as probabilities (values
#: rounded to 3 decimals, as in a CSV, are off by at most 5e-4 each)
PROB_TOL = 5e-4


# ============================================================================================
# conversion
# ============================================================================================
def to_numpy(x: Any) -> np.ndarray[Any, Any]:
    """A concrete array of any backend as a NumPy array (a copy off the CPU; computes Dask).

    torch tensors are detached (bfloat16 becomes float32, which NumPy lacks); CuPy arrays are
    copied to the host; lists, tuples and scalars go through :func:`numpy.asarray`.
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, np.generic, int, float, bool)):
        return np.asarray(x)
    mod = type(x).__module__
    if mod.startswith("dask"):
        return np.asarray(x.compute())
    if mod.startswith("cupy"):
        return np.asarray(x.get())
    if mod.startswith("torch"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return np.asarray(x.numpy())
    if mod.startswith("array_api_strict"):
        return np.from_dlpack(x)
    return np.asarray(x)


def coerce(x: Any) -> Any:
    """``x`` itself if it is an array of a supported library (or None, or a Python number),
    else NumPy's view of it: pandas objects, lists, tuples, NumPy scalars and anything with
    ``__array__`` are read as NumPy arrays (a read-only view, as pandas hands out, is copied so
    that torch can wrap it without a warning).
    """
    if x is None or isinstance(x, np.ndarray) or is_python_scalar(x):
        return x
    if isinstance(x, (list, tuple, np.generic)):
        return np.asarray(x)
    try:
        xp = array_namespace(x)
    except TypeError:
        if not hasattr(x, "__array__"):
            raise
        xp = None
    if xp is not None and not _compat.is_numpy_namespace(xp):
        return x
    a = np.asarray(x)
    return a if a.flags.writeable else a.copy()


def _as_input(value: Any, xp: Namespace, like: Any, param: str) -> Any:
    """An argument as an array of ``xp`` on ``like``'s device (``like`` may be None).

    Lists, pandas objects and ``__array__`` holders are read as NumPy first (an object array is
    a TypeError naming ``param``); a read-only NumPy view is copied so torch wraps it silently.
    """
    v = _compat.as_numpy_input(value, param)
    if isinstance(v, np.ndarray) and not v.flags.writeable and not _compat.is_numpy_namespace(xp):
        v = v.copy()
    return _compat.as_array(v, xp, like=like, param=param)


# ============================================================================================
# temperatures
# ============================================================================================
def _interval(edges: bool) -> str:
    return "[0, inf]" if edges else "(0, inf)"


def _scalar_value(value: Any) -> Any:
    """A NumPy scalar or 0-d NumPy array as the Python number it holds; anything else as is."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def check_temperature(value: Any, func: str, *, param: str = "temperature", edges: bool = True,
                      expect: str | None = None) -> float:
    """A scalar temperature (Python or NumPy number) as a float in ``[0, inf]``.

    ``edges=False`` excludes ``0`` and ``inf``: ``(0, inf)``.  A bool, a string or another
    non-real is a TypeError; NaN or a value outside the interval a ValueError.  An int beyond
    the float range is the ``inf`` limit.  ``expect`` overrides the message's "must be ..." part.
    """
    if expect is None:
        expect = f"a float in {_interval(edges)}"
    v = _scalar_value(value)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise param_error(param, func, expect, value, TypeError)
    try:
        t = float(v)
    except OverflowError:  # an int beyond the float range: the T = inf limit
        t = math.inf if cast(int, v) > 0 else -math.inf
    if math.isnan(t) or t < 0 or (not edges and (t == 0 or math.isinf(t))):
        raise param_error(param, func, expect, value)
    return t


def check_temperatures(values: Any, func: str, *, param: str = "temperatures",
                       limit: int | None = None) -> tuple[float, ...]:
    """A non-empty sequence of temperatures in ``[0, inf]`` (or one scalar) as a tuple of floats.

    ``limit`` caps how many may be given (a ValueError beyond it).
    """
    expect = "a non-empty sequence of floats in [0, inf]"
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, (str, bytes, bool)):
        raise param_error(param, func, expect, values, TypeError)
    try:
        arr = to_numpy(values) if not isinstance(values, (list, tuple)) else np.asarray(values)
        if arr.dtype.kind not in "fiu":  # bools, strings, objects: not temperatures
            raise TypeError
        ts = tuple(float(t) for t in np.asarray(arr, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise param_error(param, func, expect, values, TypeError) from None
    if not ts or any(math.isnan(t) or t < 0 for t in ts):
        raise param_error(param, func, expect, values)
    if limit is not None and len(ts) > limit:
        raise param_error(param, func, f"at most {limit} temperatures", f"{len(ts)} temperatures")
    return ts


def _keepdims_shape(shape: Sequence[Any], ax: int) -> tuple[Any, ...]:
    return tuple(1 if i == ax else n for i, n in enumerate(shape))


def _fits(src: Sequence[Any], dst: Sequence[Any]) -> bool:
    """Same rank, and every size of ``src`` is 1 or ``dst``'s (unknown lazy sizes pass)."""
    if len(src) != len(dst):
        return False
    return all(s == 1 or s == d or not isinstance(s, int) or not isinstance(d, int)
               for s, d in zip(src, dst, strict=True))


def _known(shape: Sequence[Any]) -> bool:
    return all(isinstance(n, int) for n in shape)


def _first_bad(values: Any, bad: Any) -> Any:
    """The first entry of ``values`` where ``bad`` holds, as a Python number (for messages)."""
    v = to_numpy(values).reshape(-1)
    b = np.broadcast_to(to_numpy(bad), to_numpy(bad).shape).reshape(-1)
    return v[b][0].item()


def _per_row(value: Any, func: str, *, param: str, like: Any, ax: int, flat: bool,
             expect: str, xp: Namespace) -> Any:
    """``value`` (an array) in keepdims form against ``like``: shape checks only."""
    shape = tuple(like.shape)
    kshape = _keepdims_shape(shape, ax)
    bshape = kshape[:ax] + kshape[ax + 1:]
    arr = value
    if arr.ndim == 0:
        arr = xp.reshape(arr, (1,) * len(shape))
    elif flat:
        if math.prod(arr.shape) != 1:
            raise param_error(param, func, "a scalar when axis=None", f"shape {tuple(arr.shape)}")
        arr = xp.reshape(arr, (1,) * len(shape))
    elif arr.ndim == len(shape) - 1 and _fits(arr.shape, bshape):
        arr = xp.expand_dims(arr, axis=ax)
    elif not (arr.ndim == len(shape) and _fits(arr.shape, kshape)):
        raise param_error(param, func, f"{expect} of shape {bshape} or {kshape}",
                          f"an array of shape {tuple(arr.shape)}")
    if tuple(arr.shape) != kshape and _known(kshape):
        arr = xp.broadcast_to(arr, kshape)
    return arr


def row_temperature(value: Any, func: str, *, like: Any, axis: int | None,
                    param: str = "temperature", edges: bool = True, dtype: DType | None = None,
                    flat: bool = False) -> float | Array:
    """A temperature as a Python float, or per-row temperatures in keepdims form.

    Parameters
    ----------
    value
        A Python number, or an array (any library; NumPy scalars and lists are arrays here)
        of the batch shape (``like.shape`` without ``axis``), of the keepdims shape, or
        broadcastable to one of them (same rank), or 0-d.
    like
        The logits: the array takes its namespace and device.
    axis
        The class axis of ``like`` (normalised here).  ``flat=True`` (the caller flattened
        ``like`` for ``axis=None``): the array must hold a single value.
    edges
        Whether ``0`` and ``inf`` are allowed (``[0, inf]``), else ``(0, inf)``.
    dtype
        The dtype the caller computes in.  The array is never narrowed: it gets the wider of
        its own floating dtype and ``dtype`` (integers become float64 where the device has it,
        else ``dtype``).  The caller widens its computation to the result's dtype.

    Values are checked where concrete (NaN, negative, and for ``edges=False`` 0 and inf).
    """
    expect = f"a float in {_interval(edges)} or an array of per-row temperatures"
    if is_python_scalar(value):
        return check_temperature(value, func, param=param, edges=edges, expect=expect)
    xp = array_namespace(like)
    if isinstance(value, (str, bytes)):
        raise param_error(param, func, expect, value, TypeError)
    T = _as_input(value, xp, like, param)
    if not xp.isdtype(T.dtype, ("real floating", "integral")):
        raise param_error(param, func, expect, f"an array of dtype {T.dtype}", TypeError)
    target = _wide_dtype(xp, like, T.dtype, dtype)
    if T.dtype != target:
        T = xp.astype(T, target)
    ax = 0 if like.ndim == 0 else check_axis(axis if axis is not None else -1, like.ndim, func)
    T = _per_row(T, func, param=param, like=like, ax=ax, flat=flat, expect=expect, xp=xp)
    if is_concrete(T) and math.prod(T.shape):
        bad = xp.logical_or(xp.isnan(T), T < 0)
        if not edges:
            bad = xp.logical_or(bad, xp.logical_or(T == 0, xp.isinf(T)))
        if bool(xp.any(bad)):
            raise param_error(param, func, expect, float(_first_bad(T, bad)))
    result: Array = T
    return result


def _wide_dtype(xp: Namespace, like: Any, own: DType, dtype: DType | None) -> DType:
    """The wider of ``own`` (a floating or integer dtype) and ``dtype``."""
    if xp.isdtype(own, "integral"):
        if has_float64(xp, like):
            return xp.float64
        return dtype if dtype is not None else _compat.default_float_dtype(xp, _compat.device(like))
    if dtype is None or _compat.float_bits(xp, own) >= _compat.float_bits(xp, dtype):
        return own
    return dtype


def row_param(value: Any, func: str, *, param: str, like: Any, axis: int, lo: float, hi: float,
              lo_open: bool = False, integer: bool = False, dtype: DType | None = None,
              expect: str | None = None) -> None | float | int | Array:
    """Any per-row parameter (``top_k``, ``top_p``, ``min_p``, ``alpha``...): ``None``, a
    Python number checked to lie in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``; an int with
    ``integer``), or an array in keepdims form (see :func:`row_temperature`).

    A float array is converted to ``dtype`` (default: ``like``'s floating dtype, else the
    default float); an integer parameter must be an integer array and keeps its dtype.
    Values are checked where concrete.
    """
    if value is None:
        return None
    kind = "an int" if integer else "a float"
    lb = "(" if lo_open else "["
    if expect is None:
        expect = f"{kind} in {lb}{_fmt(lo)}, {_fmt(hi)}] or an array of per-row values"
    if isinstance(value, numbers.Real) and not isinstance(value, np.ndarray):
        v = _scalar_value(value)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise param_error(param, func, expect, value, TypeError)
        if integer:
            return check_scalar(v, param, func, lo=lo, hi=hi, lo_open=lo_open, integer=True)
        return check_scalar(v, param, func, lo=lo, hi=hi, lo_open=lo_open)
    if isinstance(value, (str, bytes)):
        raise param_error(param, func, expect, value, TypeError)
    xp = array_namespace(like)
    arr = _as_input(value, xp, like, param)
    kinds = "integral" if integer else ("real floating", "integral")
    if not xp.isdtype(arr.dtype, kinds):
        raise param_error(param, func, expect, f"an array of dtype {arr.dtype}", TypeError)
    if not integer:
        target = dtype
        if target is None:
            target = like.dtype if xp.isdtype(like.dtype, "real floating") else \
                _compat.default_float_dtype(xp, _compat.device(like))
        if arr.dtype != target:
            arr = xp.astype(arr, target)
    ax = 0 if like.ndim == 0 else check_axis(axis, like.ndim, func)
    arr = _per_row(arr, func, param=param, like=like, ax=ax, flat=False, expect=expect, xp=xp)
    if is_concrete(arr) and math.prod(arr.shape):
        if integer:
            bad = xp.logical_or(arr < lo, arr > hi) if hi < math.inf else arr < lo
            if lo_open:
                bad = xp.logical_or(bad, arr == lo)
        else:
            bad = xp.logical_or(xp.isnan(arr), xp.logical_or(arr < lo, arr > hi))
            if lo_open:
                bad = xp.logical_or(bad, arr == lo)
        if bool(xp.any(bad)):
            raise param_error(param, func, expect, _first_bad(arr, bad))
    result: Array = arr
    return result


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(int(v)) if float(v).is_integer() else repr(v)


# ============================================================================================
# masks and labels
# ============================================================================================
def _broadcasts_to(src: Sequence[Any], dst: Sequence[Any]) -> bool:
    """``broadcast_to`` semantics: ``src`` broadcasts to ``dst`` without enlarging it."""
    src, dst = tuple(src), tuple(dst)
    if len(src) > len(dst):
        return False
    for s, d in zip(src[::-1], dst[::-1], strict=False):
        if not (isinstance(s, int) and isinstance(d, int)):
            continue  # unknown (lazy) sizes: the backend checks them
        if s != 1 and s != d:
            return False
    return True


def _bool_mask(mask: Any, shape: tuple[Any, ...], func: str, *, param: str, like: Any,
               expect: str, where: str) -> Any:
    """A bool (or 0/1 integer) array broadcast to ``shape`` on ``like``'s namespace."""
    xp = array_namespace(like)
    m = _as_input(mask, xp, like, param)
    if m.dtype != xp.bool:
        if not xp.isdtype(m.dtype, "integral"):
            raise param_error(param, func, expect, f"dtype {m.dtype}", TypeError)
        if is_concrete(m) and math.prod(m.shape):
            bad = xp.logical_and(m != 0, m != 1)
            if bool(xp.any(bad)):
                raise param_error(param, func, expect, _first_bad(m, bad))
        m = m != 0
    if not _broadcasts_to(m.shape, shape):
        raise param_error(param, func, f"broadcastable to {where} {tuple(shape)}",
                          f"shape {tuple(m.shape)}")
    if tuple(m.shape) != tuple(shape) and _known(shape):
        m = xp.broadcast_to(m, tuple(shape))
    return m


def entry_mask(mask: Any, x: Any, func: str, *, param: str = "mask") -> Array | None:
    """An entry mask (``True`` = keep): ``None``, or a bool array broadcast to ``x.shape``.

    Bools, or integers holding only 0 and 1, broadcastable to ``x``'s shape without enlarging
    it; the result is on ``x``'s namespace and device.
    """
    if mask is None:
        return None
    expect = "a boolean array (True = keep) or an array of 0/1 integers"
    m: Array = _bool_mask(mask, tuple(x.shape), func, param=param, like=x, expect=expect,
                          where="the input's shape")
    return m


def row_where(where: Any, func: str, *, like: Any, batch_shape: Sequence[Any],
              param: str = "where") -> Array | None:
    """A row mask (``True`` = keep the row): ``None``, or a bool array of ``batch_shape``.

    The same rules as :func:`entry_mask`, against the batch shape (the logits' shape without
    the class axis).
    """
    if where is None:
        return None
    expect = "a boolean array of rows (True = keep) or an array of 0/1 integers"
    m: Array = _bool_mask(where, tuple(batch_shape), func, param=param, like=like, expect=expect,
                          where="the row shape")
    return m


def labels(labels: Any, func: str, *, like: Any, n_classes: int,
           batch_shape: Sequence[Any] | None = None, ignore_index: int | None = None,
           param: str = "labels", range_error: type[Exception] = IndexError) -> Array:
    """Class indices as an integer array on ``like``'s namespace (NumPy when ``like`` is None).

    Bools are read as 0/1 and floats holding whole numbers as integers (a non-integral or
    non-finite float is a TypeError naming the value).  ``batch_shape``: the required shape
    (``batch_shape + (1,)`` is accepted and squeezed).  Where concrete, every label other than
    ``ignore_index`` must lie in ``[0, n_classes)``: else ``range_error`` (IndexError) naming the
    value received (in its own dtype: ``1e+300``, not what a cast would make of it).
    """
    if like is None:
        labels = _compat.as_numpy_input(labels, param)
    xp = array_namespace(like if like is not None else labels)
    y = _as_input(labels, xp, like, param)
    if batch_shape is not None:
        bshape = tuple(batch_shape)
        if tuple(y.shape) == bshape + (1,):
            y = xp.reshape(y, bshape)
        if tuple(y.shape) != bshape:
            raise param_error(param, func, f"an array of shape {bshape} (one label per row)",
                              f"shape {tuple(y.shape)}")
    concrete = is_concrete(y) and math.prod(y.shape) > 0
    if y.dtype == xp.bool:
        y = xp.astype(y, xp.int64)
    elif xp.isdtype(y.dtype, "real floating"):
        if concrete:
            yn = to_numpy(y)
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(yn) | (yn != np.round(yn))
            if np.any(bad):
                raise param_error(param, func, "integer class indices (whole numbers)",
                                  float(yn[bad][0]), TypeError)
    elif not xp.isdtype(y.dtype, "integral"):
        raise param_error(param, func, "an array of integer class indices", f"dtype {y.dtype}",
                          TypeError)
    if concrete:
        out = xp.logical_or(y < 0, y >= n_classes)
        if ignore_index is not None:
            out = xp.logical_and(out, y != ignore_index)
        if bool(xp.any(out)):
            expect = f"class indices in [0, {n_classes - 1}]"
            if ignore_index is not None:
                expect += f" or ignore_index={ignore_index}"
            raise param_error(param, func, expect, _first_bad(y, out), range_error)
    if not xp.isdtype(y.dtype, "integral"):
        y = xp.astype(y, xp.int64)
    result: Array = y
    return result


# ============================================================================================
# dtype policy
# ============================================================================================
def float_dtypes(xp: Namespace, x: Any, dtype: DType | None, func: str) -> tuple[DType, DType]:
    """(compute dtype, output dtype) for the array ``x`` and the user's ``dtype=``.

    The output is ``dtype``, else ``x``'s floating dtype, else (integers, bools) the namespace's
    default float; the computation runs in float32 for 16-bit floats, else in the output dtype.
    """
    dev = _compat.device(x)
    if dtype is not None:
        try:
            ok = xp.isdtype(dtype, "real floating")
        except Exception:
            ok = False
        if not ok:
            raise param_error("dtype", func, "a real floating dtype or None", dtype, TypeError)
        out = dtype
    elif xp.isdtype(x.dtype, "real floating"):
        out = x.dtype
    elif xp.isdtype(x.dtype, ("integral", "bool")):
        out = _compat.default_float_dtype(xp, dev)
    else:
        raise param_error("x", func, "an array of real numbers", f"dtype {x.dtype}", TypeError)
    compute = xp.float32 if _compat.float_bits(xp, out) < 32 else out
    return compute, out


def has_float64(xp: Namespace, x: Any) -> bool:
    """Whether float64 arrays work on ``x``'s device (not on Apple's MPS, nor JAX without x64)."""
    try:
        if _compat.is_torch_namespace(xp):
            return bool(x.device.type != "mps")
        if _compat.is_jax_namespace(xp):
            import jax

            return bool(jax.config.values["jax_enable_x64"])
        probe = xp.zeros((1,), dtype=xp.float64, device=_compat.device(x))
        return bool((probe + probe).dtype == xp.float64)
    except Exception:  # exotic namespaces and devices
        return False


def work_dtype(xp: Namespace, x: Any) -> DType:
    """The dtype of iterative and accumulating work (solvers, metrics): float64 where ``x``'s
    device offers it, else float32 (never below float32)."""
    return xp.float64 if has_float64(xp, x) else xp.float32


# ============================================================================================
# binary problems, the logits-or-probabilities switch
# ============================================================================================
def binary_columns(z: Any, *, like: Any = None, input: str = "logits") -> Any:
    """One column (shape ``(n,)`` or ``(n, 1)``) as two: ``[0, z]`` for logits, ``[1 - p, p]``
    for probabilities; anything else unchanged.  ``like`` (optional): the namespace and device
    to put the result on."""
    z = coerce(z)
    xp = array_namespace(z if like is None else like)
    shape = tuple(getattr(z, "shape", np.shape(z)))
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        return z if like is None else _compat.as_array(z, xp, like=like)
    a = _compat.as_array(z, xp, like=like)
    col = xp.reshape(a, (-1, 1))
    first = xp.zeros_like(col) if input == "logits" else 1 - col
    return xp.concat([first, col], axis=1)


def looks_like_probabilities(a: Any) -> bool:
    """Whether every row of a 2-D float array lies in [0, 1] and sums to 1 (within rounding),
    with more than one column.  Cheap: on NumPy a sample of rows is looked at first, the whole
    array only if the sample passes.  Traced or lazy arrays: False."""
    if not is_concrete(a) or type(a).__module__.startswith("dask"):
        return False
    if isinstance(a, (np.ndarray, list, tuple)):
        p = np.asarray(a)
        if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] == 0 or p.dtype.kind != "f":
            return False
        n = p.shape[0]
        parts = [p[:: max(1, n // 256)]] if n > 512 else []
        parts.append(p)
        tol = PROB_TOL * (p.shape[1] + 1)
        with np.errstate(invalid="ignore"):
            for q in parts:
                if not (np.all(q >= 0) and np.all(q <= 1)):
                    return False
                if not np.all(np.abs(q.sum(axis=1, dtype=np.float64) - 1.0) <= tol):
                    return False
        return True
    xp = array_namespace(a)
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] == 0 or not xp.isdtype(a.dtype, "real floating"):
        return False
    tol = PROB_TOL * (a.shape[1] + 1)
    ok = xp.logical_and(xp.all(a >= 0), xp.all(a <= 1))
    ok = xp.logical_and(ok, xp.all(xp.abs(xp.sum(a, axis=1) - 1.0) <= tol))
    return bool(to_numpy(ok))


def check_input(input: Any, func: str) -> str:
    """The logits-or-probabilities switch: ``"logits"`` or ``"probabilities"``."""
    value: str = check_choice(input, INPUTS, "input", func)
    return value


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def deprecated_alias(kwargs: dict[str, Any], old: str, new: str, func: str, *,
                     convert: Callable[[Any], Any] | None = None,
                     since: str | None = None) -> dict[str, Any]:
    """Map the deprecated keyword ``old`` of ``func`` to ``new`` in ``kwargs`` (in place).

    When ``old`` is present it is removed and its value (through ``convert`` if given: e.g.
    ``from_logits=True`` -> ``input="logits"``) stored under ``new``, with a DeprecationWarning
    naming both, pointed at the caller's line.  Giving both is a TypeError.  An absent ``old``
    leaves ``kwargs`` as it is.  Returns ``kwargs``.
    """
    if old not in kwargs:
        return kwargs
    value = kwargs.pop(old)
    if kwargs.get(new) is not None:
        raise TypeError(f"{func}() got both {old!r} (deprecated) and {new!r}; pass only {new!r}")
    new_value = convert(value) if convert is not None else value
    when = f" since tempscale {since}" if since else ""
    shown = f"{new}={new_value!r}" if convert is not None else f"{new}="
    warnings.warn(f"{func}: the {old!r} keyword is deprecated{when} and will be removed in a "
                  f"future release; use {shown} instead", DeprecationWarning,
                  stacklevel=_user_stacklevel())
    kwargs[new] = new_value
    return kwargs
