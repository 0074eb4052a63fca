"""scikit-learn estimators: calibration maps on logits, or around a fitted classifier.

* :class:`TemperatureScaler` -- one temperature (Guo et al. 2017);
* :class:`VectorScaler` -- a scale and a bias per class;
* :class:`MatrixScaler` -- a full matrix and a bias on the logits;
* :class:`DirichletScaler` -- a full matrix and a bias on the log-probabilities (Kull et al.
  2019), with the ODIR penalty.

Importing this module imports scikit-learn.  ``TemperatureScaler`` is also reachable as
``tempscale.TemperatureScaler`` and ``tempscale.calibration.TemperatureScaler``, which import
this module on first use only.
"""

from __future__ import annotations

import functools
import importlib
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _scalers
from ._args import binary_columns, coerce
from ._softmax import log_softmax, softmax
from ._typing import ArrayLike
from ._validation import check_scalar, param_error
from .calibration._checks import check_weights, warn_user
from .calibration._fit import fit_logits

__all__ = ["DirichletScaler", "MatrixScaler", "TemperatureScaler", "VectorScaler"]

#: added to a wrapped classifier's ``predict_proba`` before the log (as scikit-learn's
#: temperature method does), so that a probability of exactly 0 gives a finite logit
_PROBA_EPS = 1e-12
#: a fitted loss (mean NLL plus penalty) below this means separable data: no finite minimum
_SEPARABLE_LOSS = 1e-8


def _decision_column(X: Any) -> Any:
    """A binary classifier's 1-D decision scores as one column; anything else unchanged."""
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        ndim = np.ndim(X)
    if ndim == 1:
        return np.reshape(np.asarray(coerce(X)), (-1, 1))
    return X


