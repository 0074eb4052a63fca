"""TemperatureScaler(estimator=clf): a fitted classifier wrapped, against scikit-learn's
CalibratedClassifierCV(FrozenEstimator(clf), method="temperature") and an independent optimiser."""

import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("sklearn.frozen")  # scikit-learn >= 1.6; method="temperature" needs 1.8
scipy_optimize = pytest.importorskip("scipy.optimize")
scipy_special = pytest.importorskip("scipy.special")

from sklearn.base import clone  # noqa: E402
from sklearn.calibration import CalibratedClassifierCV  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402

from tempscale.calibration import fit_temperature  # noqa: E402
from tempscale.sklearn import TemperatureScaler  # noqa: E402

LOADERS = {"breast_cancer": load_breast_cancer, "digits": load_digits, "iris": load_iris}
MODELS = {
    "logreg": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
    "linearsvc": lambda: make_pipeline(StandardScaler(), LinearSVC()),  # decision_function only
    "gaussiannb": GaussianNB,  # predict_proba only
}
CASES = [("breast_cancer", "logreg"), ("breast_cancer", "linearsvc"),
         ("breast_cancer", "gaussiannb"), ("digits", "logreg"), ("digits", "gaussiannb"),
         ("iris", "logreg"), ("iris", "gaussiannb"), ("iris", "linearsvc")]


def _split(name):
    X, y = LOADERS[name](return_X_y=True)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    X_cal, X_te, y_cal, y_te = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0,
                                                stratify=y_rest)
    return X_tr, y_tr, X_cal, y_cal, X_te, y_te


def _logits(clf, X):
    """The wrapped classifier's logits, built here independently of the library."""
    if hasattr(clf, "decision_function"):
        z = clf.decision_function(X)
        return np.column_stack([np.zeros_like(z), z]) if z.ndim == 1 else z
    p = clf.predict_proba(X)
    if p.shape[1] == 2:  # scikit-learn's binary convention: [1 - p1, p1]
        p = np.column_stack([1.0 - p[:, 1], p[:, 1]])
    return np.log(p + 1e-12)


def _reference_temperature(z, codes):
    """NLL-optimal T by SciPy's Brent search on log T (float64), independent of tempscale."""
    rows = np.arange(len(codes))

    def nll(log_t):
        return -scipy_special.log_softmax(z / np.exp(log_t), axis=1)[rows, codes].mean()

    res = scipy_optimize.minimize_scalar(nll, bracket=(-1.0, 1.0), tol=1e-14, method="brent")
    return float(np.exp(res.x)), float(res.fun)


def _nll(p, codes):
    return float(-np.mean(np.log(p[np.arange(len(codes)), codes])))


