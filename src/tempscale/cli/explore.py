"""``tempscale explore``: write the interactive temperature explorer (one self-contained HTML file)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from ._console import CLIError, warn
from ._numbers import parse_float
from ._readers import add_input_args, load_input, warn_if_probabilities
from ._writers import check_output, write_text

DEFAULT_OUTPUT = "tempscale-explorer.html"

EPILOG = """\
examples:
  tempscale explore                          the classic 10-class example (N(4, 1) density at 0..9)
  tempscale explore --open                   ... and open it in a web browser, if there is one
  tempscale explore -T 0.5 -- -1 0 1          your logits (-- before negative numbers)
  tempscale explore --labels cat,dog,bird 2.0 1.0 0.1
  tempscale explore --input probabilities 0.7 0.2 0.1
  tempscale explore --file logits.npy --row 3 -o row3.html --force
  tempscale explore --file vocab.npy --top 40 --top-p 0.9      a 128k-token row: the 40 largest
  tempscale explore --top-k 5 --min-p 0.05 -T 0.8 -- 3 2 1 0 -1   sampling filters, live

The page needs no network: open it from disk in any browser.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explore",
        help="write the interactive explorer page (slider, live bars, entropy curve)",
        description="Write the interactive temperature explorer: one self-contained HTML file "
                    "(no network) with a log-scale temperature slider, editable logits or "
                    "probabilities, live bars, entropy / perplexity / top probability and an "
                    "entropy-against-T curve. Without numbers it opens on the classic 10-class "
                    "example (the N(4, 1) density at classes 0..9, read as probabilities).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_args(p, what="numbers", input_kind=False)
    p.add_argument("--row", type=int, default=None,
                   help="which row of a 2-D file to show (default: the file must hold one row)")
    p.add_argument("--labels", metavar="A,B,...", help="comma-separated class labels")
    p.add_argument("-T", "--temperature", default="1", metavar="T",
                   help="the temperature the page opens at, in [0, inf] (default 1)")
    p.add_argument("--input", choices=("logits", "probabilities"), default=None,
                   help="read the numbers as logits (softmax) or probabilities (temper); "
                        "default: probabilities for the classic 10-class example, logits "
                        "otherwise")
    # the former name of --input, hidden; it warns on stderr
    p.add_argument("--mode", choices=("logits", "probabilities"), default=None,
                   dest="deprecated_mode", help=argparse.SUPPRESS)
    p.add_argument("--top", type=int, metavar="N", default=None,
                   help="open in the top-N view: the N most probable classes and the mass of "
                        "the others (default: every class up to 500, the 50 largest beyond)")
    p.add_argument("-k", "--top-k", type=int, metavar="K", default=None,
                   help="the page's top-k filter at first (0 = off)")
    p.add_argument("-p", "--top-p", type=float, metavar="P", default=None,
                   help="the page's top-p filter at first, in (0, 1] (1 = off)")
    p.add_argument("--min-p", type=float, metavar="P", default=None,
                   help="the page's min-p filter at first, in [0, 1] (0 = off)")
    p.add_argument("--top-n-sigma", type=float, metavar="N", default=None,
                   help="the page's top-n-sigma filter at first, in [0, inf] (0 = off)")
    p.add_argument("--order", choices=("temperature-first", "temperature-last"),
                   default="temperature-first", help="the order of temperature and filters")
    p.add_argument("--min-tokens-to-keep", type=int, metavar="N", default=1,
                   help="never truncate below N tokens (default 1)")
    p.add_argument("--title", default=None, help="the page title")
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="PATH",
                   help=f"where to write the page (default ./{DEFAULT_OUTPUT})")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--open", action="store_true", dest="open_browser",
                   help="open the page in a web browser when one is available")
    p.set_defaults(func=run)


