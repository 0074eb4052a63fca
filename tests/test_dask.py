"""Dask arrays on a real cluster (a dask.distributed LocalCluster, 2 worker processes):
fit_temperature, the metrics and softmax/log_softmax/logsumexp map-reduce per-block statistics
and equal the NumPy results (1e-10 in float64)."""

from __future__ import annotations

import numpy as np
import pytest

import tempscale
from tempscale.calibration import (
    brier_score,
    calibration_error,
    fit_temperature,
    nll,
    reliability_curve,
)

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

# tests/test_dask.py and tests/test_dask_scalers.py on one xdist worker: one session cluster
pytestmark = pytest.mark.xdist_group("dask")

RTOL = 1e-10


@pytest.fixture
def client(dask_client):
    """The session's 2-process LocalCluster client (tests/conftest.py)."""
    return dask_client


def _data(n=6000, k=7, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = 3.0 * (rng.standard_normal((n, k)) + 1.5 * np.eye(k)[y])
    w = rng.uniform(0.1, 2.0, n)
    return z, y, w


def _dask(z, y, w, rows=(700, 900, 1000), cols=None):
    return (da.from_array(z, chunks=(rows[0], cols or z.shape[1])),
            da.from_array(y, chunks=rows[1]), da.from_array(w, chunks=rows[2]))


def test_fit_temperature_equals_numpy(client):
    z, y, w = _data()
    zd, yd, wd = _dask(z, y, w, cols=3)  # a chunked class axis is brought to one chunk
    assert fit_temperature(zd, yd, sample_weight=wd) == pytest.approx(
        fit_temperature(z, y, sample_weight=w), rel=RTOL)
    z32 = z.astype(np.float32)
    assert fit_temperature(da.from_array(z32, chunks=(1000, 7)), yd) == pytest.approx(
        fit_temperature(z32, y), rel=RTOL)
    # NumPy logits with Dask labels, and a binary problem given as one logit per sample
    assert fit_temperature(z, yd) == pytest.approx(fit_temperature(z, y), rel=RTOL)
    zb, yb = z[:, 1] - z[:, 0], (y == 1).astype(int)
    assert fit_temperature(da.from_array(zb, chunks=800), da.from_array(yb, chunks=800)) == \
        pytest.approx(fit_temperature(zb, yb), rel=RTOL)


def test_fit_with_masked_entries_and_config(client):
    """-inf entries take the generic block path; native=False is re-entered in the tasks."""
    z, y, w = _data()
    z[::5, 6] = -np.inf
    y[::5] = np.minimum(y[::5], 5)
    zd, yd, _ = _dask(z, y, w)
    T = fit_temperature(z, y)
    assert fit_temperature(zd, yd) == pytest.approx(T, rel=RTOL)
    with tempscale.config(native=False):
        assert fit_temperature(zd, yd) == pytest.approx(T, rel=RTOL)


def test_fit_errors_name_the_parameter(client):
    z, y, w = _data(n=100)
    zd, yd, wd = _dask(z, y, w, rows=(50, 50, 50))
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(zd, yd + 7)
    with pytest.raises(ValueError, match="sample_weight"):
        fit_temperature(zd, yd, sample_weight=-wd)
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(zd, yd[:60])


@pytest.mark.parametrize("kw", [
    {}, {"norm": "l2", "debias": True}, {"norm": "max", "kind": "classwise"},
    {"strategy": "quantile"}, {"method": "smooth"},
])
def test_calibration_error_equals_numpy(client, kw):
    z, y, w = _data(n=3000)
    p = tempscale.softmax(z)
    pd, yd, wd = _dask(p, y, w, cols=4)
    assert calibration_error(pd, yd, **kw) == pytest.approx(calibration_error(p, y, **kw),
                                                           rel=RTOL, abs=1e-15)
    if not kw.get("debias"):
        zd = da.from_array(z, chunks=(800, 7))
        assert calibration_error(zd, yd, input="logits", sample_weight=wd, **kw) == \
            pytest.approx(calibration_error(z, y, input="logits", sample_weight=w, **kw),
                          rel=RTOL, abs=1e-15)


def test_calibration_error_bootstrap(client):
    z, y, w = _data(n=1500)
    p = tempscale.softmax(z)
    pd, yd, _ = _dask(p, y, w)
    a = calibration_error(pd, yd, n_bootstrap=20, random_state=0)
    b = calibration_error(p, y, n_bootstrap=20, random_state=0)
    np.testing.assert_allclose(tuple(a), tuple(b), rtol=RTOL)


@pytest.mark.parametrize("kw", [{}, {"class_index": 2}, {"strategy": "quantile"},
                                {"strategy": "isotonic"}])
def test_reliability_curve_equals_numpy(client, kw):
    z, y, w = _data(n=3000)
    p = tempscale.softmax(z)
    pd, yd, wd = _dask(p, y, w)
    a = reliability_curve(pd, yd, sample_weight=wd, **kw)
    b = reliability_curve(p, y, sample_weight=w, **kw)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=RTOL, equal_nan=True)


