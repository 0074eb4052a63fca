"""typical-p, epsilon, eta and min_tokens_to_keep in ``warp`` / ``sample`` (issue 14, item 1).

Each rule is compared with transformers' own warpers (``TemperatureLogitsWarper`` followed by the
warper, the chain order of ``_get_logits_processor``) on the kept sets, exactly, in float64, and
on the probabilities to 1e-10.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tempscale.sampling as S
from tempscale.sampling import sample, warp

from .conftest import to_numpy

torch = pytest.importorskip("torch")
lp = pytest.importorskip("transformers.generation.logits_process")

RULES = {
    "typical_p": lambda v, n: lp.TypicalLogitsWarper(mass=v, min_tokens_to_keep=n),
    "epsilon": lambda v, n: lp.EpsilonLogitsWarper(epsilon=v, min_tokens_to_keep=n),
    "eta": lambda v, n: lp.EtaLogitsWarper(epsilon=v, min_tokens_to_keep=n),
}
VALUES = {"typical_p": (0.2, 0.5, 0.9, 0.99), "epsilon": (1e-4, 3e-3, 0.02, 0.1),
          "eta": (3e-4, 2e-3, 0.02, 0.3)}


def _rows(rng, B, V, kind):
    if kind == "random":
        return rng.normal(0, 2, (B, V))
    if kind == "peaked":
        x = rng.normal(0, 1, (B, V))
        x[np.arange(B), rng.integers(0, V, B)] += rng.uniform(6, 15, B)
        return x
    return rng.standard_t(2, (B, V)) * 3  # heavy tails


def _hf(x, T, chain_rules, mtk, base=()):
    """transformers' chain on one row: temperature, top-k/top-p/min-p, then the rules."""
    procs = []
    if T != 1.0:
        procs.append(lp.TemperatureLogitsWarper(T))
    procs.extend(base)
    for name, v in chain_rules:
        procs.append(RULES[name](v, mtk))
    s = torch.from_numpy(x[None].copy())
    ids = torch.zeros((1, 1), dtype=torch.long)
    for p in procs:
        s = p(ids, s)
    return torch.softmax(s, -1)[0].numpy(), torch.isfinite(s)[0].numpy()


def _check(x, T, kw, hf_rules, mtk=1, base=(), per_row=None):
    """Compare warp (rows at once, per-row parameters where given) with transformers row by row."""
    got = warp(x, T, min_tokens_to_keep=mtk, **kw)
    kept = np.isfinite(warp(x, T, min_tokens_to_keep=mtk, log=True, **kw))  # p may underflow to 0
    for i in range(x.shape[0]):
        rules = [(n, float(per_row[n][i]) if per_row and n in per_row else v) for n, v in hf_rules]
        rules = [(n, v) for n, v in rules if not _off(n, v)]
        Ti = float(T[i, 0]) if np.ndim(T) else T
        ref_p, ref_keep = _hf(x[i], Ti, rules, mtk, base)
        np.testing.assert_array_equal(kept[i], ref_keep, err_msg=f"row {i} {kw}")
        np.testing.assert_allclose(got[i], ref_p, rtol=0, atol=1e-10, err_msg=f"row {i} {kw}")
    return got


def _off(name, v):
    return (name == "typical_p" and v >= 1) or (name != "typical_p" and v == 0)


@pytest.mark.parametrize("kind", ["random", "peaked", "heavy"])
@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_matches_transformers(rule, kind):
    rng = np.random.default_rng(list(RULES).index(rule) * 10 + ["random", "peaked", "heavy"].index(kind))
    for V in (5, 40, 500):
        x = _rows(rng, 6, V, kind)
        for T in (0.6, 1.0, 1.7):
            for v in VALUES[rule]:
                for mtk in (1, 3):
                    _check(x, T, {rule: v}, [(rule, v)], mtk)


