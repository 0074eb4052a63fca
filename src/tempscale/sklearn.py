"""scikit-learn estimators: :class:`TemperatureScaler` (importing this module imports scikit-learn).

The class is also reachable as ``tempscale.TemperatureScaler`` and
``tempscale.calibration.TemperatureScaler``, which import this module on first use only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._args import binary_columns, coerce
from ._softmax import log_softmax, softmax
from ._typing import ArrayLike
from ._validation import param_error
from .calibration._fit import fit_logits

__all__ = ["TemperatureScaler"]

#: added to a wrapped classifier's ``predict_proba`` before the log (as scikit-learn's
#: temperature method does), so that a probability of exactly 0 gives a finite logit
_PROBA_EPS = 1e-12


def _decision_column(X: Any) -> Any:
    """A binary classifier's 1-D decision scores as one column; anything else unchanged."""
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        ndim = np.ndim(X)
    if ndim == 1:
        return np.reshape(np.asarray(coerce(X)), (-1, 1))
    return X


def _response_method(estimator: Any, func: str) -> str:
    """``"decision_function"`` if ``estimator`` has one, else ``"predict_proba"``; a TypeError
    naming the parameter if it has neither."""
    for name in ("decision_function", "predict_proba"):
        if callable(getattr(estimator, name, None)):
            return name
    raise param_error("estimator", func, "a fitted classifier with decision_function or "
                      "predict_proba (or None, for logits as X)", estimator, TypeError)


def _check_wrapped(estimator: Any, func: str) -> str:
    """Validate a wrapped classifier: it has a response method, is fitted and has classes_.
    Returns the response method's name."""
    method = _response_method(estimator, func)
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        msg = (f"The 'estimator' parameter of {func} must be a fitted classifier. Got "
               f"{estimator!r}, which is not fitted, instead. Fit it first (clone(), as in a "
               "Pipeline or GridSearchCV, returns an unfitted copy: wrap the fitted classifier "
               "in sklearn.frozen.FrozenEstimator to keep it fitted).")
        raise NotFittedError(msg) from None
    except TypeError:  # check_is_fitted's "not an estimator"
        raise param_error("estimator", func, "a fitted scikit-learn classifier", estimator,
                          TypeError) from None
    classes = getattr(estimator, "classes_", None)
    if classes is None or np.ndim(classes) != 1 or len(classes) < 2:
        raise param_error("estimator", func, "a fitted classifier with classes_ (two or more "
                          "classes)", estimator, TypeError)
    return method


