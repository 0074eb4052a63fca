"""``tempscale calibrate``: fit the temperature of held-out logits and report before/after metrics."""

from __future__ import annotations

import argparse
import json
import math
import warnings

import numpy as np

from ._common import CLIError, check_output, err_console, load_array, load_labels, print_table, progress

EPILOG = """\
examples:
  tempscale calibrate val_logits.npy val_labels.npy
  tempscale calibrate data.npz:logits data.npz:labels --json temperature.json
  tempscale calibrate scores.csv labels.csv --n-bins 10     one column: a binary problem

LOGITS is (n_samples, n_classes) (or one column: the logit of class 1 of a binary problem);
LABELS holds one class index in [0, n_classes) per row.  Files: .npy, .npz[:key], .csv.
"""

#: inputs with at least this many logits get a progress bar
PROGRESS_MIN = 2_000_000


def register(sub) -> None:
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
    p.add_argument("labels", metavar="LABELS", help="labels file (.npy, .npz[:key], .csv)")
    p.add_argument("--json", metavar="OUT", help="write the fitted T and the metrics as JSON to OUT")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--n-bins", type=int, default=15, help="bins of the ECE (default 15)")
    p.add_argument("--strategy", choices=("uniform", "quantile"), default="uniform",
                   help="ECE binning (default uniform)")
    p.set_defaults(func=run)


def _load(args):
    from ._common import split_key

    src, key = split_key(args.logits)
    z = load_array(src, key=key, what="logits")
    y = load_labels(args.labels)
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
    return z, y, k


def _metrics(z, y, T, n_bins, strategy):
    from ..calibration import brier_score, calibration_error, nll

    if z.ndim == 1:
        z = np.stack([np.zeros_like(z), z], axis=1)
    from .. import softmax

    p = np.asarray(softmax(z, T, axis=-1), dtype=np.float64)
    return {
        "nll": nll(z / T if 0 < T < math.inf else np.log(np.maximum(p, 1e-300)), y, from_logits=True),
        "ece": calibration_error(p, y, n_bins=n_bins, strategy=strategy),
        "brier": brier_score(p, y),
        "accuracy": float(np.mean(np.argmax(z, axis=1) == y)),
    }


def run(args) -> int:
    from ..calibration import fit_temperature

    if args.n_bins < 1:
        raise CLIError(f"--n-bins must be at least 1, got {args.n_bins}")
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
    for w in caught:
        err_console().print(f"warning: {w.message}", markup=False)
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
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out}")
    return 0
