"""The sampler chain: the two named orders and explicit sequences of rule names (``order=``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._validation import param_error

#: the truncation rules, in the order the named chains apply them
FILTERS = ("top_n_sigma", "top_h", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta", "xtc")
#: every rule name ``order=`` accepts (the filters and the temperature)
RULES = ("temperature",) + FILTERS
NAMED = {
    "temperature-first": ("temperature",) + FILTERS,
    "temperature-last": FILTERS + ("temperature",),
}
#: other spellings (llama.cpp's ``--samplers`` names, hyphens for underscores)
ALIASES = {"temp": "temperature", "temp_ext": "temperature", "typ_p": "typical_p",
           "typical": "typical_p", "nucleus": "top_p", "top_nsigma": "top_n_sigma",
           "epsilon_cutoff": "epsilon", "eta_cutoff": "eta"}


def _expect() -> str:
    names = ", ".join(repr(n) for n in RULES)
    return ("one of {'temperature-first', 'temperature-last'}, or a sequence (or a "
            f"';'-separated string) of distinct rule names from {{{names}}}")


def parse(order: Any, func: str) -> tuple[str, tuple[str, ...]]:
    """``(name, chain)``: the named order (or ``"custom"``) and the full chain of rule names.

    A sequence lists rules in the order they run (like llama.cpp's ``--samplers``); aliases such
    as ``"temp"``, ``"typ_p"``, ``"top-k"`` are accepted.  Rules not listed are not applied
    (:func:`check_active` refuses an active parameter whose rule is missing).
    """
    if isinstance(order, str):
        if order in NAMED:
            return order, NAMED[order]
        items: Sequence[Any] = [s for s in order.split(";") if s.strip()] or [order]
    elif isinstance(order, Sequence) and not isinstance(order, (bytes, bytearray)):
        items = order
    else:
        raise param_error("order", func, _expect(), order, TypeError)
    chain: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise param_error("order", func, _expect(), order, TypeError)
        name = item.strip().replace("-", "_").lower()
        name = ALIASES.get(name, name)
        if name not in RULES:
            raise param_error("order", func, _expect() + f" ({item!r} is not a rule name)",
                              order if isinstance(order, str) else list(order))
        if name in chain:
            raise param_error("order", func, _expect() + f" ({name!r} appears twice)",
                              order if isinstance(order, str) else list(order))
        chain.append(name)
    return "custom", tuple(chain)


def check_active(chain: tuple[str, ...], active: dict[str, Any], order: Any, func: str) -> None:
    """An active rule (its parameter set and not "off") must be in ``chain``."""
    for name, value in active.items():
        if name not in chain:
            raise param_error("order", func, f"a chain listing every active rule ({name!r} is set "
                              f"to {value!r} but not in the chain)",
                              order if isinstance(order, str) else list(order))


def reduce(chain: tuple[str, ...], active: set[str]) -> str:
    """The named order equivalent to ``chain`` for the ``active`` rules, else ``"custom"``.

    Rules that are off do not change the result, so ``["top_k", "top_p", "temperature"]`` with
    only those rules on is ``"temperature-last"`` (and takes its fast paths).
    """
    seq = tuple(r for r in chain if r in active or r == "temperature")
    for name, full in NAMED.items():
        ref = tuple(r for r in full if r in active or r == "temperature")
        if "temperature" not in seq:
            if ref[1:] == seq or ref[:-1] == seq:
                return name
        elif seq == ref:
            return name
    return "custom"
