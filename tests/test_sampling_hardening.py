"""Hardening of tempscale.sampling (issue 10, items 3, 5 and 18).

* item 3: the fast and the generic path decide top-p / top-k / min-p with one rule in one
  arithmetic, and that rule is transformers' (``TopPLogitsWarper`` etc.): exact boundaries
  (probabilities that are binary fractions summing to ``1 - top_p``), ties at the boundary,
  float16/bfloat16/float32/float64, per-row parameters; kept sets compared exactly.
* item 5: every temperature in ``[0, inf]`` (5e-324 ... 1e300) and every finite logit up to the
  dtype's maximum give the limits / the exact tempered distribution, never a false ``+-inf``;
  a row with a finite logit never draws ``-1``; Gumbel-softmax at tiny and huge ``T``.
* item 18: ``top_k=0``, ``top_p=1``, ``min_p=0`` are "off" (per row too).

References: transformers' logits warpers (float32 decisions: exact agreement; float64: see
``test_top_p_float64_boundaries_follow_exact_arithmetic``), mpmath for exact tempered softmax and
cumulative sums, and a differential fuzz test of every path (NumPy fast / generic, torch through
NumPy / torch-only / torch generic, JAX).  The fuzz test runs a bounded number of examples; set
``TEMPSCALE_FUZZ_EXAMPLES=N`` for N examples (for instance 2000) with fresh random seeds.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

import tempscale.sampling as S
from tempscale._config import config
from tempscale.sampling import gumbel_softmax, sample, warp

torch = pytest.importorskip("torch")
mpmath = pytest.importorskip("mpmath")
lp_mod = pytest.importorskip("transformers.generation.logits_process")

ORDERS = S.ORDERS
F32 = np.finfo(np.float32)
F64 = np.finfo(np.float64)


# ------------------------------------------------------------------------------------------
# helpers: every path's kept set
# ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _switch(fast=True, via_numpy=True):
    """The sampling paths: ``tempscale.config(fast_sampling=...)``; ``via_numpy=False`` sends CPU
    tensors down the torch-operations path (the one GPU tensors take)."""
    with config(fast_sampling=fast, sampling_numpy_views=via_numpy):
        yield


def _np(a):
    if isinstance(a, torch.Tensor):
        a = a.detach()
        return (a.float() if a.dtype in (torch.bfloat16, torch.float16) else a).numpy()
    return np.asarray(a)


def _kept(w):
    """Kept tokens of a log-probability output (a kept token may have probability 0)."""
    w = _np(w)
    return w > -np.inf


def all_paths(x, T=1.0, jax=False, **kw):
    """{path: warp(log=True) result as NumPy} for NumPy/torch fast and generic paths (and JAX)."""
    out = {}
    xt = torch.from_numpy(np.array(x))

    def conv(v, f):
        return v if v is None or np.ndim(v) == 0 else f(np.asarray(v))

    kt = {k: conv(v, torch.from_numpy) if k != "order" else v for k, v in kw.items()}
    Tt = conv(T, torch.from_numpy)
    with _switch(True):
        out["numpy-fast"] = _np(warp(x, T, log=True, **kw))
        out["torch-via-numpy"] = _np(warp(xt, Tt, log=True, **kt))
    with _switch(True, via_numpy=False):
        out["torch-only"] = _np(warp(xt, Tt, log=True, **kt))
    with _switch(False):
        out["numpy-generic"] = _np(warp(x, T, log=True, **kw))
        out["torch-generic"] = _np(warp(xt, Tt, log=True, **kt))
    if not jax:
        return out
    try:
        import jax.numpy as jnp
    except ImportError:  # pragma: no cover
        return out
    if np.asarray(x).dtype == np.float64 and not _jax_x64():
        return out
    kj = {k: conv(v, jnp.asarray) if k != "order" else v for k, v in kw.items()}
    out["jax"] = _np(warp(jnp.asarray(x), conv(T, jnp.asarray), log=True, **kj))
    return out


def _jax_x64():
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def assert_same_kept(res, expect=None, msg=""):
    names = list(res)
    base = _kept(res[names[0]]) if expect is None else expect
    for n in names:
        np.testing.assert_array_equal(_kept(res[n]), base, err_msg=f"{n} {msg}")


def hf_kept(x32, T=1.0, k=None, p=None, mp=None, mtk=1):
    """transformers' warper chain on a torch tensor; True where the score stays finite."""
    s = torch.from_numpy(np.array(x32))
    if T != 1.0:
        s = lp_mod.TemperatureLogitsWarper(float(T))(None, s)
    if k is not None:
        s = lp_mod.TopKLogitsWarper(k, min_tokens_to_keep=mtk)(None, s)
    if p is not None:
        s = lp_mod.TopPLogitsWarper(p, min_tokens_to_keep=mtk)(None, s)
    if mp is not None:
        s = lp_mod.MinPLogitsWarper(mp, min_tokens_to_keep=mtk)(None, s)
    return s.numpy() > -np.inf


