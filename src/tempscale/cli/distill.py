"""``tempscale distill``: run the knowledge-distillation example on scikit-learn's digits.

The experiment ships inside the package, so the command works after a normal install and never
imports or executes a file from the current folder; ``examples/distill_digits.py`` runs this
command.
"""

from __future__ import annotations

import argparse
import importlib.util

from ._console import CLIError

EPILOG = """\
examples:
  tempscale distill --quick                  2 seeds, a few seconds
  tempscale distill                          5 seeds, T in {1, 2, 4, 8}, about a minute
  tempscale distill --temperatures 2 4 --alpha 0.5 --markdown
  tempscale distill --seeds 1 --epochs 2 --teacher-epochs 2 --temperatures 4   a smoke test
  tempscale distill --json results.json

The teacher (64-256-256-10 MLP) and the student (64-16-10 MLP) are trained with PyTorch on
CPU; the student once on hard labels only and once per temperature with tempscale.torch.KDLoss.
Needs torch and scikit-learn.  The table reports held-out test accuracy and NLL, mean +- std
over seeds.
"""


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
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="student epochs (default 150; quick: 40)")
    p.add_argument("--teacher-epochs", type=int, default=None, metavar="N",
                   help="teacher epochs (default 100; quick: 30)")
    p.add_argument("--json", metavar="PATH", help="write the raw per-seed results as JSON")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    from ._distill_digits import build_parser

    p = subparsers.add_parser(
        "distill", help="distil a teacher MLP into a small student on the digits data",
        description="Knowledge distillation with tempscale.torch.KDLoss on scikit-learn's "
                    "handwritten digits: hard labels only vs KD at several temperatures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    build_parser(p)  # the same options as examples/distill_digits.py
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    for mod in ("torch", "sklearn"):
        if importlib.util.find_spec(mod) is None:
            raise CLIError(f"tempscale distill needs {mod}: pip install "
                           f"{'torch' if mod == 'torch' else 'scikit-learn'}")
    if args.threads < 1:
        raise CLIError(f"--threads must be at least 1, got {args.threads}")
    from ._distill_digits import run_from_args

    return int(run_from_args(args) or 0)
