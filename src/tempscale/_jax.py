"""The lean JAX path: a leaner forward and a closed-form ``jax.custom_jvp`` derivative.

The generic Array-API code (:mod:`tempscale._softmax`) keeps every contract case finite in both
branches of each ``where`` so that autodiff through it stays NaN-free; under ``jax.jit`` that
costs about twice the one-liner ``jax.nn.softmax(x / T)`` forward and seven times its gradient.
Here the forward does only what the cases need (one max, one or two sums fused by XLA, a few
selects that fuse into the element-wise pass) and the derivative is the closed form, written as
a ``jax.custom_jvp`` rule (so ``jvp``/``jacfwd`` work, and JAX transposes it for ``grad``);
as gradients:

* softmax ``p``: ``dx = p (g - sum(g p)) / T``,
* log-softmax: ``dx = (g - p sum(g)) / T`` over the unmasked outputs (masked ones are the
  constant ``-inf``),
* logsumexp (``m + T log sum exp((x - m)/T)``): ``dx = g p``,
* a temperature array: ``dT = -sum(dx y)`` with ``y = (x - m)/T`` (softmax, log-softmax) and
  ``dT = g (log s - sum(p y))`` (logsumexp).

Rows at a limit (``T = 0``, ``T = inf``, a ``+inf`` logit) have a constant result, so their
gradient is zero; masked entries get zero gradient; a fully masked row gives zeros (softmax) or
``-inf`` (log-softmax, logsumexp) and zero gradient.  ``mask`` is applied before the custom
function (``where(mask, x, -inf)``), so its own gradient is JAX's.  Scalar temperatures below the
dtype's smallest normal or above ``1/smallest_normal`` (where XLA's reciprocal-multiply division
flushes to zero), ``T = 0`` and ``T = inf`` as Python floats, and empty rows take the generic
path (``compute`` returns ``None``); they are rare and the generic path is exact there.

The values equal the generic path's to rounding (both use ``log k + log1p(r/k)`` for the log of
the sum, ``k`` the number of maxima); ``tests/test_jax_fast.py`` checks the contract matrix,
gradients (``x`` and ``T``), ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from ._softmax import _div
from ._typing import DType, Namespace


def _limits(dtype: Any) -> tuple[float, float]:
    finfo: Any = jnp.finfo  # untyped in jax
    tiny = float(finfo(dtype).smallest_normal)
    return tiny, 0.25 / tiny


def compute(kind: str, xp: Namespace, x: Any, T: Any, ax: int, mask: Any, out: DType) -> Any:
    """``kind`` of ``x`` on JAX, or ``None`` when the generic path should compute it.

    ``x`` is already in the compute dtype; ``T`` is a validated Python float or an array of
    per-row temperatures in keepdims form (values checked where concrete); ``mask`` is a bool
    array broadcastable to ``x`` or ``None``.  The result is in the compute dtype (the caller
    casts) and keeps the class axis for logsumexp.
    """
    if x.ndim == 0 or x.shape[ax] == 0 or not jnp.issubdtype(x.dtype, jnp.floating):
        return None
    tiny, big = _limits(x.dtype)
    if isinstance(T, float):
        if not tiny <= T <= big:  # 0, inf, subnormal or beyond XLA's reciprocal: generic
            return None
        t_arg: Any = None
    else:
        T = jnp.asarray(T)
        if T.dtype != x.dtype:
            return None  # a wider temperature than the logits: the generic path widens
        t_arg = jnp.broadcast_to(T, tuple(1 if i == ax else n for i, n in enumerate(x.shape)))
    z = x if mask is None else jnp.where(mask, x, -jnp.inf)
    if t_arg is None:
        return _scalar_fn(kind, ax, T)(z)
    return _array_fn(kind, ax)(z, t_arg)


# --------------------------------------------------------------------------------------------
# the shared forward pieces
# --------------------------------------------------------------------------------------------
def _pieces(z: Any, t: Any, ax: int, logs: bool) -> tuple[Any, ...]:
    """``(y, e, s, log_s, m, m_safe, tie)`` for a temperature ``t`` (float, or keepdims array).

    ``t`` here is finite and positive where the row is not at a limit; ``tie`` marks the rows
    whose result is the limit (a ``+inf`` maximum, or ``T = 0`` in the array form, handled by the
    caller through ``t``).
    """
    m = jnp.max(z, axis=ax, keepdims=True)
    m_fin = jnp.isfinite(m)
    m_safe = jnp.where(m_fin, m, jnp.zeros_like(m))
    # (x - m)/T without overflow: halving x, m and T is exact, so this equals the direct form
    # wherever x - m does not overflow (XLA divides by multiplying with the reciprocal)
    half_t = t * 0.5
    if isinstance(t, float):
        y = (z * 0.5 - m_safe * 0.5) / half_t  # t is within [tiny, 1/tiny] here
    else:
        # per-row T may exceed 1/smallest_normal, where XLA's reciprocal flushes to zero: the
        # generic path's scaled division
        y = _div(jnp, z * 0.5 - m_safe * 0.5, half_t)
    pinf = m == jnp.inf
    # +inf rows: the mass is shared among the +inf entries
    y = jnp.where(pinf, jnp.where(z == jnp.inf, 0.0, -jnp.inf).astype(y.dtype), y)
    # -inf / masked entries stay -inf also at T = inf (-inf/inf would be NaN); NaN stays NaN
    y = jnp.where(z == -jnp.inf, -jnp.inf, y)
    e = jnp.exp(y)
    if not logs:
        s = jnp.sum(e, axis=ax, keepdims=True)
        return y, e, s, None, m, m_safe, pinf
    top = y == 0
    k = jnp.sum(top, axis=ax, keepdims=True, dtype=y.dtype)
    r = jnp.sum(jnp.where(top, 0.0, e), axis=ax, keepdims=True)
    k1 = jnp.maximum(k, 1.0)
    log_s = jnp.log1p(r / k1) + jnp.log(k1)
    return y, e, k + r, log_s, m, m_safe, pinf


def _finish(kind: str, y: Any, e: Any, s: Any, log_s: Any, m: Any, m_safe: Any, T: Any) -> Any:
    if kind == "softmax":
        return e / jnp.where(s == 0, jnp.ones_like(s), s)  # fully masked rows: zeros
    if kind == "log_softmax":
        return y - log_s
    total = m_safe + T * log_s
    # T log s alone may overflow where the sum does not (m < 0, huge T): halve
    total = jnp.where(jnp.isinf(total), 2 * (m_safe * 0.5 + (T * 0.5) * log_s), total)
    return jnp.where(jnp.isfinite(m), total, m)  # +inf, fully masked (-inf) and NaN rows: m


def _probs(kind: str, out: Any, e: Any, s: Any) -> Any:
    """The tempered probabilities, from the forward's pieces."""
    if kind == "softmax":
        return out
    if kind == "log_softmax":
        return jnp.exp(out)
    return e / jnp.where(s == 0, jnp.ones_like(s), s)