def dyadic(rng, V):
    """V probabilities, binary fractions summing exactly to 1 (random halvings)."""
    p = [1.0]
    while len(p) < V:
        v = p.pop(int(rng.integers(len(p))))
        p += [v / 2, v / 2]
    p = np.array(p)
    rng.shuffle(p)
    return p


def boundary_top_ps(p):
    """Every top_p at which a token sits exactly on the boundary, and its float neighbours."""
    out = set()
    for c in np.cumsum(np.sort(p))[:-1]:
        t = 1 - c
        out |= {t, float(np.nextafter(t, 0)), float(np.nextafter(t, 1)), float(np.float32(t))}
    return sorted(t for t in out if 0 < t <= 1)


# ------------------------------------------------------------------------------------------
# item 3: one rule, one arithmetic, transformers' rule
# ------------------------------------------------------------------------------------------
def test_issue_example_top_p_boundary():
    x = np.log([[0.3, 0.1, 0.1, 0.5]])
    # float32 (transformers' generation dtype): 2 tokens; float64: transformers keeps 3 (the
    # cumulative sum 0.1 + 0.1 is not <= 1 - 0.8 = 0.19999999999999996 in float64)
    for dt, n in ((np.float32, 2), (np.float64, 3)):
        xx = x.astype(dt)
        res = all_paths(xx, 1.0, jax=True, top_p=0.8)
        hf = hf_kept(xx, p=0.8)
        assert hf.sum() == n
        assert_same_kept(res, hf, str(dt))


@pytest.mark.parametrize("dtype", [np.float32, "float16", "bfloat16"])
def test_top_p_binary_boundaries_match_transformers(dtype):
    """Probabilities that are binary fractions: cumulative sums land exactly on 1 - top_p."""
    rng = np.random.default_rng(3)
    n = 0
    for _ in range(45):
        V = int(rng.integers(2, 14))
        p = dyadic(rng, V)
        x32 = np.log(p).astype(np.float32)[None]
        if dtype == np.float32:
            x = x32
        else:  # the probabilities of 16-bit logits are decided in float32
            tdt = getattr(torch, dtype)
            x = torch.from_numpy(x32).to(tdt)
            x32 = x.float().numpy()
        for tp in boundary_top_ps(p):
            hf = hf_kept(x32, p=tp)
            if isinstance(x, torch.Tensor):
                with _switch(True):
                    f = _kept(warp(x, 1.0, top_p=tp, log=True))
                with _switch(True, via_numpy=False):
                    o = _kept(warp(x, 1.0, top_p=tp, log=True))
                with _switch(False):
                    g = _kept(warp(x, 1.0, top_p=tp, log=True))
                for name, got in (("fast", f), ("torch-only", o), ("generic", g)):
                    np.testing.assert_array_equal(got, hf, err_msg=f"{name} p={p} top_p={tp!r}")
            else:
                assert_same_kept(all_paths(x, 1.0, top_p=tp), hf, f"p={p} top_p={tp!r}")
            n += 1
    assert n > 150


def test_top_p_float64_boundaries_follow_exact_arithmetic():
    """float64: every path keeps the same set, and it is the exact-arithmetic set of the given
    float logits wherever the exact cumulative sum is not within a few ulp of ``1 - top_p``.

    (transformers' float64 softmax uses an exp with up to 2 ulp error, so within a few ulp its own
    decision is rounding noise: there it is not a reference.)"""
    mpmath.mp.prec = 200
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(25):
        V = int(rng.integers(2, 12))
        p = dyadic(rng, V)
        x = np.log(p)[None]
        e = [mpmath.exp(mpmath.mpf(float(v)) - mpmath.mpf(float(x.max()))) for v in x[0]]
        s = mpmath.fsum(e)
        asc = sorted(range(V), key=lambda i: (x[0, i], i))
        for tp in boundary_top_ps(p):
            res = all_paths(x, 1.0, top_p=tp)
            assert_same_kept(res, msg=f"top_p={tp!r}")
            thr = mpmath.mpf(1 - tp)  # 1 - top_p as computed in float64
            exact = np.ones(V, bool)
            ambiguous = False
            c = mpmath.mpf(0)
            for i in asc[:-1]:
                c += e[i] / s
                if abs(c - thr) < 8 * F64.eps * max(thr, 1e-300):
                    ambiguous = True
                exact[i] = not c <= thr
            if not ambiguous:
                np.testing.assert_array_equal(_kept(res["numpy-fast"])[0], exact, err_msg=f"top_p={tp!r}")
                checked += 1
    assert checked > 40


