"""Batch-invariant reproducible draws: ``generator="hash"`` / ``row_ids=`` (issue 14, item 3).

With a seed, the token drawn for a row depends only on the seed, the row's key and the row's
values: not on the rows around it, the batch size, the row's position, the thread count or the
library (NumPy and PyTorch CPU agree draw for draw).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tempscale import config
from tempscale.sampling import _hash, sample, warp

from .conftest import to_numpy

torch = pytest.importorskip("torch")

KW = [dict(), dict(top_k=20), dict(top_p=0.9), dict(top_k=50, top_p=0.95, min_p=0.01),
      dict(min_p=0.05, order="temperature-last"), dict(typical_p=0.9), dict(top_h=0.6),
      dict(xtc_threshold=0.02, xtc_probability=0.5), dict(dynatemp_range=0.5)]


def _x(seed, B, V=3000):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (B, V))
    x[::3, rng.integers(0, V)] += 8  # some peaked rows
    return x


@pytest.mark.parametrize("kw", KW, ids=lambda k: ",".join(k) or "plain")
def test_same_row_same_draw_in_any_batch(kw):
    x = _x(0, 12)
    ids = np.arange(100, 112)
    ref = sample(x, 0.8, seed=7, row_ids=ids, num_samples=6, **kw)
    rng = np.random.default_rng(1)
    for trial in range(3):
        perm = rng.permutation(12)
        other = _x(10 + trial, 20)  # different neighbours
        big = np.concatenate([other[:5], x[perm], other[5:]])
        big_ids = np.concatenate([np.arange(5000, 5005), ids[perm], np.arange(6000, 6015)])
        got = sample(big, 0.8, seed=7, row_ids=big_ids, num_samples=6, **kw)
        np.testing.assert_array_equal(got[5:17], ref[perm], err_msg=str(kw))
    for i in (0, 5, 11):  # alone, as a 1-d row (scalar key) and in a batch of one
        np.testing.assert_array_equal(sample(x[i], 0.8, seed=7, row_ids=int(ids[i]), num_samples=6, **kw),
                                      ref[i])
        np.testing.assert_array_equal(sample(x[i:i + 1], 0.8, seed=7, row_ids=ids[i:i + 1],
                                             num_samples=6, **kw)[0], ref[i])
    # more draws extend the same stream
    np.testing.assert_array_equal(sample(x, 0.8, seed=7, row_ids=ids, num_samples=9, **kw)[:, :6], ref)


@pytest.mark.parametrize("kw", KW[:5], ids=lambda k: ",".join(k) or "plain")
def test_default_row_ids_are_the_row_index_and_paths_agree(kw):
    x = _x(2, 8)
    a = sample(x, 1.1, seed=3, generator="hash", num_samples=4, **kw)
    np.testing.assert_array_equal(a, sample(x, 1.1, seed=3, row_ids=np.arange(8), num_samples=4, **kw))
    # the same draws on the generic path (full rows) as on the fast path (compact candidates)
    with config(fast_sampling=False):
        np.testing.assert_array_equal(sample(x, 1.1, seed=3, generator="hash", num_samples=4, **kw), a)
    # batch shape: row_ids of the batch shape, the axis anywhere
    x3 = x.reshape(2, 4, -1)
    b = sample(np.moveaxis(x3, -1, 0), 1.1, seed=3, generator="hash", num_samples=4, axis=0, **kw)
    np.testing.assert_array_equal(b.reshape(8, 4), a)
    c = sample(x3, 1.1, seed=3, row_ids=np.arange(8).reshape(2, 4), num_samples=4, **kw)
    np.testing.assert_array_equal(c.reshape(8, 4), a)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kw", KW, ids=lambda k: ",".join(k) or "plain")
def test_numpy_and_torch_draw_the_same_tokens(kw, dtype):
    x = _x(4, 10).astype(dtype)
    ids = np.arange(10) * 7919
    a = sample(x, 0.9, seed=11, row_ids=ids, num_samples=5, **kw)
    t = torch.from_numpy(x)
    for via in (True, False):
        with config(sampling_numpy_views=via):
            b = sample(t, 0.9, seed=11, row_ids=torch.from_numpy(ids), num_samples=5, **kw)
        assert b.dtype == torch.int64
        np.testing.assert_array_equal(b.numpy(), a, err_msg=f"{kw} via_numpy={via}")


def test_thread_count_does_not_change_draws():
    x = _x(5, 64, 20000)
    t = torch.from_numpy(x)
    old = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(sample(t, 0.8, top_p=0.95, seed=5, generator="hash", num_samples=3).numpy())
            outs.append(sample(t, 0.8, top_k=40, seed=5, generator="hash", num_samples=3,
                               replacement=False).numpy())
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(outs[1], outs[3])
    np.testing.assert_array_equal(outs[0], sample(x, 0.8, top_p=0.95, seed=5, generator="hash", num_samples=3))


def test_jax_reads_the_same_uniforms():
    jnp = pytest.importorskip("jax.numpy")
    x = _x(6, 6, 500)
    a = sample(x, 0.9, top_k=30, seed=2, generator="hash", num_samples=8)
    b = np.asarray(sample(jnp.asarray(x), 0.9, top_k=30, seed=2, generator="hash", num_samples=8))
    assert (a == b).mean() > 0.99  # XLA's exp may differ in the last bit at a CDF boundary


def test_without_replacement_is_batch_invariant_and_distinct():
    x = _x(7, 6, 400)
    ids = np.array([3, 1, 4, 1_000_000_007, -5, 9])
    ref = sample(x, 1.0, top_k=30, seed=1, row_ids=ids, num_samples=10, replacement=False)
    got = sample(x[::-1], 1.0, top_k=30, seed=1, row_ids=ids[::-1], num_samples=10, replacement=False)
    np.testing.assert_array_equal(got[::-1], ref)
    tt = sample(torch.from_numpy(x), 1.0, top_k=30, seed=1, row_ids=ids, num_samples=10, replacement=False)
    np.testing.assert_array_equal(tt.numpy(), ref)
    for r in ref:
        assert len(set(r.tolist())) == 10


def test_hashed_draws_follow_the_warped_distribution():
    """Chi-square goodness of fit, fixed seed, loose bound: one row, many keys; and many draws."""
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1.5, 40)
    for kw in (dict(), dict(top_k=12), dict(top_p=0.8, min_p=0.02)):
        p = warp(x, 0.9, **kw)
        n = 40000
        by_rows = sample(np.broadcast_to(x, (n, 40)), 0.9, seed=4, generator="hash", **kw)
        by_draws = sample(x, 0.9, seed=4, generator="hash", num_samples=n, **kw)
        for idx in (by_rows, by_draws):
            counts = np.bincount(idx, minlength=40)
            assert np.all(counts[p == 0] == 0)
            k = p > 0
            res = stats.chisquare(counts[k], p[k] / p[k].sum() * n)
            assert res.pvalue > 1e-4, (kw, res)
    # without replacement: the first draw follows p too
    p = warp(x, 0.9, top_k=12)
    first = sample(np.broadcast_to(x, (20000, 40)), 0.9, top_k=12, seed=9, generator="hash",
                   num_samples=3, replacement=False)[:, 0]
    counts = np.bincount(first, minlength=40)
    k = p > 0
    assert stats.chisquare(counts[k], p[k] * 20000).pvalue > 1e-4


def test_uniforms_are_uniform_and_keyed():
    u = _hash.uniforms(0, np.arange(2000), _hash.TOKENS, 50)
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-4
    assert not np.array_equal(u, _hash.uniforms(1, np.arange(2000), _hash.TOKENS, 50))
    np.testing.assert_array_equal(u[5], _hash.uniforms(0, np.array([5]), _hash.TOKENS, 50)[0])
    # consecutive keys and counters are not correlated
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.01
    # big seeds fold in
    assert not np.array_equal(_hash.uniforms(2 ** 64, np.arange(3), 0, 4), _hash.uniforms(0, np.arange(3), 0, 4))


def test_library_generator_stays_the_default():
    x = _x(9, 3, 50)
    a = sample(x, seed=3, num_samples=9)
    np.testing.assert_array_equal(a, sample(x, num_samples=9, rng=np.random.default_rng(3)))
    np.testing.assert_array_equal(sample(x, seed=3, num_samples=9, generator="library"), a)
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(sample(t, seed=3, num_samples=9).numpy(),
                                  sample(t, num_samples=9, rng=torch.Generator().manual_seed(3)).numpy())


@pytest.mark.parametrize("kw, exc, text", [
    (dict(generator="hash"), ValueError,
     "The 'seed' parameter of sample must be a non-negative int when generator='hash'"),
    (dict(generator="hash", seed=0, rng=np.random.default_rng()), ValueError, "'seed' parameter of sample"),
    (dict(generator="philox", seed=0), ValueError, "The 'generator' parameter of sample must be one of"),
    (dict(generator="library", seed=0, row_ids=[0, 1]), ValueError, "The 'row_ids' parameter of sample"),
    (dict(seed=0, row_ids=[0, 1, 2]), ValueError, "The 'row_ids' parameter of sample must be an array of integer"),
    (dict(seed=0, row_ids=[0.5, 1.0]), TypeError, "The 'row_ids' parameter of sample"),
    (dict(seed=0, row_ids=np.array([True, False])), TypeError, "'row_ids'"),
    (dict(seed=0, row_ids="ab"), TypeError, "'row_ids'"),
])
def test_validation(kw, exc, text):
    with pytest.raises(exc, match=None) as info:
        sample(np.zeros((2, 5)), **kw)
    assert text in str(info.value)


def test_special_rows_keep_their_contract():
    x = np.array([[0.0, 1.0, 2.0], [-np.inf] * 3, [1.0, np.nan, 0.0], [np.inf, 0.0, np.inf]])
    idx, lp = sample(x, 0.5, seed=1, generator="hash", num_samples=200, return_logprobs=True)
    assert np.all(idx[1] == -1) and np.all(lp[1] == -np.inf)
    assert np.all(idx[2] == -1) and np.all(np.isnan(lp[2]))
    assert set(idx[3].tolist()) == {0, 2}
    np.testing.assert_allclose(lp[3], np.log(0.5))
    np.testing.assert_allclose(lp[0], np.log(warp(x[0], 0.5))[idx[0]], rtol=1e-12)
    g = sample(x, 0.0, seed=1, generator="hash", num_samples=3)  # greedy
    np.testing.assert_array_equal(g[0], [2, 2, 2])
    np.testing.assert_array_equal(to_numpy(sample(torch.from_numpy(x), 0.5, seed=1, generator="hash",
                                                  num_samples=200)), idx)
