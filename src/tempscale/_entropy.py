"""Entropy and perplexity of the tempered softmax, and the temperature that reaches a target.

``entropy(x, T)`` is the Shannon entropy of ``softmax(x, T)`` along ``axis``; ``perplexity`` is
its exponential (the effective number of choices).  ``solve_temperature`` finds, row by row, the
``T`` at which the distribution has a given entropy, perplexity or top probability (t-SNE's
perplexity calibration, generalised): all three are monotone in ``T``, so a bracket plus Newton's
method in ``log T`` (bisection when a step leaves the bracket) converges on every row at once.
One Array-API implementation: NumPy, PyTorch, JAX, Dask, array-api-strict.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Literal

import numpy as np

from . import _args, _compat
from ._compat import array_namespace, is_concrete, is_python_scalar
from ._compat import quiet as _quiet
from ._softmax import dispatch, log_softmax
from ._typing import Array, ArrayLike, DType, Namespace, Temperature
from ._validation import check_axis, check_choice, check_scalar, param_error

__all__ = ["entropy", "perplexity", "solve_temperature"]


def _log_base(base: float | None, func: str) -> float:
    if base is None:
        return 1.0
    b = check_scalar(base, "base", func, lo=0.0, lo_open=True)
    if b == 1.0 or math.isinf(b):
        raise param_error("base", func, "a float in (0, inf) other than 1, or None", base)
    return math.log(b)


def _nats(x: ArrayLike, temperature: Temperature, axis: int | None, mask: ArrayLike | None,
          func: str) -> Any:
    """Entropy in nats of softmax(x, T) along ``axis`` (reduced), in x's floating dtype."""
    xp = array_namespace(x)
    lp: Any = dispatch("log_softmax", x, temperature, axis, mask, None, func=func)
    finite = lp > -math.inf
    lp_safe = xp.where(finite, lp, xp.zeros_like(lp))
    p = xp.where(finite, xp.exp(lp_safe), xp.zeros_like(lp))
    h = -xp.sum(p * lp_safe, axis=axis)
    # NaN rows stay NaN (log_softmax makes the whole row NaN)
    nan_row = xp.any(xp.isnan(lp), axis=axis)
    h = xp.where(nan_row, xp.asarray(math.nan, dtype=h.dtype, device=_compat.device(h)), h)
    # tiny negative round-off (one-hot rows) is clipped to 0, and -0.0 (a one-entry row) too
    return xp.where(h <= 0, xp.zeros_like(h), h)


@_quiet
def entropy(x: ArrayLike, temperature: Temperature = 1.0, *, axis: int | None = -1,
            mask: ArrayLike | None = None, base: float | None = None) -> Array:
    r"""Shannon entropy of the tempered softmax, :math:`H = -\sum_i p_i \log p_i`,
    :math:`p = \mathrm{softmax}(x / T)`.

    Parameters
    ----------
    x : array_like
        Logits (any Array-API array, or a nested list).
    temperature : float or array, default 1.0
        As in :func:`tempscale.softmax`: a float in ``[0, inf]`` or per-row temperatures.
    axis : int or None, default -1
        The distribution's axis (``None``: the whole array is one distribution).
    mask : array of bool, optional
        ``False`` entries are excluded (like ``-inf`` logits).
    base : float, optional
        Logarithm base: ``None`` for nats, ``2`` for bits.

    Returns
    -------
    array
        ``x``'s shape without ``axis``; ``x``'s floating dtype.  The entropy grows with ``T``
        from ``log k`` (``T = 0``, ``k`` tied maxima) to ``log n`` (``T = inf``, ``n`` unmasked
        entries).  A fully masked row has entropy 0; a row holding a NaN gives NaN.
        Differentiable in ``x`` and an array ``temperature`` (torch, JAX).

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale import entropy
    >>> np.set_printoptions(precision=4)
    >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    >>> entropy(x)
    array([0.8324, 0.0799])
    >>> entropy(x, 0), entropy(x, np.inf, base=2)     # argmax / uniform limits, log2(3)
    (array([0., 0.]), array([1.585, 1.585]))
    """
    func = "entropy"
    lb = _log_base(base, func)
    h = _nats(x, temperature, axis, mask, func)
    result: Array = h / lb if lb != 1.0 else h
    return result


