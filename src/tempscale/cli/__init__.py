"""The ``tempscale`` command: a thin layer over the public API.

Subcommands live one per module in this package (``softmax``, ``plot``, ``explore``,
``calibrate``, ``solve``, ``sample``, ``demo``, ``distill``); each defines ``register``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ._common import CLIError

__all__ = ["main", "build_parser"]

#: subcommand modules, in the order ``--help`` lists them
SUBCOMMANDS = ("demo", "softmax", "plot", "explore", "calibrate", "solve", "sample", "distill")

EPILOG = """\
examples:
  tempscale demo                          reproduce the seed example into ./tempscale-demo/
  tempscale softmax -T 0.5 -- -1 0 1      softmax of three logits at T = 0.5
  tempscale softmax -T 0.1,1,10 logits.npy -o probs.npy
  tempscale plot -T 0.1,0.5,1,2,10 -- -1 0 1   bars at five temperatures (PNG)
  tempscale explore -o explorer.html      write the interactive page
"""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="tempscale",
        description="Softmax with temperature: compute, choose and see what T does.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tempscale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not yet written
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2, no usage dump)."""

    def error(self, message):  # noqa: D401 - argparse's hook
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, TypeError, IndexError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"tempscale {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tempscale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
