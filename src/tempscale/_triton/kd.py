r"""Per-row distillation loss and its student gradient in one Triton kernel (for ``KDLoss``).

:func:`kd_rows` computes, for each row ``i`` of a 2-D chunk, the divergence between the
tempered teacher and student distributions,

* ``"forward"``: :math:`\mathrm{KL}(p \| q) = \sum_{p_j \ne 0} p_j (\log p_j - \log q_j)`,
* ``"reverse"``: :math:`\mathrm{KL}(q \| p) = \sum_{q_j \ne 0} q_j (\log q_j - \log p_j)`,
* ``"jsd"``: :math:`\beta\,\mathrm{KL}(p \| m) + (1 - \beta)\,\mathrm{KL}(q \| m)`,
  :math:`m = \beta p + (1 - \beta) q` (``beta=0`` is the forward KL, ``beta=1`` the reverse
  one, as in :func:`tempscale.distill.kd_loss`),

with :math:`\log q = \mathrm{log\_softmax}(s, T_s)` and :math:`\log p =
\mathrm{log\_softmax}(t, T_t)` under the library's contract, and the gradient of that row's
value with respect to the student's logits.  Neither the :math:`T^2` factor nor a reduction is
applied: ``kd_loss(s, t, T, teacher_temperature=Tt, divergence=..., beta=..., t2_scale=False,
reduction="none")`` is ``kd_rows(s, t, T, Tt, ...)[0]``.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import check_choice, check_scalar, param_error
from . import _kernels as K
from ._common import check_logits, check_temp, launch_config
from .softmax import quiet

__all__ = ["kd_rows"]

_DIVS = {"forward": K.DIV_FORWARD, "reverse": K.DIV_REVERSE, "jsd": K.DIV_JSD}


def kd_rows(student: Any, teacher: Any, T_student: Any, T_teacher: Any, *,
            divergence: str = "forward", beta: float = 0.5,
            _block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-row divergence and its gradient in the student's logits, in one kernel pass per row block.

    Parameters
    ----------
    student, teacher : torch.Tensor
        Logits of shape ``(rows, classes)`` (float32, float16 or bfloat16, CUDA; CPU under
        ``TRITON_INTERPRET=1``); ``-inf`` entries are masked classes.
    T_student, T_teacher : float or torch.Tensor
        Temperatures: a float in ``[0, inf]`` or per-row tensors ``(rows,)`` / ``(rows, 1)``
        (values not checked on the host: a negative or NaN entry gives a NaN row).
    divergence : {"forward", "reverse", "jsd"}
    beta : float in [0, 1]
        The JSD weight (``0``: forward KL, ``1``: reverse KL).

    Returns
    -------
    loss_rows : torch.Tensor
        float32, shape ``(rows,)``: each row's divergence (not scaled by ``T**2``, not reduced).
    grad_student : torch.Tensor
        ``d loss_rows[i] / d student[i]``, the student's shape and dtype (contiguous).

    Notes
    -----
    Contract cases, row by row, as ``kd_loss`` computes them: ``T = 0`` (mass on the maxima),
    ``T = inf`` (uniform over the unmasked classes), ``-inf`` (masked) classes, ``+inf``
    logits.  A teacher class with mass that the student masks makes the forward KL ``inf``, a
    student class with mass that the teacher masks makes the reverse KL ``inf`` (the JSD stays
    finite).  A fully masked teacher row has no mass: forward KL 0, gradient 0.  A NaN in
    either row makes its loss NaN; a NaN student row has a zero gradient, a NaN teacher row a
    NaN one (as the generic path's autograd gives).  Student rows at ``T = 0`` or with a
    ``+inf`` logit have a zero gradient (their distribution is constant).
    """
    func = "kd_rows"
    check_logits(student, func, "student")
    check_logits(teacher, func, "teacher")
    if teacher.shape != student.shape or teacher.device != student.device:
        raise param_error("teacher", func, f"a tensor of the student's shape "
                          f"{tuple(student.shape)} on {student.device}",
                          f"shape {tuple(teacher.shape)} on {teacher.device}")
    check_choice(divergence, tuple(_DIVS), "divergence", func)
    b = check_scalar(beta, "beta", func, lo=0.0, hi=1.0)
    if divergence == "jsd" and b == 0.0:
        divergence = "forward"
    elif divergence == "jsd" and b == 1.0:
        divergence = "reverse"
    rows, n = student.shape
    ts = check_temp(T_student, func, rows=rows, device=student.device, param="T_student")
    tt = check_temp(T_teacher, func, rows=rows, device=student.device, param="T_teacher")
    loss = torch.zeros((rows,), dtype=torch.float32, device=student.device)
    grad = torch.empty((rows, n), dtype=student.dtype, device=student.device)
    if rows == 0 or n == 0:
        return loss, grad
    cfg = launch_config(rows, n, _block, "kd")
    with quiet():
        K._kd_fwd_bwd[cfg.grid](
            student, teacher, loss, grad, ts.tensor, ts.scalar, tt.tensor, tt.scalar, rows, n,
            student.stride(0), student.stride(1), teacher.stride(0), teacher.stride(1),
            ts.stride, tt.stride, b,
            DIV=_DIVS[divergence], HAS_TS=ts.tensor is not None, HAS_TT=tt.tensor is not None,
            SINGLE=cfg.single, R=cfg.R, BLOCK=cfg.BLOCK, num_warps=cfg.num_warps, enable_fp_fusion=False)
    return loss, grad
