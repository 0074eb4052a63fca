"""``tempscale distill``: run the knowledge-distillation example on scikit-learn's digits.

The experiment itself lives in ``examples/distill_digits.py`` (readable on its own); this
subcommand finds that file in the source tree and runs it with the same options.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from ._common import CLIError

EPILOG = """\
examples:
  tempscale distill --quick                  2 seeds, a few seconds
  tempscale distill                          5 seeds, T in {1, 2, 4, 8}, about a minute
  tempscale distill --temperatures 2 4 --alpha 0.5 --markdown
  tempscale distill --json results.json

The teacher (64-256-256-10 MLP) and the student (64-16-10 MLP) are trained with PyTorch on
CPU; the student once on hard labels only and once per temperature with tempscale.torch.KDLoss.
Needs torch and scikit-learn.  The table reports held-out test accuracy and NLL, mean +- std
over seeds.
"""

EXAMPLE = "distill_digits.py"


def _candidates():
    env = os.environ.get("TEMPSCALE_EXAMPLES")
    if env:
        yield Path(env) / EXAMPLE
    here = Path(__file__).resolve()
    # src/tempscale/cli/distill.py -> repository root / examples
    yield here.parents[3] / "examples" / EXAMPLE
    yield Path.cwd() / "examples" / EXAMPLE


def load_example():
    """Import ``examples/distill_digits.py`` as a module (or raise CLIError)."""
    for path in _candidates():
        if path.is_file():
            spec = importlib.util.spec_from_file_location("tempscale_distill_digits", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
    raise CLIError(
        f"cannot find examples/{EXAMPLE}: it ships with the source repository; run from a "
        "checkout or set TEMPSCALE_EXAMPLES to the folder that holds it")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The experiment's options, shared with ``examples/distill_digits.py``."""
    p.add_argument("--quick", action="store_true",
                   help="2 seeds and fewer epochs (a smoke run of a few seconds)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5; quick: 2)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0],
                   metavar="T", help="KD temperatures (default: 1 2 4 8)")
    p.add_argument("--alpha", type=float, default=0.9,
                   help="weight of the soft (KD) term; 1 - alpha goes to the labels (default 0.9)")
    p.add_argument("--student-hidden", type=int, default=16, help="student hidden units (16)")
    p.add_argument("--train-size", type=float, default=0.3,
                   help="fraction of the digits used for training (default 0.3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", metavar="PATH", help="write the raw per-seed results as JSON")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "distill", help="distil a teacher MLP into a small student on the digits data",
        description="Knowledge distillation with tempscale.torch.KDLoss on scikit-learn's "
                    "handwritten digits: hard labels only vs KD at several temperatures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    for mod in ("torch", "sklearn"):
        if importlib.util.find_spec(mod) is None:
            raise CLIError(f"tempscale distill needs {mod}: pip install "
                           f"{'torch' if mod == 'torch' else 'scikit-learn'}")
    if args.json:
        from ._common import check_output

        check_output(args.json, args.force)
    if args.threads < 1:
        raise CLIError(f"--threads must be at least 1, got {args.threads}")
    example = load_example()
    return int(example.run_from_args(args) or 0)
