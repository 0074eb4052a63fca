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
from typing import Any

import numpy as np

from . import _compat
from ._compat import is_concrete, is_python_scalar
from ._kd_args import check_options, prepare, where_alias
from ._softmax import log_softmax
from ._typing import ArrayLike, DType, Namespace, Temperature

__all__ = ["kd_loss"]


# --------------------------------------------------------------------------------------------
# the generic implementation
# --------------------------------------------------------------------------------------------
def _xlogratio(w: Any, log_a: Any, log_b: Any, xp: Namespace) -> Any:
    r"""Per-entry :math:`w (\log a - \log b)` with :math:`0 \cdot (\cdot) = 0`, NaN-free gradients.

    A NaN weight still propagates (``NaN != 0``), so garbage is not hidden.
    """
    nz = w != 0
    zero = xp.zeros_like(log_a)
    la = xp.where(nz, log_a, zero)
    lb = xp.where(nz, log_b, zero)
    return xp.where(nz, w * (la - lb), zero)


def _soft_rows(logq: Any, logp: Any, divergence: str, beta: float, xp: Namespace) -> Any:
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


def _hard_rows(logq1: Any, labels: Any, xp: Namespace) -> Any:
    """Per-row cross-entropy ``-log q1[label]`` (labels already made safe)."""
    idx = xp.expand_dims(labels, axis=-1)
    if hasattr(xp, "take_along_axis"):
        picked = xp.take_along_axis(logq1, idx, axis=-1)
        return -picked[..., 0]
    classes = xp.arange(logq1.shape[-1], device=_compat.device(logq1))
    onehot = classes == idx  # pragma: no cover - every supported namespace has take_along_axis
    return -xp.sum(xp.where(onehot, logq1, xp.zeros_like(logq1)), axis=-1)  # pragma: no cover


def kd_loss(student_logits: ArrayLike, teacher_logits: ArrayLike, temperature: Temperature = 1.0,
            *, labels: ArrayLike | None = None, alpha: float | None = None,
            divergence: str = "forward", beta: float = 0.5,
            teacher_temperature: Temperature | None = None, t2_scale: bool = True,
            ignore_index: int = -100, where: ArrayLike | None = None, reduction: str = "batchmean",
            axis: int = -1, mask: ArrayLike | None = None) -> Any:
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
    where : bool array, optional
        Rows to keep (True) or leave out (False), broadcastable to the row shape (the logits'
        shape without ``axis``); 0/1 integers are read as bools.  Masked classes within a row
        are given as ``-inf`` logits (``mask`` means entries elsewhere in tempscale, ``where``
        rows, as in optax).
    reduction : {"batchmean", "sum", "none"}, default "batchmean"
        ``"batchmean"``: sum over classes, mean over the valid rows (the true KL per example);
        ``"sum"``: sum over the valid rows; ``"none"``: one value per row, 0 for left-out rows.
        A batch with no valid row gives 0 (and zero gradient), never 0/0 = NaN.
    axis : int, default -1
        The class axis.
    mask : bool array, optional
        Deprecated spelling of ``where`` (a DeprecationWarning); it will be removed in a future
        release.

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
    >>> float(kd_loss(s, t, where=np.array([False, False])))  # nothing to learn from: 0, not NaN
    0.0
    """
    func = "kd_loss"
    where = where_alias(where, mask, func)
    alpha_r, beta_r = check_options(func, alpha=alpha, labels=labels, divergence=divergence,
                                    beta=beta, t2_scale=t2_scale, ignore_index=ignore_index,
                                    reduction=reduction)
    args = prepare(student_logits, teacher_logits, temperature,
                   teacher_temperature=teacher_temperature, labels=labels, where=where,
                   ignore_index=ignore_index, axis=axis, func=func)
    xp, s, t, compute, out = args.xp, args.s, args.t, args.compute, args.out
    if s.dtype != compute:
        s = xp.astype(s, compute)
    if t.dtype != compute:
        t = xp.astype(t, compute)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        loss = _kd_rows(xp, s, t, args.T, args.Tt, args.labels, args.valid, alpha_r, divergence,
                        beta_r, t2_scale)
        loss = _reduce(xp, loss, args.valid, reduction, compute)
    if loss.dtype != out:
        loss = xp.astype(loss, out)
    return loss


def _kd_rows(xp: Namespace, s: Any, t: Any, T: Any, Tt: Any, labels: Any,
             valid: Any, alpha: float, divergence: str, beta: float, t2_scale: bool) -> Any:
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


def _reduce(xp: Namespace, rows: Any, valid: Any, reduction: str, compute: DType) -> Any:
    """The per-row losses reduced: as they are, summed, or averaged over the valid rows."""
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
