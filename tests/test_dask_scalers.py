"""The scikit-learn scalers on Dask arrays, on a real cluster (a dask.distributed LocalCluster,
2 worker processes): TemperatureScaler.fit runs fit_temperature's map-reduce on the cluster
(only a few numbers per Newton step reach the client), the predictions of a Dask array are lazy
Dask arrays, and every result equals the NumPy one (1e-10 in float64).  The vector, matrix and
Dirichlet scalers' Newton iterations run one pass of per-block sums on the cluster per step."""

from __future__ import annotations

import numpy as np
import pytest

from tempscale.sklearn import DirichletScaler, MatrixScaler, TemperatureScaler, VectorScaler

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

# tests/test_dask.py and tests/test_dask_scalers.py on one xdist worker: one session cluster
pytestmark = pytest.mark.xdist_group("dask")

RTOL = 1e-10


@pytest.fixture
def client(dask_client):
    """The session's 2-process LocalCluster client (tests/conftest.py)."""
    return dask_client


def _nbytes(x):
    """The bytes of a computed result (arrays, scalars, nested tuples and lists)."""
    if isinstance(x, (tuple, list)):
        return sum(_nbytes(e) for e in x)
    if isinstance(x, dict):
        return sum(_nbytes(e) for e in x.values())
    return int(getattr(x, "nbytes", 8))


@pytest.fixture
def gathered(client, monkeypatch):
    """Every result the client brings back from the cluster (through Client.get, which
    ``dask.compute`` calls with a distributed Client): a list of their sizes in bytes."""
    sizes = []
    get = distributed.Client.get

    def spy(self, *args, **kwargs):
        out = get(self, *args, **kwargs)
        sizes.append(_nbytes(out))
        return out

    monkeypatch.setattr(distributed.Client, "get", spy)
    return sizes


def _data(n=8000, k=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = 3.0 * (rng.standard_normal((n, k)) + 1.5 * np.eye(k)[y])
    w = rng.uniform(0.1, 2.0, n)
    return z, y, w


def test_temperature_scaler_fit_on_the_cluster(gathered):
    z, y, w = _data(n=100_000)
    zd = da.from_array(z, chunks=(10_000, 3))  # a chunked class axis too
    yd, wd = da.from_array(y, chunks=15_000), da.from_array(w, chunks=7_000)
    data_bytes = z.nbytes + y.nbytes + w.nbytes
    for weights, weights_d in ((None, None), (w, wd)):
        ref = TemperatureScaler().fit(z, y, sample_weight=weights)
        gathered.clear()
        got = TemperatureScaler().fit(zd, yd, sample_weight=weights_d)
        assert got.temperature_ == pytest.approx(ref.temperature_, rel=RTOL)
        # it ran on the cluster (one pass per Newton step), and what came back were a few
        # sums per pass, except fit_temperature's start value: an evenly spaced sample of
        # at most 8192 rows (logits, labels, weights), whatever the number of rows
        assert len(gathered) >= 3
        small = [b for b in gathered if b <= 256]
        sample = [b for b in gathered if b > 256]
        assert len(small) >= 2 and len(sample) <= 2, gathered
        assert sum(sample) <= 8192 * (z.shape[1] + 2) * 8 < data_bytes / 10, gathered
        np.testing.assert_array_equal(got.classes_, np.arange(6))
        assert got.n_features_in_ == 6
    # Dask labels with NumPy logits
    b = TemperatureScaler().fit(z[:20_000], yd[:20_000])
    assert b.temperature_ == pytest.approx(TemperatureScaler().fit(z[:20_000], y[:20_000])
                                           .temperature_, rel=RTOL)


def test_temperature_scaler_predictions_are_lazy_dask(gathered):
    z, y, w = _data(n=5000, seed=1)
    zd, yd, wd = (da.from_array(z, chunks=(800, 6)), da.from_array(y, chunks=800),
                  da.from_array(w, chunks=800))
    ref = TemperatureScaler().fit(z, y)
    sc = TemperatureScaler().fit(zd, yd)
    gathered.clear()
    outs = {"predict_proba": sc.predict_proba(zd), "transform": sc.transform(zd),
            "predict_log_proba": sc.predict_log_proba(zd), "predict": sc.predict(zd)}
    assert gathered == []  # nothing was computed: lazy Dask arrays
    for name, out in outs.items():
        assert isinstance(out, da.Array), name
        want = getattr(ref, name)(z)
        got = out.compute()
        assert got.shape == want.shape and got.dtype == want.dtype, name
        if name == "predict":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-14)
    gathered.clear()
    for weights, weights_d in ((None, None), (w, wd)):
        assert sc.score(zd, yd, sample_weight=weights_d) == pytest.approx(
            ref.score(z, y, sample_weight=weights), rel=RTOL)
    assert max(gathered) <= 256