@_quiet
def perplexity(x: ArrayLike, temperature: Temperature = 1.0, *, axis: int | None = -1,
               mask: ArrayLike | None = None) -> Array:
    r"""Perplexity :math:`e^{H}` of the tempered softmax: the effective number of choices.

    It runs from the number of tied maxima at ``T = 0`` to the number of unmasked entries at
    ``T = inf``.  Same parameters as :func:`entropy` (the perplexity does not depend on the
    logarithm's base).

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale import perplexity
    >>> np.set_printoptions(precision=4)
    >>> perplexity(np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]))
    array([2.2988, 3.    ])
    >>> float(perplexity(np.array([1.0, 1.0, 3.0, 3.0]), 0))
    2.0
    """
    xp = array_namespace(x)
    result: Array = xp.exp(_nats(x, temperature, axis, mask, "perplexity"))
    return result


# --------------------------------------------------------------------------------------------
# solve_temperature
# --------------------------------------------------------------------------------------------
_Target = Literal["entropy", "perplexity", "max_prob"]


@_quiet
def solve_temperature(x: ArrayLike, *, entropy: Temperature | None = None,
                      perplexity: Temperature | None = None, max_prob: Temperature | None = None,
                      axis: int = -1, mask: ArrayLike | None = None, base: float | None = None,
                      tol: float | None = None, max_iter: int = 100,
                      on_unreachable: Literal["raise", "nan"] = "raise") -> Array:
    r"""Per-row temperature at which the softmax has a target entropy, perplexity or top probability.

    Give exactly one target.  Each is monotone in ``T`` (entropy and perplexity grow, the top
    probability falls), so every row has at most one solution; it is found by Newton's method in
    :math:`u = \log T`, vectorised over rows, inside a bracket that always holds the root
    (bisection when a Newton step leaves it).  With :math:`p = \mathrm{softmax}(x/T)` and
    :math:`\beta = 1/T`,

    .. math:: \frac{dH}{du} = \beta^2 \operatorname{Var}_p(x), \qquad
              \frac{d \log p_{\max}}{du} = -\beta \big(x_{\max} - \mathbb{E}_p[x]\big).

    Parameters
    ----------
    x : array_like
        Logits.
    entropy : float or array, optional
        Target entropy (in ``base`` units; nats by default).  Scalar or one per row (the batch
        shape, ``x.shape`` without ``axis``, or broadcastable to it).
    perplexity : float or array, optional
        Target perplexity :math:`e^H`, in ``[k, n]``.
    max_prob : float or array, optional
        Target largest probability, in ``[1/n, 1/k]``.
    axis : int, default -1
    mask : array of bool, optional
        ``False`` entries are excluded (like ``-inf`` logits).
    base : float, optional
        Base of the ``entropy`` target's logarithm (``2`` for bits).
    tol : float, optional
        Tolerance on the target: a row is solved when
        ``|achieved - target| <= tol * max(1, |target|)`` (or when ``T`` is pinned down to
        machine precision).  Default ``1e-10`` when the computation runs in float64 (the default
        for every backend that offers float64, whatever ``x``'s dtype), ``1e-5`` in float32.
    max_iter : int, default 100
    on_unreachable : {"raise", "nan"}, default "raise"
        What to do with a row whose target no ``T`` reaches: ``"raise"`` a ``ValueError`` that
        names the rows, or give those rows ``nan``.

    Returns
    -------
    array
        Temperatures, shape ``x.shape`` without ``axis``, ``x``'s floating dtype (float32 for
        integer input on torch/JAX, float64 on NumPy).  With ``n`` unmasked entries and ``k`` tied
        maxima in a row, the reachable entropies are ``[log k, log n]``: the endpoints give
        ``T = 0`` and ``T = inf``.  Unreachable: a target outside that range, any target on a
        constant row (``k = n``: every ``T`` gives the same distribution), a fully masked row;
        a row holding a NaN (or a NaN target) gives NaN.

    Notes
    -----
    t-SNE (van der Maaten & Hinton 2008) calibrates each point's Gaussian kernel to a perplexity
    with a bisection on the precision :math:`\beta`; this is the same problem for any logits,
    with a Newton step that converges quadratically.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale import softmax
    >>> from tempscale import entropy, solve_temperature
    >>> np.set_printoptions(precision=4)
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 0.0, 8.0]])
    >>> T = solve_temperature(x, entropy=1.0)
    >>> T
    array([1.0924, 4.3547])
    >>> entropy(x, T[:, None])
    array([1., 1.])
    >>> softmax(x, solve_temperature(x, max_prob=0.5)[:, None]).max(axis=-1)
    array([0.5, 0.5])
    >>> solve_temperature(x, perplexity=[2.0, 9.0], on_unreachable="nan")   # 9 > n = 4
    array([0.6916,    nan])
    """
    func = "solve_temperature"
    kind, target = _the_target(entropy, perplexity, max_prob, func)
    check_choice(on_unreachable, ("raise", "nan"), "on_unreachable", func)
    max_iter = check_scalar(max_iter, "max_iter", func, lo=1, integer=True)
    lb = _log_base(base, func)
    if base is not None and kind != "entropy":
        raise param_error("base", func, "None unless the target is 'entropy'", base)

    xp = array_namespace(x)
    a = _compat.as_array(x, xp)
    if not xp.isdtype(a.dtype, ("real floating", "integral", "bool")):
        raise param_error("x", func, "an array of real numbers", f"dtype {a.dtype}", TypeError)
    if a.ndim == 0:
        raise param_error("x", func, "an array with at least one dimension", "a scalar")
    if _compat.is_dask_namespace(xp):
        # rows are independent: solve each block with NumPy (an iterative loop on a lazy graph
        # would re-evaluate the whole history at every step)
        return _solve_dask(a, kind, target, axis, mask, base, tol, max_iter, on_unreachable)
    out_dtype = a.dtype if xp.isdtype(a.dtype, "real floating") else \
        _compat.default_float_dtype(xp, _compat.device(a))
    ax = check_axis(axis, a.ndim, func)
    wd = _args.work_dtype(xp, a)
    if tol is None:
        tol = 1e-10 if wd == xp.float64 else 1e-5
    tol = check_scalar(tol, "tol", func, lo=0.0, lo_open=True)

    c, c_in, batch, stats = _rows(xp, a, ax, mask, wd, func)
    t = _row_targets(xp, target, kind, batch, c, func)
    sp = _target_space(xp, kind, t, stats, lb, tol)
    nan_t = xp.logical_or(xp.isnan(t), stats.nan_row)
    unreachable = xp.logical_and(xp.logical_not(sp.reach), xp.logical_not(nan_t))
    if on_unreachable == "raise" and is_concrete(unreachable) and bool(xp.any(unreachable)):
        _raise_unreachable(unreachable, batch, kind, func)
    active = xp.logical_and(sp.reach, xp.logical_not(xp.logical_or(sp.at_zero, sp.at_inf)))
    active = xp.logical_and(active, xp.logical_not(nan_t))

    u, done = _newton_solve(xp, kind, c_in, c, sp.q, sp.ftol, active, wd, max_iter)
    if is_concrete(done):
        left = xp.logical_and(xp.logical_not(done), active)
        if bool(xp.any(left)):
            rows = np.flatnonzero(_args.to_numpy(left))[:8].tolist()
            warnings.warn(f"solve_temperature: rows {rows} did not reach the target within "
                          f"max_iter={max_iter} iterations (or the solution lies outside the "
                          "representable temperatures); their T is the last iterate",
                          RuntimeWarning, stacklevel=3)

    T = xp.exp(u)
    T = xp.where(sp.at_zero, xp.zeros_like(T), T)
    T = xp.where(xp.logical_and(sp.at_inf, xp.logical_not(sp.at_zero)), xp.full_like(T, math.inf), T)
    T = xp.where(xp.logical_or(unreachable, nan_t), xp.full_like(T, math.nan), T)
    T = xp.astype(T, out_dtype)
    result: Array = xp.reshape(T, batch)
    return result


