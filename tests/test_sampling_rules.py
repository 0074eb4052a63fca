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


def test_rules_never_take_the_fast_path(monkeypatch):
    calls = []
    real = S._fast.candidates
    monkeypatch.setattr(S._fast, "candidates", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.random.default_rng(0).normal(size=(3, 64))
    for kw in ({"typical_p": 0.9}, {"epsilon": 1e-3}, {"eta": np.full(3, 1e-3)}, {"top_n_sigma": 1.0}):
        warp(x, 0.8, top_p=0.9, **kw)
        sample(x, 0.8, top_k=20, seed=0, **kw)
    assert calls == []
    warp(x, 0.8, top_p=0.9)
    assert calls  # the plain chain still does


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
