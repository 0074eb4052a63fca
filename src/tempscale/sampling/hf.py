"""A drop-in for Hugging Face transformers: tempscale's sampler chain as a ``LogitsProcessor``.

transformers is imported only when :func:`logits_processor` is called (``import tempscale``
and ``import tempscale.sampling.hf`` work without it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._validation import param_error

__all__ = ["logits_processor"]

_CLASS: Any = None


def _processor_class() -> Any:
    """The ``transformers.LogitsProcessor`` subclass (built once, on first use)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import torch
    from transformers import LogitsProcessor

    from . import warp

    class TempscaleLogitsProcessor(LogitsProcessor):
        """tempscale's :func:`~tempscale.sampling.warp` chain as a transformers processor."""

        def __init__(self, temperature: Any, options: dict[str, Any]) -> None:
            self.temperature = temperature
            self.options = options

        def __repr__(self) -> str:
            opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
            return f"TempscaleLogitsProcessor(temperature={self.temperature!r}, {opts})"

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            opts = dict(self.options)
            T = self.temperature
            pr = opts.get("xtc_probability")
            if opts.get("xtc_threshold") is not None and pr is not None and pr not in (0, 1):
                # a random XTC: one coin per row from torch's global generator (seeded by the user)
                u = torch.rand((scores.shape[0],), device=scores.device, dtype=torch.float64)
                opts["xtc_probability"] = (u < pr).to(torch.float64)
            logp = warp(scores, T, log=True, **opts)
            kept = torch.isfinite(logp)
            ninf = torch.full((), -float("inf"), dtype=scores.dtype, device=scores.device)
            if opts.get("dynatemp_range"):
                # the per-row temperature is the chain's: its log-probabilities are the logits
                return torch.where(kept, logp.to(scores.dtype), ninf)
            if T == 0:  # greedy: the one kept token
                return torch.where(kept, torch.zeros_like(scores), ninf)
            return torch.where(kept, scores / T if T != 1 else scores, ninf)

    _CLASS = TempscaleLogitsProcessor
    return _CLASS


def logits_processor(temperature: float = 1.0, *, top_k: int | None = None,
                     top_p: float | None = None, min_p: float | None = None,
                     typical_p: float | None = None, epsilon: float | None = None,
                     eta: float | None = None, top_n_sigma: float | None = None,
                     top_h: float | None = None, dynatemp_range: float | None = None,
                     dynatemp_exponent: float = 1.0, xtc_threshold: float | None = None,
                     xtc_probability: float | None = None,
                     order: str | Sequence[str] = "temperature-first",
                     min_tokens_to_keep: int = 1) -> Any:
    r"""tempscale's sampler chain as a ``transformers.LogitsProcessor``.

    Use it in ``model.generate(do_sample=True, top_k=0, logits_processor=[...])`` (``top_k=0``
    switches off transformers' default top-k of 50) in place of transformers' own warpers.

    Parameters
    ----------
    temperature : float, default 1.0
        As in :func:`tempscale.sampling.warp`; ``0`` keeps only the first maximal logit.
    top_k, top_p, min_p, typical_p, epsilon, eta, top_n_sigma, top_h
        As in :func:`tempscale.sampling.warp` (transformers' warpers' rules).
    dynatemp_range, dynatemp_exponent, xtc_threshold, xtc_probability
        As in :func:`tempscale.sampling.sample`.  A random XTC (``0 < xtc_probability < 1``)
        draws one coin per row from torch's global generator (reproducible under
        ``torch.manual_seed``).
    order, min_tokens_to_keep
        As in :func:`tempscale.sampling.warp`.

    Returns
    -------
    transformers.LogitsProcessor
        Called as ``processor(input_ids, scores)``: ``scores`` (batch, vocabulary) in, the
        filtered scores out: ``-inf`` outside the kept set and, inside it, ``scores / T`` as
        transformers' ``TemperatureLogitsWarper`` computes them (so ``softmax`` of the output
        is the warped distribution, the same numbers as transformers' chain for the rules it
        has); with dynamic temperature, the warped log-probabilities (the per-row ``T`` is the
        chain's own).

    Notes
    -----
    The arguments are checked when the processor is created (on a dummy row), so that a bad
    value fails here and not inside ``generate``.

    Examples
    --------
    >>> from tempscale.sampling.hf import logits_processor
    >>> proc = logits_processor(0.7, top_k=50, top_p=0.9)   # doctest: +SKIP
    >>> model.generate(**inputs, do_sample=True, top_k=0, logits_processor=[proc])  # doctest: +SKIP
    """
    func = "logits_processor"
    options: dict[str, Any] = dict(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                                   epsilon=epsilon, eta=eta, top_n_sigma=top_n_sigma, top_h=top_h,
                                   dynatemp_range=dynatemp_range,
                                   dynatemp_exponent=dynatemp_exponent,
                                   xtc_threshold=xtc_threshold, xtc_probability=xtc_probability,
                                   order=order, min_tokens_to_keep=min_tokens_to_keep)
    try:
        import transformers  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("tempscale.sampling.hf.logits_processor needs transformers "
                          "(pip install transformers)") from err
    import numpy as np

    from . import sample

    # validate every argument once, on a dummy row (errors name logits_processor)
    try:
        sample(np.zeros((1, 2)), temperature, seed=0, **options)
    except (TypeError, ValueError) as err:
        msg = str(err).replace(" of sample ", f" of {func} ")
        raise type(err)(msg) from None
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise param_error("temperature", func, "a float in [0, inf]", temperature, TypeError)
    return _processor_class()(float(temperature), options)