def _the_target(entropy: Any, perplexity: Any, max_prob: Any, func: str) -> tuple[_Target, Any]:
    """The one target given: (its name, its value)."""
    options: tuple[tuple[_Target, Any], ...] = (
        ("entropy", entropy), ("perplexity", perplexity), ("max_prob", max_prob))
    given = [(n, v) for n, v in options if v is not None]
    if len(given) != 1:
        names = [n for n, _ in given]
        raise param_error("entropy", func,
                          "given, or else exactly one of 'entropy', 'perplexity', 'max_prob'",
                          f"{len(given)} targets {names}" if names else "none")
    return given[0]


@dataclasses.dataclass
class _RowStats:
    """Per-row structure of the logits: unmasked entries ``n``, tied maxima ``k``, flags."""

    n: Any            # number of unmasked entries
    k: Any            # number of entries at the row's maximum
    nan_row: Any      # the row holds a NaN
    inf_row: Any      # the row's maximum is +inf


def _rows(xp: Namespace, a: Any, ax: int, mask: Any, wd: DType,
          func: str) -> tuple[Any, Any, tuple[int, ...], _RowStats]:
    """The logits as (B, n) rows in the work dtype: centred ``c`` (finite, <= 0, 0 where
    masked), ``c_in`` (``-inf`` where masked), the batch shape and the rows' structure."""
    dev = _compat.device(a)
    x = xp.astype(a, wd)
    ninf = xp.asarray(-math.inf, dtype=wd, device=dev)
    mk = _args.entry_mask(mask, x, func)
    if mk is not None:
        x = xp.where(mk, x, ninf)
    x = xp.moveaxis(x, ax, -1)
    batch = tuple(x.shape[:-1])
    n_entries = x.shape[-1]
    B = math.prod(batch)
    x = xp.reshape(x, (B, n_entries))
    nan_row = xp.any(xp.isnan(x), axis=-1)
    valid = x > ninf
    xs = xp.where(valid, x, xp.zeros_like(x))
    m = xp.max(xp.where(valid, x, ninf), axis=-1, keepdims=True) if n_entries else \
        xp.full((B, 1), -math.inf, dtype=wd, device=dev)
    m_safe = xp.where(m > ninf, m, xp.zeros_like(m))
    n = xp.sum(xp.astype(valid, wd), axis=-1)
    k = xp.sum(xp.astype(xp.logical_and(valid, x == m), wd), axis=-1)
    inf_row = xp.reshape(m == math.inf, (B,))
    c = xp.where(valid, xs - m_safe, xp.zeros_like(x))    # centred logits, <= 0, finite
    c = xp.where(xp.isnan(c), xp.zeros_like(c), c)
    c_in = xp.where(valid, c, xp.full_like(c, -math.inf))  # masked entries stay masked
    return c, c_in, batch, _RowStats(n=n, k=k, nan_row=nan_row, inf_row=inf_row)


