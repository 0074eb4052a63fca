"""The ``tempscale`` command: a thin layer over the public API.

Subcommands live one per module in this package (``softmax``, ``plot``, ``explore``,
``calibrate``, ``solve``, ``sample``, ``demo``, ``distill``); each defines ``register``.

No exception leaves :func:`main` as a traceback: user errors are one line on stderr with exit
status 2; running out of memory or an unexpected error is one line too (exit status 1), and
``TEMPSCALE_DEBUG=1`` shows the traceback of the latter.  Library messages that name a Python
parameter (``The 'top_p' parameter of warp ...``) are reworded with the flag the user typed
(``--top-p must be ...``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import NoReturn, TextIO

from ._console import CLIError

__all__ = ["main", "build_parser"]

#: subcommand modules, in the order ``--help`` lists them
SUBCOMMANDS = ("demo", "softmax", "plot", "explore", "calibrate", "solve", "sample", "distill")

#: environment variable that shows the traceback of unexpected errors
DEBUG_ENV = "TEMPSCALE_DEBUG"

EPILOG = """\
examples:
  tempscale demo                          the classic 10-class example into ./tempscale-demo/
  tempscale softmax -T 0.5 -- -1 0 1      softmax of three logits at T = 0.5
  tempscale softmax -T 0.1,1,10 logits.npy -o probs.npy
  tempscale plot -T 0.1,0.5,1,2,10 -- -1 0 1   bars at five temperatures (PNG)
  tempscale explore -o explorer.html      write the interactive page

Set TEMPSCALE_DEBUG=1 to see the Python traceback of an unexpected error.
"""

#: library parameter names that are not simply ``--name-with-dashes`` on the command line
_PARAM_FLAGS = {
    "temperature": "-T/--temperature",
    "temperatures": "-T/--temperature",
    "num_samples": "-n/--num-samples",
    "on_unreachable": "--nan",
    "max_prob": "--max-prob",
    "replacement": "--no-replacement",
    "x": "the input",
    "logits": "the input",
    "probs": "the input",
    "probabilities": "the input",
    "p": "the input",
    "labels": "the labels",
    "y": "the labels",
    "seed": "--seed",
    "n_bins": "--n-bins",
}
#: fragments of library messages that suggest Python arguments
_PHRASES = (
    (re.compile(r"\(?or pass on_unreachable=['\"]nan['\"]\)?"), "(or pass --nan)"),
    (re.compile(r"on_unreachable=['\"]nan['\"]"), "--nan"),
    (re.compile(r"^(--[\w-]+ must be )None or (an? )"), r"\1\2"),
    (re.compile(r"^(--[\w-]+ must be .*?),? or None\b"), r"\1"),
)
_PARAM_RE = re.compile(r"^The '(?P<param>[\w.]+)' parameter of (?P<func>[\w.]+) (?P<rest>.*)$", re.S)


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

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
    parser._subcommands = sub.choices  # for the flag names in error messages
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2, no usage dump)."""

    #: the subcommands' parsers, by name (set by :func:`build_parser` on the main parser)
    _subcommands: Mapping[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse's hook
        print(f"{self.prog}: error: {' '.join(str(message).split())} (see --help)", file=sys.stderr)
        sys.exit(2)


def _flag_names(subparser: argparse.ArgumentParser | None) -> dict[str, str]:
    """``dest`` → the long option the user types (``top_p`` → ``--top-p``)."""
    names: dict[str, str] = {}
    for action in getattr(subparser, "_actions", ()):
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest not in names:
            names[action.dest] = longs[0]
    return names


def user_message(msg: str, subparser: argparse.ArgumentParser | None = None) -> str:
    """One line, with library parameter names replaced by the command line's flags.

    ``The 'top_p' parameter of warp must be a float in (0, 1]. Got 2.0 instead.`` becomes
    ``--top-p must be a float in (0, 1]; got 2.0``.
    """
    text = " ".join(str(msg).split())
    m = _PARAM_RE.match(text)
    if m:
        param, rest = m.group("param"), m.group("rest")
        flags = _flag_names(subparser)
        name = flags.get(param) or _PARAM_FLAGS.get(param) or f"--{param.replace('_', '-')}"
        rest = re.sub(r"\.?\s*Got (.*?) instead\.?$", r"; got \1", rest)
        text = f"{name} {rest}"
    for pattern, repl in _PHRASES:
        text = pattern.sub(repl, text)
    return text


def _print_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the command: one ``warning: ...`` line on stderr."""
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    command = "tempscale"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        command = f"tempscale {args.command}"
        subparser = getattr(parser, "_subcommands", {}).get(args.command)
        try:
            with warnings.catch_warnings():
                # library warnings are one line on stderr (each once), as errors are
                warnings.simplefilter("default")
                warnings.showwarning = _print_warning
                return int(args.func(args) or 0)
        except (CLIError, ValueError, TypeError, IndexError, OSError) as exc:
            if debug and not isinstance(exc, CLIError):
                raise
            msg = user_message(str(exc), subparser) if str(exc).strip() else type(exc).__name__
            print(f"{command}: error: {msg}", file=sys.stderr)
            return 2
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("tempscale: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        if debug:
            raise
        detail = " ".join(str(exc).split())
        print(f"{command}: error: not enough memory for this input"
              + (f" ({detail})" if detail else "") + "; try a smaller input", file=sys.stderr)
        return 1
    except (OverflowError, RecursionError) as exc:
        if debug:
            raise
        print(f"{command}: error: a value is too large to handle "
              f"({' '.join(str(exc).split()) or type(exc).__name__})", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if debug:
            raise
        detail = " ".join(str(exc).split())[:200]
        print(f"{command}: error: unexpected {type(exc).__name__}"
              + (f": {detail}" if detail else "")
              + f" (a bug in tempscale: please report it; {DEBUG_ENV}=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