def test_top_p_ties_at_the_boundary_match_transformers():
    """Tied logits rank ascending by index (transformers' sort is stable up to 16 tokens)."""
    rng = np.random.default_rng(5)
    rows = [np.zeros(4), np.zeros(8), np.zeros(16), np.array([0.0, 1.0, 0.0, 0.0, 1.0]),
            np.array([0.0, 0.0, -1000.0, -1000.0]), np.array([2.0, 2.0, 2.0, 2.0, -np.inf, -np.inf])]
    for _ in range(12):
        V = int(rng.integers(2, 17))
        rows.append(rng.integers(-2, 2, V).astype(float) * float(rng.choice([0.5, 1.0, np.log(2)])))
    for r in rows:
        for dt in (np.float32, np.float64):
            x = r.astype(dt)[None]
            n = int(np.isfinite(x).sum())
            for tp in sorted({j / n for j in range(1, n)} | {0.3, 0.5, 0.75, 0.999}):
                hf = hf_kept(x, p=tp)
                res = all_paths(x, 1.0, top_p=tp)
                if dt == np.float32 or np.all((x == x.max()) | (x < x.max() - 800)):
                    assert_same_kept(res, hf, f"{r} top_p={tp}")  # exact probabilities
                else:
                    assert_same_kept(res, msg=f"{r} top_p={tp}")


def test_top_p_per_row_matches_scalar_calls():
    rng = np.random.default_rng(6)
    for dt in (np.float32, np.float64):
        x = np.stack([np.log(dyadic(rng, 9)) for _ in range(6)]).astype(dt)
        tp = np.array([0.5, 0.75, 0.875, 1.0, 0.3, 0.999])
        res = all_paths(x, 1.0, jax=True, top_p=tp)
        expect = np.stack([_kept(warp(x[i:i + 1], 1.0, top_p=float(tp[i]), log=True))[0] for i in range(6)])
        assert_same_kept(res, expect)
        hf = np.stack([hf_kept(x[i:i + 1], p=float(tp[i]))[0] if tp[i] < 1 else np.ones(9, bool)
                       for i in range(6)])
        if dt == np.float32:
            np.testing.assert_array_equal(expect, hf)
        # a float32 per-row array is decided as its values given one by one as Python floats
        res32 = warp(x, 1.0, top_p=tp.astype(np.float32), log=True)
        exp32 = np.stack([_kept(warp(x[i:i + 1], 1.0, top_p=float(np.float32(tp[i])), log=True))[0]
                          for i in range(6)])
        np.testing.assert_array_equal(_kept(res32), exp32)


def test_top_k_ties_at_the_kth_value_match_transformers():
    rng = np.random.default_rng(7)
    for _ in range(15):
        V = int(rng.integers(2, 40))
        x = rng.integers(-3, 3, (3, V)).astype(np.float32)
        for k in sorted({1, 2, 3, V - 1, V, V + 1} - {0}):
            res = all_paths(x, 1.0, top_k=k)
            assert_same_kept(res, hf_kept(x, k=k), f"k={k}")


def test_min_p_exact_equality_matches_transformers():
    # probabilities exactly min_p * p_max are kept (strict <); ratios that are powers of two
    for dt in (np.float32, np.float64):
        x = np.log(np.array([[1.0, 0.5, 0.25, 0.125, 0.0625, 0.5]])).astype(dt)
        for mp in (0.5, 0.25, 0.125, 0.0625, 0.03125, 1.0, 0.51, 0.49):
            assert_same_kept(all_paths(x, 1.0, min_p=mp), hf_kept(x, mp=mp), f"{dt} min_p={mp}")
    # min_p equal to exp(logit difference) as computed in the dtype: that token is kept by every
    # path (p = e / s and min_p * p_max = e * (1 / s) round alike), the next smaller one is not
    # (transformers' softmax computes exp with up to 2 ulp error, so it is no reference here)
    rng = np.random.default_rng(8)
    for _ in range(10):
        x = rng.permutation(rng.standard_normal(12)).astype(np.float32)[None]
        order = np.argsort(-x[0])
        for r in (1, 5, 11):
            j = order[r]
            d = x[0, j] - x.max()
            for exp_of, paths in ((lambda d: float(np.exp(d)), ("numpy-fast", "numpy-generic")),
                                  (lambda d: float(torch.exp(torch.tensor(d))),
                                   ("torch-via-numpy", "torch-only", "torch-generic"))):
                mp = exp_of(d)
                res = all_paths(x, 1.0, min_p=mp)
                assert_same_kept({k: res[k] for k in paths}, x >= x[0, j], f"min_p={mp!r}")


def test_chain_with_temperature_matches_transformers_float32():
    rng = np.random.default_rng(9)
    bad = 0
    for trial in range(50):
        V = int(rng.choice([5, 16, 50, 400]))
        x = (rng.standard_normal((3, V)) * rng.uniform(0.5, 4)).astype(np.float32)
        T = float(rng.choice([0.25, 0.5, 1.0, 2.0, 0.7]))
        k = None if trial % 3 == 0 else int(rng.integers(1, V + 1))
        p = None if trial % 4 == 1 else float(rng.choice([0.5, 0.8, 0.9, 0.95, rng.uniform(0.05, 1)]))
        mp = None if trial % 2 else float(rng.choice([0.05, 0.1, rng.uniform(0, 0.3)]))
        res = all_paths(x, T, top_k=k, top_p=p, min_p=mp)
        assert_same_kept(res, msg=f"trial {trial}")
        # T = 1, 0.5, 0.25, 2: x / T is exact, so the probabilities are those of transformers'
        # float32 softmax up to its exp; other T round x / T differently by design (one rounding)
        hf = hf_kept(x, T, k, p, mp)
        bad += int((_kept(res["numpy-fast"]) != hf).sum())
    assert bad <= 2  # a float32 exp ulp at a razor-thin boundary


