"""scikit-learn estimators: :class:`TemperatureScaler` (importing this module imports scikit-learn).

The class is also reachable as ``tempscale.TemperatureScaler`` and
``tempscale.calibration.TemperatureScaler``, which import this module on first use only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._args import binary_columns, coerce
from ._softmax import log_softmax, softmax
from ._typing import ArrayLike
from .calibration._fit import fit_logits

__all__ = ["TemperatureScaler"]


def _decision_column(X: Any) -> Any:
    """A binary classifier's 1-D decision scores as one column; anything else unchanged."""
    ndim = getattr(X, "ndim", None)
    if ndim is None and isinstance(X, (list, tuple)):
        ndim = np.ndim(X)
    if ndim == 1:
        return np.reshape(np.asarray(coerce(X)), (-1, 1))
    return X


# scikit-learn ships no type stubs, so its base classes are Any to mypy
class TemperatureScaler(ClassifierMixin, TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Temperature scaling as a scikit-learn classifier on logits.

    ``fit(logits, y)`` finds the NLL-optimal temperature with
    :func:`tempscale.calibration.fit_temperature`; ``predict_proba`` returns
    ``softmax(logits / T)``, ``transform`` the calibrated log-probabilities, ``predict`` the
    argmax class (unchanged by ``T``).

    Parameters
    ----------
    tol : float, default 1e-12
        Relative accuracy of the temperature (see :func:`tempscale.calibration.fit_temperature`).
    max_iter : int, default 100

    Attributes
    ----------
    temperature_ : float
        The fitted temperature.
    classes_ : ndarray, shape (n_classes,)
        Class labels, in column order of the logits.
    n_features_in_ : int
        Number of logit columns seen in ``fit``.
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
    """

    def __init__(self, *, tol: float = 1e-12, max_iter: int = 100) -> None:
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> TemperatureScaler:
        """Fit the temperature on logits ``X`` and labels ``y``; returns ``self``."""
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
        result = fit_logits(Z, codes, sample_weight=sample_weight, tol=self.tol,
                            max_iter=self.max_iter, threads=None, func="TemperatureScaler.fit")
        self.temperature_ = result.temperature
        self.n_iter_ = max(1, result.n_iter)
        return self

    def _tempered(self, X: ArrayLike, log: bool) -> NDArray[Any]:
        check_is_fitted(self)
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
        idx = np.searchsorted(self.classes_, yy)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == yy):
            raise ValueError("TemperatureScaler.score: y holds labels not seen in fit")
        w = None if sample_weight is None else np.asarray(coerce(sample_weight), dtype=np.float64)
        return -float(np.average(-lp[np.arange(len(idx)), idx], weights=w))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        return tags
