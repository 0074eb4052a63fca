"""A safeguarded Halley iteration for the root of an increasing function of ``beta > 0``.

The solver knows nothing about logits: it is given the function (the NLL gradient in
``beta = 1/T``) and its first two derivatives, and returns a :class:`Solution` whose
:class:`Status` says how it ended (the degenerate cases included), without raising.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Derivatives", "Solution", "Status", "solve_beta"]

#: ``(g, h, k3)``: the mean gradient, curvature and third derivative at one ``beta``
Derivatives = tuple[float, float, float]


class Status(enum.Enum):
    """How :func:`solve_beta` ended."""

    CONVERGED = "converged"
    MAX_ITER = "max_iter"      # the last iterate after max_iter evaluations
    CONSTANT = "constant"      # zero curvature at the start: every row constant (beta = 1)
    SEPARABLE = "separable"    # the gradient never turns positive (beta = inf, T = 0)
    UNIFORM = "uniform"        # the root is at or below beta = 0 (beta = 0, T = inf)
    UNBOUNDED = "unbounded"    # the expansion passed 1e300 without an upper end (beta = inf)
    NONFINITE = "nonfinite"    # an evaluation gave no finite derivatives


class Solution(NamedTuple):
    beta: float
    status: Status


def _halley_step(g: float, h: float, k3: float, beta: float, lo: float, hi: float) -> float:
    """The next iterate from ``beta`` (NaN when there is none: ``h <= 0``).

    Halley's step ``(-g/h) / (1 - g k3 / (2 h^2))`` (Newton's if the correction is large).
    Downhill (``g > 0``; the gradient is concave in beta) or when the step leaves the bracket,
    Halley's step is taken in ``u = log(beta)`` instead, which overshoots less and never
    crosses 0: ``G(u) = g(e^u)``, ``G' = beta h``, ``G'' = beta h + beta^2 k3``.
    """
    if not h > 0:
        return math.nan
    newton = -g / h
    denom = 1.0 + 0.5 * newton * k3 / h
    step = newton / denom if (math.isfinite(denom) and 0.5 < denom < 2.0) else newton
    new = beta + step
    if beta > 0 and (g > 0 or not lo < new < hi):
        g1 = beta * h
        g2 = g1 + beta * beta * k3
        nu = -g / g1
        den = 1.0 + 0.5 * nu * g2 / g1
        du = nu / den if (math.isfinite(den) and 0.5 < den < 2.0) else nu
        new = beta * math.exp(max(-4.0, min(4.0, du)))
    return new


def solve_beta(evaluate: Callable[[float, bool], Derivatives | None], beta0: float, *,
               tol: float, max_iter: int, precise_from: int,
               degenerate: Callable[[float, float], Status | None] | None = None,
               loose: float | None = None,
               grad0: Callable[[], float | None] | None = None) -> Solution:
    """Safeguarded Halley iteration for the root of the (increasing) NLL gradient in beta.

    ``evaluate(beta, precise)`` returns the mean gradient, curvature and third derivative of
    the NLL at ``beta`` (``None`` when they are not finite); ``precise=False`` may use float32
    arithmetic (only to get close), and ``precise`` turns on after ``precise_from``
    evaluations (and a short step).  ``degenerate(g, h)`` looks at the first evaluation and
    names a degenerate case (:attr:`Status.CONSTANT`, :attr:`Status.SEPARABLE`) or returns
    ``None``.  ``grad0()`` is the gradient at ``beta = 0`` (default: ``evaluate(0.0, True)``),
    asked for only while no point with a negative gradient is known.

    The bracket ``[lo, hi]`` always holds the root; a step leaving it becomes a bisection (in
    log beta) or, while no upper end is known, an expansion.  Stops when a float64 Halley step
    is below ``tol ** (1/3)`` relative (the error after a Halley step is cubic in the step);
    ``loose`` stops at that relative step whatever the precision (for a subsample's start).
    """
    lo, hi = 0.0, math.inf
    g0: float | None = None  # gradient at beta = 0, computed only if needed
    step_tol = max(tol ** (1.0 / 3.0), 4e-16)
    beta = beta0
    precise = precise_from <= 0
    downhill = 0
    for it in range(max_iter):
        d = evaluate(beta, precise)
        if d is None:
            return Solution(beta, Status.NONFINITE)
        g, h, k3 = d
        if it == 0 and degenerate is not None:
            status = degenerate(g, h)
            if status is Status.CONSTANT:
                return Solution(1.0, status)
            if status is Status.SEPARABLE:
                return Solution(math.inf, status)
        if not (math.isfinite(g) and math.isfinite(h)):
            return Solution(beta, Status.NONFINITE)
        if g < 0:
            lo = beta
        elif g > 0:
            hi = beta
            downhill += 1
            if lo == 0.0 and g0 is None and (downhill >= 3 or beta < 1e-6):
                # still no point with a negative gradient: is the optimum above beta = 0 at all?
                g0 = grad0() if grad0 is not None else _gradient(evaluate(0.0, True))
                if g0 is None:
                    return Solution(beta, Status.NONFINITE)
                if g0 >= 0:
                    return Solution(0.0, Status.UNIFORM)
        elif precise:
            return Solution(beta, Status.CONVERGED)
        new = _halley_step(g, h, k3, beta, lo, hi)
        if precise and beta > 0 and math.isfinite(new) and abs(new - beta) <= step_tol * beta:
            # a short float64 Halley step is the answer (its error is cubic in the step), even
            # when rounding put it a hair outside the bracket (a point evaluated at the root
            # itself can show a gradient of either sign; float32 passes may have set the
            # bracket): bisecting there would stop half a bracket away from the root
            return Solution(new, Status.CONVERGED)
        if not (lo < new < hi and math.isfinite(new)):
            if hi == math.inf:  # the root is above every point seen: expand
                new = beta * 8.0 if beta > 0 else 1.0
                if new > 1e300:
                    return Solution(math.inf, Status.UNBOUNDED)
            elif lo == 0.0:  # the root is below every point seen (and above 0: checked)
                new = hi / 8.0
            else:
                new = math.sqrt(lo * hi)
        rel = abs(new - beta) / beta if beta > 0 else math.inf
        if loose is not None and rel <= loose:
            return Solution(new, Status.CONVERGED)
        if hi < math.inf and lo > 0 and (hi - lo) <= 1e-15 * hi:
            return Solution(new, Status.CONVERGED)
        if not precise and it + 1 >= precise_from and (rel <= 5e-2 or it >= 5):
            precise = True
        beta = new
    return Solution(beta, Status.MAX_ITER)


def _gradient(d: Derivatives | None) -> float | None:
    return None if d is None else d[0]
