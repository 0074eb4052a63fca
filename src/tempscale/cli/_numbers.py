"""Numbers as the ``tempscale`` command reads them, from its arguments and from CSV cells."""

from __future__ import annotations

import math
from collections.abc import Iterable

from ._console import CLIError

__all__ = ["is_number", "parse_float", "parse_floats"]

_ALIASES = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan,
            "+nan": math.nan, "-nan": math.nan, "infinity": math.inf, "+infinity": math.inf,
            "-infinity": -math.inf}


def parse_float(text: str, what: str = "value") -> float:
    """One number; ``inf``/``nan`` spelled out are fine, a finite literal that overflows is not."""
    t = str(text).strip().lower()
    if not t.replace(",", "").strip():
        raise CLIError(f"{what} is empty; give a number")
    if t in _ALIASES:
        return _ALIASES[t]
    try:
        v = float(t)
    except ValueError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise CLIError(f"{what} {shown!r} is not a number") from None
    if math.isinf(v) or math.isnan(v):  # '1e400' (or 'infx' variants float() accepts)
        raise CLIError(f"{what} {text.strip()!r} is out of the float64 range "
                       "(about ±1.8e308); write inf or -inf for an infinite value")
    return v


def parse_floats(items: Iterable[str], what: str = "value") -> list[float]:
    """Numbers separated by commas or spaces, from one or several arguments."""
    out: list[float] = []
    for item in items:
        text = str(item)
        parts = text.replace(",", " ").split()
        if not parts:
            raise CLIError(f"{what} is empty; give a number")
        for part in parts:
            out.append(parse_float(part, what))
    return out


def is_number(text: str) -> bool:
    """Text that reads as a number (overflowing literals included: they are errors, not names)."""
    t = text.strip().lower()
    if t in _ALIASES:
        return True
    try:
        float(t)
    except ValueError:
        return False
    return True
