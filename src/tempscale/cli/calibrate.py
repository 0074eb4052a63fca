"""``tempscale calibrate``: fit a calibration map on held-out logits and report before/after
metrics, on the fit data and (``--test``) on data the map never saw."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from ._console import CLIError, print_table, progress, warn
from ._readers import (
    NDArray,
    add_input_kind,
    as_logits,
    check_labels,
    load_labels,
    looks_like_probabilities,
    read_table,
    split_key,
)
from ._writers import check_output, write_array_chunks, write_text

EPILOG = """\
examples:
  tempscale calibrate val_logits.npy val_labels.npy
  tempscale calibrate val_logits.npy val_labels.npy --test test_logits.npy test_labels.npy
  tempscale calibrate val.npy y_val.npy --method dirichlet --reg-lambda 1e-3 --test te.npy y_te.npy
  tempscale calibrate val.npy y_val.npy --test te.npy y_te.npy --plot reliability.png
  tempscale calibrate val.npy y_val.npy --test te.npy y_te.npy --output te_probs.npy
  tempscale calibrate data.npz:logits data.npz:labels --json temperature.json
  tempscale calibrate scores.csv labels.csv --n-bins 10     one column: a binary problem
  tempscale calibrate data.csv --label-column label      labels in a named column of the CSV
  tempscale calibrate data.parquet --label-column label  the same in Parquet (needs pyarrow)
  tempscale calibrate --input probabilities probs.npy labels.npy

LOGITS is (n_samples, n_classes) (or one column: the logit of class 1 of a binary problem);
LABELS holds one class index in [0, n_classes) per row.  Files: .npy, .npz[:key], .csv,
.parquet.  A CSV header row is detected; a column named like labels (label, target, y,
class...) must be named with --label-column, never read as one more logit.

