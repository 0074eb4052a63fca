"""Regression tests of issue 10 for calibration, distill and the torch losses.

Items: 6 (scale equivariance of fit_temperature), 7 (KDLoss double backward), 10 (labels and
tracers under jax.jit), 13 (label messages), 14 (probabilities given as logits), 16 (pandas and
``__array__`` inputs), 17 (TemperatureScaler on one decision-function column).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tempscale.calibration import (
    CalibrationWarning,
    ProbabilitiesAsLogitsWarning,
    brier_score,
    calibration_error,
    fit_temperature,
    nll,
    reliability_curve,
)
from tempscale.distill import kd_loss

scipy = pytest.importorskip("scipy")
from scipy.optimize import brentq  # noqa: E402
from scipy.special import softmax as sp_softmax  # noqa: E402


def ref_fit(z, y, w=None):
    """Independent reference: root of dNLL/dbeta (float64, SciPy's softmax) by Brent's method."""
    z = np.asarray(z, np.float64)
    zy = z[np.arange(len(y)), y]

    def grad(lb):
        p = sp_softmax(math.exp(lb) * z, axis=1)
        return float(np.average(np.sum(p * z, axis=1) - zy, weights=w))

    lo, hi = -5.0, 5.0
    while grad(lo) > 0:
        lo -= 5
    while grad(hi) < 0:
        hi += 5
    return math.exp(-brentq(grad, lo, hi, xtol=1e-15, rtol=1e-15, maxiter=500))


def make_problem(n=300, k=4, *, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    z = 3.0 * (rng.normal(size=(n, k)) + 1.2 * np.eye(k)[y])
    return z, y, rng.random(n)


# ============================================================================================
# item 6: fit(c z) = c fit(z)
# ============================================================================================
#: relative tolerance of fit(c z) = c fit(z) (c z rounded to the dtype; measured worst case over
#: k in [-300, 300]: 1e-13 for float64, 1.2e-8 for float32)
EQUIV_RTOL = {np.float64: 1e-12, np.float32: 1e-6}

_BASE = {}


def _base(dtype, binary):
    key = (dtype, binary)
    if key not in _BASE:
        z, y, w = make_problem(seed=1)
        if binary:
            z, y = z[:, 1] - z[:, 0], (y == 1).astype(int)
        z0 = z.astype(dtype)
        _BASE[key] = (z, y, w, fit_temperature(z0, y, sample_weight=w), fit_temperature(z0, y))
    return _BASE[key]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(-300, 300), dtype=st.sampled_from([np.float64, np.float32]),
       binary=st.booleans(), weighted=st.booleans())
def test_fit_is_scale_equivariant_for_every_finite_scale(k, dtype, binary, weighted):
    z, y, w, T_w, T_1 = _base(dtype, binary)
    c = 10.0 ** k
    with np.errstate(over="ignore", under="ignore"):
        zc = (z * c).astype(dtype)
    fi = np.finfo(dtype)
    nz = np.abs(zc[zc != 0])
    if not np.all(np.isfinite(zc)) or nz.size == 0 or nz.min() < fi.tiny:
        return  # c z overflows, or some logits become subnormal: outside the claim
    T0 = T_w if weighted else T_1
    # filterwarnings=error: no false "every row is constant" warning either
    T = fit_temperature(zc, y, sample_weight=w if weighted else None)
    assert T == pytest.approx(c * T0, rel=EQUIV_RTOL[dtype])


@pytest.mark.parametrize("c", [1e6, 1e20, 1e100, 1e200, 1e307, 1e-100, 1e-170, 1e-250, 1e-300])
def test_fit_scale_examples_match_reference(c):
    z, y, w = make_problem(seed=2)
    T = fit_temperature(c * z, y, sample_weight=w)
    assert T == pytest.approx(c * ref_fit(z, y, w), rel=1e-9)


def test_fit_powers_of_two_are_exact():
    z, y, _ = make_problem(seed=3)
    T = fit_temperature(z, y)
    for j in (-1000, -60, -1, 1, 60, 1000):
        assert fit_temperature(np.ldexp(z, j), y) == math.ldexp(T, j)


def test_fit_rows_whose_span_overflows():
    # the largest finite logits: z - max(z) overflows although every logit is finite
    z, y, _ = make_problem(seed=4)
    c = np.finfo(np.float64).max / np.abs(z).max()
    zc = z * c
    with np.errstate(over="ignore"):
        assert np.all(np.isfinite(zc)) and not np.all(np.isfinite(zc.max(1) - zc.min(1)))
    assert fit_temperature(zc, y) == pytest.approx(c * ref_fit(z, y), rel=1e-9)
    z32 = (z * (np.finfo(np.float32).max / np.abs(z).max())).astype(np.float32)
    c32 = float(z32.astype(np.float64)[0, 0] / z[0, 0])
    assert fit_temperature(z32, y) == pytest.approx(c32 * ref_fit(z, y), rel=1e-6)


@pytest.mark.parametrize("c", [1e-200, 1e-30, 1e30, 1e250])
def test_fit_scale_generic_paths(c):
    # masked (-inf) classes take the generic path; torch too
    z, y, _ = make_problem(seed=5)
    z = z.copy()
    z[y != 3, 3] = -np.inf
    T0 = fit_temperature(z, y)
    assert fit_temperature(c * z, y) == pytest.approx(c * T0, rel=1e-12)
    torch = pytest.importorskip("torch")
    assert fit_temperature(torch.from_numpy(c * z), torch.from_numpy(y)) == pytest.approx(
        c * T0, rel=1e-12)


def test_fit_scale_large_input_subsample_start():
    # n large enough for the subsample start and several chunks
    rng = np.random.default_rng(6)
    n, k = 60_000, 10
    y = rng.integers(0, k, size=n)
    z = (rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]).astype(np.float32)
    T = fit_temperature(z, y)
    for c in (1e-30, 1e30):
        zc = (z.astype(np.float64) * c).astype(np.float32)
        assert fit_temperature(zc, y) == pytest.approx(c * T, rel=1e-6)


def test_scaler_is_scale_equivariant():
    pytest.importorskip("sklearn")
    from tempscale.calibration import TemperatureScaler

    z, y, w = make_problem(seed=7)
    T = TemperatureScaler().fit(z, y, sample_weight=w).temperature_
    for c in (1e-150, 1e8, 1e150):
        s = TemperatureScaler().fit(c * z, y, sample_weight=w)
        assert s.temperature_ == pytest.approx(c * T, rel=1e-12)
        np.testing.assert_allclose(s.predict_proba(c * z), sp_softmax(z / T, axis=1), rtol=1e-9)


def test_constant_rows_still_warned():
    z = np.full((20, 3), 1e300)
    with pytest.warns(CalibrationWarning, match="constant"):
        assert fit_temperature(z, np.arange(20) % 3) == 1.0


# ============================================================================================
# item 13: label messages show the value received
# ============================================================================================
LABEL_CASES = [
    (np.array([0.0, 1e300, 1.0]), ValueError, r"Got 1e\+300 instead"),
    (np.array([0.0, -1e300, 1.0]), ValueError, r"Got -1e\+300 instead"),
    (np.array([0.0, 1.5, 1.0]), TypeError, r"whole numbers\). Got 1.5 instead"),
    (np.array([0.0, np.nan, 1.0]), TypeError, r"Got nan instead"),
    (np.array([0.0, np.inf, 1.0]), TypeError, r"Got inf instead"),
    (np.array([0, -1, 1]), ValueError, r"\[0, 2\]. Got -1 instead"),
    (np.array([0, 3, 1]), ValueError, r"\[0, 2\]. Got 3 instead"),
    (np.array([0, 2**64 - 1, 1], dtype=np.uint64), ValueError, r"Got 18446744073709551615 instead"),
    (np.array([0.0, 3.0, 1.0]), ValueError, r"Got 3.0 instead"),
    (np.array(["a", "b", "c"]), TypeError, r"integer class indices"),
]

METRIC_FUNCS = {
    "fit_temperature": lambda z, p, y: fit_temperature(z, y),
    "calibration_error": lambda z, p, y: calibration_error(p, y),
    "calibration_error(from_logits)": lambda z, p, y: calibration_error(z, y, from_logits=True),
    "reliability_curve": lambda z, p, y: reliability_curve(p, y),
    "brier_score": lambda z, p, y: brier_score(p, y),
    "nll": lambda z, p, y: nll(p, y),
    "nll(from_logits)": lambda z, p, y: nll(z, y, from_logits=True),
}


@pytest.mark.parametrize("labels,exc,match", LABEL_CASES)
@pytest.mark.parametrize("func", sorted(METRIC_FUNCS))
def test_label_messages_show_the_value_received(func, labels, exc, match):
    z = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [0.3, 2.0, 0.0]])
    p = sp_softmax(z, axis=1)
    with pytest.raises(exc, match="'labels' parameter of " + func.split("(")[0] + ".*" + match):
        METRIC_FUNCS[func](z, p, labels)


def test_bool_labels_are_classes_0_and_1():
    z, y, _ = make_problem(k=2, seed=8)
    assert fit_temperature(z, y.astype(bool)) == fit_temperature(z, y)
    p = sp_softmax(z, axis=1)
    assert nll(p, y.astype(bool)) == nll(p, y)


def test_kd_loss_label_messages():
    s = np.zeros((3, 4))
    with pytest.raises(IndexError, match=r"Got 4 instead"):
        kd_loss(s, s, labels=np.array([0, 4, 1]))
    with pytest.raises(IndexError, match=r"Got -5 instead"):
        kd_loss(s, s, labels=np.array([0, -5, 1]))
    with pytest.raises(TypeError, match="'labels' parameter of kd_loss.*dtype float64"):
        kd_loss(s, s, labels=np.array([0.0, 1e300, 1.0]))
    with pytest.raises(TypeError, match="'labels' parameter of kd_loss.*dtype bool"):
        kd_loss(s, s, labels=np.array([True, False, True]))


# ============================================================================================
# item 14: probabilities given as logits
# ============================================================================================
def _probs(n=50, k=3, seed=9):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    return sp_softmax(rng.normal(size=(n, k)) + 2 * np.eye(k)[y], axis=1), y


@pytest.mark.parametrize("func", ["fit_temperature", "TemperatureScaler.fit", "calibration_error",
                                  "reliability_curve", "brier_score", "nll"])
def test_probabilities_as_logits_warn(func):
    p, y = _probs()
    calls = {
        "fit_temperature": lambda a: fit_temperature(a, y),
        "calibration_error": lambda a: calibration_error(a, y, from_logits=True),
        "reliability_curve": lambda a: reliability_curve(a, y, from_logits=True),
        "brier_score": lambda a: brier_score(a, y, from_logits=True),
        "nll": lambda a: nll(a, y, from_logits=True),
    }
    if func == "TemperatureScaler.fit":
        pytest.importorskip("sklearn")
        from tempscale.calibration import TemperatureScaler

        calls[func] = lambda a: TemperatureScaler().fit(a, y)
    assert issubclass(ProbabilitiesAsLogitsWarning, UserWarning)
    with pytest.warns(ProbabilitiesAsLogitsWarning, match=f"{func}:.*temper.*log") as rec:
        calls[func](p)
    assert rec[0].filename == __file__          # points at the caller
    # rounded probabilities (a CSV with 3 decimals) too; float32 too
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        calls[func](np.round(p, 3))
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        calls[func](p.astype(np.float32))
    # no warning for logits, log-probabilities, or one binary column
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calls[func](np.log(p))
        calls[func](np.log(p) + 1.0)


def test_probabilities_warning_other_backends_and_large():
    p, y = _probs(n=5000, seed=10)
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        fit_temperature(p, y)
    torch = pytest.importorskip("torch")
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        fit_temperature(torch.from_numpy(p), torch.from_numpy(y))
    # a single logit row that is not a probability vector anywhere in the array: no warning
    q = p.copy()
    q[-1] = [0.5, 0.6, 0.7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_temperature(q, y)
        calibration_error(p, y)             # probabilities where probabilities are expected


def test_probabilities_check_is_exported():
    import tempscale.calibration as C

    assert "ProbabilitiesAsLogitsWarning" in C.__all__


# ============================================================================================
# item 16: pandas and any __array__ object, as NumPy
# ============================================================================================
class ArrayLike:
    """Not an array of any library, but convertible with np.asarray."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def _wrappers():
    out = {"__array__": (ArrayLike, ArrayLike)}
    try:
        import pandas as pd

        out["pandas"] = (pd.DataFrame, pd.Series)
    except ImportError:  # pragma: no cover
        pass
    return out


@pytest.mark.parametrize("kind", sorted(_wrappers()))
def test_foreign_arrays_accepted_as_numpy(kind):
    frame, series = _wrappers()[kind]
    z, y, w = make_problem(seed=11)
    p = sp_softmax(z, axis=1)
    Z, P, Y, W = frame(z), frame(p), series(y), series(w)
    assert fit_temperature(Z, Y, sample_weight=W) == fit_temperature(z, y, sample_weight=w)
    assert fit_temperature(series(z[:, 1] - z[:, 0]), series((y == 1).astype(int))) == \
        fit_temperature(z[:, 1] - z[:, 0], (y == 1).astype(int))
    Ta = fit_temperature(Z, Y, as_array=True)
    assert isinstance(Ta, np.ndarray) and float(Ta) == fit_temperature(z, y)
    assert calibration_error(P, Y, sample_weight=W) == calibration_error(p, y, sample_weight=w)
    assert calibration_error(Z, Y, from_logits=True) == calibration_error(z, y, from_logits=True)
    np.testing.assert_array_equal(reliability_curve(P, Y).counts, reliability_curve(p, y).counts)
    assert brier_score(P, Y, sample_weight=W) == brier_score(p, y, sample_weight=w)
    assert nll(P, Y, sample_weight=W) == nll(p, y, sample_weight=w)
    assert nll(Z, Y, from_logits=True, sample_weight=W) == nll(z, y, from_logits=True,
                                                               sample_weight=w)
    t = z[::-1].copy()
    assert float(kd_loss(Z, frame(t), 2.0, labels=Y)) == float(kd_loss(z, t, 2.0, labels=y))
    pytest.importorskip("sklearn")
    from tempscale.calibration import TemperatureScaler

    s = TemperatureScaler().fit(Z, Y, sample_weight=W)
    assert s.temperature_ == fit_temperature(z, y, sample_weight=w)
    assert s.score(Z, Y, sample_weight=W) == s.score(z, y, sample_weight=w)


# ============================================================================================
# item 17: TemperatureScaler on one decision-function column
# ============================================================================================
def test_scaler_accepts_1d_decision_function():
    pytest.importorskip("sklearn")
    from tempscale.calibration import TemperatureScaler

    z, y, w = make_problem(k=2, seed=12)
    d = z[:, 1] - z[:, 0]
    T = fit_temperature(d, y)
    for X in (d, d[:, None], list(d)):
        s = TemperatureScaler().fit(X, y)
        assert s.temperature_ == T
        assert s.n_features_in_ == 1
        p1 = 1.0 / (1.0 + np.exp(-d / T))
        np.testing.assert_allclose(s.predict_proba(X), np.stack([1 - p1, p1], axis=1), rtol=1e-12)
        np.testing.assert_allclose(s.transform(X), np.log(np.stack([1 - p1, p1], axis=1)),
                                   rtol=1e-10)
        np.testing.assert_array_equal(s.predict(X), (d > 0).astype(int))
        nll_ref = -np.mean(np.where(y == 1, np.log(p1), np.log(1 - p1)))
        assert s.score(X, y) == pytest.approx(-nll_ref, rel=1e-12)
    # string labels with a 1-D column
    names = np.array(["no", "yes"])
    s = TemperatureScaler().fit(d, names[y])
    assert s.temperature_ == T and list(s.predict(d[:3])) == list(names[(d[:3] > 0).astype(int)])
    with pytest.raises(ValueError, match="one column for 2 classes"):
        TemperatureScaler().fit(d, np.arange(len(d)) % 3)


def test_scaler_in_pipeline_after_binary_decision_function():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from tempscale.calibration import TemperatureScaler

    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xval, ytr, yval = train_test_split(X, y, test_size=0.5, random_state=0)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=100.0, max_iter=2000)).fit(Xtr, ytr)
    assert clf.decision_function(Xval).ndim == 1
    pipe = make_pipeline(FunctionTransformer(clf.decision_function), TemperatureScaler())
    pipe.fit(Xval, yval)
    d = clf.decision_function(Xval)
    T = pipe[-1].temperature_
    assert T == pytest.approx(ref_fit(np.stack([np.zeros_like(d), d], axis=1), yval), rel=1e-8)
    assert pipe.predict_proba(Xval).shape == (len(yval), 2)
    np.testing.assert_array_equal(pipe.predict(Xval), clf.predict(Xval))
    assert pipe.score(Xval, yval) < 0
    # scikit-learn's own temperature calibration (>= 1.8) gives the same probabilities
    calib = pytest.importorskip("sklearn.calibration")
    frozen = pytest.importorskip("sklearn.frozen")
    try:
        cc = calib.CalibratedClassifierCV(frozen.FrozenEstimator(clf), method="temperature")
        cc.fit(Xval, yval)
    except ValueError as exc:  # pragma: no cover - scikit-learn without method="temperature"
        pytest.skip(f"no temperature method in this scikit-learn: {exc}")
    np.testing.assert_allclose(pipe.predict_proba(Xtr), cc.predict_proba(Xtr), rtol=1e-6,
                               atol=1e-9)