def _row_targets(xp: Namespace, target: Any, kind: _Target, batch: tuple[int, ...], like: Any,
                 func: str) -> Any:
    """The target, one per row: shape (B,) in ``like``'s dtype (values unchecked: NaN targets
    give NaN rows, out-of-range ones are unreachable)."""
    B = math.prod(batch)
    if is_python_scalar(target):
        return xp.full((B,), float(target), dtype=like.dtype, device=_compat.device(like))
    t = _compat.as_array(target, xp, like=like, param=kind)
    if not xp.isdtype(t.dtype, ("real floating", "integral")):
        raise param_error(kind, func, "a float or an array of per-row targets",
                          f"dtype {t.dtype}", TypeError)
    try:
        t = xp.broadcast_to(xp.astype(t, like.dtype), batch)
    except (ValueError, RuntimeError):
        raise param_error(kind, func, f"a float or an array broadcastable to {batch}",
                          f"shape {tuple(t.shape)}") from None
    return xp.reshape(t, (B,))


@dataclasses.dataclass
class _TargetSpace:
    """A target in the solved variable: the root of ``f(u) = g(u) - q``, increasing in
    ``u = log T``, with ``g = H`` (nats) for entropy and perplexity targets and
    ``g = -log p_max`` for top-probability targets (see :func:`_objective`)."""

    q: Any        # the target in g's units
    ftol: Any     # the tolerance on f
    at_zero: Any  # the target is the T = 0 end of the reachable range
    at_inf: Any   # the target is the T = inf end
    reach: Any    # some T in [0, inf] reaches it


