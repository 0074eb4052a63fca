"""reliability_curve(..., strategy="isotonic"): the CORP reliability diagram (Dimitriadis,
Gneiting & Jordan 2021), against scikit-learn's IsotonicRegression."""

from __future__ import annotations

import numpy as np
import pytest

import tempscale
from tempscale.calibration import ReliabilityCurve, reliability_curve

isotonic = pytest.importorskip("sklearn.isotonic")


def _reference(conf, hit, w=None):
    """Per-sample fitted values of scikit-learn's increasing isotonic regression."""
    ir = isotonic.IsotonicRegression(increasing=True, out_of_bounds="clip")
    ir.fit(conf, hit, sample_weight=w)
    return ir.predict(conf)


def _per_sample(curve, conf):
    """The curve's accuracy at each sample (block b holds (edges[b], edges[b+1]])."""
    b = np.searchsorted(curve.bin_edges[1:-1], conf, side="left")
    return curve.accuracy[b]


def _problem(n=3000, k=5, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.standard_normal((n, k)) + 1.2 * np.eye(k)[y]
    if ties:
        z = np.round(z, 1)  # many equal confidences
    p = tempscale.softmax(2.0 * z)
    conf = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(float)
    return p, y, conf, hit


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_top_label_equals_sklearn_isotonic(ties, weighted):
    p, y, conf, hit = _problem(ties=ties)
    w = np.random.default_rng(1).uniform(0.1, 3.0, len(y)) if weighted else None
    curve = reliability_curve(p, y, strategy="isotonic", sample_weight=w)
    assert isinstance(curve, ReliabilityCurve)
    np.testing.assert_allclose(_per_sample(curve, conf), _reference(conf, hit, w), rtol=0,
                               atol=1e-12)
    # blocks: strictly increasing fitted values, counts add up, means inside their blocks
    assert np.all(np.diff(curve.accuracy) > 0)
    assert curve.counts.sum() == len(y) and curve.counts.dtype == np.int64
    assert len(curve.bin_edges) == len(curve.accuracy) + 1
    assert np.all(curve.bin_edges[:-1] <= curve.confidence + 1e-15)
    assert np.all(curve.confidence <= curve.bin_edges[1:] + 1e-15)
    ww = np.ones(len(y)) if w is None else w
    b = np.searchsorted(curve.bin_edges[1:-1], conf, side="left")
    np.testing.assert_allclose(np.bincount(b, weights=ww * conf) / np.bincount(b, weights=ww),
                               curve.confidence, rtol=1e-12)
    np.testing.assert_array_equal(np.bincount(b), curve.counts)


def test_ties_are_pooled():
    """Equal confidences end in the same block even where their events would be split."""
    p = np.array([[0.3, 0.7]] * 4 + [[0.1, 0.9]] * 2)
    y = np.array([1, 0, 1, 0, 1, 1])
    curve = reliability_curve(p, y, strategy="isotonic")
    np.testing.assert_allclose(curve.accuracy, [0.5, 1.0])
    np.testing.assert_array_equal(curve.counts, [4, 2])
    np.testing.assert_allclose(curve.bin_edges, [0.7, 0.7, 0.9])


def test_one_vs_rest_and_logits_and_n_bins_ignored():
    p, y, _, _ = _problem(n=1500, k=3, seed=4)
    c = reliability_curve(p, y, strategy="isotonic", class_index=2)
    ref = _reference(p[:, 2], (y == 2).astype(float))
    np.testing.assert_allclose(_per_sample(c, p[:, 2]), ref, atol=1e-12)
    logits = np.log(p)
    d = reliability_curve(logits, y, strategy="isotonic", class_index=2, input="logits",
                          n_bins=3)
    for u, v in zip(c, d, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12)


def test_zero_weights_are_left_out():
    p, y, conf, hit = _problem(n=800, seed=5)
    w = np.ones(len(y))
    w[::3] = 0.0
    curve = reliability_curve(p, y, strategy="isotonic", sample_weight=w)
    assert curve.counts.sum() == np.count_nonzero(w)
    keep = w > 0
    np.testing.assert_allclose(_per_sample(curve, conf[keep]),
                               _reference(conf[keep], hit[keep]), atol=1e-12)


def test_strategy_is_checked():
    with pytest.raises(ValueError, match="strategy"):
        reliability_curve(np.array([[0.2, 0.8]]), np.array([1]), strategy="corp")