# ============================================================================================
# item 10: labels and tracers under jax.jit, NumPy teachers with JAX/torch students
# ============================================================================================
def _kd_inputs(seed=13, n=5, k=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)), rng.normal(size=(n, k))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.0])
def test_jit_kd_loss_out_of_range_labels_are_nan_not_another_class(alpha):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    s, t = _kd_inputs()
    labels = np.array([0, -5, 4, -100, 2])            # -5 and 4 are out of range (4 classes)
    f = jax.jit(lambda a, b, y: kd_loss(a, b, 2.0, labels=y, alpha=alpha, reduction="none"))
    rows = np.asarray(f(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels)))
    assert np.isnan(rows[1]) and np.isnan(rows[2])
    assert rows[3] == 0.0                             # ignore_index: left out, as eagerly
    ok = np.array([0, 3, 2])
    eager = kd_loss(s[[0, 3, 4]], t[[0, 3, 4]], 2.0, labels=np.array([0, -100, 2]), alpha=alpha,
                    reduction="none")
    np.testing.assert_allclose(rows[[0, 3, 4]], eager, rtol=1e-5)
    assert ok.size == 3
    g = jax.jit(lambda a, b, y: kd_loss(a, b, 2.0, labels=y, alpha=alpha))
    assert np.isnan(float(g(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels))))
    # in-range labels under jit: the eager value
    good = np.array([0, 1, 3, -100, 2])
    assert float(g(jnp.asarray(s), jnp.asarray(t), jnp.asarray(good))) == pytest.approx(
        float(kd_loss(s, t, 2.0, labels=good, alpha=alpha)), rel=1e-5)
    # eagerly the same labels raise
    with pytest.raises(IndexError, match="Got -5 instead"):
        kd_loss(s, t, 2.0, labels=labels, alpha=alpha)


