"""Tests of tempscale.sampling: warp, sample, gumbel_softmax.

References: a plain per-row Python implementation of the rules (float64, loops), transformers'
logits warpers (when installed), exact probabilities for goodness-of-fit tests (scipy.stats),
torch.autograd.gradcheck and jax.test_util.check_grads for the Gumbel-softmax gradients.
All random tests use fixed seeds, so their outcome is deterministic.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

import tempscale.sampling as S
from tempscale._config import config
from tempscale.sampling import gumbel_softmax, sample, warp

from .conftest import assert_close, to_numpy

stats = pytest.importorskip("scipy.stats")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ORDERS = S.ORDERS


@contextlib.contextmanager
def _paths(fast=True, via_numpy=True):
    """The sampling paths: ``tempscale.config(fast_sampling=...)``; ``via_numpy=False`` sends CPU
    tensors down the torch-operations path (the one GPU tensors take)."""
    with config(fast_sampling=fast, sampling_numpy_views=via_numpy):
        yield


# ------------------------------------------------------------------------------------------
# an independent reference: the rules, written row by row with Python loops
# ------------------------------------------------------------------------------------------
def _softmax_over(v, keep):
    out = np.zeros(len(v))
    idx = [i for i in range(len(v)) if keep[i]]
    if not idx:
        return out
    m = max(v[i] for i in idx)
    if m == math.inf:
        top = [i for i in idx if v[i] == math.inf]
        for i in top:
            out[i] = 1 / len(top)
        return out
    ws = [math.exp(v[i] - m) for i in idx]
    s = math.fsum(ws)
    for i, w in zip(idx, ws, strict=True):
        out[i] = w / s
    return out


def ref_row(x, T=1.0, k=None, p=None, mp=None, order="temperature-first", mtk=1):
    """The rules of the module docstring, row by row in float64 with exact sums (math.fsum).

    Ranking by the logit (the order of x / T for every T > 0, so T = inf keeps the large-T set);
    top-p is transformers' rule (ascending cumulative sum <= 1 - top_p is removed, ties ranked
    ascending by index, i.e. the higher index is kept); min-p protects by (-logit, index).
    """
    x = [float(v) for v in x]
    V = len(x)
    if any(math.isnan(v) for v in x):
        return np.full(V, np.nan)
    valid = [v > -math.inf for v in x]
    if not any(valid):
        return np.zeros(V)
    if T == 0:
        best = max(x[i] for i in range(V) if valid[i])
        out = np.zeros(V)
        out[next(i for i in range(V) if valid[i] and x[i] == best)] = 1
        return out
    fin = [v for v in x if math.isfinite(v)]
    m = max(fin) if fin else 0.0

    def tempered(t):
        if t == math.inf:
            return [0.0 if math.isfinite(v) else v for v in x]
        return [(v - m) / t if math.isfinite(v) else v for v in x]

    z = tempered(T if order == "temperature-first" else 1.0)
    keep = list(valid)
    if k is not None and k != 0:
        kk = min(max(k, mtk), sum(keep))
        kth = sorted((x[i] for i in range(V) if keep[i]), reverse=True)[kk - 1]
        keep = [keep[i] and x[i] >= kth for i in range(V)]
    if p is not None and p < 1:
        probs = _softmax_over(z, keep)
        asc = sorted((i for i in range(V) if keep[i]), key=lambda i: (x[i], i))
        for r, i in enumerate(asc):
            if r < len(asc) - mtk and math.fsum(probs[j] for j in asc[:r + 1]) <= 1 - p:
                keep[i] = False
    if mp is not None:
        probs = _softmax_over(z, keep)
        pmax = probs.max()
        prot = set(sorted((i for i in range(V) if keep[i]), key=lambda i: (-x[i], i))[:mtk])
        keep = [keep[i] and (probs[i] >= mp * pmax or i in prot) for i in range(V)]
    return _softmax_over(tempered(T), keep)


def ref(x, T=1.0, k=None, p=None, mp=None, order="temperature-first", mtk=1):
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    n = rows.shape[0]
    col = lambda v: [None if v is None else v] * n if np.ndim(v) == 0 else list(np.ravel(v))  # noqa: E731
    out = [ref_row(r, t, kk if kk is None else int(kk), pp, mm, order, mtk)
           for r, t, kk, pp, mm in zip(rows, col(T), col(k), col(p), col(mp), strict=True)]
    return np.asarray(out).reshape(x.shape)


def _random_logits(rng, B, V, *, ties=False, masked=False, scale=None):
    x = rng.standard_normal((B, V)) * (scale or rng.uniform(0.5, 4))
    if ties:
        x = np.round(x * 2) / 2
    if masked:
        x[rng.random((B, V)) < 0.25] = -np.inf
    return x


CONFIGS = [
    dict(T=1.0), dict(T=0.5, k=3), dict(T=2.0, p=0.7), dict(T=0.7, mp=0.1),
    dict(T=0.8, k=5, p=0.9), dict(T=1.3, k=4, p=0.6, mp=0.05), dict(T=0.3, p=0.95, mp=0.02),
    dict(T=5.0, k=2), dict(T=1.0, p=0.3), dict(T=0.9, k=6, mp=0.2), dict(T=np.inf, k=3),
    dict(T=1.0, k=1), dict(T=1.0, p=1.0), dict(T=1.0, mp=0.0), dict(T=1.0, mp=1.0),
]


def _kw(c, order):
    return dict(top_k=c.get("k"), top_p=c.get("p"), min_p=c.get("mp"), order=order)


# ------------------------------------------------------------------------------------------
# warp: exact values
# ------------------------------------------------------------------------------------------
def test_warp_examples():
    x = np.array([2.0, 1.0, 0.0, -1.0])
    # top-k at T = 0.5 keeps two tokens
    np.testing.assert_allclose(warp(x, 0.5, top_k=2), [1 / (1 + np.exp(-2)), 1 - 1 / (1 + np.exp(-2)), 0, 0])
    # top-p: 0.644 < 0.8 so the second token is needed, 0.881 >= 0.8 so the third is not
    p = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(warp(x, top_p=0.8), [p[0] / p[:2].sum(), p[1] / p[:2].sum(), 0, 0])
    # top_p = p[0]: the three smaller tokens' cumulative sum is 1 - p[0] only up to rounding;
    # transformers' arithmetic (ascending float64 cumsum <= float64(1 - top_p)) keeps two tokens
    np.testing.assert_allclose(warp(x, top_p=float(p[0])), warp(x, top_p=0.8))
    np.testing.assert_allclose(warp(x, top_p=float(p[0]) * 0.9999), [1, 0, 0, 0])
    np.testing.assert_allclose(warp(x, top_p=float(p[0]) * 1.0001), warp(x, top_p=0.8))
    # min-p keeps p >= min_p * p_max
    np.testing.assert_allclose(warp(x, min_p=np.exp(-1.0)), warp(x, top_k=2))
    np.testing.assert_allclose(warp(x, min_p=np.exp(-1.0) * 1.0001), [1, 0, 0, 0])


def test_top_k_keeps_ties_at_kth_value():
    x = np.array([3.0, 1.0, 2.0, 2.0, 0.0, 2.0])
    np.testing.assert_allclose(warp(x, top_k=2) > 0, [1, 0, 1, 1, 0, 1])
    np.testing.assert_allclose(warp(x, top_k=1), [1, 0, 0, 0, 0, 0])


def test_top_p_ties_keep_highest_index_first_as_transformers():
    # tied logits rank ascending by index (transformers' stable ascending sort): the cumulative
    # sum reaches the lower indices first, so at the boundary the higher indices are kept
    x = np.zeros(4)
    np.testing.assert_allclose(warp(x, top_p=0.5), [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(warp(x, top_p=0.51), [0, 1 / 3, 1 / 3, 1 / 3])
    x = np.array([0.0, 1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(warp(x, top_p=0.1), [0, 0, 0, 0, 1])
    # min-p's min_tokens_to_keep protects ties by lower index first (transformers' MinP)
    np.testing.assert_allclose(warp(np.array([0.0, 0.0, -5.0]), min_p=0.5, min_tokens_to_keep=3) > 0,
                               [1, 1, 1])


def test_temperature_last_keeps_the_T1_survivors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 30)) * 2
    base = warp(x, 1.0, top_k=7, top_p=0.8, min_p=0.05, order="temperature-last") > 0
    for T in (0.1, 0.5, 3.0, 100.0):
        w = warp(x, T, top_k=7, top_p=0.8, min_p=0.05, order="temperature-last")
        np.testing.assert_array_equal(w > 0, base)
        expect = np.where(base, np.exp((x - x.max(-1, keepdims=True)) / T), 0)
        np.testing.assert_allclose(w, expect / expect.sum(-1, keepdims=True), rtol=1e-12, atol=1e-300)
    # temperature-first truncation depends on T
    hot = warp(x, 3.0, top_p=0.8) > 0
    cold = warp(x, 0.3, top_p=0.8) > 0
    assert hot.sum() > cold.sum()


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("c", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_warp_against_reference(c, order):
    rng = np.random.default_rng(hash(tuple(sorted(c))) % 2**32)
    for ties, masked in ((False, False), (True, False), (False, True), (True, True)):
        x = _random_logits(rng, 6, 17, ties=ties, masked=masked)
        x[0] = -np.inf
        got = warp(x, c["T"], **_kw(c, order))
        exp = ref(x, c["T"], c.get("k"), c.get("p"), c.get("mp"), order)
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-12)
        gl = warp(x, c["T"], log=True, **_kw(c, order))
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(gl, np.log(exp), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mtk", [2, 5])
@pytest.mark.parametrize("order", ORDERS)
def test_min_tokens_to_keep(mtk, order):
    rng = np.random.default_rng(mtk)
    x = _random_logits(rng, 8, 12, ties=True, scale=4)
    for kw in (dict(top_k=1), dict(top_p=0.2), dict(min_p=0.9), dict(top_k=3, top_p=0.1, min_p=0.5)):
        got = warp(x, 0.7, min_tokens_to_keep=mtk, order=order, **kw)
        exp = ref(x, 0.7, kw.get("top_k"), kw.get("top_p"), kw.get("min_p"), order, mtk)
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-12)
        assert np.all((got > 0).sum(-1) >= mtk)


def test_per_row_parameters():
    rng = np.random.default_rng(1)
    x = _random_logits(rng, 6, 20, ties=True)
    T = np.array([0.0, 0.5, 1.0, 2.0, np.inf, 1.0])
    k = np.array([1, 3, 20, 50, 2, 5])
    p = np.array([0.5, 0.9, 1.0, 0.3, 0.7, 0.99])
    mp = np.array([0.0, 0.1, 0.2, 0.0, 0.5, 1.0])
    for order in ORDERS:
        got = warp(x, T, top_k=k, top_p=p, min_p=mp, order=order)
        np.testing.assert_allclose(got, ref(x, T, k, p, mp, order), rtol=1e-10, atol=1e-12)
        # the keepdims shape is accepted too
        got2 = warp(x, T[:, None], top_k=k[:, None], top_p=p[:, None], min_p=mp[:, None], order=order)
        np.testing.assert_allclose(got2, got)


def test_axis_and_batch_shapes():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 11, 4))
    T = rng.uniform(0.5, 2, (3, 4))
    got = warp(x, T, top_k=4, top_p=0.8, axis=1)
    exp = np.moveaxis(ref(np.moveaxis(x, 1, -1), np.moveaxis(T, 1, -1)[..., None].reshape(-1), 4, 0.8)
                      .reshape(3, 4, 11), -1, 1)
    np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-12)
    idx = sample(x, T, top_k=4, axis=1, seed=0)
    assert idx.shape == (3, 4)
    idx = sample(x, T, top_k=4, axis=1, seed=0, num_samples=6)
    assert idx.shape == (3, 4, 6)
    assert sample(x[0, :, 0], 0).shape == ()


# ------------------------------------------------------------------------------------------
# T = 0, masks, NaN, +inf
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ORDERS)
def test_greedy(order):
    rng = np.random.default_rng(3)
    x = _random_logits(rng, 50, 9, ties=True, masked=True)
    x[0] = -np.inf
    x[1] = [1, 5, 5, 2, 5, 0, 0, 0, 0]
    live = np.isfinite(x).any(-1)
    am = np.argmax(np.where(np.isfinite(x), x, -np.inf), -1)
    for kw in (dict(), dict(top_k=3), dict(top_p=0.2), dict(min_p=0.5), dict(top_k=2, top_p=0.9, min_p=0.1)):
        w = warp(x, 0.0, order=order, **kw)
        np.testing.assert_array_equal(w[live], np.eye(9)[am[live]])
        np.testing.assert_array_equal(w[~live], 0)
        idx, lp = sample(x, 0.0, order=order, seed=1, num_samples=3, return_logprobs=True, **kw)
        np.testing.assert_array_equal(idx[live], np.repeat(am[live, None], 3, 1))
        np.testing.assert_array_equal(lp[live], 0)
        np.testing.assert_array_equal(idx[~live], -1)
    assert sample(x[1], 0) == 1  # lowest index among ties, like argmax
    # T = 0 equals top_k = 1 where the maximum is unique
    uniq = np.array([np.sum(r == r.max()) == 1 for r in np.where(np.isfinite(x), x, -np.inf)]) & live
    np.testing.assert_array_equal(warp(x, 0.0, order=order)[uniq], warp(x, 1.0, top_k=1, order=order)[uniq])
    np.testing.assert_array_equal(sample(x, 0.7, top_k=1, seed=5)[uniq], am[uniq])


@pytest.mark.parametrize("fast", [True, False])
def test_masked_and_nan_rows(fast, request):
    if not fast:
        request.getfixturevalue("generic_path")
    x = np.array([[-np.inf] * 4, [1.0, np.nan, 0, 0], [1.0, 2.0, 3.0, 4.0], [0.0, 0, 0, 0]])
    mask = np.array([[True] * 4, [True] * 4, [True, True, False, False], [False] * 4])
    for kw in (dict(), dict(top_k=2, top_p=0.5), dict(min_p=0.2)):
        w = warp(x, 0.7, mask=mask, **kw)
        assert not np.isnan(w[[0, 2, 3]]).any()
        np.testing.assert_array_equal(w[0], 0)
        np.testing.assert_array_equal(w[3], 0)
        assert np.isnan(w[1]).all()
        assert w[2, 2:].sum() == 0 and abs(w[2].sum() - 1) < 1e-12
        lw = warp(x, 0.7, mask=mask, log=True, **kw)
        np.testing.assert_array_equal(lw[0], -np.inf)
        idx, lp = sample(x, 0.7, mask=mask, seed=0, num_samples=4, return_logprobs=True, **kw)
        np.testing.assert_array_equal(idx[[0, 1, 3]], -1)
        np.testing.assert_array_equal(lp[[0, 3]], -np.inf)
        assert np.isnan(lp[1]).all()
        assert np.all(idx[2] < 2)
        idx = sample(x, 0.7, mask=mask, seed=0, num_samples=3, replacement=False, **kw)
        np.testing.assert_array_equal(idx[0], -1)


def test_inf_logits_and_infinite_temperature():
    x = np.array([[1.0, np.inf, 0.0, np.inf], [1.0, 2.0, -np.inf, 3.0]])
    for T in (0.5, 1.0, np.inf):
        np.testing.assert_allclose(warp(x, T)[0], [0, 0.5, 0, 0.5])
    np.testing.assert_allclose(warp(x, np.inf)[1], [1 / 3, 1 / 3, 0, 1 / 3])
    # T = inf is the limit of large T: ranking by the logits, uniform over the kept set
    np.testing.assert_allclose(warp(x, np.inf, top_k=2)[1], [0, 0.5, 0, 0.5])
    np.testing.assert_allclose(warp(x, 1e300, top_k=2)[1], [0, 0.5, 0, 0.5])
    np.testing.assert_allclose(warp(x, np.inf, top_k=2, order="temperature-last")[1], [0, 0.5, 0, 0.5])


# ------------------------------------------------------------------------------------------
# the fast paths (NumPy, torch on CPU through NumPy, torch-only ops) against the generic one
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gap", [2, 256])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_paths_match_generic(gap, dtype, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(S._fast, "GAP", gap)
    rng = np.random.default_rng(gap)
    for trial in range(12):
        V = int(rng.choice([7, 60, 3000]))
        x = _random_logits(rng, 5, V, ties=trial % 3 == 0, masked=trial % 4 == 0).astype(dtype)
        x[1] = -np.inf
        if trial % 5 == 0:
            x[2, 3] = np.nan
        T = rng.choice([0.0, 0.4, 1.0, 2.5], 5) if trial % 2 else float(rng.choice([0.0, 0.6, 1.7]))
        k = None if trial % 3 == 1 else (rng.integers(1, V + 3, 5) if trial % 2 else int(rng.integers(1, 60)))
        p = None if trial % 4 == 3 else (rng.uniform(0.05, 1, 5) if trial % 3 else float(rng.uniform(0.1, 1)))
        mp = None if trial % 2 else float(rng.uniform(0, 0.3))
        mask = rng.random((5, V)) > 0.1 if trial % 6 == 0 else None
        for order in ORDERS:
            kw = dict(top_k=k, top_p=p, min_p=mp, order=order, mask=mask)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            for name, xx in (("numpy", x), ("torch", torch.from_numpy(x))):
                Tx = T if np.ndim(T) == 0 or name == "numpy" else torch.from_numpy(T)
                with _paths(fast=False):
                    g = to_numpy(warp(xx, Tx, **kw))
                    gi, gl = map(to_numpy, sample(xx, Tx, seed=trial, num_samples=20, return_logprobs=True, **kw))
                for via_numpy in (True, False):
                    with _paths(via_numpy=via_numpy):
                        f = to_numpy(warp(xx, Tx, **kw))
                        fi, fl = sample(xx, Tx, seed=trial, num_samples=20, return_logprobs=True, **kw)
                    np.testing.assert_allclose(f, g, rtol=tol, atol=tol, err_msg=f"{name} {trial} {order}")
                    fi, fl = to_numpy(fi), to_numpy(fl)
                    same = fi == gi
                    assert same.mean() > 0.95, (name, trial, order)  # equal up to rounding of the CDF
                    np.testing.assert_allclose(fl[same], gl[same], rtol=1e-4, atol=1e-4)


def test_fast_top_p_on_large_flat_and_peaked_rows():
    rng = np.random.default_rng(7)
    for scale in (0.3, 1.0, 6.0):
        x = (rng.standard_normal((3, 40000)) * scale).astype(np.float32)
        x[:, ::97] = np.round(x[:, ::97])  # ties everywhere
        for p in (0.2, 0.9, 0.999):
            f = warp(x, 0.8, top_p=p)
            with _paths(fast=False):
                g = warp(x, 0.8, top_p=p)
            assert np.sum((f > 0) != (g > 0)) <= 2  # float32 rounding at the boundary only
            np.testing.assert_allclose(f, g, atol=1e-6)


def _kept_sets(x, T, kw):
    """Kept tokens of the fast path (NumPy, torch through NumPy views, torch operations) and of
    the generic path."""
    torch = pytest.importorskip("torch")
    out = {}
    for name, via in (("numpy", True), ("torch-views", True), ("torch-ops", False)):
        xx = torch.from_numpy(x) if name != "numpy" else x
        kk = {k: (torch.from_numpy(v) if name != "numpy" and isinstance(v, np.ndarray) else v)
              for k, v in kw.items()}
        with _paths(via_numpy=via):
            out[name] = to_numpy(warp(xx, T, log=True, **kk)) > -np.inf
    with _paths(fast=False):
        out["generic"] = to_numpy(warp(x, T, log=True, **kw)) > -np.inf
    return out


@pytest.mark.parametrize("u", [2.0 ** -53, 2.0 ** -30, 2.0 ** -12])
def test_fast_estimates_and_exact_fallback_keep_the_generic_sets(u, monkeypatch):
    """The fast path decides with float64 estimates and recomputes exactly only the rows within
    rounding distance of an edge.  Widening the assumed rounding unit ``u`` sends more and more
    rows (all of them at 2**-12) through the exact fallback: the kept sets never change and
    equal the generic path's, on compact candidates (peaked rows), full rows (flat rows, per-row
    top-p) and after top-k, for the sum of the softmax (min-p) and the cumulative sums (top-p)."""
    calls = {"rows": 0, "sums": 0}
    real_rows = S._fast._exact_rows

    def spy_rows(*args, **kwargs):
        calls["rows"] += 1
        return real_rows(*args, **kwargs)

    real_sum = S._fast._arith.exact_sum

    def spy_sum(*args, **kwargs):
        calls["sums"] += 1
        return real_sum(*args, **kwargs)

    monkeypatch.setattr(S._fast, "_U64", u)
    monkeypatch.setattr(S._fast, "_exact_rows", spy_rows)
    monkeypatch.setattr(S._fast._arith, "exact_sum", spy_sum)
    rng = np.random.default_rng(11)
    V = 6000
    for scale in (0.5, 3.0, 8.0):
        x = (rng.standard_normal((4, V)) * scale).astype(np.float32)
        x[:, ::53] = np.round(x[:, ::53])  # ties
        x[3, :V // 2] = -np.inf  # a row with masked tokens
        for kw in (dict(top_p=0.9), dict(top_p=0.3, min_p=0.02), dict(min_p=0.1),
                   dict(top_k=300, top_p=0.8), dict(top_p=np.array([0.2, 0.5, 0.95, 1.0]))):
            sets = _kept_sets(x, 0.7, kw)
            for name in ("numpy", "torch-views", "torch-ops"):
                np.testing.assert_array_equal(sets[name], sets["generic"], err_msg=f"{name} {scale} {kw}")
    if u >= 2.0 ** -12:
        assert calls["rows"] > 0 and calls["sums"] > 0  # the fallback did run
    elif u == 2.0 ** -53:
        assert calls["rows"] == 0  # typical rows: the estimates decide, no full sort


# ------------------------------------------------------------------------------------------
# agreement with transformers' logits warpers
# ------------------------------------------------------------------------------------------
def _hf_chain(x, T, k, p, mp, mtk):
    torch = pytest.importorskip("torch")
    lp = pytest.importorskip("transformers.generation.logits_process")
    procs = [lp.TemperatureLogitsWarper(float(T))]
    if k is not None:
        procs.append(lp.TopKLogitsWarper(k, min_tokens_to_keep=mtk))
    if p is not None:
        procs.append(lp.TopPLogitsWarper(p, min_tokens_to_keep=mtk))
    if mp is not None:
        procs.append(lp.MinPLogitsWarper(mp, min_tokens_to_keep=mtk))
    s = torch.from_numpy(x.copy())
    for proc in procs:
        s = proc(None, s)
    return torch.softmax(s, -1).numpy()


@pytest.mark.parametrize("mtk", [1, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_warp_matches_transformers_chain(dtype, mtk):
    pytest.importorskip("transformers")
    rng = np.random.default_rng(11)
    for trial in range(60):
        V = int(rng.choice([5, 40, 300, 3000]))
        x = (rng.standard_normal((4, V)) * rng.uniform(0.5, 5)).astype(dtype)  # no ties
        T = float(rng.choice([0.2, 0.7, 1.0, 1.5, 4.0]))
        k = None if trial % 3 == 0 else int(rng.integers(1, V + 2))
        p = None if trial % 4 == 1 else float(rng.uniform(0.05, 0.99))
        mp = None if trial % 2 else float(rng.uniform(0.0, 0.4))
        hf = _hf_chain(x, T, k, p, mp, mtk)
        ours = warp(x, T, top_k=k, top_p=p, min_p=mp, min_tokens_to_keep=mtk)
        tol = 1e-12 if dtype == np.float64 else 2e-6
        if dtype == np.float32:  # float32 cumulative sums may disagree at a razor-thin boundary
            assert np.sum((hf > 0) != (ours > 0)) <= 1
            same = ((hf > 0) == (ours > 0)).all(-1)
            np.testing.assert_allclose(ours[same], hf[same], rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(ours > 0, hf > 0)
            np.testing.assert_allclose(ours, hf, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------
# goodness of fit of the draws
# ------------------------------------------------------------------------------------------
def _gof(counts, probs, *, alpha=1e-4):
    """Chi-square of counts against probs (zero-probability categories must be empty)."""
    counts = np.asarray(counts, dtype=np.float64)
    assert counts[probs == 0].sum() == 0, "a removed token was drawn"
    pos = probs > 0
    if pos.sum() == 1:
        return
    n = counts.sum()
    res = stats.chisquare(counts[pos], probs[pos] / probs[pos].sum() * n)
    assert res.pvalue > alpha, (res, counts[pos], probs[pos] * n)


def _draw_counts(x, T, kw, backend, n, seed):
    if backend == "numpy":
        idx = sample(x, T, num_samples=n, seed=seed, **kw)
    elif backend == "numpy-generic":
        with _paths(fast=False):
            idx = sample(x, T, num_samples=n, seed=seed, **kw)
    elif backend == "torch":
        torch = pytest.importorskip("torch")
        g = torch.Generator().manual_seed(seed)
        idx = sample(torch.from_numpy(x), T, num_samples=n, rng=g, **kw).numpy()
    else:
        jax = pytest.importorskip("jax")
        idx = np.asarray(sample(jax.numpy.asarray(x), T, num_samples=n, rng=jax.random.key(seed), **kw))
    return np.stack([np.bincount(r, minlength=x.shape[-1]) for r in idx])


@pytest.mark.parametrize("backend", ["numpy", "numpy-generic", "torch", "jax"])
@pytest.mark.parametrize("order", ORDERS)
def test_draw_frequencies(backend, order):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 8)) * 1.5
    x[2, :3] = x[2, 3]  # a tie
    for i, c in enumerate(CONFIGS[:11]):
        kw = _kw(c, order)
        probs = ref(x, c["T"], c.get("k"), c.get("p"), c.get("mp"), order)
        counts = _draw_counts(x, c["T"], kw, backend, 6000, 100 + i)
        for r in range(3):
            _gof(counts[r], probs[r])


def test_draw_frequencies_large_vocabulary():
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((2, 3000)) * 3).astype(np.float32)
    for order in ORDERS:
        probs = warp(x.astype(np.float64), 0.8, top_k=40, top_p=0.9, order=order)
        counts = _draw_counts(x, 0.8, dict(top_k=40, top_p=0.9, order=order), "numpy", 20000, 3)
        for r in range(2):
            big = probs[r] > 0.01  # pool the small categories
            obs = np.append(counts[r][big], counts[r][~big].sum())
            exp = np.append(probs[r][big], probs[r][~big].sum())
            _gof(obs, exp)
            assert counts[r][probs[r] == 0].sum() == 0


def test_without_replacement():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 6)) * 1.2
    p = warp(x, 0.9, top_k=5)[0]
    idx = sample(np.repeat(x, 8000, 0), 0.9, top_k=5, num_samples=3, replacement=False, seed=4)
    assert all(len(set(r)) == 3 for r in idx)
    assert not np.isin(idx, np.flatnonzero(p == 0)).any()
    _gof(np.bincount(idx[:, 0], minlength=6), p)
    # second draw: sum_i p_i p_j / (1 - p_i)  (Plackett-Luce)
    second = np.array([sum(p[i] * p[j] / (1 - p[i]) for i in range(6) if i != j) for j in range(6)])
    _gof(np.bincount(idx[:, 1], minlength=6), second)
    # more draws than candidates: -1 beyond the support
    idx, lp = sample(x, 1.0, top_k=2, num_samples=4, replacement=False, seed=0, return_logprobs=True)
    assert sorted(idx[0, :2]) == sorted(np.argsort(-x[0])[:2].tolist())
    np.testing.assert_array_equal(idx[0, 2:], -1)
    np.testing.assert_array_equal(lp[0, 2:], -np.inf)


def test_logprobs_are_those_of_the_warped_distribution():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 50)) * 2
    for order in ORDERS:
        lw = warp(x, 0.6, top_k=10, top_p=0.8, order=order, log=True)
        idx, lp = sample(x, 0.6, top_k=10, top_p=0.8, order=order, num_samples=30, seed=1, return_logprobs=True)
        np.testing.assert_allclose(lp, np.take_along_axis(lw, idx, -1), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# backends, reproducibility, RNG arguments
# ------------------------------------------------------------------------------------------
def test_backends_agree(xp):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 30)) * 2
    T = np.array([0.0, 0.5, 1.0, 3.0])
    for order in ORDERS:
        exp = ref(x, T, 5, 0.8, 0.05, order)
        got = warp(xp.asarray(x), xp.asarray(T), top_k=5, top_p=0.8, min_p=0.05, order=order)
        assert_close(got, exp, xp=xp, dtype=xp.float64, rtol=1e-10, atol=1e-12)
        idx = sample(xp.asarray(x), xp.asarray(T), top_k=5, top_p=0.8, min_p=0.05, order=order,
                     seed=3, num_samples=7)
        idx = to_numpy(idx)
        assert idx.shape == (4, 7)
        assert np.all(np.take_along_axis(exp, idx, -1) > 0)


def test_seed_reproducibility(xp):
    rng = np.random.default_rng(13)
    x = xp.asarray(rng.standard_normal((3, 40)))
    a = to_numpy(sample(x, 1.3, top_p=0.95, num_samples=50, seed=7))
    b = to_numpy(sample(x, 1.3, top_p=0.95, num_samples=50, seed=7))
    c = to_numpy(sample(x, 1.3, top_p=0.95, num_samples=50, seed=8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    g1 = to_numpy(gumbel_softmax(x, 0.5, seed=7))
    np.testing.assert_array_equal(g1, to_numpy(gumbel_softmax(x, 0.5, seed=7)))
    w = to_numpy(sample(x, 1.3, top_p=0.95, num_samples=20, seed=7, replacement=False))
    np.testing.assert_array_equal(w, to_numpy(sample(x, 1.3, top_p=0.95, num_samples=20, seed=7,
                                                     replacement=False)))


def test_library_generators():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    x = np.random.default_rng(0).standard_normal((2, 20))
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    np.testing.assert_array_equal(sample(x, num_samples=9, rng=g1), sample(x, num_samples=9, rng=g2))
    assert (sample(x, num_samples=9, rng=g1) != sample(x, num_samples=9, rng=g1)).any()  # advanced
    t = torch.from_numpy(x)
    a = sample(t, num_samples=9, rng=torch.Generator().manual_seed(3))
    b = sample(t, num_samples=9, rng=torch.Generator().manual_seed(3))
    assert a.dtype == torch.int64 and torch.equal(a, b)
    np.testing.assert_array_equal(a.numpy(), sample(t, num_samples=9, seed=3).numpy())
    jx = jax.numpy.asarray(x)
    for key in (jax.random.key(4), jax.random.PRNGKey(4)):
        np.testing.assert_array_equal(sample(jx, num_samples=9, rng=key), sample(jx, num_samples=9, rng=key))
    torch.manual_seed(0)
    assert sample(t).shape == (2,)  # the global generator
    assert sample(jx).shape == (2,)  # a fresh key


def test_jax_jit_and_array_temperature():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.asarray(np.random.default_rng(14).standard_normal((3, 25)))
    T = jnp.asarray([0.0, 0.7, 2.0])
    f = jax.jit(lambda x, T, key: sample(x, T, top_k=6, top_p=0.9, rng=key, num_samples=4,
                                          return_logprobs=True))
    key = jax.random.key(0)
    i1, l1 = f(x, T, key)
    i2, l2 = sample(x, T, top_k=6, top_p=0.9, rng=key, num_samples=4, return_logprobs=True)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    w = jax.jit(lambda x, T: warp(x, T, top_k=6, top_p=0.9, min_p=0.1))(x, T)
    np.testing.assert_allclose(w, ref(np.asarray(x), np.asarray(T), 6, 0.9, 0.1), rtol=1e-10, atol=1e-12)


def test_dtypes():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(15).standard_normal((2, 9))
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        t = torch.from_numpy(x).to(dt)
        w = warp(t, 0.7, top_p=0.9)
        assert w.dtype == dt
        idx, lp = sample(t, 0.7, top_k=3, return_logprobs=True, seed=0)
        assert idx.dtype == torch.int64 and lp.dtype == dt
    w = warp(np.arange(5), 1.0, top_k=2)  # integers promote
    assert w.dtype == np.float64 and (w > 0).sum() == 2


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, exc, text", [
    (dict(top_p=0.0), ValueError, "The 'top_p' parameter of warp must be a float in (0, 1]"),
    (dict(top_p=1.5), ValueError, "'top_p' parameter of warp"),
    (dict(top_p=np.array([0.5, np.nan])), ValueError, "Got nan instead"),
    (dict(min_p=-0.1), ValueError, "The 'min_p' parameter of warp must be a float in [0, 1]"),
    (dict(top_k=-1), ValueError, "The 'top_k' parameter of warp must be an int in [0, inf]"),
    (dict(top_k=2.5), TypeError, "'top_k'"),
    (dict(top_k=np.array([1.0, 2.0])), TypeError, "'top_k'"),
    (dict(top_k=np.array([1, -2])), ValueError, "Got -2 instead"),
    (dict(top_k=np.array([1, 2, 3])), ValueError, "of shape (2,) or (2, 1)"),
    (dict(order="first"), ValueError, "The 'order' parameter of warp must be one of"),
    (dict(min_tokens_to_keep=0), ValueError, "'min_tokens_to_keep'"),
    (dict(temperature=-1.0), ValueError, "The 'temperature' parameter of warp"),
    (dict(log=1), TypeError, "The 'log' parameter of warp must be a bool"),
    (dict(axis=2), np.exceptions.AxisError, "axis 2"),
])
def test_warp_validation(kw, exc, text):
    x = np.zeros((2, 3))
    T = kw.pop("temperature", 1.0)
    with pytest.raises(exc) as info:
        warp(x, T, **kw)
    assert text in str(info.value)


def test_sample_validation():
    torch = pytest.importorskip("torch")
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="The 'num_samples' parameter of sample must be an int in"):
        sample(x, num_samples=0)
    with pytest.raises(ValueError, match="at most the vocabulary size 3 when replacement=False"):
        sample(x, num_samples=4, replacement=False)
    with pytest.raises(ValueError, match="The 'seed' parameter of sample must be None when rng is given"):
        sample(x, seed=1, rng=np.random.default_rng())
    with pytest.raises(TypeError, match="must be a numpy.random.Generator"):
        sample(x, rng=torch.Generator())
    with pytest.raises(TypeError, match="must be a torch.Generator"):
        sample(torch.zeros(2, 3), rng=np.random.default_rng())
    with pytest.raises(ValueError, match="'seed' parameter of sample must be a non-negative int"):
        sample(x, seed=-1)
    with pytest.raises(ValueError, match="'logits' parameter of sample"):
        sample(np.float64(1.0))
    with pytest.raises(TypeError, match="'hard' parameter of gumbel_softmax"):
        gumbel_softmax(x, hard="yes")


# ------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------
finite = st.floats(-30, 30, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(x=st.lists(finite, min_size=1, max_size=12), T=st.sampled_from([0.0, 0.3, 1.0, 4.0]),
       k=st.one_of(st.none(), st.integers(1, 14)), p=st.one_of(st.none(), st.floats(0.01, 1.0)),
       mp=st.one_of(st.none(), st.floats(0.0, 1.0)), order=st.sampled_from(ORDERS))
def test_properties(x, T, k, p, mp, order):
    x = np.asarray(x)
    w = warp(x, T, top_k=k, top_p=p, min_p=mp, order=order)
    assert abs(w.sum() - 1) < 1e-12 and np.all(w >= 0)
    assert w[np.argmax(x)] > 0 or T > 0  # greedy keeps the argmax
    np.testing.assert_allclose(w, ref(x, T, k, p, mp, order), rtol=1e-9, atol=1e-12)
    if k is not None:
        assert (w > 0).sum() <= max(k, np.sum(x >= np.sort(x)[::-1][min(k, len(x)) - 1]))
    if p is not None and p < 1:  # a larger top_p never removes a token
        w2 = warp(x, T, top_k=k, top_p=min(1.0, p + 0.1), min_p=mp, order=order)
        assert np.all((w2 > 0) >= (w > 0))


# ------------------------------------------------------------------------------------------
# Gumbel-softmax
# ------------------------------------------------------------------------------------------
def test_gumbel_softmax_basics(xp):
    x = xp.asarray(np.random.default_rng(16).standard_normal((5, 7)))
    y = gumbel_softmax(x, 0.5, seed=0)
    yn = to_numpy(y)
    np.testing.assert_allclose(yn.sum(-1), 1, rtol=1e-12)
    h = to_numpy(gumbel_softmax(x, 0.5, hard=True, seed=0))
    np.testing.assert_allclose(h, np.eye(7)[yn.argmax(-1)], atol=1e-12)
    T = xp.asarray([0.0, 0.1, 1.0, 10.0, np.inf])
    yt = to_numpy(gumbel_softmax(x, T, seed=1))
    assert set(np.unique(yt[0])) <= {0.0, 1.0}
    np.testing.assert_allclose(yt[4], 1 / 7)
    m = np.ones((5, 7), dtype=bool)
    m[2] = False
    m[3, :5] = False
    ym = to_numpy(gumbel_softmax(x, 1.0, seed=2, mask=xp.asarray(m)))
    np.testing.assert_array_equal(ym[2], 0)
    np.testing.assert_array_equal(ym[3, :5], 0)
    hm = to_numpy(gumbel_softmax(x, 1.0, seed=2, mask=xp.asarray(m), hard=True))
    np.testing.assert_array_equal(hm[2], 0)


def test_gumbel_noise_is_finite(monkeypatch):
    from tempscale import _backend, _compat

    real = _backend.uniform

    def extreme(xp, shape, dtype, like, seed, rng, func):
        u = real(xp, shape, dtype, like, seed, rng, func)
        u = np.asarray(u).copy()
        u.reshape(-1)[0::2] = 0.0
        u.reshape(-1)[1::2] = np.nextafter(1.0, 0.0, dtype=u.dtype)
        return u

    monkeypatch.setattr(_backend, "uniform", extreme)
    for dt in (np.float32, np.float64):
        x = np.zeros((3, 6), dtype=dt)
        y = gumbel_softmax(x, 0.1, seed=0)
        assert np.isfinite(y).all() and y.dtype == dt
        g = _backend.gumbel(_compat.array_namespace(x), (4,), dt, x, 0, None, "t")
        assert np.isfinite(g).all()


def test_gumbel_max_frequencies():
    x = np.array([0.5, -1.0, 2.0, 0.0, 1.0])
    for T in (0.3, 1.0, 5.0):  # the argmax of the perturbed logits does not depend on T
        h = gumbel_softmax(np.tile(x, (8000, 1)), T, hard=True, seed=int(T * 10))
        _gof(h.sum(0), np.exp(x) / np.exp(x).sum())


def test_gumbel_softmax_torch_gradients():
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    T = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, T: gumbel_softmax(x, T, seed=3), (x, T))
    # straight-through: forward one-hot, backward the soft sample's gradient
    w = torch.randn(3, 5, dtype=torch.float64)
    h = gumbel_softmax(x, T, hard=True, seed=3)
    assert torch.all((h == 0) | (h == 1)) or torch.allclose(h.sum(-1), torch.ones(3))
    gh = torch.autograd.grad((h * w).sum(), (x, T))
    gs = torch.autograd.grad((gumbel_softmax(x, T, seed=3) * w).sum(), (x, T))
    for a, b in zip(gh, gs, strict=True):
        torch.testing.assert_close(a, b)
        assert torch.isfinite(a).all()
    # masked entries get zero, finite gradients
    m = torch.ones(3, 5, dtype=torch.bool)
    m[0, 1] = False
    y = gumbel_softmax(x, 1.0, seed=1, mask=m)
    (g,) = torch.autograd.grad((y * w).sum(), x)
    assert torch.isfinite(g).all() and g[0, 1] == 0


def test_gumbel_softmax_jax_gradients():
    jax = pytest.importorskip("jax")
    from jax.test_util import check_grads

    jnp = jax.numpy
    x = jnp.asarray(np.random.default_rng(17).standard_normal((3, 5)))
    T = jnp.asarray([0.5, 1.0, 2.0])
    key = jax.random.key(0)
    soft = jax.jit(lambda x, T: gumbel_softmax(x, T, rng=key))
    check_grads(soft, (x, T), order=1, modes=("rev", "fwd"))
    w = jnp.asarray(np.random.default_rng(18).standard_normal((3, 5)))
    gh = jax.jit(jax.grad(lambda x, T: jnp.sum(gumbel_softmax(x, T, hard=True, rng=key) * w), (0, 1)))(x, T)
    gs = jax.grad(lambda x, T: jnp.sum(soft(x, T) * w), (0, 1))(x, T)
    for a, b in zip(gh, gs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    h = gumbel_softmax(x, T, hard=True, rng=key)
    np.testing.assert_allclose(h, np.eye(5)[np.asarray(gumbel_softmax(x, T, rng=key)).argmax(-1)], atol=1e-12)
    y = jax.jit(lambda x, k: gumbel_softmax(x, 0.5, rng=k, hard=True))(x, key)
    np.testing.assert_array_equal(y, gumbel_softmax(x, 0.5, rng=key, hard=True))


# ------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------
def test_cli_sample(capsys, tmp_path):
    from tempscale.cli import main

    assert main(["sample", "-T", "0.7", "--top-k", "3", "-n", "20", "--seed", "0", "--", "2", "1", "0", "-1"]) == 0
    out = capsys.readouterr().out
    assert "3 of 4" in out and "tokens kept" in out and "draws:" in out
    draws = [int(t) for t in out.split("draws:")[1].split()]
    np.testing.assert_array_equal(draws, sample(np.array([[2.0, 1, 0, -1]]), 0.7, top_k=3, num_samples=20,
                                                seed=0)[0])
    assert main(["sample", "-T", "0", "-n", "3", "--", "1", "3", "3", "0"]) == 0
    assert "draws: 1 1 1" in capsys.readouterr().out
    np.save(tmp_path / "l.npy", np.random.default_rng(0).standard_normal((3, 30)))
    assert main(["sample", "--top-p", "0.5", "--order", "temperature-last", "-n", "5", "--seed", "1",
                 str(tmp_path / "l.npy"), "-o", str(tmp_path / "d.npy")]) == 0
    d = np.load(tmp_path / "d.npy")
    assert d.shape == (3, 5)
    assert main(["sample", "-n", "5", str(tmp_path / "l.npy"), "-o", str(tmp_path / "d.npy")]) == 2  # no --force
    assert main(["sample", "--top-p", "1.5", "--", "1", "2"]) == 2
    err = capsys.readouterr().err
    assert "--top-p" in err and "1.5" in err  # the CLI names the flag the user typed


def test_dask_is_refused_clearly():
    da = pytest.importorskip("dask.array")
    with pytest.raises(TypeError, match="The 'logits' parameter of sample must be an in-memory array"):
        sample(da.zeros((2, 3)))


@pytest.mark.parametrize("fast", [True, False])
def test_degenerate_shapes(fast, request):
    torch = pytest.importorskip("torch")
    if not fast:
        request.getfixturevalue("generic_path")
    for xx in (np.zeros((0, 5)), np.zeros((1, 1)), np.array([3.0])):
        for x in (xx, torch.from_numpy(xx)):
            for kw in (dict(), dict(top_k=1, top_p=0.1, min_p=0.5)):
                w = to_numpy(warp(x, 0.5, **kw))
                assert w.shape == xx.shape and np.all(w == 1.0)
                i = to_numpy(sample(x, 0.5, seed=0, num_samples=2, **kw))
                assert i.shape == xx.shape[:-1] + (2,) and np.all(i == 0)
    assert gumbel_softmax(np.zeros((0, 4)), seed=0).shape == (0, 4)
