r"""Temperature softmax, log-softmax and logsumexp as Triton kernels, for CUDA torch tensors.

These are the kernels that :func:`tempscale.softmax` and friends use for CUDA tensors; call
them directly to test or benchmark them.  Each takes a 2-D ``(rows, classes)`` tensor of
float32, float16 or bfloat16 (returned in the same dtype, computed in float32), a temperature
(a Python float in ``[0, inf]`` or one per row) and an optional boolean mask, and follows the
library's numerical contract exactly (see :mod:`tempscale`): ``T = 0`` shares the mass among
the row's maxima, ``T = inf`` is uniform over the unmasked entries, masked and ``-inf``
entries get no mass, a fully masked row gives zeros (softmax) or ``-inf`` (log-softmax,
logsumexp), a ``+inf`` logit takes the limit, and a NaN makes its row NaN.

Gradients flow into ``x`` and into a temperature tensor (``torch.autograd``).  The kernels
never synchronise with the host: every special case is decided per row on the device, so
a temperature tensor's values are not checked either (a negative or NaN entry gives its row
NaN).  Rows that fit on chip (up to 16384 classes) take one pass; longer rows (vocabularies
up to 256k and beyond) an online (max, sum) pass and an output pass.  ``triton`` is imported
when a function is first called.  With ``TRITON_INTERPRET=1`` in the environment when the
kernels are first loaded (the first call), they run in Triton's interpreter on CPU tensors:
slow, but exact, which is how the test suite checks them without a GPU.
"""

from __future__ import annotations

from typing import Any

__all__ = ["softmax", "log_softmax", "logsumexp"]


def _apply(name: str, x: Any, temperature: Any, mask: Any, block: int | None) -> Any:
    try:
        from ._triton.softmax import apply
    except ImportError as exc:
        if exc.name not in ("triton", "torch"):
            raise
        raise ImportError(f"tempscale.triton.{name} needs the optional dependencies torch and "
                          f"triton (pip install triton); {exc.name} is not installed") from exc
    return apply(name, x, temperature, mask, block)


def softmax(x: Any, temperature: Any = 1.0, *, mask: Any = None, _block: int | None = None) -> Any:
    r"""Softmax with temperature over the last axis, :math:`e^{x_i/T} / \sum_k e^{x_k/T}`.

    Parameters
    ----------
    x : torch.Tensor
        Logits of shape ``(rows, classes)``, float32, float16 or bfloat16, on a CUDA device
        (or on the CPU under ``TRITON_INTERPRET=1``).
    temperature : float or torch.Tensor, default 1.0
        A float in ``[0, inf]``, or per-row temperatures of shape ``(rows,)`` or ``(rows, 1)``
        (on ``x``'s device; gradients flow into it).  Tensor values are not checked on the
        host: a negative or NaN entry makes its row NaN.
    mask : torch.Tensor of bool, optional
        Broadcastable to ``x``; ``False`` entries are excluded, exactly like ``-inf`` logits.

    Returns
    -------
    torch.Tensor
        Probabilities, ``x``'s shape and dtype.

    Examples
    --------
    >>> import torch, tempscale.triton as tt
    >>> x = torch.tensor([[1.0, 2.0, 3.0]], device="cuda")  # doctest: +SKIP
    >>> tt.softmax(x, 0.5)                                   # doctest: +SKIP
    tensor([[0.0159, 0.1173, 0.8668]], device='cuda:0')
    """
    return _apply("softmax", x, temperature, mask, _block)


def log_softmax(x: Any, temperature: Any = 1.0, *, mask: Any = None,
                _block: int | None = None) -> Any:
    r"""Log of the temperature softmax over the last axis, :math:`x_i/T - \log\sum_k e^{x_k/T}`.

    Same parameters as :func:`softmax`.  Masked entries, the non-maximal entries at ``T = 0``
    and every entry of a fully masked row are ``-inf``.

    Returns
    -------
    torch.Tensor
        ``x``'s shape and dtype.

    Examples
    --------
    >>> import torch, tempscale.triton as tt
    >>> tt.log_softmax(torch.tensor([[0.0, 5.0, 5.0]], device="cuda"), 0)  # doctest: +SKIP
    tensor([[   -inf, -0.6931, -0.6931]], device='cuda:0')
    """
    return _apply("log_softmax", x, temperature, mask, _block)


def logsumexp(x: Any, temperature: Any = 1.0, *, mask: Any = None,
              _block: int | None = None) -> Any:
    r"""The smooth maximum :math:`T \log \sum_i e^{x_i/T}` of each row.

    Same parameters as :func:`softmax`.  ``T = 0`` gives the row maximum; a fully masked row
    gives ``-inf``; a NaN makes the row NaN.

    Returns
    -------
    torch.Tensor
        Shape ``(rows,)``, ``x``'s dtype.

    Examples
    --------
    >>> import torch, tempscale.triton as tt
    >>> tt.logsumexp(torch.tensor([[1.0, 2.0, 3.0]], device="cuda"), 0)  # doctest: +SKIP
    tensor([3.], device='cuda:0')
    """
    return _apply("logsumexp", x, temperature, mask, _block)
