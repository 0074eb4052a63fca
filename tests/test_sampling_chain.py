"""An explicit sampler chain, ``order=`` as a sequence of rule names (issue 14, item 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tempscale import config
from tempscale.sampling import sample, warp

torch = pytest.importorskip("torch")
lp = pytest.importorskip("transformers.generation.logits_process")

ALL_ON = dict(top_n_sigma=3.0, top_h=0.95, top_k=60, top_p=0.95, min_p=0.01, typical_p=0.97,
              epsilon=1e-4, eta=1e-4, xtc_threshold=0.3)


def _x(seed=0, B=5, V=200):
    return np.random.default_rng(seed).normal(0, 2, (B, V))


def _hf_chain(x, procs):
    s = torch.from_numpy(x.copy())
    ids = torch.zeros((x.shape[0], 1), dtype=torch.long)
    for p in procs:
        s = p(ids, s)
    return torch.softmax(s, -1).numpy(), torch.isfinite(s).numpy()


def test_named_orders_equal_their_explicit_sequences():
    x = _x()
    first = ["temperature", "top_n_sigma", "top_h", "top_k", "top_p", "min_p", "typical_p",
             "epsilon", "eta", "xtc"]
    last = first[1:] + ["temperature"]
    for T in (0.6, 1.7):
        for seq, name in ((first, "temperature-first"), (last, "temperature-last")):
            ref = warp(x, T, order=name, **ALL_ON)
            np.testing.assert_array_equal(warp(x, T, order=seq, **ALL_ON), ref)
            np.testing.assert_array_equal(warp(x, T, order=tuple(seq), **ALL_ON), ref)
            np.testing.assert_array_equal(warp(x, T, order=";".join(seq), **ALL_ON), ref)


def test_aliases_and_llama_cpp_names():
    x = _x(1)
    kw = dict(top_k=30, top_p=0.9, typical_p=0.95)
    ref = warp(x, 0.7, order=["top_k", "typical_p", "top_p", "temperature"], **kw)
    for seq in (["top-k", "typ_p", "top-p", "temp"], "top_k;typ_p;top_p;temperature",
                ["TOP_K", "typical", "nucleus", "temperature"]):
        np.testing.assert_array_equal(warp(x, 0.7, order=seq, **kw), ref)


def test_custom_order_matches_transformers_processors_in_that_order():
    """top-k on the raw logits, then the temperature, then top-p and min-p on softmax(x / T)."""
    x = _x(2, 6, 300)
    for T in (0.5, 2.0):
        got = warp(x, T, top_k=50, top_p=0.8, min_p=0.02, order=["top_k", "temperature", "top_p", "min_p"])
        kept = np.isfinite(warp(x, T, top_k=50, top_p=0.8, min_p=0.02, log=True,
                                order=["top_k", "temperature", "top_p", "min_p"]))
        ref_p, ref_keep = _hf_chain(x, [lp.TopKLogitsWarper(50), lp.TemperatureLogitsWarper(T),
                                        lp.TopPLogitsWarper(0.8), lp.MinPLogitsWarper(0.02)])
        np.testing.assert_array_equal(kept, ref_keep)
        np.testing.assert_allclose(got, ref_p, rtol=0, atol=1e-10)
        # min-p before top-p, both on softmax(x): a different chain
        got = warp(x, T, top_p=0.8, min_p=0.05, order=["min_p", "top_p", "temperature"])
        ref_p, ref_keep = _hf_chain(x, [lp.MinPLogitsWarper(0.05), lp.TopPLogitsWarper(0.8),
                                        lp.TemperatureLogitsWarper(T)])
        np.testing.assert_array_equal(got > 0, ref_keep)
        np.testing.assert_allclose(got, ref_p, rtol=0, atol=1e-10)


def test_custom_order_on_torch_and_jax_and_in_sample():
    jnp = pytest.importorskip("jax.numpy")
    x = _x(3)
    kw = dict(top_k=40, top_p=0.9, order=["top_p", "temperature", "top_k"])
    ref = warp(x, 0.8, **kw)
    np.testing.assert_allclose(warp(torch.from_numpy(x), 0.8, **kw).numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(np.asarray(warp(jnp.asarray(x), 0.8, **kw)), ref, atol=1e-6)
    idx = sample(x, 0.8, num_samples=50, seed=0, **kw)
    assert np.all(np.take_along_axis(ref, idx, axis=-1) > 0)


def test_equivalent_sequences_take_the_named_orders_fast_path(monkeypatch):
    """Rules that are off do not matter: the reduced chain is a named order and its fast path."""
    from tempscale.sampling import _fast

    calls = []
    real = _fast.candidates
    monkeypatch.setattr(_fast, "candidates", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = _x(4, 4, 5000)
    for seq, name, kw in ((["top_k", "top_p", "min_p", "temperature"], "temperature-last",
                           dict(top_k=100, top_p=0.9)),
                          (["temperature", "top_k", "top_p", "min_p", "xtc"], "temperature-first",
                           dict(top_k=100, top_p=0.9, min_p=0.0)),
                          (["top_p", "temperature"], "temperature-last", dict(top_p=0.9))):
        ref = warp(x, 0.7, order=name, **kw)
        calls.clear()
        np.testing.assert_array_equal(warp(x, 0.7, order=seq, **kw), ref)
        assert calls, seq
        with config(fast_sampling=False):
            np.testing.assert_allclose(warp(x, 0.7, order=seq, **kw), ref, rtol=0, atol=1e-12)


def test_a_rule_left_out_is_not_applied_when_off():
    x = _x(5)
    # temperature left out: fine at T = 1 (the default), an error otherwise
    np.testing.assert_array_equal(warp(x, top_k=5, order=["top_k"]), warp(x, top_k=5))
    np.testing.assert_array_equal(warp(x, top_k=5, top_p=1.0, order=["top_k"]), warp(x, top_k=5))


@pytest.mark.parametrize("func", [warp, sample])
@pytest.mark.parametrize("order, exc, text", [
    ("first", ValueError, "('first' is not a rule name)"),
    (["top_k", "penalties"], ValueError, "('penalties' is not a rule name)"),
    (["top_k", "top-k"], ValueError, "('top_k' appears twice)"),
    (["top_k", 3], TypeError, "rule names"),
    (3, TypeError, "The 'order' parameter of {f} must be one of"),
    (None, TypeError, "The 'order' parameter of {f}"),
    (["top_k"], ValueError, "('temperature' is set to 0.5 but not in the chain)"),
    (["temperature"], ValueError, "('top_k' is set to 5 but not in the chain)"),
    ("top_k;temperature", ValueError, "('top_p' is set to 0.9 but not in the chain)"),
])
def test_order_validation(func, order, exc, text):
    x = _x(6, 2, 10)
    kw = dict(top_k=5) if order != "top_k;temperature" else dict(top_k=5, top_p=0.9)
    if order == ["top_k"]:
        kw = dict(top_k=5)
    with pytest.raises(exc) as info:
        func(x, 0.5, order=order, **kw)
    msg = str(info.value)
    assert text.format(f=func.__name__) in msg
    assert f"The 'order' parameter of {func.__name__}" in msg
    if exc is ValueError and "rule name" in text or "twice" in text:
        assert "Got " in msg


def test_dynatemp_counts_as_an_active_temperature():
    x = _x(7, 2, 10)
    with pytest.raises(ValueError, match="dynatemp_range=0.5"):
        warp(x, 1.0, dynatemp_range=0.5, top_k=3, order=["top_k"])
    a = warp(x, 1.0, dynatemp_range=0.5, top_k=3, order=["top_k", "temp"])
    np.testing.assert_array_equal(a, warp(x, 1.0, dynatemp_range=0.5, top_k=3, order="temperature-last"))
    assert not math.isnan(float(a.sum()))