@pytest.mark.parametrize("rule", list(RULES))
def test_per_row_parameters_match_transformers(rule):
    rng = np.random.default_rng(11)
    x = _rows(rng, 8, 200, "random")
    x[3] = _rows(rng, 1, 200, "peaked")[0]
    vals = np.array(VALUES[rule] * 2, dtype=np.float64)
    vals[5] = 1.0 if rule == "typical_p" else 0.0  # per-row "off"
    T = rng.uniform(0.5, 2.0, (8, 1))
    for mtk in (1, 4):
        _check(x, T, {rule: vals[:, None]}, [(rule, None)], mtk, per_row={rule: vals})
        # also a 1-d per-row array and the torch / JAX inputs
        got = warp(x, T, **{rule: vals}, min_tokens_to_keep=mtk)
        tt = warp(torch.from_numpy(x), torch.from_numpy(T), **{rule: torch.from_numpy(vals)},
                  min_tokens_to_keep=mtk)
        np.testing.assert_array_equal(to_numpy(tt) > 0, got > 0)
        np.testing.assert_allclose(to_numpy(tt), got, rtol=0, atol=1e-12)


def test_full_chain_matches_transformers():
    """temperature, top-k, top-p, min-p, typical, epsilon, eta: transformers' order."""
    rng = np.random.default_rng(5)
    for kind in ("random", "peaked"):
        x = _rows(rng, 6, 300, kind)
        for (k, p, mp, ty, ep, et) in [(50, 0.95, 0.01, 0.9, 1e-3, 2e-3), (0, 0.9, 0.0, 0.95, 0.0, 3e-2),
                                       (120, 1.0, 0.05, 0.5, 5e-3, 0.0)]:
            for mtk in (1, 2):
                base = []
                if k:
                    base.append(lp.TopKLogitsWarper(k, min_tokens_to_keep=mtk))
                if p < 1:
                    base.append(lp.TopPLogitsWarper(p, min_tokens_to_keep=mtk))
                if mp > 0:
                    base.append(lp.MinPLogitsWarper(mp, min_tokens_to_keep=mtk))
                rules = [(n, v) for n, v in (("typical_p", ty), ("epsilon", ep), ("eta", et))
                         if not _off(n, v)]
                _check(x, 0.8, dict(top_k=k, top_p=p, min_p=mp, typical_p=ty, epsilon=ep, eta=et),
                       rules, mtk, base)


def test_temperature_last_applies_rules_to_T1_distribution():
    rng = np.random.default_rng(3)
    x = _rows(rng, 5, 100, "random")
    for kw in ({"typical_p": 0.7}, {"epsilon": 0.01}, {"eta": 0.02}):
        ref = warp(x, 1.0, **kw) > 0
        for T in (0.3, 2.0, math.inf):
            got = warp(x, T, order="temperature-last", **kw)
            np.testing.assert_array_equal(got > 0, ref)
            # the temperature reshapes the survivors only
            np.testing.assert_allclose(got, warp(x, T, mask=ref), rtol=0, atol=1e-12)


def test_off_values_are_off():
    rng = np.random.default_rng(1)
    x = _rows(rng, 4, 50, "random")
    plain = warp(x, 0.7, top_k=10)
    for kw in ({"typical_p": 1.0}, {"epsilon": 0.0}, {"eta": 0.0},
               {"typical_p": np.ones(4)}, {"epsilon": np.zeros(4)}, {"eta": np.zeros(4)}):
        np.testing.assert_array_equal(warp(x, 0.7, top_k=10, **kw), plain)


@pytest.mark.parametrize("name,bad", [("typical_p", 0.0), ("typical_p", 1.5), ("typical_p", -0.1),
                                      ("epsilon", -1e-3), ("epsilon", 1.01), ("eta", -0.5),
                                      ("eta", 2.0), ("eta", math.nan)])
@pytest.mark.parametrize("func", [warp, sample])
def test_validation_names_the_parameter(name, bad, func):
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match=f"'{name}' parameter of {func.__name__}"):
        func(x, **{name: bad})
    with pytest.raises(ValueError, match=f"'{name}'"):
        func(x, **{name: np.array([0.5, bad])})
    with pytest.raises(TypeError, match=f"'{name}'"):
        func(x, **{name: "0.5"})


def test_min_tokens_to_keep_validated():
    with pytest.raises(ValueError, match="'min_tokens_to_keep' parameter of warp"):
        warp(np.zeros(4), epsilon=0.1, min_tokens_to_keep=0)