.npy inputs are memory-mapped and processed in row chunks (a progress bar from 2M logits on):
every fit and every metric streams over the file, so the logits need not fit in memory.
"""

#: the most ECE bins
MAX_BINS = 100_000
#: inputs with at least this many logits get a progress bar
PROGRESS_MIN = 2_000_000
#: logits per row chunk of the streamed passes
CHUNK_VALUES = 1 << 22
#: the most rows a reliability diagram is drawn from (evenly spaced rows beyond)
PLOT_MAX_ROWS = 1_000_000
METHODS = ("temperature", "vector", "matrix", "dirichlet")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a calibration map (temperature, vector, matrix or Dirichlet scaling) on held-out logits",
        description="Calibration: fit the map (by default one temperature T) minimising the "
                    "negative log-likelihood of LABELS under the calibrated softmax of LOGITS, "
                    "and compare NLL, ECE, smooth ECE, Brier score and accuracy before and "
                    "after, on the fit data and on held-out data (--test).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("logits", metavar="LOGITS", help="logits file (.npy, .npz[:key], .csv, .parquet)")
    p.add_argument("labels", metavar="LABELS", nargs="?",
                   help="labels file (.npy, .npz[:key], .csv, .parquet); not with --label-column")
    p.add_argument("--label-column", metavar="NAME",
                   help="read the labels from the column NAME of the LOGITS CSV or Parquet file "
                        "(its header names the columns); the other columns are the logits")
    add_input_kind(p)
    p.add_argument("--method", choices=METHODS, default="temperature",
                   help="the calibration map: one temperature (default), a scale and bias per "
                        "class (vector), a matrix and bias on the logits (matrix) or on the "
                        "log-probabilities (dirichlet)")
    p.add_argument("--reg-lambda", type=float, default=None, metavar="L",
                   help="matrix/dirichlet: ODIR penalty on the off-diagonal entries (default 0)")
    p.add_argument("--reg-mu", type=float, default=None, metavar="M",
                   help="matrix/dirichlet: penalty on the biases (default: --reg-lambda)")
    p.add_argument("--test", nargs=2, metavar=("LOGITS", "LABELS"),
                   help="held-out logits and labels: the map is applied to them and the "
                        "before/after metrics reported (the honest numbers)")
    p.add_argument("--plot", metavar="FILE",
                   help="save a reliability diagram before/after (.png, .svg, .pdf) of the --test "
                        "data (else of the fit data); needs matplotlib")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the calibrated probabilities (.npy or .csv) of the --test data "
                        "(else of the fit data)")
    p.add_argument("--json", metavar="OUT", help="write the fitted map and the metrics as JSON to OUT")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing --json, --output or --plot file")
    p.add_argument("--n-bins", type=int, default=15, help="bins of the ECE (default 15)")
    p.add_argument("--strategy", choices=("uniform", "quantile"), default="uniform",
                   help="ECE binning (default uniform)")
    p.set_defaults(func=run)


# ---- inputs ----------------------------------------------------------------------------------
def _row_chunks(n: int, k: int) -> Iterator[slice]:
    rows = max(1, CHUNK_VALUES // max(k, 1))
    for s in range(0, n, rows):
        yield slice(s, min(n, s + rows))


def _n_chunks(n: int, k: int) -> int:
    rows = max(1, CHUNK_VALUES // max(k, 1))
    return -(-n // rows)


def _load(logits: str, labels: str | None, label_column: str | None, input_kind: str | None,
          what: str = "") -> tuple[NDArray, NDArray, int]:
    """(logits, labels, number of classes), all checked.  The logits are float32/float64 as
    stored (a memory-mapped .npy stays mapped), float64 otherwise; one column becomes 1-D."""
    src, key = split_key(logits)
    z, column = read_table(src, key=key, what=f"{what}logits", label_column=label_column, mmap=True)
    if label_column is not None:
        if labels is not None:
            raise CLIError("give the labels either as LABELS or with --label-column, not both")
        # read_table returns the column whenever label_column is given
        y = check_labels(cast(NDArray, column), where=f"{src} (column {label_column!r})")
    elif labels is None:
        raise CLIError("give LABELS (a file), or --label-column NAME to read them from the "
                       "LOGITS CSV or Parquet file")
    else:
        y = load_labels(labels, mmap=True)
    if z.dtype.kind not in "biuf":
        raise CLIError(f"{src}: expected numbers, found dtype {z.dtype}")
    if z.dtype not in (np.float32, np.float64):
        z = np.asarray(z, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim not in (1, 2):
        raise CLIError(f"{what}logits must be a 2-D array (n_samples, n_classes) or one column, "
                       f"got shape {z.shape}")
    n = z.shape[0]
    if n == 0:
        raise CLIError(f"the {what}logits file has no rows")
    if y.shape[0] != n:
        raise CLIError(f"{what.upper() or ''}LOGITS has {n} rows but {what.upper() or ''}LABELS has "
                       f"{y.shape[0]} labels; they must match")
    k = 2 if z.ndim == 1 else z.shape[1]
    if y.min() < 0 or y.max() >= k:
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise CLIError(f"labels must be class indices in [0, {k - 1}] for {k} classes; found {bad}")
    for sl in _row_chunks(n, k):
        bad_rows = np.isnan(z[sl]) if z.ndim == 1 else np.isnan(z[sl]).any(axis=1)
        if bad_rows.any():
            raise CLIError(f"the {what}logits hold NaN (row {sl.start + int(np.argmax(bad_rows))})")
    if input_kind is None and z.ndim == 2 and looks_like_probabilities(z[:65536]):
        warn("every row lies in [0, 1] and sums to 1: these look like probabilities, and "
             "calibrate reads them as logits; pass --input probabilities to calibrate them "
             "(their logs are used), or --input logits to silence this")
    if input_kind == "probabilities":
        zf = np.asarray(z, dtype=np.float64)
        if zf.ndim == 1:
            if np.any((zf < 0) | (zf > 1)):
                raise CLIError("--input probabilities with one column needs the probability of "
                               "class 1, in [0, 1]")
            zf = np.stack([1.0 - zf, zf], axis=1)
        z = as_logits(zf, "probabilities", "probabilities")
    return z, y, k


# ---- the map ---------------------------------------------------------------------------------
class _Map:
    """A fitted calibration map: ``logits(z_chunk)`` gives ``(u, T)``, the calibrated
    probabilities being ``softmax(u / T)``."""

    def __init__(self, method: str, temperature: float = 1.0, estimator: Any = None) -> None:
        self.method = method
        self.temperature = temperature
        self.estimator = estimator

    def logits(self, z: NDArray) -> tuple[NDArray, float]:
        from .._args import binary_columns

        if self.estimator is None:
            return np.asarray(binary_columns(np.asarray(z, dtype=np.float64))), self.temperature
        u = self.estimator.predict_log_proba(self._finite(z))
        return np.asarray(u, dtype=np.float64), 1.0

    def probabilities(self, z: NDArray) -> NDArray:
        from .._softmax import softmax

        u, T = self.logits(z)
        return np.asarray(softmax(u, T, axis=-1), dtype=np.float64)

    @staticmethod
    def _finite(z: NDArray) -> NDArray:
        """The affine maps need finite values: ``-inf`` (log of a zero probability) is floored
        at ``log(1e-300)``."""
        zf = np.asarray(z, dtype=np.float64)
        if np.isneginf(zf).any():
            zf = np.maximum(zf, math.log(1e-300))
        if not np.all(np.isfinite(zf)):
            raise CLIError("--method vector/matrix/dirichlet needs finite logits (found +inf)")
        return zf

    def describe(self) -> dict[str, Any]:
        if self.estimator is None:
            T = self.temperature
            return {"temperature": T if math.isfinite(T) else str(T)}
        est = self.estimator
        out: dict[str, Any] = {"coef": np.asarray(est.coef_).tolist(),
                               "intercept": np.asarray(est.intercept_).tolist(),
                               "loss": float(est.loss_), "n_iter": int(est.n_iter_)}
        if self.method in ("matrix", "dirichlet"):
            out["reg_lambda"] = float(est.reg_lambda)
            out["reg_mu"] = float(est.reg_lambda if est.reg_mu is None else est.reg_mu)
        return out


def _fit(args: argparse.Namespace, z: NDArray, y: NDArray) -> _Map:
    if args.method == "temperature":
        from ..calibration import fit_temperature

        return _Map("temperature", float(fit_temperature(z, y)))
    from ..sklearn import DirichletScaler, MatrixScaler, VectorScaler

    if args.method == "vector":
        est: Any = VectorScaler()
    else:
        cls = MatrixScaler if args.method == "matrix" else DirichletScaler
        lam = 0.0 if args.reg_lambda is None else args.reg_lambda
        est = cls(reg_lambda=lam, reg_mu=args.reg_mu)
    # the fit reads the rows in chunks: a memory-mapped file is never copied whole (the logs of
    # --input probabilities are in memory already; their -inf, from zeros, are floored)
    est.fit(_Map._finite(z) if args.input == "probabilities" else z, y)
    return _Map(args.method, estimator=est)


# ---- metrics, streamed -------------------------------------------------------------------------
_ROWS = [("NLL", "nll"), ("ECE", "ece"), ("smooth ECE", "smooth_ece"), ("Brier", "brier"),
         ("accuracy", "accuracy")]


def _metrics(z: NDArray, y: NDArray, k: int, fitted: _Map, args: argparse.Namespace,
             advance: Callable[..., None]) -> tuple[dict[str, float], dict[str, float]]:
    """Before/after metrics of ``z``, one pass of row chunks (:class:`CalibrationMeter`)."""
    from .._args import binary_columns
    from ..calibration import CalibrationMeter

    before = CalibrationMeter(args.n_bins, strategy=args.strategy)
    after_T = fitted.temperature if fitted.estimator is None else 1.0
    after = CalibrationMeter(args.n_bins, strategy=args.strategy, temperature=after_T)
    for sl in _row_chunks(z.shape[0], k):
        zc = np.asarray(z[sl], dtype=np.float64)
        yc = np.asarray(y[sl])
        before.update(binary_columns(zc), yc)
        u, _ = fitted.logits(zc)
        after.update(u, yc)
        advance()
    keys = [key for _, key in _ROWS]
    b, a = before.compute(), after.compute()
    return ({key: float(b[key]) for key in keys}, {key: float(a[key]) for key in keys})


def _table(title: str, before: dict[str, float], after: dict[str, float], label: str,
           n_bins: int) -> None:
    rows = [[(f"ECE ({n_bins} bins)" if key == "ece" else name), before[key], after[key],
             after[key] - before[key]] for name, key in _ROWS]
    print_table(title, ["metric", "before (T = 1)", f"after ({label})", "change"], rows)


# ---- outputs ---------------------------------------------------------------------------------
def _write_probabilities(path: Path, force: bool, z: NDArray, k: int, fitted: _Map,
                         advance: Callable[..., None]) -> Path:
    dtype = np.float32 if z.dtype == np.float32 else np.float64

    def chunks() -> Iterator[NDArray]:
        for sl in _row_chunks(z.shape[0], k):
            yield fitted.probabilities(z[sl])
            advance()

    return write_array_chunks(path, force, (z.shape[0], k), chunks(), dtype=dtype)


def _plot(path: Path, force: bool, z: NDArray, y: NDArray, fitted: _Map,
          args: argparse.Namespace, where: str) -> Path:
    from .._args import binary_columns
    from .._softmax import softmax
    from .plot import pyplot, save_figure

    pyplot()
    from ..plot import ReliabilityDisplay

    n = z.shape[0]
    rows: slice | NDArray = slice(None)
    if n > PLOT_MAX_ROWS:
        rows = np.linspace(0, n - 1, PLOT_MAX_ROWS).astype(np.int64)
        warn(f"--plot: the diagram is drawn from {PLOT_MAX_ROWS:,} evenly spaced rows of {n:,}")
    zs = np.asarray(z[rows], dtype=np.float64)
    ys = np.asarray(y[rows])
    before = np.asarray(softmax(binary_columns(zs), axis=-1))
    after = fitted.probabilities(zs)
    label = (f"T = {fitted.temperature:.4g}" if fitted.method == "temperature"
             else f"{fitted.method} scaling")
    disp = ReliabilityDisplay.from_predictions(before, ys, prediction_after=after,
                                               n_bins=args.n_bins, strategy=args.strategy,
                                               names=[f"before ({where})", f"after, {label}"])
    return save_figure(disp.figure_, path, dpi=120, force=force)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.n_bins <= MAX_BINS:
        raise CLIError(f"--n-bins must be in [1, {MAX_BINS}], got {args.n_bins}")
    if args.method not in ("matrix", "dirichlet") and (args.reg_lambda is not None
                                                       or args.reg_mu is not None):
        raise CLIError("--reg-lambda and --reg-mu go with --method matrix or dirichlet")
    for flag, value in (("--reg-lambda", args.reg_lambda), ("--reg-mu", args.reg_mu)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise CLIError(f"{flag} must be a finite number >= 0, got {value}")
    outs = [getattr(args, a) for a in ("json", "output", "plot") if getattr(args, a)]
    if len({str(Path(o).resolve()) for o in outs}) != len(outs):
        raise CLIError("--json, --output and --plot must name different files")
    out = check_output(args.json, args.force) if args.json else None
    out_probs = check_output(args.output, args.force) if args.output else None
    if out_probs is not None and out_probs.suffix.lower() not in (".npy", ".csv", ".txt"):
        raise CLIError(f"--output: cannot write {out_probs.suffix or 'extension-less'!r} files "
                       "(use .npy or .csv)")
    out_plot = None
    if args.plot:
        from .plot import check_figure_path

        out_plot = check_figure_path(args.plot, args.force)
    z, y, k = _load(args.logits, args.labels, args.label_column, args.input)
    test = None
    if args.test:
        zt, yt, kt = _load(args.test[0], args.test[1], None, args.input, what="test ")
        if kt != k or (zt.ndim == 1) != (z.ndim == 1):
            raise CLIError(f"--test logits have {kt} classes"
                           + (" (one column)" if zt.ndim == 1 else "")
                           + f" but LOGITS have {k}" + (" (one column)" if z.ndim == 1 else ""))
        test = (zt, yt)
    big = z.size + (0 if test is None else test[0].size) >= PROGRESS_MIN
    target = test if test is not None else (z, y)
    total = 1 + _n_chunks(z.shape[0], k) + (0 if test is None else _n_chunks(test[0].shape[0], k))
    total += _n_chunks(target[0].shape[0], k) if out_probs is not None else 0
    with progress(f"{args.method} scaling: fit", total=total, disable=not big) as advance:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted = _fit(args, z, y)
            advance(description="metrics (fit data)")
            fit_metrics = _metrics(z, y, k, fitted, args, advance)
            test_metrics = None
            if test is not None:
                advance(0, description="metrics (test data)")
                test_metrics = _metrics(test[0], test[1], k, fitted, args, advance)
            if out_probs is not None:
                advance(0, description="writing probabilities")
                out_probs = _write_probabilities(out_probs, args.force, target[0], k, fitted, advance)
    said = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if args.input is None and "probabilit" in text.lower() and looks_like_probabilities(z[:65536]):
            continue  # said above, with the flag to pass
        if text not in said:
            said.add(text)
            warn(text)
    n_test = "" if test is None else f"; test: {test[0].shape[0]} samples"
    if fitted.method == "temperature":
        T = fitted.temperature
        label = f"T = {T:.4g}"
        print(f"T = {T:.10g}   ({z.shape[0]} samples, {k} classes{n_test})")
    else:
        label = f"{fitted.method} scaling"
        est = fitted.estimator
        print(f"{fitted.method} scaling: {np.size(est.coef_) + np.size(est.intercept_)} "
              f"parameters, loss {est.loss_:.6g} after {est.n_iter_} Newton steps   "
              f"({z.shape[0]} samples, {k} classes{n_test})")
    title = "temperature scaling" if fitted.method == "temperature" else f"{fitted.method} scaling"
    _table(f"{title}: fit data" if test is not None else title, *fit_metrics, label, args.n_bins)
    if test_metrics is not None:
        _table(f"{title}: test data (held out)", *test_metrics, label, args.n_bins)
    if out_probs is not None:
        print(f"wrote {out_probs}")
    if out_plot is not None:
        where = "test data" if test is not None else "fit data"
        print(f"wrote {_plot(out_plot, args.force, target[0], target[1], fitted, args, where)}")
    if out is not None:
        doc: dict[str, Any] = {"method": fitted.method, **fitted.describe(),
                               "n_samples": int(z.shape[0]), "n_classes": int(k),
                               "n_bins": args.n_bins, "strategy": args.strategy,
                               "before": fit_metrics[0], "after": fit_metrics[1]}
        if test_metrics is not None:
            doc["test"] = {"n_samples": int(test[0].shape[0]) if test is not None else 0,
                           "before": test_metrics[0], "after": test_metrics[1]}
        out = write_text(out, args.force, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out}")
    return 0
