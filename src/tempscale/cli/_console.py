"""What the ``tempscale`` command shows: user errors, warnings, tables and progress bars.

rich (the ``cli`` extra) draws the tables and progress bars when it is installed; without it
the same cells and a plain ``done/total`` line are printed.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, Protocol, TextIO

import numpy as np

__all__ = ["CLIError", "Printer", "console", "err_console", "fmt", "print_table", "progress", "warn"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class Printer(Protocol):
    """What the commands use of a console: ``print``."""

    def print(self, *objects: Any, **kwargs: Any) -> None: ...


class Advance(Protocol):
    """The callback :func:`progress` yields: ``advance(n=1, description=None)``."""

    def __call__(self, n: int = 1, description: str | None = None) -> None: ...


def _rich(module: str) -> ModuleType | None:
    """``rich.<module>`` if rich is installed (the ``cli`` extra), else ``None``: plain text."""
    try:
        return importlib.import_module(f"rich.{module}")
    except ImportError:
        return None


class _PlainConsole:
    """What the commands use of rich's Console when rich is absent: markup-free lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def print(self, *objects: Any, **_: Any) -> None:
        text = " ".join(str(o) for o in objects)
        print(re.sub(r"\[/?[a-z ]+\]", "", text), file=self._stream)


def console() -> Printer:
    """A console on stdout (rich's, when installed)."""
    rich_console = _rich("console")
    if rich_console is None:
        return _PlainConsole(sys.stdout)
    printer: Printer = rich_console.Console(highlight=False)
    return printer


def err_console() -> Printer:
    """A console on stderr (rich's, when installed)."""
    rich_console = _rich("console")
    if rich_console is None:
        return _PlainConsole(sys.stderr)
    printer: Printer = rich_console.Console(stderr=True, highlight=False)
    return printer


def warn(message: str) -> None:
    """One line on stderr, ``warning: ...`` (never markup-interpreted)."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=sys.stderr)


def fmt(v: float | np.floating[Any] | np.integer[Any], digits: int = 6) -> str:
    """A number as a table cell: integers as they are, floats to ``digits`` significant digits."""
    if isinstance(v, (int, np.integer)):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on stdout: rich's when installed, else the same cells between ``│`` bars."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    rich_table = _rich("table")
    if rich_table is None:
        widths = [max(len(str(c)), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

        def line(values: Sequence[str]) -> str:
            parts = [v.ljust(w) if i == 0 else v.rjust(w)
                     for i, (v, w) in enumerate(zip(values, widths, strict=False))]
            return "│ " + " │ ".join(parts) + " │"

        if title:
            print(title)
        print(line([str(c) for c in columns]))
        for r in cells:
            print(line(r))
        return
    table = rich_table.Table(title=title, show_lines=False)
    for i, c in enumerate(columns):
        table.add_column(str(c), justify="left" if i == 0 else "right")
    for r in cells:
        table.add_row(*r)
    console().print(table)


@contextlib.contextmanager
def progress(description: str, total: int | None = None, *, disable: bool = False) -> Iterator[Advance]:
    """A progress bar on stderr (rich's, when installed); yields ``advance(n=1, description=None)``.

    Without rich, a plain ``description: done/total`` line is rewritten in place on a terminal
    and nothing is printed otherwise.
    """
    rich_progress = _rich("progress")
    if rich_progress is None:
        with _plain_progress(description, total, disable=disable) as advance:
            yield advance
        return
    columns = (rich_progress.TextColumn("{task.description}"), rich_progress.BarColumn(),
               rich_progress.MofNCompleteColumn(), rich_progress.TimeElapsedColumn(),
               rich_progress.TimeRemainingColumn())
    with rich_progress.Progress(*columns, console=err_console(), disable=disable, transient=True) as prog:
        task = prog.add_task(description, total=total)

        def advance(n: int = 1, description: str | None = None) -> None:
            if description is not None:
                prog.update(task, description=description)
            prog.advance(task, n)

        yield advance


@contextlib.contextmanager
def _plain_progress(description: str, total: int | None, *, disable: bool) -> Iterator[Advance]:
    """rich-free progress: ``description: done/total`` rewritten in place on a terminal."""
    shown = not disable and sys.stderr.isatty()
    done = 0
    current = description

    def advance(n: int = 1, description: str | None = None) -> None:
        nonlocal done, current
        done += n
        if description is not None:
            current = description
        if shown:
            of = f"/{total}" if total is not None else ""
            print(f"\r{current}: {done}{of}", end="", file=sys.stderr, flush=True)

    yield advance
    if shown:
        print(file=sys.stderr)
