"""tempscale: softmax with temperature, exact and fast on every array library.

``softmax(x, T)``, ``log_softmax``, ``logsumexp`` and ``temper`` follow one numerical contract on
NumPy, PyTorch, JAX and any Python Array API array: ``T = 0`` is argmax (ties share), ``T = inf``
is uniform, ``-inf`` logits are masked, fully masked rows give zeros (never NaN), and nothing
overflows.  See the README for a tour.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from . import calibration as calibration  # public submodules, re-exported
from . import distill as distill
from . import sampling as sampling
from ._config import config, get_config
from ._entropy import entropy, perplexity, solve_temperature
from ._native import get_num_threads, set_num_threads, show_config
from ._softmax import log_softmax, logsumexp, softmax, temper
from ._version import __version__
from .calibration import (
    CalibrationMeter,
    CalibrationWarning,
    ProbabilitiesAsLogitsWarning,
    brier_score,
    calibration_error,
    fit_temperature,
    nll,
    reliability_curve,
)
from .distill import SparseTeacher, kd_loss, sparse_kd_loss
from .sampling import gumbel_softmax, sample, warp

if _TYPE_CHECKING:  # imported lazily at run time (scikit-learn is optional)
    from .sklearn import DirichletScaler, MatrixScaler, TemperatureScaler, VectorScaler

# a literal list (type checkers read it): kept sorted by tests/test_public_api.py
__all__ = [
    "CalibrationMeter",
    "CalibrationWarning",
    "DirichletScaler",
    "MatrixScaler",
    "ProbabilitiesAsLogitsWarning",
    "SparseTeacher",
    "TemperatureScaler",
    "VectorScaler",
    "__version__",
    "brier_score",
    "calibration_error",
    "config",
    "entropy",
    "fit_temperature",
    "get_config",
    "get_num_threads",
    "gumbel_softmax",
    "kd_loss",
    "log_softmax",
    "logsumexp",
    "nll",
    "perplexity",
    "reliability_curve",
    "sample",
    "set_num_threads",
    "show_config",
    "softmax",
    "solve_temperature",
    "sparse_kd_loss",
    "temper",
    "warp",
]


_SCALERS = ("DirichletScaler", "MatrixScaler", "TemperatureScaler", "VectorScaler")


def __getattr__(name: str) -> _Any:
    # the scalers subclass scikit-learn's BaseEstimator: import sklearn only when asked
    if name in _SCALERS:
        from . import sklearn

        return getattr(sklearn, name)
    raise AttributeError(f"module 'tempscale' has no attribute {name!r}")