@pytest.mark.parametrize(("data", "model"), CASES)
def test_wrapped_matches_sklearn_temperature_method(data, model):
    X_tr, y_tr, X_cal, y_cal, X_te, y_te = _split(data)
    clf = MODELS[model]().fit(X_tr, y_tr)
    ts = TemperatureScaler(estimator=clf).fit(X_cal, y_cal)
    sk = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature").fit(X_cal, y_cal)

    # the temperature is the NLL optimum on the wrapped classifier's logits
    z = _logits(clf, X_cal)
    codes = np.searchsorted(clf.classes_, y_cal)
    assert ts.temperature_ == pytest.approx(fit_temperature(z, codes), rel=1e-10)
    t_ref, _ = _reference_temperature(z, codes)
    assert ts.temperature_ == pytest.approx(t_ref, rel=1e-7)  # Brent's accuracy on a flat NLL

    np.testing.assert_array_equal(ts.classes_, clf.classes_)
    p, p_sk = ts.predict_proba(X_te), sk.predict_proba(X_te)
    assert np.abs(p - p_sk).max() < 1e-6
    # scikit-learn's bounded search on log(1/T) stops at xatol = 64 eps + sqrt(eps) |log beta|
    t_sk = 1.0 / float(sk.calibrated_classifiers_[0].calibrators[0].beta_)
    if len(clf.classes_) == 2 and hasattr(clf, "decision_function"):
        t_sk /= 2  # scikit-learn's binary logits are (-z, z), ours [0, z]
    assert ts.temperature_ == pytest.approx(t_sk, rel=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize(("data", "model"), [("iris", "logreg"), ("breast_cancer", "linearsvc"),
                                             ("digits", "gaussiannb")])
def test_wrapped_methods_on_raw_features(data, model):
    X_tr, y_tr, X_cal, y_cal, X_te, y_te = _split(data)
    clf = MODELS[model]().fit(X_tr, y_tr)
    ts = TemperatureScaler(estimator=clf).fit(X_cal, y_cal)
    z = _logits(clf, X_te) / ts.temperature_
    ref_log = scipy_special.log_softmax(z, axis=1)
    np.testing.assert_allclose(ts.predict_proba(X_te), np.exp(ref_log), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(ts.transform(X_te), ref_log, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ts.predict_log_proba(X_te), ref_log, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ts.predict(X_te), clf.predict(X_te))
    codes = np.searchsorted(clf.classes_, y_te)
    assert ts.score(X_te, y_te) == pytest.approx(ref_log[np.arange(len(codes)), codes].mean(),
                                                 rel=1e-12)
    assert ts.n_features_in_ == X_tr.shape[1]


def test_string_labels_and_sample_weight():
    X_tr, y_tr, X_cal, y_cal, X_te, _ = _split("iris")
    names = np.array(["setosa", "versicolor", "virginica"])
    clf = MODELS["logreg"]().fit(X_tr, names[y_tr])
    w = np.random.default_rng(0).uniform(0.1, 2.0, size=len(y_cal))
    ts = TemperatureScaler(clf).fit(X_cal, names[y_cal], sample_weight=w)
    np.testing.assert_array_equal(ts.classes_, names)
    assert ts.temperature_ == pytest.approx(
        fit_temperature(clf.decision_function(X_cal), y_cal, sample_weight=w), rel=1e-10)
    assert set(ts.predict(X_te)) <= set(names)
    with pytest.raises(ValueError, match="labels not in the classes_"):
        TemperatureScaler(clf).fit(X_cal, np.where(y_cal == 0, "other", names[y_cal]))


def test_estimator_none_keeps_logits_behaviour():
    X_tr, y_tr, X_cal, y_cal, _, _ = _split("iris")
    clf = MODELS["logreg"]().fit(X_tr, y_tr)
    z = clf.decision_function(X_cal)
    on_logits = TemperatureScaler().fit(z, y_cal)
    wrapped = TemperatureScaler(clf).fit(X_cal, y_cal)
    assert on_logits.temperature_ == wrapped.temperature_
    np.testing.assert_allclose(on_logits.predict_proba(z), wrapped.predict_proba(X_cal),
                               rtol=1e-14)
    assert on_logits.n_features_in_ == 3 and wrapped.n_features_in_ == 4


def test_params_clone_pipeline_and_pickle():
    X_tr, y_tr, X_cal, y_cal, X_te, _ = _split("breast_cancer")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X_tr, y_tr)
    ts = TemperatureScaler(clf, tol=1e-10)
    params = ts.get_params()
    assert params["estimator"] is clf and params["tol"] == 1e-10
    assert "estimator__logisticregression__C" in params
    ts.set_params(max_iter=50)
    assert ts.max_iter == 50

    # clone copies the classifier unfitted: the error says so and names the way out
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        clone(ts).fit(X_cal, y_cal)
    frozen = TemperatureScaler(FrozenEstimator(clf))
    p = clone(frozen).fit(X_cal, y_cal).predict_proba(X_te)
    np.testing.assert_allclose(p, ts.fit(X_cal, y_cal).predict_proba(X_te), rtol=1e-14)

    # pickle round trip of the fitted scaler
    back = pickle.loads(pickle.dumps(ts))
    assert back.temperature_ == ts.temperature_
    np.testing.assert_array_equal(back.predict_proba(X_te), ts.predict_proba(X_te))

    # inside a Pipeline and a grid search (which clones: FrozenEstimator keeps clf fitted)
    pipe = Pipeline([("ts", TemperatureScaler(FrozenEstimator(clf)))]).fit(X_cal, y_cal)
    np.testing.assert_allclose(pipe.predict_proba(X_te), p, rtol=1e-14)
    gs = GridSearchCV(TemperatureScaler(FrozenEstimator(clf)), {"tol": [1e-6, 1e-12]},
                      cv=3).fit(X_cal, y_cal)
    assert gs.best_estimator_.temperature_ > 0
    np.testing.assert_array_equal(gs.predict(X_te), clf.predict(X_te))


def test_errors():
    X_tr, y_tr, X_cal, y_cal, _, _ = _split("iris")
    with pytest.raises(NotFittedError,
                       match=r"'estimator' parameter of TemperatureScaler.fit must be a fitted"):
        TemperatureScaler(LogisticRegression()).fit(X_cal, y_cal)
    regressor = LinearRegression().fit(X_tr, y_tr)  # neither decision_function nor predict_proba
    with pytest.raises(TypeError, match=r"'estimator' parameter of TemperatureScaler.fit must "
                                        r"be a fitted classifier with decision_function"):
        TemperatureScaler(regressor).fit(X_cal, y_cal)
    with pytest.raises(TypeError, match="'estimator' parameter"):
        TemperatureScaler("not a model").fit(X_cal, y_cal)

    class ScoresOnly:  # a decision_function but no estimator API / classes_
        def decision_function(self, X):
            return np.zeros(len(X))

    with pytest.raises(TypeError, match="'estimator' parameter"):
        TemperatureScaler(ScoresOnly()).fit(X_cal, y_cal)
    clf = LogisticRegression(max_iter=5000).fit(X_tr, y_tr)
    with pytest.raises(NotFittedError):
        TemperatureScaler(clf).predict_proba(X_cal)
    with pytest.raises(ValueError, match="one label per row"):
        TemperatureScaler(clf).fit(X_cal, y_cal[:-1])
    with pytest.raises(ValueError, match="features"):  # the classifier's own check
        TemperatureScaler(clf).fit(X_cal[:, :2], y_cal)
