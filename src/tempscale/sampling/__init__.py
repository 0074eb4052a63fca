r"""Sampling with temperature: top-k / top-p / min-p truncation, greedy at ``T = 0``, Gumbel-softmax.

Three public functions, one implementation over the Python Array API (NumPy, PyTorch, JAX,
array-api-strict), with exact fast paths for NumPy and PyTorch:

* :func:`warp` -- the final sampling distribution after temperature and truncation;
* :func:`sample` -- draws token indices from it (with or without replacement), reproducibly;
* :func:`gumbel_softmax` -- the relaxed (and straight-through) categorical sample.

The sampler chain
-----------------
``order="temperature-first"`` (Hugging Face transformers, vLLM) divides the logits by ``T`` and
then applies top-k, top-p and min-p, in that order, each on the distribution left by the one
before (renormalised over the survivors).  ``order="temperature-last"`` (llama.cpp's default
chain) applies the same three filters to the ``T = 1`` distribution and then the temperature to
the survivors only: the set of candidate tokens does not depend on ``T``, only their weights do.

Rules (the same on every backend, and bit for bit the same on the fast and generic paths):

* **Ranking.**  Tokens are ranked by their logit, which is the order of ``x / T`` for every
  ``T`` in ``(0, inf)``, so rounding of ``x / T`` never creates ties and ``T = inf`` keeps the
  set of every large finite ``T`` (the limit), uniform over it.
* **Probabilities** seen by top-p and min-p are the tempered softmax computed without overflow,
  ``exp((x/2 - m/2) / (T/2))`` (``m`` the row maximum), as in :func:`tempscale.softmax`, in
  float32 for float16/bfloat16/float32 logits and float64 for float64 logits, multiplied by
  the reciprocal of a sum that does not depend on the summation order (an exact multi-part sum
  in float64), as torch's softmax multiplies by the reciprocal of its sum.
* **top-k** keeps every token whose logit is ``>=`` the ``k``-th largest, so ties at the
  ``k``-th value are all kept -- transformers' ``TopKLogitsWarper`` rule.  ``top_k >= V``
  keeps everything; ``top_k = 0`` switches the filter off (transformers' and llama.cpp's
  convention), also per row in an array of ``top_k``.
* **top-p** is transformers' ``TopPLogitsWarper`` rule in its own arithmetic: sort ascending,
  take the cumulative sum of the probabilities, remove the tokens whose cumulative sum is
  ``<= 1 - top_p`` (compared in the probabilities' dtype, ``1 - top_p`` computed in float64 and
  rounded to it), never the most probable token.  The cumulative sums are exact sums of the
  probabilities (float64 accumulation, as torch's CPU ``cumsum`` of float32) rounded to the
  probabilities' dtype, so no summation order can change a decision.  Tied logits rank
  ascending by index (a stable ascending sort): at the boundary the *higher* index is kept, as
  transformers does wherever torch's sort is stable (vocabularies of at most 16 tokens on a CPU;
  beyond that torch's own choice among tied tokens is unspecified).  ``top_p = 1`` switches the
  filter off.
* **min-p** removes tokens whose probability is ``< min_p * p_max``, the product computed in
  the probabilities' dtype (transformers' ``MinPLogitsWarper``); ``min_p = 0`` switches it off.
* **typical-p**, **epsilon** and **eta** follow min-p, in that order (transformers' chain), each
  on the distribution left by the filters before it; see :func:`warp`.  They always run on
  the generic path.  **top-nσ** (llama.cpp) is the first filter, before top-k, in both orders,
  followed by **top-H** (transformers' ``TopHLogitsWarper``, placed right after the
  temperature as transformers does); **XTC** (llama.cpp) is the last filter.  **Dynamic
  temperature** (``dynatemp_range``, llama.cpp's ``temp_ext``) computes ``T`` per row from the
  normalised entropy at the temperature's place in the chain.  ``order=`` also takes an
  explicit chain of rule names (llama.cpp's ``--samplers``).  These rules and explicit chains
  run on the generic path (an explicit chain equal to a named order for its active rules takes
  that order's fast path).
* ``min_tokens_to_keep`` protects the first ``n`` tokens of the ranking from top-p (tied
  logits: higher index first, as above) and from min-p (tied logits: lower index first), and
  raises top-k to at least ``n``.
* **T = 0** is greedy decoding: all the mass on the *first* maximal logit (lowest index among
  ties, like ``argmax``), whatever the filters.  It equals ``top_k=1`` when the maximum is unique
  (top-k keeps tied maxima).  Note :func:`tempscale.softmax` at ``T = 0`` *splits* the mass among
  tied maxima; a sampler must pick one token.  A tiny positive ``T`` is not greedy: it splits
  the mass among tied maxima (the limit ``T -> 0+``).  ``T = inf`` is uniform over the
  survivors.  Every ``T`` in ``[0, inf]`` and every finite logit up to the dtype's maximum are
  exact: no logit overflows into a false ``+-inf``.
* ``-inf`` logits and ``mask == False`` entries are never drawn.  A **fully masked row** gives an
  all-zero distribution (log-probabilities ``-inf``), never NaN, and :func:`sample` returns the
  index ``-1`` (log-probability ``-inf``) for it.  A row containing an unmasked NaN gives a NaN
  distribution and index ``-1`` with log-probability NaN.  Any other row (one finite or ``+inf``
  logit is enough) always has a candidate and never draws ``-1`` with replacement.

Random numbers
--------------
Pass ``seed=`` (a non-negative int) for reproducible draws on any backend, or ``rng=`` with the
library's own generator: a :class:`numpy.random.Generator` for NumPy (and array-api-strict), a
:class:`torch.Generator` (on the tensor's device) for PyTorch, a PRNG key
(``jax.random.key(0)`` or ``jax.random.PRNGKey(0)``) for JAX.  With neither, NumPy and PyTorch use
fresh OS entropy / the global torch generator and JAX draws a fresh key from OS entropy (pass a key
under ``jax.jit``).  The same seed gives the same draws; the fast and the generic path use the
same uniforms and agree draw for draw except where rounding of the CDF differs.

``sample(..., seed=s, generator="hash")`` (or ``row_ids=``) draws from a counter-based generator
instead: the token of a row depends only on the seed, the row's key (``row_ids``, default its
index) and its values, not on the batch around it, its size or the thread count, and NumPy and
PyTorch CPU draw the same tokens (see :func:`sample`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np

from .. import _backend
from .._backend import check_seed
from .._compat import is_concrete, is_jax_namespace, is_python_scalar
from .._typing import Array, ArrayLike, Temperature
from .._validation import check_bool, check_choice, check_scalar, param_error
from . import _hash
from ._draw import draw, gumbel_sample
from ._layout import ORDERS as ORDERS
from ._layout import Args, prepare, restore
from ._paths import distribution

__all__ = ["warp", "sample", "gumbel_softmax"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _quiet(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``func`` with NumPy's floating-point warnings off, also for torch tensors (CPU tensors
    are computed on zero-copy NumPy views, whose IEEE overflow to ``inf`` is part of the
    contract); not while torch.compile traces (``np.errstate`` would break the graph)."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        torch = sys.modules.get("torch")
        if torch is not None and torch.compiler.is_compiling():
            return func(*args, **kwargs)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            return func(*args, **kwargs)

    return wrapper



@_quiet
def warp(logits: ArrayLike, temperature: Temperature = 1.0, *, top_k: int | Array | None = None,
         top_p: float | Array | None = None, min_p: float | Array | None = None,
         typical_p: float | Array | None = None, epsilon: float | Array | None = None,
         eta: float | Array | None = None, top_n_sigma: float | Array | None = None,
         top_h: float | Array | None = None, dynatemp_range: float | Array | None = None,
         dynatemp_exponent: float | Array = 1.0, xtc_threshold: float | Array | None = None,
         xtc_probability: float | Array | None = None,
         order: str | Sequence[str] = "temperature-first", min_tokens_to_keep: int = 1,
         axis: int = -1, mask: ArrayLike | None = None, log: bool = False) -> Any:
    r"""The sampling distribution after temperature and top-k / top-p / min-p truncation.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores; any array-API array or a nested list (read as NumPy).
    temperature : float or array, default 1.0
        ``T`` in ``[0, inf]``, or one per row (shape ``logits.shape`` without ``axis``, or with
        a size-1 ``axis``).  ``T = 0`` is greedy: all the mass on the first maximal logit.
        Every ``T`` is exact for every finite logit (no overflow: tiny ``T`` tends to the
        argmax, huge ``T`` to the uniform distribution over the kept tokens).
    top_k : int or array of int, optional
        Keep the tokens whose logit is ``>=`` the ``k``-th largest (ties kept).  ``0`` (or
        None) switches top-k off, as in transformers and llama.cpp; in a per-row array a ``0``
        switches it off for that row.
    top_p : float or array, optional
        In ``(0, 1]``: keep the smallest set of most probable tokens with mass ``>= top_p``
        (transformers' rule and arithmetic, see the module docstring).  ``1`` (or None)
        switches top-p off, also per row.
    min_p : float or array, optional
        In ``[0, 1]``: drop tokens with probability ``< min_p * max probability``.  ``0`` (or
        None) switches min-p off, also per row.
    typical_p : float or array, optional
        In ``(0, 1]``: locally typical sampling (transformers' ``TypicalLogitsWarper``): rank
        the tokens by ``|-log p - H|`` (``H`` the entropy), keep them in that order until the
        cumulative probability reaches ``typical_p`` (with every token tied with the last one).
        ``1`` (or None) switches it off, also per row.
    epsilon : float or array, optional
        In ``[0, 1]``: epsilon-sampling (transformers' ``EpsilonLogitsWarper``): drop tokens
        with probability ``< epsilon``.  ``0`` (or None) switches it off, also per row.
    eta : float or array, optional
        In ``[0, 1]``: eta-sampling (transformers' ``EtaLogitsWarper``): drop tokens with
        probability ``< min(eta, sqrt(eta) * exp(-H))``, ``H`` the entropy (``eta`` rounded to
        float32 and its root taken in float32, as transformers does).  ``0`` (or None) switches
        it off, also per row.
    top_n_sigma : float or array, optional
        In ``[0, inf]``: top-nσ (llama.cpp's ``top_n_sigma``): keep the tokens whose tempered
        logit is ``>= max - n * sigma``, ``sigma`` the population standard deviation of the
        row's finite tempered logits (unmasked, not ``-inf``).  The set does not depend on
        ``T`` (it is decided on the logits, ``x >= max(x) - n * sigma(x)``), so ``T = inf``
        keeps the same set.  It is the first filter of both orders (as in llama.cpp's default
        sampler list), so ``sigma`` is over the whole row.  ``0`` (or None) switches it off,
        also per row; ``inf`` keeps every token.
    top_h : float or array, optional
        In ``(0, 1]``: top-H (transformers' ``TopHLogitsWarper``): over the ``min(100, V)`` most
        probable kept tokens, renormalised, with entropy ``H``, keep the longest prefix of the
        ranking whose cumulative ``-p log p`` stays ``<= top_h * H`` (at least one token);
        every token beyond those 100 is removed.  None switches it off.  Tied logits rank lower
        index first (transformers' ``torch.topk`` leaves that order unspecified).
    dynatemp_range : float or array, optional
        ``>= 0`` (finite): dynamic temperature (llama.cpp's ``temp_ext``, "DynaTemp") at the
        temperature's place in the chain: ``T_dyn = lo + (hi - lo) * (H / log n) ** exponent``
        with ``lo = max(0, T - range)``, ``hi = T + range``, ``H`` the entropy of ``softmax(x)``
        over the ``n`` tokens kept so far (the whole row for ``"temperature-first"``, the
        survivors for ``"temperature-last"``).  ``T`` is unchanged where ``n <= 1``, and
        ``T = 0`` (greedy) and ``T = inf`` rows are unchanged.  ``0`` (or None) switches it off,
        also per row.
    dynatemp_exponent : float or array, default 1.0
        The exponent of the normalised entropy (finite, ``>= 0``).
    xtc_threshold : float or array, optional
        In ``[0, 1]``: XTC, "exclude top choices" (llama.cpp): where at least two kept tokens
        have probability ``>= xtc_threshold``, remove all of them except the least probable
        (ties ranked by lower index first), unless fewer than ``min_tokens_to_keep`` tokens
        would remain.  Above 0.5 it never applies (llama.cpp).  None switches it off.  The
        probabilities are those of the chain at XTC's place (after the filters before it).
    xtc_probability : float or array, optional
        The probability that XTC applies to a row.  In :func:`warp` it must be ``0`` or ``1``
        (default ``1`` when ``xtc_threshold`` is given); :func:`sample` takes any value in
        ``[0, 1]`` and draws one coin per row.
    order : str or sequence of str, default "temperature-first"
        ``"temperature-first"``: temperature, top-nσ, top-H, top-k, top-p, min-p, typical-p,
        epsilon, eta, XTC (transformers' ``_get_logits_processor`` order for the rules it has);
        every filter sees ``softmax(x / T)`` renormalised over the tokens the filters before it
        kept (transformers, vLLM).  ``"temperature-last"``: the same filters on ``softmax(x)``,
        then ``T`` reshapes only the survivors (llama.cpp).  Or an explicit chain, like
        llama.cpp's ``--samplers``: a sequence (or a ``";"``-separated string) of distinct rule
        names among ``"temperature"``, ``"top_n_sigma"``, ``"top_h"``, ``"top_k"``,
        ``"top_p"``, ``"min_p"``, ``"typical_p"``, ``"epsilon"``, ``"eta"``, ``"xtc"`` (also
        ``"temp"``, ``"typ_p"``, ``"top-k"``...), applied in that order: the filters listed
        before ``"temperature"`` see ``softmax(x)``, those after it ``softmax(x / T)``.  Every
        active rule (a parameter that is set and not "off", or ``T != 1``) must be listed.  A
        chain equal to a named order for the active rules takes that order's fast path.
    min_tokens_to_keep : int, default 1
        ``>= 1``.  Never truncate below this many tokens, in every rule, as transformers'
        warpers: top-k is raised to it; the best ``n`` tokens of the logit ranking are protected
        from top-p and min-p, and (ties at the ``n``-th logit included) from top-nσ, epsilon
        and eta;
        typical-p protects the first ``n`` tokens of its own ranking.
    axis : int, default -1
        The vocabulary axis.
    mask : array of bool, optional
        Broadcastable to ``logits``; ``False`` entries are never kept (like ``-inf`` logits).
    log : bool, default False
        Return log-probabilities (``-inf`` for removed tokens) instead of probabilities.

    Returns
    -------
    array
        Same shape, namespace and floating dtype as ``logits`` (integers promote to the default
        float).  A fully masked row is all zeros (``-inf`` with ``log=True``); a row with a NaN is
        all NaN.

    Notes
    -----
    The rules (tie handling, ``T = 0``, masked rows, the arithmetic of each decision) are
    listed in the module docstring; they match transformers' ``TemperatureLogitsWarper`` →
    ``TopKLogitsWarper`` → ``TopPLogitsWarper`` → ``MinPLogitsWarper`` →
    ``TypicalLogitsWarper`` → ``EpsilonLogitsWarper`` → ``EtaLogitsWarper`` chain for
    ``order="temperature-first"`` (float16/bfloat16 logits are decided in float32, as
    transformers' generation loop casts its scores to float32).  For NumPy and PyTorch inputs
    an exact path avoids sorting the vocabulary: top-k uses a partial selection and top-p a
    bisection on the logit value that leaves only a few hundred undecided tokens to sort; it
    computes the same numbers as the generic path and keeps exactly the same tokens.  With
    top-nσ, typical-p, epsilon or eta on (or ``min_tokens_to_keep > 1``) the generic path
    always runs, so that every kept set is decided in one place.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sampling import warp
    >>> np.set_printoptions(precision=4)
    >>> x = np.array([2.0, 1.0, 0.0, -1.0])
    >>> warp(x, 0.5, top_k=2)
    array([0.8808, 0.1192, 0.    , 0.    ])
    >>> warp(x, top_p=0.8)                       # 0.644 + 0.237 >= 0.8
    array([0.7311, 0.2689, 0.    , 0.    ])
    >>> warp(x, 10.0, top_p=0.8, order="temperature-last")  # same survivors, flattened
    array([0.525, 0.475, 0.   , 0.   ])
    >>> warp(np.array([1.0, 3.0, 3.0]), 0)      # greedy: the first maximum
    array([0., 1., 0.])
    >>> warp(x, epsilon=0.1)                     # drop probabilities < 0.1
    array([0.7311, 0.2689, 0.    , 0.    ])
    >>> warp(x, 0.5, top_k=0, top_p=1.0, min_p=0.0)  # every filter off
    array([0.865 , 0.1171, 0.0158, 0.0021])
    >>> warp(x, xtc_threshold=0.2)                # XTC: 0.644 and 0.237 >= 0.2, drop the first
    array([0.    , 0.6652, 0.2447, 0.09  ])
    >>> warp(x, 2.0, top_k=2, order=["top_k", "temperature"])  # an explicit chain
    array([0.6225, 0.3775, 0.    , 0.    ])
    """
    func = "warp"
    check_bool(log, "log", func)
    a = prepare(logits, temperature, top_k, top_p, min_p, order, min_tokens_to_keep, axis, mask, func,
                typical_p=typical_p, epsilon=epsilon, eta=eta, top_n_sigma=top_n_sigma, top_h=top_h,
                dynatemp_range=dynatemp_range, dynatemp_exponent=dynatemp_exponent,
                xtc_threshold=xtc_threshold, xtc_probability=xtc_probability)
    _xtc_deterministic(a, func)
    r = distribution(a, log)
    if r.dtype != a.out:
        r = a.xp.astype(r, a.out)
    return restore(a, r)


@_quiet
def sample(logits: ArrayLike, temperature: Temperature = 1.0, *, top_k: int | Array | None = None,
           top_p: float | Array | None = None, min_p: float | Array | None = None,
           typical_p: float | Array | None = None, epsilon: float | Array | None = None,
           eta: float | Array | None = None, top_n_sigma: float | Array | None = None,
           top_h: float | Array | None = None, dynatemp_range: float | Array | None = None,
           dynatemp_exponent: float | Array = 1.0, xtc_threshold: float | Array | None = None,
           xtc_probability: float | Array | None = None,
           order: str | Sequence[str] = "temperature-first", min_tokens_to_keep: int = 1,
           num_samples: int | None = None, replacement: bool = True, seed: int | None = None,
           rng: Any = None, generator: str | None = None, row_ids: ArrayLike | None = None,
           axis: int = -1, mask: ArrayLike | None = None, return_logprobs: bool = False) -> Any:
    r"""Draw token indices from :func:`warp`'s distribution.

    Parameters
    ----------
    logits, temperature, top_k, top_p, min_p, typical_p, epsilon, eta, top_n_sigma, top_h
        As in :func:`warp`.  ``T = 0`` is greedy decoding (``argmax``, lowest index among ties).
    dynatemp_range, dynatemp_exponent, xtc_threshold
        As in :func:`warp`.
    xtc_probability : float or array, optional
        In ``[0, 1]``: per row, XTC applies with this probability (one uniform per row, from
        the same generator as the draws: its own stream with ``generator="hash"``).  Default 1
        when ``xtc_threshold`` is given.
    order, min_tokens_to_keep, axis, mask
        As in :func:`warp`.
    num_samples : int, optional
        ``None`` (default): one draw per row, the result has ``logits``' shape without ``axis``
        (like :func:`jax.random.categorical`).  An int ``n >= 1``: ``n`` draws per row on a new
        last axis (like :func:`torch.multinomial`).
    replacement : bool, default True
        Draw with replacement (inverse CDF on one uniform per draw) or without (Gumbel-top-k,
        ``n <= vocabulary size``; positions beyond a row's number of candidates get ``-1``).
    seed : int, optional
        Seed for a fresh generator of the array's library (``generator="library"``) or of the
        counter-based generator (``generator="hash"``).
    rng : numpy.random.Generator, torch.Generator or JAX PRNG key, optional
        The library's own generator (advanced in place for NumPy and torch).
    generator : {"library", "hash"}, optional
        ``"library"`` (the default without ``row_ids``): the array library's generator, seeded
        by ``seed`` or given as ``rng`` (the behaviour of earlier versions, draw for draw).
        ``"hash"`` (the default when ``row_ids`` is given; needs ``seed``): batch-invariant
        draws from a counter-based generator, see Notes.
    row_ids : array of int, optional
        With ``generator="hash"``: each row's key (shape: the batch shape, i.e. ``logits``'
        shape without ``axis``, or flat), e.g. a request id; default the row's flat index.
    return_logprobs : bool, default False
        Also return the log-probability of each draw under the warped distribution.

    Returns
    -------
    indices : integer array
        ``-1`` for rows without candidates (fully masked) or containing NaN; a row with at
        least one finite (or ``+inf``) unmasked logit always has a candidate.  Without
        replacement, draws beyond a row's tokens of nonzero probability are ``-1``.
    logprobs : array, only with ``return_logprobs=True``
        ``-inf`` where the index is ``-1`` (NaN for NaN rows).

    Notes
    -----
    With ``generator="hash"`` the ``j``-th uniform of a row is SplitMix64's output function
    chained over ``(seed, row key, j)`` (its top 53 bits), computed with NumPy on the host and
    moved to the array's library and device, so it does not depend on the batch, the row's
    position, the batch size, the thread count or the library.  The draw is the inverse CDF on
    the row's own float64 weights ``exp((x - max) / T)`` of the kept tokens, summed by one
    sequential cumulative sum in index order (removed tokens add exact zeros), so the token
    depends only on the seed, the row key and the row's values: the same on NumPy and PyTorch
    CPU, for float64 and also float32/float16/bfloat16 logits (the kept sets are decided in the
    logits' dtype identically on both, the weights in float64 with NumPy's ``exp``).  On GPU
    tensors ``exp`` is torch's, and under JAX XLA's (float32 without x64): a draw may then
    differ only where a uniform falls within rounding of a CDF step.  Without replacement, each
    token ``i`` gets the Gumbel noise of ``(seed, row key, i)``.  ``row_ids`` on a GPU are
    copied to the host (a synchronisation); under ``jax.jit`` they must be concrete.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sampling import sample
    >>> x = np.array([[2.0, 1.0, 0.0, -1.0], [0.0, 5.0, 5.0, 1.0]])
    >>> sample(x, 0)                                       # greedy
    array([0, 1])
    >>> idx = sample(x, 0.7, top_k=2, num_samples=5, seed=0)
    >>> idx.shape, bool(np.all(idx[0] < 2))
    ((2, 5), True)
    >>> bool(np.all(sample(x, 0.7, top_k=2, num_samples=5, seed=0) == idx))
    True
    >>> a = sample(x, 0.7, top_p=0.9, seed=3, row_ids=[10, 11], num_samples=4)
    >>> b = sample(x[1:], 0.7, top_p=0.9, seed=3, row_ids=[11], num_samples=4)
    >>> bool(np.all(a[1] == b[0]))                         # batch-invariant
    True
    """
    func = "sample"
    check_bool(replacement, "replacement", func)
    check_bool(return_logprobs, "return_logprobs", func)
    if num_samples is not None:
        check_scalar(num_samples, "num_samples", func, lo=1, integer=True)
        num_samples = int(num_samples)
    check_seed(seed, rng, func)
    hashed = _generator(generator, seed, rng, row_ids, func)
    a = prepare(logits, temperature, top_k, top_p, min_p, order, min_tokens_to_keep, axis, mask, func,
                typical_p=typical_p, epsilon=epsilon, eta=eta, top_n_sigma=top_n_sigma, top_h=top_h,
                dynatemp_range=dynatemp_range, dynatemp_exponent=dynatemp_exponent,
                xtc_threshold=xtc_threshold, xtc_probability=xtc_probability)
    rows = _hash.row_keys(row_ids, a.batch_shape, func) if hashed else None
    n = 1 if num_samples is None else num_samples
    if not replacement and n > a.V:
        raise param_error("num_samples", func,
                          f"at most the vocabulary size {a.V} when replacement=False", n)
    _xtc_coins(a, seed, rng, rows, func)
    idx, lp = draw(a, n, replacement, seed, rng, func, rows)
    xp = a.xp
    if lp.dtype != a.out:
        lp = xp.astype(lp, a.out)
    idx = xp.reshape(idx, a.batch_shape + (n,))
    lp = xp.reshape(lp, a.batch_shape + (n,))
    if num_samples is None:
        idx, lp = idx[..., 0], lp[..., 0]
    return (idx, lp) if return_logprobs else idx


@_quiet
def gumbel_softmax(logits: ArrayLike, temperature: Temperature = 1.0, *, hard: bool = False,
                   seed: int | None = None, rng: Any = None, axis: int = -1,
                   mask: ArrayLike | None = None) -> Any:
    r"""A relaxed categorical sample, :math:`\mathrm{softmax}((x + g) / T)` with Gumbel noise ``g``.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities.
    temperature : float or array, default 1.0
        ``tau`` in ``[0, inf]`` or one per row (``logits.shape`` without ``axis``, or with a size-1
        ``axis``); an array temperature receives gradients.  ``T = 0`` gives the one-hot argmax of
        the perturbed logits.
    hard : bool, default False
        Return the one-hot argmax of the perturbed logits ``x + g`` (the argmax of the soft
        sample for every ``T``, also where the soft sample rounds to a uniform row at huge ``T``:
        the Gumbel-max sample, distributed as ``softmax(x)`` whatever ``T``).  On PyTorch and JAX
        the gradient is the soft sample's (straight-through estimator: ``y_hard - stop_gradient(y_soft) + y_soft``).
    seed, rng
        As in :func:`sample`.
    axis : int, default -1
        The category axis.
    mask : array of bool, optional
        ``False`` entries (like ``-inf`` logits) get exactly zero weight.

    Returns
    -------
    array
        Same shape, namespace and floating dtype as ``logits``.  A fully masked row is all zeros;
        a NaN row is NaN.

    Notes
    -----
    The noise is ``-log(-log u)`` with ``u`` drawn in ``[0, 1)`` and raised to the smallest normal
    number, so it is finite (never ``log 0``): no NaN or inf comes from the noise, unlike
    implementations that take ``log`` of an exponential draw that can be zero.

    References
    ----------
    .. [1] E. Jang, S. Gu, B. Poole, "Categorical Reparameterization with Gumbel-Softmax", 2017.
    .. [2] C. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution", 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sampling import gumbel_softmax
    >>> y = gumbel_softmax(np.array([1.0, 2.0, 3.0]), 0.5, seed=0)
    >>> y.shape, bool(abs(y.sum() - 1) < 1e-12)
    ((3,), True)
    >>> gumbel_softmax(np.array([1.0, 2.0, 3.0]), 0.5, hard=True, seed=0)
    array([0., 0., 1.])
    """
    func = "gumbel_softmax"
    check_bool(hard, "hard", func)
    check_seed(seed, rng, func)
    return gumbel_sample(logits, temperature, hard, seed, rng, axis, mask, func)


GENERATORS = ("library", "hash")


def _generator(generator: Any, seed: Any, rng: Any, row_ids: Any, func: str) -> bool:
    """Whether the counter-based generator draws (``generator="hash"``, implied by ``row_ids``)."""
    if generator is None:
        generator = "library" if row_ids is None else "hash"
    check_choice(generator, GENERATORS, "generator", func)
    if generator == "library":
        if row_ids is not None:
            raise param_error("row_ids", func, "None unless generator='hash'", "an array of row keys")
        return False
    if rng is not None:
        raise param_error("rng", func, "None when generator='hash' (pass seed=)", type(rng).__name__)
    if seed is None:
        raise param_error("seed", func, "a non-negative int when generator='hash'", seed)
    return True


def _xtc_deterministic(a: Args, func: str) -> None:
    """In :func:`warp`, ``xtc_probability`` must be 0 or 1 (XTC is then deterministic)."""
    pr = a.xtc_probability
    if pr is None:
        return
    expect = "0 or 1 in warp (a random XTC draws in sample)"
    if is_python_scalar(pr):
        if pr not in (0, 1):
            raise param_error("xtc_probability", func, expect, pr)
        return
    xp = a.xp
    if is_concrete(pr) and bool(xp.any(xp.logical_and(pr != 0, pr != 1))):
        bad = np.asarray(_backend.numpy_view(pr) if hasattr(pr, "detach") else pr)
        first = float(bad[(bad != 0) & (bad != 1)][0])
        raise param_error("xtc_probability", func, expect, first)


def _xtc_coins(a: Args, seed: Any, rng: Any, rows: Any, func: str) -> None:
    """A random XTC: per row, whether XTC applies (``u < xtc_probability``), as a 0/1 per-row
    ``xtc_probability``.  The coin is drawn from the counter-based generator's own stream
    (``generator="hash"``), else from the library's generator before the tokens' uniforms (a
    generator seeded with ``seed`` mixed with a constant, so that the coins and the tokens do not
    share their uniforms; a JAX key is folded with 1)."""
    pr = a.xtc_probability
    if pr is None or (is_python_scalar(pr) and pr == 1):
        return
    xp = a.xp
    wide = a.wide
    if rows is not None:
        u = _hash.to_namespace(_hash.uniforms(seed, rows, _hash.XTC, 1), xp, a.x, wide)
    else:
        s2 = None if seed is None else (int(seed) * _hash.GAMMA + 1) % (1 << 63)
        r2 = rng
        if rng is not None and is_jax_namespace(xp):
            import jax

            r2 = jax.random.fold_in(rng, 1)
        u = _backend.uniform(xp, (a.B, 1), wide, a.x, s2, r2, func)
    p = pr if is_python_scalar(pr) else (xp.astype(pr, wide) if pr.dtype != wide else pr)
    a.xtc_probability = xp.astype(u < p, wide)
