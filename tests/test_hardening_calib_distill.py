"""Regression tests of issue 10 for calibration.

Items: 6 (scale equivariance of fit_temperature), 10 (calibration under jax.jit), 13 (label
messages), 14 (probabilities given as logits), 16 (pandas and ``__array__`` inputs), 17
(TemperatureScaler on one decision-function column).  The distill and torch-loss tests (items 7,
10 and 13 for kd_loss/KDLoss) are in tests/test_distill_hardening.py.
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
    "calibration_error(from_logits)": lambda z, p, y: calibration_error(z, y, input="logits"),
    "reliability_curve": lambda z, p, y: reliability_curve(p, y),
    "brier_score": lambda z, p, y: brier_score(p, y),
    "nll": lambda z, p, y: nll(p, y),
    "nll(from_logits)": lambda z, p, y: nll(z, y, input="logits"),
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
        "calibration_error": lambda a: calibration_error(a, y, input="logits"),
        "reliability_curve": lambda a: reliability_curve(a, y, input="logits"),
        "brier_score": lambda a: brier_score(a, y, input="logits"),
        "nll": lambda a: nll(a, y, input="logits"),
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
    assert calibration_error(Z, Y, input="logits") == calibration_error(z, y, input="logits")
    np.testing.assert_array_equal(reliability_curve(P, Y).counts, reliability_curve(p, y).counts)
    assert brier_score(P, Y, sample_weight=W) == brier_score(p, y, sample_weight=w)
    assert nll(P, Y, sample_weight=W) == nll(p, y, sample_weight=w)
    assert nll(Z, Y, input="logits", sample_weight=W) == nll(z, y, input="logits",
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
# item 10: calibration under jax.jit (the kd_loss parts are in tests/test_distill_hardening.py)
# ============================================================================================
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
        "nll(from_logits)": lambda a, b: nll(a, b, input="logits"),
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
