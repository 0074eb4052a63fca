"""VectorScaler, MatrixScaler and DirichletScaler: the optimum against SciPy's general-purpose
minimiser and scikit-learn's LogisticRegression (written independently here), identity and
nesting properties, labels, the binary one-column form, wrapping a fitted classifier, and the
scikit-learn estimator contract."""

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
scipy_optimize = pytest.importorskip("scipy.optimize")
scipy_special = pytest.importorskip("scipy.special")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import tempscale._scalers as scalers_mod  # noqa: E402
from tempscale.sklearn import (  # noqa: E402
    DirichletScaler,
    MatrixScaler,
    TemperatureScaler,
    VectorScaler,
)

SCALERS = [VectorScaler, MatrixScaler, DirichletScaler]


def make_problem(n, k, seed, scale=1.0, bias=0.0):
    """Logits whose softmax is the true posterior (calibrated), then scaled and shifted."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    z = 1.2 * (rng.normal(size=(n, k)) + 1.2 * np.eye(k)[y])
    return scale * z + bias, y


# ---- an independent reference: the objective written out and minimised by SciPy ------------
def _ref_inputs(kind, z):
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = np.column_stack([np.zeros_like(z), z])
    if kind == "dirichlet":
        z = scipy_special.log_softmax(z, axis=1)
    return z


def _ref_logits(kind, x, theta):
    n, k = x.shape
    if kind == "vector":
        s, b = theta[:k], theta[k:]
        return x * s + b
    W = theta[: k * k].reshape(k, k)
    b = theta[k * k:]
    return x @ W.T + b


def _ref_objective(kind, x, y, w, theta, lam=0.0, mu=0.0):
    n, k = x.shape
    u = _ref_logits(kind, x, theta)
    lp = scipy_special.log_softmax(u, axis=1)[np.arange(n), y]
    w = np.ones(n) if w is None else w
    f = -np.sum(w * lp) / np.sum(w)
    if kind != "vector":
        W = theta[: k * k].reshape(k, k)
        f += lam / (k * (k - 1)) * np.sum((W - np.diag(np.diag(W))) ** 2)
        f += mu / k * np.sum(theta[k * k:] ** 2)
    return f


def _ref_gradient(kind, x, y, w, theta, lam=0.0, mu=0.0):
    n, k = x.shape
    w = np.ones(n) if w is None else w
    r = scipy_special.softmax(_ref_logits(kind, x, theta), axis=1)
    r[np.arange(n), y] -= 1.0
    r *= (w / w.sum())[:, None]
    if kind == "vector":
        return np.concatenate([np.sum(r * x, axis=0), np.sum(r, axis=0)])
    gW = r.T @ x
    W = theta[: k * k].reshape(k, k)
    gW += 2 * lam / (k * (k - 1)) * (W - np.diag(np.diag(W)))
    gb = r.sum(axis=0) + 2 * mu / k * theta[k * k:]
    return np.concatenate([gW.ravel(), gb])


def _ref_fit(kind, z, y, w=None, lam=0.0, mu=0.0):
    x = _ref_inputs(kind, z)
    k = x.shape[1]
    theta0 = (np.concatenate([np.ones(k), np.zeros(k)]) if kind == "vector"
              else np.concatenate([np.eye(k).ravel(), np.zeros(k)]))
    res = scipy_optimize.minimize(
        lambda t: _ref_objective(kind, x, y, w, t, lam, mu), theta0,
        jac=lambda t: _ref_gradient(kind, x, y, w, t, lam, mu),
        method="BFGS", options={"gtol": 1e-11, "maxiter": 5000})
    return res.x, float(res.fun), x


def _canonical(kind, theta, k, lam, mu):
    """Fix the directions the softmax ignores (as the estimators document)."""
    t = theta.copy()
    if kind == "vector":
        t[k:] -= t[k:].mean()
        return t
    W = t[: k * k].reshape(k, k)
    if lam == 0:  # each column's off-diagonal entries of mean zero
        W = W - (W.sum(axis=0) - np.diag(W)) / (k - 1)
    b = t[k * k:]
    if mu == 0:
        b = b - b.mean()
    return np.concatenate([W.ravel(), b])


def _params(est):
    return np.concatenate([np.ravel(est.coef_), est.intercept_])


CASES = [
    ("vector", VectorScaler, {}, 0.0, 0.0),
    ("matrix", MatrixScaler, {}, 0.0, 0.0),
    ("matrix", MatrixScaler, {"reg_lambda": 0.3}, 0.3, 0.3),
    ("dirichlet", DirichletScaler, {}, 0.0, 0.0),
    ("dirichlet", DirichletScaler, {"reg_lambda": 0.05}, 0.05, 0.05),
    ("dirichlet", DirichletScaler, {"reg_lambda": 0.05, "reg_mu": 0.0}, 0.05, 0.0),
    ("dirichlet", DirichletScaler, {"reg_lambda": 0.0, "reg_mu": 0.2}, 0.0, 0.2),
]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("kind", "cls", "kw", "lam", "mu"), CASES)
def test_optimum_matches_scipy(kind, cls, kw, lam, mu, weighted):
    z, y = make_problem(600, 4, seed=1, scale=2.5, bias=[0.5, 0.0, -0.3, 0.2])
    w = np.random.default_rng(2).uniform(0.2, 3.0, size=len(y)) if weighted else None
    est = cls(**kw).fit(z, y, sample_weight=w)
    theta, f_ref, x = _ref_fit(kind, z, y, w, lam, mu)
    k = x.shape[1]
    # the same objective, evaluated independently at our parameters
    f_ours = _ref_objective(kind, x, y, w, _params(est), lam, mu)
    assert est.loss_ == pytest.approx(f_ours, rel=1e-13)
    assert f_ours <= f_ref * (1 + 1e-12)                   # never worse than SciPy's optimum
    assert f_ours == pytest.approx(f_ref, rel=1e-8)
    np.testing.assert_allclose(_params(est), _canonical(kind, theta, k, lam, mu), atol=1e-6)
    p_ref = scipy_special.softmax(_ref_logits(kind, x, theta), axis=1)
    np.testing.assert_allclose(est.predict_proba(z), p_ref, atol=1e-6)
    # the gradient vanishes at our parameters (of the canonical representative too)
    g = _ref_gradient(kind, x, y, w, _params(est), lam, mu)
    assert np.abs(g).max() < 1e-9


@pytest.mark.parametrize(("cls", "log_inputs"), [(MatrixScaler, False), (DirichletScaler, True)])
def test_unpenalised_matrix_equals_multinomial_logistic_regression(cls, log_inputs):
    z, y = make_problem(1500, 3, seed=3, scale=3.0)
    est = cls(tol=1e-14).fit(z, y)
    feats = scipy_special.log_softmax(z, axis=1) if log_inputs else z
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(feats, y)
    np.testing.assert_allclose(est.predict_proba(z), lr.predict_proba(feats), atol=1e-6)
    assert est.score(z, y) >= np.mean(np.log(lr.predict_proba(feats)[np.arange(len(y)), y])) - 1e-12


def test_vector_scaler_equals_platt_scaling_on_one_column():
    """Binary one-column logits: vector scaling is Platt's sigmoid(a z + b)."""
    z, y = make_problem(800, 2, seed=4, scale=2.0, bias=[0.0, 0.7])
    d = z[:, 1] - z[:, 0]
    est = VectorScaler().fit(d, y)
    assert est.n_features_in_ == 1 and est.coef_.shape == (2,)
    lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(d[:, None], y)
    np.testing.assert_allclose(est.predict_proba(d), lr.predict_proba(d[:, None]), atol=1e-7)
    np.testing.assert_allclose(est.predict_proba(d[:, None]), est.predict_proba(d), rtol=1e-14)


