"""tempscale: softmax with temperature, exact and fast on every array library.

``softmax(x, T)``, ``log_softmax``, ``logsumexp`` and ``temper`` follow one numerical contract on
NumPy, PyTorch, JAX and any Python Array API array: ``T = 0`` is argmax (ties share), ``T = inf``
is uniform, ``-inf`` logits are masked, fully masked rows give zeros (never NaN), and nothing
overflows.  See the README for a tour.
"""

from . import calibration, distill, sampling
from ._entropy import entropy, perplexity, solve_temperature
from ._native import get_num_threads, set_num_threads, show_config
from ._softmax import log_softmax, logsumexp, softmax, temper
from ._version import __version__
from .calibration import (
    CalibrationWarning,
    ProbabilitiesAsLogitsWarning,
    brier_score,
    calibration_error,
    fit_temperature,
    nll,
    reliability_curve,
)
from .distill import kd_loss
from .sampling import gumbel_softmax, sample, warp

__all__ = sorted([
    "CalibrationWarning",
    "ProbabilitiesAsLogitsWarning",
    "TemperatureScaler",
    "__version__",
    "brier_score",
    "nll",
    "reliability_curve",
    "calibration_error",
    "entropy",
    "fit_temperature",
    "gumbel_softmax",
    "kd_loss",
    "perplexity",
    "sample",
    "solve_temperature",
    "warp",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "log_softmax",
    "logsumexp",
    "softmax",
    "temper",
])


def __getattr__(name):
    # TemperatureScaler subclasses scikit-learn's BaseEstimator: import sklearn only when asked
    if name == "TemperatureScaler":
        return calibration.TemperatureScaler
    raise AttributeError(f"module 'tempscale' has no attribute {name!r}")
