"""Temperature scaling of a real classifier on a dataset bundled with scikit-learn (no download).

A weakly regularised logistic regression on the handwritten digits (8x8 images, 10 classes)
separates its training set and comes out over-confident.  We fit one temperature on a
validation split with :func:`tempscale.calibration.fit_temperature` and compare NLL, ECE, Brier
score and accuracy on the test split before and after.

Run:  python examples/calibrate.py [--plot reliability.png [--force]] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--plot", metavar="PATH", help="save a reliability diagram (needs matplotlib)")
    ap.add_argument("--force", action="store_true",
                    help="replace an existing --plot file (a symbolic link is replaced, not followed)")
    ap.add_argument("--seed", type=int, default=0, help="random split seed (default 0)")
    ap.add_argument("--n-bins", type=int, default=10, help="ECE bins (default 10)")
    args = ap.parse_args(argv)
    if args.plot:
        try:
            check_output(args.plot, args.force)  # refused before any work, links included
        except OSError as exc:
            ap.error(str(exc))

    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from tempscale import softmax
    from tempscale.calibration import brier_score, calibration_error, fit_temperature, nll

    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, random_state=args.seed,
                                                        stratify=y)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5,
                                                    random_state=args.seed, stratify=y_rest)
    scaler = StandardScaler().fit(X_train)
    clf = LogisticRegression(C=100.0, max_iter=5000).fit(scaler.transform(X_train), y_train)
    z_val = clf.decision_function(scaler.transform(X_val))
    z_test = clf.decision_function(scaler.transform(X_test))

    T = fit_temperature(z_val, y_val)

    def report(T_: float) -> dict[str, float]:
        p = np.asarray(softmax(z_test, T_))
        return {
            "NLL": nll(z_test / T_, y_test, input="logits"),
            f"ECE ({args.n_bins} bins)": float(calibration_error(p, y_test, n_bins=args.n_bins)),
            "Brier": brier_score(p, y_test),
            "accuracy": float(np.mean(p.argmax(1) == y_test)),
        }

    before, after = report(1.0), report(T)

    print(f"fitted on the validation split ({len(y_val)} samples): T = {T:.6f}")
    print_table(f"digits test split (n = {len(y_test)})",
                ["metric", "before (T = 1)", f"after (T = {T:.3f})"],
                [[key, f"{before[key]:.4f}", f"{after[key]:.4f}"] for key in before])

    if args.plot:
        try:
            import matplotlib

            from tempscale.plot import ReliabilityDisplay
        except ImportError:
            print("matplotlib is not installed; no plot written")
        else:
            matplotlib.use("Agg")
            disp = ReliabilityDisplay.from_logits(logits=z_test, labels=y_test, temperature=T,
                                                  n_bins=args.n_bins)
            fmt = args.plot.rsplit(".", 1)[-1].lower() if "." in args.plot else "png"
            write_output(args.plot, args.force,
                         lambda fh: disp.figure_.savefig(fh, format=fmt, dpi=120, bbox_inches="tight"))
            print(f"wrote {args.plot}")
    return {"temperature": T, "before": before, "after": after}


if __name__ == "__main__":
    main()