@pytest.mark.parametrize("cls", SCALERS)
def test_binary_one_column_matches_two_columns(cls):
    z, y = make_problem(500, 2, seed=5, scale=1.7)
    d = z[:, 1] - z[:, 0]
    one = cls().fit(d, y)
    two = cls().fit(np.column_stack([np.zeros_like(d), d]), y)
    np.testing.assert_allclose(one.predict_proba(d), two.predict_proba(
        np.column_stack([np.zeros_like(d), d])), atol=1e-10)
    assert set(one.predict(d)) <= {0, 1}


@pytest.mark.parametrize("cls", SCALERS)
def test_calibrated_data_stays_near_the_identity(cls):
    z, y = make_problem(30000, 3, seed=6)
    est = cls().fit(z, y)
    if cls is VectorScaler:
        np.testing.assert_allclose(est.coef_, 1.0, atol=0.05)
    else:
        # the softmax of the logits is the true posterior; log_softmax differs from z by a
        # per-row constant, which the canonical matrix does not see either
        np.testing.assert_allclose(est.coef_, np.eye(3), atol=0.05)
    if cls is not DirichletScaler:  # on log-probabilities the bias trades off with the matrix
        np.testing.assert_allclose(est.intercept_, 0.0, atol=0.05)
    np.testing.assert_allclose(est.predict_proba(z), scipy_special.softmax(z, axis=1), atol=0.06)