def _is_dask(*arrays: Any) -> bool:
    """Whether any of ``arrays`` is a Dask array (without importing Dask)."""
    return any(type(a).__module__.startswith("dask") for a in arrays if a is not None)


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
class _Scaler(ClassifierMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """What every scaler shares: logits in (given, or from a wrapped classifier's raw
    features), classes, sample weights, and the calibrated outputs.

    A subclass implements ``_fit_codes(Z, codes, sample_weight)`` (``Z`` (n, k) floating
    logits, one column for a binary problem; ``codes`` the column of each label) and
    ``_calibrated(Z)``, which returns ``(u, T)`` with the calibrated probabilities
    ``softmax(u / T)``.
    """

    estimator: Any
    tol: float
    max_iter: int
    #: the dtypes scikit-learn's validation keeps (others are converted to the first)
    _dtypes: tuple[type[np.floating[Any]], ...] = (np.float64, np.float32)
    #: whether ``fit`` and the predictions take Dask arrays (on the cluster, never gathered)
    _dask_ok = False

    def _fit_codes(self, Z: NDArray[Any], codes: NDArray[np.intp],
                   sample_weight: ArrayLike | None) -> Any:
        raise NotImplementedError

    def _calibrated(self, Z: NDArray[Any]) -> tuple[NDArray[Any], float]:
        raise NotImplementedError

    def _check_params(self, func: str) -> None:
        check_scalar(self.tol, "tol", func, lo=0.0, lo_open=True, hi=1.0)
        check_scalar(self.max_iter, "max_iter", func, lo=1, integer=True)

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

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> Any:
        """Fit the map on ``X`` and labels ``y``; returns ``self``.

        ``X`` is logits if ``estimator`` is None, else the raw features the wrapped classifier
        takes.
        """
        name = type(self).__name__
        self._check_params(f"{name}.fit")
        if self.estimator is not None:
            return self._fit_wrapped(X, y, sample_weight)
        if _is_dask(X, y, sample_weight):
            self._check_dask(f"{name}.fit", X=X, y=y, sample_weight=sample_weight)
            return self._fit_dask(X, y, sample_weight)
        Z, t = validate_data(self, _decision_column(X), coerce(y), dtype=self._dtypes,
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
                    f"{name}: X has {k} logit column(s) but y has {len(classes)} "
                    f"distinct classes; give one column per class (or one column for 2 "
                    "classes)")
            self.classes_ = classes
            codes = np.searchsorted(classes, t)
        if k == 1 and codes.max() > 1:
            raise ValueError(f"{name}: one logit column is a binary problem, but y "
                             f"has {len(classes)} classes")
        return self._fit_codes(Z, codes, sample_weight)

    def _check_dask(self, func: str, **arrays: Any) -> None:
        """A TypeError naming the first Dask array of ``arrays`` where this scaler does not
        take Dask input."""
        if self._dask_ok:
            return
        for param, value in arrays.items():
            if _is_dask(value):
                raise param_error(param, func, "a NumPy-compatible array (Dask input is "
                                  "not supported by this scaler)",
                                  f"a {type(value).__module__}.{type(value).__name__}",
                                  TypeError)

    def _fit_dask(self, X: Any, y: Any, sample_weight: Any) -> Any:
        """``fit`` on Dask arrays: the fit's sums are computed on the cluster (see
        :func:`tempscale.calibration.fit_temperature`); labels are class indices."""
        raise NotImplementedError  # pragma: no cover - only scalers with _dask_ok call it

    def _fit_wrapped(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None) -> Any:
        func = f"{type(self).__name__}.fit"
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

    def _logits(self, X: ArrayLike) -> Any:
        """The (n, k) logits of ``X`` (the wrapped classifier's, or ``X`` itself), checked."""
        check_is_fitted(self)
        if self.estimator is not None:
            return self._wrapped_logits(X, f"{type(self).__name__}.predict_proba")
        if _is_dask(X):
            return self._dask_logits(X)
        if getattr(self, "n_features_in_", None) == 1:  # fitted on one decision column
            X = _decision_column(X)
        out: NDArray[Any] = np.asarray(binary_columns(
            validate_data(self, X, reset=False, dtype=self._dtypes)))
        return out

    def _dask_logits(self, X: Any) -> Any:
        """Dask logits ``X`` checked against the fit, as (n, k) floating columns (lazy)."""
        name = type(self).__name__
        self._check_dask(f"{name}.predict_proba", X=X)
        da: Any = importlib.import_module("dask.array")  # Dask ships no annotations

        Z = X[:, None] if X.ndim == 1 else X
        n_features = self.n_features_in_
        if Z.ndim != 2 or Z.shape[1] != n_features:
            raise ValueError(f"X has shape {tuple(X.shape)}, but {name} is expecting "
                             f"{n_features} features as input.")
        if Z.dtype not in (np.float64, np.float32):
            Z = Z.astype(np.float64)
        if n_features == 1:  # one binary decision column z: the two columns [0, z]
            Z = da.concatenate([da.zeros_like(Z), Z], axis=1)
        return Z

    def _scaled(self, X: ArrayLike, log: bool) -> Any:
        u, T = self._calibrated(self._logits(X))
        f = log_softmax if log else softmax
        out = f(u, T, axis=-1)
        return out if _is_dask(out) else np.asarray(out)

    def predict_proba(self, X: ArrayLike) -> Any:
        """Calibrated probabilities, shape (n, n_classes)."""
        return self._scaled(X, False)

    def predict_log_proba(self, X: ArrayLike) -> Any:
        """Calibrated log-probabilities (the same as :meth:`transform`)."""
        return self._scaled(X, True)

    def transform(self, X: ArrayLike) -> Any:
        """Calibrated log-probabilities, shape (n, n_classes)."""
        return self._scaled(X, True)

    def predict(self, X: ArrayLike) -> Any:
        """The most probable class after calibration."""
        lp = self._scaled(X, True)
        if _is_dask(lp):
            classes = self.classes_
            return lp.argmax(axis=1).map_blocks(lambda b: classes[b], dtype=classes.dtype)
        out: NDArray[Any] = self.classes_[np.argmax(lp, axis=1)]
        return out

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """The negative mean negative log-likelihood of ``y`` (higher is better).

        Not the accuracy: see the class Notes.
        """
        if _is_dask(X, y, sample_weight) and self.estimator is None:
            return self._dask_score(X, y, sample_weight)
        lp = self._scaled(X, True)
        yy = np.asarray(coerce(y))
        if yy.ndim == 2 and yy.shape[1] == 1:
            yy = yy[:, 0]
        idx = np.clip(np.searchsorted(self.classes_, yy), 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == yy):
            raise ValueError(f"{type(self).__name__}.score: y holds labels not seen in fit")
        w = None if sample_weight is None else np.asarray(coerce(sample_weight), dtype=np.float64)
        return -float(np.average(-lp[np.arange(len(idx)), idx], weights=w))

    def _dask_score(self, X: Any, y: Any, sample_weight: Any) -> float:
        """:meth:`score` on Dask arrays: the weighted NLL's two sums, on the cluster."""
        from .calibration import nll

        check_is_fitted(self)
        name = type(self).__name__
        self._check_dask(f"{name}.score", X=X, y=y, sample_weight=sample_weight)
        k = len(self.classes_)
        if not np.array_equal(self.classes_, np.arange(k)):
            raise ValueError(f"{name}.score: Dask labels must be class indices, but the "
                             f"classes_ are {self.classes_.tolist()}")
        u, T = self._calibrated(self._dask_logits(X) if _is_dask(X)
                                else self._logits(X))
        return -float(nll(u / T, y, sample_weight=sample_weight, input="logits"))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags


class TemperatureScaler(_Scaler):
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

    **Dask.** Logits, labels and weights may be Dask arrays (with ``estimator=None``): ``fit``
    runs :func:`tempscale.calibration.fit_temperature`'s map-reduce on the cluster (one pass
    over the data per Newton step; only a few sums per step reach the client), ``y`` must then
    hold class indices in ``[0, n_columns)`` (``classes_`` is ``arange``), and
    ``predict_proba``, ``transform``, ``predict_log_proba`` and ``predict`` of a Dask array
    return lazy Dask arrays; ``score`` computes the NLL's sums on the cluster.  The vector,
    matrix and Dirichlet scalers take Dask arrays too.

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

    def _fit_codes(self, Z: Any, codes: NDArray[np.intp],
                   sample_weight: ArrayLike | None) -> TemperatureScaler:
        result = fit_logits(Z, codes, sample_weight=sample_weight, tol=self.tol,
                            max_iter=self.max_iter, threads=None, func="TemperatureScaler.fit")
        self.temperature_ = result.temperature
        self.n_iter_ = max(1, result.n_iter)
        return self

    _dask_ok = True

    def _fit_dask(self, X: Any, y: Any, sample_weight: Any) -> TemperatureScaler:
        func = "TemperatureScaler.fit"
        Z = X if _is_dask(X) else np.asarray(coerce(X))
        if Z.ndim not in (1, 2):
            raise param_error("X", func, "a 2-D array of logits (n_samples, n_classes) or 1-D "
                              "(binary)", f"an array of shape {tuple(Z.shape)}")
        labels = y if _is_dask(y) else np.asarray(coerce(y))
        if labels.dtype.kind not in "iu":
            raise param_error("y", func, "integer class indices in [0, n_classes) with Dask "
                              "input", f"dtype {labels.dtype}", TypeError)
        # the logits stay on the cluster: each Newton step sums per-block derivatives there
        # and brings three numbers to the client (label range checked the same way)
        result = fit_logits(Z, labels, sample_weight=sample_weight, tol=self.tol,
                            max_iter=self.max_iter, threads=None, func=func)
        k = 1 if Z.ndim == 1 else int(Z.shape[1])
        self.classes_ = np.arange(max(k, 2))
        self.n_features_in_ = k
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.temperature_ = result.temperature
        self.n_iter_ = max(1, result.n_iter)
        return self

    def _calibrated(self, Z: NDArray[Any]) -> tuple[NDArray[Any], float]:
        return Z, self.temperature_

    def predict_proba(self, X: ArrayLike) -> Any:
        """Calibrated probabilities ``softmax(X / temperature_)``, shape (n, n_classes) (a
        lazy Dask array for a Dask ``X``)."""
        return self._scaled(X, False)

    def transform(self, X: ArrayLike) -> Any:
        """Calibrated log-probabilities ``log_softmax(X / temperature_)`` (a lazy Dask array
        for a Dask ``X``)."""
        return self._scaled(X, True)

    def predict(self, X: ArrayLike) -> Any:
        """The most probable class (temperature scaling never changes it; a lazy Dask array
        for a Dask ``X``)."""
        return super().predict(X)