def test_which_rules_take_the_fast_path(monkeypatch):
    """top-nσ, XTC and dynamic temperature run on the generic path only; epsilon and eta
    (thresholds on the probabilities), top-H (a partial top-100) and typical-p (a sort of its
    candidates) take the fast path, alone and with top-k / top-p."""
    calls = []
    real = S._fast.candidates
    monkeypatch.setattr(S._fast, "candidates", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.random.default_rng(0).normal(size=(3, 64))
    for kw in ({"top_n_sigma": 1.0}, {"epsilon": 1e-3, "xtc_threshold": 0.2},
               {"typical_p": 0.9, "dynatemp_range": 0.5}):
        warp(x, 0.8, top_p=0.9, **kw)
        sample(x, 0.8, top_k=20, seed=0, **kw)
    assert calls == []
    for kw in ({"epsilon": 1e-3}, {"eta": np.full(3, 1e-3)}, {"epsilon": 1e-3, "eta": 2e-3},
               {"top_h": 0.4}, {"typical_p": 0.9}, {"typical_p": 0.5, "eta": 1e-3}):
        calls.clear()
        warp(x, 0.8, top_p=0.9, **kw)
        assert calls, kw
        calls.clear()
        sample(x, 0.8, top_k=20, seed=0, **kw)
        assert calls, kw


def test_sample_draws_only_kept_tokens_on_every_backend():
    rng = np.random.default_rng(2)
    x = _rows(rng, 4, 80, "peaked")
    kw = dict(typical_p=0.8, epsilon=1e-3, eta=np.array([1e-3, 0.0, 0.05, 0.01]))
    keep = warp(x, 0.9, **kw) > 0
    for xx, e in ((x, kw["eta"]), (torch.from_numpy(x), torch.from_numpy(kw["eta"]))):
        idx, lps = sample(xx, 0.9, num_samples=50, seed=4, return_logprobs=True, **{**kw, "eta": e})
        idx = to_numpy(idx)
        assert np.all(np.take_along_axis(keep, idx, axis=-1))
        np.testing.assert_allclose(to_numpy(lps), np.log(np.take_along_axis(warp(x, 0.9, **kw), idx, -1)),
                                   rtol=1e-12, atol=1e-12)
    jnp = pytest.importorskip("jax.numpy")
    jw = to_numpy(warp(jnp.asarray(x), 0.9, **{**kw, "eta": jnp.asarray(kw["eta"])}))
    np.testing.assert_array_equal(jw > 0, keep)
    np.testing.assert_allclose(jw, warp(x, 0.9, **kw), rtol=0, atol=1e-12)
    ji = to_numpy(sample(jnp.asarray(x), 0.9, num_samples=20, seed=1, **{**kw, "eta": jnp.asarray(kw["eta"])}))
    assert np.all(np.take_along_axis(keep, ji, axis=-1))


def test_float32_and_greedy_and_masked_rows():
    rng = np.random.default_rng(9)
    x = _rows(rng, 4, 60, "random")
    x[1] = -np.inf
    mask = np.ones_like(x, dtype=bool)
    mask[2, :30] = False
    for kw in ({"typical_p": 0.6}, {"epsilon": 0.01}, {"eta": 0.05}):
        r = warp(x, 0.8, mask=mask, **kw)
        assert np.all(r[1] == 0) and not np.any(r[2, :30])
        np.testing.assert_allclose(r[[0, 2, 3]].sum(-1), 1, rtol=1e-12)
        g = warp(x, 0.0, **kw)  # greedy: the argmax whatever the rule
        assert np.all(g[[0, 2, 3]].argmax(-1) == x[[0, 2, 3]].argmax(-1))
        x32 = torch.from_numpy(x[[0, 3]].astype(np.float32))
        ref = np.stack([_hf(x[i].astype(np.float32).astype(np.float64), 0.8, list(kw.items()), 1)[1]
                        for i in (0, 3)])
        got32 = to_numpy(warp(x32, 0.8, **kw))
        assert got32.dtype == np.float32
        # decided in float32: the same kept sets as the float64 reference on these rows
        np.testing.assert_array_equal(got32 > 0, ref)


# ------------------------------------------------------------------------------------------
# top-n-sigma (llama.cpp's formula; transformers has no warper for it)
# ------------------------------------------------------------------------------------------
def _n_sigma_ref(x, T, n):
    """llama.cpp's top_n_sigma on the tempered logits, in float64: keep ``l >= max - n * std``
    (population std over the non ``-inf`` logits)."""
    t = x / T
    fin = t[np.isfinite(t)]
    return t >= fin.max() - n * fin.std()


@pytest.mark.parametrize("kind", ["random", "peaked", "heavy"])
def test_top_n_sigma_matches_llama_cpp_formula(kind):
    rng = np.random.default_rng(40 + ["random", "peaked", "heavy"].index(kind))
    for V in (5, 60, 700):
        x = _rows(rng, 5, V, kind)
        x[0, :2] = -np.inf
        for T in (0.5, 1.0, 2.3):
            for n in (0.3, 1.0, 2.0, 3.5):
                ref_keep = np.stack([_n_sigma_ref(x[i], T, n) for i in range(5)])
                got = warp(x, T, top_n_sigma=n)
                np.testing.assert_array_equal(np.isfinite(warp(x, T, top_n_sigma=n, log=True)), ref_keep)
                ref = np.where(ref_keep, np.exp(x / T - (x / T).max(-1, keepdims=True)), 0)
                np.testing.assert_allclose(got, ref / ref.sum(-1, keepdims=True), rtol=0, atol=1e-10)
                # the set does not depend on T, nor on the order
                np.testing.assert_array_equal(warp(x, T, top_n_sigma=n, order="temperature-last") > 0,
                                              got > 0)
                np.testing.assert_array_equal(warp(x, math.inf, top_n_sigma=n) > 0, got > 0)


def test_top_n_sigma_comes_first_in_the_chain():
    """top-nσ over the whole row, then transformers' top-k / top-p / typical on the survivors."""
    rng = np.random.default_rng(8)
    x = _rows(rng, 6, 300, "random")
    T, n = 0.8, 1.5
    for mtk in (1, 3):
        got = warp(x, T, top_n_sigma=n, top_k=40, top_p=0.9, typical_p=0.95, min_tokens_to_keep=mtk)
        kept = np.isfinite(warp(x, T, top_n_sigma=n, top_k=40, top_p=0.9, typical_p=0.95,
                                min_tokens_to_keep=mtk, log=True))
        for i in range(6):
            xi = np.where(_n_sigma_ref(x[i], T, n), x[i], -np.inf)
            base = (lp.TopKLogitsWarper(40, min_tokens_to_keep=mtk), lp.TopPLogitsWarper(0.9, min_tokens_to_keep=mtk))
            ref_p, ref_keep = _hf(xi, T, [("typical_p", 0.95)], mtk, base)
            np.testing.assert_array_equal(kept[i], ref_keep)
            np.testing.assert_allclose(got[i], ref_p, rtol=0, atol=1e-10)


def test_top_n_sigma_per_row_off_inf_and_min_tokens_to_keep():
    rng = np.random.default_rng(4)
    x = _rows(rng, 4, 100, "peaked")
    n = np.array([0.5, 0.0, math.inf, 2.0])  # 0: off for that row, inf: keeps every token
    got = warp(x, 1.2, top_n_sigma=n)
    for i in range(4):
        ref = np.ones(100, bool) if n[i] in (0, math.inf) else _n_sigma_ref(x[i], 1.2, n[i])
        np.testing.assert_array_equal(got[i] > 0, ref)
    np.testing.assert_allclose(to_numpy(warp(torch.from_numpy(x), 1.2, top_n_sigma=torch.from_numpy(n))), got,
                               rtol=0, atol=1e-12)
    # min_tokens_to_keep protects the best tokens from top-nσ too
    k = np.isfinite(warp(x, 1.2, top_n_sigma=0.01, min_tokens_to_keep=5, log=True))
    assert np.all(k.sum(-1) == 5)
    assert np.all(np.take_along_axis(k, np.argsort(-x, -1)[:, :5], -1))
    np.testing.assert_array_equal(warp(x, 1.2, top_n_sigma=0.0), warp(x, 1.2))
    # +inf logits: only they are kept; masked entries never count
    y = x.copy()
    y[0, 7] = np.inf
    assert np.nonzero(warp(y, 1.0, top_n_sigma=1.0)[0])[0].tolist() == [7]


@pytest.mark.parametrize("bad", [-0.5, math.nan])
def test_top_n_sigma_validation(bad):
    with pytest.raises(ValueError, match="'top_n_sigma' parameter of sample"):
        sample(np.zeros(4), top_n_sigma=bad)
    with pytest.raises(ValueError, match="'top_n_sigma' parameter of warp"):
        warp(np.zeros((2, 4)), top_n_sigma=np.array([1.0, bad]))


# ------------------------------------------------------------------------------------------
# top-H (transformers' TopHLogitsWarper), dynamic temperature and XTC (llama.cpp's formulas)
# ------------------------------------------------------------------------------------------
def _top_h_ref(x, T, top_h):
    """transformers: TemperatureLogitsWarper then TopHLogitsWarper, in float64 torch."""
    procs = ([lp.TemperatureLogitsWarper(T)] if T != 1.0 else []) + [lp.TopHLogitsWarper(top_h=top_h)]
    s = torch.from_numpy(x.copy())
    ids = torch.zeros((x.shape[0], 1), dtype=torch.long)
    for p in procs:
        s = p(ids, s)
    return torch.softmax(s, -1).numpy(), torch.isfinite(s).numpy()


@pytest.mark.parametrize("kind", ["random", "peaked", "heavy"])
def test_top_h_matches_transformers(kind, xp):
    rng = np.random.default_rng(["random", "peaked", "heavy"].index(kind) + 40)
    for V in (30, 100, 400):
        x = _rows(rng, 6, V, kind)
        for T in (0.5, 1.0, 2.0):
            for h in (0.1, 0.4, 0.7, 0.95):
                ref_p, ref_keep = _top_h_ref(x, T, h)
                got = to_numpy(warp(xp.asarray(x), T, top_h=h))
                kept = np.isfinite(to_numpy(warp(xp.asarray(x), T, top_h=h, log=True)))
                np.testing.assert_array_equal(kept, ref_keep, err_msg=f"{V} {T} {h}")
                np.testing.assert_allclose(got, ref_p, rtol=0, atol=1e-10)


def test_top_h_per_row_min_tokens_to_keep_and_temperature_last():
    rng = np.random.default_rng(8)
    x = _rows(rng, 5, 300, "random")
    h = np.array([0.2, 0.5, 0.8, 0.3, 0.9])
    got = warp(x, 0.7, top_h=h)
    for i in range(5):
        ref_p, _ = _top_h_ref(x[i:i + 1], 0.7, float(h[i]))
        np.testing.assert_allclose(got[i], ref_p[0], rtol=0, atol=1e-10)
    # at most the 100 most probable tokens, at least min_tokens_to_keep
    assert np.all(np.count_nonzero(warp(x, 5.0, top_h=1.0 - 1e-9), axis=-1) <= 100)
    n = np.count_nonzero(warp(x, 0.7, top_h=0.05, min_tokens_to_keep=120), axis=-1)
    np.testing.assert_array_equal(n, 120)
    # temperature-last: the set of the T = 1 distribution, tempered afterwards
    keep1 = warp(x, 1.0, top_h=0.5) > 0
    np.testing.assert_allclose(warp(x, 3.0, top_h=0.5, order="temperature-last"),
                               warp(x, 3.0, mask=keep1), rtol=0, atol=1e-12)


def _dynatemp_ref(x, keep, T, rng_, exponent):
    """llama.cpp's temp_ext in float64: T from the entropy of softmax(x) over the kept tokens."""
    lo, hi = max(0.0, T - rng_), T + rng_
    xs = x[keep]
    n = xs.size
    if n <= 1:
        return T
    p = np.exp(xs - xs.max())
    p /= p.sum()
    H = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0))
    return lo + (hi - lo) * (H / np.log(n)) ** exponent