@pytest.mark.parametrize("cls", [VectorScaler, MatrixScaler, DirichletScaler])
def test_over_confident_logits_are_flattened_by_about_the_temperature(cls):
    z, y = make_problem(30000, 4, seed=7, scale=3.0)
    est = cls().fit(z, y)
    ts = TemperatureScaler().fit(z, y)
    assert ts.temperature_ == pytest.approx(3.0, rel=0.05)
    diag = est.coef_ if cls is VectorScaler else np.diag(est.coef_)
    np.testing.assert_allclose(diag, 1 / 3.0, atol=0.03)


def test_nested_models_order_their_losses():
    """Temperature ⊂ vector ⊂ matrix on the same logits: each optimum is at least as good."""
    z, y = make_problem(700, 5, seed=8, scale=2.0, bias=[0.3, -0.2, 0.0, 0.4, -0.1])
    nll_t = -TemperatureScaler().fit(z, y).score(z, y)
    v = VectorScaler().fit(z, y)
    m = MatrixScaler().fit(z, y)
    assert v.loss_ <= nll_t + 1e-12 and m.loss_ <= v.loss_ + 1e-12
    assert -v.score(z, y) == pytest.approx(v.loss_, rel=1e-12)


def test_identity_penalty_limits():
    """A huge ODIR penalty leaves only the diagonal (no off-diagonal, no bias)."""
    z, y = make_problem(600, 3, seed=9, scale=2.0)
    est = DirichletScaler(reg_lambda=1e8).fit(z, y)
    off = est.coef_ - np.diag(np.diag(est.coef_))
    assert np.abs(off).max() < 1e-6 and np.abs(est.intercept_).max() < 1e-6
    assert np.all(np.diag(est.coef_) > 0.2)


@pytest.mark.parametrize("cls", [MatrixScaler, DirichletScaler])
def test_conjugate_gradient_path_equals_the_dense_path(cls, monkeypatch):
    z, y = make_problem(400, 4, seed=10, scale=2.0)
    dense = cls(reg_lambda=0.01).fit(z, y)
    calls = []
    hessp = scalers_mod._Problem.hessp

    def spy(self, coef, v):
        calls.append(1)
        return hessp(self, coef, v)

    monkeypatch.setattr(scalers_mod, "DENSE_MAX", 0)
    monkeypatch.setattr(scalers_mod._Problem, "hessp", spy)
    cg = cls(reg_lambda=0.01).fit(z, y)
    assert calls  # the conjugate-gradient path ran
    assert cg.loss_ == pytest.approx(dense.loss_, rel=1e-12)
    np.testing.assert_allclose(cg.coef_, dense.coef_, atol=1e-7)


@pytest.mark.parametrize("cls", SCALERS)
def test_string_labels_sample_weight_dtypes_and_scale(cls):
    z, y = make_problem(400, 3, seed=11, scale=2.0)
    names = np.array(["cat", "dog", "eel"])
    est = cls().fit(z, names[y])
    np.testing.assert_array_equal(est.classes_, names)
    assert set(est.predict(z)) <= set(names)
    ref = cls().fit(z, y)
    np.testing.assert_allclose(est.predict_proba(z), ref.predict_proba(z), rtol=1e-12)
    # float32 logits: float64 inside, float64 out
    p32 = cls().fit(z.astype(np.float32), y).predict_proba(z.astype(np.float32))
    assert p32.dtype == np.float64
    # integer weights equal repeated rows
    w = np.random.default_rng(0).integers(1, 3, size=len(y))
    rep = cls().fit(np.repeat(z, w, axis=0), np.repeat(y, w))
    wtd = cls().fit(z, y, sample_weight=w)
    np.testing.assert_allclose(wtd.predict_proba(z), rep.predict_proba(z), atol=1e-9)
    assert wtd.score(z, y, sample_weight=w) == pytest.approx(
        -np.average(-np.log(wtd.predict_proba(z)[np.arange(len(y)), y]), weights=w), rel=1e-12)


