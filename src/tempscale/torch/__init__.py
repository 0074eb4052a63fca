r"""PyTorch distillation loss that stays lean in memory for large vocabularies.

:class:`KDLoss` (an ``nn.Module``) and :func:`fused_kd_loss` compute exactly the loss of
:func:`tempscale.distill.kd_loss` -- same options, same numerical contract -- but walk the rows in
chunks and compute the loss *and the student's gradient* chunk by chunk in the forward pass, as
Liger-Kernel and Apple's Cut Cross-Entropy do.  Nothing batch x vocab sized is kept except the
gradient itself, which autograd then receives without a copy, so the extra memory of forward +
backward stays close to one batch x vocab buffer (the naive ``F.kl_div`` formulation keeps
several).

:class:`FusedLinearKDLoss` goes one step further for language models: it takes the student's
hidden states and output-layer weight and never holds more than one chunk of logits.
:func:`tempscale.torch.distributed.vocab_parallel_kd_loss` computes the loss on a vocabulary
sharded over processes (tensor parallelism).

This module imports torch; ``import tempscale`` does not import it.  Use
``from tempscale.torch import KDLoss``.

Gradients flow into the student logits only.  When the teacher logits or a tensor temperature
require gradients (rare: the teacher is usually frozen), the loss falls back to the generic
autograd implementation :func:`tempscale.distill.kd_loss` -- correct, but not memory-lean.
Second-order gradients (``torch.autograd.grad(..., create_graph=True)``: gradient penalties,
MAML inner steps, ``gradgradcheck``) are supported: a backward pass run with ``create_graph=True``
recomputes the gradient with the differentiable generic implementation instead of handing over
the stored one.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._kd import KDLoss, fused_kd_loss

__all__ = ["FusedLinearKDLoss", "KDLoss", "distributed", "fused_kd_loss"]

#: public names defined in submodules, imported on first use (each one imports only torch)
_LAZY = {"FusedLinearKDLoss": "._fused_linear"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name == "distributed":
        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