class _AffineScaler(_Scaler):
    """A map affine in its parameters, fitted by Newton's method (see :mod:`tempscale._scalers`)."""

    #: the map of :mod:`tempscale._scalers` ("vector" or "matrix")
    _kind = "matrix"
    #: whether the map acts on the log-probabilities ``log_softmax(logits)`` (Dirichlet)
    _on_log_probs = False
    # float32 is kept as given (a memory-mapped file is not copied): rows become float64 chunk
    # by chunk inside the fit and the predictions

    def _penalty(self, k: int, func: str) -> NDArray[np.float64]:
        return np.zeros_like(_scalers.identity_coef(self._kind, k))

    def _inputs(self, Z: NDArray[Any], func: str) -> NDArray[np.float64]:
        """The map's float64 input: the logits, or their log-softmax; finite values only."""
        x = np.asarray(binary_columns(np.asarray(Z, dtype=np.float64)), dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{func}: the logits hold NaN or infinite values; "
                             f"{type(self).__name__} needs finite logits")
        if self._on_log_probs:
            x = np.asarray(log_softmax(x, axis=-1), dtype=np.float64)
        return x

    _dask_ok = True

    def _dask_inputs(self, Z: Any) -> Any:
        """The map's float64 input from Dask logit columns (n, k), lazily: the logits or their
        log-softmax, the class axis in one chunk."""
        x = Z.astype(np.float64)
        if len(x.chunks[1]) > 1:
            x = x.rechunk({1: -1})
        if self._on_log_probs:
            x = log_softmax(x, axis=-1)
        return x

    def _fit_dask(self, X: Any, y: Any, sample_weight: Any) -> Any:
        """``fit`` on Dask arrays: every Newton step (and line-search trial) is one pass of
        per-block sums on the cluster (:func:`tempscale._scalers.fit_affine`)."""
        func = f"{type(self).__name__}.fit"
        da: Any = importlib.import_module("dask.array")
        dask: Any = importlib.import_module("dask")
        Z = X if _is_dask(X) else da.from_array(np.asarray(coerce(X)))
        if Z.ndim == 1:
            Z = Z[:, None]
        if Z.ndim != 2 or Z.shape[0] == 0 or Z.dtype.kind not in "fiub":
            raise param_error("X", func, "a non-empty 2-D array of real logits (n_samples, "
                              "n_classes) or 1-D (binary)",
                              f"an array of shape {tuple(Z.shape)} and dtype {Z.dtype}")
        n, n_cols = int(Z.shape[0]), int(Z.shape[1])
        k = max(n_cols, 2)
        if n_cols == 1:
            Z = da.concatenate([da.zeros_like(Z), Z], axis=1)
        x = self._dask_inputs(Z)
        rows = x.chunks[0]
        t = y if _is_dask(y) else da.from_array(np.asarray(coerce(y)))
        if t.ndim == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim != 1 or t.shape[0] != n:
            raise param_error("y", func, f"a 1-D array of {n} labels (one per row of X)",
                              f"shape {tuple(t.shape)}")
        if t.dtype.kind not in "iu":
            raise param_error("y", func, "integer class indices in [0, n_classes) with Dask "
                              "input", f"dtype {t.dtype}", TypeError)
        t = t.rechunk((rows,))
        w = None
        parts = [t.min(), t.max(), da.isfinite(Z).all()]
        if sample_weight is not None:
            w = (sample_weight if _is_dask(sample_weight)
                 else da.from_array(np.asarray(coerce(sample_weight), dtype=np.float64)))
            if w.shape != (n,):
                raise param_error("sample_weight", func, f"a 1-D array of length {n}",
                                  f"shape {tuple(w.shape)}")
            w = w.astype(np.float64).rechunk((rows,))
            parts += [w.min(), da.isfinite(w).all(), w.sum()]
        vals = dask.compute(*parts)  # a few numbers: the checks' sums on the cluster
        lo, hi = int(vals[0]), int(vals[1])
        if lo < 0 or hi >= k:
            raise param_error("y", func, f"class indices in [0, {k})", lo if lo < 0 else hi,
                              ValueError)
        if not bool(vals[2]):
            raise ValueError(f"{func}: the logits hold NaN or infinite values; "
                             f"{type(self).__name__} needs finite logits")
        if w is not None and (not bool(vals[4]) or float(vals[3]) < 0 or float(vals[5]) <= 0):
            raise param_error("sample_weight", func, "finite non-negative weights with a "
                              "positive sum", "other values")
        fit = _scalers.fit_affine(self._kind, x, t, w, self._penalty(k, func),
                                  tol=float(self.tol), max_iter=int(self.max_iter))
        self.classes_ = np.arange(k)
        self.n_features_in_ = n_cols
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self._store(fit, k, func)

    def _fit_codes(self, Z: Any, codes: NDArray[np.intp],
                   sample_weight: ArrayLike | None) -> Any:
        func = f"{type(self).__name__}.fit"
        n = Z.shape[0]
        k = 2 if Z.ndim == 1 or Z.shape[1] == 1 else Z.shape[1]
        w = check_weights(sample_weight, n, func)
        penalty = self._penalty(k, func)
        # the rows are read in chunks (a memory-mapped array is never copied whole)
        fit = _scalers.fit_affine(self._kind, Z, codes, w, penalty, tol=float(self.tol),
                                  max_iter=int(self.max_iter),
                                  prepare=lambda chunk: self._inputs(chunk, func))
        return self._store(fit, k, func)

    def _store(self, fit: _scalers.AffineFit, k: int, func: str) -> Any:
        """Keep the fitted map (with the warnings of an unfinished or separable fit)."""
        if not fit.converged:
            warn_user(f"{func}: the Newton iteration stopped after {fit.n_iter} steps before "
                      f"reaching tol={self.tol} (max_iter={self.max_iter}); without a penalty "
                      "on separable data the loss has no finite minimum: set reg_lambda > 0 "
                      "(MatrixScaler, DirichletScaler) or give more data", ConvergenceWarning)
        elif fit.objective < _SEPARABLE_LOSS:
            warn_user(f"{func}: the loss fell to {fit.objective:.1e}: the data are separable by "
                      "this map, so the NLL has no finite minimum and the fitted parameters are "
                      "as large as the iteration made them (probabilities of 0 and 1 on new "
                      "data); set reg_lambda > 0 (MatrixScaler, DirichletScaler) or use a map "
                      "with fewer parameters", ConvergenceWarning)
        self.coef_ = fit.coef[:, 0].copy() if self._kind == "vector" else fit.coef[:, :k].copy()
        self.intercept_ = fit.coef[:, -1].copy()
        self.loss_ = fit.objective
        self.n_iter_ = fit.n_iter
        return self

    def _full_coef(self) -> NDArray[np.float64]:
        return np.column_stack([self.coef_, self.intercept_])

    def _calibrated(self, Z: NDArray[Any]) -> tuple[NDArray[Any], float]:
        if _is_dask(Z):  # lazy: the map applied block by block
            x = self._dask_inputs(Z)
            coef = self._full_coef()
            u = x.map_blocks(functools.partial(_scalers.apply_affine, self._kind, coef=coef),
                             dtype=np.float64)
            return u, 1.0
        x = self._inputs(Z, f"{type(self).__name__}.predict_proba")
        if x.shape[1] != len(self.intercept_):
            raise ValueError(f"{type(self).__name__}: X gives {x.shape[1]} logit columns, "
                             f"but the map was fitted on {len(self.intercept_)}")
        return _scalers.apply_affine(self._kind, x, self._full_coef()), 1.0


