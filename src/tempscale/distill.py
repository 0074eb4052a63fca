r"""Knowledge-distillation losses that get the temperature right.

:func:`kd_loss` is one Array-API implementation (NumPy, PyTorch with autograd, JAX with
``grad``/``jit``, array-api-strict, ...) of the Hinton et al. distillation loss and its
relatives (reverse KL, the generalised Jensen-Shannon divergence of GKD), with labels,
``ignore_index``, row masks, per-row temperatures and a correct normaliser.

For large vocabularies in PyTorch, :class:`tempscale.torch.KDLoss` computes the same loss and
the same gradient chunk by chunk and keeps only the gradient in memory (import it from
:mod:`tempscale.torch`; this module never imports torch).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _compat
from ._compat import array_namespace, is_concrete, is_python_scalar
from ._softmax import log_softmax
from ._validation import check_axis, check_bool, check_choice, check_scalar, param_error

__all__ = ["kd_loss"]

DIVERGENCES = ("forward", "reverse", "jsd")
REDUCTIONS = ("batchmean", "sum", "none")

_T_EXPECT = "a float in (0, inf) or an array of per-row temperatures"
_TT_EXPECT = "None, a float in [0, inf] or an array of per-row temperatures"


# --------------------------------------------------------------------------------------------
# argument checks shared with tempscale.torch
# --------------------------------------------------------------------------------------------
def _check_options(func, *, alpha, labels, divergence, beta, t2_scale, ignore_index, reduction):
    """Validate the scalar options; returns ``(alpha, beta)`` with ``alpha`` resolved."""
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


def _row_temperature(temperature, batch_shape, xp, like, compute, func, param, *, allow_edges):
    """A Python float, or an array of shape ``batch_shape + (1,)`` in ``compute`` dtype.

    ``temperature`` may have the batch shape, or the batch shape with a size-1 class axis kept
    at the end (the caller has already moved the class axis last).
    """
    expect = _TT_EXPECT if allow_edges else _T_EXPECT
    if is_python_scalar(temperature):
        t = float(temperature)
        bad = math.isnan(t) or t < 0 or (not allow_edges and (t == 0 or math.isinf(t)))
        if bad:
            raise param_error(param, func, expect, temperature)
        return t
    T = _compat.as_array(temperature, xp, like=like)
    if not xp.isdtype(T.dtype, ("real floating", "integral")):
        raise param_error(param, func, expect, f"an array of dtype {T.dtype}", TypeError)
    if T.dtype != compute:
        T = xp.astype(T, compute)
    bshape = tuple(batch_shape)
    if T.ndim == 0:
        T = xp.reshape(T, (1,) * (len(bshape) + 1))
    elif tuple(T.shape) == bshape:
        T = xp.reshape(T, bshape + (1,))
    elif tuple(T.shape) == bshape + (1,):
        pass
    else:
        raise param_error(param, func, f"a float or an array of per-row temperatures of shape "
                          f"{bshape} or {bshape + (1,)}", f"an array of shape {tuple(T.shape)}")
    if is_concrete(T):
        if allow_edges:
            bad = xp.logical_or(xp.isnan(T), T < 0)
        else:
            bad = xp.logical_not(xp.logical_and(T > 0, T < math.inf))
        if bool(xp.any(bad)):
            tn = np.asarray(_to_numpy(T)).reshape(-1)
            bn = np.asarray(_to_numpy(bad)).reshape(-1)
            raise param_error(param, func, expect, float(tn[bn][0]))
    return T


def _coerce(x):
    """``x`` itself if it is an array of a supported library, else NumPy's view of it
    (pandas objects, lists and anything with ``__array__`` are read as NumPy arrays)."""
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
    # an array-like read as NumPy (pandas, __array__ objects); pandas hands out read-only
    # views, which torch refuses to wrap without a warning: copy those
    a = np.asarray(x)
    return a if a.flags.writeable else a.copy()


def _lib(x) -> str:
    return type(x).__module__.split(".")[0]


def _to_numpy(a):
    if hasattr(a, "detach"):
        a = a.detach().cpu()
    if type(a).__module__.startswith("array_api_strict"):
        return np.from_dlpack(a)
    return np.asarray(a)


def _move_class_axis(temperature, ax, ndim, xp, like):
    """A keepdims-form per-row temperature array with its size-1 axis moved last, like the logits."""
    if temperature is None or is_python_scalar(temperature) or ax == ndim - 1:
        return temperature
    T = _compat.as_array(temperature, xp, like=like)
    if T.ndim == ndim and T.shape[ax] == 1:
        perm = tuple(i for i in range(ndim) if i != ax) + (ax,)
        T = xp.permute_dims(T, perm)
    return T


def _prepare_rows(labels, mask, batch_shape, n_classes, ignore_index, xp, like, func):
    """Labels (int array, batch shape) and the valid-row mask (bool, batch shape or None)."""
    valid = None
    if labels is not None:
        labels = _compat.as_array(_coerce(labels), xp, like=like)
        if not xp.isdtype(labels.dtype, "integral"):
            raise param_error("labels", func, "an array of integer class indices",
                              f"dtype {labels.dtype}", TypeError)
        if tuple(labels.shape) != tuple(batch_shape):
            raise param_error("labels", func, f"an array of shape {tuple(batch_shape)} (the logits' "
                              "shape without the class axis)", f"shape {tuple(labels.shape)}")
        valid = labels != ignore_index
        if is_concrete(labels) and math.prod(labels.shape):
            out = xp.logical_and(valid, xp.logical_or(labels < 0, labels >= n_classes))
            if bool(xp.any(out)):
                ln = np.asarray(_to_numpy(labels)).reshape(-1)
                on = np.asarray(_to_numpy(out)).reshape(-1)
                raise param_error("labels", func, f"class indices in [0, {n_classes}) or "
                                  f"ignore_index={ignore_index}", int(ln[on][0]), IndexError)
    if mask is not None:
        mask = _compat.as_array(_coerce(mask), xp, like=like)
        if mask.dtype != xp.bool:
            raise param_error("mask", func, "a boolean array of rows (True = keep)",
                              f"dtype {mask.dtype}", TypeError)
        try:
            shp = xp.broadcast_shapes(tuple(mask.shape), tuple(batch_shape))
        except (ValueError, RuntimeError):
            shp = None
        if shp != tuple(batch_shape):
            raise param_error("mask", func, f"broadcastable to the row shape {tuple(batch_shape)}",
                              f"shape {tuple(mask.shape)}")
        mask = xp.broadcast_to(mask, tuple(batch_shape))
        valid = mask if valid is None else xp.logical_and(valid, mask)
    return labels, valid


def _float_dtypes(xp, s, t, func):
    """(compute dtype, output dtype) of the two logit arrays."""
    dev = _compat.device(s)
    dts = []
    for name, a in (("student_logits", s), ("teacher_logits", t)):
        if xp.isdtype(a.dtype, "real floating"):
            dts.append(a.dtype)
        elif xp.isdtype(a.dtype, ("integral", "bool")):
            dts.append(_compat.default_float_dtype(xp, dev))
        else:
            raise param_error(name, func, "an array of real numbers", f"dtype {a.dtype}", TypeError)
    out = xp.result_type(*dts)
    compute = xp.float32 if _compat.float_bits(xp, out) < 32 else out
    return compute, out


def _namespace_of_pair(student, teacher, func):
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


def _prepare_logits(student_logits, teacher_logits, axis, func):
    """Namespace, both logits with the class axis last, dtypes."""
    student_logits = _coerce(student_logits)
    teacher_logits = _coerce(teacher_logits)
    xp = _namespace_of_pair(student_logits, teacher_logits, func)
    s = _compat.as_array(student_logits, xp)
    if isinstance(teacher_logits, np.ndarray) and not _compat.is_numpy_namespace(xp):
        # a NumPy teacher joins the student's library, in the student's floating dtype
        dt = s.dtype if xp.isdtype(s.dtype, "real floating") else None
        t = _compat.as_array(teacher_logits, xp, like=s, dtype=dt)
    else:
        t = _compat.as_array(teacher_logits, xp, like=s)
    if s.ndim == 0:
        raise param_error("student_logits", func, "an array with a class axis", "a 0-d array")
    if tuple(s.shape) != tuple(t.shape):
        raise param_error("teacher_logits", func, f"an array of the student's shape {tuple(s.shape)}",
                          f"shape {tuple(t.shape)}")
    ax = check_axis(axis, s.ndim, func)
    if ax != s.ndim - 1:
        perm = tuple(i for i in range(s.ndim) if i != ax) + (ax,)
        s = xp.permute_dims(s, perm)
        t = xp.permute_dims(t, perm)
    compute, out = _float_dtypes(xp, s, t, func)
    return xp, s, t, ax, compute, out


# --------------------------------------------------------------------------------------------
# the generic implementation
# --------------------------------------------------------------------------------------------
def _xlogratio(w, log_a, log_b, xp):
    r"""Per-entry :math:`w (\log a - \log b)` with :math:`0 \cdot (\cdot) = 0`, NaN-free gradients.

    A NaN weight still propagates (``NaN != 0``), so garbage is not hidden.
    """
    nz = w != 0
    zero = xp.zeros_like(log_a)
    la = xp.where(nz, log_a, zero)
    lb = xp.where(nz, log_b, zero)
    return xp.where(nz, w * (la - lb), zero)


def _soft_rows(logq, logp, divergence, beta, xp):
    """Per-row divergence (summed over the last axis) between teacher ``p`` and student ``q``."""
    if divergence == "jsd" and beta == 0.0:
        divergence = "forward"
    elif divergence == "jsd" and beta == 1.0:
        divergence = "reverse"
    p = xp.exp(logp)
    if divergence == "forward":
        return xp.sum(_xlogratio(p, logp, logq, xp), axis=-1)
    q = xp.exp(logq)
    if divergence == "reverse":
        return xp.sum(_xlogratio(q, logq, logp, xp), axis=-1)
    m = beta * p + (1.0 - beta) * q
    pos = m > 0
    logm = xp.log(xp.where(pos, m, xp.ones_like(m)))
    kl_p = xp.sum(_xlogratio(p, logp, logm, xp), axis=-1)
    kl_q = xp.sum(_xlogratio(q, logq, logm, xp), axis=-1)
    return beta * kl_p + (1.0 - beta) * kl_q


def _hard_rows(logq1, labels, xp):
    """Per-row cross-entropy ``-log q1[label]`` (labels already made safe)."""
    idx = xp.expand_dims(labels, axis=-1)
    if hasattr(xp, "take_along_axis"):
        picked = xp.take_along_axis(logq1, idx, axis=-1)
        return -picked[..., 0]
    classes = xp.arange(logq1.shape[-1], device=_compat.device(logq1))
    onehot = classes == idx  # pragma: no cover - every supported namespace has take_along_axis
    return -xp.sum(xp.where(onehot, logq1, xp.zeros_like(logq1)), axis=-1)  # pragma: no cover


def kd_loss(student_logits, teacher_logits, temperature=1.0, *, labels=None, alpha=None,
            divergence="forward", beta=0.5, teacher_temperature=None, t2_scale=True,
            ignore_index=-100, mask=None, reduction="batchmean", axis=-1):
    r"""Knowledge-distillation loss with temperature, on any Array-API library.

    The soft term compares the teacher's tempered distribution
    :math:`p = \mathrm{softmax}(t / T_t)` with the student's :math:`q = \mathrm{softmax}(s / T)`
    row by row; with ``labels`` it is mixed with the ordinary cross-entropy at ``T = 1``:

    .. math::

        \ell = \alpha \, T^2 \, D(p, q) + (1 - \alpha)\, \mathrm{CE}(s, y).

    Parameters
    ----------
    student_logits : array
        Student logits, any leading shape (examples, or batch x tokens), classes along ``axis``.
        Gradients flow into it (PyTorch autograd, ``jax.grad``).  pandas objects and other
        array-likes are read as NumPy arrays.
    teacher_logits : array
        Teacher logits, same shape.  Usually constant (detached); gradients flow if you ask.
        A NumPy array is converted to the student's library (device, floating dtype), so
        precomputed teacher logits work with a PyTorch or JAX student (``jax.grad``,
        ``jax.jit``).
    temperature : float or array, default 1.0
        The student's temperature ``T`` in ``(0, inf)``, or one per row (shape: the logits' shape
        without ``axis``, or with a size-1 ``axis`` kept).  A tensor temperature can be learned.
    labels : int array, optional
        Hard labels, the logits' shape without ``axis``.  Rows whose label equals
        ``ignore_index`` are left out of the whole loss (soft and hard) and of its normaliser,
        as padding tokens are in language-model distillation.  Any other label outside
        ``[0, n_classes)`` raises an IndexError; where the labels cannot be looked at (inside
        ``jax.jit`` or another trace) such a row's loss is NaN instead (so a reduced loss is
        NaN), never the loss of another class.
    alpha : float in [0, 1], optional
        Weight of the soft term when ``labels`` are given (default 0.5); the hard term gets
        ``1 - alpha``.  Must be None without labels (the loss is then the soft term alone).
    divergence : {"forward", "reverse", "jsd"}, default "forward"
        ``"forward"`` is :math:`\mathrm{KL}(p \,\|\, q)` (Hinton et al., mass-covering);
        ``"reverse"`` is :math:`\mathrm{KL}(q \,\|\, p)` (mode-seeking, MiniLLM);
        ``"jsd"`` is the generalised Jensen-Shannon divergence of GKD,
        :math:`\beta\,\mathrm{KL}(p \,\|\, m) + (1-\beta)\,\mathrm{KL}(q \,\|\, m)` with
        :math:`m = \beta p + (1 - \beta) q`.  As in TRL's GKD, ``beta=0`` and ``beta=1`` are
        taken to mean the forward and the reverse KL (the JSD itself vanishes there, like
        :math:`\beta\,\mathrm{KL}(p\|q)` and :math:`(1-\beta)\,\mathrm{KL}(q\|p)`).
    beta : float in [0, 1], default 0.5
        The JSD weight (ignored by the two KLs).
    teacher_temperature : float or array, optional
        The teacher's temperature :math:`T_t`; default: the same as ``temperature``.  It may be
        ``0`` (the teacher's argmax, ties shared) or ``inf`` (uniform over its unmasked classes).
    t2_scale : bool, default True
        Multiply the soft term by :math:`T^2` (per row for per-row temperatures).  See Notes.
    ignore_index : int, default -100
        The label value that marks rows to leave out.
    mask : bool array, optional
        Rows to keep (True) or leave out (False), broadcastable to the row shape (the logits'
        shape without ``axis``).  Masked classes within a row are given as ``-inf`` logits.
    reduction : {"batchmean", "sum", "none"}, default "batchmean"
        ``"batchmean"``: sum over classes, mean over the valid rows (the true KL per example);
        ``"sum"``: sum over the valid rows; ``"none"``: one value per row, 0 for left-out rows.
        A batch with no valid row gives 0 (and zero gradient), never 0/0 = NaN.
    axis : int, default -1
        The class axis.

    Returns
    -------
    array
        A scalar (or the row shape for ``reduction="none"``) in the logits' floating dtype;
        float16/bfloat16 are computed in float32 and returned in their own dtype.

    Notes
    -----
    **Why** :math:`T^2`. The student's gradient of the soft term is
    :math:`\partial\,\mathrm{KL}(p\|q)/\partial s = (q - p)/T`, and for large ``T`` the gap
    :math:`q - p` itself shrinks like :math:`1/T`, so the gradient shrinks like :math:`1/T^2`.
    Hinton et al. (2015) multiply the soft term by :math:`T^2` so that its gradient keeps its
    size when ``T`` changes and ``alpha`` keeps its meaning.  With ``t2_scale=True``,
    :math:`\partial (T^2 \mathrm{KL}) / \partial s = T (q - p)`.  Libraries disagree here:
    torchdistill's ``KDLoss`` applies :math:`T^2` only when ``alpha`` and targets are given
    (and there ``alpha`` weighs the *hard* term), returning the unscaled KL otherwise;
    Liger-Kernel's distillation losses, TRL's GKD ``generalized_jsd_loss`` and ModelOpt's
    Megatron loss divide the logits by ``T`` but never multiply by :math:`T^2`.  Pass
    ``t2_scale=False`` to reproduce the latter.

    **Why "batchmean".** PyTorch's ``F.kl_div(..., reduction="mean")`` averages over *every
    element*, rows times classes, so it returns the KL divided by the vocabulary size: with
    32,000 classes the soft term is 32,000 times too small and ``alpha`` means nothing.
    ``"batchmean"`` divides the sum by the number of (valid) rows, which is the KL per example.
    The normaliser counts only valid rows (like ``F.cross_entropy`` with ``ignore_index``), and
    an all-padding batch gives 0 rather than 0/0.

    **Masked classes.** ``-inf`` logits are masked classes: :math:`0 \log 0 = 0`, so a class the
    teacher masks costs nothing; a class the student masks while the teacher gives it mass
    makes the forward KL infinite (as it should).  Gradients stay finite (NaN-free) at masked
    entries on every backend, in float16/bfloat16 too.  A NaN logit in a valid row makes that
    row's loss NaN.

    References
    ----------
    .. [1] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", 2015.
    .. [2] R. Agarwal et al., "On-Policy Distillation of Language Models: Learning from
       Self-Generated Mistakes" (GKD), ICLR 2024.
    .. [3] Y. Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models", ICLR 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.distill import kd_loss
    >>> s = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    >>> t = np.array([[2.0, 3.0, -1.0], [0.5, 0.0, 2.0]])
    >>> float(kd_loss(s, t, 2.0))                    # T^2 * mean KL(p_t || q_s)
    0.26262...
    >>> float(kd_loss(s, t, 2.0, t2_scale=False))    # what Liger / TRL GKD compute
    0.06565...
    >>> float(kd_loss(s, t, 2.0, labels=np.array([1, -100])))  # 2nd row is padding
    0.39170...
    >>> np.set_printoptions(precision=4)
    >>> kd_loss(s, t, 2.0, divergence="jsd", reduction="none")
    array([0.0898, 0.0495])
    >>> float(kd_loss(s, t, mask=np.array([False, False])))  # nothing to learn from: 0, not NaN
    0.0
    """
    func = "kd_loss"
    alpha, beta = _check_options(func, alpha=alpha, labels=labels, divergence=divergence,
                                 beta=beta, t2_scale=t2_scale, ignore_index=ignore_index,
                                 reduction=reduction)
    xp, s, t, ax, compute, out = _prepare_logits(student_logits, teacher_logits, axis, func)
    temperature = _move_class_axis(temperature, ax, s.ndim, xp, s)
    teacher_temperature = _move_class_axis(teacher_temperature, ax, s.ndim, xp, s)
    batch_shape = tuple(s.shape[:-1])
    n_classes = s.shape[-1]
    labels, valid = _prepare_rows(labels, mask, batch_shape, n_classes, ignore_index, xp, s, func)
    T = _row_temperature(temperature, batch_shape, xp, s, compute, func, "temperature",
                         allow_edges=False)
    if teacher_temperature is None:
        Tt = T
    else:
        Tt = _row_temperature(teacher_temperature, batch_shape, xp, s, compute, func,
                              "teacher_temperature", allow_edges=True)
    if s.dtype != compute:
        s = xp.astype(s, compute)
    if t.dtype != compute:
        t = xp.astype(t, compute)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        loss = _kd_rows(xp, s, t, T, Tt, labels, valid, alpha, divergence, beta, t2_scale)
        loss = _reduce(xp, loss, valid, reduction, compute)
    if loss.dtype != out:
        loss = xp.astype(loss, out)
    return loss


def _kd_rows(xp, s, t, T, Tt, labels, valid, alpha, divergence, beta, t2_scale):
    """Per-row loss (row shape), 0 at left-out rows; inputs have the class axis last."""
    if valid is not None:
        # left-out rows are computed on zeros, so no inf/NaN there can leak into the gradient
        keep = xp.expand_dims(valid, axis=-1)
        zero = xp.zeros_like(s)
        s = xp.where(keep, s, zero)
        t = xp.where(keep, t, zero)
    logq = log_softmax(s, T)
    logp = log_softmax(t, Tt)
    soft = _soft_rows(logq, logp, divergence, beta, xp)
    if t2_scale:
        soft = soft * (T * T if is_python_scalar(T) else (T * T)[..., 0])
    unchecked = None
    if labels is None:
        rows = soft
    else:
        keep = valid
        if not is_concrete(labels):
            # traced labels (jax.jit, torch.compile) could not be checked: an index outside
            # [0, n_classes) must not wrap to another class; its row becomes NaN below
            n_classes = s.shape[-1]
            inside = xp.logical_and(labels >= 0, labels < n_classes)
            unchecked = xp.logical_not(inside) if valid is None else xp.logical_and(
                valid, xp.logical_not(inside))
            keep = inside if valid is None else xp.logical_and(valid, inside)
        safe = labels if keep is None else xp.where(keep, labels, xp.zeros_like(labels))
        logq1 = logq if (is_python_scalar(T) and T == 1.0) else log_softmax(s)
        hard = _hard_rows(logq1, safe, xp)
        if alpha == 1.0:
            rows = soft
        elif alpha == 0.0:
            rows = hard
        else:
            rows = alpha * soft + (1.0 - alpha) * hard
    if valid is not None:
        rows = xp.where(valid, rows, xp.zeros_like(rows))
    if unchecked is not None:
        rows = xp.where(unchecked, xp.full_like(rows, math.nan), rows)
    return rows


def _reduce(xp, rows, valid, reduction, compute):
    if reduction == "none":
        return rows
    total = xp.sum(rows)
    if reduction == "sum":
        return total
    if valid is None:
        n = max(math.prod(rows.shape), 1)
        return total / n
    n = xp.sum(xp.astype(valid, compute))
    return total / xp.maximum(n, xp.ones_like(n))