def test_jax_grad_and_jit_with_numpy_teacher():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    s, t = _kd_inputs(seed=14)
    s32 = jnp.asarray(s, dtype=jnp.float32)
    t32 = jnp.asarray(t, dtype=jnp.float32)
    ref = jax.grad(lambda a: kd_loss(a, t32, 2.0))(s32)
    got = jax.grad(lambda a: kd_loss(a, t, 2.0))(s32)       # NumPy float64 teacher
    assert got.dtype == s32.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6)
    v = jax.jit(lambda a: kd_loss(a, t, 2.0, labels=jnp.array([0, 1, 2, 3, 0]), alpha=0.3))(s32)
    assert float(v) == pytest.approx(float(kd_loss(s, t, 2.0, labels=np.array([0, 1, 2, 3, 0]),
                                                   alpha=0.3)), rel=1e-5)
    # independent reference of the soft gradient: T (q - p) / n
    q, p = sp_softmax(s / 2.0, axis=1), sp_softmax(t / 2.0, axis=1)
    np.testing.assert_allclose(np.asarray(got), 2.0 * (q - p) / len(s), rtol=1e-5, atol=1e-7)


def test_torch_student_with_numpy_teacher():
    torch = pytest.importorskip("torch")
    from tempscale.torch import KDLoss

    s, t = _kd_inputs(seed=15)
    st_ = torch.tensor(s, dtype=torch.float32, requires_grad=True)
    for loss_fn in (lambda a, b: kd_loss(a, b, 2.0), lambda a, b: KDLoss(2.0)(a, b)):
        out = loss_fn(st_, t)
        assert out.dtype == torch.float32
        ref = loss_fn(st_, torch.tensor(t, dtype=torch.float32))
        assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    pd = pytest.importorskip("pandas")
    assert KDLoss(2.0)(st_, pd.DataFrame(t)).item() == pytest.approx(
        float(kd_loss(s, t, 2.0)), rel=1e-6)


