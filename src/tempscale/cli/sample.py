"""``tempscale sample``: the warped sampling distribution of some logits, and draws from it."""

from __future__ import annotations

import argparse

import numpy as np

from ._console import CLIError, print_table
from ._numbers import parse_float
from ._readers import add_input_args, as_logits, load_input, warn_if_probabilities
from ._writers import add_output_args, check_output, write_array

#: the most draws one call makes (rows x --num-samples); more is refused before allocating
MAX_DRAWS = 100_000_000

EPILOG = """\
examples:
  tempscale sample -T 0.7 --top-k 3 -n 20 --seed 0 -- 2 1 0 -1     20 draws from 4 logits
  tempscale sample -T 1.5 --top-p 0.9 --order temperature-last logits.npy
  tempscale sample -T 0 -- 1 3 3 0                                 greedy: index 1
  tempscale sample --min-p 0.1 -n 1000 --seed 1 logits.csv -o draws.npy

The table lists the kept tokens of each row, most probable first, with their logit, the
probability after temperature and truncation, and how often they were drawn.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sample",
        help="sample tokens with temperature, top-k, top-p and min-p",
        description="Warp logits with a temperature and top-k / top-p / min-p truncation, print the "
                    "resulting distribution and draw from it (reproducibly with --seed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_args(p, rows=" (one distribution per row)")
    p.add_argument("-T", "--temperature", default="1", metavar="T",
                   help="temperature in [0, inf]; 0 = greedy (default 1)")
    p.add_argument("-k", "--top-k", type=int, metavar="K",
                   help="keep the K most probable tokens (ties kept); 0 = off")
    p.add_argument("-p", "--top-p", type=float, metavar="P",
                   help="keep the smallest set of tokens with probability mass >= P, in (0, 1]; "
                        "1 = off")
    p.add_argument("--min-p", type=float, metavar="P",
                   help="drop tokens with probability < P times the largest, P in [0, 1]; 0 = off")
    p.add_argument("--order", choices=("temperature-first", "temperature-last"), default="temperature-first",
                   help="apply the temperature before the filters (transformers, vLLM; default) or "
                        "after them (llama.cpp)")
    p.add_argument("--min-tokens-to-keep", type=int, default=1, metavar="N",
                   help="never truncate below N tokens (default 1)")
    p.add_argument("-n", "--num-samples", type=int, default=10, metavar="N",
                   help="draws per row (default 10; 0 prints the distribution only)")
    p.add_argument("--no-replacement", action="store_true", help="draw without replacement")
    p.add_argument("--seed", type=int, help="random seed for reproducible draws")
    p.add_argument("--labels", help="comma-separated token labels for the table")
    p.add_argument("--show", type=int, default=20, metavar="N",
                   help="tokens listed per row (default 20)")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sampling import sample, warp

    T = parse_float(args.temperature, "-T/--temperature value")
    if not T >= 0:  # also NaN
        raise CLIError(f"-T/--temperature must be in [0, inf], got {args.temperature}")
    top_k, top_p, min_p = _filters(args)
    if args.num_samples < 0:
        raise CLIError(f"--num-samples must be >= 0, got {args.num_samples}")
    if args.min_tokens_to_keep < 1:
        raise CLIError(f"--min-tokens-to-keep must be >= 1, got {args.min_tokens_to_keep}")
    if args.show < 1:
        raise CLIError(f"--show must be >= 1, got {args.show}")
    x = load_input(args.values, args.file, what="logits")
    if x.ndim > 2:
        raise CLIError(f"expected one row of logits or a 2-d array, got shape {x.shape}")
    n_rows = 1 if x.ndim == 1 else x.shape[0]
    if args.num_samples * n_rows > MAX_DRAWS:
        raise CLIError(f"-n/--num-samples {args.num_samples:,} x {n_rows:,} rows is "
                       f"{args.num_samples * n_rows:,} draws, more than the {MAX_DRAWS:,} one run "
                       "makes; draw fewer (or in several runs with different --seed)")
    if args.no_replacement and args.num_samples > x.shape[-1]:
        raise CLIError(f"--no-replacement draws at most one per token: -n/--num-samples "
                       f"{args.num_samples} is more than the {x.shape[-1]} tokens")
    if args.output:
        if not args.num_samples:
            raise CLIError("-o writes the draws; give --num-samples >= 1")
        check_output(args.output, args.force)
    warn_if_probabilities(x, args.input, "sample")
    kw = dict(top_k=top_k, top_p=top_p, min_p=min_p, order=args.order,
              min_tokens_to_keep=args.min_tokens_to_keep)
    x = as_logits(x, args.input)
    rows = np.atleast_2d(x).astype(np.float64)
    probs = np.asarray(warp(rows, T, **kw))
    draws = None
    if args.num_samples:
        draws = np.asarray(sample(rows, T, num_samples=args.num_samples, replacement=not args.no_replacement,
                                  seed=args.seed, **kw))
    n = rows.shape[-1]
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else [str(i) for i in range(n)]
    if len(labels) != n:
        raise CLIError(f"--labels has {len(labels)} names for {n} tokens")
    if args.output:
        if draws is None:
            raise CLIError("-o writes the draws; give --num-samples >= 1")
        out = draws[0] if x.ndim == 1 else draws
        path = write_array(args.output, out, args.force)
        print(f"wrote {out.shape} draws to {path}")
        return 0
    multi = rows.shape[0] > 1
    columns = (["row"] if multi else []) + ["token", "logit", "probability"]
    if draws is not None:
        columns += ["draws", "frequency"]
    table = []
    for r in range(rows.shape[0]):
        p = probs[r]
        order = [i for i in np.argsort(-p, kind="stable") if p[i] > 0][: args.show]
        counts = None if draws is None else np.bincount(draws[r][draws[r] >= 0], minlength=n)
        for i in order:
            line = ([str(r)] if multi else []) + [labels[i], f"{rows[r, i]:.6g}", f"{p[i]:.6g}"]
            if counts is not None and draws is not None:
                line += [str(int(counts[i])), f"{counts[i] / max(1, draws.shape[-1]):.3g}"]
            table.append(line)
        if not order:
            table.append(([str(r)] if multi else []) + ["(none)", "", "all masked"]
                         + (["", ""] if counts is not None else []))
    kept = (probs > 0).sum(-1)
    title = (f"T = {T:g}, {args.order}" + "".join(
        f", {name} = {v}" for name, v in (("top-k", top_k), ("top-p", top_p), ("min-p", min_p))
        if v is not None) + f": {', '.join(str(int(k)) for k in kept[:8])}{' ...' if len(kept) > 8 else ''}"
        f" of {n} tokens kept")
    print_table(title, columns, table)
    if draws is not None:
        for r in range(min(rows.shape[0], 8)):
            shown = " ".join(labels[i] if i >= 0 else "-" for i in draws[r][:40])
            more = " ..." if draws.shape[-1] > 40 else ""
            print(f"draws{f' row {r}' if multi else ''}: {shown}{more}")
    return 0


def _filters(args: argparse.Namespace) -> tuple[int | None, float | None, float | None]:
    """``--top-k 0``, ``--top-p 1`` and ``--min-p 0`` switch the filter off (as in transformers and
    llama.cpp); out-of-range values are refused with the flag's name."""
    top_k, top_p, min_p = args.top_k, args.top_p, args.min_p
    if top_k is not None:
        if top_k < 0:
            raise CLIError(f"--top-k must be an integer >= 0 (0 = off), got {top_k}")
        top_k = None if top_k == 0 else top_k
    if top_p is not None:
        if not 0 < top_p <= 1:  # NaN too
            raise CLIError(f"--top-p must be in (0, 1] (1 = off), got {top_p:g}")
        top_p = None if top_p == 1 else top_p
    if min_p is not None:
        if not 0 <= min_p <= 1:
            raise CLIError(f"--min-p must be in [0, 1] (0 = off), got {min_p:g}")
        min_p = None if min_p == 0 else min_p
    return top_k, top_p, min_p