_COMMON_PARAMS = """\
    estimator : classifier or None, default None
        None: ``X`` is logits.  Otherwise a **fitted** classifier with ``decision_function``
        or ``predict_proba`` and ``classes_``, whose logits are taken as in
        :class:`TemperatureScaler` (wrap it in :class:`sklearn.frozen.FrozenEstimator` to keep
        it fitted through ``clone``).
"""

_SOLVER_PARAMS = """\
    tol : float, default 1e-12
        Newton's method stops after the step whose Newton decrement ``g·H⁻¹g / 2`` (the
        quadratic model's estimate of the excess loss) is at most ``tol * max(1, loss)``;
        that step is taken, so the excess after it is of order ``tol**2``.  In the tests the
        loss agrees with SciPy's general-purpose minimiser to ~1e-15 relative.
    max_iter : int, default 100
        At most this many Newton steps (a :class:`~sklearn.exceptions.ConvergenceWarning` if
        they were not enough).  Data that the map separates perfectly (no finite minimum:
        the loss falls below 1e-8 as the parameters grow) also give a ConvergenceWarning.
"""

_REG_PARAMS = """\
    reg_lambda : float, default 0.0
        Weight of the ODIR penalty on the matrix's off-diagonal entries (Kull et al. 2019):
        ``reg_lambda / (k (k - 1)) * sum of their squares`` is added to the mean NLL.
    reg_mu : float or None, default None
        Weight of the penalty ``reg_mu / k * sum(intercept_**2)`` on the biases; None means
        ``reg_mu = reg_lambda``.
"""

