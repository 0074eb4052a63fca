"""CalibrationMeter: calibration metrics accumulated over batches and merged across workers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._args import check_input, coerce, to_numpy
from .._softmax import log_softmax, softmax, temper
from .._typing import ArrayLike
from .._validation import check_choice, check_scalar, param_error
from ._checks import check_labels, require_concrete
from ._metrics import _binned, _ce_from_bins, _check_rows, _logits_of, _one_column, _probabilities_np
from ._smooth import debiased_square_error, smooth_ece

__all__ = ["CalibrationMeter"]

F64 = NDArray[np.float64]


class CalibrationMeter:
    r"""Calibration metrics of a classifier accumulated batch by batch, mergeable across workers.

    ``update(prediction, labels)`` adds a batch, ``merge(other)`` adds another meter's data (for
    example one per worker or per process), and ``compute()`` returns the metrics of all the
    data seen, equal (to rounding) to the one-shot functions on the concatenated batches:
    :func:`calibration_error` (top-label ECE, RMSCE, MCE, the debiased RMSCE and the smooth
    ECE), :func:`nll`, :func:`brier_score` and the accuracy, all of the predictions at the
    meter's ``temperature``.

    Parameters
    ----------
    n_bins : int, default 15
        Number of bins of the binned errors.
    strategy : {"uniform", "quantile"}, default "uniform"
        Equal-width bins (whose per-bin sums are the meter's mergeable state) or equal-mass bins
        (whose edges depend on all the data: computed from the kept pairs at ``compute()``).
    temperature : float, default 1.0
        The temperature applied to every batch: logits go through ``softmax(z, temperature)``,
        probabilities through ``temper(p, temperature)``.  ``0`` and ``inf`` are the limits.
    input : {"logits", "probabilities"}, default "logits"
        What the predictions hold.

    Notes
    -----
    The state is: the number of rows, the per-bin count, confidence sum and correctness sum of
    the equal-width bins, the sums of the per-row NLL and Brier score, and the number of correct
    predictions, all of which add up under ``merge``.  The smooth ECE (and equal-mass bins) are
    not functions of fixed-size sums: the meter also keeps every row's top-label
    ``(confidence, correct)`` pair, 16 bytes per row, and ``merge`` concatenates them.

    A one-column prediction is a binary problem (``[0, z]`` for logits, ``[1 - p, p]`` for
    probabilities); its Brier score is the one-column one, as :func:`brier_score` gives.  Every
    batch must have the same number of classes.

    Examples
    --------
    >>> import numpy as np
    >>> from tempscale.calibration import CalibrationMeter, calibration_error
    >>> rng = np.random.default_rng(0)
    >>> logits, labels = rng.normal(size=(1000, 4)) * 3, rng.integers(0, 4, 1000)
    >>> a, b = CalibrationMeter(temperature=2.0), CalibrationMeter(temperature=2.0)
    >>> _ = a.update(logits[:300], labels[:300])       # worker 1
    >>> _ = b.update(logits[300:], labels[300:])       # worker 2
    >>> m = a.merge(b).compute()
    >>> sorted(m)
    ['accuracy', 'brier', 'debiased_rmsce', 'ece', 'mce', 'n', 'nll', 'rmsce', 'smooth_ece']
    >>> m["n"]
    1000
    >>> one_shot = calibration_error(logits / 2.0, labels, input="logits")
    >>> bool(abs(m["ece"] - one_shot) < 1e-12)
    True
    """

    def __init__(self, n_bins: int = 15, *, strategy: str = "uniform", temperature: float = 1.0,
                 input: str = "logits") -> None:
        func = "CalibrationMeter"
        self.n_bins = check_scalar(n_bins, "n_bins", func, lo=1, integer=True)
        self.strategy = check_choice(strategy, ("uniform", "quantile"), "strategy", func)
        self.temperature = check_scalar(temperature, "temperature", func, lo=0.0)
        self.input = check_input(input, func)
        self.reset()

    def reset(self) -> CalibrationMeter:
        """Forget all the data seen; returns the meter."""
        self.n_ = 0
        self.n_classes_: int | None = None
        self.one_column_: bool | None = None
        self.bin_count_ = np.zeros(self.n_bins, dtype=np.int64)
        self.bin_confidence_ = np.zeros(self.n_bins)
        self.bin_correct_ = np.zeros(self.n_bins)
        self.nll_sum_ = 0.0
        self.brier_sum_ = 0.0
        self.correct_ = 0
        self._confidence: list[F64] = []
        self._correct: list[F64] = []
        return self

    # ----------------------------------------------------------------------------------------
    def _batch(self, prediction: Any, labels: Any) -> tuple[F64, F64, NDArray[np.intp]]:
        """(probabilities, log-probabilities, labels) of one batch, at the meter's temperature."""
        func = "CalibrationMeter.update"
        T = self.temperature
        if self.input == "logits":
            z = _logits_of(prediction, func)
            _check_rows(z, func)
            p = np.asarray(to_numpy(softmax(z, T)), dtype=np.float64)
            lp = np.asarray(to_numpy(log_softmax(z, T)), dtype=np.float64)
            y = check_labels(labels, p.shape[0], p.shape[1], func)
            return p, lp, y
        p, y, _ = _probabilities_np(prediction, labels, "probabilities", func)
        if T != 1.0:
            p = np.asarray(to_numpy(temper(p, T)), dtype=np.float64)
        with np.errstate(divide="ignore"):
            lp = np.log(p)
        return p, lp, y

    def update(self, prediction: ArrayLike, labels: ArrayLike) -> CalibrationMeter:
        """Add a batch: ``prediction`` (n, n_classes) or (n,) and integer ``labels`` (n,).

        Any array library's arrays (NumPy, PyTorch, JAX...) are accepted; returns the meter.
        """
        func = "CalibrationMeter.update"
        pred: Any = coerce(prediction)
        require_concrete(pred, "prediction", func)
        shape = tuple(np.shape(pred) if getattr(pred, "shape", None) is None else pred.shape)
        one_col = _one_column(pred)
        p, lp, y = self._batch(pred, labels)
        k = p.shape[1]
        if self.n_classes_ is not None and (k != self.n_classes_ or one_col != self.one_column_):
            have = f"{self.n_classes_} classes" + (" (one column)" if self.one_column_ else "")
            raise param_error("prediction", func, f"a batch with {have}, as the earlier ones",
                              f"an array of shape {shape}")
        self.n_classes_, self.one_column_ = k, one_col
        rows = np.arange(len(y))
        conf = p.max(axis=1)
        hit = (p.argmax(axis=1) == y).astype(np.float64)
        if self.strategy == "uniform":
            _, wsum, csum, asum, counts = _binned(conf, hit, None, self.n_bins, "uniform")
            self.bin_count_ += counts
            self.bin_confidence_ += csum
            self.bin_correct_ += asum
        onehot = np.zeros_like(p)
        onehot[rows, y] = 1.0
        brier = np.sum((p - onehot) ** 2, axis=1)
        self.brier_sum_ += float(np.sum(brier / 2.0 if one_col else brier))
        self.nll_sum_ += float(np.sum(-lp[rows, y]))
        self.correct_ += int(np.sum(hit))
        self.n_ += len(y)
        self._confidence.append(conf)
        self._correct.append(hit)
        return self

    def merge(self, other: CalibrationMeter) -> CalibrationMeter:
        """Add the data of ``other`` (a meter with the same settings) to this one; returns it."""
        func = "CalibrationMeter.merge"
        if not isinstance(other, CalibrationMeter):
            raise param_error("other", func, "a CalibrationMeter", type(other).__name__, TypeError)
        mine = (self.n_bins, self.strategy, self.temperature, self.input)
        theirs = (other.n_bins, other.strategy, other.temperature, other.input)
        if mine != theirs:
            raise param_error("other", func, "a meter with the same (n_bins, strategy, "
                              f"temperature, input) {mine}", f"a meter with {theirs}")
        if other.n_ == 0:
            return self
        if self.n_classes_ is not None and (other.n_classes_, other.one_column_) != (
                self.n_classes_, self.one_column_):
            raise param_error("other", func, f"a meter of {self.n_classes_} classes",
                              f"a meter of {other.n_classes_} classes")
        self.n_classes_, self.one_column_ = other.n_classes_, other.one_column_
        self.n_ += other.n_
        self.bin_count_ = self.bin_count_ + other.bin_count_
        self.bin_confidence_ = self.bin_confidence_ + other.bin_confidence_
        self.bin_correct_ = self.bin_correct_ + other.bin_correct_
        self.nll_sum_ += other.nll_sum_
        self.brier_sum_ += other.brier_sum_
        self.correct_ += other.correct_
        self._confidence = self._confidence + other._confidence
        self._correct = self._correct + other._correct
        return self

    def compute(self) -> dict[str, float]:
        """The metrics of all the data seen.

        Returns
        -------
        dict
            ``ece``, ``rmsce``, ``mce`` (top-label binned errors, ``norm="l1"``, ``"l2"``,
            ``"max"``), ``debiased_rmsce`` (``norm="l2", debias=True``), ``smooth_ece``
            (``method="smooth"``), ``nll``, ``brier``, ``accuracy`` and ``n`` (the number of rows).
        """
        if self.n_ == 0:
            raise param_error("CalibrationMeter", "compute", "updated with at least one row",
                              "a meter with no data")
        n = float(self.n_)
        conf = np.concatenate(self._confidence)
        hit = np.concatenate(self._correct)
        if self.strategy == "uniform":
            wsum: F64 = self.bin_count_.astype(np.float64)
            csum, asum = self.bin_confidence_, self.bin_correct_
        else:
            _, wsum, csum, asum, _ = _binned(conf, hit, None, self.n_bins, "quantile")
        return {
            "ece": _ce_from_bins(wsum, csum, asum, "l1", n),
            "rmsce": math.sqrt(_ce_from_bins(wsum, csum, asum, "l2", n)),
            "mce": _ce_from_bins(wsum, csum, asum, "max", n),
            "debiased_rmsce": math.sqrt(max(debiased_square_error(wsum, csum, asum, n), 0.0)),
            "smooth_ece": smooth_ece(conf, hit),
            "nll": self.nll_sum_ / n,
            "brier": self.brier_sum_ / n,
            "accuracy": self.correct_ / n,
            "n": self.n_,
        }

    def __repr__(self) -> str:
        return (f"CalibrationMeter(n_bins={self.n_bins}, strategy={self.strategy!r}, "
                f"temperature={self.temperature}, input={self.input!r})  # {self.n_} rows")