@pytest.mark.parametrize("kind", ["random", "peaked", "heavy"])
def test_dynatemp_temperature_last_matches_llama_cpp_formula(kind, xp):
    """llama.cpp's chain: filters on the raw logits, then temp_ext on the survivors."""
    rng = np.random.default_rng(["random", "peaked", "heavy"].index(kind) + 50)
    x = _rows(rng, 6, 200, kind)
    for T, r, e in ((1.0, 0.5, 1.0), (0.8, 1.0, 2.0), (0.3, 0.5, 0.5), (1.5, 0.2, 0.0)):
        for kw in ({}, {"top_k": 40}, {"top_p": 0.9, "min_p": 0.02}):
            keep = np.isfinite(warp(x, 1.0, log=True, **kw))
            args = dict(dynatemp_range=r, dynatemp_exponent=e, order="temperature-last", **kw)
            got = to_numpy(warp(xp.asarray(x), T, **args))
            kept = np.isfinite(to_numpy(warp(xp.asarray(x), T, log=True, **args)))  # p may underflow
            for i in range(6):
                Td = _dynatemp_ref(x[i], keep[i], T, r, e)
                z = np.where(keep[i], x[i] / Td, -np.inf)
                ref = np.exp(z - z.max())
                ref /= ref.sum()
                np.testing.assert_array_equal(kept[i], keep[i])
                np.testing.assert_allclose(got[i], ref, rtol=0, atol=1e-10, err_msg=f"{T} {r} {e} {kw}")