def test_scale_equivariance_of_vector_scaling():
    z, y = make_problem(500, 3, seed=12)
    a = VectorScaler().fit(z, y)
    b = VectorScaler().fit(8.0 * z, y)
    np.testing.assert_allclose(b.coef_ * 8.0, a.coef_, rtol=1e-8)
    np.testing.assert_allclose(b.predict_proba(8.0 * z), a.predict_proba(z), atol=1e-10)


@pytest.mark.parametrize("cls", SCALERS)
def test_wrapping_a_fitted_classifier(cls):
    X, y = load_iris(return_X_y=True)
    X_tr, X_cal, y_tr, y_cal = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    clf = LogisticRegression(max_iter=5000).fit(X_tr, y_tr)
    wrapped = cls(estimator=clf, reg_lambda=0.1) if cls is not VectorScaler else cls(clf)
    wrapped.fit(X_cal, y_cal)
    on_logits = clone(wrapped).set_params(estimator=None).fit(clf.decision_function(X_cal), y_cal)
    np.testing.assert_allclose(wrapped.predict_proba(X), on_logits.predict_proba(
        clf.decision_function(X)), rtol=1e-12)
    assert wrapped.n_features_in_ == 4 and on_logits.n_features_in_ == 3
    np.testing.assert_array_equal(wrapped.classes_, clf.classes_)
    params = wrapped.get_params()
    assert params["estimator"] is clf and "estimator__C" in params
    back = pickle.loads(pickle.dumps(wrapped))
    np.testing.assert_array_equal(back.predict_proba(X), wrapped.predict_proba(X))


def test_params_clone_and_grid_search():
    z, y = make_problem(600, 3, seed=13, scale=2.5)
    est = DirichletScaler(reg_lambda=0.1, reg_mu=0.01, tol=1e-10, max_iter=50)
    assert est.get_params() == {"estimator": None, "reg_lambda": 0.1, "reg_mu": 0.01,
                                "tol": 1e-10, "max_iter": 50}
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "coef_")
    est.set_params(reg_lambda=0.2)
    assert est.reg_lambda == 0.2
    gs = GridSearchCV(DirichletScaler(), {"reg_lambda": [1e-3, 1e-1, 10.0]}, cv=3).fit(z, y)
    assert gs.best_params_["reg_lambda"] in (1e-3, 1e-1, 10.0)
    assert VectorScaler().get_params() == {"estimator": None, "tol": 1e-12, "max_iter": 100}


@pytest.mark.parametrize(("kw", "match", "exc"), [
    ({"reg_lambda": -1.0}, r"The 'reg_lambda' parameter of DirichletScaler.fit must be a float "
                           r"in \[0, inf\)\. Got -1.0 instead", ValueError),
    ({"reg_mu": float("nan")}, "'reg_mu' parameter of DirichletScaler.fit", ValueError),
    ({"reg_lambda": "big"}, "'reg_lambda' parameter", TypeError),
    ({"tol": 0.0}, "'tol' parameter of DirichletScaler.fit", ValueError),
    ({"max_iter": 0}, "'max_iter' parameter of DirichletScaler.fit", ValueError),
    ({"max_iter": 2.5}, "'max_iter' parameter", TypeError),
])
def test_parameter_errors(kw, match, exc):
    z, y = make_problem(50, 3, seed=14)
    with pytest.raises(exc, match=match):
        DirichletScaler(**kw).fit(z, y)


