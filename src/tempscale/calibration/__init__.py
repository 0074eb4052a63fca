"""Temperature scaling and calibration metrics.

* :func:`fit_temperature` -- the NLL-optimal temperature of held-out logits (Guo et al. 2017),
  found exactly: the negative log-likelihood is convex in :math:`\\beta = 1/T`, so a safeguarded
  Halley/Newton iteration on :math:`\\beta` reaches the optimum in a few passes over the data.
* :class:`TemperatureScaler` -- the same as a scikit-learn estimator on logits (defined in
  :mod:`tempscale.sklearn`; scikit-learn is imported only when the class is first asked for).
* :class:`ProbabilitiesAsLogitsWarning` -- probabilities were given where logits are expected.
* :func:`calibration_error` (ECE / RMSCE / MCE, top-label or classwise, with a bootstrap interval),
  :func:`reliability_curve` (per-bin data for reliability diagrams), :func:`brier_score`,
  :func:`nll`.  ``calibration_error(..., method="smooth")`` is the smooth ECE (Błasiok &
  Nakkiran 2023), ``debias=True`` the debiased l2 error (Kumar et al. 2019).
* :class:`CalibrationMeter` -- the same metrics accumulated batch by batch (``update``),
  merged across workers (``merge``) and computed at the end (``compute``).

Every metric takes ``(prediction, labels)``: probabilities, or logits with ``input="logits"``.
``reliability_curve(..., strategy="isotonic")`` is the CORP diagram (isotonic blocks).

Dask arrays (prediction, labels, weights) run on their cluster: the fit and the metrics
map-reduce per-block sums (see :mod:`tempscale.calibration._dask`); only quantile bins, the
smooth ECE, bootstrap intervals and CORP curves bring per-sample confidences (two floats a
sample, never the logits) to the client.

Shapes: logits/probabilities are ``(n_samples, n_classes)``; a binary problem may be given as one
column (or a 1-D array) holding the logit (probability) of class 1, read as the two columns
``[0, z]`` (``[1 - p, p]``).  Labels are integers in ``[0, n_classes)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fit import fit_temperature
from ._meter import CalibrationMeter
from ._metrics import brier_score, calibration_error, nll, reliability_curve
from ._types import (
    CalibrationErrorResult,
    CalibrationWarning,
    ProbabilitiesAsLogitsWarning,
    ReliabilityCurve,
)

if TYPE_CHECKING:
    from ..sklearn import DirichletScaler as DirichletScaler
    from ..sklearn import MatrixScaler as MatrixScaler
    from ..sklearn import TemperatureScaler as TemperatureScaler
    from ..sklearn import VectorScaler as VectorScaler

__all__ = [
    "CalibrationErrorResult",
    "CalibrationMeter",
    "CalibrationWarning",
    "DirichletScaler",
    "MatrixScaler",
    "ProbabilitiesAsLogitsWarning",
    "ReliabilityCurve",
    "TemperatureScaler",
    "VectorScaler",
    "brier_score",
    "calibration_error",
    "fit_temperature",
    "nll",
    "reliability_curve",
]


def __getattr__(name: str) -> Any:
    # the scalers subclass scikit-learn's BaseEstimator: import them only when asked for
    if name in ("DirichletScaler", "MatrixScaler", "TemperatureScaler", "VectorScaler"):
        from .. import sklearn

        return getattr(sklearn, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "TemperatureScaler"])
