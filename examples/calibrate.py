"""Temperature scaling of a real classifier on a dataset bundled with scikit-learn (no download).

A weakly regularised logistic regression on the handwritten digits (8x8 images, 10 classes)
separates its training set and comes out over-confident.  We fit one temperature on a
validation split with :func:`tempscale.calibration.fit_temperature` and compare NLL, ECE, Brier
score and accuracy on the test split before and after.

Run:  python examples/calibrate.py [--plot reliability.png [--force]] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plot", metavar="PATH", help="save a reliability diagram (needs matplotlib)")
    ap.add_argument("--force", action="store_true",
                    help="replace an existing --plot file (a symbolic link is replaced, not followed)")
    ap.add_argument("--seed", type=int, default=0, help="random split seed (default 0)")
    ap.add_argument("--n-bins", type=int, default=10, help="ECE bins (default 10)")
    args = ap.parse_args(argv)
    if args.plot:
        from tempscale.cli._common import CLIError, check_output

        try:
            check_output(args.plot, args.force)  # refused before any work, links included
        except CLIError as exc:
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

    def report(T_):
        p = np.asarray(softmax(z_test, T_))
        return {
            "NLL": nll(z_test / T_, y_test, from_logits=True),
            f"ECE ({args.n_bins} bins)": calibration_error(p, y_test, n_bins=args.n_bins),
            "Brier": brier_score(p, y_test),
            "accuracy": float(np.mean(p.argmax(1) == y_test)),
        }

    before, after = report(1.0), report(T)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"digits test split (n = {len(y_test)})")
    table.add_column("metric")
    table.add_column("before (T = 1)", justify="right")
    table.add_column(f"after (T = {T:.3f})", justify="right")
    for key in before:
        table.add_row(key, f"{before[key]:.4f}", f"{after[key]:.4f}")
    console = Console(highlight=False)
    console.print(f"fitted on the validation split ({len(y_val)} samples): T = {T:.6f}")
    console.print(table)

    if args.plot:
        try:
            from tempscale.plot import ReliabilityDisplay
        except ImportError:
            console.print("tempscale.plot.ReliabilityDisplay is not available; no plot written")
        else:
            import matplotlib

            from tempscale.cli._common import write_output

            matplotlib.use("Agg")
            disp = ReliabilityDisplay.from_logits(y_test, z_test, temperature=T,
                                                  n_bins=args.n_bins)
            fmt = args.plot.rsplit(".", 1)[-1].lower() if "." in args.plot else "png"
            write_output(args.plot, args.force,
                         lambda fh: disp.figure_.savefig(fh, format=fmt, dpi=120, bbox_inches="tight"))
            console.print(f"wrote {args.plot}")
    return {"temperature": T, "before": before, "after": after}


if __name__ == "__main__":
    main()