_AFFINE_NOTES = """\
    The loss is the (weighted) mean NLL of the labels under ``softmax(u)`` plus the penalty:
    convex in the parameters, so the fit is its minimum, reached by Newton's method with a
    backtracking line search from the identity map (the exact Hessian is solved while the
    parameters number at most 400, conjugate gradients on Hessian-vector products above),
    in float64 whatever the input dtype.  Adding a constant to every class's logit does not
    change the softmax, so the directions of the parameters that do only that (the biases'
    mean, and for a matrix a vector added to every row) are not determined by the data when
    they are not penalised: the biases are reported with mean 0 and the matrix with each
    column's off-diagonal entries of mean 0 (the limit of a vanishing ODIR penalty; a
    temperature map stays ``I / T``).

    ``X``, ``y``, the binary one-column form, :meth:`score` (the **negative mean NLL**, higher
    is better) and ``estimator`` work as in :class:`TemperatureScaler`.

    **Dask.** Logits, labels (class indices) and weights may be Dask arrays: every Newton
    step and line-search trial (and each Hessian-vector product of a large map) is one
    ``map_blocks`` pass whose blocks return their sums of the loss, the gradient and the
    Hessian, added on the cluster; only those sums reach the client.  The result equals the
    NumPy fit up to the order of the sums (the loss to about 1e-12 relative; the parameters
    as far as the Hessian's conditioning allows).  The predictions of a Dask ``X`` are lazy
    Dask arrays.
"""