def test_16bit_logits_use_float32_on_both_paths():
    rng = np.random.default_rng(10)
    for tdt in (torch.float16, torch.bfloat16):
        x = torch.from_numpy((rng.standard_normal((4, 300)) * 3).astype(np.float32)).to(tdt)
        x[0, :5] = x[0, 5]  # ties
        for kw in (dict(top_p=0.9), dict(top_k=20, top_p=0.5), dict(min_p=0.1), dict(top_p=0.7, min_p=0.05)):
            outs = []
            for fast, via in ((True, True), (True, False), (False, True)):
                with _switch(fast, via):
                    w = warp(x, 0.7, **kw)
                    assert w.dtype == tdt
                    outs.append(_kept(warp(x, 0.7, log=True, **kw)))
            w32 = _kept(warp(x.float(), 0.7, log=True, **kw))
            for o in outs:
                np.testing.assert_array_equal(o, w32)
    x16 = np.log(np.array([[0.3, 0.1, 0.1, 0.5]])).astype(np.float16)
    np.testing.assert_array_equal(_kept(warp(x16, top_p=0.8, log=True)),
                                  hf_kept(x16.astype(np.float32), p=0.8))


# ------------------------------------------------------------------------------------------
# item 5: every temperature, every finite magnitude
# ------------------------------------------------------------------------------------------
TEMPS = [0.0, 5e-324, 1e-300, 1e-45, 1e-38, 1e-30, 1e-10, 0.01, 1.0, 3.0, 1e10, 1e30, 1e38, 1e300, np.inf]


def _ref_mp(x, T, k=None, p=None, mp=None):
    """Exact (mpmath) warp of one float row: rules of the module docstring, order temperature-first."""
    mpmath.mp.prec = 400
    V = len(x)
    valid = [bool(v > -np.inf) for v in x]
    if not any(valid):
        return np.zeros(V)
    if T == 0:
        out = np.zeros(V)
        out[int(np.argmax(np.where(valid, x, -np.inf)))] = 1
        return out
    m = max(float(v) for v, ok in zip(x, valid, strict=True) if ok)

    def probs(keep):
        if T == np.inf:
            w = [mpmath.mpf(1) if keep[i] else mpmath.mpf(0) for i in range(V)]
        else:
            w = [mpmath.exp((mpmath.mpf(float(x[i])) - mpmath.mpf(m)) / mpmath.mpf(T)) if keep[i]
                 else mpmath.mpf(0) for i in range(V)]
        s = mpmath.fsum(w)
        return [wi / s for wi in w]

    keep = list(valid)
    if k:
        kth = sorted((float(x[i]) for i in range(V) if keep[i]), reverse=True)[min(k, sum(keep)) - 1]
        keep = [keep[i] and float(x[i]) >= kth for i in range(V)]
    if p is not None and p < 1:
        pr = probs(keep)
        asc = sorted((i for i in range(V) if keep[i]), key=lambda i: (float(x[i]), i))
        c = mpmath.mpf(0)
        for i in asc[:-1]:
            c += pr[i]
            if c <= 1 - p:
                keep[i] = False
    if mp is not None:
        pr = probs(keep)
        pm = max(pr)
        keep = [keep[i] and pr[i] >= mp * pm for i in range(V)]
    return np.array([float(v) for v in probs(keep)])


def _extreme_rows(dt):
    big = float(np.finfo(dt).max)
    return np.array([
        [1e9, 0.0, -1e9, 5.0, -np.inf],
        [big, -big, 0.0, big / 2, -big / 2],
        [big, big, 0.0, -big, 1.0],                # tied maxima at the dtype's maximum
        [1.0, 1.0 + 2e-7 if dt == np.float32 else 1.0 + 1e-15, 0.5, -1.0, -np.inf],  # a close runner-up
        [-big, -big, -big, -big, -big],            # all tied at -max
        [3.0, 2.0, 1.0, 0.0, -1.0],
    ], dtype=dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(), dict(top_k=2), dict(top_p=0.7), dict(top_p=0.3), dict(min_p=0.1),
                                dict(top_k=3, top_p=0.9, min_p=0.05)],
                         ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_every_temperature_and_magnitude_is_exact(dt, kw):
    x = _extreme_rows(dt)
    for T in TEMPS:
        res = all_paths(x, T, jax=T in (0.0, 1e-30, 1e38, np.inf), **kw)
        ref = np.stack([_ref_mp(r, T, kw.get("top_k"), kw.get("top_p"), kw.get("min_p")) for r in x])
        for name, lw in res.items():
            w = np.exp(lw.astype(np.float64))
            assert not np.isnan(w).any(), (name, T)
            np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-6, err_msg=f"{name} T={T!r} {kw}")
        idx = sample(x, T, num_samples=50, seed=1, **kw)
        assert (idx >= 0).all(), T
        np.testing.assert_array_equal(np.take_along_axis(ref, idx, -1) > 0, True)