def _target_space(xp: Namespace, kind: _Target, t: Any, stats: _RowStats, lb: float,
                  tol: float) -> _TargetSpace:
    """Map the user's targets (entropy in ``base`` units, perplexity, top probability) into the
    solved quantity, with its tolerance and reachable range ``[g(T=0), g(T=inf)]``."""
    one = xp.ones_like(t)
    t_pos = xp.where(t > 0, t, one)
    if kind == "max_prob":
        # p_max falls from 1/k (T = 0) to 1/n (T = inf): solve -log p_max = -log t
        q = 0.0 - xp.log(t_pos)
        ftol = tol * xp.maximum(one, xp.abs(t)) / t_pos
        at_zero = xp.abs(t - 1.0 / stats.k) <= 1e-3 * ftol * t
        at_inf = xp.abs(t - 1.0 / stats.n) <= 1e-3 * ftol * t
        reach = xp.logical_and(t >= 1.0 / stats.n, t <= 1.0 / stats.k)
    else:
        if kind == "entropy":
            q = t * lb
            ftol = tol * xp.maximum(one, xp.abs(t)) * lb
        else:  # perplexity: H = log t
            q = xp.where(t > 0, xp.log(t_pos), xp.full_like(t, -math.inf))
            ftol = tol * xp.maximum(one, xp.abs(t)) / t_pos
        lo_h, hi_h = xp.log(stats.k), xp.log(stats.n)   # H runs from log k to log n
        at_zero = xp.abs(q - lo_h) <= ftol * 1e-3
        at_inf = xp.abs(q - hi_h) <= ftol * 1e-3
        reach = xp.logical_and(q >= lo_h, q <= hi_h)
    reach = xp.logical_or(reach, xp.logical_or(at_zero, at_inf))
    # constant rows (every T gives the same distribution), fully masked rows, +inf maxima
    bad_row = xp.logical_or(xp.logical_or(stats.k == stats.n, stats.n == 0), stats.inf_row)
    reach = xp.logical_and(reach, xp.logical_not(bad_row))
    return _TargetSpace(q=q, ftol=ftol, at_zero=at_zero, at_inf=at_inf, reach=reach)