class VectorScaler(_AffineScaler):
    __doc__ = f"""Vector scaling: a scale and a bias per class on the logits (Guo et al. 2017).

    The calibrated probabilities are ``softmax(coef_ * z + intercept_)`` (elementwise per
    class), with the parameters minimising the negative log-likelihood on the data given to
    :meth:`fit`.  Unlike temperature scaling it can change the predicted class.

    Parameters
    ----------
{_COMMON_PARAMS}{_SOLVER_PARAMS}
    Attributes
    ----------
    coef_ : ndarray, shape (n_classes,)
        Per-class scales.
    intercept_ : ndarray, shape (n_classes,)
        Per-class biases (mean zero).
    loss_ : float
        The minimised mean NLL on the fit data.
    classes_ : ndarray, shape (n_classes,)
    n_features_in_ : int
    n_iter_ : int
        Newton steps taken.

    Notes
    -----
{_AFFINE_NOTES}
    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
       Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sklearn import VectorScaler
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, size=20000)
    >>> logits = 1.5 * (rng.normal(size=(20000, 3)) + 1.5 * np.eye(3)[y])  # calibrated
    >>> scaler = VectorScaler().fit(3.0 * logits + [1.0, 0.0, -1.0], y)  # over-confident, biased
    >>> scaler.coef_.round(1)
    array([0.3, 0.3, 0.3])
    >>> scaler.intercept_.round(1)
    array([-0.3,  0. ,  0.3])
    """

    _kind = "vector"

    def __init__(self, estimator: Any = None, *, tol: float = 1e-12, max_iter: int = 100) -> None:
        self.estimator = estimator
        self.tol = tol
        self.max_iter = max_iter