def test_two_libraries_refused_clearly():
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    s, t = _kd_inputs(seed=16)
    with pytest.raises(TypeError, match="'teacher_logits' parameter of kd_loss.*student's library"):
        kd_loss(torch.tensor(s), jax.numpy.asarray(t))


@pytest.mark.parametrize("name", ["fit_temperature", "calibration_error", "reliability_curve",
                                  "brier_score", "nll", "nll(from_logits)"])
def test_calibration_under_jit_says_what_to_do(name):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    z, y, _ = make_problem(n=20, k=3, seed=17)
    p = sp_softmax(z, axis=1)
    funcs = {
        "fit_temperature": lambda a, b: fit_temperature(a, b),
        "calibration_error": lambda a, b: calibration_error(a, b),
        "reliability_curve": lambda a, b: reliability_curve(a, b),
        "brier_score": lambda a, b: brier_score(a, b),
        "nll": lambda a, b: nll(a, b),
        "nll(from_logits)": lambda a, b: nll(a, b, from_logits=True),
    }
    fname = name.split("(")[0]
    a = np.log(p) if name in ("fit_temperature", "nll(from_logits)") else p
    with pytest.raises(TypeError, match=f"of {fname} must be a concrete array.*outside jax.jit"):
        jax.jit(funcs[name])(jnp.asarray(a), jnp.asarray(y))
    # traced labels only (the array is concrete) are refused the same way
    with pytest.raises(TypeError, match=f"'labels' parameter of {fname} must be a concrete"):
        jax.jit(lambda b: funcs[name](a, b))(jnp.asarray(y))
    # and outside jit, JAX arrays work
    funcs[name](jnp.asarray(a), jnp.asarray(y))


