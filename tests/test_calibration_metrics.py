"""Smooth ECE, the debiased l2 calibration error, bootstrap intervals and CalibrationMeter,
against the reference packages (relplot, uncertainty-calibration) and direct formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tempscale import softmax, temper
from tempscale.calibration import (
    CalibrationErrorResult,
    CalibrationMeter,
    brier_score,
    calibration_error,
    nll,
)

scipy = pytest.importorskip("scipy")
from scipy.special import softmax as sp_softmax  # noqa: E402


def _datasets():
    """(confidence of class 1, 0/1 label) pairs of several shapes: calibrated, over- and
    under-confident, skewed, tiny and larger."""
    rng = np.random.default_rng(12345)
    out = []
    for i, n in enumerate([20, 50, 300, 1000, 4000, 20000]):
        f = rng.beta(rng.uniform(0.5, 4), rng.uniform(0.5, 4), n)
        truth = np.clip(f + [0.0, 0.15, -0.1, 0.05, 0.0, -0.2][i] * np.sin(6 * f), 0, 1)
        y = (rng.uniform(size=n) < truth).astype(np.int64)
        out.append((f, y))
    out.append((np.clip(rng.normal(0.9, 0.05, 500), 0, 1), rng.integers(0, 2, 500)))
    out.append((np.r_[np.zeros(10), np.ones(10)], np.r_[np.zeros(10), np.ones(10)].astype(int)))
    return out


def _multiclass(seed, n=800, k=5, scale=3.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    p = sp_softmax(z, axis=1)
    y = np.array([rng.choice(k, p=row) for row in sp_softmax(z * 0.7, axis=1)])
    return z, p, y


# --------------------------------------------------------------------------------------------
# (a) smooth ECE
# --------------------------------------------------------------------------------------------
def ref_smooth_ece_bruteforce(f, y, sigma, n_grid=4001, n_images=6):
    """smECE at bandwidth sigma by direct numerical integration of the reflected Gaussian
    kernel (no grid splatting, no FFT): int |sum_i r_i K(t, f_i)| dt / int sum_i K(t, f_i) dt."""
    t = np.linspace(0.0, 1.0, n_grid)[:, None]
    k = np.zeros((n_grid, len(f)))
    for j in range(-n_images, n_images + 1):  # the images of f under reflection at 0 and 1
        for img in (2 * j + f, 2 * j - f):
            k += np.exp(-((t - img) ** 2) / (2 * sigma**2))
    r = k @ (f - y)
    d = k.sum(axis=1)
    return np.trapezoid(np.abs(r), t[:, 0]) / np.trapezoid(d, t[:, 0])


def test_smooth_ece_equals_relplot():
    relplot = pytest.importorskip("relplot")
    worst = 0.0
    for f, y in _datasets():
        ours = calibration_error(f.copy(), y, method="smooth")
        # a 1-D prediction is the probability of class 1; its top-label confidence is max(p, 1-p)
        conf = np.maximum(f, 1 - f)
        hit = ((f > 0.5).astype(int) == y) | ((f == 0.5) & (y == 0))
        theirs = relplot.smECE(conf, hit.astype(np.float64))
        worst = max(worst, abs(ours - theirs))
        # classwise on one column: class 1 is (f, y), class 0 is (1-f, 1-y): the same residuals
        cw = calibration_error(f, y, method="smooth", kind="classwise")
        assert cw == pytest.approx(relplot.smECE(f, y.astype(np.float64)), abs=1e-6)
    assert worst <= 1e-6


def test_smooth_ece_multiclass_equals_relplot():
    relplot = pytest.importorskip("relplot")
    for seed in range(3):
        z, p, y = _multiclass(seed)
        conf, hit = relplot.multiclass_logits_to_confidences(z, y)
        theirs = relplot.smECE(conf, hit)
        assert calibration_error(z, y, method="smooth", input="logits") == pytest.approx(
            theirs, abs=1e-6)
        assert calibration_error(p, y, method="smooth") == pytest.approx(theirs, abs=1e-6)
        per_class = [relplot.smECE(p[:, c], (y == c).astype(float)) for c in range(p.shape[1])]
        assert calibration_error(p, y, method="smooth", kind="classwise") == pytest.approx(
            np.mean(per_class), abs=1e-6)


def test_smooth_ece_at_fixed_bandwidth_matches_numerical_integration():
    from tempscale.calibration._smooth import smooth_ece_at

    rng = np.random.default_rng(3)
    f = rng.beta(2, 1, 400)
    y = (rng.uniform(size=400) < f**1.3).astype(float)
    for sigma in (0.3, 0.1, 0.05, 0.02):
        ours = smooth_ece_at(f, f - y, np.ones_like(f), sigma)
        assert ours == pytest.approx(ref_smooth_ece_bruteforce(f, y, sigma), rel=5e-3, abs=1e-5)  # relplot grid: <0.3%


def test_smooth_ece_properties():
    rng = np.random.default_rng(7)
    # perfectly calibrated data: smECE shrinks towards 0 as n grows
    vals = []
    for n in (500, 5000, 50000):
        f = rng.uniform(size=n)
        y = (rng.uniform(size=n) < f).astype(int)
        vals.append(calibration_error(f, y, method="smooth", kind="classwise"))
    assert vals[-1] < 0.01 and vals[-1] < vals[0]
    # a constant predictor: smECE is |mean residual| (the smoothing changes nothing)
    f = np.full(1000, 0.8)
    y = (np.arange(1000) < 600).astype(int)
    assert calibration_error(f, y, method="smooth", kind="classwise") == pytest.approx(0.2, abs=2e-3)
    # Błasiok & Nakkiran: smECE <= binned ECE + 1/n_bins-type slack, and within [0, 1]
    for f, y in _datasets():
        s = calibration_error(f, y, method="smooth", kind="classwise")
        assert 0.0 <= s <= 1.0
        assert s <= calibration_error(f, y, kind="classwise", n_bins=10) * 2 + 0.1 + 1e-12


def test_smooth_ece_sample_weight_integer_is_repetition():
    z, p, y = _multiclass(11, n=300)
    w = np.random.default_rng(1).integers(1, 4, 300)
    rep = np.repeat(np.arange(300), w)
    assert calibration_error(p, y, method="smooth", sample_weight=w) == pytest.approx(
        calibration_error(p[rep], y[rep], method="smooth"), abs=1e-12)


# --------------------------------------------------------------------------------------------
# (b) debiased l2
# --------------------------------------------------------------------------------------------
def ref_debiased_l2(conf, hit, n_bins):
    """Kumar et al. (2019) formula, direct: equal-width bins (b/B, (b+1)/B]."""
    ids = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = ids == b
        nb = m.sum()
        if nb < 2:
            continue
        fb, yb = conf[m].mean(), hit[m].mean()
        total += nb / len(conf) * ((fb - yb) ** 2 - yb * (1 - yb) / (nb - 1))
    return total


def test_debiased_l2_equals_uncertainty_calibration():
    uc = pytest.importorskip("calibration")
    utils = pytest.importorskip("calibration.utils")
    worst = 0.0
    for seed in range(4):
        z, p, y = _multiclass(seed, n=[300, 800, 2000, 5000][seed], k=[3, 5, 10, 4][seed])
        for nb in (10, 15):
            for kind, mode in (("top-label", "top-label"), ("classwise", "marginal")):
                theirs = utils.lower_bound_scaling_ce(p, y, p=2, debias=True, num_bins=nb,
                                                      binning_scheme=utils.get_equal_prob_bins,
                                                      mode=mode)
                ours = calibration_error(p, y, norm="l2", debias=True, n_bins=nb, kind=kind)
                worst = max(worst, abs(ours - theirs))
            # the plug-in estimator is the package's debias=False
            theirs = utils.lower_bound_scaling_ce(p, y, p=2, debias=False, num_bins=15,
                                                  binning_scheme=utils.get_equal_prob_bins,
                                                  mode="top-label")
            assert calibration_error(p, y, norm="l2") == pytest.approx(theirs, abs=1e-12)
    assert uc is not None
    assert worst <= 1e-9


def test_debiased_l2_equals_formula_and_is_smaller():
    for seed in range(3):
        z, p, y = _multiclass(seed + 20, n=1500)
        conf = p.max(axis=1)
        hit = (p.argmax(axis=1) == y).astype(float)
        ref = math.sqrt(max(ref_debiased_l2(conf, hit, 15), 0.0))
        ours = calibration_error(p, y, norm="l2", debias=True)
        assert ours == pytest.approx(ref, abs=1e-12)
        assert ours <= calibration_error(p, y, norm="l2")


def test_options_rejected_with_clear_errors():
    z, p, y = _multiclass(0, n=50)
    with pytest.raises(ValueError, match=r"'norm' parameter of calibration_error .*smooth"):
        calibration_error(p, y, method="smooth", norm="l2")
    with pytest.raises(ValueError, match=r"'debias' parameter of calibration_error"):
        calibration_error(p, y, debias=True)            # norm="l1"
    with pytest.raises(ValueError, match=r"'debias' parameter of calibration_error"):
        calibration_error(p, y, norm="max", debias=True)
    with pytest.raises(ValueError, match=r"'sample_weight' parameter of calibration_error"):
        calibration_error(p, y, norm="l2", debias=True, sample_weight=np.ones(50))
    with pytest.raises(ValueError, match=r"'method' parameter of calibration_error"):
        calibration_error(p, y, method="kde")
    with pytest.raises(TypeError, match=r"'debias' parameter of calibration_error"):
        calibration_error(p, y, norm="l2", debias=1)


# --------------------------------------------------------------------------------------------
# (c) bootstrap intervals for every estimator
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opts", [dict(method="smooth"), dict(norm="l2", debias=True),
                                  dict(method="smooth", kind="classwise"),
                                  dict(norm="l2", debias=True, kind="classwise")])
def test_bootstrap_every_estimator(opts):
    z, p, y = _multiclass(5, n=400)
    r = calibration_error(p, y, n_bootstrap=30, random_state=0, **opts)
    assert isinstance(r, CalibrationErrorResult)
    assert r.estimate == calibration_error(p, y, **opts)
    assert r.low <= r.high
    # the replicates are the estimator on resampled rows, with the same generator draws
    rng = np.random.default_rng(0)
    reps = []
    for _ in range(30):
        idx = rng.integers(0, 400, size=400)
        reps.append(calibration_error(p[idx], y[idx], **opts))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    assert (r.low, r.high) == pytest.approx((lo, hi), abs=1e-15)


# --------------------------------------------------------------------------------------------
# (d) CalibrationMeter
# --------------------------------------------------------------------------------------------
def _one_shot(pred, y, n_bins, strategy, T, input):
    """The one-shot functions on the concatenated data, at temperature T."""
    if input == "logits":
        p = np.asarray(softmax(pred, T))
        kw = dict(input="logits")
        x = pred / T
    else:
        p = pred if T == 1.0 else np.asarray(temper(pred, T))
        kw = dict(input="probabilities")
        x = p
    ce = dict(n_bins=n_bins, strategy=strategy, **kw)
    return {
        "ece": calibration_error(x, y, **ce),
        "rmsce": calibration_error(x, y, norm="l2", **ce),
        "mce": calibration_error(x, y, norm="max", **ce),
        "debiased_rmsce": calibration_error(x, y, norm="l2", debias=True, **ce),
        "smooth_ece": calibration_error(x, y, method="smooth", **kw),
        "nll": nll(x, y, **kw),
        "brier": brier_score(x, y, **kw),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)) if p.ndim == 2 and p.shape[1] > 1
        else None,
        "n": len(y),
    }


def _check_equal(got, want):
    assert set(got) == set(want)
    for key, v in want.items():
        if v is None:
            continue
        assert got[key] == pytest.approx(v, rel=1e-12, abs=1e-12), key


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 400), k=st.integers(2, 6), seed=st.integers(0, 2**31 - 1),
       n_parts=st.integers(1, 6), n_bins=st.integers(1, 20),
       strategy=st.sampled_from(["uniform", "quantile"]),
       T=st.sampled_from([1.0, 0.5, 2.0, 7.3]), input=st.sampled_from(["logits", "probabilities"]),
       backend=st.sampled_from(["numpy", "torch"]))
def test_meter_equals_one_shot_on_random_splits_and_merges(n, k, seed, n_parts, n_bins, strategy,
                                                           T, input, backend):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * rng.uniform(0.5, 5)
    y = rng.integers(0, k, n)
    pred = z if input == "logits" else sp_softmax(z, axis=1)
    cuts = np.sort(rng.integers(0, n + 1, n_parts - 1))
    parts = np.split(np.arange(n), cuts)
    meters = []
    for idx in parts:   # one meter per worker, each with one or two updates
        m = CalibrationMeter(n_bins, strategy=strategy, temperature=T, input=input)
        for sub in np.array_split(idx, rng.integers(1, 3)):
            if len(sub) == 0:
                continue
            batch = pred[sub]
            if backend == "torch":
                torch = pytest.importorskip("torch")
                batch = torch.from_numpy(batch)
            m.update(batch, y[sub])
        meters.append(m)
    order = rng.permutation(len(meters))  # merged in any order, as a tree
    while len(order) > 1:
        a, b = order[0], order[1]
        meters[a].merge(meters[b])
        order = np.r_[a, order[2:]]
    _check_equal(meters[order[0]].compute(), _one_shot(pred, y, n_bins, strategy, T, input))


def test_meter_binary_one_column_and_accuracy():
    rng = np.random.default_rng(4)
    s = rng.normal(size=300) * 2
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-s))).astype(int)
    m = CalibrationMeter(10).update(s[:100], y[:100]).update(s[100:], y[100:])
    got = m.compute()
    want = _one_shot(s, y, 10, "uniform", 1.0, "logits")
    want["accuracy"] = float(np.mean((s > 0).astype(int) == y))
    _check_equal(got, want)
    with pytest.raises(ValueError, match=r"'prediction' parameter of CalibrationMeter.update"):
        m.update(rng.normal(size=(5, 3)), np.zeros(5, int))


def test_meter_errors_and_reset():
    with pytest.raises(ValueError, match=r"'n_bins' parameter of CalibrationMeter"):
        CalibrationMeter(0)
    with pytest.raises(ValueError, match=r"'temperature' parameter of CalibrationMeter"):
        CalibrationMeter(temperature=-1.0)
    with pytest.raises(ValueError, match=r"'input' parameter of CalibrationMeter"):
        CalibrationMeter(input="probs")
    m = CalibrationMeter()
    with pytest.raises(ValueError, match=r"compute"):
        m.compute()
    with pytest.raises(ValueError, match=r"'other' parameter of CalibrationMeter.merge"):
        m.merge(CalibrationMeter(10))
    with pytest.raises(TypeError, match=r"'other' parameter of CalibrationMeter.merge"):
        m.merge({"n": 3})
    m.update(np.zeros((4, 3)), np.array([0, 1, 2, 0]))
    assert m.compute()["nll"] == pytest.approx(math.log(3), abs=1e-15)
    other = CalibrationMeter().update(np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"'other' parameter of CalibrationMeter.merge"):
        m.merge(other)
    assert m.reset().n_ == 0


def test_meter_pickles_for_workers():
    import pickle

    z, p, y = _multiclass(9, n=200)
    m = CalibrationMeter().update(z[:50], y[:50])
    back = pickle.loads(pickle.dumps(m)).update(z[50:], y[50:])
    _check_equal(back.compute(), _one_shot(z, y, 15, "uniform", 1.0, "logits"))
