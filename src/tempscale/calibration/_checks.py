"""Argument checks of the calibration functions that the shared argument layer does not cover:
concrete arrays, labels and sample weights as NumPy, the probabilities-given-as-logits warning,
the deprecated spellings of the metrics, and warnings pointed at the user's line."""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np
from numpy.typing import NDArray

from .._args import coerce, deprecated_alias, looks_like_probabilities, to_numpy
from .._args import labels as check_labels_layer
from .._compat import is_concrete
from .._validation import check_bool, param_error
from ._types import ProbabilitiesAsLogitsWarning

__all__ = ["check_labels", "check_weights", "old_spellings", "require_concrete", "warn_if_probabilities",
           "warn_user"]

P = ParamSpec("P")
R = TypeVar("R")

#: the installed tempscale package (frames whose code lives here are the library's own)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` pointed at the first frame outside the tempscale package (the user's
    line, whichever public function or method was called and however deep the warning is)."""
    level = 2  # 1 is this function, 2 its caller
    frame = sys._getframe(1)
    while True:
        outer = frame.f_back
        if outer is None or not os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
            break
        frame = outer
        level += 1
    warnings.warn(message, category, stacklevel=level)


def require_concrete(x: Any, name: str, func: str) -> None:
    """A traced array (inside ``jax.jit``, ``torch.compile``...) cannot be fitted or binned."""
    if x is None or is_concrete(x) or type(x).__module__.startswith("dask"):
        return
    raise param_error(name, func, f"a concrete array ({func} works on the values, eagerly: "
                      "call it outside jax.jit / torch.compile, e.g. on jax.device_get(...))",
                      f"a traced {type(x).__name__}", TypeError)


def check_labels(labels: Any, n: int, n_classes: int, func: str) -> NDArray[np.intp]:
    """Class indices as a NumPy ``intp`` array of length ``n`` in ``[0, n_classes)``.

    Any library's labels (Dask ones computed), through the shared label rules; an index out
    of range is a ValueError naming the value received.
    """
    require_concrete(labels, "labels", func)
    y = to_numpy(coerce(labels))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise param_error("labels", func, "a 1-D array of class indices", f"an array of shape {y.shape}")
    if y.shape[0] != n:
        raise param_error("labels", func, f"of length n_samples = {n} (one label per row)",
                          f"{y.shape[0]} labels")
    y = to_numpy(check_labels_layer(y, func, like=None, n_classes=n_classes, range_error=ValueError))
    return y.astype(np.intp, copy=False)


def check_weights(sample_weight: Any, n: int, func: str) -> NDArray[np.float64] | None:
    """``None``, or finite non-negative weights (not all zero) as float64 of length ``n``."""
    if sample_weight is None:
        return None
    require_concrete(sample_weight, "sample_weight", func)
    w = np.asarray(to_numpy(coerce(sample_weight)), dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise param_error("sample_weight", func, f"a 1-D array of length n_samples = {n}",
                          f"shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise param_error("sample_weight", func, "finite and non-negative",
                          "a negative or non-finite weight")
    if not np.any(w > 0):
        raise param_error("sample_weight", func, "positive somewhere", "all zeros")
    return w


def warn_if_probabilities(z: Any, func: str) -> None:
    """A :class:`ProbabilitiesAsLogitsWarning` when the logits ``z`` look like probabilities."""
    if looks_like_probabilities(z):
        warn_user(
            f"{func}: every row of the logits lies in [0, 1] and sums to 1, so these look like "
            "probabilities, which would be read as logits (softmax of probabilities is not the "
            "identity). Use tempscale.temper(p, T) to temper probabilities, pass logits or "
            "log-probabilities (np.log(p)) instead, or input=\"probabilities\" for the metrics.",
            ProbabilitiesAsLogitsWarning)


def _input_of_from_logits(func: str) -> Callable[[Any], str]:
    def convert(from_logits: Any) -> str:
        return "logits" if check_bool(from_logits, "from_logits", func) else "probabilities"
    return convert


def old_spellings(func: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Accept a metric's deprecated keywords, with a DeprecationWarning each: ``probs=``
    (now ``prediction=``) and ``from_logits=`` (now ``input="logits"`` / ``"probabilities"``).
    The decorated function keeps its signature (the new spellings only)."""
    def decorate(f: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(f)
        def metric(*args: P.args, **kwargs: P.kwargs) -> R:
            if "probs" in kwargs or "from_logits" in kwargs:
                deprecated_alias(kwargs, "probs", "prediction", func)
                deprecated_alias(kwargs, "from_logits", "input", func,
                                 convert=_input_of_from_logits(func))
            return f(*args, **kwargs)
        return metric
    return decorate
