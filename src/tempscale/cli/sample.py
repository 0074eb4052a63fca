"""``tempscale sample``: the warped sampling distribution of some logits, and draws from it."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._console import CLIError, print_table
from ._numbers import parse_float
from ._readers import add_input_args, as_logits, load_input, warn_if_probabilities
from ._writers import add_output_args, check_output, write_array

#: the most draws one call makes (rows x --num-samples); more is refused before allocating
MAX_DRAWS = 100_000_000
#: draws printed per row, rows of draws printed
SHOW_DRAWS, SHOW_DRAW_ROWS = 40, 8

#: the sampling rules' numeric options: (parameter of tempscale.sampling.sample, metavar, help).
#: A flag is added for each one the installed ``sample`` accepts (and for any other numeric
#: option it has), so the command keeps up with the library.
RULE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("typical_p", "P", "locally typical sampling: keep the most typical tokens up to mass P, in "
                       "(0, 1]; 1 = off"),
    ("epsilon", "E", "epsilon-sampling: drop tokens with probability < E, in [0, 1]; 0 = off"),
    ("eta", "E", "eta-sampling: drop tokens with probability < min(E, sqrt(E) exp(-entropy)), "
                 "in [0, 1]; 0 = off"),
    ("top_n_sigma", "N", "top-n-sigma: keep logits >= max - N standard deviations, in [0, inf]; "
                         "0 = off"),
    ("top_h", "H", "top-H: entropy-bounded truncation (transformers' top_h), in (0, 1]; 1 = off"),
    ("dynatemp_range", "R", "dynamic temperature: T varies in [T - R, T + R] with the normalised "
                            "entropy (llama.cpp); 0 = off"),
    ("dynatemp_exponent", "X", "dynamic temperature's exponent on the normalised entropy "
                               "(default 1)"),
    ("xtc_threshold", "P", "XTC: remove the most probable tokens above P but the least of "
                           "them; off unless set"),
    ("xtc_probability", "P", "XTC: the probability, per row, that XTC applies (default 1 when "
                             "--xtc-threshold is set)"),
)
#: parameters of ``sample`` the command sets itself (or never)
_HANDLED = {"logits", "temperature", "top_k", "top_p", "min_p", "order", "min_tokens_to_keep",
            "num_samples", "replacement", "seed", "rng", "axis", "mask", "return_logprobs",
            "generator", "row_ids"}


def _sample_parameters() -> dict[str, inspect.Parameter]:
    from ..sampling import sample

    return dict(inspect.signature(sample).parameters)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _rule_options() -> list[tuple[str, str, str]]:
    """The rule options the installed ``sample`` takes: the known ones with their help, then any
    other numeric keyword it has (a new rule), with a generic help."""
    params = _sample_parameters()
    out = [opt for opt in RULE_OPTIONS if opt[0] in params]
    known = {o[0] for o in RULE_OPTIONS} | _HANDLED
    for name, prm in params.items():
        ann = str(prm.annotation)
        if name in known or prm.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if ("float" in ann or "int" in ann) and (prm.default is None or isinstance(prm.default, (int, float))):
            out.append((name, "V", f"passed to tempscale.sampling.sample as {name}="))
    return out

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
    for name, metavar, text in _rule_options():
        p.add_argument(_flag(name), type=str, metavar=metavar, dest=f"rule_{name}", help=text)
    p.add_argument("--order", default="temperature-first", metavar="ORDER",
                   help="temperature-first (transformers, vLLM; default), temperature-last "
                        "(llama.cpp), or the rules in the order they run, comma-separated (e.g. "
                        "top_k,top_p,temperature), where the library takes a sequence")
    p.add_argument("--min-tokens-to-keep", type=int, default=1, metavar="N",
                   help="never truncate below N tokens (default 1)")
    p.add_argument("-n", "--num-samples", type=int, default=10, metavar="N",
                   help="draws per row (default 10; 0 prints the distribution only)")
    p.add_argument("--no-replacement", action="store_true", help="draw without replacement")
    p.add_argument("--seed", type=int, help="random seed for reproducible draws")
    params = _sample_parameters()
    if "generator" in params:
        p.add_argument("--generator", choices=("library", "hash"), default=None,
                       help="library: NumPy's generator seeded with --seed; hash: the "
                            "batch-invariant counter-based generator (a row's draws depend only on "
                            "--seed, its row id and its values)")
    if "row_ids" in params:
        p.add_argument("--row-ids", metavar="I,J,...", default=None,
                       help="one integer key per row for the hash generator (default: the row "
                            "index); implies --generator hash")
    p.add_argument("--labels", help="comma-separated token labels for the table")
    p.add_argument("--show", type=int, default=20, metavar="N",
                   help="tokens listed per row (default 20; the rest is counted as '… N more')")
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
    rules = _rules(args)
    kw: dict[str, Any] = dict(top_k=top_k, top_p=top_p, min_p=min_p, order=_order(args.order),
                              min_tokens_to_keep=args.min_tokens_to_keep, **rules)
    x = as_logits(x, args.input)
    rows = np.atleast_2d(x).astype(np.float64)
    draw_kw = _generator_kw(args, rows.shape[0])
    # a random XTC (probability strictly between 0 and 1) is a draw-time coin: the table shows
    # the distribution without it
    random_xtc = rules.get("xtc_threshold") is not None and \
        rules.get("xtc_probability") not in (None, 0.0, 1.0)
    warp_kw = {k: v for k, v in kw.items()
               if not (random_xtc and k in ("xtc_threshold", "xtc_probability"))}
    with _flag_errors():
        probs = np.asarray(warp(rows, T, **warp_kw))
        draws = None
        if args.num_samples:
            draws = np.asarray(sample(rows, T, num_samples=args.num_samples,
                                      replacement=not args.no_replacement, seed=args.seed,
                                      **draw_kw, **kw))
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
    blank = [""] * (len(columns) - 1 - int(multi))
    for r in range(rows.shape[0]):
        p = probs[r]
        nonzero = [i for i in np.argsort(-p, kind="stable") if p[i] > 0]
        order = nonzero[: args.show]
        counts = None if draws is None else np.bincount(draws[r][draws[r] >= 0], minlength=n)
        for i in order:
            line = ([str(r)] if multi else []) + [labels[i], f"{rows[r, i]:.6g}", f"{p[i]:.6g}"]
            if counts is not None and draws is not None:
                line += [str(int(counts[i])), f"{counts[i] / max(1, draws.shape[-1]):.3g}"]
            table.append(line)
        if len(nonzero) > len(order):
            rest = float(p[nonzero[len(order):]].sum())
            line = ([str(r)] if multi else []) + [_more(len(nonzero) - len(order))] + blank
            line[2 + int(multi)] = f"{rest:.6g}"  # the probability they hold together
            table.append(line)
        if not order:
            table.append(([str(r)] if multi else []) + ["(none)", "", "all masked"]
                         + (["", ""] if counts is not None else []))
    kept = (probs > 0).sum(-1)
    settings = [("top-k", top_k), ("top-p", top_p), ("min-p", min_p)] + [
        (name.replace("_", "-"), v) for name, v in rules.items() if v is not None]
    order_text = args.order if isinstance(kw["order"], str) else " > ".join(kw["order"])
    title = (f"T = {T:g}, {order_text}" + "".join(f", {name} = {v:g}" for name, v in settings
                                                  if v is not None)
             + f": {', '.join(str(int(k)) for k in kept[:8])}"
             + (f" {_more(len(kept) - 8)} rows" if len(kept) > 8 else "") + f" of {n} tokens kept")
    print_table(title, columns, table)
    if random_xtc:
        print(f"(the table leaves XTC out: it applies to a row's draws with probability "
              f"{rules['xtc_probability']:g})")
    if draws is not None:
        for r in range(min(rows.shape[0], SHOW_DRAW_ROWS)):
            shown = " ".join(labels[i] if i >= 0 else "-" for i in draws[r][:SHOW_DRAWS])
            more = f" {_more(draws.shape[-1] - SHOW_DRAWS)}" if draws.shape[-1] > SHOW_DRAWS else ""
            print(f"draws{f' row {r}' if multi else ''}: {shown}{more}")
        if rows.shape[0] > SHOW_DRAW_ROWS:
            print(f"draws: {_more(rows.shape[0] - SHOW_DRAW_ROWS)} rows (write them all with -o)")
    return 0


def _more(n: int) -> str:
    return f"\u2026 {n} more"


def _rules(args: argparse.Namespace) -> dict[str, float | None]:
    """The rule options given on the command line, as numbers (a one-line error otherwise)."""
    out: dict[str, float | None] = {}
    for name, _metavar, _help in _rule_options():
        text = getattr(args, f"rule_{name}", None)
        if text is None:
            continue
        out[name] = parse_float(text, f"{_flag(name)} value")
    return out


def _order(text: str) -> str | list[str]:
    """A named order as is; ``a,b,c`` (or ``a;b;c``) as the list of rule names."""
    if text in ("temperature-first", "temperature-last"):
        return text
    items = [s.strip() for s in re.split(r"[,;]", text) if s.strip()]
    if not items:
        raise CLIError(f"--order needs a named order or rule names, got {text!r}")
    return items


def _generator_kw(args: argparse.Namespace, n_rows: int) -> dict[str, Any]:
    """``generator=`` and ``row_ids=`` where the library has them and they were given."""
    out: dict[str, Any] = {}
    gen = getattr(args, "generator", None)
    ids = getattr(args, "row_ids", None)
    if gen is not None:
        out["generator"] = gen
    if ids is not None:
        try:
            keys = [int(s) for s in ids.split(",") if s.strip()]
        except ValueError:
            raise CLIError(f"--row-ids must be comma-separated integers, got {ids!r}") from None
        if len(keys) != n_rows:
            raise CLIError(f"--row-ids gives {len(keys)} keys for {n_rows} rows")
        out["row_ids"] = np.asarray(keys, dtype=np.int64)
    if out and args.seed is None:
        raise CLIError("--generator hash and --row-ids need --seed")
    return out


@contextlib.contextmanager
def _flag_errors() -> Iterator[None]:
    """Errors of warp/sample about a parameter, re-worded with the command's flag (one line)."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        m = re.match(r"The '(\w+)' parameter of (?:warp|sample) (.*)", msg)
        if m:
            flag = {"temperature": "-T/--temperature", "num_samples": "-n/--num-samples",
                    "seed": "--seed"}.get(m.group(1), _flag(m.group(1)))
            msg = f"{flag} {m.group(2)}"
        raise CLIError(msg) from None


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