# scikit-learn ships no type stubs, so its base classes are Any to mypy
class TemperatureScaler(ClassifierMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Temperature scaling as a scikit-learn classifier on logits, or around a fitted classifier.

    ``fit(logits, y)`` finds the NLL-optimal temperature with
    :func:`tempscale.calibration.fit_temperature`; ``predict_proba`` returns
    ``softmax(logits / T)``, ``transform`` the calibrated log-probabilities, ``predict`` the
    argmax class (unchanged by ``T``).

    With ``estimator=clf`` (a fitted classifier) every method takes the classifier's **raw
    features** instead: the logits are ``clf.decision_function(X)`` (a binary classifier's 1-D
    scores ``z`` become the two columns ``[0, z]``) or, for a classifier without one,
    ``log(clf.predict_proba(X) + 1e-12)`` (for two classes, of ``[1 - p, p]`` with ``p`` the second
    class's probability, as scikit-learn builds them); the scaler then behaves like
    ``CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")``.

    Parameters
    ----------
    estimator : classifier or None, default None
        None: ``X`` is logits.  Otherwise a **fitted** classifier with ``decision_function``
        or ``predict_proba`` and ``classes_``; it is never refitted.  ``clone`` (which a
        :class:`~sklearn.pipeline.Pipeline` in a search, or
        :class:`~sklearn.model_selection.GridSearchCV`, applies) returns an unfitted copy of it:
        wrap it in :class:`sklearn.frozen.FrozenEstimator` to keep it fitted there.
    tol : float, default 1e-12
        Relative accuracy of the temperature (see :func:`tempscale.calibration.fit_temperature`).
    max_iter : int, default 100

    Attributes
    ----------
    temperature_ : float
        The fitted temperature.
    classes_ : ndarray, shape (n_classes,)
        Class labels, in column order of the logits (the wrapped ``estimator``'s ``classes_``).
    n_features_in_ : int
        Number of logit columns seen in ``fit`` (with an ``estimator``: its
        ``n_features_in_``, where it has one).
    n_iter_ : int
        Passes over the data the fit took.

    Notes
    -----
    The input ``X`` is logits, one column per class in the order of ``classes_`` (or, for a
    binary problem, the logit of the second class as one column or a 1-D array of shape
    ``(n_samples,)``, as a binary classifier's ``decision_function`` returns).  If ``y`` holds
    integers in ``[0, n_columns)`` the columns are the classes ``0 .. n_columns-1`` (a class
    absent from the validation set is fine); otherwise the sorted distinct labels of ``y`` must
    match the columns one to one.

    :meth:`score` is the **negative mean NLL** (higher is better, as scikit-learn's
    model selection expects), not the accuracy that :class:`~sklearn.base.ClassifierMixin`
    would give: accuracy does not change with ``T``.

    In a :class:`~sklearn.pipeline.Pipeline` put it after a step that outputs logits, e.g.
    ``make_pipeline(FunctionTransformer(clf.decision_function), TemperatureScaler())`` for a
    fitted ``clf``.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sklearn import TemperatureScaler
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, size=500)
    >>> logits = 4.0 * (rng.normal(size=(500, 3)) + 1.5 * np.eye(3)[y])
    >>> scaler = TemperatureScaler().fit(logits, y)
    >>> round(scaler.temperature_, 4)
    2.4403
    >>> scaler.predict_proba(logits[:2]).round(3)
    array([[0.002, 0.001, 0.998],
           [0.165, 0.444, 0.391]])
    >>> round(scaler.score(logits, y), 4)          # the negative mean NLL
    -0.5234

    Around a fitted classifier, on raw features (fit the temperature on held-out data):

    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import train_test_split
    >>> X, y = load_iris(return_X_y=True)
    >>> X_train, X_cal, y_train, y_cal = train_test_split(X, y, test_size=0.5, random_state=0)
    >>> clf = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    >>> clf.predict_proba(X_cal[:1]).round(2)      # under-confident
    array([[0.  , 0.15, 0.85]])
    >>> calibrated = TemperatureScaler(estimator=clf).fit(X_cal, y_cal)
    >>> round(calibrated.temperature_, 2)
    0.37
    >>> calibrated.predict_proba(X_cal[:1]).round(2)
    array([[0.  , 0.01, 0.99]])
    >>> from sklearn.calibration import CalibratedClassifierCV
    >>> from sklearn.frozen import FrozenEstimator
    >>> sk = CalibratedClassifierCV(FrozenEstimator(clf), method="temperature").fit(X_cal, y_cal)
    >>> bool(abs(sk.predict_proba(X) - calibrated.predict_proba(X)).max() < 1e-6)
    True
    >>> bool((calibrated.predict(X_cal) == clf.predict(X_cal)).all())
    True
    """

    def __init__(self, estimator: Any = None, *, tol: float = 1e-12, max_iter: int = 100) -> None:
        self.estimator = estimator
        self.tol = tol
        self.max_iter = max_iter

    def _wrapped_logits(self, X: ArrayLike, func: str) -> NDArray[Any]:
        """The wrapped classifier's logits on raw features ``X``, shape (n, n_classes)."""
        est = self.estimator
        method = _check_wrapped(est, func)
        out = np.asarray(getattr(est, method)(X))
        if out.dtype.kind not in "f":
            out = out.astype(np.float64)
        k = len(est.classes_)
        if method == "predict_proba":
            if k == 2 and out.ndim == 2 and out.shape[1] == 2:
                # [1 - p, p] from the positive class's p, as scikit-learn builds it
                out = np.asarray(binary_columns(out[:, 1], input="probabilities"))
            out = np.log(out + out.dtype.type(_PROBA_EPS))
        Z: NDArray[Any] = np.asarray(binary_columns(out))
        if Z.ndim != 2 or Z.shape[1] != k:
            raise ValueError(f"{func}: the 'estimator' {method} returned shape {out.shape}, "
                             f"which is not one column per class of its {k} classes_")
        return Z

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> TemperatureScaler:
        """Fit the temperature on ``X`` and labels ``y``; returns ``self``.

        ``X`` is logits if ``estimator`` is None, else the raw features the wrapped classifier
        takes.
        """
        if self.estimator is not None:
            return self._fit_wrapped(X, y, sample_weight)
        Z, t = validate_data(self, _decision_column(X), coerce(y), dtype=(np.float64, np.float32),
                             y_numeric=False, multi_output=False)
        check_classification_targets(t)
        k = Z.shape[1]
        classes = np.unique(t)
        codes: NDArray[np.intp]
        if t.dtype.kind in "iub" and classes.min() >= 0 and classes.max() < max(k, 2):
            self.classes_ = np.arange(max(k, 2))
            codes = t.astype(np.intp)
        else:
            if len(classes) != max(k, 2):
                raise ValueError(
                    f"TemperatureScaler: X has {k} logit column(s) but y has {len(classes)} "
                    f"distinct classes; give one column per class (or one column for 2 "
                    "classes)")
            self.classes_ = classes
            codes = np.searchsorted(classes, t)
        if k == 1 and codes.max() > 1:
            raise ValueError("TemperatureScaler: one logit column is a binary problem, but y "
                             f"has {len(classes)} classes")
        return self._fit_codes(Z, codes, sample_weight)

    def _fit_codes(self, Z: Any, codes: NDArray[np.intp],
                   sample_weight: ArrayLike | None) -> TemperatureScaler:
        result = fit_logits(Z, codes, sample_weight=sample_weight, tol=self.tol,
                            max_iter=self.max_iter, threads=None, func="TemperatureScaler.fit")
        self.temperature_ = result.temperature
        self.n_iter_ = max(1, result.n_iter)
        return self

    def _fit_wrapped(self, X: ArrayLike, y: ArrayLike,
                     sample_weight: ArrayLike | None) -> TemperatureScaler:
        func = "TemperatureScaler.fit"
        Z = self._wrapped_logits(X, func)
        t = np.asarray(coerce(y))
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim != 1 or len(t) != len(Z):
            raise ValueError(f"{func}: y must be 1-D with one label per row of X ({len(Z)}); "
                             f"got shape {t.shape}")
        check_classification_targets(t)
        classes = np.asarray(self.estimator.classes_)
        codes = self._codes(classes, t, func)
        self.classes_ = classes
        n_features = getattr(self.estimator, "n_features_in_", None)
        if n_features is not None:
            self.n_features_in_ = n_features
        elif hasattr(self, "n_features_in_"):
            del self.n_features_in_
        names = getattr(self.estimator, "feature_names_in_", None)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self._fit_codes(Z, codes, sample_weight)

    @staticmethod
    def _codes(classes: NDArray[Any], t: NDArray[Any], func: str) -> NDArray[np.intp]:
        """The column of each label in ``classes`` (sorted); ValueError for an unknown one."""
        idx = np.clip(np.searchsorted(classes, t), 0, len(classes) - 1)
        bad = classes[idx] != t
        if np.any(bad):
            unknown = np.unique(t[bad])[:5].tolist()
            raise ValueError(f"{func}: y holds labels not in the classes_ {classes.tolist()}: "
                             f"{unknown}")
        out: NDArray[np.intp] = idx.astype(np.intp)
        return out

    def _tempered(self, X: ArrayLike, log: bool) -> NDArray[Any]:
        check_is_fitted(self)
        if self.estimator is not None:
            Z = self._wrapped_logits(X, f"{type(self).__name__}.predict_proba")
        else:
            if getattr(self, "n_features_in_", None) == 1:  # fitted on one decision column
                X = _decision_column(X)
            Z = binary_columns(validate_data(self, X, reset=False, dtype=(np.float64, np.float32)))
        f = log_softmax if log else softmax
        return np.asarray(f(Z, self.temperature_, axis=-1))

    def predict_proba(self, X: ArrayLike) -> NDArray[Any]:
        """Calibrated probabilities ``softmax(X / temperature_)``, shape (n, n_classes)."""
        return self._tempered(X, False)

    def predict_log_proba(self, X: ArrayLike) -> NDArray[Any]:
        """Calibrated log-probabilities (the same as :meth:`transform`)."""
        return self._tempered(X, True)

    def transform(self, X: ArrayLike) -> NDArray[Any]:
        """Calibrated log-probabilities ``log_softmax(X / temperature_)``."""
        return self._tempered(X, True)

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """The most probable class (temperature scaling never changes it)."""
        lp = self._tempered(X, True)
        out: NDArray[Any] = self.classes_[np.argmax(lp, axis=1)]
        return out

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """The negative mean negative log-likelihood of ``y`` (higher is better).

        Not the accuracy: see the class Notes.
        """
        lp = self._tempered(X, True)
        yy = np.asarray(coerce(y))
        if yy.ndim == 2 and yy.shape[1] == 1:
            yy = yy[:, 0]
        idx = np.clip(np.searchsorted(self.classes_, yy), 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == yy):
            raise ValueError("TemperatureScaler.score: y holds labels not seen in fit")
        w = None if sample_weight is None else np.asarray(coerce(sample_weight), dtype=np.float64)
        return -float(np.average(-lp[np.arange(len(idx)), idx], weights=w))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags
