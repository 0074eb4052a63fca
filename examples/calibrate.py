"""Calibration maps compared on a real classifier and a dataset bundled with scikit-learn.

A weakly regularised logistic regression on the handwritten digits (8x8 images, 10 classes)
separates its training set and comes out over-confident.  On a calibration split we fit
temperature scaling (one parameter), vector scaling (20), matrix scaling (110) and Dirichlet
calibration with the ODIR penalty (110, ``reg_lambda`` chosen by 5-fold cross-validation of the
NLL on the calibration split), and compare them on the held-out test split: NLL, ECE (15 bins),
smooth ECE, Brier score and accuracy, with 95 % percentile-bootstrap intervals (rows resampled)
for NLL, ECE and smooth ECE.

Run:  python examples/calibrate.py [--plot reliability.png [--force]] [--seed 0] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import IO, Any

import numpy as np


def check_output(path: str, force: bool) -> None:
    """Refuse an existing path (a symbolic link too, even a dangling one) unless ``force``."""
    if os.path.lexists(path) and not force:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory")


def write_output(path: str, force: bool, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file next to ``path`` that then replaces it (a link is
    replaced, its target never written); without ``force`` an existing path is refused."""
    check_output(path, force)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for the temporary file only
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the path appeared meanwhile
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
    print(title)
    for r in [columns, *rows]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def _bootstrap_nll(p: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean NLL (rows resampled)."""
    rng = np.random.default_rng(seed)
    losses = -np.log(p[np.arange(len(y)), y])
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    means = losses[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--plot", metavar="PATH", help="save a reliability diagram (needs matplotlib)")
    ap.add_argument("--force", action="store_true",
                    help="replace an existing --plot file (a symbolic link is replaced, not followed)")
    ap.add_argument("--seed", type=int, default=0, help="random split seed (default 0)")
    ap.add_argument("--n-bins", type=int, default=15, help="ECE bins (default 15)")
    ap.add_argument("--n-bootstrap", type=int, default=200,
                    help="bootstrap resamples of the intervals (default 200)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = ap.parse_args(argv)
    if args.plot:
        try:
            check_output(args.plot, args.force)  # refused before any work, links included
        except OSError as exc:
            ap.error(str(exc))

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.preprocessing import StandardScaler

    from tempscale import softmax
    from tempscale.calibration import brier_score, calibration_error, nll
    from tempscale.sklearn import DirichletScaler, MatrixScaler, TemperatureScaler, VectorScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, random_state=args.seed,
                                                        stratify=y)
    X_cal, X_test, y_cal, y_test = train_test_split(X_rest, y_rest, test_size=0.5,
                                                    random_state=args.seed, stratify=y_rest)
    scaler = StandardScaler().fit(X_train)
    clf = LogisticRegression(C=100.0, max_iter=5000).fit(scaler.transform(X_train), y_train)
    z_cal = clf.decision_function(scaler.transform(X_cal))
    z_test = clf.decision_function(scaler.transform(X_test))

    grid = {"reg_lambda": [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4]}
    with warnings.catch_warnings():  # folds that a weak penalty separates: their score says so
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(DirichletScaler(), grid, cv=5).fit(z_cal, y_cal)  # score: -NLL
    lam = float(search.best_params_["reg_lambda"])
    models: dict[str, Any] = {
        "temperature": TemperatureScaler(),
        "vector": VectorScaler(),
        "matrix": MatrixScaler(),
        f"Dirichlet (ODIR, lambda = {lam:g})": DirichletScaler(reg_lambda=lam),
    }
    probs = {"uncalibrated": np.asarray(softmax(z_test))}
    notes = []
    for name, model in models.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            probs[name] = model.fit(z_cal, y_cal).predict_proba(z_test)
        notes += [f"note ({name}): {w.message}" for w in caught
                  if issubclass(w.category, ConvergenceWarning)]
    T = models["temperature"].temperature_

    def interval(result: Any) -> str:
        return f"{result.estimate:.4f} [{result.low:.4f}, {result.high:.4f}]"

    results: dict[str, dict[str, Any]] = {}
    for name, p in probs.items():
        ece = calibration_error(p, y_test, n_bins=args.n_bins, n_bootstrap=args.n_bootstrap,
                                random_state=args.seed)
        sm = calibration_error(p, y_test, method="smooth", n_bootstrap=args.n_bootstrap,
                               random_state=args.seed)
        lo, hi = _bootstrap_nll(p, y_test, args.n_bootstrap, args.seed)
        results[name] = {
            "NLL": nll(p, y_test), "NLL interval": (lo, hi),
            "ECE": ece, "smooth ECE": sm,
            "Brier": brier_score(p, y_test),
            "accuracy": float(np.mean(p.argmax(1) == y_test)),
        }

    columns = ["method", "NLL", f"ECE ({args.n_bins} bins)", "smooth ECE", "Brier", "accuracy"]
    rows = [[name, f"{r['NLL']:.4f} [{r['NLL interval'][0]:.4f}, {r['NLL interval'][1]:.4f}]",
             interval(r["ECE"]), interval(r["smooth ECE"]), f"{r['Brier']:.4f}",
             f"{r['accuracy']:.4f}"] for name, r in results.items()]
    print(f"calibration split: {len(y_cal)} samples; T = {T:.4f}; Dirichlet reg_lambda = {lam:g} "
          "(5-fold CV of the NLL)")
    for note in notes:
        print(note)
    print_table(f"digits test split (n = {len(y_test)}), 95 % bootstrap intervals "
                f"({args.n_bootstrap} resamples)", columns, rows)
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")

    if args.plot:
        try:
            import matplotlib

            from tempscale.plot import ReliabilityDisplay
        except ImportError:
            print("matplotlib is not installed; no plot written")
        else:
            matplotlib.use("Agg")
            best = min((k for k in results if k != "uncalibrated"), key=lambda k: results[k]["NLL"])
            disp = ReliabilityDisplay.from_predictions(
                probs["uncalibrated"], y_test, prediction_after=probs[best], n_bins=args.n_bins,
                names=["uncalibrated", best])
            fmt = args.plot.rsplit(".", 1)[-1].lower() if "." in args.plot else "png"
            write_output(args.plot, args.force,
                         lambda fh: disp.figure_.savefig(fh, format=fmt, dpi=120, bbox_inches="tight"))
            print(f"wrote {args.plot}")
    return {"temperature": T, "reg_lambda": lam, "results": results,
            "before": results["uncalibrated"], "after": results["temperature"]}


if __name__ == "__main__":
    main()