def _pick_row(x: np.ndarray, row: int | None) -> np.ndarray:
    if x.ndim == 1:
        if row not in (None, 0):
            raise CLIError(f"--row {row}: the input is a single row")
        return x
    if x.ndim != 2:
        raise CLIError(f"the explorer shows one row of numbers; got an array of shape {x.shape}")
    if row is None:
        if x.shape[0] != 1:
            raise CLIError(f"the input has {x.shape[0]} rows; pick one with --row")
        row = 0
    if not -x.shape[0] <= row < x.shape[0]:
        raise CLIError(f"--row {row} is out of range for {x.shape[0]} rows")
    picked: np.ndarray = x[row]
    return picked


def _open_in_browser(path: Path) -> bool:
    import webbrowser

    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    try:
        return bool(webbrowser.open(path.resolve().as_uri()))
    except webbrowser.Error:
        return False


def _input_kind(args: argparse.Namespace) -> str | None:
    """``--input``, or the deprecated ``--mode`` (with a warning on stderr)."""
    old = args.deprecated_mode
    if old is None:
        given: str | None = args.input
        return given
    warn("--mode is deprecated and will be removed in a future release; use --input")
    if args.input is not None and args.input != old:
        raise CLIError(f"--input {args.input} and --mode {old} disagree; pass only --input")
    return str(old)


def _page_options(args: argparse.Namespace) -> dict[str, Any]:
    """The filters and the top-N view, checked here so that errors name the flags."""
    from ..explorer import MAX_CLASSES

    if args.top is not None and not 1 <= args.top <= MAX_CLASSES:
        raise CLIError(f"--top must be an integer in [1, {MAX_CLASSES}], got {args.top}")
    if args.top_k is not None and args.top_k < 0:
        raise CLIError(f"--top-k must be an integer >= 0 (0 = off), got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:  # NaN too
        raise CLIError(f"--top-p must be in (0, 1] (1 = off), got {args.top_p:g}")
    if args.min_p is not None and not 0 <= args.min_p <= 1:
        raise CLIError(f"--min-p must be in [0, 1] (0 = off), got {args.min_p:g}")
    if args.top_n_sigma is not None and not args.top_n_sigma >= 0:
        raise CLIError(f"--top-n-sigma must be in [0, inf] (0 = off), got {args.top_n_sigma:g}")
    if args.min_tokens_to_keep < 1:
        raise CLIError(f"--min-tokens-to-keep must be >= 1, got {args.min_tokens_to_keep}")
    return {"top": args.top, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
            "top_n_sigma": args.top_n_sigma, "order": args.order,
            "min_tokens_to_keep": args.min_tokens_to_keep}


def run(args: argparse.Namespace) -> int:
    from ..explorer import DEFAULT_TITLE, explorer_html

    temperature = parse_float(args.temperature, "-T/--temperature value")
    if not temperature >= 0:  # NaN too
        raise CLIError(f"-T/--temperature must be in [0, inf], got {args.temperature}")
    if args.values or args.file is not None:
        x = _pick_row(load_input(args.values, args.file, what="logits"), args.row)
    else:
        if args.row is not None:
            raise CLIError("--row needs numbers from a file")
        x = None
    labels = None
    if args.labels is not None:
        labels = [s.strip() for s in args.labels.split(",")]
        n = 10 if x is None else x.size
        if len(labels) != n:
            raise CLIError(f"--labels gives {len(labels)} labels for {n} classes")
    input_kind = _input_kind(args)
    if input_kind == "probabilities" and x is not None and bool(np.any(x < 0)):
        raise CLIError("--input probabilities needs non-negative numbers")
    if x is not None:
        warn_if_probabilities(x, input_kind, "the explorer")
    options = _page_options(args)
    check_output(args.output, args.force)
    page = explorer_html(None if x is None else x, labels,
                         math.inf if math.isinf(temperature) else temperature,
                         title=args.title if args.title is not None else DEFAULT_TITLE,
                         input=input_kind, **options)
    path = write_text(args.output, args.force, page)
    print(f"wrote {path}  (open it in a web browser; it needs no network)")
    if args.open_browser:
        if _open_in_browser(path):
            print(f"opened {path.resolve().as_uri()}")
        else:
            print(f"no web browser found here; open {path.resolve().as_uri()} yourself")
    return 0