def test_nll_and_brier_equal_numpy(client):
    z, y, w = _data(n=3000)
    p = tempscale.softmax(z)
    pd, yd, wd = _dask(p, y, w)
    zd = da.from_array(z, chunks=(900, 7))
    assert nll(zd, yd, input="logits") == pytest.approx(nll(z, y, input="logits"), rel=RTOL)
    assert nll(pd, yd, sample_weight=wd) == pytest.approx(nll(p, y, sample_weight=w), rel=RTOL)
    assert brier_score(pd, yd, sample_weight=wd) == pytest.approx(
        brier_score(p, y, sample_weight=w), rel=RTOL)
    pb = p[:, 1] / (p[:, 0] + p[:, 1])
    yb = (y == 1).astype(int)
    assert brier_score(da.from_array(pb, chunks=1000), da.from_array(yb, chunks=1000)) == \
        pytest.approx(brier_score(pb, yb), rel=RTOL)


@pytest.mark.parametrize("chunks", [(300, 50), (300, 13)])  # one class chunk, or four
@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
def test_softmax_family_blockwise_and_tree(client, chunks, kind):
    rng = np.random.default_rng(1)
    x = 4 * rng.standard_normal((900, 50))
    x[3, 7] = -np.inf
    x[4, :] = -np.inf
    x[5, [1, 30]] = np.inf
    x[6, 0] = np.nan
    f = getattr(tempscale, kind)
    xd = da.from_array(x, chunks=chunks)
    # log-probabilities near 0 from a chunked class axis are x/T - lse: an absolute error of
    # a few ulp of |x/T| (the one-chunk path is the kernel itself, to the last bits)
    atol = 1e-13 if (kind == "log_softmax" and chunks[1] < 50) else 1e-300
    for T in (0.7, 25.0):
        r = f(xd, T)
        assert isinstance(r, da.Array)
        np.testing.assert_allclose(r.compute(), f(x, T), rtol=RTOL, atol=atol, equal_nan=True)
    # the tree reduction's graph keeps one logsumexp task per block plus the combine
    if kind == "logsumexp" and chunks[1] == 13:
        assert r.numblocks == (3,)


def test_binned_metrics_bring_back_only_bin_sums(client):
    """The binned metrics' graph ends in (classes, 4, n_bins) sums, whatever the rows."""
    z, y, w = _data(n=2000)
    zd, yd, _ = _dask(z, y, w)
    from tempscale.calibration import _dask as cd

    stats, total, k = cd.dask_binned(zd, yd, None, "logits", 15, "classwise", None,
                                      "calibration_error")
    assert stats.shape == (7, 4, 15) and total == len(y) and k == 7
    np.testing.assert_array_equal(stats[:, 3].sum(axis=1), len(y))
