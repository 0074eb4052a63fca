"""fit_temperature, TemperatureScaler and the calibration metrics against independent references."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tempscale.calibration import (
    CalibrationErrorResult,
    CalibrationWarning,
    ReliabilityCurve,
    brier_score,
    calibration_error,
    fit_temperature,
    nll,
    reliability_curve,
)

scipy = pytest.importorskip("scipy")
from scipy.optimize import brentq, minimize_scalar  # noqa: E402
from scipy.special import logsumexp as sp_logsumexp  # noqa: E402
from scipy.special import softmax as sp_softmax  # noqa: E402


# --------------------------------------------------------------------------------------------
# independent references (float64, SciPy)
# --------------------------------------------------------------------------------------------
def ref_nll(z, y, T, w=None):
    z = np.asarray(z, np.float64)
    v = sp_logsumexp(z / T, axis=1) - z[np.arange(len(y)), y] / T
    return float(np.average(v, weights=w))


def ref_fit(z, y, w=None):
    """The root of dNLL/dbeta by Brent's method (gradient via scipy's softmax), then 1/beta."""
    z = np.asarray(z, np.float64)
    zy = z[np.arange(len(y)), y]

    def grad(lb):
        b = math.exp(lb)
        p = sp_softmax(b * z, axis=1)
        return float(np.average(np.sum(p * z, axis=1) - zy, weights=w))

    lo, hi = -5.0, 5.0
    while grad(lo) > 0:
        lo -= 5
    while grad(hi) < 0:
        hi += 5
    lb = brentq(grad, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500)
    return math.exp(-lb)


def make_problem(n, k, *, scale=3.0, signal=1.5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    z = scale * (rng.normal(size=(n, k)) + signal * np.eye(k)[y])
    return z.astype(dtype), y


# --------------------------------------------------------------------------------------------
# fit_temperature
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,scale,signal", [(1000, 5, 3.0, 1.5), (500, 2, 0.3, 1.0),
                                              (3000, 10, 10.0, 1.0), (200, 3, 1.0, 0.3),
                                              (400, 50, 0.05, 2.0), (300, 4, 100.0, 0.5)])
def test_fit_matches_brute_force(n, k, scale, signal):
    z, y = make_problem(n, k, scale=scale, signal=signal, seed=n + k)
    T = fit_temperature(z, y)
    T_ref = ref_fit(z, y)
    assert isinstance(T, float)
    assert T == pytest.approx(T_ref, rel=1e-8)
    # and it is the minimum of the NLL, checked by a bounded scalar search
    r = minimize_scalar(lambda t: ref_nll(z, y, t), bounds=(T * 0.5, T * 2), method="bounded",
                        options={"xatol": 1e-12})
    assert ref_nll(z, y, T) <= r.fun + 1e-12
    assert T == pytest.approx(r.x, rel=1e-5)


def test_fit_float32_is_optimum_of_exact_nll():
    z, y = make_problem(5000, 7, seed=3, dtype=np.float32)
    assert fit_temperature(z, y) == pytest.approx(ref_fit(z, y), rel=1e-8)


def test_fit_large_input_uses_subsample_start_and_threads():
    # n * k > 2**20 takes the subsample start; result unchanged, and thread count is irrelevant
    z, y = make_problem(120_000, 10, seed=5, dtype=np.float32)
    T = fit_temperature(z, y)
    assert T == pytest.approx(ref_fit(z, y), rel=1e-8)
    assert fit_temperature(z, y, threads=1) == pytest.approx(T, rel=1e-10)


def test_fit_sample_weight_equals_repetition():
    z, y = make_problem(300, 4, seed=7)
    w = np.random.default_rng(1).integers(0, 4, size=300)
    rep = np.repeat(np.arange(300), w)
    T_w = fit_temperature(z, y, sample_weight=w.astype(float))
    assert T_w == pytest.approx(fit_temperature(z[rep], y[rep]), rel=1e-9)
    assert T_w == pytest.approx(ref_fit(z, y, w), rel=1e-8)


def test_fit_binary_one_logit():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=800)
    s = 4.0 * (rng.normal(size=800) + (2 * y - 1))
    two = np.stack([np.zeros_like(s), s], axis=1)
    T = fit_temperature(s, y)
    assert T == pytest.approx(fit_temperature(two, y), rel=1e-10)
    assert T == pytest.approx(fit_temperature(s[:, None], y), rel=1e-12)
    # the sigmoid form of the NLL, minimised independently
    def bnll(t):
        return float(np.mean(np.logaddexp(0, s / t) - y * s / t))
    r = minimize_scalar(bnll, bounds=(T / 2, 2 * T), method="bounded", options={"xatol": 1e-12})
    assert T == pytest.approx(r.x, rel=1e-5)
    assert fit_temperature(s, y.astype(bool)) == pytest.approx(T, rel=1e-12)


def test_fit_masked_classes():
    z, y = make_problem(400, 6, seed=11)
    y = y % 5
    z = z.copy()
    z[:, 5] = -np.inf            # a class nobody predicts
    z[y == 4, 3] = -np.inf       # masked on some rows (never at the label)
    T = fit_temperature(z, y)
    # reference: drop column 5; a hugely negative logit instead of -inf contributes exactly 0
    zz = np.where(np.isinf(z), -1e6, z)[:, :5]
    assert T == pytest.approx(ref_fit(zz, y), rel=1e-8)


def test_fit_as_array_and_backends(xp):
    z, y = make_problem(600, 5, seed=13)
    T = fit_temperature(z, y)
    zx = xp.asarray(z)
    yx = xp.asarray(y)
    Tx = fit_temperature(zx, yx)
    assert isinstance(Tx, float)
    assert Tx == pytest.approx(T, rel=1e-9)
    Ta = fit_temperature(zx, yx, as_array=True)
    assert Ta.shape == ()
    assert type(Ta).__module__.split(".")[0] == type(zx).__module__.split(".")[0]
    assert float(Ta) == pytest.approx(T, rel=1e-9)


def test_fit_dask():
    da = pytest.importorskip("dask.array")
    z, y = make_problem(2000, 5, seed=17)
    T = fit_temperature(da.from_array(z, chunks=(500, 5)), y)
    assert T == pytest.approx(fit_temperature(z, y), rel=1e-9)


def test_fit_torch_float32_and_labels_from_numpy():
    torch = pytest.importorskip("torch")
    z, y = make_problem(1500, 4, seed=19, dtype=np.float32)
    T = fit_temperature(torch.from_numpy(z), y)
    assert T == pytest.approx(ref_fit(z, y), rel=1e-8)


def test_fit_scale_equivariance():
    z, y = make_problem(500, 3, seed=23)
    T = fit_temperature(z, y)
    for c in (1e-3, 0.5, 7.0, 1e4):
        assert fit_temperature(c * z, y) == pytest.approx(c * T, rel=1e-8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(20, 200), k=st.integers(2, 8), scale=st.floats(0.01, 50.0),
       signal=st.floats(0.2, 3.0), seed=st.integers(0, 10_000))
def test_fit_property_is_minimum(n, k, scale, signal, seed):
    z, y = make_problem(n, k, scale=scale, signal=signal, seed=seed)
    z[0, y[0]] = z[0].min() - 1.0  # one mistake: never separable
    g0 = np.mean(z.mean(axis=1) - z[np.arange(n), y])  # dNLL/dbeta at beta = 0
    if g0 >= 0:  # no better than uniform on this small sample: T = inf, with a warning
        with pytest.warns(CalibrationWarning, match="T = inf"):
            assert fit_temperature(z, y) == math.inf
        return
    T = fit_temperature(z, y)
    assert 0 < T < math.inf
    assert T == pytest.approx(ref_fit(z, y), rel=1e-7)
    base = ref_nll(z, y, T)
    for f in (1 - 1e-4, 1 + 1e-4):
        assert base <= ref_nll(z, y, T * f) + 1e-13


def test_degenerate_separable():
    z, y = make_problem(100, 3, signal=50.0, seed=1)
    assert np.all(z.argmax(1) == y)
    with pytest.warns(CalibrationWarning, match="T = 0"):
        assert fit_temperature(z, y) == 0.0


def test_degenerate_constant_logits():
    z = np.full((50, 4), 2.5)
    y = np.arange(50) % 4
    with pytest.warns(CalibrationWarning, match="constant"):
        assert fit_temperature(z, y) == 1.0


def test_degenerate_anti_informative():
    z, y = make_problem(300, 3, seed=2)
    with pytest.warns(CalibrationWarning, match="T = inf"):
        assert fit_temperature(-z, y) == math.inf


def test_degenerate_single_class():
    z, _ = make_problem(200, 3, seed=4)
    z[:, 0] += 2.0
    y = np.zeros(200, dtype=int)
    with pytest.warns(CalibrationWarning, match="same class"):
        T = fit_temperature(z, y)
    assert T == pytest.approx(ref_fit(z, y), rel=1e-8)


def test_fit_near_separable_is_finite():
    z, y = make_problem(1000, 4, signal=20.0, seed=8)
    z[0, y[0]] = z[0].max() - 1e-3  # one near-miss
    z[0, (y[0] + 1) % 4] = z[0].max() + 1e-3
    T = fit_temperature(z, y)
    assert 0 < T < math.inf
    assert T == pytest.approx(ref_fit(z, y), rel=1e-7)


@pytest.mark.parametrize("bad,match", [
    (dict(labels=np.array([0, 1, 5])), "labels"),
    (dict(labels=np.array([0, 1])), "labels"),
    (dict(labels=np.array([0.5, 1, 0])), "labels"),
    (dict(sample_weight=np.array([1.0, -1.0, 1.0])), "sample_weight"),
    (dict(sample_weight=np.zeros(3)), "sample_weight"),
    (dict(tol=0.0), "tol"),
    (dict(max_iter=0), "max_iter"),
])
def test_fit_errors(bad, match):
    kw = dict(logits=np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.2]]), labels=np.array([0, 1, 0]))
    kw.update(bad)
    logits, labels = kw.pop("logits"), kw.pop("labels")
    with pytest.raises((ValueError, TypeError), match=match):
        fit_temperature(logits, labels, **kw)


def test_fit_rejects_nan_and_masked_label():
    z, y = make_problem(20, 3)
    z2 = z.copy()
    z2[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(z2, y)
    z3 = z.copy()
    z3[4, y[4]] = -np.inf
    with pytest.raises(ValueError, match="rows \\[4\\]"):
        fit_temperature(z3, y)
    with pytest.raises(ValueError, match="2-D"):
        fit_temperature(np.zeros((2, 2, 2)), [0, 1])


# --------------------------------------------------------------------------------------------
# metrics: plain-loop references
# --------------------------------------------------------------------------------------------
def loop_ce(p, y, n_bins, strategy, norm, kind, w=None):
    n, k = p.shape
    w = np.ones(n) if w is None else w

    def one(conf, hit):
        if strategy == "uniform":
            edges = [i / n_bins for i in range(n_bins + 1)]
        else:
            edges = list(np.percentile(conf, np.linspace(0, 100, n_bins + 1)))
        bins = [[] for _ in range(n_bins)]
        for i in range(n):
            b = 0
            while b < n_bins - 1 and conf[i] > edges[b + 1]:
                b += 1
            bins[b].append(i)
        tot = sum(w)
        acc = []
        for idx in bins:
            ws = sum(w[i] for i in idx)
            if ws == 0:
                continue
            a = sum(w[i] * hit[i] for i in idx) / ws
            c = sum(w[i] * conf[i] for i in idx) / ws
            acc.append((ws / tot, abs(a - c)))
        if norm == "l1":
            return sum(f * g for f, g in acc)
        if norm == "l2":
            return sum(f * g * g for f, g in acc)
        return max(g for _, g in acc)

    if kind == "top-label":
        conf = [max(row) for row in p]
        hit = [float(int(np.argmax(p[i])) == y[i]) for i in range(n)]
        v = one(conf, hit)
        return math.sqrt(v) if norm == "l2" else v
    vals = [one(list(p[:, c]), [float(y[i] == c) for i in range(n)]) for c in range(k)]
    if norm == "max":
        return max(vals)
    v = sum(vals) / k
    return math.sqrt(v) if norm == "l2" else v


def random_probs(n, k, seed):
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, k))
    y = np.array([rng.choice(k, p=sp_softmax(0.7 * row)) for row in z])
    return sp_softmax(z, axis=1), y


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("kind", ["top-label", "classwise"])
def test_calibration_error_matches_loop(strategy, norm, kind):
    p, y = random_probs(300, 4, seed=hash((strategy, norm, kind)) % 1000)
    got = calibration_error(p, y, n_bins=10, strategy=strategy, norm=norm, kind=kind)
    assert got == pytest.approx(loop_ce(p, y, 10, strategy, norm, kind), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_calibration_error_weights(norm):
    p, y = random_probs(200, 3, seed=5)
    w = np.random.default_rng(0).integers(0, 3, size=200).astype(float)
    got = calibration_error(p, y, n_bins=8, norm=norm, sample_weight=w)
    assert got == pytest.approx(loop_ce(p, y, 8, "uniform", norm, "top-label", w), rel=1e-12)
    rep = np.repeat(np.arange(200), w.astype(int))
    assert got == pytest.approx(calibration_error(p[rep], y[rep], n_bins=8, norm=norm), rel=1e-12)


def test_calibration_error_from_logits_and_binary(xp):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(100, 3))
    y = rng.integers(0, 3, size=100)
    e = calibration_error(sp_softmax(z, axis=1), y)
    assert calibration_error(xp.asarray(z), xp.asarray(y), input="logits") == pytest.approx(e, rel=1e-12)
    s = rng.normal(size=100)
    yb = (rng.random(100) < 0.5).astype(int)
    pb = 1 / (1 + np.exp(-s))
    two = np.stack([1 - pb, pb], axis=1)
    assert calibration_error(pb, yb) == pytest.approx(calibration_error(two, yb), rel=1e-12)
    assert calibration_error(s, yb, input="logits") == pytest.approx(calibration_error(two, yb),
                                                                       rel=1e-12)


def test_calibration_error_bootstrap():
    p, y = random_probs(400, 3, seed=9)
    r = calibration_error(p, y, n_bootstrap=100, random_state=0)
    assert isinstance(r, CalibrationErrorResult)
    assert r.estimate == pytest.approx(calibration_error(p, y))
    assert 0 <= r.low <= r.high <= 1
    assert r.low < r.estimate + 0.05 and r.high > r.estimate - 0.05
    assert r == calibration_error(p, y, n_bootstrap=100, random_state=0)   # reproducible
    r90 = calibration_error(p, y, n_bootstrap=100, random_state=0, confidence_level=0.5)
    assert r.low <= r90.low <= r90.high <= r.high


def test_calibration_error_perfect_and_bad_args():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert calibration_error(p, [0, 1]) == 0.0
    with pytest.raises(ValueError, match="'norm' parameter of calibration_error"):
        calibration_error(p, [0, 1], norm="l3")
    with pytest.raises(ValueError, match="'strategy'"):
        calibration_error(p, [0, 1], strategy="equal")
    with pytest.raises(ValueError, match="from_logits=True"):
        calibration_error(np.array([[2.0, -1.0]]), [0])
    with pytest.raises(ValueError, match="labels"):
        calibration_error(p, [0, 1, 1])


def test_reliability_curve_matches_sklearn():
    skc = pytest.importorskip("sklearn.calibration")
    rng = np.random.default_rng(4)
    pb = rng.random(500)
    y = (rng.random(500) < pb ** 1.5).astype(int)
    for strategy in ("uniform", "quantile"):
        c = reliability_curve(pb, y, n_bins=7, strategy=strategy, class_index=1)
        assert isinstance(c, ReliabilityCurve)
        prob_true, prob_pred = skc.calibration_curve(y, pb, n_bins=7, strategy=strategy)
        keep = c.counts > 0
        np.testing.assert_allclose(c.accuracy[keep], prob_true, rtol=1e-12)
        np.testing.assert_allclose(c.confidence[keep], prob_pred, rtol=1e-12)
        assert c.counts.sum() == 500 and c.bin_edges.shape == (8,)
        assert np.all(np.isnan(c.accuracy[~keep]))


def test_reliability_curve_consistent_with_ece():
    p, y = random_probs(300, 5, seed=12)
    c = reliability_curve(p, y, n_bins=12)
    keep = c.counts > 0
    ece = np.sum(c.counts[keep] * np.abs(c.accuracy[keep] - c.confidence[keep])) / c.counts.sum()
    assert ece == pytest.approx(calibration_error(p, y, n_bins=12), rel=1e-12)


def test_brier_and_nll_match_sklearn(xp):
    metrics = pytest.importorskip("sklearn.metrics")
    p, y = random_probs(200, 4, seed=21)
    w = np.random.default_rng(2).random(200)
    assert brier_score(p, y) == pytest.approx(
        metrics.brier_score_loss(y, p, scale_by_half=False), rel=1e-12)
    assert brier_score(p, y, sample_weight=w) == pytest.approx(
        metrics.brier_score_loss(y, p, sample_weight=w, scale_by_half=False), rel=1e-12)
    assert nll(p, y) == pytest.approx(metrics.log_loss(y, p), rel=1e-12)
    assert nll(p, y, sample_weight=w) == pytest.approx(metrics.log_loss(y, p, sample_weight=w),
                                                       rel=1e-12)
    z = np.log(p) + 3.0
    assert nll(xp.asarray(z), xp.asarray(y), input="logits") == pytest.approx(nll(p, y), rel=1e-10)
    assert brier_score(xp.asarray(z), y, input="logits") == pytest.approx(brier_score(p, y),
                                                                           rel=1e-10)
    pb = p[:, 0]
    yb = (y == 0).astype(int)
    assert brier_score(pb, yb) == pytest.approx(metrics.brier_score_loss(yb, pb), rel=1e-12)
    assert nll(pb, yb) == pytest.approx(metrics.log_loss(yb, pb), rel=1e-12)


def test_nll_from_logits_is_exact_for_huge_logits():
    z = np.array([[1e4, 0.0], [0.0, 2e4]])
    assert nll(z, [1, 1], input="logits") == pytest.approx(5e3, rel=1e-12)
    assert nll(np.array([[1.0, 0.0]]), [1]) == math.inf


# --------------------------------------------------------------------------------------------
# TemperatureScaler
# --------------------------------------------------------------------------------------------
sklearn = pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from tempscale.calibration import TemperatureScaler  # noqa: E402

_SHAPE = ("the generic check fits logits whose number of columns differs from the number of "
          "classes in y; temperature scaling needs one logit column per class")
EXPECTED_FAILED = {
    "check_classifiers_train": _SHAPE,
    "check_estimators_overwrite_params": _SHAPE,
    "check_estimators_fit_returns_self": _SHAPE,
    "check_readonly_memmap_input": _SHAPE,
    "check_estimators_nan_inf": _SHAPE,
    "check_classifiers_classes": _SHAPE,
}


@pytest.mark.filterwarnings("ignore::tempscale.calibration.CalibrationWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@parametrize_with_checks([TemperatureScaler()], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_scaler_fit_predict_score():
    z, y = make_problem(800, 4, seed=31)
    s = TemperatureScaler().fit(z, y)
    assert s.temperature_ == pytest.approx(ref_fit(z, y), rel=1e-8)
    np.testing.assert_array_equal(s.classes_, np.arange(4))
    np.testing.assert_allclose(s.predict_proba(z), sp_softmax(z / s.temperature_, axis=1),
                               rtol=1e-12)
    np.testing.assert_allclose(s.transform(z), np.log(sp_softmax(z / s.temperature_, axis=1)),
                               rtol=1e-10)
    np.testing.assert_array_equal(s.predict(z), z.argmax(1))
    assert s.score(z, y) == pytest.approx(-ref_nll(z, y, s.temperature_), rel=1e-12)
    assert s.get_params() == {"estimator": None, "max_iter": 100, "tol": 1e-12}
    assert s.set_params(max_iter=50).max_iter == 50
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.temperature_ == s.temperature_


def test_scaler_string_labels_and_binary_column():
    z, y = make_problem(300, 3, seed=33)
    names = np.array(["cat", "dog", "emu"])
    s = TemperatureScaler().fit(z, names[y])
    assert list(s.classes_) == ["cat", "dog", "emu"]
    assert s.temperature_ == pytest.approx(fit_temperature(z, y), rel=1e-12)
    assert set(s.predict(z)) <= set(names)
    d = z[:, 1] - z[:, 0]
    yb = (y == 1).astype(int)
    sb = TemperatureScaler().fit(d[:, None], yb)
    assert sb.predict_proba(d[:, None]).shape == (300, 2)
    with pytest.raises(ValueError, match="logit column"):
        TemperatureScaler().fit(z[:, :2], names[y])


def test_scaler_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TemperatureScaler().predict_proba(np.zeros((2, 2)))


def test_scaler_in_pipeline_after_decision_function():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = load_digits(return_X_y=True)
    Xtr, Xval, ytr, yval = train_test_split(X, y, test_size=0.4, random_state=0)
    clf = LogisticRegression(max_iter=300, C=10.0).fit(Xtr / 16, ytr)
    pipe = make_pipeline(FunctionTransformer(lambda A: clf.decision_function(A / 16)),
                         TemperatureScaler()).fit(Xval, yval)
    T = pipe[-1].temperature_
    assert T == pytest.approx(fit_temperature(clf.decision_function(Xval / 16), yval), rel=1e-12)
    assert pipe.score(Xval, yval) >= TemperatureScaler().fit(
        clf.decision_function(Xval / 16), yval).set_params().score(
        clf.decision_function(Xval / 16), yval) - 1e-12
    # score is the negative NLL, so model selection over it works
    gs = GridSearchCV(TemperatureScaler(), {"tol": [1e-6, 1e-12]}, cv=3).fit(
        clf.decision_function(Xval / 16), yval)
    assert gs.best_score_ < 0


def test_calibration_imports_no_sklearn_or_scipy():
    code = ("import sys, tempscale.calibration as c\n"
            "c.fit_temperature([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]], [0, 1, 1])\n"
            "c.calibration_error([[0.9, 0.1]], [0])\n"
            "print(','.join(m for m in ('sklearn', 'scipy', 'torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
def test_cli_calibrate(tmp_path, capsys):
    import json

    from tempscale.cli import main

    z, y = make_problem(400, 4, seed=41)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "t.json"
    assert main(["calibrate", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "NLL" in text and "ECE" in text and "Brier" in text and "accuracy" in text
    doc = json.loads(out.read_text())
    assert doc["temperature"] == pytest.approx(ref_fit(z, y), rel=1e-8)
    assert doc["after"]["nll"] == pytest.approx(ref_nll(z, y, doc["temperature"]), rel=1e-10)
    assert doc["after"]["nll"] < doc["before"]["nll"]
    assert doc["after"]["accuracy"] == doc["before"]["accuracy"]
    # no overwrite without --force
    assert main(["calibrate", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--json", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_cli_calibrate_errors(tmp_path, capsys):
    from tempscale.cli import main

    z, y = make_problem(50, 3, seed=43)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "short.npy", y[:-1])
    np.save(tmp_path / "oob.npy", y + 3)
    np.savetxt(tmp_path / "z.csv", z[:, 1] - z[:, 0], delimiter=",")
    np.savetxt(tmp_path / "y.csv", (y == 1).astype(int), delimiter=",", fmt="%d")
    for labels, msg in (("short.npy", "50 rows but LABELS has 49"), ("oob.npy", "[0, 2]")):
        assert main(["calibrate", str(tmp_path / "z.npy"), str(tmp_path / labels)]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
    assert main(["calibrate", str(tmp_path / "z.csv"), str(tmp_path / "y.csv")]) == 0   # binary
    assert "2 classes" in capsys.readouterr().out


def test_example_calibrate_runs(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "calibrate.py"
    spec = importlib.util.spec_from_file_location("example_calibrate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main([])
    assert res["temperature"] > 1            # the weakly regularised model is over-confident
    assert res["after"]["NLL"] < res["before"]["NLL"]
    assert res["after"]["accuracy"] == res["before"]["accuracy"]
    assert "T = " in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# issue 15: one vocabulary (prediction, labels, input=) with the old spellings deprecated;
# TemperatureScaler in tempscale.sklearn; warnings at the user's line
# --------------------------------------------------------------------------------------------
METRICS = {"calibration_error": calibration_error, "reliability_curve": reliability_curve,
           "brier_score": brier_score, "nll": nll}


def _same(a, b):
    if isinstance(a, tuple):
        return all(np.array_equal(u, v, equal_nan=True) for u, v in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_take_prediction_and_input(name):
    import inspect

    f = METRICS[name]
    params = list(inspect.signature(f).parameters)
    assert params[:2] == ["prediction", "labels"]
    assert inspect.signature(f).parameters["input"].default == "probabilities"
    p, y = random_probs(60, 3, seed=50)
    z = np.log(p) + 1.0
    assert _same(f(z, y, input="logits"), f(sp_softmax(z, axis=1), y))
    assert _same(f(prediction=p, labels=y), f(p, y))
    with pytest.raises(ValueError, match=f"'input' parameter of {name}"):
        f(p, y, input="logit")


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_deprecated_from_logits_and_probs(name):
    f = METRICS[name]
    p, y = random_probs(60, 3, seed=51)
    z = np.log(p) - 2.0
    with pytest.warns(DeprecationWarning, match=f"{name}: the 'from_logits' keyword.*input='logits'") as rec:
        got = f(z, y, from_logits=True)
    assert rec[0].filename == __file__                     # points at the caller's line
    assert _same(got, f(z, y, input="logits"))
    with pytest.warns(DeprecationWarning, match="input='probabilities'"):
        assert _same(f(p, y, from_logits=False), f(p, y))
    with pytest.warns(DeprecationWarning, match=f"{name}: the 'probs' keyword.*prediction="):
        assert _same(f(probs=p, labels=y), f(p, y))
    with pytest.raises(TypeError, match="'from_logits' parameter of " + name):
        f(z, y, from_logits="yes")
    with pytest.raises(TypeError, match="'from_logits' \\(deprecated\\) and 'input'"):
        f(z, y, from_logits=True, input="logits")


def test_error_names_prediction_and_input():
    with pytest.raises(ValueError, match="'prediction' parameter of brier_score.*input=\"logits\""):
        brier_score(np.array([[2.0, -1.0]]), [0])
    with pytest.raises(ValueError, match="'prediction' parameter of nll must be a non-empty 2-D"):
        nll(np.zeros((2, 2, 2)), [0, 1], input="logits")


def test_temperature_scaler_lives_in_tempscale_sklearn():
    import tempscale
    import tempscale.calibration as C
    import tempscale.sklearn as S

    assert S.TemperatureScaler is C.TemperatureScaler is tempscale.TemperatureScaler
    assert S.TemperatureScaler.__module__ == "tempscale.sklearn"
    assert S.TemperatureScaler.__qualname__ == "TemperatureScaler"
    assert "TemperatureScaler" in dir(C) and "TemperatureScaler" in C.__all__
    s = pickle.loads(pickle.dumps(S.TemperatureScaler(tol=1e-6)))
    assert type(s) is S.TemperatureScaler and s.tol == 1e-6
    code = ("import sys, tempscale, tempscale.calibration\n"
            "assert 'sklearn' not in sys.modules and 'tempscale.sklearn' not in sys.modules\n"
            "tempscale.calibration.TemperatureScaler\n"
            "assert 'sklearn' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_warnings_point_at_the_caller():
    z, y = make_problem(100, 3, signal=50.0, seed=1)
    with pytest.warns(CalibrationWarning, match="T = 0") as rec:
        fit_temperature(z, y)
    assert [r.filename for r in rec] == [__file__]
    with pytest.warns(CalibrationWarning, match="max_iter=1") as rec:
        fit_temperature(*make_problem(300, 3, seed=2), max_iter=1)
    assert rec[0].filename == __file__
    with pytest.warns(CalibrationWarning, match="TemperatureScaler.fit: .*T = 0") as rec:
        TemperatureScaler().fit(z, y)
    assert rec[0].filename == __file__


def test_solver_reports_outcomes_without_exceptions():
    # the public result of each degenerate case is a defined value, and the solver module has
    # no exception classes used for returns (issue 15: no exception-driven control flow)
    import tempscale.calibration as C

    pkg = __import__("pathlib").Path(C.__file__).parent
    text = "".join(f.read_text() for f in pkg.glob("*.py"))
    assert "_Outcome" not in text and "_NonFinite" not in text
    assert "stacklevel=" not in text.replace("stacklevel=level", "")


def test_solver_started_at_the_root_does_not_stop_half_a_bracket_away():
    """Regression: a start at the optimum whose gradient rounds to a tiny positive value made
    the next (short) Halley step fall a hair outside the bracket; the solver bisected there and
    stopped on the short bisection step, 1e-7 away from the root.  A short float64 Halley step
    is now the answer, clamped to the bracket."""
    pytest.importorskip("tempscale._native._tsmoments")
    import importlib

    from tempscale.calibration._nll import NativeNLL
    from tempscale.calibration._solver import solve_beta

    M = importlib.import_module("tempscale._native._tsmoments")
    rng = np.random.default_rng(0)
    n, k = 5000, 6
    y = rng.integers(0, k, n)
    z = 3 * (rng.standard_normal((n, k)) + 1.5 * np.eye(k)[y])
    prob = NativeNLL(M, z, y.astype(np.intp), None, threads=1, exp2=4)
    root = 8.090231314062786
    assert prob.evaluate(root, True)[0] > 0          # the rounding that triggered it
    for start in (root, 1.0, 30.0):
        sol = solve_beta(prob.evaluate, start, tol=1e-12, max_iter=100, precise_from=0)
        assert sol.beta == pytest.approx(root, rel=1e-13)