def test_tiny_and_huge_temperature_limits():
    x = np.array([[1e9, 0.0, -1e9], [2.0, 5.0, 5.0], [0.0, -3.0, 1.0]], dtype=np.float32)
    for T in (1e-30, 1e-45, 5e-324, 1e-300):
        w = warp(x, T)
        np.testing.assert_allclose(w, [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 1]])  # argmax (ties split)
        np.testing.assert_allclose(warp(x, T, top_p=0.9), [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 1]])
        np.testing.assert_array_equal(sample(x, T, num_samples=20, seed=0)[[0, 2]], [[0] * 20, [2] * 20])
    np.testing.assert_allclose(warp(x, 0.0), [[1, 0, 0], [0, 1, 0], [0, 0, 1]])  # greedy: first max
    for T in (1e30, 1e38, 1e300, np.inf):
        np.testing.assert_allclose(warp(x[1:], T), 1 / 3, rtol=1e-6)
        np.testing.assert_allclose(warp(x[1:], T, top_k=2), [[0, 0.5, 0.5], [0.5, 0, 0.5]], rtol=1e-6)
    # per-row temperatures, every extreme at once, match the scalar calls
    xr = np.repeat(x[:1], len(TEMPS), 0).astype(np.float64)
    got = warp(xr, np.array(TEMPS), top_p=0.8)
    for i, T in enumerate(TEMPS):
        np.testing.assert_allclose(got[i], warp(xr[i], T, top_p=0.8), rtol=1e-12, atol=1e-300)


def test_top_p_never_keeps_the_least_likely_at_tiny_T():
    x = np.array([[1e9, 1e9 - 64, -1e9, 0.0]], dtype=np.float32)
    for T in (1e-30, 1e-20, 1e-38):
        for path in all_paths(x, T, top_p=0.5).values():
            np.testing.assert_array_equal(_kept(path), [[True, False, False, False]])


def test_no_minus_one_for_rows_with_a_finite_logit():
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((40, 50)) * rng.choice([1.0, 1e9, 1e30], (40, 1))).astype(np.float32)
    x[rng.random(x.shape) < 0.7] = -np.inf
    x[np.arange(40), rng.integers(0, 50, 40)] = rng.standard_normal(40).astype(np.float32) * 1e9
    for T in TEMPS:
        for kw in (dict(top_k=1), dict(top_p=0.01), dict(min_p=1.0), dict(top_k=5, top_p=0.5, min_p=0.5)):
            for fast in (True, False):
                with _switch(fast):
                    idx, lp = sample(x, T, num_samples=8, seed=2, return_logprobs=True, **kw)
                assert (idx >= 0).all() and not np.isnan(lp).any(), (T, kw, fast)
                idx = sample(torch.from_numpy(x), T, num_samples=8, seed=2, **kw)
                assert bool((idx >= 0).all())


@pytest.mark.parametrize("T", [1e-300, 1e-40, 1e-30, 1e30, 1e300, np.inf])
def test_gumbel_softmax_extreme_temperatures(T):
    rng = np.random.default_rng(12)
    x = np.tile(np.array([0.5, -1.0, 2.0, 0.0, 1.0]), (6000, 1))
    for dt in (np.float32, np.float64):
        y = gumbel_softmax(x.astype(dt), T, seed=3)
        assert np.isfinite(y).all() and y.dtype == dt
        np.testing.assert_allclose(y.sum(-1), 1, rtol=1e-5)
        if T >= 1e30:
            np.testing.assert_allclose(y, 0.2, rtol=1e-5)
        else:
            assert set(np.unique(y)) <= {0.0, 1.0}
        # hard: the Gumbel-max sample, distributed as softmax(x) whatever T
        h = gumbel_softmax(x.astype(dt), T, hard=True, seed=int(rng.integers(1 << 30)))
        stats = pytest.importorskip("scipy.stats")
        pr = np.exp(x[0]) / np.exp(x[0]).sum()
        assert stats.chisquare(h.sum(0), pr * len(x)).pvalue > 1e-4
    big = np.array([[F32.max, -F32.max, 0.0]], dtype=np.float32)
    y = gumbel_softmax(big, 1e-30, seed=0)
    np.testing.assert_array_equal(y, [[1, 0, 0]])


# ------------------------------------------------------------------------------------------
# item 18: 0 / 1 / 0 mean "off"
# ------------------------------------------------------------------------------------------
def test_off_values(xp):
    rng = np.random.default_rng(13)
    xn = rng.standard_normal((4, 9))
    x = xp.asarray(xn)
    base = _np(warp(x, 0.7))
    for kw in (dict(top_k=0), dict(top_p=1.0), dict(min_p=0.0), dict(top_k=0, top_p=1.0, min_p=0.0)):
        np.testing.assert_allclose(_np(warp(x, 0.7, **kw)), base, rtol=1e-12)
        np.testing.assert_array_equal(_np(sample(x, 0.7, seed=4, num_samples=6, **kw)),
                                      _np(sample(x, 0.7, seed=4, num_samples=6)))
    # per row: 0 switches top-k off for that row only, 1 switches top-p off, 0 min-p
    k = xp.asarray(np.array([0, 2, 0, 9]))
    got = _np(warp(x, 0.7, top_k=k))
    np.testing.assert_allclose(got[[0, 2, 3]], base[[0, 2, 3]], rtol=1e-12)
    assert (got[1] > 0).sum() == 2
    tp = xp.asarray(np.array([1.0, 0.5, 1.0, 0.2]))
    got = _np(warp(x, 0.7, top_p=tp))
    np.testing.assert_allclose(got[[0, 2]], base[[0, 2]], rtol=1e-12)
    assert (got[1] > 0).sum() < 9
    mp = xp.asarray(np.array([0.0, 0.5, 0.0, 0.9]))
    got = _np(warp(x, 0.7, min_p=mp))
    np.testing.assert_allclose(got[[0, 2]], base[[0, 2]], rtol=1e-12)