def _tangent(kind: str, p: Any, y: Any, z: Any, dz: Any, dT: Any, t: Any, log_s: Any,
             frozen: Any, frozen_lse: Any, ax: int) -> Any:
    """The closed-form derivative (linear in ``dz``, ``dT``); JAX transposes it for ``grad``.

    With ``y = (z - m)/T`` (the shift by the row maximum cancels in every formula),
    ``dy = (dz - y dT)/T``; softmax: ``p (dy - sum p dy)``; log-softmax: ``dy [unmasked] -
    sum p dy``; logsumexp (``m + T log s``): ``sum p dz + dT (log s - sum p y)``.  Rows at a
    limit are constant (zero derivative), except logsumexp at ``T = 0``: the row maximum, whose
    derivative is shared among the maxima.
    """
    live = p > 0  # entries that carry mass (y finite there)
    zero = jnp.zeros((), dtype=p.dtype)
    if kind == "logsumexp":
        dl = jnp.sum(jnp.where(live, p * dz, zero), axis=ax, keepdims=True)
        dl = jnp.where(frozen_lse, zero, dl)
        if dT is not None:
            py = jnp.sum(jnp.where(live, p * y, zero), axis=ax, keepdims=True)
            dl = dl + jnp.where(frozen, zero, dT * (log_s - py))
        return dl
    fin = jnp.isfinite(y)  # unmasked entries (-inf: masked, or below the range at tiny T)
    dy = dz if dT is None else dz - jnp.where(fin, y, zero) * dT
    dy = jnp.where(fin, dy / t, zero)
    mean = jnp.sum(p * dy, axis=ax, keepdims=True)
    # log-softmax: masked entries are the constant -inf (zero derivative)
    d = p * (dy - mean) if kind == "softmax" else jnp.where(y == -jnp.inf, zero, dy - mean)
    return jnp.where(frozen, zero, d)