def _objective(xp: Namespace, kind: _Target, c_in: Any, c: Any, u: Any,
               q: Any) -> tuple[Any, Any]:
    """``f(u) = g(u) - q`` and ``f'(u)`` at ``u = log T``, per row.

    With :math:`p = \\mathrm{softmax}(c/T)`, :math:`\\beta = 1/T` and the row maximum at 0,
    :math:`-\\log p_{\\max} = \\log Z` and :math:`H = \\log Z - \\beta E_p[c]`, so
    :math:`d(-\\log p_{\\max})/du = -\\beta E_p[c]` and :math:`dH/du = \\beta^2 \\mathrm{Var}_p(c)`.
    """
    T = xp.exp(u)
    lp = log_softmax(c_in, T[:, None], axis=-1)
    p = xp.exp(lp)                         # 0 at masked entries
    cb = c * (1.0 / T)[:, None]            # tempered logits: finite at every scale, 0 if masked
    pcb = xp.where(p > 0, p * cb, xp.zeros_like(p))   # 0 * -inf where c/T overflows: 0
    mu = xp.sum(pcb, axis=-1)              # E_p[c / T]
    lpmax = xp.max(lp, axis=-1)            # log p_max = -log Z
    if kind == "max_prob":
        return (0.0 - lpmax) - q, 0.0 - mu
    h = 0.0 - lpmax - mu                   # H = log Z - E_p[c / T]
    h = xp.where(h > 0, h, xp.zeros_like(h))
    pcb2 = xp.where(p > 0, pcb * cb, xp.zeros_like(p))
    return h - q, xp.sum(pcb2, axis=-1) - mu * mu


def _newton_solve(xp: Namespace, kind: _Target, c_in: Any, c: Any, q: Any, ftol: Any,
                  active: Any, wd: DType, max_iter: int) -> tuple[Any, Any]:
    """Safeguarded Newton in ``u = log T`` on the active rows: ``(u, done)``.

    Starts at T = the row's range of logits (where the distribution's shape changes); each
    iteration works on the unfinished rows only where their number is known (not on JAX, which
    would recompile every op for each new shape).
    """
    B = c.shape[0]
    one = xp.ones_like(q)
    rng_row = 0.0 - xp.min(c, axis=-1)     # no squares: no underflow for tiny logits
    u = xp.log(xp.where(rng_row > 0, rng_row, one))
    lo = xp.full_like(u, -math.inf)
    hi = xp.full_like(u, math.inf)
    grow = xp.full_like(u, 2.0)            # expansion step in log T, doubled on each use
    umax = 700.0 if wd == xp.float64 else 80.0
    done = xp.logical_not(active)
    concrete = is_concrete(done)
    for _ in range(max_iter):
        n_active = int(xp.sum(xp.astype(xp.logical_not(done), xp.int64))) if concrete else B
        if n_active == 0:
            break
        if concrete and n_active < B and not _compat.is_jax_namespace(xp):
            act = xp.logical_not(done)
            idx = xp.nonzero(act)[0]
            pos = xp.cumulative_sum(xp.astype(act, xp.int64)) - 1
            pos = xp.where(act, pos, xp.zeros_like(pos))
            ci_s, c_s, u_s, lo_s, hi_s, grow_s, q_s, ftol_s = (
                xp.take(v, idx, axis=0) for v in (c_in, c, u, lo, hi, grow, q, ftol))
            res = _newton_step(xp, kind, ci_s, c_s, u_s, lo_s, hi_s, grow_s, q_s, ftol_s, umax)
            back = [xp.take(r, pos, axis=0) for r in res]
            u, lo, hi, grow = (xp.where(act, nb, old)
                               for nb, old in zip(back[:4], (u, lo, hi, grow), strict=True))
            done = xp.where(act, back[4], done)
        else:
            u_new, lo, hi, grow, fin = _newton_step(xp, kind, c_in, c, u, lo, hi, grow, q, ftol,
                                                    umax)
            u = xp.where(done, u, u_new)
            done = xp.logical_or(done, fin)
    return u, done


def _raise_unreachable(unreachable: Any, batch: tuple[int, ...], kind: _Target, func: str) -> None:
    rows = np.flatnonzero(_args.to_numpy(unreachable))
    idx = [tuple(int(i) for i in np.unravel_index(r, batch)) if len(batch) > 1 else int(r)
           for r in rows[:8]]
    more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
    rng = {"entropy": "[log k, log n]", "perplexity": "[k, n]", "max_prob": "[1/n, 1/k]"}[kind]
    raise param_error(kind, func,
                      f"reachable on every row, i.e. in {rng} for a row with n unmasked entries "
                      "and k < n tied maxima (or pass on_unreachable='nan')",
                      f"an unreachable target on rows {idx}{more}")


