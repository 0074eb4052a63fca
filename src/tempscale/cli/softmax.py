"""``tempscale softmax``: probabilities from logits at one or several temperatures."""

from __future__ import annotations

import argparse

import numpy as np

from ._console import CLIError, print_table
from ._numbers import parse_floats
from ._readers import add_input_args, as_logits, load_input, warn_if_probabilities
from ._writers import add_output_args, check_output, write_array

EPILOG = """\
examples:
  tempscale softmax -T 0.5 -- -1 0 1          three logits at T = 0.5 (-- before negative numbers)
  tempscale softmax -T 0.1,0.5,1,2,10 1 2 3    one row per temperature
  tempscale softmax -T 0.7 logits.npy -o probs.npy
  tempscale softmax --log -T 2 logits.csv      log-probabilities
  tempscale softmax --input probabilities -T 2 0.7 0.2 0.1   re-temper probabilities (temper)
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "softmax",
        help="softmax with temperature of numbers or a .npy/.npz/.csv file",
        description="Softmax with temperature, S_i = exp(x_i/T) / sum_k exp(x_k/T), over the last axis.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_args(p)
    p.add_argument("-T", "--temperature", action="append", metavar="T",
                   help="temperature(s) in [0, inf] (0 = argmax, inf = uniform); comma-separated or "
                        "repeated for several, one row each; default 1")
    p.add_argument("--log", action="store_true", help="print log-probabilities (log_softmax)")
    p.add_argument("--labels", help="comma-separated class labels for the table")
    p.add_argument("--precision", type=int, default=6, help="significant digits printed (default 6)")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._softmax import log_softmax, softmax

    temps = parse_floats(args.temperature or ["1"], "-T/--temperature value")
    for t in temps:
        if not t >= 0:  # also catches NaN
            raise CLIError(f"-T/--temperature must be in [0, inf], got {t:g}")
    x = load_input(args.values, args.file, what="logits")
    warn_if_probabilities(x, args.input, "softmax")
    z = as_logits(x, args.input)
    if args.output:
        check_output(args.output, args.force)  # before computing anything
    func = log_softmax if args.log else softmax
    results = np.stack([np.asarray(func(z, t)) for t in temps])  # (n_T, *x.shape)
    if len(temps) == 1:
        results = results[0]
    elif x.ndim == 1:
        pass  # one row per temperature
    if args.output:
        path = write_array(args.output, results, args.force)
        print(f"wrote {results.shape} array to {path}")
        return 0
    rows2d = results.reshape(-1, x.shape[-1]) if results.ndim > 1 else results.reshape(1, -1)
    n = x.shape[-1]
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else [str(i) for i in range(n)]
    if len(labels) != n:
        raise CLIError(f"--labels has {len(labels)} names for {n} classes")
    if x.ndim == 1:
        row_names = [f"T = {t:g}" for t in temps]
    else:
        row_names = [f"T = {t:g}, row {i}" for t in temps for i in range(int(np.prod(x.shape[:-1])))]
    if n > 50:
        raise CLIError(f"{n} classes are too many to print; write them with -o PATH")
    digits = max(1, min(args.precision, 17))
    table_rows = [[name] + [f"{v:.{digits}g}" for v in row] for name, row in zip(row_names, rows2d, strict=False)]
    print_table("log-probabilities" if args.log else "probabilities", ["", *labels], table_rows)
    return 0