def test_temperature_scaler_binary_one_column(client):
    rng = np.random.default_rng(2)
    n = 3000
    y = rng.integers(0, 2, n)
    z = 2.5 * (rng.standard_normal(n) + (2 * y - 1))
    ref = TemperatureScaler().fit(z, y)
    sc = TemperatureScaler().fit(da.from_array(z, chunks=700), da.from_array(y, chunks=700))
    assert sc.temperature_ == pytest.approx(ref.temperature_, rel=RTOL)
    assert sc.n_features_in_ == 1
    p = sc.predict_proba(da.from_array(z[:, None], chunks=(500, 1)))
    assert isinstance(p, da.Array)
    np.testing.assert_allclose(p.compute(), ref.predict_proba(z), rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize(("cls", "kw"), [(VectorScaler, {}), (MatrixScaler, {}),
                                         (DirichletScaler, {"reg_lambda": 1e-3})])
def test_affine_scalers_fit_on_the_cluster(gathered, cls, kw):
    """Vector / matrix / Dirichlet scaling: each Newton step and line-search trial is one pass
    of per-block sums on the cluster; the fit equals the NumPy one: the loss to 1e-10, the
    parameters to 1e-7 (the blocks' sums are added in another order, and rounding in the
    gradient moves the minimiser by the Hessian's condition number times it)."""
    z, y, w = _data(n=4_000, k=4, seed=3)
    zd = da.from_array(z, chunks=(2_000, 2))
    yd, wd = da.from_array(y, chunks=1_500), da.from_array(w, chunks=2_500)
    ref = cls(**kw).fit(z, y, sample_weight=w)
    gathered.clear()
    got = cls(**kw).fit(zd, yd, sample_weight=wd)
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(got.intercept_, ref.intercept_, rtol=1e-7, atol=1e-7)
    assert got.loss_ == pytest.approx(ref.loss_, rel=RTOL)
    assert abs(got.n_iter_ - ref.n_iter_) <= 1  # the stopping test may fall either side
    # one computation per pass, each bringing back sums (at most the 20 x 20 Hessian), never
    # the 128 kB of logits
    assert len(gathered) >= got.n_iter_ + 2
    assert max(gathered) <= (1 + 2 * 20 + 20 * 20) * 8, gathered
    gathered.clear()
    p = got.predict_proba(zd)
    assert isinstance(p, da.Array) and gathered == []
    np.testing.assert_allclose(p.compute(), ref.predict_proba(z), rtol=1e-6, atol=1e-9)
    pred = got.predict(zd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), ref.predict(z))
    assert got.score(zd, yd) == pytest.approx(ref.score(z, y), rel=1e-9)
    assert got.score(zd, yd) == pytest.approx(got.score(z, y), rel=RTOL)


def test_affine_conjugate_gradient_steps_on_the_cluster(client):
    """The matrix-free Newton steps (Hessian-vector products, one pass each) on Dask."""
    from tempscale import _scalers

    z, y, _ = _data(n=1_000, k=2, seed=4)
    penalty = _scalers.odir_penalty("matrix", 2, 1e-3, 1e-3)
    ref = _scalers.fit_affine("matrix", z, y, None, penalty, tol=1e-12, max_iter=100,
                              dense_max=0)
    got = _scalers.fit_affine("matrix", da.from_array(z, chunks=(500, 2)),
                              da.from_array(y, chunks=500), None, penalty, tol=1e-12,
                              max_iter=100, dense_max=0)
    assert got.converged and ref.converged
    np.testing.assert_allclose(got.coef, ref.coef, rtol=1e-7, atol=1e-7)
    assert got.objective == pytest.approx(ref.objective, rel=RTOL)


def test_dask_input_errors(client):
    z, y, w = _data(n=200, k=3)
    zd = da.from_array(z, chunks=(100, 3))
    for cls in (TemperatureScaler, VectorScaler, MatrixScaler, DirichletScaler):
        name = cls.__name__
        with pytest.raises(TypeError, match=f"'y' parameter of {name}.fit .*integer"):
            cls().fit(zd, y.astype(np.float64))
        with pytest.raises(ValueError, match="labels|'y' parameter"):
            cls().fit(zd, da.from_array(y + 3, chunks=100))  # outside [0, 3)
    for cls in (TemperatureScaler, VectorScaler):
        sc = cls().fit(z, y)
        with pytest.raises(ValueError, match="expecting 3 features"):
            sc.predict_proba(zd[:, :2])
    bad = z.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        VectorScaler().fit(da.from_array(bad, chunks=(100, 3)), y)
    with pytest.raises(ValueError, match="'sample_weight' parameter of MatrixScaler.fit"):
        MatrixScaler().fit(zd, y, sample_weight=da.from_array(-w, chunks=100))