def _newton_step(xp: Namespace, kind: _Target, c_in: Any, c: Any, u: Any, lo: Any, hi: Any,
                 grow: Any, q: Any, ftol: Any, umax: float) -> tuple[Any, Any, Any, Any, Any]:
    """One safeguarded Newton step in u = log T for every given row.

    Returns (new u, lo, hi, grow, finished); a finished row keeps its u.
    """
    f, fp = _objective(xp, kind, c_in, c, u, q)
    ones_row = xp.ones_like(u)
    conv = xp.abs(f) <= ftol
    live = xp.logical_not(conv)
    lo = xp.where(xp.logical_and(f < 0, live), u, lo)
    hi = xp.where(xp.logical_and(f > 0, live), u, hi)
    fp_safe = xp.where(fp > 0, fp, ones_row)
    newton = xp.where(fp > 0, u - f / fp_safe, xp.full_like(u, math.nan))
    inside = xp.logical_and(newton > lo, newton < hi)
    both = xp.logical_and(xp.isfinite(lo), xp.isfinite(hi))
    lo_s = xp.where(xp.isfinite(lo), lo, u)
    hi_s = xp.where(xp.isfinite(hi), hi, u)
    # a step leaving the bracket: bisect, or expand (by a growing step in log T) toward the
    # missing end of the bracket
    fallback = xp.where(both, (lo_s + hi_s) / 2, xp.where(xp.isfinite(lo), u + grow, u - grow))
    step_ok = xp.logical_and(inside, xp.isfinite(newton))
    step_ok = xp.logical_and(step_ok, xp.abs(newton - u) <= 8.0)   # too bold: replaced as well
    new = xp.where(step_ok, newton, fallback)
    grow = xp.where(xp.logical_or(step_ok, both), grow, 2.0 * grow)
    new = xp.clip(new, -umax, umax)
    pinned = xp.logical_and(both, (hi_s - lo_s) <= 4e-16 * xp.maximum(ones_row, xp.abs(u)))
    fin = xp.logical_or(conv, pinned)
    return xp.where(fin, u, new), lo, hi, grow, fin


def _solve_dask(x: Any, kind: _Target, target: Any, axis: int, mask: Any, base: float | None,
                tol: float | None, max_iter: int, on_unreachable: Literal["raise", "nan"]) -> Array:
    import dask.array

    da: Any = dask.array  # partly typed upstream
    ax = check_axis(axis, x.ndim, "solve_temperature")
    kw: dict[str, Any] = dict(axis=-1, base=base, tol=tol, max_iter=max_iter,
                              on_unreachable=on_unreachable)
    if mask is not None:
        x = da.where(da.asarray(mask), x, -math.inf)
    x = da.moveaxis(x, ax, -1)
    x = x.rechunk({x.ndim - 1: -1})
    if is_python_scalar(target):
        def block(b: Any) -> Any:
            return solve_temperature(np.asarray(b), **{kind: target, **kw})
        out: Array = da.map_blocks(block, x, drop_axis=x.ndim - 1, dtype=x.dtype if np.issubdtype(
            x.dtype, np.floating) else np.float64)
        return out
    t = da.broadcast_to(da.asarray(target), x.shape[:-1]).rechunk(x.chunks[:-1])

    def block_t(b: Any, tb: Any) -> Any:
        return solve_temperature(np.asarray(b), **{kind: np.asarray(tb)[..., 0], **kw})
    out_t: Array = da.map_blocks(block_t, x, t[..., None], drop_axis=x.ndim - 1,
                                 dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)
    return out_t