class MatrixScaler(_AffineScaler):
    __doc__ = f"""Matrix scaling: a full matrix and a bias on the logits (Guo et al. 2017).

    The calibrated probabilities are ``softmax(z @ coef_.T + intercept_)``, with the
    parameters minimising the negative log-likelihood (plus the optional ODIR penalty) on the
    data given to :meth:`fit`.  It has ``k (k + 1)`` parameters: with many classes and little
    calibration data, set ``reg_lambda`` (or use :class:`VectorScaler`).

    Parameters
    ----------
{_COMMON_PARAMS}{_REG_PARAMS}{_SOLVER_PARAMS}
    Attributes
    ----------
    coef_ : ndarray, shape (n_classes, n_classes)
    intercept_ : ndarray, shape (n_classes,)
    loss_ : float
        The minimised loss (mean NLL plus penalty) on the fit data.
    classes_ : ndarray, shape (n_classes,)
    n_features_in_ : int
    n_iter_ : int
        Newton steps taken.

    Notes
    -----
{_AFFINE_NOTES}
    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
       Networks", ICML 2017.
    .. [2] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song, P. Flach, "Beyond
       temperature scaling: Obtaining well-calibrated multi-class probabilities with Dirichlet
       calibration", NeurIPS 2019 (the ODIR penalty).

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sklearn import MatrixScaler
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, size=20000)
    >>> logits = 1.5 * (rng.normal(size=(20000, 3)) + 1.5 * np.eye(3)[y])  # calibrated
    >>> scaler = MatrixScaler().fit(logits, y)
    >>> bool(abs(scaler.coef_ - np.eye(3)).max() < 0.05)     # near the identity
    True
    >>> round(scaler.score(logits, y), 3)          # the negative mean NLL
    -0.568
    """

    _kind = "matrix"

    def __init__(self, estimator: Any = None, *, reg_lambda: float = 0.0,
                 reg_mu: float | None = None, tol: float = 1e-12, max_iter: int = 100) -> None:
        self.estimator = estimator
        self.reg_lambda = reg_lambda
        self.reg_mu = reg_mu
        self.tol = tol
        self.max_iter = max_iter

    def _check_params(self, func: str) -> None:
        super()._check_params(func)
        check_scalar(self.reg_lambda, "reg_lambda", func, lo=0.0, hi=math.inf, hi_open=True)
        check_scalar(self.reg_mu, "reg_mu", func, lo=0.0, hi=math.inf, hi_open=True,
                     allow_none=True)

    def _penalty(self, k: int, func: str) -> NDArray[np.float64]:
        lam = float(self.reg_lambda)
        mu = lam if self.reg_mu is None else float(self.reg_mu)
        return _scalers.odir_penalty("matrix", k, lam, mu)


class DirichletScaler(MatrixScaler):
    __doc__ = f"""Dirichlet calibration (Kull et al. 2019): a matrix and a bias on log-probabilities.

    With the ODIR penalty.  The calibrated probabilities are ``softmax(log_softmax(z) @ coef_.T + intercept_)``: the
    Dirichlet calibration map, fitted as a multinomial logistic regression on the
    log-probabilities, minimising the mean negative log-likelihood plus the
    off-diagonal-and-intercept regularisation (ODIR)

    .. math:: \\frac{{\\lambda}}{{k(k-1)}} \\sum_{{i \\ne j}} w_{{ij}}^2
              + \\frac{{\\mu}}{{k}} \\sum_j b_j^2 .

    Parameters
    ----------
{_COMMON_PARAMS}{_REG_PARAMS}{_SOLVER_PARAMS}
    Attributes
    ----------
    coef_ : ndarray, shape (n_classes, n_classes)
        The matrix ``W`` acting on the log-probabilities.
    intercept_ : ndarray, shape (n_classes,)
    loss_ : float
        The minimised loss (mean NLL plus penalty) on the fit data.
    classes_ : ndarray, shape (n_classes,)
    n_features_in_ : int
    n_iter_ : int
        Newton steps taken.

    Notes
    -----
{_AFFINE_NOTES}
    With ``reg_lambda = 0`` this is matrix scaling of the log-probabilities; the identity map
    leaves the probabilities as the (untempered) softmax of the logits.

    References
    ----------
    .. [1] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song, P. Flach, "Beyond
       temperature scaling: Obtaining well-calibrated multi-class probabilities with Dirichlet
       calibration", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.sklearn import DirichletScaler
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, size=20000)
    >>> logits = 1.5 * (rng.normal(size=(20000, 3)) + 1.5 * np.eye(3)[y])  # calibrated
    >>> scaler = DirichletScaler(reg_lambda=1e-3).fit(3.0 * logits, y)   # over-confident
    >>> np.diag(scaler.coef_).round(1)             # about 1/3: the probabilities flattened
    array([0.3, 0.3, 0.3])
    >>> bool(abs(scaler.coef_ - np.diag(np.diag(scaler.coef_))).max() < 0.05)
    True
    """

    _on_log_probs = True