def test_dynatemp_temperature_first_then_transformers_filters():
    """temperature-first: T from the whole row's entropy, then the filters on softmax(x / T)."""
    rng = np.random.default_rng(52)
    x = _rows(rng, 5, 150, "random")
    T = np.array([0.5, 1.0, 1.3, 0.9, 2.0])
    r = np.array([0.4, 0.0, 1.0, 0.3, 1.5])  # a per-row 0 is off
    e = np.array([1.0, 1.0, 0.7, 3.0, 1.0])
    got = warp(x, T, dynatemp_range=r, dynatemp_exponent=e, top_p=0.9, min_p=0.01)
    for i in range(5):
        Td = _dynatemp_ref(x[i], np.ones(150, bool), T[i], r[i], e[i]) if r[i] else T[i]
        s = torch.from_numpy(x[i:i + 1].copy())
        ids = torch.zeros((1, 1), dtype=torch.long)
        for p in (lp.TemperatureLogitsWarper(float(Td)), lp.TopPLogitsWarper(0.9),
                  lp.MinPLogitsWarper(0.01)):
            s = p(ids, s)
        np.testing.assert_array_equal(got[i] > 0, torch.isfinite(s)[0].numpy())
        np.testing.assert_allclose(got[i], torch.softmax(s, -1)[0].numpy(), rtol=0, atol=1e-10)


def test_dynatemp_edges():
    x = np.array([[1.0, 2.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0], [4.0, -np.inf, -np.inf, -np.inf]])
    # uniform row: normalised entropy 1 -> T + range; a single candidate: unchanged; T = 0 greedy
    np.testing.assert_allclose(warp(x, 1.0, dynatemp_range=0.5)[1], 0.25)
    np.testing.assert_array_equal(warp(x, 1.0, dynatemp_range=0.5)[2], [1, 0, 0, 0])
    np.testing.assert_array_equal(warp(x, 0.0, dynatemp_range=0.5)[0], [0, 0, 1, 0])
    np.testing.assert_allclose(warp(x, math.inf, dynatemp_range=0.5)[0], 0.25)
    Td = _dynatemp_ref(x[0], np.ones(4, bool), 1.0, 0.5, 1.0)
    np.testing.assert_allclose(warp(x, 1.0, dynatemp_range=0.5)[0], warp(x[0], Td), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="'dynatemp_range' parameter of warp"):
        warp(x, dynatemp_range=-1.0)
    with pytest.raises(ValueError, match="'dynatemp_exponent' parameter of sample"):
        sample(x, dynatemp_range=0.5, dynatemp_exponent=math.inf)


def _xtc_ref(x, keep, thr, mtk=1):
    """llama.cpp's XTC in float64 on the candidates ``keep`` (probabilities softmax(x) over them)."""
    out = keep.copy()
    idx = np.flatnonzero(keep)
    p = np.exp(x[idx] - x[idx].max())
    p /= p.sum()
    o = np.argsort(-p, kind="stable")
    pos_last = 0
    for j, t in enumerate(o):
        if p[t] >= thr:
            pos_last = j
        else:
            break
    if thr <= 0.5 and idx.size >= 2 and idx.size - pos_last >= mtk and pos_last > 0:
        out[idx[o[:pos_last]]] = False
    return out


@pytest.mark.parametrize("kind", ["random", "peaked", "heavy"])
def test_xtc_matches_llama_cpp_formula(kind, xp):
    """llama.cpp's default chain order: top-k, top-p, min-p, XTC, temperature (temperature-last)."""
    rng = np.random.default_rng(["random", "peaked", "heavy"].index(kind) + 60)
    x = _rows(rng, 8, 120, kind) * 0.7
    for thr in (0.01, 0.05, 0.1, 0.3, 0.5, 0.6):
        for kw in ({}, {"top_k": 20}, {"min_p": 0.05}):
            for mtk in (1, 2, 30):
                keep = np.isfinite(warp(x, 1.0, min_tokens_to_keep=mtk, log=True, **kw))
                for T in (0.7, 1.0):
                    args = dict(xtc_threshold=thr, xtc_probability=1.0, order="temperature-last",
                                min_tokens_to_keep=mtk, **kw)
                    got = to_numpy(warp(xp.asarray(x), T, **args))
                    kept = np.isfinite(to_numpy(warp(xp.asarray(x), T, log=True, **args)))
                    for i in range(8):
                        k = _xtc_ref(x[i], keep[i], thr, mtk)
                        np.testing.assert_array_equal(kept[i], k, err_msg=f"{thr} {kw} {mtk}")
                        ref = np.where(k, np.exp((x[i] - x[i][k].max()) / T), 0)
                        np.testing.assert_allclose(got[i], ref / ref.sum(), rtol=0, atol=1e-10)


