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

import contextvars
import math
import sys
from typing import Any, NamedTuple

import numpy as np

from . import _compat, _config
from ._compat import is_concrete, is_python_scalar
from ._kd_args import check_num_items, check_options, prepare, prepare_sparse, where_alias
from ._softmax import log_softmax, logsumexp
from ._typing import ArrayLike, DType, Namespace, Temperature
from ._validation import check_bool, check_choice, param_error

__all__ = ["SparseTeacher", "kd_loss", "sparse_kd_loss"]


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
            axis: int = -1, mask: ArrayLike | None = None, num_items_in_batch: Any = None,
            shift_labels: bool = False, dtype: DType | None = None) -> Any:
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
    num_items_in_batch : int, float or 0-d array, optional
        With ``reduction="batchmean"``: divide the sum over the valid rows by this count instead
        of by this call's own number of valid rows (Hugging Face's trainers pass the number of
        valid tokens of the whole batch, over every gradient-accumulation step and process).
        The losses of the micro-batches then *add up* to the full batch's loss, and so do their
        gradients.  Only with ``reduction="batchmean"``.
    shift_labels : bool, default False
        For causal language models: ``labels`` of shape ``(..., S)`` are the tokens of the
        sequence, and position ``t`` predicts label ``t + 1`` (Hugging Face's
        ``ForCausalLMLoss``).  The labels are shifted left by one and the last position, which
        has nothing to predict, gets ``ignore_index``: it is left out of the whole loss (soft
        term too) and of its normaliser, and is 0 with ``reduction="none"``.  The sequence axis
        is the last axis of the row shape.  Needs ``labels``.
    dtype : dtype, optional
        The loss's dtype.  Default: the logits' floating dtype (float16/bfloat16 are computed
        in float32 and the loss is rounded back to their dtype); pass the library's float32
        (``torch.float32``, ``jnp.float32``, ...) for a float32 loss from 16-bit logits, as
        mixed-precision training wants.  The computation runs in float32 or in ``dtype`` if
        wider, never below the logits' own precision; gradients keep the logits' dtypes.

    Returns
    -------
    array
        A scalar (or the row shape for ``reduction="none"``) in ``dtype`` (default: the
        logits' floating dtype).

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

    **PyTorch.** On torch tensors this function takes the chunked closed-form path of
    :func:`tempscale.torch.fused_kd_loss` (loss and gradient computed together, chunk by chunk;
    about one batch x vocab buffer of extra memory, the gradient), whenever it applies: not
    inside a ``torch.func`` transform, nor with a temperature tensor that requires gradients
    (those take the generic implementation), and ``tempscale.config(torch_fused=False)``
    turns it off.  A graph retained for a second backward (``retain_graph=True``) recomputes
    the gradient the second time.  Under ``torch.compile`` the loss is a custom op
    (``fullgraph=True`` works).

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

    Gradient accumulation: with the whole batch's count of valid rows, the micro-batches'
    losses add up to the full batch's loss.

    >>> a = kd_loss(s[:1], t[:1], 2.0, num_items_in_batch=2)
    >>> b = kd_loss(s[1:], t[1:], 2.0, num_items_in_batch=2)
    >>> bool(np.isclose(a + b, kd_loss(s, t, 2.0)))
    True

    A causal model: logits (batch, sequence, classes), labels (batch, sequence) of the tokens;
    position ``t`` predicts token ``t + 1``.

    >>> rng = np.random.default_rng(0)
    >>> s3, t3 = rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 4, 5))
    >>> tokens = rng.integers(0, 5, size=(2, 4))
    >>> shifted = kd_loss(s3, t3, 2.0, labels=tokens, shift_labels=True)
    >>> manual = kd_loss(s3[:, :-1], t3[:, :-1], 2.0, labels=tokens[:, 1:])
    >>> bool(np.isclose(shifted, manual))
    True
    """
    func = "kd_loss"
    where = where_alias(where, mask, func)
    if _is_torch_tensor(student_logits) and (_torch_compiling() or _config.current().torch_fused):
        from .torch._kd import kd_loss_torch

        return kd_loss_torch(
            student_logits,  # type: ignore[arg-type]  # a torch tensor, checked above
            teacher_logits, temperature, labels=labels, alpha=alpha,
            divergence=divergence, beta=beta, teacher_temperature=teacher_temperature,
            t2_scale=t2_scale, ignore_index=ignore_index, where=where, reduction=reduction,
            axis=axis, chunk_size=None, inplace="recompute",
            num_items_in_batch=num_items_in_batch, shift_labels=shift_labels, dtype=dtype,
            missing="zero", func=func)
    return kd_loss_generic(
        student_logits, teacher_logits, temperature, labels=labels, alpha=alpha,
        divergence=divergence, beta=beta, teacher_temperature=teacher_temperature,
        t2_scale=t2_scale, ignore_index=ignore_index, where=where, reduction=reduction,
        axis=axis, num_items_in_batch=num_items_in_batch, shift_labels=shift_labels,
        dtype=dtype, func=func)


def _is_torch_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _torch_compiling() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


def kd_loss_generic(student_logits: ArrayLike, teacher_logits: ArrayLike,
                    temperature: Temperature = 1.0, *, labels: ArrayLike | None = None,
                    alpha: float | None = None, divergence: str = "forward", beta: float = 0.5,
                    teacher_temperature: Temperature | None = None, t2_scale: bool = True,
                    ignore_index: int = -100, where: ArrayLike | None = None,
                    reduction: str = "batchmean", axis: int = -1, num_items_in_batch: Any = None,
                    shift_labels: bool = False, dtype: DType | None = None,
                    func: str = "kd_loss") -> Any:
    """:func:`kd_loss` by the generic Array-API implementation (every library, autograd)."""
    alpha_r, beta_r = check_options(func, alpha=alpha, labels=labels, divergence=divergence,
                                    beta=beta, t2_scale=t2_scale, ignore_index=ignore_index,
                                    reduction=reduction)
    check_bool(shift_labels, "shift_labels", func)
    num_items = check_num_items(num_items_in_batch, reduction, func)
    args = prepare(student_logits, teacher_logits, temperature,
                   teacher_temperature=teacher_temperature, labels=labels, where=where,
                   ignore_index=ignore_index, axis=axis, func=func, shift_labels=shift_labels,
                   dtype=dtype)
    xp, s, t, compute, out = args.xp, args.s, args.t, args.compute, args.out
    if s.dtype != compute:
        s = xp.astype(s, compute)
    if t.dtype != compute:
        t = xp.astype(t, compute)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        loss = _kd_rows(xp, s, t, args.T, args.Tt, args.labels, args.valid, alpha_r, divergence,
                        beta_r, t2_scale)
        loss = _reduce(xp, loss, args.valid, reduction, compute, num_items)
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
    return _mix_rows(xp, soft, s, logq, T, labels, valid, alpha, t2_scale)


def _mix_rows(xp: Namespace, soft: Any, s: Any, logq: Any, T: Any, labels: Any, valid: Any,
              alpha: float, t2_scale: bool) -> Any:
    """The soft term (times T^2) mixed with the hard-label term; 0 at left-out rows.

    ``s`` are the student logits (left-out rows already zeroed), ``logq`` their tempered
    log-softmax.
    """
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


def _reduce(xp: Namespace, rows: Any, valid: Any, reduction: str, compute: DType,
            num_items: Any = None) -> Any:
    """The per-row losses reduced: as they are, summed, or averaged over the valid rows (or
    divided by ``num_items``, the valid rows of the whole accumulated batch)."""
    if reduction == "none":
        return rows
    total = xp.sum(rows)
    if reduction == "sum":
        return total
    if num_items is not None:
        if is_python_scalar(num_items):
            return total / num_items
        n_all = _compat.as_array(num_items, xp, like=total, param="num_items_in_batch")
        return total / xp.astype(xp.reshape(n_all, ()), compute)
    if valid is None:
        n = max(math.prod(rows.shape), 1)
        return total / n
    n = xp.sum(xp.astype(valid, compute))
    return total / xp.maximum(n, xp.ones_like(n))


# --------------------------------------------------------------------------------------------
# sparse (top-k) teachers
# --------------------------------------------------------------------------------------------
class SparseTeacher(NamedTuple):
    """A teacher stored sparsely: its top-k class ``indices`` and their ``values`` per row.

    ``values`` are the teacher's logits or log-probabilities at those classes (shape
    ``(..., k)``, like ``indices``); pass it to :func:`sparse_kd_loss` as ``teacher=``.
    """

    indices: Any
    values: Any


MISSING = ("zero", "uniform")


def sparse_kd_loss(student_logits: ArrayLike, teacher_indices: ArrayLike | None = None,
                   teacher_values: ArrayLike | None = None, temperature: Temperature = 1.0, *,
                   teacher: SparseTeacher | None = None, missing: str = "zero",
                   labels: ArrayLike | None = None, alpha: float | None = None,
                   ignore_index: int = -100, reduction: str = "batchmean", t2_scale: bool = True,
                   num_items_in_batch: Any = None, where: ArrayLike | None = None,
                   teacher_temperature: Temperature | None = None, shift_labels: bool = False,
                   divergence: str = "forward", dtype: DType | None = None) -> Any:
    r"""Distillation loss from a sparse teacher: only its top-k classes per row are known.

    Offline distillation stores, per token, the teacher's top-k class indices and their logits
    or log-probabilities instead of the whole vocabulary.  The student's logits are complete
    (classes along the last axis); its tempered log-probabilities
    :math:`\log q = \mathrm{log\_softmax}(s / T)` are taken over all :math:`V` classes.  The
    loss is :func:`kd_loss`'s forward KL with the teacher's distribution :math:`p` rebuilt from
    the :math:`k` known values :math:`v_1, \dots, v_k` (at classes :math:`I`):

    .. math::

        \ell = \alpha \, T^2 \sum_i p_i (\log p_i - \log q_i) + (1 - \alpha)\,\mathrm{CE}(s, y).

    ``missing="zero"``: the classes outside the top-k get no mass,

    .. math::

        p_i = \frac{e^{v_i / T_t}}{\sum_{j \in I} e^{v_j / T_t}} \; (i \in I),
        \qquad p_i = 0 \; (i \notin I),

    which is *exactly* :func:`kd_loss` on the dense teacher logits with :math:`v` at the
    top-k classes and :math:`-\infty` elsewhere.  ``values`` may be logits or log-probabilities
    (the softmax is shift-invariant).

    ``missing="uniform"``: ``values`` must be the teacher's log-probabilities at
    :math:`T_t = 1` (normalised over the whole vocabulary, as stored by offline-distillation
    pipelines).  The mass they leave, :math:`m = \max(0, 1 - \sum_{j \in I} e^{v_j})`, is
    spread uniformly over the :math:`V - k` other classes *at temperature 1*, giving each the
    log-probability :math:`u = \log\frac{m}{V - k}`, and the whole rebuilt distribution is then
    tempered:

    .. math::

        p_i = \frac{e^{w_i / T_t}}{\sum_{j \in I} e^{v_j / T_t} + (V - k)\, e^{u / T_t}},
        \qquad w_i = v_i \; (i \in I), \quad w_i = u \; (i \notin I),

    which is exactly :func:`kd_loss` on the dense teacher log-probabilities :math:`w`.  Why
    this order: tempering acts on the teacher's distribution, and the stored values describe
    it at :math:`T = 1`; the only assumption is the shape of the unknown tail (flat), after
    which :math:`T_t` sharpens or flattens the tail together with the top-k, as it would the
    true teacher.  Spreading the mass *after* tempering would keep the tail's total mass
    fixed while :math:`T_t` reshapes the rest, which no tempered distribution does.  At
    ``k = V`` both modes are the dense loss.  The tail costs :math:`O(V)` (a sum of the
    student's log-probabilities), never a dense teacher array.

    Parameters
    ----------
    student_logits : array
        Student logits ``(..., V)``, classes along the last axis; gradients flow into it
        (PyTorch autograd, ``jax.grad``).
    teacher_indices : int array
        The teacher's top-k classes per row, shape ``(..., k)`` with ``1 <= k <= V``, distinct
        within a row (checked, with their range, where concrete).
    teacher_values : array
        The teacher's logits or log-probabilities at ``teacher_indices``, same shape.  A NumPy
        array joins the student's library.  A ``-inf`` value gives that class no mass.
    temperature : float or array, default 1.0
        The student's temperature ``T`` in ``(0, inf)``, or one per row (the row shape, or
        with a size-1 last axis).
    teacher : SparseTeacher, optional
        ``(indices, values)`` in one object, instead of the two arrays.
    missing : {"zero", "uniform"}, default "zero"
        Where the mass the top-k leaves goes: nowhere, or uniformly over the other classes
        (see above).
    labels, alpha, ignore_index, reduction, t2_scale, where, num_items_in_batch, shift_labels
        As in :func:`kd_loss`.
    teacher_temperature : float or array, optional
        The teacher's temperature :math:`T_t` (default: ``temperature``).  With
        ``missing="zero"`` it may be ``0`` or ``inf`` (the argmax, or uniform over the top-k);
        with ``missing="uniform"`` it must lie in ``(0, inf)``.
    divergence : {"forward"}, default "forward"
        Only the forward KL (what a sparse teacher supports without its full distribution).
    dtype : dtype, optional
        The loss's dtype, as in :func:`kd_loss` (e.g. float32 from bfloat16 logits).

    Returns
    -------
    array
        A scalar (or the row shape for ``reduction="none"``) in the logits' floating dtype.

    See Also
    --------
    kd_loss : the same loss from dense teacher logits.

    Notes
    -----
    **PyTorch.** On torch tensors this function takes the lean chunked path of
    :class:`tempscale.torch.KDLoss` with a :class:`SparseTeacher`: the teacher is made dense
    one chunk of rows at a time and the loss and its gradient are computed together, so the
    extra memory is about one batch x vocab buffer (the gradient) instead of the generic
    implementation's several.  It applies whenever it can: not inside a ``torch.func``
    transform or ``torch.compile``, nor with teacher values or a temperature tensor that
    require gradients (those take the generic implementation, with the same values), and
    ``tempscale.config(torch_fused=False)`` turns it off.

    References
    ----------
    .. [1] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", 2015.
    .. [2] A. Anshumann et al., "Sparse Logit Sampling: Accelerating Knowledge Distillation in
       LLMs", ACL 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.distill import kd_loss, sparse_kd_loss, SparseTeacher
    >>> np.set_printoptions(precision=4)
    >>> s = np.array([[1.0, 2.0, 0.5, 0.0], [0.0, 0.0, 3.0, 1.0]])
    >>> idx = np.array([[1, 0], [2, 3]])                 # the teacher's top-2 classes
    >>> logp = np.array([[-0.4, -1.3], [-0.2, -2.0]])    # its log-probabilities there
    >>> sparse_kd_loss(s, idx, logp, 2.0, reduction="none")
    array([1.684 , 1.1335])
    >>> dense = np.full((2, 4), -np.inf)                 # the same, from a dense teacher
    >>> np.put_along_axis(dense, idx, logp, axis=-1)
    >>> kd_loss(s, dense, 2.0, reduction="none")
    array([1.684 , 1.1335])
    >>> float(sparse_kd_loss(s, teacher=SparseTeacher(idx, logp), missing="uniform"))
    0.05233...
    """
    func = "sparse_kd_loss"
    check_choice(divergence, ("forward",), "divergence", func)
    check_choice(missing, MISSING, "missing", func)
    check_bool(shift_labels, "shift_labels", func)
    if teacher is not None:
        if teacher_indices is not None or teacher_values is not None:
            raise param_error("teacher", func, "None when teacher_indices and teacher_values "
                              "are given (pass one or the other)", "a SparseTeacher", TypeError)
        if not isinstance(teacher, tuple) or len(teacher) != 2:
            raise param_error("teacher", func, "a SparseTeacher(indices, values)",
                              type(teacher).__name__, TypeError)
        teacher_indices, teacher_values = teacher
    if teacher_indices is None or teacher_values is None:
        raise param_error("teacher_values" if teacher_indices is not None else "teacher_indices",
                          func, "an array (or pass teacher=SparseTeacher(indices, values))",
                          None, TypeError)
    if (_is_torch_tensor(student_logits) and _config.current().torch_fused
            and not _torch_compiling() and not _SPARSE_LEAN_ACTIVE.get()):
        from .torch._kd import kd_loss_torch

        # the lean chunked path of tempscale.torch.KDLoss; what it cannot do (torch.func
        # transforms, a teacher or temperature requiring grad, empty inputs) it hands back to
        # sparse_kd_loss, which this flag then sends to the generic implementation
        token = _SPARSE_LEAN_ACTIVE.set(True)
        try:
            return kd_loss_torch(
                student_logits,  # type: ignore[arg-type]  # a torch tensor, checked above
                SparseTeacher(teacher_indices, teacher_values), temperature, labels=labels,
                alpha=alpha, divergence="forward", beta=0.5,
                teacher_temperature=teacher_temperature, t2_scale=t2_scale,
                ignore_index=ignore_index, where=where, reduction=reduction, axis=-1,
                chunk_size=None, inplace="recompute", num_items_in_batch=num_items_in_batch,
                shift_labels=shift_labels, dtype=dtype, missing=missing, func=func)
        finally:
            _SPARSE_LEAN_ACTIVE.reset(token)
    return sparse_kd_loss_generic(
        student_logits, teacher_indices, teacher_values, temperature, missing=missing,
        labels=labels, alpha=alpha, ignore_index=ignore_index, reduction=reduction,
        t2_scale=t2_scale, num_items_in_batch=num_items_in_batch, where=where,
        teacher_temperature=teacher_temperature, shift_labels=shift_labels, dtype=dtype,
        func=func)


# set while sparse_kd_loss runs the torch lean path, whose own fallback calls sparse_kd_loss
_SPARSE_LEAN_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tempscale_sparse_kd_lean", default=False)


def sparse_kd_loss_generic(student_logits: ArrayLike, teacher_indices: ArrayLike,
                           teacher_values: ArrayLike, temperature: Temperature = 1.0, *,
                           missing: str = "zero", labels: ArrayLike | None = None,
                           alpha: float | None = None, ignore_index: int = -100,
                           reduction: str = "batchmean", t2_scale: bool = True,
                           num_items_in_batch: Any = None, where: ArrayLike | None = None,
                           teacher_temperature: Temperature | None = None,
                           shift_labels: bool = False, dtype: DType | None = None,
                           func: str = "sparse_kd_loss") -> Any:
    """:func:`sparse_kd_loss` by the generic Array-API implementation (every library,
    autograd, ``torch.func`` transforms)."""
    check_choice(missing, MISSING, "missing", func)
    check_bool(shift_labels, "shift_labels", func)
    alpha_r, _ = check_options(func, alpha=alpha, labels=labels, divergence="forward", beta=0.5,
                               t2_scale=t2_scale, ignore_index=ignore_index, reduction=reduction)
    num_items = check_num_items(num_items_in_batch, reduction, func)
    args = prepare_sparse(student_logits, teacher_indices, teacher_values, temperature,
                          teacher_temperature=teacher_temperature,
                          teacher_edges=missing == "zero", labels=labels, where=where,
                          ignore_index=ignore_index, shift_labels=shift_labels, func=func,
                          dtype=dtype)
    xp, s, v, compute, out = args.xp, args.s, args.v, args.compute, args.out
    if s.dtype != compute:
        s = xp.astype(s, compute)
    if v.dtype != compute:
        v = xp.astype(v, compute)
    idx = args.idx if args.idx.dtype == xp.int64 else xp.astype(args.idx, xp.int64)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        rows = _sparse_rows(xp, s, idx, v, args.T, args.Tt, args.labels, args.valid, alpha_r,
                            t2_scale, missing)
        loss = _reduce(xp, rows, args.valid, reduction, compute, num_items)
    if loss.dtype != out:
        loss = xp.astype(loss, out)
    return loss


def _take(xp: Namespace, a: Any, idx: Any) -> Any:
    """``a[..., idx]`` row by row (``idx`` of shape ``(..., k)``)."""
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(a, idx, axis=-1)
    # pragma: no cover - every supported namespace has take_along_axis
    classes = xp.arange(a.shape[-1], device=_compat.device(a))  # pragma: no cover
    onehot = xp.expand_dims(idx, axis=-1) == classes  # pragma: no cover
    return xp.sum(xp.where(onehot, xp.expand_dims(a, axis=-2), xp.zeros_like(a[..., None, :])),
                  axis=-1)  # pragma: no cover


def _sparse_rows(xp: Namespace, s: Any, idx: Any, v: Any, T: Any, Tt: Any, labels: Any,
                 valid: Any, alpha: float, t2_scale: bool, missing: str) -> Any:
    """Per-row sparse-teacher loss (row shape), 0 at left-out rows; class axis last."""
    if valid is not None:
        keep = xp.expand_dims(valid, axis=-1)
        s = xp.where(keep, s, xp.zeros_like(s))
        v = xp.where(keep, v, xp.zeros_like(v))
    n_classes, k = int(s.shape[-1]), int(v.shape[-1])
    logq = log_softmax(s, T)
    logq_k = _take(xp, logq, idx)
    if missing == "zero" or k == n_classes:
        logp_k = log_softmax(v, Tt)
        soft = xp.sum(_xlogratio(xp.exp(logp_k), logp_k, logq_k, xp), axis=-1)
        return _mix_rows(xp, soft, s, logq, T, labels, valid, alpha, t2_scale)
    n_rest = n_classes - k
    # the untempered missing mass m = 1 - sum(exp(v)), and its flat share u = log(m / (V - k))
    lse = logsumexp(v, axis=-1, keepdims=True)
    m = xp.maximum(-xp.expm1(lse), xp.zeros_like(lse))
    u = xp.log(m) - math.log(n_rest)
    # tempered: top-k entries v / Tt, the tail's total u / Tt + log(V - k), normalised together
    w: Any = log_softmax(xp.concat([v / Tt, u / Tt + math.log(n_rest)], axis=-1))
    logp_k = w[..., :k]
    log_tail = w[..., k]
    logp_u = log_tail - math.log(n_rest)
    # the mean of the student's log-probabilities over the V - k classes outside the top-k
    rest_mean = (xp.sum(logq, axis=-1) - xp.sum(logq_k, axis=-1)) / n_rest
    soft = (xp.sum(_xlogratio(xp.exp(logp_k), logp_k, logq_k, xp), axis=-1)
            + _xlogratio(xp.exp(log_tail), logp_u, rest_mean, xp))
    return _mix_rows(xp, soft, s, logq, T, labels, valid, alpha, t2_scale)
