"""``tempscale solve``: the temperature giving each row a target entropy, perplexity or top probability."""

from __future__ import annotations

import argparse
import math

import numpy as np

from ._console import CLIError, print_table
from ._readers import add_input_args, as_logits, load_input, warn_if_probabilities
from ._writers import add_output_args, check_output, write_array

EPILOG = """\
examples:
  tempscale solve --entropy 1.0 -- 1 2 3 4            T at which softmax(x/T) has 1 nat of entropy
  tempscale solve --entropy 1.5 --base 2 1 2 3 4      ... 1.5 bits
  tempscale solve --perplexity 2.5 logits.npy         one T per row of the file
  tempscale solve --max-prob 0.9 logits.csv -o T.npy --nan
"""

#: rows printed in the table (the rest only summarised; use -o for all)
MAX_ROWS = 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "solve",
        help="find the temperature reaching a target entropy, perplexity or top probability",
        description="Solve, row by row, for the T at which softmax(x / T) has the given entropy, "
                    "perplexity or largest probability (all monotone in T).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_args(p, rows=" (one distribution per row)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--entropy", type=float, metavar="H", help="target entropy (nats, or --base units)")
    g.add_argument("--perplexity", type=float, metavar="P", help="target perplexity exp(H)")
    g.add_argument("--max-prob", type=float, metavar="Q", help="target largest probability")
    p.add_argument("--base", type=float, help="logarithm base of --entropy (2 = bits)")
    p.add_argument("--tol", type=float, help="tolerance on the target (default 1e-10)")
    p.add_argument("--nan", action="store_true",
                   help="give unreachable rows NaN instead of failing")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._entropy import entropy, solve_temperature
    from .._softmax import softmax

    x = load_input(args.values, args.file, what="logits")
    warn_if_probabilities(x, args.input, "solve")
    x = as_logits(x, args.input)
    if x.shape[-1] < 2:
        raise CLIError(f"need at least 2 logits per row, got {x.shape[-1]}")
    if args.base is not None and args.entropy is None:
        raise CLIError("--base applies to --entropy only")
    kind, target = next((k, v) for k, v in (("entropy", args.entropy), ("perplexity", args.perplexity),
                                            ("max_prob", args.max_prob)) if v is not None)
    if not math.isfinite(target):
        raise CLIError(f"--{kind.replace('_', '-')} must be a finite number, got {target}")
    out = check_output(args.output, args.force) if args.output else None
    if args.tol is not None and not args.tol > 0:
        raise CLIError(f"--tol must be a positive number, got {args.tol:g}")
    if args.base is not None and not (args.base > 0 and args.base != 1 and math.isfinite(args.base)):
        raise CLIError(f"--base must be a positive number other than 1, got {args.base:g}")
    T = np.asarray(solve_temperature(x, **{kind: target}, base=args.base, tol=args.tol,
                                     on_unreachable="nan" if args.nan else "raise"))
    if out is not None:
        out = write_array(out, T, args.force)
        print(f"wrote {T.shape} temperatures to {out}")
        return 0
    rows2d = x.reshape(-1, x.shape[-1])
    Tf = T.reshape(-1)
    table: list[list[str | float]] = []
    for i, (row, t) in enumerate(zip(rows2d[:MAX_ROWS], Tf[:MAX_ROWS], strict=True)):
        if np.isnan(t):
            table.append([str(i), "nan (unreachable)", "", "", ""])
            continue
        p = np.asarray(softmax(row, float(t)))
        h = float(np.asarray(entropy(row, float(t), base=args.base)))
        perplexity = math.exp(float(np.asarray(entropy(row, float(t)))))
        table.append([str(i), float(t), h, perplexity, float(p.max())])
    unit = "bits" if args.base == 2 else ("nats" if args.base is None else f"base {args.base:g}")
    label = {"entropy": f"entropy = {target:g} {unit}", "perplexity": f"perplexity = {target:g}",
             "max_prob": f"max prob = {target:g}"}[kind]
    print_table(f"T for {label}", ["row", "T", f"entropy ({unit})", "perplexity", "max prob"], table)
    if len(Tf) > MAX_ROWS:
        fin = Tf[np.isfinite(Tf)]
        summary = (f"{len(Tf)} rows (first {MAX_ROWS} shown); T median {np.median(fin):.6g}, "
                   f"range [{fin.min():.6g}, {fin.max():.6g}]" if fin.size else f"{len(Tf)} rows")
        print(summary + "; write them all with -o PATH")
    return 0
