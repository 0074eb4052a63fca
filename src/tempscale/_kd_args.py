"""The arguments of the distillation losses, prepared once for :mod:`tempscale.distill` and
:mod:`tempscale.torch`.

:func:`check_options` validates the scalar options; :func:`prepare` turns the two logits, the
temperatures, the labels and the row mask into arrays of one namespace with the class axis
last (a :class:`KDArgs`).  The rules themselves (temperatures, labels, row masks, dtypes,
conversion) are the argument layer's, :mod:`tempscale._args`; this module only applies them to
the losses' parameters.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from . import _compat
from ._args import coerce, deprecated_alias, float_dtypes, row_temperature, row_where, to_numpy
from ._args import labels as check_labels
from ._compat import array_namespace, is_python_scalar
from ._typing import DType, Namespace
from ._validation import check_axis, check_bool, check_choice, check_scalar, param_error

__all__ = ["DIVERGENCES", "REDUCTIONS", "KDArgs", "SparseArgs", "check_num_items", "check_options",
           "prepare", "prepare_sparse", "shift_row_labels", "where_alias"]

DIVERGENCES = ("forward", "reverse", "jsd")
REDUCTIONS = ("batchmean", "sum", "none")


def check_options(func: str, *, alpha: float | None, labels: object, divergence: str, beta: float,
                  t2_scale: bool, ignore_index: int, reduction: str) -> tuple[float, float]:
    """Validate the scalar options; returns ``(alpha, beta)`` with ``alpha`` resolved (1 without
    labels, 0.5 by default with them)."""
    check_choice(divergence, DIVERGENCES, "divergence", func)
    check_choice(reduction, REDUCTIONS, "reduction", func)
    beta = check_scalar(beta, "beta", func, lo=0.0, hi=1.0)
    check_bool(t2_scale, "t2_scale", func)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise param_error("ignore_index", func, "an int", ignore_index, TypeError)
    if labels is None:
        if alpha is not None:
            raise param_error("alpha", func, "None when no labels are given (alpha weighs the "
                              "soft term against the hard-label term)", alpha)
        return 1.0, beta
    if alpha is None:
        return 0.5, beta
    return check_scalar(alpha, "alpha", func, lo=0.0, hi=1.0), beta


def where_alias(where: Any, mask: Any, func: str) -> Any:
    """The row mask, given as ``where=`` or by its deprecated name ``mask=`` (a
    DeprecationWarning; both at once is a TypeError)."""
    if mask is None:
        return where
    return deprecated_alias({"mask": mask, "where": where}, "mask", "where", func)["where"]


class KDArgs(NamedTuple):
    """The prepared arguments of a distillation loss; arrays have the class axis last."""

    xp: Namespace
    #: student and teacher logits (arrays of ``xp``), in their own dtypes (not yet ``compute``)
    s: Any
    t: Any
    #: temperatures: Python floats, or ``compute``-dtype arrays of shape ``batch_shape + (1,)``
    T: Any
    Tt: Any
    #: integer labels of ``batch_shape``, or None
    labels: Any
    #: rows that count (bool, ``batch_shape``), or None when every row does
    valid: Any
    compute: DType
    out: DType

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.s.shape[:-1])


def _lib(x: object) -> str:
    return type(x).__module__.split(".")[0]


def _namespace_of_pair(student: Any, teacher: Any, func: str) -> Namespace:
    """The namespace of the two logits; a NumPy one (or an array-like) joins the other's.

    A NumPy teacher with a JAX student (``jax.grad``/``jit`` of a function that closes over
    precomputed teacher logits) or a torch student is converted to the student's library,
    on its device.  Two arrays of two different non-NumPy libraries are refused.
    """
    try:
        return array_namespace(student, teacher)
    except TypeError:
        pass
    s_np = isinstance(student, np.ndarray)
    t_np = isinstance(teacher, np.ndarray)
    if t_np and not s_np:
        return array_namespace(student)
    if s_np and not t_np:
        return array_namespace(teacher)
    raise param_error("teacher_logits", func, f"an array of the student's library "
                      f"({_lib(student)}) or a NumPy array; convert one of them",
                      f"a {_lib(teacher)} {type(teacher).__name__}", TypeError)


def _logit_dtypes(xp: Namespace, s: Any, t: Any, func: str,
                  dtype: DType | None = None) -> tuple[DType, DType]:
    """(compute dtype, output dtype) of the two logit arrays (the library's dtype policy);
    ``dtype``: the user's choice of output dtype (e.g. float32 from bfloat16 logits)."""
    for name, a in (("student_logits", s), ("teacher_logits", t)):
        if not xp.isdtype(a.dtype, ("real floating", "integral", "bool")):
            raise param_error(name, func, "an array of real numbers", f"dtype {a.dtype}", TypeError)
    if dtype is not None:
        compute, out = float_dtypes(xp, s, dtype, func)
        # never compute in less than the inputs' own precision
        natural = float_dtypes(xp, s, xp.result_type(float_dtypes(xp, s, None, func)[1],
                                                     float_dtypes(xp, t, None, func)[1]), func)[0]
        return xp.result_type(compute, natural), out
    out = xp.result_type(float_dtypes(xp, s, None, func)[1], float_dtypes(xp, t, None, func)[1])
    return float_dtypes(xp, s, out, func)


def _logits(student_logits: Any, teacher_logits: Any, axis: int,
            func: str) -> tuple[Namespace, Any, Any, int]:
    """Namespace, both logits as arrays of it (classes along ``axis``), the normalised axis."""
    xp, s, t = _student_and_teacher(student_logits, teacher_logits, func)
    if s.ndim == 0:
        raise param_error("student_logits", func, "an array with a class axis", "a 0-d array")
    if tuple(s.shape) != tuple(t.shape):
        raise param_error("teacher_logits", func, f"an array of the student's shape {tuple(s.shape)}",
                          f"shape {tuple(t.shape)}")
    return xp, s, t, check_axis(axis, s.ndim, func)


def _temperature(value: Any, func: str, param: str, *, like: Any, ax: int, edges: bool,
                 compute: DType, xp: Namespace) -> Any:
    """A Python float, or per-row temperatures in keepdims form, in the ``compute`` dtype."""
    T: Any = row_temperature(value, func, like=like, axis=ax, param=param, edges=edges, dtype=compute)
    if not is_python_scalar(T) and T.dtype != compute:
        T = xp.astype(T, compute)
    return T


def _row_labels(labels: Any, func: str, *, xp: Namespace, like: Any, ignore_index: int) -> Any:
    """Integer class indices of the row shape (a float or bool array is refused: the losses
    take class indices, not probabilities), checked where concrete."""
    y = _compat.as_array(coerce(labels), xp, like=like, param="labels")
    if not xp.isdtype(y.dtype, "integral"):
        raise param_error("labels", func, "an array of integer class indices",
                          f"dtype {y.dtype}", TypeError)
    return check_labels(y, func, like=like, n_classes=like.shape[-1],
                        batch_shape=tuple(like.shape[:-1]), ignore_index=ignore_index)


def check_num_items(value: Any, reduction: str, func: str) -> Any:
    """``num_items_in_batch``: None, a positive number, or a 0-d array (Hugging Face passes a
    tensor); only with ``reduction="batchmean"`` (it replaces that reduction's normaliser)."""
    if value is None:
        return None
    if reduction != "batchmean":
        raise param_error("num_items_in_batch", func, 'None unless reduction="batchmean" (it '
                          "replaces the batchmean normaliser)", value)
    if is_python_scalar(value):
        return check_scalar(value, "num_items_in_batch", func, lo=0.0, lo_open=True)
    if isinstance(value, (str, bytes)) or not hasattr(value, "shape"):
        raise param_error("num_items_in_batch", func, "a positive number or a 0-d array", value,
                          TypeError)
    if math.prod(value.shape) != 1:
        raise param_error("num_items_in_batch", func, "a positive number or a 0-d array",
                          f"an array of shape {tuple(value.shape)}")
    if _compat.is_concrete(value):
        number = float(to_numpy(value).reshape(()))
        if not number > 0:
            raise param_error("num_items_in_batch", func, "a positive number or a 0-d array",
                              number)
    return value


def shift_row_labels(y: Any, xp: Namespace, ignore_index: int, func: str) -> Any:
    """Labels for a causal model (Hugging Face's ``ForCausalLMLoss``): position ``t`` of the last
    row axis predicts label ``t + 1``; the last position gets ``ignore_index`` (left out)."""
    if y.ndim == 0:
        raise param_error("shift_labels", func, "False for logits without a sequence axis "
                          "(labels of shape (..., S) are needed)", True)
    pad = xp.full(tuple(y.shape[:-1]) + (1,), ignore_index, dtype=y.dtype,
                  device=_compat.device(y))
    return xp.concat([y[..., 1:], pad], axis=-1)


def prepare(student_logits: Any, teacher_logits: Any, temperature: Any, *,
            teacher_temperature: Any, labels: Any, where: Any, ignore_index: int, axis: int,
            func: str, shift_labels: bool = False, dtype: DType | None = None) -> KDArgs:
    """Every array argument of a distillation loss, checked and in one namespace.

    The class axis is moved last (a copy where it is not last already); per-row temperatures
    may be given in the batch shape or in keepdims form (a size-1 class axis).
    """
    xp, s, t, ax = _logits(student_logits, teacher_logits, axis, func)
    compute, out = _logit_dtypes(xp, s, t, func, dtype)
    T = _temperature(temperature, func, "temperature", like=s, ax=ax, edges=False,
                     compute=compute, xp=xp)
    Tt = T if teacher_temperature is None else _temperature(
        teacher_temperature, func, "teacher_temperature", like=s, ax=ax, edges=True,
        compute=compute, xp=xp)
    if ax != s.ndim - 1:
        perm = tuple(i for i in range(s.ndim) if i != ax) + (ax,)
        s, t = xp.permute_dims(s, perm), xp.permute_dims(t, perm)
        T = T if is_python_scalar(T) else xp.permute_dims(T, perm)
        Tt = Tt if is_python_scalar(Tt) else xp.permute_dims(Tt, perm)
    batch_shape = tuple(s.shape[:-1])
    y, valid = _labels_and_rows(labels, where, func, xp=xp, like=s, batch_shape=batch_shape,
                                ignore_index=ignore_index, shift_labels=shift_labels)
    return KDArgs(xp, s, t, T, Tt, y, valid, compute, out)


class SparseArgs(NamedTuple):
    """The prepared arguments of :func:`tempscale.distill.sparse_kd_loss` (class axis last)."""

    xp: Namespace
    #: student logits (..., V); teacher indices (..., k) (integers) and values (..., k)
    s: Any
    idx: Any
    v: Any
    T: Any
    Tt: Any
    labels: Any
    valid: Any
    compute: DType
    out: DType


def prepare_sparse(student_logits: Any, teacher_indices: Any, teacher_values: Any,
                   temperature: Any, *, teacher_temperature: Any, teacher_edges: bool,
                   labels: Any, where: Any, ignore_index: int, shift_labels: bool,
                   func: str, dtype: DType | None = None) -> SparseArgs:
    """Every array argument of a sparse-teacher loss, checked and in the student's namespace."""
    xp, s, v = _student_and_teacher(student_logits, teacher_values, func)
    if s.ndim == 0:
        raise param_error("student_logits", func, "an array with a class axis", "a 0-d array")
    n_classes = int(s.shape[-1])
    batch_shape = tuple(s.shape[:-1])
    if v.ndim != s.ndim or tuple(v.shape[:-1]) != batch_shape or not 1 <= v.shape[-1] <= n_classes:
        raise param_error("teacher_values", func, f"an array of shape {batch_shape + ('k',)} "
                          f"with 1 <= k <= {n_classes}", f"shape {tuple(v.shape)}")
    idx = _compat.as_array(coerce(teacher_indices), xp, like=s, param="teacher_indices")
    if not xp.isdtype(idx.dtype, "integral"):
        raise param_error("teacher_indices", func, "an array of integer class indices",
                          f"dtype {idx.dtype}", TypeError)
    if tuple(idx.shape) != tuple(v.shape):
        raise param_error("teacher_indices", func, f"an array of teacher_values' shape "
                          f"{tuple(v.shape)}", f"shape {tuple(idx.shape)}")
    if _compat.is_concrete(idx) and math.prod(idx.shape):
        ii = to_numpy(idx)
        out_of_range = (ii < 0) | (ii >= n_classes)
        if np.any(out_of_range):
            raise param_error("teacher_indices", func, f"class indices in [0, {n_classes - 1}]",
                              int(ii[out_of_range][0]), IndexError)
        srt = np.sort(ii, axis=-1)
        dup = srt[..., 1:] == srt[..., :-1]
        if np.any(dup):
            raise param_error("teacher_indices", func, "distinct class indices in each row",
                              f"{int(srt[..., 1:][dup][0])} twice in a row")
    compute, out = _logit_dtypes(xp, s, v, func, dtype)
    T = _temperature(temperature, func, "temperature", like=s, ax=s.ndim - 1, edges=False,
                     compute=compute, xp=xp)
    Tt = T if teacher_temperature is None else _temperature(
        teacher_temperature, func, "teacher_temperature", like=s, ax=s.ndim - 1,
        edges=teacher_edges, compute=compute, xp=xp)
    y, valid = _labels_and_rows(labels, where, func, xp=xp, like=s, batch_shape=batch_shape,
                                ignore_index=ignore_index, shift_labels=shift_labels)
    return SparseArgs(xp, s, idx, v, T, Tt, y, valid, compute, out)


def _labels_and_rows(labels: Any, where: Any, func: str, *, xp: Namespace, like: Any,
                     batch_shape: tuple[int, ...], ignore_index: int,
                     shift_labels: bool) -> tuple[Any, Any]:
    """The (possibly shifted) labels and the valid-row mask (labels not ignored, ``where`` kept)."""
    valid: Any = None
    y: Any = None
    if labels is not None:
        y = _row_labels(labels, func, xp=xp, like=like, ignore_index=ignore_index)
        if shift_labels:
            y = shift_row_labels(y, xp, ignore_index, func)
        valid = y != ignore_index
    elif shift_labels:
        raise param_error("shift_labels", func, "False without labels (it shifts the labels)",
                          True)
    keep = row_where(where, func, like=like, batch_shape=batch_shape)
    if keep is not None:
        valid = keep if valid is None else xp.logical_and(valid, keep)
    return y, valid


def _student_and_teacher(student: Any, teacher: Any, func: str) -> tuple[Namespace, Any, Any]:
    """The student's namespace and both as its arrays (array-likes read as NumPy first).

    A NumPy teacher joins the student's library, in the student's floating dtype.
    """
    student = coerce(student)
    teacher = coerce(teacher)
    xp = _namespace_of_pair(student, teacher, func)
    s = _compat.as_array(student, xp)
    if isinstance(teacher, np.ndarray) and not _compat.is_numpy_namespace(xp):
        dt = s.dtype if xp.isdtype(s.dtype, "real floating") else None
        return xp, s, _compat.as_array(teacher, xp, like=s, dtype=dt)
    return xp, s, _compat.as_array(teacher, xp, like=s)