def test_xtc_temperature_first_sees_tempered_probabilities_and_per_row():
    rng = np.random.default_rng(61)
    x = _rows(rng, 4, 60, "random") * 0.5
    T = 0.4
    got = warp(x, T, xtc_threshold=0.1)
    for i in range(4):
        np.testing.assert_array_equal(got[i] > 0, _xtc_ref(x[i] / T, np.ones(60, bool), 0.1))
    thr = np.array([0.05, 0.6, 0.1, 0.02])
    pr = np.array([1.0, 1.0, 0.0, 1.0])
    got = warp(x, 1.0, xtc_threshold=thr, xtc_probability=pr)
    for i in range(4):
        ref = _xtc_ref(x[i], np.ones(60, bool), thr[i]) if pr[i] else np.ones(60, bool)
        np.testing.assert_array_equal(got[i] > 0, ref)


def test_xtc_probability_in_warp_and_random_in_sample():
    x = np.log(np.array([[0.4, 0.3, 0.2, 0.1]] * 4000))
    with pytest.raises(ValueError, match="The 'xtc_probability' parameter of warp must be 0 or 1"):
        warp(x, xtc_threshold=0.1, xtc_probability=0.5)
    with pytest.raises(ValueError, match="'xtc_threshold' parameter of sample"):
        sample(x, xtc_probability=0.5)
    # with probability 1 XTC leaves the least probable of the tokens >= 0.25 and the rest
    assert set(np.unique(sample(x, xtc_threshold=0.25, seed=0)).tolist()) <= {1, 2, 3}
    np.testing.assert_allclose(warp(x[:1], xtc_threshold=0.25)[0], [0, 0.5, 1 / 3, 1 / 6])
    # a random XTC: per row, applied with probability 0.3; the draws then never hit token 0
    for gen in ("library", "hash"):
        idx = sample(x, xtc_threshold=0.25, xtc_probability=0.3, seed=1, generator=gen)
        p0 = np.mean(idx == 0)  # = 0.7 * 0.4
        assert abs(p0 - 0.28) < 4 * math.sqrt(0.28 * 0.72 / 4000), (gen, p0)
        again = sample(x, xtc_threshold=0.25, xtc_probability=0.3, seed=1, generator=gen)
        np.testing.assert_array_equal(idx, again)
    g = np.random.default_rng(3)
    idx = sample(torch.from_numpy(x), xtc_threshold=0.25, xtc_probability=0.5,
                 rng=torch.Generator().manual_seed(2))
    assert abs(float((idx == 0).double().mean()) - 0.2) < 0.03
    assert sample(x, xtc_threshold=0.25, xtc_probability=0.5, rng=g).shape == (4000,)


def test_top_h_ties_rank_lower_index_first():
    """Tied logits: the kept tokens are the first ones of the (logit desc, index asc) ranking."""
    rng = np.random.default_rng(9)
    x = np.round(rng.normal(0, 1.5, (6, 300)), 0)  # many ties
    for h in (0.2, 0.6):
        for mtk in (1, 7, 150):
            got = np.isfinite(warp(x, 0.8, top_h=h, min_tokens_to_keep=mtk, log=True))
            for i in range(6):
                o = np.lexsort((np.arange(300), -x[i]))  # logit desc, index asc
                z = x[i][o[:100]] / 0.8
                lz = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
                p = np.exp(lz)
                H = -np.sum(lz * p)
                c = max(int(np.sum(np.cumsum(-p * np.log(p)) <= h * H)), mtk, 1)
                ref = np.zeros(300, bool)
                ref[o[:c]] = True
                np.testing.assert_array_equal(got[i], ref, err_msg=f"{h} {mtk} row {i}")
