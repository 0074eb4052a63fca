"""Small argument checks and the one error-message template of the library.

Messages read: "The 'temperature' parameter of softmax must be a float in [0, inf]. Got -1.0
instead." Build ``msg``, then raise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, Literal, TypeVar, cast, overload

_C = TypeVar("_C")

__all__ = ["param_error", "check_axis", "check_choice", "check_scalar", "check_bool"]


def param_error(param: str, func: str, expect: str, got: Any,
                exc: type[Exception] = ValueError) -> Exception:
    """The library's error: names the parameter, the function, what it takes and what it got."""
    msg = f"The {param!r} parameter of {func} must be {expect}. Got {got!r} instead."
    error: Exception = exc(msg)
    return error


def check_axis(axis: Any, ndim: int, func: str) -> int:
    """Normalise ``axis`` for an array of ``ndim`` dimensions, with NumPy's error text."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise param_error("axis", func, "an int", axis, TypeError)
    axis = int(axis)
    if not -ndim <= axis < ndim:
        # the same text as numpy.exceptions.AxisError (an IndexError and a ValueError)
        from numpy.exceptions import AxisError

        raise AxisError(axis, ndim)
    normalised: int = axis % ndim
    return normalised


def check_choice(value: _C, choices: Iterable[Any], param: str, func: str) -> _C:
    """``value`` if it is one of ``choices`` (a ValueError listing them otherwise)."""
    choices = tuple(choices)
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise param_error(param, func, f"one of {{{opts}}}", value)
    return value


def check_bool(value: Any, param: str, func: str) -> bool:
    """``value`` if it is a bool (a TypeError otherwise: 0/1 and None are not bools)."""
    if not isinstance(value, bool):
        raise param_error(param, func, "a bool", value, TypeError)
    return value


@overload
def check_scalar(value: Any, param: str, func: str, *, lo: float = ..., hi: float = ...,
                 lo_open: bool = ..., hi_open: bool = ..., integer: Literal[False] = ...,
                 allow_none: Literal[False] = ...) -> float: ...


@overload
def check_scalar(value: Any, param: str, func: str, *, lo: float = ..., hi: float = ...,
                 lo_open: bool = ..., hi_open: bool = ..., integer: Literal[True],
                 allow_none: Literal[False] = ...) -> int: ...


@overload
def check_scalar(value: Any, param: str, func: str, *, lo: float = ..., hi: float = ...,
                 lo_open: bool = ..., hi_open: bool = ..., integer: bool = ...,
                 allow_none: bool = ...) -> float | None: ...


def check_scalar(
    value: Any,
    param: str,
    func: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    allow_none: bool = False,
) -> float | None:
    """Check a real scalar lies in an interval; returns it as float (or int, or None)."""
    if value is None and allow_none:
        return None
    lb = "(" if lo_open else "["
    rb = ")" if hi_open else "]"
    kind = "an int" if integer else "a float"
    expect = f"{kind} in {lb}{_fmt(lo)}, {_fmt(hi)}{rb}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise param_error(param, func, expect, value, TypeError)
    if integer and not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and value.is_integer()):
            raise param_error(param, func, expect, value, TypeError)
        value = int(value)
    v = int(cast(numbers.Integral, value)) if integer else float(value)
    if math.isnan(v) or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        raise param_error(param, func, expect, value)
    return v


def _fmt(v: float) -> str:
    if v == math.inf:
        return "inf"
    if v == -math.inf:
        return "-inf"
    return repr(int(v)) if float(v).is_integer() else repr(v)
