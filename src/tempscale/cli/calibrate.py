"""``tempscale calibrate``: fit the temperature of held-out logits and report before/after metrics."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from typing import cast

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
from ._writers import check_output, write_text

EPILOG = """\
examples:
  tempscale calibrate val_logits.npy val_labels.npy
  tempscale calibrate data.npz:logits data.npz:labels --json temperature.json
  tempscale calibrate scores.csv labels.csv --n-bins 10     one column: a binary problem
  tempscale calibrate data.csv --label-column label      labels in a named column of the CSV
  tempscale calibrate --input probabilities probs.npy labels.npy

LOGITS is (n_samples, n_classes) (or one column: the logit of class 1 of a binary problem);
LABELS holds one class index in [0, n_classes) per row.  Files: .npy, .npz[:key], .csv.
A CSV header row is detected; a column named like labels (label, target, y, class...) must be
named with --label-column, never read as one more logit.
"""

#: the most ECE bins
MAX_BINS = 100_000
#: inputs with at least this many logits get a progress bar
PROGRESS_MIN = 2_000_000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit the NLL-optimal temperature of held-out logits (temperature scaling)",
        description="Temperature scaling: find the T minimising the negative log-likelihood of "
                    "LABELS under softmax(LOGITS / T), and compare NLL, ECE, Brier score and "
                    "accuracy before (T = 1) and after.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("logits", metavar="LOGITS", help="logits file (.npy, .npz[:key], .csv)")
    p.add_argument("labels", metavar="LABELS", nargs="?",
                   help="labels file (.npy, .npz[:key], .csv); not with --label-column")
    p.add_argument("--label-column", metavar="NAME",
                   help="read the labels from the column NAME of the LOGITS CSV file (its header "
                        "row names the columns); the other columns are the logits")
    add_input_kind(p)
    p.add_argument("--json", metavar="OUT", help="write the fitted T and the metrics as JSON to OUT")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--n-bins", type=int, default=15, help="bins of the ECE (default 15)")
    p.add_argument("--strategy", choices=("uniform", "quantile"), default="uniform",
                   help="ECE binning (default uniform)")
    p.set_defaults(func=run)


def _load(args: argparse.Namespace) -> tuple[NDArray, NDArray, int]:
    """(logits as float64, labels, number of classes), all checked."""
    src, key = split_key(args.logits)
    z, column = read_table(src, key=key, what="logits", label_column=args.label_column)
    if args.label_column is not None:
        if args.labels is not None:
            raise CLIError("give the labels either as LABELS or with --label-column, not both")
        # read_table returns the column whenever label_column is given
        y = check_labels(cast(NDArray, column), where=f"{src} (column {args.label_column!r})")
    elif args.labels is None:
        raise CLIError("give LABELS (a file), or --label-column NAME to read them from the "
                       "LOGITS CSV file")
    else:
        y = load_labels(args.labels)
    if z.dtype.kind not in "biuf":
        raise CLIError(f"{src}: expected numbers, found dtype {z.dtype}")
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim not in (1, 2):
        raise CLIError(f"logits must be a 2-D array (n_samples, n_classes) or one column, got shape {z.shape}")
    n = z.shape[0]
    if n == 0:
        raise CLIError("the logits file has no rows")
    if y.shape[0] != n:
        raise CLIError(f"LOGITS has {n} rows but LABELS has {y.shape[0]} labels; they must match")
    k = 2 if z.ndim == 1 else z.shape[1]
    if y.min() < 0 or y.max() >= k:
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise CLIError(f"labels must be class indices in [0, {k - 1}] for {k} classes; found {bad}")
    if np.isnan(z).any():
        raise CLIError(f"the logits hold NaN (row {int(np.argwhere(np.isnan(z))[0][0])})")
    if args.input is None and z.ndim == 2 and looks_like_probabilities(z):
        warn("every row lies in [0, 1] and sums to 1: these look like probabilities, and "
             "calibrate reads them as logits; pass --input probabilities to calibrate them "
             "(their logs are used), or --input logits to silence this")
    if args.input == "probabilities":
        if z.ndim == 1:
            if np.any((z < 0) | (z > 1)):
                raise CLIError("--input probabilities with one column needs the probability of "
                               "class 1, in [0, 1]")
            z = np.stack([1.0 - z, z], axis=1)
        z = as_logits(z, "probabilities", "probabilities")
    return z, y, k


def _metrics(z: NDArray, y: NDArray, T: float, n_bins: int, strategy: str) -> dict[str, float]:
    """NLL, ECE, Brier score and accuracy of ``softmax(z / T)``."""
    from .._args import binary_columns
    from .._softmax import softmax
    from ..calibration import brier_score, calibration_error, nll

    z = binary_columns(z)

    p = np.asarray(softmax(z, T, axis=-1), dtype=np.float64)
    return {
        "nll": nll(z / T if 0 < T < math.inf else np.log(np.maximum(p, 1e-300)), y, input="logits"),
        "ece": float(calibration_error(p, y, n_bins=n_bins, strategy=strategy)),
        "brier": brier_score(p, y),
        "accuracy": float(np.mean(np.argmax(z, axis=1) == y)),
    }


def run(args: argparse.Namespace) -> int:
    from ..calibration import fit_temperature

    if not 1 <= args.n_bins <= MAX_BINS:
        raise CLIError(f"--n-bins must be in [1, {MAX_BINS}], got {args.n_bins}")
    out = check_output(args.json, args.force) if args.json else None
    z, y, k = _load(args)
    big = z.size >= PROGRESS_MIN
    with progress("calibrating", total=3, disable=not big) as advance:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            T = fit_temperature(z, y)
            advance()
            before = _metrics(z, y, 1.0, args.n_bins, args.strategy)
            advance()
            after = _metrics(z, y, T, args.n_bins, args.strategy)
            advance()
    said = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if args.input is None and "probabilit" in text.lower() and looks_like_probabilities(z):
            continue  # said above, with the flag to pass
        if text not in said:
            said.add(text)
            warn(text)
    print(f"T = {T:.10g}   ({z.shape[0]} samples, {k} classes)")
    names = [("NLL", "nll"), (f"ECE ({args.n_bins} bins)", "ece"), ("Brier", "brier"),
             ("accuracy", "accuracy")]
    rows = [[label, before[key], after[key], after[key] - before[key]] for label, key in names]
    print_table("temperature scaling", ["metric", "before (T = 1)", f"after (T = {T:.4g})", "change"],
                rows)
    if out is not None:
        doc = {"temperature": T if math.isfinite(T) else str(T), "n_samples": int(z.shape[0]),
               "n_classes": int(k), "n_bins": args.n_bins, "strategy": args.strategy,
               "before": before, "after": after}
        out = write_text(out, args.force, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out}")
    return 0
