"""The calibration package's warnings and result tuples."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["CalibrationErrorResult", "CalibrationWarning", "ProbabilitiesAsLogitsWarning",
           "ReliabilityCurve"]

#: shown as the home of the public names below (their documented path, used by pickle too)
_PUBLIC_MODULE = "tempscale.calibration"


class CalibrationWarning(UserWarning):
    """A temperature fit hit a degenerate case (separable data, constant logits, one class...).

    The fit still returns a defined temperature; the message says which one and why.
    """


class ProbabilitiesAsLogitsWarning(UserWarning):
    """Probabilities (rows in [0, 1] summing to 1) were passed where logits are expected.

    Softmax of probabilities is not the identity: they would be read as (nearly uniform) logits.
    Pass logits or log-probabilities, temper probabilities with :func:`tempscale.temper`, or use
    ``input="probabilities"`` with the metrics.
    """


class ReliabilityCurve(NamedTuple):
    """Per-bin data of a reliability diagram (see :func:`reliability_curve`).

    Fields
    ------
    bin_edges : ndarray, shape (n_bins + 1,)
        Bin ``b`` holds confidences in ``(bin_edges[b], bin_edges[b + 1]]`` (the first bin also
        holds ``bin_edges[0]``).
    confidence : ndarray, shape (n_bins,)
        Mean (weighted) confidence in each bin; NaN for an empty bin.
    accuracy : ndarray, shape (n_bins,)
        Observed frequency of the event (top-label: the prediction is right) in each bin; NaN
        for an empty bin.
    counts : ndarray of int64, shape (n_bins,)
        Number of samples in each bin.
    """

    bin_edges: NDArray[np.float64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    counts: NDArray[np.int64]


class CalibrationErrorResult(NamedTuple):
    """A calibration error with a bootstrap confidence interval.

    Returned by :func:`calibration_error` when ``n_bootstrap > 0``: ``estimate`` is the error on
    the full data, ``(low, high)`` the percentile interval of the bootstrap replicates.
    """

    estimate: float
    low: float
    high: float


for _cls in (CalibrationWarning, ProbabilitiesAsLogitsWarning, ReliabilityCurve,
             CalibrationErrorResult):
    _cls.__module__ = _PUBLIC_MODULE