def test_off_values_validation_messages():
    with pytest.raises(ValueError, match=r"The 'top_k' parameter of warp must be an int in \[0, inf\]"):
        warp(np.zeros(3), top_k=-1)
    with pytest.raises(ValueError, match=r"Got -1 instead"):
        sample(np.zeros((2, 3)), top_k=np.array([0, -1]))
    with pytest.raises(ValueError, match=r"The 'top_p' parameter of sample must be a float in \(0, 1\]"):
        sample(np.zeros(3), top_p=0.0)
    doc = " ".join(warp.__doc__.split())
    assert "``0`` (or None) switches top-k off" in doc and "``1`` (or None) switches top-p off" in doc


# ------------------------------------------------------------------------------------------
# masked rows, T = 0 with ties, NaN rows
# ------------------------------------------------------------------------------------------
def test_filters_on_masked_nan_and_greedy_rows():
    x = np.array([[-np.inf] * 5, [1.0, np.nan, 0, 0, 2], [3.0, 3.0, 1.0, 3.0, 0.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    mask = np.ones_like(x, dtype=bool)
    mask[3] = False
    mask[4, 3:] = False
    T = np.array([1.0, 1.0, 0.0, 0.5, 0.0])
    for kw in (dict(top_k=2), dict(top_p=0.4), dict(min_p=0.5), dict(top_k=1, top_p=0.1, min_p=1.0)):
        res = all_paths(x, T, jax=True, mask=mask, **kw)
        for name, lw in res.items():
            w = np.exp(lw)
            np.testing.assert_array_equal(w[[0, 3]], 0, err_msg=name)
            assert np.isnan(w[1]).all(), name
            np.testing.assert_array_equal(w[2], [1, 0, 0, 0, 0], err_msg=name)  # greedy: first max
            np.testing.assert_array_equal(w[4], [0, 0, 1, 0, 0], err_msg=name)  # greedy under a mask
        for fast in (True, False):
            with _switch(fast):
                idx, lp = sample(x, T, mask=mask, num_samples=5, seed=0, return_logprobs=True, **kw)
            np.testing.assert_array_equal(idx[[0, 1, 3]], -1)
            np.testing.assert_array_equal(idx[2], 0)
            np.testing.assert_array_equal(idx[4], 2)
            assert np.isnan(lp[1]).all() and (lp[[0, 3]] == -np.inf).all()


# ------------------------------------------------------------------------------------------
# differential fuzz: every path, random masks / ties / dtypes / temperatures / parameters
# ------------------------------------------------------------------------------------------
def _fuzz_examples():
    raw = os.environ.get("TEMPSCALE_FUZZ_EXAMPLES", "").strip()
    return int(raw) if raw else 0


def test_differential_fuzz_every_path():
    n_env = _fuzz_examples()
    n = n_env or 25
    seed = int(np.random.SeedSequence().entropy % 2**32) if n_env else 20240610
    rng = np.random.default_rng(seed)
    for trial in range(n):
        B = int(rng.integers(1, 5))
        V = int(rng.choice([1, 2, 7, 16, 33, 300, 1200]))
        dt = rng.choice([np.float32, np.float64])
        scale = float(rng.choice([0.1, 1.0, 4.0, 1e9, 1e30]))
        x = rng.standard_normal((B, V)) * scale
        if rng.random() < 0.4:
            x = np.round(x / scale * 2) * scale / 2
        if rng.random() < 0.3:
            x[rng.random((B, V)) < 0.3] = -np.inf
        if rng.random() < 0.1:
            x[0] = -np.inf
        with np.errstate(over="ignore"):
            x = x.astype(dt)
        T = float(rng.choice(TEMPS + [float(10 ** rng.uniform(-3, 3))] * 4))
        if rng.random() < 0.3:
            T = np.array(rng.choice(TEMPS, B))
        kw = {}
        if rng.random() < 0.5:
            kw["top_k"] = int(rng.integers(0, V + 2))
        if rng.random() < 0.6:
            kw["top_p"] = float(rng.choice([0.1, 0.5, 0.8, 0.9, 0.95, 0.999, 1.0, rng.uniform(0.01, 1)]))
        if rng.random() < 0.4:
            kw["min_p"] = float(rng.choice([0.0, 0.01, 0.1, 0.5, 1.0]))
        kw["order"] = str(rng.choice(ORDERS))
        if rng.random() < 0.2:
            kw["mask"] = rng.random((B, V)) < 0.8
        res = all_paths(x, T, jax=trial < 8 or n_env > 0, **kw)
        assert_same_kept(res, msg=f"seed={seed} trial={trial} T={T!r} {kw}")
        ref = np.exp(res["numpy-generic"])
        for name, lw in res.items():
            np.testing.assert_allclose(np.exp(lw), ref, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} seed={seed} trial={trial}")
        live = _kept(res["numpy-generic"]).any(-1)
        idx = sample(x, T, num_samples=4, seed=trial, **kw)
        assert (idx[live] >= 0).all()


def test_issue_examples_tiny_temperature_regressions():
    # two logits overflowing x / T = +inf used to share the mass (uniform instead of greedy)
    y = np.array([[1e9, 1e9 - 64, -1e9, 0.0]], np.float32)
    for path in all_paths(y, 1e-30).values():
        np.testing.assert_allclose(np.exp(path), [[1, 0, 0, 0]])
    # every logit overflowing to -inf used to make a "fully masked" row: all zeros, index -1
    z = np.array([[-1e9, -2e9, -3e9]], np.float32)
    for path in all_paths(z, 1e-30, jax=True).values():
        np.testing.assert_allclose(np.exp(path), [[1, 0, 0]])
    for fast in (True, False):
        with _switch(fast):
            np.testing.assert_array_equal(sample(z, 1e-30, num_samples=3, seed=0), [[0, 0, 0]])


# ------------------------------------------------------------------------------------------
# typical-p, epsilon, eta and top-H on the fast path (issue 14, item 1): the generic path's kept sets, every path
# ------------------------------------------------------------------------------------------
def _cutoff_kw(rng, B, V):
    kw = {}
    if rng.random() < 0.6:
        kw["epsilon"] = float(rng.choice([1e-5, 3e-4, 3e-3, 0.02, 0.1, 0.5]))
    if rng.random() < 0.6 or not kw:
        kw["eta"] = float(rng.choice([1e-5, 3e-4, 3e-3, 0.02, 0.3]))
    if rng.random() < 0.3:  # per row, some rows off
        name = str(rng.choice(list(kw)))
        kw[name] = rng.choice([0.0, 1e-4, 3e-3, 0.05], B)
    if rng.random() < 0.4:
        kw["typical_p"] = float(rng.choice([0.2, 0.5, 0.9, 0.99, 0.9995, 1.0])) if rng.random() < 0.7 else \
            rng.choice([0.3, 0.95, 1.0], B)
    if rng.random() < 0.4:
        kw["top_h"] = float(rng.choice([0.05, 0.4, 0.9, 1.0])) if rng.random() < 0.7 else \
            rng.choice([0.1, 0.5, 1.0], B)
    if rng.random() < 0.4:
        kw["top_k"] = int(rng.integers(0, V + 2))
    if rng.random() < 0.4:
        kw["top_p"] = float(rng.choice([0.5, 0.9, 0.999, 1.0, rng.uniform(0.01, 1)]))
    if rng.random() < 0.3:
        kw["min_p"] = float(rng.choice([0.0, 0.01, 0.1]))
    kw["order"] = str(rng.choice(ORDERS))
    return kw


def test_new_rules_take_the_fast_path_and_keep_the_generic_sets():
    """Every path (NumPy fast, CPU tensors through NumPy views, torch operations, both generic)
    keeps the same set and the same probabilities, alone and after top-k / top-p / min-p in
    both orders, with masks, -inf entries, ties, greedy rows and per-row parameters."""
    rng = np.random.default_rng(20261130)
    calls = []
    real = S._fast.candidates

    def spy(*a, **k):
        r = real(*a, **k)
        calls.append(r is not None)
        return r

    for trial in range(50):
        B = int(rng.integers(1, 5))
        V = int(rng.choice([1, 2, 7, 33, 100, 101, 300, 2000]))
        dt = rng.choice([np.float32, np.float64])
        x = rng.standard_normal((B, V)) * float(rng.choice([0.3, 2.0, 8.0]))
        if rng.random() < 0.3:
            x = np.round(x * 2) / 2  # ties
        if rng.random() < 0.3:
            x[rng.random((B, V)) < 0.3] = -np.inf
        x = x.astype(dt)
        T = float(rng.choice([0.0, 0.5, 1.0, 1.7, np.inf]))
        if rng.random() < 0.2:
            T = np.array(rng.choice([0.0, 0.7, 1.3], B))
        kw = _cutoff_kw(rng, B, V)
        if rng.random() < 0.2:
            kw["mask"] = rng.random((B, V)) < 0.8
        calls.clear()
        S._fast.candidates = spy
        try:
            res = all_paths(x, T, **kw)
        finally:
            S._fast.candidates = real
        assert any(calls), kw  # the fast path ran (it may hand rows with +inf back)
        msg = f"trial={trial} T={T!r} {dt.__name__} {kw}"
        # each fast path keeps its own library's generic set (float32 sums round differently in
        # NumPy and PyTorch); float64: every path the same set
        for name, gen in (("numpy-fast", "numpy-generic"), ("torch-via-numpy", "torch-generic"),
                          ("torch-only", "torch-generic")):
            np.testing.assert_array_equal(_kept(res[name]), _kept(res[gen]), err_msg=f"{name} {msg}")
            np.testing.assert_allclose(np.exp(res[name]), np.exp(res[gen]), rtol=0, atol=1e-10,
                                       err_msg=f"{name} {msg}")
        if dt == np.float64:
            assert_same_kept(res, msg=msg)
            ref = np.exp(res["numpy-generic"])
            for name, lw in res.items():
                np.testing.assert_allclose(np.exp(lw), ref, rtol=0, atol=1e-10, err_msg=f"{name} {msg}")


def test_new_rules_fast_path_matches_transformers_large_vocab():
    """A long float64 row batch (the compact top-p candidates, the full-row entropy, typical-p's
    sampled candidate threshold, the partial top-100 of top-H, with ties at its edge): the fast
    path keeps transformers' sets (temperature, top-p, then the rule; top-H alone)."""
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal((4, 20000)) * 3.0
    xt = np.round(x0)  # many ties at the 100th logit: transformers' tie order is unspecified,
    # the generic path's is lower index first
    for xs in (xt, xt.astype(np.float32)):
        res = all_paths(xs, 0.7, top_h=0.4)
        assert_same_kept(res, expect=_kept(res["numpy-generic"]))
    warpers = {"epsilon": lambda: lp_mod.EpsilonLogitsWarper(epsilon=3e-4),
               "eta": lambda: lp_mod.EtaLogitsWarper(epsilon=3e-4),
               "top_h": lambda: lp_mod.TopHLogitsWarper(top_h=0.4),
               "typical_p": lambda: lp_mod.TypicalLogitsWarper(mass=0.9)}
    values = {"epsilon": 3e-4, "eta": 3e-4, "top_h": 0.4, "typical_p": 0.9}
    for name, warper in warpers.items():
        for tp in (None, 0.9) if name != "top_h" else (None,):
            kw = {name: values[name]} if tp is None else {name: values[name], "top_p": tp}
            x = x0
            got = warp(x, 0.7, log=True, **kw)
            s = lp_mod.TemperatureLogitsWarper(0.7)(None, torch.from_numpy(x.copy()))
            if tp is not None:
                s = lp_mod.TopPLogitsWarper(tp)(None, s)
            s = warper()(None, s)
            np.testing.assert_array_equal(np.isfinite(got), torch.isfinite(s).numpy(), err_msg=str(kw))
            np.testing.assert_allclose(np.exp(got), torch.softmax(s, -1).numpy(), rtol=0, atol=1e-10)


def test_epsilon_eta_min_tokens_to_keep_on_the_fast_path():
    """epsilon / eta alone with ``min_tokens_to_keep > 1`` take the fast path (a partial
    selection of the protected logits) and keep the generic path's sets, ties at the protected
    edge included; with another rule ``min_tokens_to_keep > 1`` stays generic."""
    rng = np.random.default_rng(11)
    calls = []
    real = S._fast.candidates

    def spy(*a, **k):
        r = real(*a, **k)
        calls.append(r is not None)
        return r

    for trial in range(24):
        B = int(rng.integers(1, 4))
        V = int(rng.choice([3, 40, 1500]))
        dt = rng.choice([np.float32, np.float64])
        x = rng.standard_normal((B, V)) * 4.0
        if rng.random() < 0.4:
            x = np.round(x)  # ties at the protected edge
        if rng.random() < 0.3:
            x[rng.random((B, V)) < 0.3] = -np.inf
        x = x.astype(dt)
        kw = {str(rng.choice(["epsilon", "eta"])): float(rng.choice([3e-3, 0.05, 0.3]))}
        kw["min_tokens_to_keep"] = int(rng.choice([2, 5, 50, V + 3]))
        kw["order"] = str(rng.choice(ORDERS))
        T = float(rng.choice([0.0, 0.7, 1.0, 2.0]))
        calls.clear()
        S._fast.candidates = spy
        try:
            res = all_paths(x, T, **kw)
        finally:
            S._fast.candidates = real
        assert any(calls), kw
        msg = f"trial={trial} T={T!r} {dt.__name__} {kw}"
        for name, gen in (("numpy-fast", "numpy-generic"), ("torch-via-numpy", "torch-generic"),
                          ("torch-only", "torch-generic")):
            np.testing.assert_array_equal(_kept(res[name]), _kept(res[gen]), err_msg=f"{name} {msg}")
            np.testing.assert_allclose(np.exp(res[name]), np.exp(res[gen]), rtol=0, atol=1e-10,
                                       err_msg=f"{name} {msg}")
    x = rng.standard_normal((2, 50))
    calls.clear()
    S._fast.candidates = spy
    try:
        warp(x, 0.7, epsilon=0.01, top_k=10, min_tokens_to_keep=3)
    finally:
        S._fast.candidates = real
    assert not any(calls)