# ============================================================================================
# item 7: KDLoss second-order gradients
# ============================================================================================
torch = pytest.importorskip("torch")
from tempscale.torch import KDLoss, fused_kd_loss  # noqa: E402

KD_CASES = {
    "forward": dict(),
    "reverse+labels": dict(divergence="reverse", labels=[0, 1, -100, 3, 4, 2], alpha=0.3),
    "jsd+sum": dict(divergence="jsd", beta=0.3, reduction="sum"),
    "none+mask": dict(reduction="none", mask=[True, False, True, True, True, True]),
    "row T": dict(temperature=[1.0, 2.0, 0.5, 3.0, 1.5, 1.0]),
    "teacher T=0": dict(teacher_temperature=0.0, labels=[0, 1, 2, 3, 4, 0], alpha=0.6),
    "masked class": dict(t2_scale=False),
}


def _kd_kwargs(case):
    kw = dict(KD_CASES[case])
    T = kw.pop("temperature", 2.0)
    if isinstance(T, list):
        T = torch.tensor(T, dtype=torch.float64)
    for key in ("labels", "mask"):
        if key in kw:
            kw[key] = torch.tensor(kw[key])
    return T, kw


def _kd_tensors(case, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.randn(6, 5, generator=g, dtype=torch.float64)
    if case == "masked class":
        s[:, 4] = -math.inf
        t[:, 4] = -math.inf
        s[0, 3] = -math.inf
        t[0, 3] = -math.inf
    return s.requires_grad_(True), t


@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("case", sorted(KD_CASES))
def test_kdloss_gradgradcheck(case, inplace):
    s, t = _kd_tensors(case)
    T, kw = _kd_kwargs(case)
    if case == "masked class":
        # gradgradcheck perturbs every entry, -inf ones too; check the finite block instead
        def f(x):
            full = torch.cat([x, torch.full((6, 1), -math.inf, dtype=x.dtype)], dim=1)
            return fused_kd_loss(full, t, T, inplace_backward=inplace, **kw)
        x = s.detach()[:, :4].clone()
        x[0, 3] = 0.0
        t = t.clone()
        t[0, 3] = 0.0
        assert torch.autograd.gradgradcheck(f, (x.requires_grad_(True),))
        return
    assert torch.autograd.gradgradcheck(
        lambda x: fused_kd_loss(x, t, T, inplace_backward=inplace, **kw), (s,))


@pytest.mark.parametrize("case", sorted(KD_CASES))
def test_gradient_penalty_equals_kd_loss(case):
    s, t = _kd_tensors(case, seed=1)
    T, kw = _kd_kwargs(case)
    results = []
    for fn in (lambda x: KDLoss(T, **{k: v for k, v in kw.items()
                                      if k not in ("labels", "mask", "alpha")},
                                alpha=kw.get("alpha"))(x, t, kw.get("labels"), mask=kw.get("mask")),
               lambda x: kd_loss(x, t, T, **kw)):
        x = s.detach().clone().requires_grad_(True)
        loss = fn(x)
        if loss.ndim:
            loss = (loss * torch.arange(1, 7, dtype=loss.dtype)).sum()
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        assert g.grad_fn is not None
        g = torch.where(torch.isfinite(x), g, torch.zeros_like(g))
        penalty = loss + 0.5 * (g ** 2).sum()
        penalty.backward()
        results.append((penalty.detach().item(), x.grad.clone()))
    (p1, g1), (p2, g2) = results
    assert p1 == pytest.approx(p2, rel=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
    # the penalty's second-order part (Hessian times gradient) is really there: without it
    # (what a gradient with no grad_fn gave) the result differs
    x = s.detach().clone().requires_grad_(True)
    loss = kd_loss(x, t, T, **kw)
    if loss.ndim:
        loss = (loss * torch.arange(1, 7, dtype=loss.dtype)).sum()
    (first,) = torch.autograd.grad(loss, x)
    first = torch.where(torch.isfinite(x), first, torch.zeros_like(first))
    assert float((g1 - first).abs().max()) > 1e-6


def test_maml_inner_step_equals_kd_loss():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(16, 8, generator=g, dtype=torch.float64)
    teacher = torch.randn(16, 10, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (16,), generator=g)
    W0 = torch.randn(8, 10, generator=g, dtype=torch.float64)
    outs = []
    for fn in (lambda z: KDLoss(3.0, alpha=0.8)(z, teacher, labels),
               lambda z: kd_loss(z, teacher, 3.0, labels=labels, alpha=0.8)):
        W = W0.clone().requires_grad_(True)
        (gW,) = torch.autograd.grad(fn(X @ W), W, create_graph=True)
        W1 = W - 0.5 * gW                                   # inner step, kept differentiable
        outer = fn(X @ W1)
        (meta,) = torch.autograd.grad(outer, W)
        outs.append(meta)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    # first-order MAML (dropping the Hessian term) differs: the second order matters here
    W = W0.clone().requires_grad_(True)
    (gW,) = torch.autograd.grad(kd_loss(X @ W, teacher, 3.0, labels=labels, alpha=0.8), W)
    W1 = (W0 - 0.5 * gW).requires_grad_(True)
    (fo,) = torch.autograd.grad(kd_loss(X @ W1, teacher, 3.0, labels=labels, alpha=0.8), W1)
    assert float((fo - outs[1]).abs().max()) > 1e-3


def test_kdloss_first_order_path_unchanged():
    s, t = _kd_tensors("forward", seed=4)
    loss = KDLoss(2.0)(s, t)
    loss.backward()
    q, p = torch.softmax(s.detach() / 2, -1), torch.softmax(t / 2, -1)
    torch.testing.assert_close(s.grad, 2.0 * (q - p) / 6, rtol=1e-12, atol=1e-14)