def test_temperature_scaler_checks_its_parameters_too():
    z, y = make_problem(50, 3, seed=14)
    with pytest.raises(ValueError, match="'tol' parameter of TemperatureScaler.fit"):
        TemperatureScaler(tol=-1.0).fit(z, y)


@pytest.mark.parametrize("cls", SCALERS)
def test_data_errors(cls):
    z, y = make_problem(60, 3, seed=15)
    with pytest.raises(NotFittedError):
        cls().predict_proba(z)
    bad = z.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity|inf"):
        cls().fit(bad, y)
    est = cls().fit(z, y)
    with pytest.raises(ValueError, match="features"):
        est.predict_proba(z[:, :2])
    with pytest.raises(ValueError, match="labels not seen in fit"):
        est.score(z, np.full(len(y), 7))
    with pytest.raises(ValueError, match="3 logit column"):
        cls().fit(z, np.arange(len(y)) % 4 + 10)
    with pytest.raises(ValueError, match="sample_weight"):
        cls().fit(z, y, sample_weight=-np.ones(len(y)))


def test_convergence_warning_when_max_iter_is_too_small():
    z, y = make_problem(300, 3, seed=16, scale=3.0)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        MatrixScaler(max_iter=1).fit(z, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MatrixScaler().fit(z, y)


@pytest.mark.parametrize("cls", [VectorScaler, MatrixScaler, DirichletScaler])
def test_separable_data_warn(cls):
    """Labels that the map separates: the NLL has no finite minimum, and the fit says so."""
    z, y = make_problem(40, 3, seed=17, scale=1.0)
    z = z + 30.0 * np.eye(3)[y]  # every label far ahead: separable by every map
    with pytest.warns(ConvergenceWarning, match="separable"):
        cls().fit(z, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls().fit(*make_problem(300, 3, seed=17))   # overlapping classes: a finite minimum


_SHAPE = ("the generic check fits logits whose number of columns differs from the number of "
          "classes in y; these maps need one logit column per class")
_SEPARABLE = ("the check's random data are separable for a per-class map, so the NLL has no "
              "finite minimum and the fits with weights and with repeated rows stop at different "
              "points of the same flat valley")
EXPECTED_FAILED = {
    "check_classifiers_train": _SHAPE,
    "check_estimators_overwrite_params": _SHAPE,
    "check_estimators_fit_returns_self": _SHAPE,
    "check_readonly_memmap_input": _SHAPE,
    "check_estimators_nan_inf": _SHAPE,
    "check_classifiers_classes": _SHAPE,
    "check_sample_weight_equivalence_on_dense_data": _SEPARABLE,
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@parametrize_with_checks([VectorScaler(), MatrixScaler(), DirichletScaler(reg_lambda=0.01)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize(("kind", "lam"), [("vector", 0.0), ("matrix", 0.0), ("matrix", 0.4)])
def test_dense_hessian_equals_hessian_vector_products_and_differences(kind, lam):
    """The Newton step's exact Hessian (block structure, one pass) against Hessian-vector
    products column by column and central differences of the gradient."""
    z, y = make_problem(3000, 4, seed=18, scale=2.0)
    w = np.random.default_rng(3).uniform(0.5, 2.0, size=len(y))
    pen = scalers_mod.odir_penalty(kind, 4, lam, lam)
    prob = scalers_mod._Problem(kind, z, y, w, pen, 1.0, scalers_mod._as_float64)
    coef = scalers_mod.identity_coef(kind, 4) + 0.05 * np.random.default_rng(4).normal(
        size=pen.shape)
    _, g, H, diag = prob.derivatives(coef, True)
    cols = [prob.hessp(coef, e.reshape(pen.shape)).ravel() for e in np.eye(pen.size)]
    np.testing.assert_allclose(H, np.stack(cols, axis=1), atol=1e-13)
    np.testing.assert_allclose(np.diag(H), diag.ravel(), atol=1e-13)
    h = 1e-5
    for j in range(pen.size):
        e = np.zeros(pen.size)
        e[j] = h
        gp = prob.derivatives(coef + e.reshape(pen.shape), False)[1].ravel()
        gm = prob.derivatives(coef - e.reshape(pen.shape), False)[1].ravel()
        np.testing.assert_allclose((gp - gm) / (2 * h), H[:, j], atol=1e-8)