# --------------------------------------------------------------------------------------------
# a Python-float temperature: static, not differentiated
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _scalar_fn(kind: str, ax: int, T: float) -> Any:
    logs = kind != "softmax"

    def forward(z: Any) -> tuple[Any, ...]:
        y, e, s, log_s, m, m_safe, pinf = _pieces(z, T, ax, logs)
        return _finish(kind, y, e, s, log_s, m, m_safe, T), y, e, s, log_s, pinf

    @jax.custom_jvp
    def f(z: Any) -> Any:
        return forward(z)[0]

    @f.defjvp
    def f_jvp(primals: Any, tangents: Any) -> tuple[Any, Any]:
        (z,), (dz,) = primals, tangents
        out, y, e, s, log_s, pinf = forward(z)
        p = _probs(kind, out, e, s)
        return out, _tangent(kind, p, y, z, dz, None, T, log_s, pinf, pinf, ax)

    return f


# --------------------------------------------------------------------------------------------
# an array of per-row temperatures: values only known at run time, differentiable
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _array_fn(kind: str, ax: int) -> Any:
    logs = kind != "softmax"

    def _t(T: Any, z: Any) -> tuple[Any, Any]:
        tiny, _ = _limits(z.dtype)
        zero_t = T == 0
        # T = 0 computes as 1 (the row is then forced to its tie limit); negative / NaN: NaN
        t = jnp.where(zero_t, jnp.ones_like(T), T)
        t = jnp.where(T >= 0, t, jnp.full_like(T, math.nan))
        # a subnormal T: the reciprocal flushes; the limit T -> 0+ is the argmax there too
        # unless the row's span is below T (then every y is 0 or tiny); use the tie form
        sub = (T > 0) & (T < tiny)
        return t, zero_t | sub

    def _forward(z: Any, T: Any) -> tuple[Any, ...]:
        t, tie_t = _t(T, z)
        y, e, s, log_s, m, m_safe, pinf = _pieces(z, t, ax, logs)
        # T = 0 rows: equal mass on the maxima
        top = (z == m) & (z > -jnp.inf)
        y_tie = jnp.where(top, 0.0, -jnp.inf).astype(y.dtype)
        y = jnp.where(tie_t, jnp.where(jnp.isnan(m), y, y_tie), y)
        if jnp.ndim(tie_t):
            e = jnp.where(tie_t, jnp.exp(y), e)
            kt = jnp.sum(top, axis=ax, keepdims=True, dtype=y.dtype)
            s = jnp.where(tie_t, kt, s)
            if logs:
                log_s = jnp.where(tie_t, jnp.log(jnp.maximum(kt, 1.0)), log_s)
        t_lse = jnp.where(tie_t, jnp.zeros_like(t), t)
        out = _finish(kind, y, e, s, log_s, m, m_safe, t_lse)
        if kind == "logsumexp":
            # T = inf: m + inf * 0 is m (a single class or all equal), else +inf
            out = jnp.where(jnp.isinf(T) & (log_s == 0), m, out)
        frozen = pinf | tie_t | jnp.isinf(T)
        return out, y, e, s, log_s, t, frozen, pinf | jnp.isinf(T)

    @jax.custom_jvp
    def f(z: Any, T: Any) -> Any:
        return _forward(z, T)[0]

    @f.defjvp
    def f_jvp(primals: Any, tangents: Any) -> tuple[Any, Any]:
        (z, T), (dz, dT) = primals, tangents
        out, y, e, s, log_s, t, frozen, frozen_lse = _forward(z, T)
        p = _probs(kind, out, e, s)
        return out, _tangent(kind, p, y, z, dz, dT, t, log_s, frozen, frozen_lse, ax)

    return f
